//! The day-two verbs end to end: the real `modelsync` binary run as a process with the local
//! control plane's kubeconfig, the real controller, a real lambda process, and Tekton played
//! by the test.

mod common;

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
