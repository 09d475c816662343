//! bump-pr's GitHub requests checked against GitHub's official OpenAPI description
//! (`@octokit/openapi`) served by Prism on 127.0.0.1.
//!
//! Prism validates every request against the description and answers a violation with 422; it
//! is run without `--errors` because GitHub's own response examples break a few of their
//! schemas, which `--errors` would turn into 500s for valid requests. The tools are installed by
//! npm on first use into the per-user cache, keyed by version, and reused offline later.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use modelsync_bump_pr::github::GitHub;
use modelsync_bump_pr::secret::Token;
use modelsync_bump_pr::{Status, run};
use modelsync_testenv::process::{Guarded, free_port, log_tail};

const PRISM: &str = "@stoplight/prism-cli@5.14.2";
const OCTOKIT_OPENAPI: &str = "@octokit/openapi@23.0.2";

fn install() -> PathBuf {
    let key = "npm/prism-cli-5.14.2+octokit-openapi-23.0.2";
    modelsync_testenv::cache::get_or_make(key, |dir| {
        let npm = Command::new("npm").arg("--version").output();
        if !npm.is_ok_and(|o| o.status.success()) {
            anyhow::bail!(
                "npm is needed to install Prism and GitHub's OpenAPI description for these tests: \
                 install Node.js 20 with npm (e.g. apt-get install nodejs npm) and run again"
            );
        }
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir)
            .args([PRISM, OCTOKIT_OPENAPI])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "npm install {PRISM} {OCTOKIT_OPENAPI} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e:#}"))
}

struct Prism {
    _process: Guarded,
    port: u16,
    log: PathBuf,
}

/// One Prism per test binary: loading GitHub's description takes a while. A static is never
/// dropped, so the process guard's stdin pipe, closed when this binary exits, stops Prism.
fn prism() -> &'static Prism {
    static PRISM_SERVER: OnceLock<Prism> = OnceLock::new();
    static LOG_DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    PRISM_SERVER.get_or_init(|| {
        let tools = install();
        let spec = tools.join("node_modules/@octokit/openapi/generated/api.github.com.json");
        assert!(spec.exists(), "no GitHub description at {}", spec.display());
        let log = LOG_DIR
            .get_or_init(|| tempfile::tempdir().unwrap())
            .path()
            .join("prism.log");
        let port = free_port().unwrap();
        let process = Guarded::spawn(
            "prism",
            &tools.join("node_modules/.bin/prism"),
            &[
                "mock".into(),
                spec.display().to_string(),
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
            ],
            &log,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            if log_text.contains("Prism is listening") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Prism did not start in 300 s: {}",
                log_tail(&log, 20)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Prism {
            _process: process,
            port,
            log,
        }
    })
}

/// Request violations Prism logged since `from` (a byte offset of its log).
fn violations_since(from: usize) -> Vec<String> {
    let log = std::fs::read_to_string(&prism().log).unwrap();
    log[from.min(log.len())..]
        .lines()
        .filter(|l| l.contains("Violation: request"))
        .map(str::to_string)
        .collect()
}

fn log_len() -> usize {
    std::fs::metadata(&prism().log).unwrap().len() as usize
}

/// Tests share one Prism and read its log by offset; this keeps their log slices apart.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn raw(method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", prism().port)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[tokio::test]
async fn the_client_requests_pass_github_validation() {
    let prism = prism();
    let _serial = SERIAL.lock().await;
    let start = log_len();
    let api = format!("http://127.0.0.1:{}", prism.port);
    let token = Token::new(TOKEN.into()).unwrap();
    let github = GitHub::new(&api, &token, OWNER, REPO).unwrap();

    github
        .pulls_for_branch(BRANCH)
        .await
        .unwrap_or_else(|e| panic!("list pulls by head: {e}"));
    let pr = github
        .create(
            "Bump model to m-2",
            "Pins model `m-2`.",
            BRANCH,
            "main",
            true,
        )
        .await
        .unwrap_or_else(|e| panic!("create pull: {e}"));
    github
        .update(pr.number, "Bump model to m-3", "Pins model `m-3`.")
        .await
        .unwrap_or_else(|e| panic!("update pull: {e}"));
    github
        .add_labels(pr.number, &["model-bump".into()])
        .await
        .unwrap_or_else(|e| panic!("add labels: {e}"));
    github
        .request_reviewers(pr.number, &["alice".into(), "acme/ml-team".into()])
        .await
        .unwrap_or_else(|e| panic!("request reviewers: {e}"));
    assert_eq!(violations_since(start), Vec::<String>::new());
}

#[tokio::test]
async fn a_whole_run_passes_github_validation() {
    let prism = prism();
    let _serial = SERIAL.lock().await;
    let start = log_len();
    let remote = Remote::new();
    let (_t, token) = token_file();
    let api = format!("http://127.0.0.1:{}", prism.port);
    let a = args(
        &remote.url(),
        &api,
        &token,
        "m-2",
        &["--labels", "model-bump", "--reviewers", "alice", "--draft"],
    );
    let mut out = Vec::new();
    let outcome = run(&a, &mut out)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", log_tail(&prism.log, 30)));
    // Prism's example pull requests have another head, so the run opens its own.
    assert_eq!(outcome.status, Status::Opened);
    let log = std::fs::read_to_string(&prism.log).unwrap();
    let ours = &log[start..];
    assert!(ours.contains("post /repos/acme/gitops/pulls"), "{ours}");
    assert!(ours.contains("get /repos/acme/gitops/pulls"), "{ours}");
    assert_eq!(violations_since(start), Vec::<String>::new());
}

#[test]
fn prism_rejects_requests_github_would_reject() {
    let _ = prism();
    let _serial = SERIAL.blocking_lock();
    let start = log_len();
    let (status, _) = raw("POST", "/repos/acme/gitops/pulls", r#"{"title": 5}"#);
    assert_eq!(status, 422);
    let (status, _) = raw("GET", "/repos/acme/gitops/pulls?state=merged", "");
    assert_eq!(status, 422);
    let violations = violations_since(start);
    assert!(
        violations.iter().any(|v| v.contains("'head'"))
            && violations.iter().any(|v| v.contains("state")),
        "{violations:?}"
    );
}
