//! Notifications end to end: the real controller tells real receivers on loopback — one that
//! parses with the official CloudEvents SDK for Python, one that checks Slack's message shape,
//! and a Go program that verifies the `generic` format's HMAC signature — about runs (Tekton
//! played by the test) and about a failing lambda.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Env, Lambda, modelsync};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use modelsync_api::modelsync::RunResult;
use modelsync_testenv::notify::{Kind, Planned, Receiver};
use modelsync_testenv::tekton::{self, RunEnd};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

async fn secret(env: &Env, name: &str, data: &[(&str, &str)]) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        string_data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(env.client.clone(), &env.ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// What `receiver` accepted, once `done` says it is enough.
async fn received_until(
    env: &Env,
    receiver: &Receiver,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    env.eventually(WAIT, what, || async {
        let got = receiver.received().await.ok()?;
        done(&got).then_some(got)
    })
    .await
}

fn with_field<'a>(got: &'a [Value], pointer: &str, value: &str) -> Vec<&'a Value> {
    got.iter()
        .filter(|v| v.pointer(pointer).and_then(Value::as_str) == Some(value))
        .collect()
}

async fn warnings(env: &Env, reason: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.client.clone(), &env.ns);
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

async fn metric(controller: &modelsync_testenv::Controller, line_start: &str) -> f64 {
    let text = controller.scrape().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// For `--nocapture`: what a receiver got, as the README shows it.
fn show(what: &str, value: &Value) {
    println!("{what}:\n{}", serde_json::to_string_pretty(value).unwrap());
}

#[tokio::test]
async fn each_format_is_delivered_and_a_receiver_down_at_first_gets_it_on_a_retry() {
    let env = Env::new("notify").await;
    let lambda = Lambda::start(env.logs.path()).await;
    lambda
        .answer(
            "retrain",
            json!({"needsSync": true, "parameters": {"model": "m-1"}, "reason": "stale"}),
        )
        .await;
    let ce = Planned::new(Kind::CloudEvents).unwrap();
    let slack = Planned::new(Kind::Slack)
        .unwrap()
        .start(env.logs.path())
        .await
        .unwrap();
    let generic = Planned::new(Kind::Generic {
        hmac_key: "k3y-for-tests".into(),
    })
    .unwrap()
    .start(env.logs.path())
    .await
    .unwrap();
    secret(&env, "ce-hook", &[("address", &ce.url()), ("token", "t0k")]).await;
    secret(&env, "slack-hook", &[("address", &slack.url)]).await;
    secret(
        &env,
        "generic-hook",
        &[("address", &generic.url), ("hmacKey", "k3y-for-tests")],
    )
    .await;
    let mut controller = env.controller();
    controller.wait_healthy(WAIT).await.unwrap();
    env.apply(modelsync(
        "trainer",
        &lambda.url("retrain"),
        json!({"notify": [
            {"secretRef": {"name": "ce-hook"}, "format": "cloudevents",
             "events": ["RunStarted", "RunSucceeded", "RunFailed", "RunCancelled"]},
            {"secretRef": {"name": "slack-hook"}, "format": "slack"},
            {"secretRef": {"name": "generic-hook"}, "format": "generic",
             "events": ["RunStarted", "RunSucceeded"]},
            {"secretRef": {"name": "missing-hook"}, "format": "generic"},
        ]}),
    ))
    .await;

    let run = env
        .eventually(WAIT, "a run", || async {
            env.runs_of("trainer").await.pop()
        })
        .await
        .name_any();
    lambda.answer("retrain", json!({"needsSync": false})).await;
    tekton::start(&env.client, &env.ns, &run).await.unwrap();
    tekton::finish(&env.client, &env.ns, &run, RunEnd::Succeeded)
        .await
        .unwrap();
    env.eventually(WAIT, "status naming the run as succeeded", || async {
        let last = env.get("trainer").await.status?.last_run?;
        (last.name == run && last.result == RunResult::Succeeded).then_some(())
    })
    .await;

    // The CloudEvents receiver was down: the controller warned and retried; now it comes up.
    env.eventually(
        WAIT,
        "a NotificationFailed event for the receiver that is down",
        || async {
            warnings(&env, "NotificationFailed")
                .await
                .into_iter()
                .find(|n| n.contains("Secret ce-hook (cloudevents)") && n.contains("retrying in"))
        },
    )
    .await;
    let ce = ce.start(env.logs.path()).await.unwrap();
    let source = format!(
        "/apis/modelsync.dev/v1alpha1/namespaces/{}/modelsyncs/trainer",
        env.ns
    );
    let got = received_until(
        &env,
        &ce,
        "RunStarted and RunSucceeded as CloudEvents",
        |got| {
            !with_field(got, "/type", "dev.modelsync.runsucceeded.v1").is_empty()
                && !with_field(got, "/type", "dev.modelsync.runstarted.v1").is_empty()
        },
    )
    .await;
    for event in &got {
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], source.as_str());
        assert_eq!(event["subject"], run.as_str());
        assert_eq!(event["datacontenttype"], "application/json");
        assert_eq!(event["id"], event["eventIdHeader"], "{event}");
        assert_eq!(event["authorization"], "Bearer t0k");
        assert_eq!(event["data"]["name"], "trainer");
        assert!(event["time"].as_str().is_some_and(|t| t.starts_with("20")));
    }
    let ended = with_field(&got, "/type", "dev.modelsync.runsucceeded.v1")[0];
    show("the CloudEvents receiver (Python SDK) parsed", ended);
    assert_eq!(ended["data"]["result"], "Succeeded");
    let started = with_field(&got, "/type", "dev.modelsync.runstarted.v1")[0];
    assert_ne!(started["id"], ended["id"], "one id per event of a run");
    assert!(ce.refused().await.unwrap().is_empty());
    assert!(
        metric(
            &controller,
            "modelsync_notification_retries_total{format=\"cloudevents\"}"
        )
        .await
            >= 1.0
    );

    // Slack: the default events (no RunStarted), a readable text.
    let got = received_until(&env, &slack, "the Slack message", |got| !got.is_empty()).await;
    assert_eq!(
        got[0]["text"],
        format!(
            ":white_check_mark: RunSucceeded: ModelSync {}/trainer: PipelineRun {run} succeeded",
            env.ns
        )
    );
    let fields = got[0]["blocks"][1]["fields"].to_string();
    assert!(
        fields.contains(&format!("*PipelineRun*\\n{run}")),
        "{fields}"
    );
    assert!(fields.contains("*Result*\\nSucceeded"), "{fields}");
    show("the Slack receiver accepted", &got[0]);

    // Generic: the Go receiver verified each signature before accepting.
    let got = received_until(&env, &generic, "both generic documents", |got| {
        got.len() >= 2
    })
    .await;
    // Notices are sent side by side, so they may arrive in any order; each has its time.
    let mut reasons: Vec<&str> = got.iter().filter_map(|d| d["reason"].as_str()).collect();
    reasons.sort();
    assert_eq!(reasons, ["RunStarted", "RunSucceeded"]);
    let ended = with_field(&got, "/reason", "RunSucceeded")[0];
    assert_eq!(ended["involvedObject"]["kind"], "ModelSync");
    assert_eq!(ended["involvedObject"]["name"], "trainer");
    assert_eq!(ended["severity"], "info");
    assert_eq!(ended["metadata"]["run"], run.as_str());
    assert_eq!(ended["metadata"]["id"], ended["eventIdHeader"]);
    assert!(generic.refused().await.unwrap().is_empty());
    show(
        "the generic receiver (Go) verified X-Signature and accepted",
        ended,
    );

    // A Secret that does not exist is named in a warning; polling went on regardless.
    let missing = env
        .eventually(WAIT, "a warning naming the missing Secret", || async {
            warnings(&env, "NotificationFailed")
                .await
                .into_iter()
                .find(|n| n.contains("missing-hook"))
        })
        .await;
    assert!(
        missing.contains(&format!(
            "Secret {}/missing-hook (spec.notify) does not exist",
            env.ns
        )) && missing.contains("with key address"),
        "{missing}"
    );
    // The dead receiver warned once, not once per attempt.
    let warned = warnings(&env, "NotificationFailed")
        .await
        .into_iter()
        .filter(|n| n.contains("missing-hook"))
        .count();
    assert_eq!(warned, 1, "warnings are rate-limited per receiver");
    for note in warnings(&env, "NotificationFailed").await {
        println!("Warning NotificationFailed: {note}");
    }
    assert!(
        metric(
            &controller,
            "modelsync_notifications_sent_total{format=\"slack\"}"
        )
        .await
            >= 1.0
    );
    controller.stop();
}

