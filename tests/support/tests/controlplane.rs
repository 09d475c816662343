//! The local control plane is a real one: Tekton's schema is enforced, ownerReference garbage
//! collection happens, the stand-in drives runs, and nothing outlives the handle.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, DynamicObject, ObjectMeta, PostParams};
use kube::{Api, Resource};
use modelsync_testenv::tekton::{self, RunEnd};
use serde_json::json;

fn pipelinerun(name: &str, spec: serde_json::Value) -> DynamicObject {
    let mut run = DynamicObject::new(name, &tekton::pipelinerun_resource());
    run.data = json!({ "spec": spec });
    run
}

#[tokio::test]
async fn api_server_enforces_tekton_schema() {
    let cp = modelsync_testenv::shared();
    let client = cp.client().await.unwrap();
    let ns = modelsync_testenv::namespace(&client, "schema")
        .await
        .unwrap();

    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("settings".into()),
            ..Default::default()
        },
        data: Some([("model".to_owned(), "m-1".to_owned())].into()),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    let runs = tekton::pipelineruns(&client, &ns);
    let good = pipelinerun(
        "good",
        json!({
            "pipelineRef": {"name": "retrain"},
            "params": [
                {"name": "model", "value": "m-1"},
                {"name": "tags", "value": ["a", "b"]},
            ],
            "taskRunTemplate": {"serviceAccountName": "trainer"},
            "timeouts": {"pipeline": "1h0m0s"},
        }),
    );
    runs.create(&PostParams::default(), &good).await.unwrap();

    // `params` must be a list of {name, value}; Tekton's schema says so, and so must the server.
    let bad = pipelinerun(
        "bad",
        json!({"pipelineRef": {"name": "retrain"}, "params": {"model": "m-1"}}),
    );
    let err = runs.create(&PostParams::default(), &bad).await.unwrap_err();
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(status.message.contains("params"), "{}", status.message);
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
    let bad_timeout = pipelinerun(
        "bad-timeout",
        json!({"pipelineRef": {"name": "retrain"}, "timeouts": {"pipeline": 3600}}),
    );
    assert!(matches!(
        runs.create(&PostParams::default(), &bad_timeout).await,
        Err(kube::Error::Api(s)) if s.code == 422
    ));
}

#[tokio::test]
async fn deleting_an_owner_deletes_what_it_owns() {
    let cp = modelsync_testenv::shared();
    let client = cp.client().await.unwrap();
    let ns = modelsync_testenv::namespace(&client, "gc").await.unwrap();
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);

    let owner = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("owner".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let owned = ConfigMap {
        metadata: ObjectMeta {
            name: Some("owned".into()),
            owner_references: Some(vec![owner.controller_owner_ref(&()).unwrap()]),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &owned).await.unwrap();

    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while cms.get_opt("owned").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the owned ConfigMap survived its owner: is kube-controller-manager's garbage collector running?"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn tekton_stand_in_drives_runs_to_success_and_failure() {
    let cp = modelsync_testenv::shared();
    let client = cp.client().await.unwrap();
    let ns = modelsync_testenv::namespace(&client, "standin")
        .await
        .unwrap();
    let runs = tekton::pipelineruns(&client, &ns);
    for name in ["passes", "fails"] {
        runs.create(
            &PostParams::default(),
            &pipelinerun(name, json!({"pipelineRef": {"name": "retrain"}})),
        )
        .await
        .unwrap();
        assert_eq!(
            tekton::succeeded_condition(&runs.get(name).await.unwrap()),
            None
        );
        tekton::start(&client, &ns, name).await.unwrap();
        let running = runs.get(name).await.unwrap();
        assert_eq!(
            tekton::succeeded_condition(&running),
            Some(("Unknown".into(), "Running".into()))
        );
        assert!(running.data["status"]["startTime"].is_string());
        assert!(running.data["status"]["completionTime"].is_null());
    }

    tekton::finish(&client, &ns, "passes", RunEnd::Succeeded)
        .await
        .unwrap();
    tekton::finish(&client, &ns, "fails", RunEnd::Failed)
        .await
        .unwrap();
    let passed = runs.get("passes").await.unwrap();
    assert_eq!(
        tekton::succeeded_condition(&passed),
        Some(("True".into(), "Succeeded".into()))
    );
    assert!(passed.data["status"]["completionTime"].is_string());
    let failed = runs.get("fails").await.unwrap();
    assert_eq!(
        tekton::succeeded_condition(&failed),
        Some(("False".into(), "Failed".into()))
    );
}

#[tokio::test]
async fn dropping_the_handle_leaves_no_process_behind() {
    // Its own control plane, not the shared one, so it can be dropped here.
    let cp = modelsync_testenv::ControlPlane::start().await.unwrap();
    let root = cp.root().to_path_buf();
    let client = cp.client().await.unwrap();
    let version = client.apiserver_version().await.unwrap();
    let pinned = modelsync_testenv::binaries::Versions::pinned().unwrap();
    if std::env::var_os("KUBEBUILDER_ASSETS").is_none() {
        assert_eq!(version.git_version, pinned.kubernetes);
    }
    let pids = cp.pids();
    assert!(
        pids.len() >= 3,
        "expected etcd, kube-apiserver and kube-controller-manager, found pids {pids:?}"
    );
    drop(client);
    drop(cp);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = modelsync_testenv::process::pids_mentioning(&root.display().to_string());
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes left after drop: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!root.exists(), "{} was not removed", root.display());
}
