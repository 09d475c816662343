//! The day-two verbs end to end: the real `modelsync` binary run as a process with the local
//! control plane's kubeconfig, the real controller, a real lambda process, and Tekton played
//! by the test.

mod common;
mod secure_lambda;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Env, Lambda, control_plane, modelsync, ready};
use kube::ResourceExt;
use modelsync_testenv::tekton::{self, RunEnd};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// `modelsync ARGS --kubeconfig <control plane>`, with KUBECONFIG unset so the flag is what
/// picks the cluster.
fn modelsync_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_modelsync"));
    cmd.args(args)
        .arg("--kubeconfig")
        .arg(control_plane().kubeconfig())
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent");
    cmd
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

fn ran(out: Output) -> Ran {
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn verb(args: &[&str]) -> Ran {
    let mut cmd = modelsync_cmd(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("running modelsync"))
        .await
        .unwrap();
    let r = ran(out);
    println!(
        "$ modelsync {}\n{}{}(exit {})",
        args.join(" "),
        r.stdout,
        r.stderr,
        r.code
    );
    r
}

/// Starts `modelsync sync --wait` in the background; the test plays Tekton meanwhile.
fn spawn_sync(args: &[&str]) -> tokio::task::JoinHandle<Ran> {
    let mut cmd = modelsync_cmd(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let shown = args.join(" ");
    tokio::task::spawn_blocking(move || {
        let r = ran(cmd
            .spawn()
            .expect("starting modelsync sync")
            .wait_with_output()
            .expect("waiting for modelsync sync"));
        println!(
            "$ modelsync {shown}\n{}{}(exit {})",
            r.stdout, r.stderr, r.code
        );
        r
    })
}

async fn wait_ready(env: &Env, name: &str, reason: &str) {
    env.eventually(WAIT, &format!("Ready reason {reason}"), || async {
        let ms = env.get(name).await;
        (ready(&ms).map(|r| r.1).as_deref() == Some(reason)).then_some(())
    })
    .await;
}

/// Plays Tekton for the run of `name` not in `seen` (names, not counts: runs created in the
/// same second share their creationTimestamp, so the newest is not always last).
async fn play_run(env: &Env, name: &str, seen: &[String], outcome: RunEnd) -> String {
    let run = env
        .eventually(WAIT, "a new run", || async {
            env.runs_of(name)
                .await
                .iter()
                .map(|r| r.name_any())
                .find(|r| !seen.contains(r))
        })
        .await;
    tekton::start(&env.client, &env.ns, &run).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tekton::finish(&env.client, &env.ns, &run, outcome)
        .await
        .unwrap();
    run
}

#[tokio::test]
async fn lambda_check_reports_an_unreachable_lambda_as_unreachable() {
    let port = modelsync_testenv::process::free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}/needsTrain");
    let out = ran(Command::new(env!("CARGO_BIN_EXE_modelsync"))
        .args(["lambda-check", &url])
        .output()
        .unwrap());
    println!("$ modelsync lambda-check {url}\n{}", out.stderr);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("{url} is unreachable")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.to_lowercase().contains("connection refused"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("does not follow"), "{}", out.stderr);

    // A name no resolver knows: the resolver's own words, still "unreachable".
    let out = ran(Command::new(env!("CARGO_BIN_EXE_modelsync"))
        .args([
            "lambda-check",
            "--timeout=5s",
            "http://no-such-lambda.invalid/",
        ])
        .output()
        .unwrap());
    println!(
        "$ modelsync lambda-check http://no-such-lambda.invalid/\n{}",
        out.stderr
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("is unreachable"), "{}", out.stderr);
}

#[tokio::test]
async fn kubeconfig_and_context_choose_the_cluster_on_every_verb() {
    let kubeconfig = kube::config::Kubeconfig::read_from(control_plane().kubeconfig()).unwrap();
    let context = kubeconfig.current_context.clone().unwrap();
    let env = Env::new("verbs-ctx").await;
    let ok = verb(&["get", "-n", &env.ns, "--context", &context]).await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);

    for args in [
        vec!["get"],
        vec!["sync", "x"],
        vec!["suspend", "x"],
        vec!["resume", "--all"],
    ] {
        let mut args = args.clone();
        args.extend(["--context", "no-such-context"]);
        let out = verb(&args).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("no-such-context"), "{}", out.stderr);
        assert!(out.stderr.contains("get-contexts"), "{}", out.stderr);
    }
    let out = ran(
        modelsync_cmd(&["controller", "--context", "no-such-context"])
            .output()
            .unwrap(),
    );
    println!(
        "$ modelsync controller --context no-such-context\n{}",
        out.stderr
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("no-such-context"), "{}", out.stderr);

    let missing = env.logs.path().join("missing-kubeconfig");
    let out = ran(Command::new(env!("CARGO_BIN_EXE_modelsync"))
        .args(["get", "--kubeconfig"])
        .arg(&missing)
        .output()
        .unwrap());
    println!(
        "$ modelsync get --kubeconfig missing-kubeconfig\n{}",
        out.stderr
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--kubeconfig"), "{}", out.stderr);
}