#[tokio::test]
async fn a_controller_restart_between_run_end_and_delivery_still_delivers() {
    let env = Env::new("notify-restart").await;
    let lambda = Lambda::start(env.logs.path()).await;
    lambda
        .answer(
            "retrain",
            json!({"needsSync": true, "parameters": {"model": "m-1"}}),
        )
        .await;
    let receiver = Planned::new(Kind::CloudEvents).unwrap();
    secret(&env, "hook", &[("address", &receiver.url())]).await;
    let mut controller = env.controller();
    env.apply(modelsync(
        "trainer",
        &lambda.url("retrain"),
        json!({"notify": [{"secretRef": {"name": "hook"}, "format": "cloudevents"}]}),
    ))
    .await;
    let run = env
        .eventually(WAIT, "a run", || async {
            env.runs_of("trainer").await.pop()
        })
        .await
        .name_any();
    lambda.answer("retrain", json!({"needsSync": false})).await;
    tekton::start(&env.client, &env.ns, &run).await.unwrap();
    tekton::finish(&env.client, &env.ns, &run, RunEnd::Failed)
        .await
        .unwrap();
    // Status records the end; the receiver is down, so the notice waits in memory only...
    env.eventually(WAIT, "status naming the run as failed", || async {
        let last = env.get("trainer").await.status?.last_run?;
        (last.result == RunResult::Failed).then_some(())
    })
    .await;
    // ...and the process holding it dies.
    controller.kill9();
    let receiver = receiver.start(env.logs.path()).await.unwrap();
    controller.restart().unwrap();
    let got = received_until(&env, &receiver, "RunFailed after the restart", |got| {
        !with_field(got, "/type", "dev.modelsync.runfailed.v1").is_empty()
    })
    .await;
    let failed = with_field(&got, "/type", "dev.modelsync.runfailed.v1")[0];
    assert_eq!(failed["subject"], run.as_str());
    assert_eq!(failed["data"]["result"], "Failed");
    // RunStarted is not among the default events.
    assert!(with_field(&got, "/type", "dev.modelsync.runstarted.v1").is_empty());
    controller.stop();
}

