//! The installable files are accepted by a real API server: every YAML under `tekton/`,
//! `kustomize/` (rendered with `kubectl kustomize`) and `examples/` is applied with a
//! server-side dry run to the local control plane, which has the ModelSync CRD and Tekton's
//! real CRDs; the Task step scripts pass shellcheck; the install keeps its security promises.

mod manifest_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use kube::CustomResourceExt;
use manifest_support::{
    KUBECTL_INSTALL, SHELLCHECK_INSTALL, apply, describe, documents, is_object, kustomize,
    repo_root, require_tool, yaml_files,
};
use modelsync_api::ModelSync;
use serde_json::Value;

fn control_plane() -> &'static modelsync_testenv::ControlPlane {
    modelsync_testenv::shared_with_crds(|| {
        let mut crds = modelsync_testenv::crds::prometheus_operator_crds()
            .expect("the Prometheus Operator's CRDs (for kustomize/components/monitoring)");
        crds.push(ModelSync::crd());
        crds
    })
}

/// What one YAML file is, and the documents to check.
enum Kind {
    /// Kubernetes objects (raw, or a kustomization rendered).
    Objects(Vec<Value>),
    /// `modelsync lambdas --config` input.
    LambdaConfig,
    /// Model records the lambdas read.
    ModelRecords,
    /// A patch a kustomization in its folder applies: checked in that kustomization's render.
    Patch,
}

/// Whether the `kustomization.yaml` beside `path` applies it as a patch.
fn is_patch_of_its_kustomization(path: &Path) -> bool {
    let kustomization = path.with_file_name("kustomization.yaml");
    let Ok(text) = std::fs::read_to_string(&kustomization) else {
        return false;
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    documents(&text).is_ok_and(|docs| {
        docs.iter().any(|k| {
            k["patches"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["path"] == *name))
        })
    })
}

/// A kustomize Component cannot be rendered alone: it is rendered on top of `kustomize/base`,
/// from an overlay in a temporary folder that names both by relative path (kustomize refuses
/// absolute ones).
fn kustomize_component(dir: &Path) -> anyhow::Result<Vec<Value>> {
    let overlay = tempfile::tempdir()?;
    let relative = |target: &Path| {
        let up = overlay.path().components().count().saturating_sub(1);
        let target = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
        format!(
            "{}{}",
            "../".repeat(up),
            target.to_string_lossy().trim_start_matches('/')
        )
    };
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!(
            "resources:\n- {}\ncomponents:\n- {}\n",
            relative(&repo_root().join("kustomize/base")),
            relative(dir)
        ),
    )?;
    kustomize(overlay.path())
}

fn classify(path: &Path) -> Result<Kind, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
        let dir = path.parent().unwrap();
        if documents(&text).is_ok_and(|d| d.first().is_some_and(|k| k["kind"] == "Component")) {
            return kustomize_component(dir)
                .map(Kind::Objects)
                .map_err(|e| format!("{e:#}"));
        }
        return kustomize(dir)
            .map(Kind::Objects)
            .map_err(|e| format!("{e:#}"));
    }
    if is_patch_of_its_kustomization(path) {
        return Ok(Kind::Patch);
    }
    let docs = documents(&text).map_err(|e| format!("not YAML: {e}"))?;
    if docs.is_empty() {
        return Err("no YAML document".into());
    }
    if docs.iter().all(is_object) {
        return Ok(Kind::Objects(docs));
    }
    if docs.len() == 1 && docs[0]["routes"].is_object() && docs[0]["mirror"].is_object() {
        // The parser reads `auth.bearerTokenFile` from disk; that file exists only in a pod.
        let mut config = docs[0].clone();
        config.as_object_mut().unwrap().remove("auth");
        let text = serde_json::to_string(&config).unwrap();
        modelsync_lambdas::config::parse(&text, path.parent().unwrap())
            .map_err(|e| e.to_string())?;
        return Ok(Kind::LambdaConfig);
    }
    if path.parent().is_some_and(|p| p.ends_with("models")) {
        let records: Vec<Value> = match &docs[0] {
            Value::Array(list) => list.clone(),
            v if v["models"].is_array() => v["models"].as_array().unwrap().clone(),
            v => vec![v.clone()],
        };
        for r in records {
            serde_json::from_value::<modelsync_lambdas::sources::ModelRecord>(r)
                .map_err(|e| format!("not a model record: {e}"))?;
        }
        return Ok(Kind::ModelRecords);
    }
    Err("neither Kubernetes objects, a kustomization, a lambda config nor model records".into())
}

