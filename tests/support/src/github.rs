//! A local stand-in for GitHub's pull request API, enough for `modelsync bump-pr` to open,
//! find and update one pull request, and for a test or the demo to mark it merged. The demo says
//! plainly that this is a stand-in. It listens on loopback, or on the node's bridge address so
//! that pods reach it; it answers at its root and at GitHub Enterprise's `/api/v3` alike.
//!
//! Tests read back every request it received ([`GitHub::seen`]) and make an endpoint fail the
//! way GitHub fails ([`GitHub::fail`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
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
    pub draft: bool,
    pub labels: Vec<String>,
    pub reviewers: Vec<String>,
}

/// A request the stand-in received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The `Authorization` header, empty when there was none.
    pub authorization: String,
    /// The JSON body, `null` when there was none.
    pub body: Value,
}

/// The endpoints the stand-in serves, to make one of them (or all) fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /repos/{owner}/{repo}/pulls`
    ListPulls,
    /// `POST /repos/{owner}/{repo}/pulls`
    CreatePull,
    /// `PATCH /repos/{owner}/{repo}/pulls/{number}`
    UpdatePull,
    /// `POST /repos/{owner}/{repo}/issues/{number}/labels`
    AddLabels,
    /// `POST /repos/{owner}/{repo}/pulls/{number}/requested_reviewers`
    RequestReviewers,
    /// Every request.
    Any,
}

impl Endpoint {
    /// The endpoint a request is for, whatever the root (`/` or `/api/v3/`) in front of it.
    fn of(method: &Method, path: &str) -> Option<Endpoint> {
        let rest = &path[path.find("/repos/")? + "/repos/".len()..];
        let parts: Vec<&str> = rest.split('/').skip(2).collect();
        Some(match (method.as_str(), parts.as_slice()) {
            ("GET", ["pulls"]) => Endpoint::ListPulls,
            ("POST", ["pulls"]) => Endpoint::CreatePull,
            ("PATCH", ["pulls", _]) => Endpoint::UpdatePull,
            ("POST", ["issues", _, "labels"]) => Endpoint::AddLabels,
            ("POST", ["pulls", _, "requested_reviewers"]) => Endpoint::RequestReviewers,
            _ => return None,
        })
    }
}

/// An answer given instead of the stand-in's own.
struct Failure {
    endpoint: Endpoint,
    status: StatusCode,
    body: Value,
}

#[derive(Default)]
struct Recorded {
    prs: Vec<Pr>,
    seen: Vec<Seen>,
    failures: Vec<Failure>,
}

#[derive(Clone)]
pub struct GitHub {
    recorded: Arc<Mutex<Recorded>>,
    url: Arc<str>,
}

impl GitHub {
    /// Serves on a free loopback port; returns the API root for `--github-api`.
    pub async fn start() -> anyhow::Result<(GitHub, String)> {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST.into()).await
    }

    /// Serves on a free port of `ip`; returns the API root for `--github-api`.
    pub async fn start_on(ip: std::net::IpAddr) -> anyhow::Result<(GitHub, String)> {
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .map_err(|e| anyhow::anyhow!("the GitHub stand-in cannot listen on {ip}: {e}"))?;
        let addr: SocketAddr = listener.local_addr()?;
        let gh = GitHub {
            recorded: Arc::default(),
            url: format!("http://{addr}").into(),
        };
        let api = Router::new()
            .route("/repos/{owner}/{repo}/pulls", get(list).post(create))
            .route("/repos/{owner}/{repo}/pulls/{number}", patch(update))
            .route(
                "/repos/{owner}/{repo}/issues/{number}/labels",
                post(add_labels),
            )
            .route(
                "/repos/{owner}/{repo}/pulls/{number}/requested_reviewers",
                post(request_reviewers),
            );
        let app = Router::new()
            .merge(api.clone())
            .nest("/api/v3", api)
            .fallback(|| async { not_found() })
            .layer(middleware::from_fn_with_state(gh.clone(), record))
            .with_state(gh.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let url = gh.url().to_owned();
        Ok((gh, url))
    }

    /// The API root, `http://<ip>:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn recorded(&self) -> MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap()
    }

    /// Every pull request so far, oldest first.
    pub fn prs(&self) -> Vec<Pr> {
        self.recorded().prs.clone()
    }

    pub fn pr(&self, number: u64) -> Option<Pr> {
        self.recorded()
            .prs
            .iter()
            .find(|p| p.number == number)
            .cloned()
    }

    /// Adds a pull request as if someone had opened (and perhaps closed) it before.
    pub fn add_pr(&self, pr: Pr) {
        self.recorded().prs.push(pr);
    }

    pub fn mark_merged(&self, number: u64) {
        self.change(number, |p| {
            p.open = false;
            p.merged = true;
        });
    }

    /// Every request received so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.recorded().seen.clone()
    }

    /// The requests that could change something (all but GET).
    pub fn writes(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method != "GET")
            .collect()
    }

    /// From now on `endpoint` answers `status` with `body`, as GitHub does when it refuses.
    pub fn fail(&self, endpoint: Endpoint, status: u16, body: Value) {
        let status = StatusCode::from_u16(status).expect("an HTTP status code");
        self.recorded().failures.push(Failure {
            endpoint,
            status,
            body,
        });
    }

    /// Applies `f` to pull request `number` and returns it as changed; `None` when there is none.
    fn change(&self, number: u64, f: impl FnOnce(&mut Pr)) -> Option<Pr> {
        let mut recorded = self.recorded();
        let pr = recorded.prs.iter_mut().find(|p| p.number == number)?;
        f(pr);
        Some(pr.clone())
    }

    fn json(&self, owner: &str, repo: &str, pr: &Pr) -> Value {
        let base = &self.url;
        json!({
            "id": 1000 + pr.number,
            "node_id": format!("PR_{}", pr.number),
            "number": pr.number,
            "url": format!("{base}/repos/{owner}/{repo}/pulls/{}", pr.number),
            "html_url": format!("{base}/{owner}/{repo}/pull/{}", pr.number),
            "state": if pr.open { "open" } else { "closed" },
            "locked": false,
            "draft": pr.draft,
            "title": pr.title,
            "body": pr.body,
            "merged_at": if pr.merged { json!("2026-01-01T00:00:00Z") } else { Value::Null },
            "head": {"ref": pr.head, "sha": "0000000000000000000000000000000000000000", "label": format!("{owner}:{}", pr.head)},
            "base": {"ref": pr.base, "sha": "0000000000000000000000000000000000000000"},
        })
    }
}

