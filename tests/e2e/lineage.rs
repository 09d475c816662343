//! Lineage end to end: the real controller sends OpenLineage events to a receiver on loopback
//! while a trainer and a deployer ModelSync run (Tekton played by patching run status, results
//! included), every event checked against OpenLineage's JSON Schemas.

mod common;
mod lineage_support;

use std::time::Duration;

use common::{Env, Lambda, modelsync};
use kube::ResourceExt;
use lineage_support::{Receiver, Schemas};
use modelsync_testenv::tekton::{self, RunEnd};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const DATA_REPO: &str = "http://git.test/ml.git";
const GITOPS_REPO: &str = "http://git.test/gitops.git";

/// The newest run of `name` not among `seen`.
async fn new_run(env: &Env, name: &str, seen: &[String]) -> modelsync_api::PipelineRun {
    env.eventually(WAIT, &format!("a new run of {name}"), || async {
        env.runs_of(name)
            .await
            .into_iter()
            .find(|r| !seen.contains(&r.name_any()))
    })
    .await
}

async fn events(env: &Env, receiver: &Receiver, run_id: &str, count: usize) -> Vec<Value> {
    env.eventually(WAIT, &format!("{count} events of run {run_id}"), || async {
        let got = receiver.events_of(run_id);
        (got.len() >= count).then_some(got)
    })
    .await
}

/// `modelsync lineage NAME -o OUTPUT`: stdout, or stderr when it fails.
fn lineage_verb(ns: &str, name: &str, output: &str) -> Result<String, String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelsync"))
        .args(["lineage", name, "-n", ns, "-o", output, "--kubeconfig"])
        .arg(common::control_plane().kubeconfig())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

