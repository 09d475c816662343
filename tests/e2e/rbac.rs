//! The RBAC of `kustomize/base` is enough, and no more: the real `modelsync controller` runs
//! with a token of the `modelsync-controller` service account (TokenRequest API) through full
//! run cycles with leader election, reading the lambda Secret its ModelSync names, and that
//! identity is refused what the install does not grant (listing or watching Secrets, minting
//! tokens, changing ModelSync specs).

mod common;
mod manifest_support;

use std::path::Path;
use std::time::Duration;

use common::{Env, Lambda, modelsync, ready};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchParams};
use manifest_support::{KUBECTL_INSTALL, apply, describe, kustomize, repo_root, require_tool};
use modelsync_testenv::tekton::{self, RunEnd};
use modelsync_testenv::{ControllerCommand, spawn_controller};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const NS: &str = "modelsync";
const SA: &str = "modelsync-controller";

/// Applies the base's namespace, service accounts and RBAC for real; returns what it applied.
async fn install_base_rbac(client: &kube::Client) -> Vec<String> {
    require_tool("kubectl", &["version", "--client"], KUBECTL_INSTALL);
    let docs = kustomize(&repo_root().join("kustomize/base")).unwrap();
    let mut applied = Vec::new();
    for doc in docs.iter().filter(|d| {
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ]
        .contains(&d["kind"].as_str().unwrap_or_default())
    }) {
        apply(client, doc, NS, false)
            .await
            .unwrap_or_else(|e| panic!("applying {}: {e:#}", describe(doc)));
        applied.push(describe(doc));
    }
    applied
}

/// A kubeconfig for the service account, with a token from the TokenRequest API.
async fn service_account_kubeconfig(admin: &kube::Client, dir: &Path) -> std::path::PathBuf {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), NS)
        .create_token_request(SA, &PostParams::default(), &request)
        .await
        .expect("TokenRequest for the controller's service account")
        .status
        .and_then(|s| s.token)
        .expect("a token");
    let admin_config = std::fs::read_to_string(common::control_plane().kubeconfig()).unwrap();
    let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&admin_config).unwrap();
    config["users"][0]["name"] = "modelsync-controller".into();
    config["users"][0]["user"] = serde_yaml_ng::from_str(&format!("token: {token}")).unwrap();
    config["contexts"][0]["context"]["user"] = "modelsync-controller".into();
    let path = dir.join("controller-kubeconfig");
    std::fs::write(&path, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    path
}

