//! The controller end to end: the real `modelsync controller` binary against the real local
//! control plane, asking real lambda processes, with Tekton played by the test.

mod common;

use std::time::Duration;

use common::{Env, Lambda, active_runs, modelsync, ready};
use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use modelsync_testenv::ControllerCommand;
use modelsync_testenv::tekton::{self, RunEnd};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn param(
    run: &modelsync_api::PipelineRun,
    raw: &serde_json::Value,
    name: &str,
) -> Option<serde_json::Value> {
    let _ = run;
    raw["spec"]["params"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["value"].clone())
}

#[tokio::test]
async fn a_yes_starts_one_owned_run_and_the_lambda_rests_while_it_runs() {
    let env = Env::new("yes").await;
    let lambda = Lambda::start(env.logs.path()).await;
    lambda
        .answer("retrain", json!({"needsSync": false, "reason": "fresh"}))
        .await;
    let _controller = env.controller();
    env.apply(modelsync("trainer", &lambda.url("retrain"), json!({})))
        .await;

    // "No": polled every second, no run, Ready/Idle.
    env.eventually(WAIT, "two polls answered no", || async {
        (lambda.calls("retrain").await >= 2).then_some(())
    })
    .await;
    env.eventually(WAIT, "Ready=True Idle", || async {
        let ms = env.get("trainer").await;
        (ready(&ms).map(|r| (r.0, r.1)) == Some(("True".into(), "Idle".into()))).then_some(())
    })
    .await;
    assert!(env.runs_of("trainer").await.is_empty());
    let headers = lambda.last_headers("retrain").await;
    assert_eq!(headers["x-modelsync-namespace"], env.ns.as_str());
    assert_eq!(headers["x-modelsync-name"], "trainer");
    assert_eq!(headers["accept"], "application/json");

    // "Yes": exactly one run, with the mapped param, owned and labelled.
    lambda
        .answer(
            "retrain",
            json!({"needsSync": true, "parameters": {"model": "m-2", "unmapped": "x"}, "reason": "stale", "revision": "abc"}),
        )
        .await;
    let run = env
        .eventually(WAIT, "a run", || async {
            env.runs_of("trainer").await.pop()
        })
        .await;
    let raw = env.dynamic_runs().get(&run.name_any()).await.unwrap().data;
    assert_eq!(param(&run, &raw, "model-id"), Some(json!("m-2")));
    assert_eq!(param(&run, &raw, "keep"), Some(json!("me")));
    assert_eq!(param(&run, &raw, "unmapped"), None);
    assert!(
        raw["spec"]["params"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["name"] != "")
    );
    assert_eq!(run.labels()["team"], "ml");
    assert_eq!(run.labels()["modelsync.dev/name"], "trainer");
    assert_eq!(run.annotations()["owner"], "e2e");
    assert_eq!(run.annotations()["modelsync.dev/reason"], "stale");
    assert_eq!(run.annotations()["modelsync.dev/revision"], "abc");
    let ms = env.get("trainer").await;
    let owner = &run.owner_references()[0];
    assert_eq!(owner.uid, ms.uid().unwrap());
    assert_eq!(owner.controller, Some(true));

    let ms = env
        .eventually(WAIT, "status.active naming the run", || async {
            let ms = env.get("trainer").await;
            let active = ms.status.as_ref()?.active.first()?.name.clone()?;
            (active == run.name_any()).then_some(ms)
        })
        .await;
    assert_eq!(
        ms.status
            .as_ref()
            .unwrap()
            .last_decision
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("stale")
    );

    // While the run is active (Forbid), the lambda is not asked, and no second run appears.
    tekton::start(&env.client, &env.ns, &run.name_any())
        .await
        .unwrap();
    let calls = lambda.calls("retrain").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        lambda.calls("retrain").await,
        calls,
        "the lambda was asked while a run was active"
    );
    assert_eq!(env.runs_of("trainer").await.len(), 1);

    // The run succeeds; the lambda still says yes: a second run, the first recorded as success.
    tekton::finish(&env.client, &env.ns, &run.name_any(), RunEnd::Succeeded)
        .await
        .unwrap();
    let second = env
        .eventually(WAIT, "a second run", || async {
            let runs = env.runs_of("trainer").await;
            (runs.len() == 2).then(|| runs[1].clone())
        })
        .await;
    assert_ne!(second.name_any(), run.name_any());
    env.eventually(WAIT, "lastSuccessfulRun", || async {
        let ms = env.get("trainer").await;
        let last_ok = ms.status?.last_successful_run?;
        (last_ok.name == run.name_any()).then_some(())
    })
    .await;
    // Events name what happened, with the run as related object.
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.ns);
    let reasons: Vec<String> = env
        .eventually(WAIT, "RunStarted and RunSucceeded events", || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            let reasons: Vec<String> = list.items.iter().filter_map(|e| e.reason.clone()).collect();
            (reasons.iter().any(|r| r == "RunSucceeded")
                && reasons.iter().filter(|r| *r == "RunStarted").count() >= 2)
                .then_some(reasons)
        })
        .await;
    assert!(reasons.iter().all(|r| r != "LambdaError"), "{reasons:?}");
}