#[tokio::test]
async fn lambda_failing_after_three_errors_then_recovered() {
    let env = Env::new("notify-lambda").await;
    let lambda = Lambda::start(env.logs.path()).await;
    lambda
        .script(
            "retrain",
            json!({"status": 500, "body": "model store down"}),
        )
        .await;
    let receiver = Planned::new(Kind::Slack)
        .unwrap()
        .start(env.logs.path())
        .await
        .unwrap();
    secret(&env, "hook", &[("address", &receiver.url)]).await;
    // A receiver that accepts connections and never answers: each attempt waits out the
    // controller's --notify-timeout (10s), which must delay no pass.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging_url = format!("http://{}/hook", hanging.local_addr().unwrap());
    secret(&env, "hanging-hook", &[("address", &hanging_url)]).await;
    let mut controller = env.controller();
    env.apply(modelsync(
        "trainer",
        &lambda.url("retrain"),
        json!({"notify": [
            {"secretRef": {"name": "hanging-hook"}, "format": "generic"},
            {"secretRef": {"name": "hook"}, "format": "slack"},
        ]}),
    ))
    .await;
    let got = received_until(&env, &receiver, "LambdaFailing", |got| !got.is_empty()).await;
    let calls_at_failing = lambda.calls("retrain").await;
    assert!(calls_at_failing >= 3, "told after {calls_at_failing} calls");
    let text = got[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(":x: LambdaFailing: ModelSync {}/trainer: the lambda failed 3 times in a row: LambdaError:", env.ns)),
        "{text}"
    );
    assert!(text.contains("500"), "{text}");
    // Polling keeps its pace (retries 1s apart, the poll interval) while the hanging
    // receiver holds LambdaFailing; and more failures in the same streak tell nothing new.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let calls = lambda.calls("retrain").await;
    assert!(
        calls >= calls_at_failing + 3,
        "{} lambda calls in the 5s a receiver hung",
        calls - calls_at_failing
    );
    assert_eq!(receiver.received().await.unwrap().len(), 1);
    drop(hanging);

    lambda.answer("retrain", json!({"needsSync": false})).await;
    let got = received_until(&env, &receiver, "Recovered", |got| got.len() >= 2).await;
    let text = got[1]["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            ":white_check_mark: Recovered: ModelSync {}/trainer: the lambda answers again",
            env.ns
        )),
        "{text}"
    );
    assert_ne!(got[0]["eventIdHeader"], got[1]["eventIdHeader"]);
    controller.stop();
}