#[tokio::test]
async fn every_manifest_is_accepted_by_the_api_server() {
    require_tool("kubectl", &["version", "--client"], KUBECTL_INSTALL);
    let root = repo_root();
    let client = control_plane().client().await.unwrap();
    let ns = modelsync_testenv::namespace(&client, "manifests")
        .await
        .unwrap();

    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["tekton", "kustomize", "examples"] {
        files.extend(yaml_files(&root.join(dir)));
    }
    assert!(files.len() >= 20, "found only {files:?}");

    let mut failures = Vec::new();
    let mut kinds = BTreeSet::new();
    let (mut applied, mut configs, mut records) = (0, 0, 0);
    for file in &files {
        let shown = file.strip_prefix(&root).unwrap().display().to_string();
        match classify(file) {
            Err(e) => failures.push(format!("{shown}: {e}")),
            Ok(Kind::LambdaConfig) => configs += 1,
            Ok(Kind::ModelRecords) => records += 1,
            Ok(Kind::Patch) => {}
            Ok(Kind::Objects(docs)) => {
                for doc in docs {
                    kinds.insert(doc["kind"].as_str().unwrap_or_default().to_owned());
                    match apply(&client, &doc, &ns, true).await {
                        Ok(_) => applied += 1,
                        Err(e) => failures.push(format!("{shown}: {}: {e:#}", describe(&doc))),
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "rejected:\n{}", failures.join("\n"));
    for kind in [
        "Task",
        "Pipeline",
        "ModelSync",
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(kind), "no {kind} among {kinds:?}");
    }
    assert!(applied >= 50, "only {applied} objects applied");
    assert!(configs >= 2, "only {configs} lambda configs checked");
    assert!(records >= 2, "only {records} model record files checked");
}

/// A dry run really validates: Tekton's schema rejects a broken Task, and the CRD a broken
/// ModelSync. (Otherwise the test above could pass on anything.)
#[tokio::test]
async fn the_dry_run_rejects_what_the_schemas_reject() {
    let client = control_plane().client().await.unwrap();
    let ns = modelsync_testenv::namespace(&client, "manifests-bad")
        .await
        .unwrap();
    let root = repo_root();
    let task = &documents(
        &std::fs::read_to_string(root.join("tekton/tasks/train-notebook/train-notebook.yaml"))
            .unwrap(),
    )
    .unwrap()[0];
    let mut bad_task = task.clone();
    bad_task["spec"]["steps"] = serde_json::json!("not a list");
    let err = apply(&client, &bad_task, &ns, true).await.unwrap_err();
    assert!(format!("{err:#}").contains("steps"), "{err:#}");

    let trainer =
        &documents(&std::fs::read_to_string(root.join("examples/label-bot/trainer.yaml")).unwrap())
            .unwrap()[0];
    let mut bad = trainer.clone();
    bad["metadata"]["namespace"] = Value::String(ns.clone());
    bad["spec"].as_object_mut().unwrap().remove("needsSyncUrl");
    let err = apply(&client, &bad, &ns, true).await.unwrap_err();
    assert!(format!("{err:#}").contains("needsSyncUrl"), "{err:#}");
    // And nothing was stored by the dry runs.
    let api: kube::Api<ModelSync> = kube::Api::namespaced(client.clone(), &ns);
    assert!(
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// Every Task step script, with the file and step it comes from.
fn step_scripts() -> Vec<(String, String)> {
    let root = repo_root();
    let mut out = Vec::new();
    for file in yaml_files(&root.join("tekton")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in documents(&text).unwrap() {
            if doc["kind"] != "Task" {
                continue;
            }
            for step in doc["spec"]["steps"].as_array().unwrap() {
                if let Some(script) = step["script"].as_str() {
                    let name = format!(
                        "{} step {}",
                        file.strip_prefix(&root).unwrap().display(),
                        step["name"].as_str().unwrap_or("?")
                    );
                    out.push((name, script.to_owned()));
                }
            }
        }
    }
    out
}

#[test]
fn task_scripts_pass_shellcheck_and_keep_params_out_of_the_shell() {
    require_tool("shellcheck", &["--version"], SHELLCHECK_INSTALL);
    let scripts = step_scripts();
    assert!(scripts.len() >= 5, "found only {} scripts", scripts.len());
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, (name, script)) in scripts.iter().enumerate() {
        let shell = match script.lines().next().unwrap_or_default() {
            l if l.ends_with("bash") => "bash",
            l if l.ends_with("/sh") => "sh",
            l => {
                failures.push(format!(
                    "{name}: no #!/usr/bin/env bash or #!/bin/sh line: {l:?}"
                ));
                continue;
            }
        };
        if shell == "bash" && !script.contains("set -euo pipefail") {
            failures.push(format!("{name}: does not `set -euo pipefail`"));
        }
        // Tekton pastes $(params.x) into the text before the shell parses it: injection.
        for var in ["$(params.", "$(results.", "$(workspaces.", "$(context."] {
            if script.contains(var) {
                failures.push(format!("{name}: uses {var}...) inline; pass it via env"));
            }
        }
        let path = dir.path().join(format!("step-{i}.sh"));
        std::fs::write(&path, script).unwrap();
        let out = Command::new("shellcheck")
            .args(["-s", shell, "-S", "info"])
            .arg(&path)
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!(
                "{name}: shellcheck:\n{}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// shellcheck itself finds what it should, so a pass above means something.
#[test]
fn shellcheck_catches_an_unquoted_variable() {
    require_tool("shellcheck", &["--version"], SHELLCHECK_INSTALL);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.sh");
    std::fs::write(
        &path,
        "#!/usr/bin/env bash\nset -euo pipefail\nrm -rf $1/tmp\n",
    )
    .unwrap();
    let out = Command::new("shellcheck")
        .args(["-s", "bash"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("SC2086"));
}

/// Every rendered install (base and overlays) keeps the promises of issue 6: the one modelsync
/// image, probes, resources, non-root, read-only root, no privilege escalation, and RBAC with no
/// wildcard, nothing bound to cluster-admin, and Secrets only to `get` the one a ModelSync
/// names (issue 13: never list or watch them).
#[test]
fn installs_are_least_privilege_and_locked_down() {
    require_tool("kubectl", &["version", "--client"], KUBECTL_INSTALL);
    let root = repo_root();
    // Deployments: the controller (one per shard in the shards overlay) and the lambda server.
    for (dir, expected_deployments) in [
        ("kustomize/base", 2),
        ("kustomize/overlays/single-namespace", 2),
        ("kustomize/overlays/leader-elected", 2),
        ("kustomize/overlays/shards", 4),
        ("examples/label-bot/modelsync-install", 2),
    ] {
        let docs = kustomize(&root.join(dir)).unwrap();
        let mut deployments = 0;
        for doc in &docs {
            let what = format!("{dir}: {}", describe(doc));
            match doc["kind"].as_str().unwrap() {
                "Deployment" => {
                    deployments += 1;
                    let pod = &doc["spec"]["template"]["spec"];
                    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
                    for c in pod["containers"].as_array().unwrap() {
                        let image = c["image"].as_str().unwrap();
                        assert!(image.starts_with("modelsync:"), "{what}: image {image}");
                        let sc = &c["securityContext"];
                        assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                        assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
                        assert!(c["livenessProbe"].is_object(), "{what}: liveness");
                        assert!(c["readinessProbe"].is_object(), "{what}: readiness");
                        assert!(c["resources"]["requests"].is_object(), "{what}: requests");
                        assert!(c["resources"]["limits"]["memory"].is_string(), "{what}");
                    }
                }
                "ClusterRole" | "Role" => {
                    for rule in doc["rules"].as_array().unwrap() {
                        let text = rule.to_string();
                        assert!(!text.contains('*'), "{what}: wildcard in {text}");
                        if text.contains("secrets") {
                            assert_eq!(rule["resources"], serde_json::json!(["secrets"]), "{what}");
                            assert_eq!(rule["verbs"], serde_json::json!(["get"]), "{what}");
                        }
                        for verb in rule["verbs"].as_array().unwrap() {
                            assert!(
                                !["escalate", "bind", "impersonate", "deletecollection"]
                                    .contains(&verb.as_str().unwrap()),
                                "{what}: {text}"
                            );
                        }
                    }
                }
                "ClusterRoleBinding" | "RoleBinding" => {
                    let role = doc["roleRef"]["name"].as_str().unwrap();
                    assert!(
                        !["cluster-admin", "admin", "edit"].contains(&role),
                        "{what}: bound to {role}"
                    );
                }
                _ => {}
            }
        }
        assert_eq!(deployments, expected_deployments, "{dir}");
    }
    // The single-namespace install grants the controller nothing cluster-wide, and watches
    // only its namespace; the leader-elected one runs two replicas that elect a leader.
    let single = kustomize(&root.join("kustomize/overlays/single-namespace")).unwrap();
    assert!(!single.iter().any(|d| d["kind"] == "ClusterRoleBinding"));
    let args = controller_args(&single);
    assert!(
        args.iter().any(|a| a == "--namespace=$(POD_NAMESPACE)"),
        "{args:?}"
    );
    let elected = kustomize(&root.join("kustomize/overlays/leader-elected")).unwrap();
    let controller = elected
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "modelsync-controller")
        .unwrap();
    assert_eq!(controller["spec"]["replicas"], 2);
    assert!(
        controller_args(&elected)
            .iter()
            .any(|a| a == "--leader-elect")
    );
}

/// The shards overlay runs one leader-elected controller per shard, each with its `--shard`,
/// its own pods (selectors that do not overlap between shards) and a Lease it may update.
#[test]
fn the_shards_overlay_runs_one_elected_controller_per_shard_each_with_its_lease() {
    require_tool("kubectl", &["version", "--client"], KUBECTL_INSTALL);
    let docs = kustomize(&repo_root().join("kustomize/overlays/shards")).unwrap();
    let role = docs
        .iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "modelsync-leader-election")
        .expect("the leader-election Role");
    let updatable: Vec<&str> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verbs"].to_string().contains("update"))
        .flat_map(|r| r["resourceNames"].as_array().unwrap())
        .map(|n| n.as_str().unwrap())
        .collect();
    let mut selectors = BTreeSet::new();
    for (deployment, shard) in [
        ("modelsync-controller", None),
        ("modelsync-controller-shard-a", Some("a")),
        ("modelsync-controller-shard-b", Some("b")),
    ] {
        let d = docs
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == deployment)
            .unwrap_or_else(|| panic!("no Deployment {deployment}"));
        let args = controller_args_of(d);
        assert!(
            args.iter().any(|a| a == "--leader-elect"),
            "{deployment}: {args:?}"
        );
        assert_eq!(d["spec"]["replicas"], 2, "{deployment}");
        let shard_args: Vec<&String> = args.iter().filter(|a| a.starts_with("--shard")).collect();
        let lease = match shard {
            Some(s) => {
                assert_eq!(shard_args, [&format!("--shard={s}")], "{deployment}");
                format!("modelsync-controller-{s}")
            }
            None => {
                assert!(shard_args.is_empty(), "{deployment}: {args:?}");
                "modelsync-controller".to_owned()
            }
        };
        assert!(
            updatable.contains(&lease.as_str()),
            "{lease} not in {updatable:?}"
        );
        selectors.insert(d["spec"]["selector"].to_string());
    }
    assert_eq!(selectors.len(), 3, "shards share a selector: {selectors:?}");
}

fn controller_args(docs: &[Value]) -> Vec<String> {
    let d = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "modelsync-controller")
        .expect("a controller Deployment");
    controller_args_of(d)
}

fn controller_args_of(d: &Value) -> Vec<String> {
    d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}