#[tokio::test]
async fn lambda_failures_are_reported_never_run_and_never_stall_others() {
    let env = Env::new("errors").await;
    let lambda = Lambda::start(env.logs.path()).await;
    let cases = [
        (
            "http500",
            json!({"status": 500, "body": "{\"errors\":[{\"message\":\"model store down\"}]}"}),
            "LambdaError",
            "500",
        ),
        (
            "garbage",
            json!({"body": "<html>oops</html>"}),
            "InvalidLambdaResponse",
            "not JSON",
        ),
        (
            "wrongtype",
            json!({"json": {"needsSync": "yes"}}),
            "InvalidLambdaResponse",
            "needsSync",
        ),
        (
            "huge",
            json!({"body": "x", "repeat": 2 * 1024 * 1024}),
            "InvalidLambdaResponse",
            "1048576",
        ),
        (
            "hang",
            json!({"delay": 5, "json": {"needsSync": true, "parameters": {"model": "m"}}}),
            "LambdaError",
            "did not answer within 2s",
        ),
        (
            "emptyparam",
            json!({"json": {"needsSync": true, "parameters": {"model": ""}}}),
            "InvalidLambdaResponse",
            "empty",
        ),
    ];
    for (route, script, _, _) in &cases {
        lambda.script(route, script.clone()).await;
    }
    lambda.answer("healthy", json!({"needsSync": false})).await;
    let _controller = env.controller();
    for (route, _, _, _) in &cases {
        env.apply(modelsync(route, &lambda.url(route), json!({})))
            .await;
    }
    env.apply(modelsync("healthy", &lambda.url("healthy"), json!({})))
        .await;

    for (route, _, reason, detail) in &cases {
        let (status, got_reason, message) = env
            .eventually(
                WAIT,
                &format!("a {reason} condition on {route}"),
                || async {
                    let r = ready(&env.get(route).await)?;
                    (r.1 == *reason).then_some(r)
                },
            )
            .await;
        assert_eq!(status, "False", "{route}");
        assert_eq!(got_reason, *reason);
        assert!(message.contains(&lambda.url(route)), "{route}: {message}");
        assert!(message.contains(detail), "{route}: {message}");
    }
    // The healthy lambda kept being asked about every second while the others failed or hung.
    let before = lambda.calls("healthy").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = lambda.calls("healthy").await;
    assert!(
        after - before >= 3,
        "healthy lambda asked only {} times in 5s",
        after - before
    );
    for (route, _, _, _) in &cases {
        assert!(env.runs_of(route).await.is_empty(), "{route} started a run");
    }
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.ns);
    let warnings: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .collect();
    for (route, _, reason, _) in &cases {
        assert!(
            warnings
                .iter()
                .any(|e| e.involved_object.name.as_deref() == Some(route)
                    && e.reason.as_deref() == Some(reason)),
            "no {reason} warning event for {route}"
        );
    }
}

