//! The Helm chart (`charts/modelsync`) installs what the kustomize install does: `helm lint`
//! passes for every values file under `charts/modelsync/ci/`; `helm template` with the default
//! values renders kustomize/base object by object, and the values files named after overlays
//! render those overlays; shards add one controller per name; the `modelsync` binary takes every
//! flag the chart renders; every rendering is accepted by a real API server (server-side dry
//! run), and Helm itself installs, upgrades and uninstalls the chart on it. Helm is built from its Go module at the version `modelsync_testenv::helm` pins.

mod chart_diff;
mod manifest_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chart_diff::{diff, normalise_helm, normalise_kustomize};
use manifest_support::{KUBECTL_INSTALL, documents, kustomize, repo_root, require_tool};
use serde_json::{Value, json};

/// The ConfigMaps kustomize/base's `configMapGenerator` makes (their names get a hash suffix).
const GENERATED_CONFIG_MAPS: &[&str] = &["modelsync-lambdas-config"];

fn chart() -> PathBuf {
    repo_root().join("charts/modelsync")
}

fn values_file(name: &str) -> PathBuf {
    chart().join("ci").join(name)
}

/// Runs the pinned Helm with its config, cache and data folders in a fresh temporary folder,
/// so nothing of the user's Helm setup (repositories, plugins) takes part.
fn helm(args: &[&str]) -> Result<String, String> {
    let bin = modelsync_testenv::helm::helm().unwrap_or_else(|e| panic!("{e:#}"));
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(&bin)
        .args(args)
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "helm {} failed ({}):\n{stdout}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `helm template modelsync charts/modelsync --namespace NS [-f ci/VALUES]`, as documents.
fn template(namespace: &str, values: Option<&str>, set: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec![
        "template".to_owned(),
        "modelsync".to_owned(),
        chart.to_string_lossy().into_owned(),
        "--namespace".to_owned(),
        namespace.to_owned(),
    ];
    if let Some(values) = values {
        args.extend([
            "--values".to_owned(),
            values_file(values).to_string_lossy().into_owned(),
        ]);
    }
    for s in set {
        args.extend(["--set".to_owned(), (*s).to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = helm(&args).unwrap_or_else(|e| panic!("{e}"));
    documents(&text).unwrap_or_else(|e| panic!("helm template rendered no YAML: {e}\n{text}"))
}

fn normalised_helm(mut docs: Vec<Value>) -> Vec<Value> {
    docs.iter_mut().for_each(normalise_helm);
    docs
}

fn normalised_kustomize(dir: &str) -> Vec<Value> {
    require_tool("kubectl", &["version", "--client"], KUBECTL_INSTALL);
    let mut docs = kustomize(&repo_root().join(dir)).unwrap_or_else(|e| panic!("{e:#}"));
    for doc in &mut docs {
        normalise_kustomize(doc, GENERATED_CONFIG_MAPS);
    }
    docs
}

/// Fails with every difference, each naming the object and the path inside it.
fn assert_same(kustomize: &[Value], helm: &[Value], what: &str) {
    let lines = diff(kustomize, helm, "kustomize", "helm");
    assert!(
        lines.is_empty(),
        "{what}: the chart and kustomize install different things ({} difference(s)); change \
         both, or neither:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(
        kustomize.len() >= 10,
        "{what}: only {} objects",
        kustomize.len()
    );
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

#[test]
fn helm_lint_passes_for_the_defaults_and_every_values_file() {
    let chart = chart();
    let chart = chart.to_string_lossy();
    let out = helm(&["lint", "--strict", &chart]).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{out}"
    );
    let mut files: Vec<String> = std::fs::read_dir(chart.as_ref().to_owned() + "/ci")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("-values.yaml"))
        .collect();
    files.sort();
    assert!(
        files.iter().any(|f| f == "shards-values.yaml") && files.len() >= 5,
        "{files:?}"
    );
    for file in files {
        let values = values_file(&file);
        let out = helm(&[
            "lint",
            "--strict",
            &chart,
            "--values",
            &values.to_string_lossy(),
        ])
        .unwrap_or_else(|e| panic!("ci/{file}: {e}"));
        assert!(out.contains("0 chart(s) failed"), "ci/{file}: {out}");
    }
}

/// A wrong value stops the rendering with a message saying what is wrong and how to fix it.
/// (`helm lint` runs templates in its lint mode, where `fail` is only reported as INFO, so
/// `helm template` is the one to ask.)
#[test]
fn wrong_values_are_refused_with_what_to_do() {
    let chart = chart();
    let chart = chart.to_string_lossy();
    for (set, says) in [
        (
            "controller.shards={Bad_Shard}",
            "\"Bad_Shard\" is not a DNS label",
        ),
        ("controller.shards={gpu,gpu}", "\"gpu\" is listed twice"),
        (
            "controller.replicas=3",
            "set controller.leaderElection.enabled=true",
        ),
        ("lambdas.config=", "--set-file lambdas.config=FILE"),
    ] {
        let err = helm(&["template", "x", &chart, "--set", set]).unwrap_err();
        assert!(err.contains(says), "--set {set}: {err}");
    }
}

/// The chart's CRD is the one `modelsync crd` prints now, so a change to the ModelSync type
/// reaches Helm installs too.
#[test]
fn the_charts_crd_is_the_generated_one() {
    let path = chart().join("files/crd.yaml");
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        committed == modelsync_api::crd_yaml(),
        "{} is stale: run `cargo run -p modelsync -- crd > charts/modelsync/files/crd.yaml`",
        path.display()
    );
}

#[test]
fn defaults_render_what_kustomize_base_installs() {
    let helm = normalised_helm(template("modelsync", None, &[]));
    assert_same(
        &normalised_kustomize("kustomize/base"),
        &helm,
        "defaults vs kustomize/base",
    );
    // The lambda server's config is the same text, comments and all.
    let cm = find(&helm, "ConfigMap", "modelsync-lambdas-config");
    let file =
        std::fs::read_to_string(repo_root().join("kustomize/base/lambdas/lambdas.yaml")).unwrap();
    assert_eq!(cm["data"]["lambdas.yaml"], file.as_str());
}

#[test]
fn leader_election_values_render_the_leader_elected_overlay() {
    let helm = normalised_helm(template(
        "modelsync",
        Some("leader-elected-values.yaml"),
        &[],
    ));
    assert_same(
        &normalised_kustomize("kustomize/overlays/leader-elected"),
        &helm,
        "ci/leader-elected-values.yaml vs kustomize/overlays/leader-elected",
    );
}

#[test]
fn single_namespace_values_render_the_single_namespace_overlay() {
    let helm = normalised_helm(template("ml", Some("single-namespace-values.yaml"), &[]));
    assert_same(
        &normalised_kustomize("kustomize/overlays/single-namespace"),
        &helm,
        "ci/single-namespace-values.yaml --namespace ml vs kustomize/overlays/single-namespace",
    );
}

#[test]
fn local_image_values_render_the_local_image_overlay() {
    let helm = normalised_helm(template("modelsync", Some("local-image-values.yaml"), &[]));
    assert_same(
        &normalised_kustomize("kustomize/overlays/local-image"),
        &helm,
        "ci/local-image-values.yaml vs kustomize/overlays/local-image",
    );
}

/// What a shard adds to the leader-elected install, as kustomize/overlays/shards adds it: a
/// copy of the controller Deployment named `modelsync-controller-shard-<shard>`, labelled and
/// selected by `modelsync.dev/controller-shard: <shard>`, running `--shard=<shard>` (without the
/// spread over nodes, which the overlay gives the unlabelled controller only), and its Lease
/// `modelsync-controller-<shard>` in the leader-election Role. Built from the leader-elected
/// overlay, so a change to that controller must show in every shard's.
fn with_shards(mut docs: Vec<Value>, shards: &[&str]) -> Vec<Value> {
    let controller = find(&docs, "Deployment", "modelsync-controller").clone();
    for shard in shards {
        let mut d = controller.clone();
        d["metadata"]["name"] = json!(format!("modelsync-controller-shard-{shard}"));
        for labels in [
            ["metadata", "labels"].as_slice(),
            &["spec", "selector", "matchLabels"],
            &["spec", "template", "metadata", "labels"],
        ] {
            let labels = labels.iter().fold(&mut d, |v, key| &mut v[*key]);
            labels["modelsync.dev/controller-shard"] = json!(shard);
        }
        let pod = d["spec"]["template"]["spec"].as_object_mut().unwrap();
        pod.remove("affinity");
        let args = pod["containers"][0]["args"].as_array_mut().unwrap();
        let after_log_format = args
            .iter()
            .position(|a| a.as_str().is_some_and(|a| a.starts_with("--log-format")))
            .expect("--log-format in the controller's args")
            + 1;
        args.insert(after_log_format, json!(format!("--shard={shard}")));
        docs.push(d);
    }
    let role = docs
        .iter_mut()
        .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "modelsync-leader-election")
        .expect("a leader-election Role");
    let leases = role["rules"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["resourceNames"].is_array())
        .expect("a rule naming the Lease");
    for shard in shards {
        leases["resourceNames"]
            .as_array_mut()
            .unwrap()
            .push(json!(format!("modelsync-controller-{shard}")));
    }
    docs
}

#[test]
fn shards_add_one_controller_each_with_its_own_lease() {
    let helm = normalised_helm(template("modelsync", Some("shards-values.yaml"), &[]));
    let expected = with_shards(
        normalised_kustomize("kustomize/overlays/leader-elected"),
        &["a", "b"],
    );
    assert_same(
        &expected,
        &helm,
        "ci/shards-values.yaml vs leader-elected + shards a, b",
    );
    // kustomize/overlays/shards comes with the controller's --shard flag (issue 15); where it
    // is in the tree, the chart renders exactly it as well.
    if repo_root().join("kustomize/overlays/shards").is_dir() {
        assert_same(
            &normalised_kustomize("kustomize/overlays/shards"),
            &helm,
            "ci/shards-values.yaml vs kustomize/overlays/shards",
        );
    }
    let deployments: Vec<&str> = helm
        .iter()
        .filter(|d| d["kind"] == "Deployment")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        deployments,
        [
            "modelsync-controller",
            "modelsync-controller-shard-a",
            "modelsync-controller-shard-b",
            "modelsync-lambdas"
        ]
    );
}