#[tokio::test]
async fn get_suspend_resume_and_sync_against_the_controller() {
    let env = Env::new("verbs").await;
    let lambda = Lambda::start(env.logs.path()).await;
    lambda
        .answer(
            "retrain",
            json!({"needsSync": false, "reason": "model is fresh"}),
        )
        .await;
    let _controller = env.controller();
    // An hour between polls: only `sync` (and spec changes) make the controller ask.
    env.apply(modelsync(
        "trainer",
        &lambda.url("retrain"),
        json!({"pollInterval": "1h"}),
    ))
    .await;
    wait_ready(&env, "trainer", "Idle").await;
    let ns = env.ns.as_str();

    // get: the table, one row as JSON, a missing name.
    let out = verb(&["get", "-n", ns]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{}", out.stdout);
    for word in ["trainer", "True", "Idle", "model is fresh", "within 1h"] {
        assert!(lines[1].contains(word), "{word}: {}", out.stdout);
    }
    let out = verb(&["get", "trainer", "-n", ns, "-o", "json"]).await;
    let row: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(row["ready"], "True");
    assert_eq!(row["status"], "Idle");
    assert_eq!(row["why"], "model is fresh");
    assert_eq!(row["activeRun"], Value::Null);
    let out = verb(&["get", "-A", "-o", "yaml"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("namespace: {ns}")),
        "{}",
        out.stdout
    );
    let out = verb(&["get", "nope", "-n", ns]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("ModelSync nope: not found"),
        "{}",
        out.stderr
    );

    // suspend / resume.
    let out = verb(&["suspend", "trainer", "-n", ns]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        format!("modelsync {ns}/trainer suspended")
    );
    assert!(env.get("trainer").await.spec.suspend);
    wait_ready(&env, "trainer", "Suspended").await;
    let out = verb(&["get", "trainer", "-n", ns]).await;
    assert!(out.stdout.contains("never (suspended)"), "{}", out.stdout);
    let out = verb(&["sync", "trainer", "-n", ns]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("modelsync resume trainer"),
        "{}",
        out.stderr
    );
    let out = verb(&["suspend", "trainer", "-n", ns]).await;
    assert!(out.stdout.contains("already suspended"), "{}", out.stdout);
    let out = verb(&["resume", "--all", "-n", ns]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), format!("modelsync {ns}/trainer resumed"));
    assert!(!env.get("trainer").await.spec.suspend);
    wait_ready(&env, "trainer", "Idle").await;
    let out = verb(&["suspend", "nope", "-n", ns]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);

    // sync: "no" ends at the decision.
    let calls = lambda.calls("retrain").await;
    let out = verb(&["sync", "trainer", "-n", ns, "--wait", "--timeout=30s"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("decision: no sync needed (model is fresh)"),
        "{}",
        out.stdout
    );
    assert_eq!(lambda.calls("retrain").await, calls + 1);

    // sync: "yes" follows the run to its success.
    lambda
        .answer(
            "retrain",
            json!({"needsSync": true, "parameters": {"model": "m-2"}, "reason": "new data"}),
        )
        .await;
    let sync = spawn_sync(&["sync", "trainer", "-n", ns, "--wait", "--timeout=60s"]);
    let first = play_run(&env, "trainer", &[], RunEnd::Succeeded).await;
    let run = first.clone();
    let out = sync.await.unwrap();
    assert_eq!(out.code, 0, "{}", out.stderr);
    for line in [
        "lambda asked",
        "decision: sync needed (new data)",
        &format!("run started: {run}"),
        &format!("run {run} succeeded"),
    ] {
        assert!(out.stdout.contains(line), "{line}: {}", out.stdout);
    }
    let out = verb(&["get", "-n", ns]).await;
    assert!(
        out.stdout.contains(" ago"),
        "last success shown: {}",
        out.stdout
    );

    // sync: a failed run exits 1.
    let sync = spawn_sync(&["sync", "trainer", "-n", ns, "--wait", "--timeout=60s"]);
    let run = play_run(&env, "trainer", &[first], RunEnd::Failed).await;
    let out = sync.await.unwrap();
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "run {run} failed: Failed: Tasks Completed: 1 (Failed: 1"
        )),
        "{}",
        out.stderr
    );

    // sync: a lambda that errs exits 1 with the controller's words.
    lambda
        .script("retrain", json!({"status": 500, "body": "boom"}))
        .await;
    let out = verb(&["sync", "trainer", "-n", ns, "--wait", "--timeout=30s"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("LambdaError"), "{}", out.stderr);

    // sync without --wait only asks.
    let out = verb(&["sync", "trainer", "-n", ns]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let annotations = env.get("trainer").await.annotations().clone();
    assert!(
        out.stdout
            .contains(&annotations[modelsync_api::modelsync::ANNOTATION_REQUESTED_AT])
    );
}

#[tokio::test]
async fn sync_waits_for_the_active_run_under_forbid() {
    let env = Env::new("verbs-forbid").await;
    let lambda = Lambda::start(env.logs.path()).await;
    lambda
        .answer(
            "retrain",
            json!({"needsSync": true, "parameters": {"model": "m-1"}, "reason": "first model"}),
        )
        .await;
    let _controller = env.controller();
    env.apply(modelsync(
        "trainer",
        &lambda.url("retrain"),
        json!({"pollInterval": "1h"}),
    ))
    .await;
    let ns = env.ns.as_str();
    let run = env
        .eventually(WAIT, "the first run in status.active", || async {
            env.get("trainer")
                .await
                .status?
                .active
                .first()?
                .name
                .clone()
        })
        .await;
    tekton::start(&env.client, &env.ns, &run).await.unwrap();

    // -A adds the namespace; the active run is shown and the next poll waits for it.
    let out = verb(&["get", "-A"]).await;
    assert!(out.stdout.starts_with("NAMESPACE"), "{}", out.stdout);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(ns))
        .unwrap_or_else(|| panic!("no line for {ns}: {}", out.stdout));
    for word in [
        "trainer",
        "RunActive",
        "first model",
        run.as_str(),
        "after the active run",
    ] {
        assert!(line.contains(word), "{word}: {line}");
    }

    let sync = spawn_sync(&["sync", "trainer", "-n", ns, "--wait", "--timeout=60s"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    lambda
        .answer(
            "retrain",
            json!({"needsSync": false, "reason": "up to date"}),
        )
        .await;
    tekton::finish(&env.client, &env.ns, &run, RunEnd::Succeeded)
        .await
        .unwrap();
    let out = sync.await.unwrap();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "waiting: run {run} is active, the lambda is asked once it ends"
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("decision: no sync needed (up to date)"),
        "{}",
        out.stdout
    );
}

/// The YAML document after `---` in a dry run's output: the PipelineRun it would create.
fn printed_run(stdout: &str) -> Value {
    let (_, yaml) = stdout
        .split_once("\n---\n")
        .unwrap_or_else(|| panic!("no PipelineRun printed: {stdout}"));
    serde_yaml_ng::from_str(yaml).unwrap()
}

async fn token_secret(env: &Env, name: &str, token: &str) {
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(env.client.clone(), &env.ns);
    let secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": {"token": token},
    }))
    .unwrap();
    secrets.create(&Default::default(), &secret).await.unwrap();
}

