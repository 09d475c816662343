//! The Argo CD health check (`argocd/`): its cases pass under gopher-lua, the interpreter Argo
//! CD embeds, with only the libraries an argocd-cm script gets; the runner fails on what Argo
//! CD would show differently; every testdata file is a ModelSync that the CRD users install
//! (`kustomize/base/crd.yaml`) accepts, status included; and both of the README's installs put
//! `health.lua` into argocd-cm unchanged, keeping the settings already there.

mod manifest_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use manifest_support::{KUBECTL_INSTALL, documents, kustomize, repo_root, require_tool};
use modelsync_api::ModelSync;
use serde_json::{Value, json};

/// The argocd-cm key Argo CD reads a health script for group `modelsync.dev`, kind
/// `ModelSync` from.
const CM_KEY: &str = "resource.customizations.health.modelsync.dev_ModelSync";

fn customizations() -> PathBuf {
    repo_root().join("argocd/resource_customizations")
}

fn check_dir() -> PathBuf {
    customizations().join("modelsync.dev/ModelSync")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The health each case in `health_test.yaml` expects, in order.
fn expected_statuses(dir: &Path) -> Vec<String> {
    let doc: Value = serde_yaml_ng::from_str(&read(&dir.join("health_test.yaml"))).unwrap();
    doc["tests"]
        .as_array()
        .expect("health_test.yaml has a `tests` list")
        .iter()
        .map(|t| {
            t["healthStatus"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// What the runner printed, and whether it passed.
struct Outcome {
    code: Option<i32>,
    output: String,
}

/// Runs the gopher-lua runner over a resource_customizations folder (building it on first use;
/// the error says what to install when `go` is missing).
fn run_health_cases(root: &Path) -> Outcome {
    let runner = modelsync_testenv::argocd::runner().unwrap_or_else(|e| panic!("{e:#}"));
    let out = Command::new(&runner)
        .arg(root)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", runner.display()));
    Outcome {
        code: out.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn health_cases_pass_under_gopher_lua() {
    let cases = expected_statuses(&check_dir());
    let states: BTreeSet<&str> = cases.iter().map(String::as_str).collect();
    assert_eq!(
        states,
        BTreeSet::from(["Degraded", "Healthy", "Progressing", "Suspended"]),
        "the cases cover each health the contract names"
    );
    let out = run_health_cases(&customizations());
    assert_eq!(out.code, Some(0), "{}", out.output);
    // Every case ran: none skipped, none unread.
    let summary = format!("{} passed, 0 failed", cases.len());
    assert!(
        out.output.lines().any(|l| l == summary),
        "expected `{summary}`:\n{}",
        out.output
    );
}

/// A copy of the ModelSync check in a fresh resource_customizations folder, changed by `edit`,
/// run through the runner.
fn run_changed(edit: impl FnOnce(&Path)) -> Outcome {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("modelsync.dev/ModelSync");
    std::fs::create_dir_all(dir.join("testdata")).unwrap();
    for name in ["health.lua", "health_test.yaml"] {
        std::fs::copy(check_dir().join(name), dir.join(name)).unwrap();
    }
    for entry in std::fs::read_dir(check_dir().join("testdata")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join("testdata").join(path.file_name().unwrap())).unwrap();
    }
    edit(&dir);
    run_health_cases(tmp.path())
}

#[test]
fn the_runner_shows_a_wrong_expectation_as_a_diff() {
    let out = run_changed(|dir| {
        let path = dir.join("health_test.yaml");
        let text = read(&path).replacen(
            "status: Healthy\n    message: \"Idle:",
            "status: Degraded\n    message: \"Idle:",
            1,
        );
        std::fs::write(path, text).unwrap();
    });
    assert_eq!(out.code, Some(1), "{}", out.output);
    for line in [
        "FAIL modelsync.dev/ModelSync testdata/ready.yaml",
        "want: Degraded \"Idle: no run needed; waiting for the next poll\"",
        "got:  Healthy \"Idle: no run needed; waiting for the next poll\"",
    ] {
        assert!(out.output.contains(line), "no `{line}` in:\n{}", out.output);
    }
}

/// A script installed through argocd-cm has no `string` library: one that uses it must fail
/// here too, or these cases would pass on a script Argo CD cannot run.
#[test]
fn scripts_get_only_the_libraries_argocd_cm_gives() {
    let out = run_changed(|dir| {
        let path = dir.join("health.lua");
        let text = read(&path);
        std::fs::write(
            path,
            format!("local _ = string.format(\"%s\", \"x\")\n{text}"),
        )
        .unwrap();
    });
    assert_eq!(out.code, Some(1), "{}", out.output);
    assert!(
        out.output
            .contains("only Lua's base, table and package libraries"),
        "{}",
        out.output
    );
}

#[test]
fn a_testdata_file_no_case_reads_fails() {
    let out = run_changed(|dir| {
        std::fs::copy(
            dir.join("testdata/ready.yaml"),
            dir.join("testdata/forgotten.yaml"),
        )
        .unwrap();
    });
    assert_eq!(out.code, Some(1), "{}", out.output);
    assert!(
        out.output
            .contains("FAIL modelsync.dev/ModelSync testdata/forgotten.yaml"),
        "{}",
        out.output
    );
}

/// The CRD as users install it, rather than the one generated from the Rust types (the CI
/// drift check keeps the two equal).
fn installed_crd() -> CustomResourceDefinition {
    let path = repo_root().join("kustomize/base/crd.yaml");
    serde_yaml_ng::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not a CRD: {e}", path.display()))
}

fn control_plane() -> &'static modelsync_testenv::ControlPlane {
    modelsync_testenv::shared_with_crds(|| vec![installed_crd()])
}

/// Strict: a field the schema does not know is an error, not silently dropped.
fn strict_apply() -> PatchParams {
    PatchParams::apply("modelsync-argocd-test")
        .force()
        .validation_strict()
}

/// Creates `doc` without its status under `name`, then applies its status to the status
/// subresource as a dry run: the main endpoint ignores status, so this is what checks it.
async fn check_modelsync(api: &Api<ModelSync>, name: &str, doc: &Value) -> Result<(), String> {
    if doc["apiVersion"] != "modelsync.dev/v1alpha1" || doc["kind"] != "ModelSync" {
        return Err(format!(
            "is a {} {}, not a modelsync.dev/v1alpha1 ModelSync",
            doc["apiVersion"], doc["kind"]
        ));
    }
    let mut object = doc.clone();
    let status = object.as_object_mut().unwrap().remove("status");
    object["metadata"]["name"] = json!(name);
    object["metadata"]
        .as_object_mut()
        .ok_or("has no metadata")?
        .remove("namespace");
    api.patch(name, &strict_apply(), &Patch::Apply(&object))
        .await
        .map_err(|e| format!("spec rejected: {e}"))?;
    if let Some(status) = status {
        let body = json!({
            "apiVersion": "modelsync.dev/v1alpha1",
            "kind": "ModelSync",
            "metadata": {"name": name},
            "status": status,
        });
        api.patch_status(name, &strict_apply().dry_run(), &Patch::Apply(&body))
            .await
            .map_err(|e| format!("status rejected: {e}"))?;
    }
    Ok(())
}

async fn modelsyncs(prefix: &str) -> Api<ModelSync> {
    let client = control_plane().client().await.unwrap();
    let ns = modelsync_testenv::namespace(&client, prefix).await.unwrap();
    Api::namespaced(client, &ns)
}

#[tokio::test]
async fn testdata_are_modelsyncs_the_crd_accepts() {
    let api = modelsyncs("argocd-testdata").await;
    let mut files: Vec<PathBuf> = std::fs::read_dir(check_dir().join("testdata"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "only {files:?}");
    let (mut failures, mut statuses) = (Vec::new(), 0);
    for file in &files {
        let shown = file
            .strip_prefix(repo_root())
            .unwrap()
            .display()
            .to_string();
        let docs = documents(&read(file)).unwrap();
        let [doc] = docs.as_slice() else {
            failures.push(format!("{shown}: holds {} documents, not one", docs.len()));
            continue;
        };
        statuses += usize::from(doc.get("status").is_some());
        let name = file.file_stem().unwrap().to_string_lossy();
        if let Err(e) = check_modelsync(&api, &name, doc).await {
            failures.push(format!("{shown}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        statuses >= 10,
        "only {statuses} files have a status to check"
    );
}

/// The check above has teeth: the CRD rejects a condition without its reason, a status field
/// it does not define, and a misspelt spec field.
#[tokio::test]
async fn the_crd_check_rejects_what_the_schema_does_not_allow() {
    let api = modelsyncs("argocd-testdata-bad").await;
    let ready = &documents(&read(&check_dir().join("testdata/ready.yaml"))).unwrap()[0];

    let mut no_reason = ready.clone();
    no_reason["status"]["conditions"][0]
        .as_object_mut()
        .unwrap()
        .remove("reason");
    let err = check_modelsync(&api, "no-reason", &no_reason)
        .await
        .unwrap_err();
    assert!(
        err.starts_with("status rejected") && err.contains("reason"),
        "{err}"
    );

    let mut unknown_status = ready.clone();
    unknown_status["status"]["phase"] = json!("Ready");
    let err = check_modelsync(&api, "unknown-status", &unknown_status)
        .await
        .unwrap_err();
    assert!(
        err.starts_with("status rejected") && err.contains("phase"),
        "{err}"
    );

    let mut misspelt = ready.clone();
    misspelt["spec"]["suspended"] = json!(true);
    let err = check_modelsync(&api, "misspelt", &misspelt)
        .await
        .unwrap_err();
    assert!(
        err.starts_with("spec rejected") && err.contains("suspended"),
        "{err}"
    );
}

/// A stand-in for Argo CD's own install: its argocd-cm with a setting, and a Deployment
/// mounting it.
const ARGOCD_INSTALL: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  labels: {app.kubernetes.io/name: argocd-cm, app.kubernetes.io/part-of: argocd}
data:
  timeout.reconciliation: 180s
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: argocd-application-controller
spec:
  selector: {matchLabels: {app: controller}}
  template:
    metadata: {labels: {app: controller}}
    spec:
      containers:
      - {name: controller, image: argocd}
      volumes:
      - {name: cm, configMap: {name: argocd-cm}}
"#;

/// The README's install: the component in `argocd/` merges the script into the argocd-cm of
/// an Argo CD install, byte for byte, keeping what was there.
#[test]
fn the_component_puts_health_lua_into_argocd_cm() {
    require_tool("kubectl", &["version", "--client"], KUBECTL_INSTALL);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("argocd-install.yaml"), ARGOCD_INSTALL).unwrap();
    let component =
        modelsync_testenv::kubectl::relative_path(tmp.path(), &repo_root().join("argocd"));
    std::fs::write(
        tmp.path().join("kustomization.yaml"),
        format!(
            "namespace: argocd\nresources:\n- argocd-install.yaml\ncomponents:\n- {component}\n"
        ),
    )
    .unwrap();
    let docs = kustomize(tmp.path()).unwrap();
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("a ConfigMap");
    // Same name, so what mounts argocd-cm (and Argo CD itself) still finds it.
    assert_eq!(cm["metadata"]["name"], "argocd-cm", "{cm}");
    assert_eq!(cm["metadata"]["namespace"], "argocd", "{cm}");
    assert_eq!(cm["data"]["timeout.reconciliation"], "180s", "{cm}");
    assert_eq!(
        cm["data"][CM_KEY].as_str(),
        Some(read(&check_dir().join("health.lua")).as_str()),
        "argocd-cm's {CM_KEY} is not health.lua"
    );
}

/// The README's fenced code block that contains `marker`, without its language line.
fn readme_block(marker: &str) -> String {
    let readme = read(&repo_root().join("README.md"));
    readme
        .split("```")
        .skip(1)
        .step_by(2)
        .find(|block| block.contains(marker))
        .unwrap_or_else(|| panic!("README.md has no code block with {marker}"))
        .split_once('\n')
        .map(|(_language, body)| body.to_owned())
        .unwrap_or_default()
}

#[test]
fn the_readme_uses_the_component_and_the_key() {
    let block = readme_block("components:");
    assert!(block.contains("/argocd "), "{block}");
    assert!(
        readme_block(CM_KEY)
            .contains("=argocd/resource_customizations/modelsync.dev/ModelSync/health.lua")
    );
}

/// The README's kubectl install, run as written against the local control plane: it adds the
/// key to an argocd-cm that `kubectl apply` made, keeps that one's settings, and can be run
/// again.
#[tokio::test]
async fn the_readme_kubectl_install_adds_the_key_and_keeps_the_rest() {
    require_tool("kubectl", &["version", "--client"], KUBECTL_INSTALL);
    let cp = control_plane();
    let client = cp.client().await.unwrap();
    modelsync_testenv::create_namespace(&client, "argocd")
        .await
        .unwrap();
    let run = |script: &str| {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(repo_root())
            .env("KUBECONFIG", cp.kubeconfig())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}\nfailed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // As Argo CD's install leaves it: made by a client-side apply, whose ownership a later
    // `kubectl apply --server-side` of the one key takes over, and so drops the other settings.
    let cm = ARGOCD_INSTALL.split("---").next().unwrap();
    run(&format!("kubectl apply -n argocd -f - <<'EOF'\n{cm}EOF"));
    let install = readme_block("kubectl patch configmap argocd-cm");
    run(&install);
    run(&install);

    let cm = Api::<ConfigMap>::namespaced(client, "argocd")
        .get("argocd-cm")
        .await
        .unwrap();
    let labels = cm.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("app.kubernetes.io/part-of").map(String::as_str),
        Some("argocd")
    );
    let data = cm.data.unwrap_or_default();
    assert_eq!(
        data.get("timeout.reconciliation").map(String::as_str),
        Some("180s")
    );
    assert_eq!(
        data.get(CM_KEY),
        Some(&read(&check_dir().join("health.lua"))),
        "argocd-cm's {CM_KEY} is not health.lua"
    );
}
