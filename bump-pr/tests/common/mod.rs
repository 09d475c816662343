//! Shared pieces of the bump-pr integration tests: real git remotes made with the git CLI, a
//! stateful fake of GitHub's pull request API on wiremock, and argument building.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use modelsync_bump_pr::BumpPrArgs;
use serde_json::{Value, json};
use tempfile::TempDir;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const OWNER: &str = "acme";
pub const REPO: &str = "gitops";
pub const BRANCH: &str = "modelsync/label-bot";
pub const AUTHOR: &str = "modelsync-bot <bot@modelsync.test>";
pub const TOKEN: &str = "ghp_TESTTOKEN0123456789abcdefSENTINEL";

pub const PIN: &str = "# the deployed model\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: label-bot-model\ndata:\n  model: \"m-1\"   # bumped by modelsync\n  threshold: '0.7'\n";

/// Runs the git CLI with a fixed identity and no user or system config.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "Jane Human")
        .env("GIT_AUTHOR_EMAIL", "jane@example.com")
        .env("GIT_COMMITTER_NAME", "Jane Human")
        .env("GIT_COMMITTER_EMAIL", "jane@example.com")
        .output()
        .expect("git must be installed to run these tests (apt-get install git)");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository on disk with `pin.yaml` committed on `main`.
pub struct Remote {
    pub dir: TempDir,
}

