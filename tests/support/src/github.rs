//! A local stand-in for GitHub's pull request API, enough for `modelsync bump-pr` to open,
//! find and update one pull request, and for a test or the demo to mark it merged. The demo says
//! plainly that this is a stand-in. It listens on loopback, or on the node's bridge address so
//! that pods reach it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct Pr {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub open: bool,
    pub merged: bool,
    pub labels: Vec<String>,
    pub reviewers: Vec<String>,
}

#[derive(Clone, Default)]
pub struct GitHub {
    prs: Arc<Mutex<Vec<Pr>>>,
    base_url: Arc<Mutex<String>>,
}

impl GitHub {
    /// Serves on a free loopback port; returns the API root for `--github-api`.
    pub async fn start() -> anyhow::Result<(GitHub, String)> {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST.into()).await
    }

    /// Serves on a free port of `ip`; returns the API root for `--github-api`.
    pub async fn start_on(ip: std::net::IpAddr) -> anyhow::Result<(GitHub, String)> {
        let gh = GitHub::default();
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .map_err(|e| anyhow::anyhow!("the GitHub stand-in cannot listen on {ip}: {e}"))?;
        let addr: SocketAddr = listener.local_addr()?;
        let base = format!("http://{addr}");
        *gh.base_url.lock().unwrap() = base.clone();
        let app = Router::new()
            .route("/repos/{owner}/{repo}/pulls", get(list).post(create))
            .route("/repos/{owner}/{repo}/pulls/{number}", patch(update))
            .route(
                "/repos/{owner}/{repo}/issues/{number}/labels",
                post(add_labels),
            )
            .route(
                "/repos/{owner}/{repo}/pulls/{number}/requested_reviewers",
                post(request_reviewers),
            )
            .with_state(gh.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((gh, base))
    }

    /// Every pull request opened so far, oldest first.
    pub fn prs(&self) -> Vec<Pr> {
        self.prs.lock().unwrap().clone()
    }

    pub fn pr(&self, number: u64) -> Option<Pr> {
        self.prs
            .lock()
            .unwrap()
            .iter()
            .find(|p| p.number == number)
            .cloned()
    }

    pub fn mark_merged(&self, number: u64) {
        self.change(number, |p| {
            p.open = false;
            p.merged = true;
        });
    }

    /// Applies `f` to pull request `number` and returns it as changed; `None` when there is none.
    fn change(&self, number: u64, f: impl FnOnce(&mut Pr)) -> Option<Pr> {
        let mut prs = self.prs.lock().unwrap();
        let pr = prs.iter_mut().find(|p| p.number == number)?;
        f(pr);
        Some(pr.clone())
    }

    fn json(&self, owner: &str, repo: &str, pr: &Pr) -> Value {
        let base = self.base_url.lock().unwrap().clone();
        json!({
            "id": 1000 + pr.number,
            "node_id": format!("PR_{}", pr.number),
            "number": pr.number,
            "url": format!("{base}/repos/{owner}/{repo}/pulls/{}", pr.number),
            "html_url": format!("{base}/{owner}/{repo}/pull/{}", pr.number),
            "state": if pr.open { "open" } else { "closed" },
            "locked": false,
            "draft": false,
            "title": pr.title,
            "body": pr.body,
            "merged_at": if pr.merged { json!("2026-01-01T00:00:00Z") } else { Value::Null },
            "head": {"ref": pr.head, "sha": "0000000000000000000000000000000000000000", "label": format!("{owner}:{}", pr.head)},
            "base": {"ref": pr.base, "sha": "0000000000000000000000000000000000000000"},
        })
    }
}

#[derive(Deserialize)]
struct ListQuery {
    head: Option<String>,
    state: Option<String>,
}

async fn list(
    State(gh): State<GitHub>,
    Path((owner, repo)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Json<Value> {
    let state = q.state.unwrap_or_else(|| "open".into());
    let prs = gh.prs.lock().unwrap().clone();
    let items: Vec<Value> = prs
        .iter()
        .filter(|p| {
            q.head
                .as_ref()
                .is_none_or(|h| *h == format!("{owner}:{}", p.head))
        })
        .filter(|p| state == "all" || (state == "open") == p.open)
        .map(|p| gh.json(&owner, &repo, p))
        .collect();
    Json(Value::Array(items))
}

async fn create(
    State(gh): State<GitHub>,
    Path((owner, repo)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let pr = {
        let mut prs = gh.prs.lock().unwrap();
        let pr = Pr {
            number: prs.len() as u64 + 1,
            title: field("title"),
            body: field("body"),
            head: field("head"),
            base: field("base"),
            open: true,
            merged: false,
            labels: Vec::new(),
            reviewers: Vec::new(),
        };
        prs.push(pr.clone());
        pr
    };
    (StatusCode::CREATED, Json(gh.json(&owner, &repo, &pr)))
}

fn not_found() -> (StatusCode, Json<Value>) {
    (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"})))
}

async fn update(
    State(gh): State<GitHub>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let changed = gh.change(number, |pr| {
        if let Some(t) = body.get("title").and_then(Value::as_str) {
            pr.title = t.to_owned();
        }
        if let Some(b) = body.get("body").and_then(Value::as_str) {
            pr.body = b.to_owned();
        }
    });
    match changed {
        Some(pr) => (StatusCode::OK, Json(gh.json(&owner, &repo, &pr))),
        None => not_found(),
    }
}

/// `POST /repos/{owner}/{repo}/issues/{number}/labels` (a pull request is an issue too).
async fn add_labels(
    State(gh): State<GitHub>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let changed = gh.change(number, |pr| {
        for label in body["labels"].as_array().into_iter().flatten() {
            if let Some(name) = label.as_str().filter(|n| !pr.labels.iter().any(|l| l == n)) {
                pr.labels.push(name.to_owned());
            }
        }
    });
    let Some(pr) = changed else {
        return not_found();
    };
    let base = gh.base_url.lock().unwrap().clone();
    let labels: Vec<Value> = pr
        .labels
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({
                "id": i + 1,
                "node_id": format!("LA_{}", i + 1),
                "url": format!("{base}/repos/{owner}/{repo}/labels/{name}"),
                "name": name,
                "color": "ededed",
                "default": false,
                "description": null,
            })
        })
        .collect();
    (StatusCode::OK, Json(Value::Array(labels)))
}

/// `POST /repos/{owner}/{repo}/pulls/{number}/requested_reviewers`.
async fn request_reviewers(
    State(gh): State<GitHub>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let changed = gh.change(number, |pr| {
        for r in body["reviewers"].as_array().into_iter().flatten() {
            if let Some(name) = r.as_str() {
                pr.reviewers.push(name.to_owned());
            }
        }
    });
    match changed {
        Some(pr) => (StatusCode::CREATED, Json(gh.json(&owner, &repo, &pr))),
        None => not_found(),
    }
}