#[test]
fn lambda_server_values_reach_the_pod_and_can_turn_it_off() {
    let docs = template("modelsync", Some("lambdas-values.yaml"), &[]);
    let values: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(values_file("lambdas-values.yaml")).unwrap(),
    )
    .unwrap();
    let cm = find(&docs, "ConfigMap", "modelsync-lambdas-config");
    assert_eq!(cm["data"]["lambdas.yaml"], values["lambdas"]["config"]);
    modelsync_lambdas::config::parse(cm["data"]["lambdas.yaml"].as_str().unwrap(), Path::new("/"))
        .unwrap_or_else(|e| panic!("the rendered lambdas.yaml does not parse: {e}"));
    let pod = &find(&docs, "Deployment", "modelsync-lambdas")["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][3], values["lambdas"]["extraVolumes"][0]);
    assert_eq!(
        pod["containers"][0]["volumeMounts"][3],
        values["lambdas"]["extraVolumeMounts"][0]
    );
    assert_eq!(
        pod["containers"][0]["resources"],
        values["lambdas"]["resources"]
    );
    let controller = &find(&docs, "Deployment", "modelsync-controller")["spec"]["template"]["spec"]
        ["containers"][0];
    assert_eq!(controller["resources"], values["controller"]["resources"]);
    let args = controller["args"].as_array().unwrap();
    assert!(
        args.contains(&json!("--lambda-allow-cidrs=10.0.0.0/8")),
        "{args:?}"
    );
    assert!(args.contains(&json!("--concurrency=64")), "{args:?}");

    // A different config rolls the server's pods; the same one does not.
    let default = template("modelsync", None, &[]);
    let checksum = |docs: &[Value]| {
        find(docs, "Deployment", "modelsync-lambdas")["spec"]["template"]["metadata"]["annotations"]
            ["checksum/config"]
            .clone()
    };
    assert_ne!(checksum(&docs), checksum(&default));
    assert_eq!(
        checksum(&default),
        checksum(&template("modelsync", None, &[]))
    );

    let without = template("modelsync", None, &["lambdas.enabled=false"]);
    let names: Vec<String> = without.iter().map(chart_diff::describe).collect();
    assert!(!names.iter().any(|n| n.contains("lambdas")), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n == "Deployment modelsync/modelsync-controller")
    );
}