fn named(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["namespace"].as_str().unwrap().to_owned(),
                d["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn training_and_deploy_runs_send_start_and_end_joined_by_the_model() {
    let schemas = Schemas::load();
    let env = Env::new("lineage").await;
    let receiver = Receiver::start().await;
    let lambda = Lambda::start(env.logs.path()).await;
    lambda.answer("train", json!({"needsSync": false})).await;
    lambda.answer("deploy", json!({"needsSync": false})).await;
    let controller = env.controller_with(&[
        "--openlineage-url",
        &receiver.url(),
        "--openlineage-namespace",
        "e2e",
        "--openlineage-api-key",
        "k3y",
    ]);
    env.apply(modelsync("trainer", &lambda.url("train"), json!({})))
        .await;
    env.apply(modelsync("deployer", &lambda.url("deploy"), json!({})))
        .await;

    // The trainer says yes, reading the data at a revision: START names it.
    lambda
        .answer(
            "train",
            json!({"needsSync": true, "reason": "data/ changed", "revision": "c0ffee",
                   "parameters": {"model": "m-2"},
                   "inputs": [{"namespace": DATA_REPO, "name": "data", "version": "c0ffee"}],
                   "outputs": [{"namespace": DATA_REPO, "name": "models"}]}),
        )
        .await;
    let train = new_run(&env, "trainer", &[]).await;
    lambda.answer("train", json!({"needsSync": false})).await;
    let train_id = train.uid().unwrap();
    let start = &events(&env, &receiver, &train_id, 1).await[0];
    assert_eq!(start["eventType"], "START");
    assert_eq!(
        start["job"],
        json!({"namespace": "e2e", "name": format!("{}/trainer", env.ns)})
    );
    let decision = &start["run"]["facets"]["modelsync_decision"];
    assert_eq!(decision["lambdaUrl"], lambda.url("train"));
    assert_eq!(decision["reason"], "data/ changed");
    assert_eq!(decision["parameters"], json!({"model-id": "m-2"}));
    assert_eq!(
        start["inputs"][0]["facets"]["version"]["datasetVersion"],
        "c0ffee"
    );

    // Tekton ends it with the model it recorded.
    let client = env.client.clone();
    tekton::set_results(
        &client,
        &env.ns,
        &train.name_any(),
        json!([
            {"name": "model-id", "value": "m-2"},
            {"name": "model_ARTIFACT_OUTPUTS", "value": {
                "uri": format!("{DATA_REPO}#models/m-2.yaml"), "digest": "sha1:1111"}},
        ]),
    )
    .await
    .unwrap();
    tekton::finish(&client, &env.ns, &train.name_any(), RunEnd::Succeeded)
        .await
        .unwrap();
    let complete = events(&env, &receiver, &train_id, 2).await[1].clone();
    assert_eq!(complete["eventType"], "COMPLETE");
    let model = (DATA_REPO.to_owned(), "models/m-2.yaml".to_owned());
    assert_eq!(named(&complete["outputs"]), vec![model.clone()]);
    assert_eq!(
        complete["outputs"][0]["facets"]["version"]["datasetVersion"],
        "sha1:1111"
    );

    // The deployer reads that model (the lambda names it as the trainer's run did).
    lambda
        .answer(
            "deploy",
            json!({"needsSync": true, "parameters": {"model": "m-2"}, "revision": "beef",
                   "inputs": [{"namespace": DATA_REPO, "name": "models/m-2.yaml"}],
                   "outputs": [{"namespace": GITOPS_REPO, "name": "deploy/model.yaml"}]}),
        )
        .await;
    let deploy = new_run(&env, "deployer", &[]).await;
    lambda.answer("deploy", json!({"needsSync": false})).await;
    let deploy_id = deploy.uid().unwrap();
    let deploy_start = events(&env, &receiver, &deploy_id, 1).await[0].clone();
    assert_eq!(
        named(&deploy_start["inputs"]),
        named(&complete["outputs"]),
        "the deploy run's input is the training run's output"
    );
    let pr = "https://github.test/o/gitops/pull/7";
    tekton::set_results(
        &client,
        &env.ns,
        &deploy.name_any(),
        json!([
            {"name": "pr-url", "value": pr},
            {"name": "pr_ARTIFACT_OUTPUTS", "value": {
                "uri": format!("{GITOPS_REPO}#deploy/model.yaml"), "digest": "sha1:2222", "pr-url": pr}},
        ]),
    )
    .await
    .unwrap();
    tekton::finish(&client, &env.ns, &deploy.name_any(), RunEnd::Succeeded)
        .await
        .unwrap();
    let deployed = events(&env, &receiver, &deploy_id, 2).await[1].clone();
    assert_eq!(deployed["eventType"], "COMPLETE");
    println!("deploy COMPLETE event:\n{deployed:#}");
    let out = &deployed["outputs"][0];
    assert_eq!(
        (out["namespace"].as_str(), out["name"].as_str()),
        (Some(GITOPS_REPO), Some("deploy/model.yaml"))
    );
    assert_eq!(out["facets"]["modelsync_artifact"]["pr-url"], pr);
    assert_eq!(out["facets"]["modelsync_artifact"]["digest"], "sha1:2222");

    // `modelsync lineage` follows the same links from the cluster alone.
    let chain: Value =
        serde_json::from_str(&lineage_verb(&env.ns, "deployer", "json").unwrap()).unwrap();
    assert_eq!(chain["deploy"]["name"], deploy.name_any());
    assert_eq!(chain["training"]["name"], train.name_any());
    assert_eq!(chain["training"]["modelsync"], "trainer");
    assert_eq!(chain["pullRequest"], pr);
    assert_eq!(chain["model"]["name"], "models/m-2.yaml");
    assert_eq!(chain["dataRevision"], "c0ffee");
    let table = lineage_verb(&env.ns, "deployer", "table").unwrap();
    println!("modelsync lineage deployer:\n{table}");
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["DATA", "REVISION", "c0ffee"]),
        "{table}"
    );
    let err = lineage_verb(&env.ns, "trainer", "table").unwrap_err();
    println!("modelsync lineage trainer:\n{err}");
    assert!(
        err.contains("read http://git.test/ml.git#data, but no succeeded run"),
        "{err}"
    );

    // A failed and a cancelled run end in FAIL and ABORT.
    let mut seen = vec![train.name_any()];
    let mut ends = Vec::new();
    for (end, revision) in [(RunEnd::Failed, "r1"), (RunEnd::Cancelled, "r2")] {
        lambda
            .answer(
                "train",
                json!({"needsSync": true, "parameters": {"model": revision}, "revision": revision}),
            )
            .await;
        let run = new_run(&env, "trainer", &seen).await;
        lambda.answer("train", json!({"needsSync": false})).await;
        seen.push(run.name_any());
        tekton::finish(&client, &env.ns, &run.name_any(), end)
            .await
            .unwrap();
        let got = events(&env, &receiver, &run.uid().unwrap(), 2).await;
        ends.push(got[1]["eventType"].as_str().unwrap().to_owned());
        if end == RunEnd::Failed {
            assert!(
                got[1]["run"]["facets"]["errorMessage"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("Failed: "),
                "{}",
                got[1]
            );
        }
    }
    assert_eq!(ends, ["FAIL", "ABORT"]);

    // Let resyncs and polls pass: each transition was still sent exactly once, with the key.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received = receiver.received();
    let mut counts = std::collections::BTreeMap::new();
    for r in &received {
        assert_eq!(r.authorization.as_deref(), Some("Bearer k3y"));
        let key = (
            r.body["run"]["runId"].as_str().unwrap().to_owned(),
            r.body["eventType"].as_str().unwrap().to_owned(),
        );
        *counts.entry(key).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 8, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    for r in &received {
        let problems = schemas.problems(&r.body);
        assert!(problems.is_empty(), "{problems:#?}\nin {:#}", r.body);
    }
    // The schemas do bite: a run id that is no UUID, a facet without its producer.
    let mut broken = received[0].body.clone();
    broken["run"]["runId"] = "run-1".into();
    broken["run"]["facets"]["modelsync_decision"]
        .as_object_mut()
        .unwrap()
        .remove("_producer");
    let problems = schemas.problems(&broken);
    assert!(problems.len() >= 2, "{problems:#?}");
    let metrics = reqwest::get(format!("{}/metrics", controller.admin_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("modelsync_lineage_events_total{outcome=\"sent\"} 8"),
        "{metrics}"
    );
}

#[tokio::test]
async fn runs_start_while_the_lineage_server_is_down_and_events_follow_when_it_is_up() {
    let schemas = Schemas::load();
    let env = Env::new("lineage-down").await;
    // A port nobody listens on yet: connections are refused.
    let port = modelsync_testenv::git::free_port_on(std::net::Ipv4Addr::LOCALHOST.into()).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let lambda = Lambda::start(env.logs.path()).await;
    lambda
        .answer(
            "train",
            json!({"needsSync": true, "parameters": {"model": "m-1"}}),
        )
        .await;
    let controller = env.controller_with(&["--openlineage-url", &format!("http://{addr}")]);
    env.apply(modelsync("trainer", &lambda.url("train"), json!({})))
        .await;

    let run = new_run(&env, "trainer", &[]).await;
    lambda.answer("train", json!({"needsSync": false})).await;
    tekton::finish(&env.client, &env.ns, &run.name_any(), RunEnd::Succeeded)
        .await
        .unwrap();
    // The run went on without the server, and the controller kept trying.
    env.eventually(WAIT, "a failed delivery attempt", || async {
        let m = reqwest::get(format!("{}/metrics", controller.admin_url()))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        m.contains("modelsync_lineage_events_total{outcome=\"retried\"}")
            .then_some(())
    })
    .await;

    let receiver = Receiver::start_on(addr).await;
    let got = events(&env, &receiver, &run.uid().unwrap(), 2).await;
    let kinds: Vec<_> = got.iter().map(|e| e["eventType"].clone()).collect();
    assert_eq!(kinds, [json!("START"), json!("COMPLETE")]);
    for e in &got {
        assert!(schemas.problems(e).is_empty(), "{:?}", schemas.problems(e));
    }
}