async fn client_for(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn the_controller_runs_with_the_base_rbac_and_nothing_more() {
    let env = Env::new("rbac").await; // the shared control plane with the ModelSync CRD
    let applied = install_base_rbac(&env.client).await;
    assert!(
        applied.iter().any(|a| a.starts_with("ClusterRole ")) && applied.len() >= 7,
        "{applied:?}"
    );
    let kubeconfig = service_account_kubeconfig(&env.client, env.logs.path()).await;
    let sa = client_for(&kubeconfig).await;

    // Denied what the install does not grant, in the watched namespace and in its own: Secrets
    // may be read one by name (`get`, for spec.lambdaSecretRef), never enumerated.
    forbidden(
        Api::<Secret>::namespaced(sa.clone(), &env.ns)
            .list(&ListParams::default())
            .await,
        "listing Secrets",
    );
    forbidden(
        Api::<Secret>::namespaced(sa.clone(), NS)
            .list(&ListParams::default())
            .await,
        "listing Secrets in its own namespace",
    );
    forbidden(
        Api::<Secret>::namespaced(sa.clone(), &env.ns)
            .watch(&WatchParams::default(), "0")
            .await
            .map(|_| ()),
        "watching Secrets",
    );
    match Api::<Secret>::namespaced(sa.clone(), NS)
        .get("anything")
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        other => panic!("getting a Secret by name: expected 404 Not Found, got {other:?}"),
    }
    forbidden(
        Api::<ServiceAccount>::namespaced(sa.clone(), NS)
            .create_token_request(SA, &PostParams::default(), &TokenRequest::default())
            .await,
        "minting tokens",
    );

    let lambda = Lambda::start(env.logs.path()).await;
    lambda
        .answer(
            "retrain",
            json!({"needsSync": true, "parameters": {"model": "m-1"}, "reason": "stale"}),
        )
        .await;
    // The ModelSync names a lambda Secret, which the controller reads as its service account.
    let token = "rbac-lambda-token-91c2";
    Api::<Secret>::namespaced(env.client.clone(), &env.ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "lambda-auth"},
                "stringData": {"token": token},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    env.apply(modelsync(
        "trainer",
        &lambda.url("retrain"),
        json!({"lambdaSecretRef": {"name": "lambda-auth"}}),
    ))
    .await;
    forbidden(
        Api::<modelsync_api::ModelSync>::namespaced(sa.clone(), &env.ns)
            .patch(
                "trainer",
                &PatchParams::apply("intruder"),
                &Patch::Apply(json!({
                    "apiVersion": "modelsync.dev/v1alpha1", "kind": "ModelSync",
                    "metadata": {"name": "trainer"}, "spec": {"suspend": true},
                })),
            )
            .await,
        "changing a ModelSync's spec",
    );

    // The real binary, as the service account, leader-elected on the base's Lease.
    let pod = format!("modelsync-controller-rbac-{}", env.ns);
    let command = ControllerCommand::new(Path::new(env!("CARGO_BIN_EXE_modelsync")), &kubeconfig)
        .namespace(&env.ns)
        .arg("--leader-elect")
        .env("POD_NAME", &pod)
        .env("POD_NAMESPACE", NS)
        .log_dir(env.logs.path());
    let mut controller = spawn_controller(command).expect("starting modelsync controller");

    let mut finished = Vec::new();
    for (cycle, model) in ["m-1", "m-2"].into_iter().enumerate() {
        lambda
            .answer(
                "retrain",
                json!({"needsSync": true, "parameters": {"model": model}, "reason": "stale"}),
            )
            .await;
        let run = env
            .eventually(WAIT, &format!("run {} for {model}", cycle + 1), || async {
                env.runs_of("trainer")
                    .await
                    .into_iter()
                    .map(|r| r.name_any())
                    .find(|n| !finished.contains(n))
            })
            .await;
        lambda
            .answer("retrain", json!({"needsSync": false, "reason": "fresh"}))
            .await;
        tekton::start(&env.client, &env.ns, &run).await.unwrap();
        tekton::finish(&env.client, &env.ns, &run, RunEnd::Succeeded)
            .await
            .unwrap();
        env.eventually(
            WAIT,
            &format!("status names {run} as last success"),
            || async {
                let ms = env.get("trainer").await;
                let status = ms.status.as_ref()?;
                let last = serde_json::to_value(status).ok()?["lastSuccessfulRun"]["name"].clone();
                (last == run.as_str() && ready(&ms)?.0 == "True").then_some(())
            },
        )
        .await;
        finished.push(run);
        assert!(
            controller.exited().is_none(),
            "the controller exited: {}",
            controller.log_tail()
        );
    }

    assert_eq!(
        lambda.last_headers("retrain").await["authorization"],
        format!("Bearer {token}").as_str(),
        "the lambda Secret's token was not sent"
    );
    // Events were written (events.k8s.io) and the Lease is held by this identity.
    let events = Api::<Event>::namespaced(env.client.clone(), &env.ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let reasons: Vec<Value> = events
        .items
        .iter()
        .map(|e| json!(e.reason.clone().unwrap_or_default()))
        .collect();
    assert!(
        reasons.contains(&json!("RunStarted")),
        "events: {reasons:?}"
    );
    let lease = Api::<Lease>::namespaced(env.client.clone(), NS)
        .get("modelsync-controller")
        .await
        .unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some(pod.as_str())
    );
    let text = controller.log();
    assert!(
        !text.to_lowercase().contains("forbidden"),
        "the controller was refused something:\n{}",
        controller.log_tail()
    );
    controller.stop();
}