impl Remote {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("gitops.git");
        git(
            dir.path(),
            &["init", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        let seed = dir.path().join("seed");
        git(dir.path(), &["init", "-b", "main", seed.to_str().unwrap()]);
        std::fs::create_dir_all(seed.join("prod")).unwrap();
        std::fs::write(seed.join("prod/pin.yaml"), PIN).unwrap();
        std::fs::write(seed.join("README.md"), "gitops\n").unwrap();
        git(&seed, &["add", "."]);
        git(&seed, &["commit", "-m", "seed"]);
        git(&seed, &["push", bare.to_str().unwrap(), "main"]);
        Self { dir }
    }

    pub fn bare(&self) -> PathBuf {
        self.dir.path().join("gitops.git")
    }

    pub fn url(&self) -> String {
        self.bare().to_str().unwrap().to_string()
    }

    pub fn head(&self, branch: &str) -> Option<String> {
        let out = Command::new("git")
            .args(["rev-parse", "--verify", "--quiet"])
            .arg(format!("refs/heads/{branch}"))
            .current_dir(self.bare())
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn show(&self, rev: &str) -> String {
        git(&self.bare(), &["show", rev])
    }

    pub fn file(&self, branch: &str, path: &str) -> String {
        git(&self.bare(), &["show", &format!("{branch}:{path}")])
    }

    /// Commits to `branch` as a person, the way someone fixing up a bump PR would.
    pub fn human_commit(&self, branch: &str) {
        let work = self.dir.path().join("human");
        let _ = std::fs::remove_dir_all(&work);
        git(
            self.dir.path(),
            &[
                "clone",
                "-b",
                branch,
                self.bare().to_str().unwrap(),
                work.to_str().unwrap(),
            ],
        );
        std::fs::write(work.join("README.md"), "gitops, edited by a person\n").unwrap();
        git(&work, &["commit", "-am", "docs: explain the pin"]);
        git(&work, &["push", "origin", branch]);
    }

    /// Merges `branch` into main, as the human reviewer would.
    pub fn merge(&self, branch: &str) {
        let work = self.dir.path().join("merger");
        let _ = std::fs::remove_dir_all(&work);
        git(
            self.dir.path(),
            &[
                "clone",
                self.bare().to_str().unwrap(),
                work.to_str().unwrap(),
            ],
        );
        git(
            &work,
            &[
                "merge",
                "--no-ff",
                "-m",
                "merge",
                &format!("origin/{branch}"),
            ],
        );
        git(&work, &["push", "origin", "main"]);
    }
}

/// `git daemon` serving a folder of repositories on 127.0.0.1. It runs under the test
/// environment's process guard, so it stops when this is dropped or the test binary dies.
pub struct GitDaemon {
    _process: modelsync_testenv::process::Guarded,
    _log_dir: TempDir,
    pub port: u16,
}

impl GitDaemon {
    pub fn start(base: &Path) -> Self {
        let port = free_port();
        // `git daemon` runs git-daemon as a child and would leave it behind when stopped, so the
        // daemon program is started directly.
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git must be installed to run these tests (apt-get install git)");
        let exec_path = String::from_utf8_lossy(&exec_path.stdout)
            .trim()
            .to_string();
        let log_dir = tempfile::tempdir().unwrap();
        let process = modelsync_testenv::process::Guarded::spawn(
            "git-daemon",
            &Path::new(&exec_path).join("git-daemon"),
            &[
                "--reuseaddr".into(),
                "--listen=127.0.0.1".into(),
                format!("--port={port}"),
                format!("--base-path={}", base.display()),
                "--export-all".into(),
                "--enable=receive-pack".into(),
                base.display().to_string(),
            ],
            &log_dir.path().join("git-daemon.log"),
        )
        .expect("git daemon must be available (apt-get install git)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            _process: process,
            _log_dir: log_dir,
            port,
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One pull request in the fake's state.
#[derive(Clone, Debug)]
pub struct FakePr {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub open: bool,
    pub merged: bool,
    pub draft: bool,
    pub labels: Vec<String>,
}

/// A request the fake saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: String,
    pub body: Value,
}

#[derive(Default)]
pub struct State {
    pub prs: Vec<FakePr>,
    pub seen: Vec<Seen>,
}

/// A stateful stand-in for GitHub's pull request endpoints, at any path prefix (so the
/// GitHub Enterprise `/api/v3` root works the same).
pub struct FakeGitHub {
    pub server: MockServer,
    pub state: Arc<Mutex<State>>,
}

struct Responder(Arc<Mutex<State>>);

fn pr_json(pr: &FakePr, base_url: &str) -> Value {
    json!({
        "id": 1000 + pr.number,
        "node_id": format!("PR_{}", pr.number),
        "number": pr.number,
        "url": format!("{base_url}/repos/{OWNER}/{REPO}/pulls/{}", pr.number),
        "html_url": format!("https://github.test/{OWNER}/{REPO}/pull/{}", pr.number),
        "state": if pr.open { "open" } else { "closed" },
        "locked": false,
        "draft": pr.draft,
        "title": pr.title,
        "body": pr.body,
        "merged_at": if pr.merged { json!("2026-11-01T00:00:00Z") } else { Value::Null },
        "head": {"ref": pr.head, "sha": "0000000000000000000000000000000000000000", "label": format!("{OWNER}:{}", pr.head)},
        "base": {"ref": pr.base, "sha": "0000000000000000000000000000000000000000"},
    })
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.0.lock().unwrap();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let path = request.url.path().to_string();
        state.seen.push(Seen {
            method: request.method.to_string(),
            path: path.clone(),
            query: request.url.query().unwrap_or_default().to_string(),
            authorization: request
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            body: body.clone(),
        });
        let base_url = format!("{}://{}", request.url.scheme(), request.url.authority());
        let repo = format!("/repos/{OWNER}/{REPO}/");
        let Some(rest) = path.find(&repo).map(|i| &path[i + repo.len()..]) else {
            return ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"}));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match (request.method.as_str(), parts.as_slice()) {
            ("GET", ["pulls"]) => {
                let head = request
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "head")
                    .map(|(_, v)| v.to_string());
                let state_filter = request
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "state")
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_else(|| "open".into());
                let list: Vec<Value> = state
                    .prs
                    .iter()
                    .filter(|p| {
                        head.as_ref()
                            .is_none_or(|h| *h == format!("{OWNER}:{}", p.head))
                    })
                    .filter(|p| state_filter == "all" || (state_filter == "open") == p.open)
                    .map(|p| pr_json(p, &base_url))
                    .collect();
                ResponseTemplate::new(200).set_body_json(list)
            }
            ("POST", ["pulls"]) => {
                let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
                let (Some(title), Some(head), Some(base)) =
                    (field("title"), field("head"), field("base"))
                else {
                    return ResponseTemplate::new(422)
                        .set_body_json(json!({"message": "Validation Failed"}));
                };
                if state.prs.iter().any(|p| p.open && p.head == head) {
                    return ResponseTemplate::new(422).set_body_json(json!({
                        "message": "Validation Failed",
                        "errors": [{"message": format!("A pull request already exists for {OWNER}:{head}.")}]
                    }));
                }
                let pr = FakePr {
                    number: state.prs.iter().map(|p| p.number).max().unwrap_or(0) + 1,
                    title,
                    body: field("body").unwrap_or_default(),
                    head,
                    base,
                    open: true,
                    merged: false,
                    draft: body.get("draft").and_then(Value::as_bool).unwrap_or(false),
                    labels: Vec::new(),
                };
                state.prs.push(pr.clone());
                ResponseTemplate::new(201).set_body_json(pr_json(&pr, &base_url))
            }
            ("PATCH", ["pulls", number]) => {
                let number: u64 = number.parse().unwrap_or(0);
                let Some(pr) = state.prs.iter_mut().find(|p| p.number == number) else {
                    return ResponseTemplate::new(404)
                        .set_body_json(json!({"message": "Not Found"}));
                };
                if let Some(t) = body.get("title").and_then(Value::as_str) {
                    pr.title = t.to_string();
                }
                if let Some(b) = body.get("body").and_then(Value::as_str) {
                    pr.body = b.to_string();
                }
                let pr = pr.clone();
                ResponseTemplate::new(200).set_body_json(pr_json(&pr, &base_url))
            }
            ("POST", ["issues", number, "labels"]) => {
                let number: u64 = number.parse().unwrap_or(0);
                let labels: Vec<String> = body
                    .get("labels")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(pr) = state.prs.iter_mut().find(|p| p.number == number) {
                    pr.labels.extend(labels.clone());
                }
                let out: Vec<Value> = labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| json!({"id": i + 1, "node_id": "L", "url": format!("{base_url}/labels/{l}"), "name": l, "color": "ededed", "default": false}))
                    .collect();
                ResponseTemplate::new(200).set_body_json(out)
            }
            ("POST", ["pulls", number, "requested_reviewers"]) => {
                let number: u64 = number.parse().unwrap_or(0);
                match state.prs.iter().find(|p| p.number == number) {
                    Some(pr) => ResponseTemplate::new(201).set_body_json(pr_json(pr, &base_url)),
                    None => {
                        ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"}))
                    }
                }
            }
            _ => ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})),
        }
    }
}