// The receivers are the tests' judges: each must refuse what is not its format.
#[tokio::test]
async fn the_receivers_refuse_what_is_not_their_format() {
    let logs = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let post = |url: String, headers: Vec<(&'static str, String)>, body: &'static str| {
        let mut request = http.post(url).body(body);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let ce = Planned::new(Kind::CloudEvents)
        .unwrap()
        .start(logs.path())
        .await
        .unwrap();
    let json = ("content-type", "application/json".to_owned());
    assert_eq!(post(ce.url.clone(), vec![json.clone()], "{}").await, 400);
    let ce_headers = vec![
        json.clone(),
        ("ce-specversion", "1.0".to_owned()),
        ("ce-type", "t".to_owned()),
        ("ce-source", "/s".to_owned()),
        ("ce-id", "1".to_owned()),
    ];
    assert_eq!(post(ce.url.clone(), ce_headers, "{}").await, 200);
    assert_eq!(ce.refused().await.unwrap().len(), 1);

    let slack = Planned::new(Kind::Slack)
        .unwrap()
        .start(logs.path())
        .await
        .unwrap();
    assert_eq!(
        post(slack.url.clone(), vec![], r#"{"text": ""}"#).await,
        400
    );
    assert_eq!(
        post(slack.url.clone(), vec![], r#"{"text": "hi"}"#).await,
        200
    );

    let generic = Planned::new(Kind::Generic {
        hmac_key: "k".into(),
    })
    .unwrap()
    .start(logs.path())
    .await
    .unwrap();
    // HMAC-SHA256 of "{}" under key "k", computed with Python's hmac module.
    let signed =
        "sha256=add853b103fbcc936a194f9eb15e29c4ff08af6e47d5d1bca4f20218e31e4fff".to_owned();
    assert_eq!(
        post(generic.url.clone(), vec![("X-Signature", signed)], "{}").await,
        200
    );
    let wrong =
        "sha256=0000000000000000000000000000000000000000000000000000000000000000".to_owned();
    assert_eq!(
        post(generic.url.clone(), vec![("X-Signature", wrong)], "{}").await,
        401
    );
    assert_eq!(post(generic.url.clone(), vec![], "{}").await, 401);
    assert_eq!(generic.refused().await.unwrap().len(), 2);
}
