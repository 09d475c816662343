//! The example lambdas in Python and Go run as real processes and are judged by lambda-check.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use modelsync_lambdas::check::{LambdaCheckArgs, check};
use modelsync_testenv::process::Guarded;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lambdas")
}

fn args(url: &str, expect: Option<bool>) -> LambdaCheckArgs {
    LambdaCheckArgs {
        url: url.to_owned(),
        timeout: Duration::from_secs(10),
        bearer_token_file: None,
        ca_file: None,
        namespace: "default".into(),
        name: "example".into(),
        expect_needs_sync: expect,
    }
}

/// Runs the same scenario against a started lambda: no model, a fresh model, a broken record.
async fn scenario(models: &Path, url: &str) {
    let report = check(&args(url, Some(true)))
        .await
        .unwrap_or_else(|e| panic!("no model: {e}"));
    assert_eq!(report.answer.reason.as_deref(), Some("no model exists yet"));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    let fresh = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::fs::write(
        models.join("m1.json"),
        format!(r#"{{"id":"m1","created":"{fresh}"}}"#),
    )
    .unwrap();
    std::fs::write(
        models.join("m0.json"),
        r#"{"id":"m0","created":"2020-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let report = check(&args(url, Some(false)))
        .await
        .unwrap_or_else(|e| panic!("fresh model: {e}"));
    assert_eq!(report.answer.revision.as_deref(), Some("m1"));

    std::fs::write(models.join("m2.json"), "{not json").unwrap();
    let err = check(&args(url, None)).await.unwrap_err().to_string();
    assert!(
        err.starts_with("lambda answered HTTP 500, expected 200") && err.contains("m2.json"),
        "{err}"
    );
}

/// With `--token-file`, an example answers only callers sending that token, as the
/// controller does with the `token` of a ModelSync's lambda Secret.
async fn token_scenario(dir: &Path, url: &str) {
    let err = check(&args(url, None)).await.unwrap_err().to_string();
    assert!(
        err.starts_with("lambda answered HTTP 401, expected 200"),
        "{err}"
    );
    assert!(err.contains("missing or wrong bearer token"), "{err}");
    let with = |token: &str| {
        let file = dir.join(format!("caller-{token}"));
        std::fs::write(&file, format!("{token}\n")).unwrap();
        LambdaCheckArgs {
            bearer_token_file: Some(file),
            ..args(url, Some(true))
        }
    };
    let err = check(&with("guess")).await.unwrap_err().to_string();
    assert!(err.starts_with("lambda answered HTTP 401"), "{err}");
    let report = check(&with(EXAMPLE_TOKEN))
        .await
        .unwrap_or_else(|e| panic!("with the token: {e}"));
    assert_eq!(report.answer.reason.as_deref(), Some("no model exists yet"));
}

const EXAMPLE_TOKEN: &str = "example-token-4d2a";

/// `--token-file` holding [`EXAMPLE_TOKEN`], as a mounted Secret would.
fn token_file(dir: &Path) -> String {
    let file = dir.join("lambda-token");
    std::fs::write(&file, format!("{EXAMPLE_TOKEN}\n")).unwrap();
    file.display().to_string()
}

/// An example lambda running as a real process, stopped when dropped.
struct Running {
    _process: Guarded,
    _logs: tempfile::TempDir,
}

/// Starts `program args... --models <models>` in `models` and waits for it to listen; returns
/// it with the address it says it listens on.
fn start(program: &Path, args: &[&str], models: &Path) -> (Running, String) {
    let logs = tempfile::tempdir().unwrap();
    let mut command = Command::new(program);
    command
        .args(args)
        .arg("--models")
        .arg(models)
        .current_dir(models);
    let mut process =
        Guarded::spawn_command("example-lambda", &command, &logs.path().join("lambda.log"))
            .unwrap();
    let line = process
        .wait_for_line("listening on ", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let base = line.trim_start_matches("listening on ").to_owned();
    let running = Running {
        _process: process,
        _logs: logs,
    };
    (running, base)
}

/// The Python example over `models`, with `extra` flags; its URL.
fn start_python(models: &Path, extra: &[&str]) -> (Running, String) {
    let script = examples().join("python/lambda.py").display().to_string();
    let mut argv = vec![script.as_str(), "--host", "127.0.0.1", "--port", "0"];
    argv.extend(extra);
    let (lambda, base) = start(Path::new("python3"), &argv, models);
    (lambda, format!("{base}/needsTrain"))
}

/// The Go example built into `build`, over `models`, with `extra` flags; its URL.
fn start_go(build: &Path, models: &Path, extra: &[&str]) -> (Running, String) {
    let binary = build.join("lambda");
    let out = Command::new("go")
        .current_dir(examples().join("go"))
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .output()
        .expect("go is installed (see README: the Go example needs a Go toolchain)");
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut argv = vec!["--listen", "127.0.0.1:0"];
    argv.extend(extra);
    let (lambda, base) = start(&binary, &argv, models);
    (lambda, format!("{base}/needsSync"))
}

#[tokio::test]
async fn python_example_follows_the_protocol() {
    let models = tempfile::tempdir().unwrap();
    let (_lambda, url) = start_python(models.path(), &[]);
    scenario(models.path(), &url).await;
}

#[tokio::test]
async fn python_example_checks_the_bearer_token() {
    let models = tempfile::tempdir().unwrap();
    let token = token_file(models.path());
    let (_lambda, url) = start_python(models.path(), &["--token-file", &token]);
    token_scenario(models.path(), &url).await;
}

#[tokio::test]
async fn go_example_follows_the_protocol() {
    let build = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let (_lambda, url) = start_go(build.path(), models.path(), &[]);
    scenario(models.path(), &url).await;
}

#[tokio::test]
async fn go_example_checks_the_bearer_token() {
    let build = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let token = token_file(models.path());
    let (_lambda, url) = start_go(build.path(), models.path(), &["--token-file", &token]);
    token_scenario(models.path(), &url).await;
}

#[tokio::test]
async fn lambda_check_says_what_is_wrong() {
    let app = axum::Router::new()
        .route("/text", axum::routing::get(|| async { "yes" }))
        .route(
            "/string",
            axum::routing::get(|| async { axum::Json(serde_json::json!({"needsSync": "true"})) }),
        )
        .route(
            "/empty",
            axum::routing::get(|| async {
                axum::Json(serde_json::json!({"needsSync": true, "parameters": {"model": ""}}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let err = check(&args(&format!("{base}/text"), None))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("answer is not JSON"), "{err}");
    let err = check(&args(&format!("{base}/string"), None))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, "field needsSync is a string, expected a boolean");
    let err = check(&args(&format!("{base}/missing"), None))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("lambda answered HTTP 404"), "{err}");
    let report = check(&args(&format!("{base}/empty"), None)).await.unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w == "parameter model is empty: a run would get no value"),
        "{report}"
    );
    let port = support::free_port();
    let err = check(&args(&format!("http://127.0.0.1:{port}/"), None))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("calling the lambda"), "{err}");
}