#[tokio::test]
async fn sync_dry_run_asks_as_the_controller_would_and_creates_nothing() {
    let env = Env::new("verbs-dry").await;
    let ns = env.ns.as_str();
    let lambda = Lambda::start(env.logs.path()).await;
    lambda
        .answer(
            "retrain",
            json!({"needsSync": true, "parameters": {"model": "m-7"}, "reason": "new data", "revision": "3f2c9e1"}),
        )
        .await;
    token_secret(&env, "lambda-token", "dry-run-token\n").await;
    let ms = env
        .apply(modelsync(
            "trainer",
            &lambda.url("retrain"),
            json!({"pollInterval": "1h", "lambdaSecretRef": {"name": "lambda-token"}}),
        ))
        .await;
    let uid = ms.uid().unwrap();

    // No controller yet: whatever appears in the cluster, the dry run made.
    let out = verb(&["sync", "trainer", "-n", ns, "--dry-run"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    for line in [
        "dry run: nothing is created and no annotation is set",
        &format!("lambda asked: GET {}", lambda.url("retrain")),
        "decision: sync needed (new data)",
        "parameters: model=m-7",
        "revision: 3f2c9e1",
        "would create PipelineRun trainer-",
    ] {
        assert!(out.stdout.contains(line), "{line}: {}", out.stdout);
    }
    let headers = lambda.last_headers("retrain").await;
    assert_eq!(headers["authorization"], "Bearer dry-run-token");
    assert_eq!(headers["x-modelsync-namespace"], ns);
    assert_eq!(headers["x-modelsync-name"], "trainer");
    assert_eq!(headers["x-modelsync-last-run"], Value::Null);
    assert_eq!(headers["accept"], "application/json");
    assert_eq!(lambda.calls("retrain").await, 1);

    let run = printed_run(&out.stdout);
    let run_name = run["metadata"]["name"].as_str().unwrap().to_owned();
    assert_eq!(run["apiVersion"], "tekton.dev/v1");
    assert_eq!(run["kind"], "PipelineRun");
    assert_eq!(run["metadata"]["namespace"], ns);
    assert_eq!(run["metadata"]["labels"]["team"], "ml");
    assert_eq!(run["metadata"]["labels"]["modelsync.dev/name"], "trainer");
    let ann = &run["metadata"]["annotations"];
    assert_eq!(ann["owner"], "e2e");
    assert_eq!(ann["modelsync.dev/parameters"], r#"{"model-id":"m-7"}"#);
    assert_eq!(ann["modelsync.dev/reason"], "new data");
    assert_eq!(ann["modelsync.dev/revision"], "3f2c9e1");
    assert!(ann["modelsync.dev/decided-at"].is_string(), "{ann}");
    let owner = &run["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "ModelSync");
    assert_eq!(owner["uid"], uid.as_str());
    assert_eq!(owner["controller"], true);
    assert_eq!(
        run["spec"],
        json!({
            "pipelineRef": {"name": "retrain"},
            "params": [{"name": "model-id", "value": "m-7"}, {"name": "keep", "value": "me"}],
        })
    );

    // Nothing was created and nothing written on the ModelSync.
    assert!(env.runs_of("trainer").await.is_empty());
    let after = env.get("trainer").await;
    assert!(
        !after
            .annotations()
            .contains_key(modelsync_api::modelsync::ANNOTATION_REQUESTED_AT),
        "{:?}",
        after.annotations()
    );
    assert_eq!(
        after.metadata.resource_version,
        ms.metadata.resource_version
    );
    assert!(after.status.is_none());

    // The same as one object for scripts.
    let out = verb(&["sync", "trainer", "-n", ns, "--dry-run", "-o", "json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["decision"]["needsSync"], true);
    assert_eq!(report["decision"]["parameters"]["model"], "m-7");
    assert_eq!(report["wouldCreate"]["metadata"]["name"], run_name.as_str());
    assert_eq!(report["wouldCancel"], Value::Null);

    // The controller, asked the same, creates the very run the dry run printed.
    let _controller = env.controller();
    let created = env
        .eventually(WAIT, "the controller's run", || async {
            env.dynamic_runs().get_opt(&run_name).await.unwrap()
        })
        .await;
    assert_eq!(created.data["spec"], run["spec"]);
    let created_ann = created.annotations();
    for key in [
        "owner",
        "modelsync.dev/parameters",
        "modelsync.dev/reason",
        "modelsync.dev/revision",
    ] {
        assert_eq!(created_ann[key], ann[key].as_str().unwrap(), "{key}");
    }
    assert_eq!(env.runs_of("trainer").await.len(), 1);

    // With that run active (Forbid) the lambda is still asked, and nothing would start; the
    // newest run goes along as X-ModelSync-Last-Run, as the controller sends it.
    tekton::start(&env.client, ns, &run_name).await.unwrap();
    wait_ready(&env, "trainer", "RunActive").await;
    let out = verb(&["sync", "trainer", "-n", ns, "--dry-run"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "no run would start: run {run_name} is active and concurrencyPolicy is Forbid"
        )),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("would create"), "{}", out.stdout);
    assert_eq!(
        lambda.last_headers("retrain").await["x-modelsync-last-run"],
        run_name.as_str()
    );
}

#[tokio::test]
async fn sync_dry_run_names_the_egress_rule_and_an_unreachable_lambda() {
    let env = Env::new("verbs-dry-err").await;
    let ns = env.ns.as_str();
    let lambda = Lambda::start(env.logs.path()).await;
    lambda
        .answer("retrain", json!({"needsSync": false, "reason": "fresh"}))
        .await;

    // The controller's default deny list keeps link-local addresses out; no connection made.
    env.apply(modelsync(
        "metadata",
        "http://169.254.169.254/latest/meta-data",
        json!({}),
    ))
    .await;
    let out = verb(&["sync", "metadata", "-n", ns, "--dry-run"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("LambdaURLDenied"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("169.254.169.254 is in 169.254.0.0/16 of --lambda-deny-cidrs"),
        "{}",
        out.stderr
    );

    // The same flags as the controller's: a deny list that covers the lambda refuses it.
    env.apply(modelsync("trainer", &lambda.url("retrain"), json!({})))
        .await;
    let out = verb(&[
        "sync",
        "trainer",
        "-n",
        ns,
        "--dry-run",
        "--lambda-deny-cidrs=127.0.0.0/8",
    ])
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("127.0.0.1 is in 127.0.0.0/8 of --lambda-deny-cidrs"),
        "{}",
        out.stderr
    );
    assert_eq!(lambda.calls("retrain").await, 0, "no connection was made");
    let out = verb(&[
        "sync",
        "trainer",
        "-n",
        ns,
        "--dry-run",
        "--lambda-allow-cidrs=10.96.0.0/12",
    ])
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("127.0.0.1 is in none of --lambda-allow-cidrs (10.96.0.0/12)"),
        "{}",
        out.stderr
    );

    // Nothing listens: unreachable, with what to do from outside the cluster.
    let port = modelsync_testenv::process::free_port().unwrap();
    let down = format!("http://127.0.0.1:{port}/needsTrain");
    env.apply(modelsync("down", &down, json!({}))).await;
    let out = verb(&["sync", "down", "-n", ns, "--dry-run"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    for words in [
        "LambdaError",
        &format!("lambda GET {down} failed"),
        "connection refused",
        "unreachable from here",
        "--lambda-url http://127.0.0.1:PORT/needsTrain",
    ] {
        assert!(
            out.stderr.to_lowercase().contains(&words.to_lowercase()),
            "{words}: {}",
            out.stderr
        );
    }
    // --lambda-url asks another address (a port-forward) with the same request.
    let out = verb(&[
        "sync",
        "down",
        "-n",
        ns,
        "--dry-run",
        "--lambda-url",
        &lambda.url("retrain"),
    ])
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("decision: no sync needed (fresh)"),
        "{}",
        out.stdout
    );
    assert_eq!(
        lambda.last_headers("retrain").await["x-modelsync-name"],
        "down"
    );

    // A missing ModelSync is a usage error; --dry-run with --wait is refused by the parser.
    let out = verb(&["sync", "nope", "-n", ns, "--dry-run"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = verb(&["sync", "trainer", "-n", ns, "--dry-run", "--wait"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        env.dynamic_runs()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// Ends a run as Tekton would, with Pipeline results.
async fn finish_with_results(env: &Env, run: &str, results: Value) {
    tekton::finish(&env.client, &env.ns, run, RunEnd::Succeeded)
        .await
        .unwrap();
    env.dynamic_runs()
        .patch_status(
            run,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {"results": results}})),
        )
        .await
        .unwrap();
}

fn pr_results(n: u32) -> Value {
    json!([
        {"name": "pr-url", "value": format!("http://127.0.0.1:9/org/gitops/pull/{n}")},
        {"name": "pr-number", "value": n.to_string()},
    ])
}

#[tokio::test]
async fn history_shows_runs_their_pull_requests_collected_runs_and_the_last_decision() {
    let env = Env::new("verbs-history").await;
    let ns = env.ns.as_str();
    let lambda = Lambda::start(env.logs.path()).await;
    lambda
        .answer(
            "deploy",
            json!({"needsSync": true, "parameters": {"model": "m-1"}, "reason": "m-1 is newer than the pin"}),
        )
        .await;
    let _controller = env.controller();
    env.apply(modelsync(
        "deployer",
        &lambda.url("deploy"),
        json!({"pollInterval": "1h", "successfulPipelineRunsHistoryLimit": 1}),
    ))
    .await;

    let out = verb(&["history", "deployer", "-n", ns]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("not kept:"), "{}", out.stderr);

    let first = env
        .eventually(WAIT, "the first run", || async {
            env.runs_of("deployer").await.first().map(|r| r.name_any())
        })
        .await;
    tekton::start(&env.client, ns, &first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    finish_with_results(&env, &first, pr_results(1)).await;
    wait_ready(&env, "deployer", "Idle").await;

    lambda
        .answer(
            "deploy",
            json!({"needsSync": true, "parameters": {"model": "m-2"}, "reason": "m-2 is newer than the pin"}),
        )
        .await;
    let sync = spawn_sync(&["sync", "deployer", "-n", ns, "--wait", "--timeout=60s"]);
    let second = env
        .eventually(WAIT, "the second run", || async {
            env.runs_of("deployer")
                .await
                .iter()
                .map(|r| r.name_any())
                .find(|r| *r != first)
        })
        .await;
    tekton::start(&env.client, ns, &second).await.unwrap();
    finish_with_results(&env, &second, pr_results(2)).await;
    assert_eq!(sync.await.unwrap().code, 0);
    // One successful run is kept: the first goes, and the controller records it.
    env.eventually(WAIT, "the first run collected", || async {
        env.dynamic_runs()
            .get_opt(&first)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

    lambda
        .answer(
            "deploy",
            json!({"needsSync": false, "reason": "the pin is m-2"}),
        )
        .await;
    let out = verb(&["sync", "deployer", "-n", ns, "--wait", "--timeout=30s"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    let out = verb(&["history", "deployer", "-n", ns]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    for col in [
        "RUN",
        "DECIDED",
        "REASON",
        "PARAMETERS",
        "RESULT",
        "STARTED",
        "DURATION",
        "PR",
    ] {
        assert!(lines[0].contains(col), "{col}: {}", lines[0]);
    }
    for word in ["the pin is m-2", "no run"] {
        assert!(lines[1].contains(word), "{word}: {}", lines[1]);
    }
    for word in [
        second.as_str(),
        "m-2 is newer than the pin",
        "model-id=m-2",
        "Succeeded",
        "http://127.0.0.1:9/org/gitops/pull/2",
    ] {
        assert!(lines[2].contains(word), "{word}: {}", lines[2]);
    }
    for word in [first.as_str(), "Succeeded (collected"] {
        assert!(lines[3].contains(word), "{word}: {}", lines[3]);
    }

    let out = verb(&["history", "deployer", "-n", ns, "-o", "json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(list[0]["kind"], "decision");
    assert_eq!(list[0]["result"], "NoRun");
    assert_eq!(list[0]["reason"], "the pin is m-2");
    assert_eq!(list[1]["kind"], "run");
    assert_eq!(list[1]["run"], second.as_str());
    assert_eq!(list[1]["result"], "Succeeded");
    assert_eq!(list[1]["parameters"]["model-id"], "m-2");
    assert_eq!(list[1]["prNumber"], "2");
    assert!(list[1]["durationSeconds"].is_i64(), "{}", list[1]);
    assert!(list[1]["decidedAt"].is_string(), "{}", list[1]);
    assert_eq!(list[2]["kind"], "collected");
    assert_eq!(list[2]["run"], first.as_str());
    assert_eq!(list[2]["result"], "Succeeded");
    assert!(list[2]["collectedAt"].is_string(), "{}", list[2]);
    assert!(list[2]["decidedAt"].is_string(), "{}", list[2]);

    let out = verb(&[
        "history", "deployer", "-n", ns, "--limit", "1", "-o", "yaml",
    ])
    .await;
    let list: Vec<Value> = serde_yaml_ng::from_str(&out.stdout).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["kind"], "decision");

    let out = verb(&["history", "nope", "-n", ns]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[tokio::test]
async fn sync_dry_run_sends_the_secrets_token_to_a_lambda_that_demands_it() {
    let env = Env::new("verbs-dry-token").await;
    let ns = env.ns.as_str();
    // `modelsync lambdas` answering only callers with its token; `retrain-if-stale` says a bare
    // "yes" (no model yet), so no parameter is mapped.
    let (_server, port) = secure_lambda::start_lambdas(env.logs.path()).await;
    let url = format!("http://127.0.0.1:{port}/retrain");
    token_secret(&env, "right", secure_lambda::TOKEN).await;
    token_secret(&env, "wrong", "not-the-token").await;
    for (name, secret) in [
        ("right", "right"),
        ("wrong", "wrong"),
        ("missing", "missing"),
    ] {
        env.apply(modelsync(
            name,
            &url,
            json!({"parameters": [], "lambdaSecretRef": {"name": secret}}),
        ))
        .await;
    }

    let out = verb(&["sync", "right", "-n", ns, "--dry-run"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("decision: sync needed"),
        "{}",
        out.stdout
    );
    assert_eq!(printed_run(&out.stdout)["kind"], "PipelineRun");

    let out = verb(&["sync", "wrong", "-n", ns, "--dry-run"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("LambdaError"), "{}", out.stderr);
    assert!(out.stderr.contains("401"), "{}", out.stderr);
    assert!(!out.stderr.contains("not-the-token"), "{}", out.stderr);

    let out = verb(&["sync", "missing", "-n", ns, "--dry-run"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "LambdaSecretError: Secret {ns}/missing (spec.lambdaSecretRef) does not exist"
        )),
        "{}",
        out.stderr
    );
    assert!(env.runs_of("right").await.is_empty());
}