/// Every flag the chart gives a container is one the `modelsync` binary takes: each container's
/// args are parsed by the real binary (with `--help` last, which succeeds only when everything
/// before it parsed).
#[test]
fn the_binary_takes_every_rendered_flag() {
    let bin = env!("CARGO_BIN_EXE_modelsync");
    let help = Command::new(bin)
        .args(["controller", "--help"])
        .output()
        .unwrap();
    // `--shard` comes with the controller's sharding (issue 15); the shards rendering is checked
    // once the binary has it.
    let has_shard = String::from_utf8_lossy(&help.stdout).contains("--shard");
    let mut settings = vec![
        ("modelsync", None),
        ("modelsync", Some("leader-elected-values.yaml")),
        ("ml", Some("single-namespace-values.yaml")),
        ("modelsync", Some("lambdas-values.yaml")),
    ];
    if has_shard {
        settings.push(("modelsync", Some("shards-values.yaml")));
    }
    let mut checked = 0;
    for (namespace, values) in settings {
        for doc in template(namespace, values, &[]) {
            if doc["kind"] != "Deployment" {
                continue;
            }
            let args: Vec<&str> = doc["spec"]["template"]["spec"]["containers"][0]["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let out = Command::new(bin)
                .args(&args)
                .arg("--help")
                .env_clear()
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}: modelsync {}: {}",
                values.unwrap_or("defaults"),
                chart_diff::describe(&doc),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} containers checked");

    // And a flag the binary lacks is caught.
    let docs = template(
        "modelsync",
        None,
        &["controller.extraArgs={--no-such-flag}"],
    );
    let args =
        find(&docs, "Deployment", "modelsync-controller")["spec"]["template"]["spec"]["containers"]
            [0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect::<Vec<_>>();
    let out = Command::new(bin)
        .args(&args)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

/// Every setting's rendering, applied with `kubectl apply --server-side --dry-run=server` to
/// the local control plane (Tekton's CRDs installed): the API server validates each object
/// against its schema and admission, and stores none.
#[tokio::test]
async fn the_api_server_accepts_every_rendering() {
    require_tool("kubectl", &["version", "--client"], KUBECTL_INSTALL);
    let cp = modelsync_testenv::shared();
    let client = cp.client().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut applied = 0;
    for (namespace, values) in [
        ("modelsync", None),
        ("modelsync", Some("leader-elected-values.yaml")),
        ("ml", Some("single-namespace-values.yaml")),
        ("modelsync", Some("local-image-values.yaml")),
        ("modelsync", Some("shards-values.yaml")),
        ("modelsync", Some("lambdas-values.yaml")),
    ] {
        // A dry run creates no Namespace, and the namespaced objects need theirs.
        modelsync_testenv::create_namespace(&client, namespace)
            .await
            .unwrap();
        let docs = template(namespace, values, &[]);
        let file = dir.path().join("rendered.json");
        let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
        std::fs::write(&file, list.to_string()).unwrap();
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(cp.kubeconfig())
            .args(["apply", "--server-side", "--dry-run=server"])
            // The install test beside this one owns the same cluster objects for real; who
            // owns a field is no question for validation.
            .args([
                "--force-conflicts",
                "--field-manager=modelsync-chart-test",
                "-f",
            ])
            .arg(&file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let setting = values.unwrap_or("defaults");
        if !out.status.success() {
            failures.push(format!(
                "{setting}: {}{}",
                stdout,
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        let accepted = stdout
            .matches("serverside-applied (server dry run)")
            .count();
        if accepted != docs.len() {
            failures.push(format!(
                "{setting}: {accepted} of {} objects applied:\n{stdout}",
                docs.len()
            ));
        }
        applied += accepted;
    }
    assert!(failures.is_empty(), "rejected:\n{}", failures.join("\n"));
    assert!(applied >= 6 * 12, "only {applied} objects applied");
}

/// The dry run above can fail: an object the schema refuses is rejected.
#[tokio::test]
async fn the_dry_run_rejects_a_broken_rendering() {
    let cp = modelsync_testenv::shared();
    let client = cp.client().await.unwrap();
    modelsync_testenv::create_namespace(&client, "modelsync")
        .await
        .unwrap();
    let mut docs = template("modelsync", None, &[]);
    let controller = docs
        .iter_mut()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "modelsync-controller")
        .unwrap();
    controller["spec"]["replicas"] = json!("two");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.json");
    std::fs::write(
        &file,
        json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string(),
    )
    .unwrap();
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .args(["apply", "--server-side", "--dry-run=server", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("replicas"), "{stderr}");
}

/// Helm itself installs the chart on the control plane (which has no ModelSync CRD until the
/// chart brings it) the way the README says, upgrades the release to shards, and uninstalls
/// it, leaving the CRD.
#[tokio::test]
async fn helm_installs_upgrades_and_uninstalls_the_chart() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::rbac::v1::Role;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::Api;

    const NS: &str = "modelsync-helm";
    let cp = modelsync_testenv::shared();
    let client = cp.client().await.unwrap();
    let chart = chart();
    let chart = chart.to_string_lossy();
    let kubeconfig = cp.kubeconfig().to_string_lossy().into_owned();
    let release = |verb: &str, extra: &[&str]| {
        let mut args = vec![verb, "modelsync"];
        if verb != "uninstall" {
            args.push(&chart);
        }
        args.extend(["--namespace", NS, "--kubeconfig", &kubeconfig]);
        args.extend(extra);
        helm(&args).unwrap_or_else(|e| panic!("{e}"))
    };

    // What the README warns of: `--create-namespace` makes the namespace, and then the chart's
    // own Namespace object cannot be created.
    let err = helm(&[
        "install",
        "modelsync",
        &chart,
        "--namespace",
        "modelsync-helm-created",
        "--create-namespace",
        "--kubeconfig",
        &kubeconfig,
    ])
    .unwrap_err();
    assert!(err.contains("already exists"), "{err}");

    // Helm keeps its release record in the release's namespace, so that must exist first; the
    // chart's Namespace object then takes it over (and labels it for Pod Security).
    modelsync_testenv::create_namespace(&client, NS)
        .await
        .unwrap();
    let out = release("install", &["--take-ownership"]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let names = |list: Vec<Deployment>| {
        let mut names: Vec<String> = list.into_iter().filter_map(|d| d.metadata.name).collect();
        names.sort();
        names
    };
    assert_eq!(
        names(deployments.list(&Default::default()).await.unwrap().items),
        ["modelsync-controller", "modelsync-lambdas"]
    );
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let namespace = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .get(NS)
        .await
        .unwrap();
    assert_eq!(
        namespace.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let crd = crds.get("modelsyncs.modelsync.dev").await.unwrap();
    assert_eq!(
        crd.metadata.labels.unwrap()["app.kubernetes.io/managed-by"],
        "Helm"
    );

    let values = values_file("shards-values.yaml");
    let out = release("upgrade", &["--values", &values.to_string_lossy()]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert_eq!(
        names(deployments.list(&Default::default()).await.unwrap().items),
        [
            "modelsync-controller",
            "modelsync-controller-shard-a",
            "modelsync-controller-shard-b",
            "modelsync-lambdas"
        ]
    );
    let shard_a = deployments
        .get("modelsync-controller-shard-a")
        .await
        .unwrap();
    let args = shard_a.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.contains(&"--shard=a".to_owned()), "{args:?}");
    let role = Api::<Role>::namespaced(client.clone(), NS)
        .get("modelsync-leader-election")
        .await
        .unwrap();
    let leases = role.rules.unwrap()[1].resource_names.clone().unwrap();
    assert_eq!(
        leases,
        [
            "modelsync-controller",
            "modelsync-controller-a",
            "modelsync-controller-b"
        ]
    );

    let out = release("uninstall", &[]);
    assert!(out.contains("uninstalled"), "{out}");
    assert!(
        deployments
            .get_opt("modelsync-controller")
            .await
            .unwrap()
            .is_none_or(|d| d.metadata.deletion_timestamp.is_some()),
        "the controller outlived helm uninstall"
    );
    let crd = crds.get("modelsyncs.modelsync.dev").await.unwrap();
    assert!(
        crd.metadata.deletion_timestamp.is_none(),
        "helm uninstall deleted the CRD despite crds.keep"
    );
}