#[tokio::test]
async fn idle_polls_write_nothing() {
    let env = Env::new("idle").await;
    let lambda = Lambda::start(env.logs.path()).await;
    // A reason that changes with every answer must not cause writes: the decision is the same.
    lambda
        .answer(
            "idle",
            json!({"needsSync": false, "reason": "model is young"}),
        )
        .await;
    let _controller = env.controller();
    env.apply(modelsync("idle", &lambda.url("idle"), json!({})))
        .await;
    env.eventually(WAIT, "first status", || async {
        ready(&env.get("idle").await).filter(|r| r.1 == "Idle")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rv = env.get("idle").await.resource_version();
    let calls = lambda.calls("idle").await;
    lambda
        .answer(
            "idle",
            json!({"needsSync": false, "reason": "model is a bit older"}),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let polls = lambda.calls("idle").await - calls;
    let writes = if env.get("idle").await.resource_version() == rv {
        0
    } else {
        1
    };
    eprintln!("idle: {polls} polls, {writes} status writes");
    assert!(polls >= 4, "only {polls} polls in 6s");
    assert_eq!(
        env.get("idle").await.resource_version(),
        rv,
        "status written during {polls} idle polls"
    );
}

#[tokio::test]
async fn suspend_resume_requested_at_and_deletion() {
    let env = Env::new("suspend").await;
    let lambda = Lambda::start(env.logs.path()).await;
    lambda.answer("s", json!({"needsSync": false})).await;
    let _controller = env.controller();
    env.apply(modelsync(
        "s",
        &lambda.url("s"),
        json!({"suspend": true, "pollInterval": "1h"}),
    ))
    .await;
    env.eventually(WAIT, "Suspended", || async {
        ready(&env.get("s").await).filter(|r| r.1 == "Suspended")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        lambda.calls("s").await,
        0,
        "a suspended ModelSync asked its lambda"
    );

    // Resume: the spec changed, so it is checked at once (not in an hour).
    env.apply(modelsync(
        "s",
        &lambda.url("s"),
        json!({"suspend": false, "pollInterval": "1h"}),
    ))
    .await;
    env.eventually(WAIT, "a check after resume", || async {
        (lambda.calls("s").await == 1).then_some(())
    })
    .await;
    // requested-at asks for a check now, and is echoed in status.
    lambda
        .answer(
            "s",
            json!({"needsSync": true, "parameters": {"model": "m-9"}}),
        )
        .await;
    let mut body = modelsync(
        "s",
        &lambda.url("s"),
        json!({"suspend": false, "pollInterval": "1h"}),
    );
    body["metadata"]["annotations"] = json!({"modelsync.dev/requested-at": "now-1"});
    env.apply(body).await;
    let run = env
        .eventually(WAIT, "a run after requested-at", || async {
            env.runs_of("s").await.pop()
        })
        .await;
    env.eventually(WAIT, "lastHandledRequestedAt", || async {
        (env.get("s").await.status?.last_handled_requested_at? == "now-1").then_some(())
    })
    .await;
    assert_eq!(lambda.calls("s").await, 2);

    // Deleting the ModelSync deletes its runs (real ownerReference garbage collection).
    env.modelsyncs()
        .delete("s", &DeleteParams::background())
        .await
        .unwrap();
    env.eventually(
        WAIT,
        "the run garbage-collected with its ModelSync",
        || async {
            env.runs()
                .get_opt(&run.name_any())
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn replace_cancels_a_run_with_outdated_parameters() {
    let env = Env::new("replace").await;
    let lambda = Lambda::start(env.logs.path()).await;
    lambda
        .answer(
            "r",
            json!({"needsSync": true, "parameters": {"model": "m-1"}}),
        )
        .await;
    let _controller = env.controller();
    env.apply(modelsync(
        "r",
        &lambda.url("r"),
        json!({"concurrencyPolicy": "Replace"}),
    ))
    .await;
    let first = env
        .eventually(WAIT, "first run", || async { env.runs_of("r").await.pop() })
        .await;
    tekton::start(&env.client, &env.ns, &first.name_any())
        .await
        .unwrap();
    // Same parameters: the active run stays.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.runs_of("r").await.len(), 1);
    // Newer parameters: the stale run is cancelled and a new one starts.
    lambda
        .answer(
            "r",
            json!({"needsSync": true, "parameters": {"model": "m-2"}}),
        )
        .await;
    let runs = env
        .eventually(WAIT, "a replacement run", || async {
            let runs = env.runs_of("r").await;
            (runs.len() == 2).then_some(runs)
        })
        .await;
    assert_eq!(runs[0].name_any(), first.name_any());
    assert_eq!(runs[0].spec.status.as_deref(), Some("Cancelled"));
    assert_eq!(active_runs(&runs), [runs[1].name_any()]);
}

#[tokio::test]
async fn history_limits_keep_the_configured_runs() {
    let env = Env::new("history").await;
    let lambda = Lambda::start(env.logs.path()).await;
    let _controller = env.controller();
    let outcomes = [
        RunEnd::Succeeded,
        RunEnd::Failed,
        RunEnd::Succeeded,
        RunEnd::Failed,
        RunEnd::Succeeded,
        RunEnd::Succeeded,
    ];
    lambda
        .answer(
            "h",
            json!({"needsSync": true, "parameters": {"model": "m-0"}}),
        )
        .await;
    env.apply(modelsync(
        "h",
        &lambda.url("h"),
        json!({"successfulPipelineRunsHistoryLimit": 2, "failedPipelineRunsHistoryLimit": 1}),
    ))
    .await;
    let mut finished = Vec::new();
    for (i, outcome) in outcomes.iter().enumerate() {
        let run = env
            .eventually(WAIT, &format!("run {i}"), || async {
                let runs = env.runs_of("h").await;
                runs.into_iter().find(|r| {
                    !finished.contains(&r.name_any())
                        && active_runs(std::slice::from_ref(r)).len() == 1
                })
            })
            .await;
        finished.push(run.name_any());
        lambda
            .answer(
                "h",
                json!({"needsSync": true, "parameters": {"model": format!("m-{}", i + 1)}}),
            )
            .await;
        tekton::finish(&env.client, &env.ns, &run.name_any(), *outcome)
            .await
            .unwrap();
    }
    // The seventh run is active now; history: the 2 newest successes, the newest failure.
    let runs = env
        .eventually(WAIT, "history trimmed", || async {
            let runs = env.runs_of("h").await;
            (runs.len() == 4 && active_runs(&runs).len() == 1).then_some(runs)
        })
        .await;
    let names: Vec<String> = runs.iter().map(|r| r.name_any()).collect();
    assert!(
        names.contains(&finished[3]),
        "newest failure kept: {names:?}"
    );
    assert!(
        names.contains(&finished[4]) && names.contains(&finished[5]),
        "newest successes kept: {names:?}"
    );
    assert_eq!(active_runs(&runs).len(), 1);
}

#[tokio::test]
async fn the_kubeflow_labelbot_deploy_manifest_applies_with_only_apiversion_changed() {
    let env = Env::new("kubeflow").await;
    let lambda = Lambda::start(env.logs.path()).await;
    // The original lambda's answer format, unchanged.
    lambda
        .answer(
            "needsSync",
            json!({"kind": "NeedsSync", "apiVersion": "v1alpha1", "metadata": {"creationTimestamp": null},
                   "needsSync": true, "parameters": {"name": "projects/p/locations/l/models/TCN123"}}),
        )
        .await;
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/e2e/testdata/labelbot-deploy.yaml"),
    )
    .unwrap()
    .replace(
        "automl.cloudai.kubeflow.org/v1alpha1",
        "modelsync.dev/v1alpha1",
    )
    .replace(
        "http://labelbot-diff.label-bot-prod/needsSync",
        &lambda.url("needsSync"),
    );
    let mut body: serde_json::Value = serde_yaml_ng::from_str(&manifest).unwrap();
    body["metadata"]["namespace"] = env.ns.clone().into();
    let _controller = env.controller();
    env.apply(body.clone()).await;
    let ms = env
        .eventually(
            WAIT,
            "an InvalidTemplate condition naming PipelineResources",
            || async {
                let ms = env.get("labelbot-deploy").await;
                ready(&ms).filter(|r| r.1 == "InvalidTemplate").map(|_| ms)
            },
        )
        .await;
    let stalled = ms
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap();
    assert_eq!(stalled.status, "True");
    assert!(
        stalled.message.contains("PipelineResources"),
        "{}",
        stalled.message
    );
    assert!(env.runs_of("labelbot-deploy").await.is_empty());

    // Without its PipelineResources the same manifest runs, its v1beta1 fields converted.
    body["spec"]["pipelineRunTemplate"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("resources");
    env.apply(body).await;
    let run = env
        .eventually(WAIT, "a run", || async {
            env.runs_of("labelbot-deploy").await.pop()
        })
        .await;
    let raw = env.dynamic_runs().get(&run.name_any()).await.unwrap().data;
    assert_eq!(
        raw["spec"]["taskRunTemplate"]["serviceAccountName"],
        "auto-update"
    );
    assert_eq!(
        param(&run, &raw, "automl-model"),
        Some(json!("projects/p/locations/l/models/TCN123"))
    );
    assert_eq!(param(&run, &raw, "branchName"), Some(json!("auto-update")));
}

#[tokio::test]
async fn killed_at_random_moments_never_two_active_runs_never_an_orphan() {
    let env = Env::new("crash").await;
    let lambda = Lambda::start(env.logs.path()).await;
    lambda
        .answer(
            "c",
            json!({"needsSync": true, "parameters": {"model": "m-0"}}),
        )
        .await;
    env.apply(modelsync(
        "c",
        &lambda.url("c"),
        json!({"successfulPipelineRunsHistoryLimit": 100, "failedPipelineRunsHistoryLimit": 100, "pollInterval": "200ms"}),
    ))
    .await;
    let uid = env.get("c").await.uid().unwrap();
    let mut controller = env.controller();
    let kills = 24;
    let mut max_active = 0;
    let check = |runs: &[modelsync_api::PipelineRun]| {
        for r in runs {
            assert!(
                r.owner_references()
                    .iter()
                    .any(|o| o.uid == uid && o.controller == Some(true)),
                "orphan run {}",
                r.name_any()
            );
        }
        let active = active_runs(runs);
        assert!(active.len() <= 1, "two active runs: {active:?}");
        active
    };
    for i in 0..kills {
        // Random moments: during start-up, right around a create, or while idle.
        let wait = Duration::from_millis(rand::random_range(50..1500));
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            let active = check(&env.runs_of("c").await);
            max_active = max_active.max(active.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        controller.kill9();
        let runs = env.runs_of("c").await;
        let active = check(&runs);
        // Play Tekton: finish the active run half of the time, so new runs keep being made.
        if let Some(run) = active.first()
            && rand::random::<bool>()
        {
            tekton::finish(&env.client, &env.ns, run, RunEnd::Succeeded)
                .await
                .unwrap();
        }
        if i % 3 == 2 {
            lambda
                .answer(
                    "c",
                    json!({"needsSync": true, "parameters": {"model": format!("m-{i}")}}),
                )
                .await;
        }
        controller.restart().unwrap();
    }
    // Settle: the last controller runs undisturbed; still one active run at most.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = env.runs_of("c").await;
    let active = check(&runs);
    eprintln!(
        "crash loop: {kills} kills, {} runs created, at most {max_active} active at once, {} active at the end",
        runs.len(),
        active.len()
    );
    assert!(
        runs.len() >= 3,
        "too few runs ({}) for the loop to prove anything",
        runs.len()
    );
    assert_eq!(
        active.len(),
        1,
        "a yes with no active run must start one; log:\n{}",
        controller.log_tail()
    );
}

#[tokio::test]
async fn with_leader_election_one_replica_works_and_another_takes_over() {
    let env = Env::new("leader").await;
    let lambda = Lambda::start(env.logs.path()).await;
    lambda.answer("l", json!({"needsSync": false})).await;
    let flags = [
        "--leader-elect",
        &format!("--leader-election-namespace={}", env.ns),
    ];
    let mut first = env.controller_with(&flags);
    env.eventually(WAIT, "a leader", || async {
        first.log().contains("became leader").then_some(())
    })
    .await;
    let second = env.controller_with(&flags);
    env.apply(modelsync("l", &lambda.url("l"), json!({}))).await;
    env.eventually(WAIT, "polls by the leader", || async {
        (lambda.calls("l").await >= 2).then_some(())
    })
    .await;
    env.eventually(WAIT, "the second replica waiting", || async {
        second.log().contains("another replica leads").then_some(())
    })
    .await;
    assert!(!second.log().contains("became leader"));
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.client.clone(), &env.ns);
    let lease = leases.get("modelsync-controller").await.unwrap();
    let holder = lease.spec.unwrap().holder_identity.unwrap();

    // The leader dies without a word; after its lease lapses the other one leads and polls.
    first.kill9();
    env.eventually(
        Duration::from_secs(60),
        "the second replica leading",
        || async { second.log().contains("became leader").then_some(()) },
    )
    .await;
    let new_holder = leases
        .get("modelsync-controller")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    assert_ne!(holder, new_holder);
    let calls = lambda.calls("l").await;
    env.eventually(WAIT, "polls by the new leader", || async {
        (lambda.calls("l").await >= calls + 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_leader_stopped_by_sigterm_releases_the_lease_for_the_next_at_once() {
    let env = Env::new("release").await;
    let flags = [
        "--leader-elect",
        &format!("--leader-election-namespace={}", env.ns),
    ];
    let mut first = env.controller_with(&flags);
    env.eventually(WAIT, "a leader", || async {
        first.log().contains("became leader").then_some(())
    })
    .await;
    let second = env.controller_with(&flags);
    env.eventually(WAIT, "the second replica waiting", || async {
        second.log().contains("another replica leads").then_some(())
    })
    .await;
    let stopped = std::time::Instant::now();
    first.stop();
    env.eventually(WAIT, "the second replica leading", || async {
        second.log().contains("became leader").then_some(())
    })
    .await;
    // Without the release the second would wait out the whole 15 s lease after the last
    // renewal it saw.
    assert!(
        stopped.elapsed() < Duration::from_secs(12),
        "took {:?} to take over a released lease\nfirst:\n{}\nsecond:\n{}",
        stopped.elapsed(),
        first.log_tail(),
        second.log_tail()
    );
}

#[tokio::test]
async fn without_the_crd_the_controller_fails_fast_saying_what_to_install() {
    // A control plane of its own, with no CRD at all.
    let bare = modelsync_testenv::ControlPlane::start().await.unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_modelsync"));
    let mut controller =
        modelsync_testenv::spawn_controller(ControllerCommand::new(bin, bare.kubeconfig()))
            .unwrap();
    let status = controller
        .wait_exit(Duration::from_secs(30))
        .expect("the controller did not fail fast");
    assert!(!status.success());
    // Its log holds what it wrote to stderr.
    let stderr = controller.log();
    assert!(
        stderr.contains("modelsyncs.modelsync.dev") && stderr.contains("kubectl apply"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_api_server_enforces_the_modelsync_schema() {
    let env = Env::new("schema").await;
    let bad = [
        ("no url", json!({"pipelineRunTemplate": {"spec": {}}})),
        (
            "bad duration",
            json!({"needsSyncUrl": "http://x", "pollInterval": "5 minutes", "pipelineRunTemplate": {"spec": {}}}),
        ),
        (
            "negative limit",
            json!({"needsSyncUrl": "http://x", "failedPipelineRunsHistoryLimit": -1, "pipelineRunTemplate": {"spec": {}}}),
        ),
        (
            "unknown policy",
            json!({"needsSyncUrl": "http://x", "concurrencyPolicy": "Allow", "pipelineRunTemplate": {"spec": {}}}),
        ),
    ];
    for (what, spec) in bad {
        let body = json!({"apiVersion": "modelsync.dev/v1alpha1", "kind": "ModelSync",
                          "metadata": {"name": "bad"}, "spec": spec});
        let res = env
            .modelsyncs()
            .patch(
                "bad",
                &kube::api::PatchParams::apply("e2e-test"),
                &kube::api::Patch::Apply(body),
            )
            .await;
        assert!(
            matches!(res, Err(kube::Error::Api(ref s)) if s.code == 422),
            "{what} accepted: {res:?}"
        );
    }
    // Defaults are filled in by the API server.
    let ms = env
        .apply(json!({"apiVersion": "modelsync.dev/v1alpha1", "kind": "ModelSync",
                      "metadata": {"name": "defaults"},
                      "spec": {"needsSyncUrl": "http://x", "pipelineRunTemplate": {"spec": {"pipelineRef": {"name": "p"}}}}}))
        .await;
    assert_eq!(ms.spec.poll_interval, "1m");
    assert_eq!(ms.spec.lambda_timeout, "10s");
    assert_eq!(ms.spec.successful_pipeline_runs_history_limit, 3);
    assert_eq!(ms.spec.failed_pipeline_runs_history_limit, 1);
    assert_eq!(
        ms.spec.concurrency_policy,
        modelsync_api::modelsync::ConcurrencyPolicy::Forbid
    );
}

/// A fresh install has no ModelSync and no run: it must still become Ready, or its Deployment
/// never turns Available. Then a ModelSync arriving keeps it Ready.
#[tokio::test]
async fn readyz_turns_ready_after_the_first_lists_even_with_nothing_to_watch() {
    let env = Env::new("e2e-readyz").await;
    let controller = env.controller();
    let http = reqwest::Client::new();
    let readyz = format!("{}/readyz", controller.admin_url());
    let status = || async {
        http.get(&readyz)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while status().await != Some(200) {
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz not 200 within 30s with nothing to watch (last: {:?})\n{}",
            status().await,
            controller.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lambda = Lambda::start(env.logs.path()).await;
    lambda.answer("idle", json!({"needsSync": false})).await;
    env.apply(modelsync("quiet", &lambda.url("idle"), json!({})))
        .await;
    env.eventually(Duration::from_secs(20), "a decision", || async {
        env.get("quiet").await.status?.last_decision
    })
    .await;
    assert_eq!(status().await, Some(200));
}

/// Runs that start and finish within one second share their `creationTimestamp` (whole
/// seconds), which once left their order to their names, so `status.lastRun` could name the
/// older. Each decision here gets parameters whose run name sorts before the previous run's
/// (names are a public function of the decision), so wherever two runs share a second, ordering
/// by name would be wrong; ordering by the recorded decision time is not.
#[tokio::test]
async fn runs_within_one_second_are_ordered_by_their_decision_time() {
    use modelsync_api::lambda::ParamValue;
    use modelsync_controller::template::run_name;

    let env = Env::new("order").await;
    let lambda = Lambda::start(env.logs.path()).await;
    let yes = |model: &str| json!({"needsSync": true, "parameters": {"model": model}});
    lambda.answer("retrain", yes("m-0")).await;
    let _controller = env.controller();
    let uid = env
        .apply(modelsync(
            "fast",
            &lambda.url("retrain"),
            json!({"pollInterval": "100ms", "successfulPipelineRunsHistoryLimit": 50}),
        ))
        .await
        .uid()
        .unwrap();
    let mut runs: Vec<modelsync_api::PipelineRun> = Vec::new();
    let mut same_second = 0;
    for i in 1..=20 {
        let run = env
            .eventually(WAIT, &format!("run {i}"), || async {
                env.runs_of("fast")
                    .await
                    .into_iter()
                    .find(|r| runs.iter().all(|seen| seen.name_any() != r.name_any()))
            })
            .await;
        let name = run.name_any();
        let next = (0..)
            .map(|k| format!("m-{i}-{k}"))
            .find(|model| {
                let params = [("model-id".to_owned(), ParamValue::from(model.as_str()))].into();
                run_name("fast", &uid, Some(&name), &params) < name
            })
            .unwrap();
        lambda.answer("retrain", yes(&next)).await;
        tekton::start(&env.client, &env.ns, &name).await.unwrap();
        env.eventually(
            WAIT,
            &format!("status naming the newest run {name} as the last run"),
            || async {
                // Its start time comes with its end: Tekton starting a run is no status write.
                let last = env.get("fast").await.status?.last_run?;
                (last.name == name).then_some(())
            },
        )
        .await;
        tekton::finish(&env.client, &env.ns, &name, RunEnd::Succeeded)
            .await
            .unwrap();
        if let Some(previous) = runs.last()
            && previous.metadata.creation_timestamp == run.metadata.creation_timestamp
        {
            assert!(name < previous.name_any());
            same_second += 1;
        }
        runs.push(run);
        if same_second >= 2 {
            break;
        }
    }
    assert!(
        same_second >= 1,
        "none of {} runs shared a creation second with the one before; nothing was checked",
        runs.len()
    );
    // The decision time is recorded to the sub-second, and it orders the runs as they came.
    let decided: Vec<String> = runs
        .iter()
        .map(|r| r.annotations()["modelsync.dev/decided-at"].clone())
        .collect();
    assert!(decided.iter().all(|t| t.contains('.')), "{decided:?}");
    assert!(decided.windows(2).all(|w| w[0] < w[1]), "{decided:?}");
    let newest = runs.last().unwrap().name_any();
    env.eventually(
        WAIT,
        "the newest finished run as the last success",
        || async {
            let last_ok = env.get("fast").await.status?.last_successful_run?;
            (last_ok.name == newest).then_some(())
        },
    )
    .await;
}

/// `--initial-list paged` skips the streaming-list probe (the server here serves streaming
/// lists, so auto would choose them), says so, and the controller still polls and writes
/// status: the paged cold start the benchmarks compare against streaming is a working one.
#[tokio::test]
async fn initial_list_paged_is_forced_and_still_reconciles() {
    let env = Env::new("e2e-paged").await;
    let lambda = Lambda::start(env.logs.path()).await;
    lambda.answer("idle", json!({"needsSync": false})).await;
    env.apply(modelsync("paged", &lambda.url("idle"), json!({})))
        .await;
    let controller = env.controller_with(&["--initial-list", "paged"]);
    env.eventually(WAIT, "a decision under paged lists", || async {
        env.get("paged").await.status?.last_decision
    })
    .await;
    let log = controller.log();
    assert!(
        log.contains("initial lists: paged (--initial-list paged)"),
        "no paged-lists line in the controller's log:\n{}",
        controller.log_tail()
    );
    assert!(!log.contains("initial lists: streaming"), "{log}");
}
