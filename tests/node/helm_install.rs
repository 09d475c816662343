//! The Helm chart installed for real: `helm upgrade --install --take-ownership` over the stage's
//! kustomize install, the path a user takes moving from kustomize to the chart. The chart renders
//! the same objects under the same names (the e2e tier checks that), so Helm adopts them in
//! place; what only a real node shows is that the result runs: both Deployments rolled out, the
//! controller's pod Ready, and that controller starting a real PipelineRun.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use modelsync_testenv::kubectl::kubectl;
use modelsync_testenv::labelbot::{repo_root, wait_deployments};
use serde_json::{Value, json};

use crate::common::Lambda;
use crate::{ONE_AT_A_TIME, apply, client, describe, eventually, runs, work, work_modelsync};
use crate::{stage, work_namespace};

const RELEASE: &str = "modelsync";
const NAMESPACE: &str = "modelsync";

#[tokio::test(flavor = "multi_thread")]
async fn helm_takes_over_the_kustomize_install_and_its_controller_starts_runs() {
    let s = tokio::task::spawn_blocking(stage).await.unwrap();
    let _turn = ONE_AT_A_TIME.lock().await;
    let helm = tokio::task::spawn_blocking(modelsync_testenv::helm::helm)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e:#}"));

    // The lambda server's configuration, read back from the running install as a user moving
    // to the chart would, and handed to the chart whole.
    let config_map = kubectl(
        &s.kubeconfig,
        &[
            "get",
            "deploy/modelsync-lambdas",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.spec.template.spec.volumes[?(@.name==\"config\")].configMap.name}",
        ],
    )
    .unwrap();
    let lambdas_config = kubectl(
        &s.kubeconfig,
        &[
            "get",
            "configmap",
            config_map.trim(),
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.data.lambdas\\.yaml}",
        ],
    )
    .unwrap();
    assert!(
        lambdas_config.contains("routes:"),
        "the kustomize install's lambdas.yaml (ConfigMap {config_map}) reads: {lambdas_config}"
    );
    let (repository, tag) = s
        .images
        .modelsync
        .rsplit_once(':')
        .expect("the local image is named repository:tag");
    let values = json!({
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "lambdas": {"config": lambdas_config},
    });
    let dir = tempfile::tempdir().unwrap();
    let values_file = dir.path().join("values.json");
    std::fs::write(&values_file, values.to_string()).unwrap();

    let client = client(s).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let controller_pod_before = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=modelsync-controller"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.name_any())
        .collect::<Vec<_>>();

    let chart = repo_root().join("charts/modelsync");
    // Every helm call goes to the node's API server.
    let helm_on_node = || {
        let mut command = std::process::Command::new(&helm);
        command.arg("--kubeconfig").arg(&s.kubeconfig);
        command
    };
    let out = helm_on_node()
        .args(["upgrade", "--install", RELEASE])
        .arg(&chart)
        .args(["--namespace", NAMESPACE, "--take-ownership", "--wait"])
        .args(["--timeout", "5m", "--values"])
        .arg(&values_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm upgrade --install failed ({}): {}{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        describe(&s.kubeconfig, NAMESPACE)
    );

    let status = helm_on_node()
        .args(["status", RELEASE, "--namespace", NAMESPACE, "-o", "json"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap_or_else(|e| {
        panic!(
            "helm status -o json: {e}: {}",
            String::from_utf8_lossy(&status.stderr)
        )
    });
    assert_eq!(status["info"]["status"], "deployed", "{status:#}");

    wait_deployments(&s.kubeconfig, NAMESPACE, Duration::from_secs(180))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", describe(&s.kubeconfig, NAMESPACE)));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    for name in ["modelsync-controller", "modelsync-lambdas"] {
        let d = deployments.get(name).await.unwrap();
        assert_eq!(
            d.labels()
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("Helm"),
            "{name} is now the release's"
        );
        assert_eq!(
            d.annotations()
                .get("meta.helm.sh/release-name")
                .map(String::as_str),
            Some(RELEASE),
            "{name}"
        );
    }
    let lambdas = deployments.get("modelsync-lambdas").await.unwrap();
    let volumes = lambdas
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .volumes
        .unwrap();
    let config = volumes.iter().find(|v| v.name == "config").unwrap();
    assert_eq!(
        config.config_map.as_ref().map(|c| c.name.as_str()),
        Some("modelsync-lambdas-config"),
        "the lambda server reads the chart's ConfigMap"
    );

    // Every controller pod left is Ready and has not restarted: the adopted Deployment runs.
    let controller_pods = eventually(
        Duration::from_secs(120),
        "one Ready controller pod after the takeover",
        || describe(&s.kubeconfig, NAMESPACE),
        || async {
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/name=modelsync-controller"))
                .await
                .ok()?;
            let live: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let ready = |p: &Pod| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            };
            (live.len() == 1 && live.iter().all(ready)).then_some(live)
        },
    )
    .await;
    // The chart renders the controller's pod template as kustomize does, so adopting the
    // Deployment changes nothing that would roll it: the same pod keeps reconciling.
    assert_eq!(
        vec![controller_pods[0].name_any()],
        controller_pod_before,
        "the takeover rolled the controller (its pod template differs from kustomize's)"
    );
    for cs in controller_pods[0]
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
    {
        assert_eq!(
            cs.restart_count, 0,
            "controller container {} restarted",
            cs.name
        );
    }

    // And that controller acts: a ModelSync whose lambda says yes gets a real PipelineRun.
    let (client, ns) = work_namespace(s, "node-helm").await;
    let logs = tempfile::tempdir().unwrap();
    let lambda = Lambda::start_on(logs.path(), s.bridge_ip).await;
    lambda.answer("helm", work("0", "0", "helm")).await;
    apply(
        &client,
        &ns,
        work_modelsync("charted", &lambda.url("helm"), json!({})),
    )
    .await;
    let run = eventually(
        Duration::from_secs(120),
        "a run started by the Helm-installed controller",
        || describe(&s.kubeconfig, &ns),
        || async { runs(&client, &ns, "charted").await.into_iter().next() },
    )
    .await;
    println!(
        "helm release {RELEASE} deployed over the kustomize install; controller pod {} kept, Ready; run {} started",
        controller_pods[0].name_any(),
        run.name_any()
    );
}