impl FakeGitHub {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(wiremock::matchers::any())
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        Self { server, state }
    }

    pub fn prs(&self) -> Vec<FakePr> {
        self.state.lock().unwrap().prs.clone()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Requests that change something (anything but GET).
    pub fn writes(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method != "GET")
            .collect()
    }

    pub fn add_pr(&self, pr: FakePr) {
        self.state.lock().unwrap().prs.push(pr);
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BumpPrArgs,
}

/// A token file in its own folder, outside any clone.
pub fn token_file() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    (dir, path)
}

/// Arguments for a run that pins `model` in `prod/pin.yaml`, plus `extra` flags.
pub fn args(repo: &str, api: &str, token: &Path, model: &str, extra: &[&str]) -> BumpPrArgs {
    let mut argv: Vec<String> = [
        "bump-pr",
        "--repo",
        repo,
        "--base",
        "main",
        "--branch",
        BRANCH,
        "--file",
        "prod/pin.yaml",
        "--author",
        AUTHOR,
        "--github-api",
        api,
        "--github-repo",
        &format!("{OWNER}/{REPO}"),
        "--token-file",
        token.to_str().unwrap(),
        "--modelsync",
        "prod/label-bot",
        "--run",
        "label-bot-deploy-x1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.push("--set".into());
    argv.push(format!("data.model={model}"));
    argv.extend(extra.iter().map(|s| s.to_string()));
    Cli::try_parse_from(argv).unwrap().args
}