/// Records every request, then answers it with a failure set by [`GitHub::fail`] if one
/// matches, or passes it on.
async fn record(State(gh): State<GitHub>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let endpoint = Endpoint::of(&parts.method, parts.uri.path());
    let failure = {
        let mut recorded = gh.recorded();
        recorded.seen.push(Seen {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            authorization: parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        });
        recorded
            .failures
            .iter()
            .find(|f| f.endpoint == Endpoint::Any || Some(f.endpoint) == endpoint)
            .map(|f| (f.status, f.body.clone()))
    };
    match failure {
        Some((status, body)) => (status, Json(body)).into_response(),
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
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
    let items: Vec<Value> = gh
        .prs()
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

fn validation_failed(errors: Value) -> (StatusCode, Json<Value>) {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"message": "Validation Failed", "errors": errors})),
    )
}

/// Opens a pull request; like GitHub, refuses one without title, head or base, and a second
/// open one for the same head.
async fn create(
    State(gh): State<GitHub>,
    Path((owner, repo)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let (Some(title), Some(head), Some(base)) = (field("title"), field("head"), field("base"))
    else {
        return validation_failed(json!([{"message": "title, head and base are required"}]));
    };
    let pr = {
        let mut recorded = gh.recorded();
        if recorded.prs.iter().any(|p| p.open && p.head == head) {
            return validation_failed(json!([{
                "message": format!("A pull request already exists for {owner}:{head}.")
            }]));
        }
        let pr = Pr {
            number: recorded.prs.iter().map(|p| p.number).max().unwrap_or(0) + 1,
            title,
            body: field("body").unwrap_or_default(),
            head,
            base,
            open: true,
            merged: false,
            draft: body.get("draft").and_then(Value::as_bool).unwrap_or(false),
            labels: Vec::new(),
            reviewers: Vec::new(),
        };
        recorded.prs.push(pr.clone());
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
    let base = gh.url();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_found_under_any_root() {
        use Endpoint::*;
        let cases = [
            ("GET /repos/acme/gitops/pulls", Some(ListPulls)),
            ("POST /api/v3/repos/acme/gitops/pulls", Some(CreatePull)),
            ("PATCH /repos/acme/gitops/pulls/7", Some(UpdatePull)),
            ("POST /repos/acme/gitops/issues/7/labels", Some(AddLabels)),
            (
                "POST /repos/acme/gitops/pulls/7/requested_reviewers",
                Some(RequestReviewers),
            ),
            ("DELETE /repos/acme/gitops/pulls/7", None),
            ("GET /user", None),
        ];
        for (request, endpoint) in cases {
            let (method, path) = request.split_once(' ').unwrap();
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(Endpoint::of(&method, path), endpoint, "{method} {path}");
        }
    }

    #[tokio::test]
    async fn records_requests_and_fails_where_told() {
        let (gh, api) = GitHub::start().await.unwrap();
        let http = reqwest::Client::new();
        let open = |title: &str| {
            http.post(format!("{api}/api/v3/repos/acme/gitops/pulls"))
                .bearer_auth("t0ken")
                .json(&json!({"title": title, "head": "bump", "base": "main"}))
                .send()
        };
        let first = open("Bump").await.unwrap();
        assert_eq!(first.status(), 201);
        let again = open("Bump again").await.unwrap();
        assert_eq!(again.status(), 422, "a second open PR for one head");
        gh.fail(Endpoint::CreatePull, 403, json!({"message": "Forbidden"}));
        let refused = open("Bump").await.unwrap();
        assert_eq!(refused.status(), 403);
        assert_eq!(
            refused.json::<Value>().await.unwrap()["message"],
            "Forbidden"
        );

        assert_eq!(gh.prs().len(), 1);
        let seen = gh.seen();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|s| s.method == "POST"
            && s.path == "/api/v3/repos/acme/gitops/pulls"
            && s.authorization == "Bearer t0ken"
            && s.body["head"] == "bump"));
        let listed = http
            .get(format!("{api}/repos/acme/gitops/pulls?state=all"))
            .send()
            .await
            .unwrap();
        assert_eq!(listed.json::<Value>().await.unwrap()[0]["number"], 1);
        assert_eq!(gh.writes().len(), 3, "a GET is not a write");
    }
}
