//! The lambda server over a real mirrored repository: answers from memory, recomputed when a
//! commit lands.

mod support;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use modelsync_lambdas::mirror::{self, SyncSpec};
use modelsync_lambdas::{config, engine, server};
use serde_json::Value;
use support::Upstream;
use tower::ServiceExt;

const MODEL_1: &str = "id: m1\ncreated: 2026-01-01T00:00:00Z\ndataRevision: REV\n";
const PIN_1: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: model}\ndata:\n  model: m1\n";

fn config_text(up: &Upstream, root: &std::path::Path, auth: &str) -> String {
    format!(
        r#"
listen: 127.0.0.1:0
mirror: {{repo: "{}", ref: main, root: "{}", period: 200ms}}
models: {{records: models/}}
{auth}
routes:
  /retrain: {{lambda: retrain-if-stale, maxAge: 100000d}}
  /retrain-on-data: {{lambda: retrain-on-new-data, dataPath: data/}}
  /deploy: {{lambda: deploy-if-newer, file: manifests/model.yaml, yamlPath: data.model}}
"#,
        up.url(),
        root.display()
    )
}

async fn get(app: &axum::Router, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::get(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&body)
            .unwrap_or(Value::String(String::from_utf8_lossy(&body).into())),
    )
}

/// Polls `path` until `check` accepts its answer.
async fn wait_for(
    app: &axum::Router,
    path: &str,
    check: impl Fn(StatusCode, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(app, path, None).await;
        if check(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_answer_and_follow_new_commits() {
    let up = Upstream::new();
    let c1 = up.commit(&[("data/a.csv", "1"), ("manifests/model.yaml", PIN_1)]);
    up.commit(&[("models/m1.yaml", &MODEL_1.replace("REV", &c1))]);
    let root = tempfile::tempdir().unwrap();
    let here = tempfile::tempdir().unwrap();
    let cfg = config::parse(&config_text(&up, root.path(), ""), here.path()).unwrap();
    let state = server::start(cfg).await.unwrap();
    let app = server::app(state);

    wait_for(&app, "/readyz", |s, _| s == StatusCode::OK).await;
    let (status, retrain) = get(&app, "/retrain", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(retrain["needsSync"], false, "{retrain}");
    assert!(
        retrain["reason"]
            .as_str()
            .unwrap()
            .contains("newest model m1")
    );
    let (_, deploy) = get(&app, "/deploy", None).await;
    assert_eq!(deploy["needsSync"], false, "equal ids: {deploy}");
    let (_, data) = get(&app, "/retrain-on-data", None).await;
    assert_eq!(
        data["needsSync"], false,
        "only models/ changed since c1: {data}"
    );

    // New data and a new model trained before it: both lambdas say yes.
    let c3 = up.commit(&[("data/b.csv", "2")]);
    up.commit(&[(
        "models/m2.yaml",
        "id: m2\ncreated: 2026-02-01T00:00:00Z\ndataRevision: REV\n"
            .replace("REV", &c1)
            .as_str(),
    )]);
    let deploy = wait_for(&app, "/deploy", |_, b| b["needsSync"] == true).await;
    assert_eq!(deploy["parameters"]["model"], "m2");
    assert_eq!(deploy["revision"].as_str().unwrap(), &up.head()[..12]);
    let (_, data) = get(&app, "/retrain-on-data", None).await;
    assert_eq!(data["needsSync"], true, "{data}");
    assert!(
        data["reason"].as_str().unwrap().contains(&c3[..12]),
        "{data}"
    );

    // The pinned path disappears: an error answer, never a yes with an empty id.
    up.commit(&[("manifests/model.yaml", "kind: ConfigMap\ndata: {}\n")]);
    let deploy = wait_for(&app, "/deploy", |s, _| {
        s == StatusCode::INTERNAL_SERVER_ERROR
    })
    .await;
    assert!(
        deploy["error"]
            .as_str()
            .unwrap()
            .contains("there is no value at data.model"),
        "{deploy}"
    );

    // A record that cannot be read: every lambda says so instead of guessing.
    up.commit(&[("models/m3.yaml", "id: m3\ncreated: soon\n")]);
    let retrain = wait_for(&app, "/retrain", |s, _| {
        s == StatusCode::INTERNAL_SERVER_ERROR
    })
    .await;
    assert!(
        retrain["error"]
            .as_str()
            .unwrap()
            .contains("models/m3.yaml: record m3: field created"),
        "{retrain}"
    );

    let (status, _) = get(&app, "/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let resp = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    for want in [
        "modelsync_lambda_server_requests_total{route=\"/retrain\",code=\"200\"} ",
        "modelsync_lambda_server_requests_total{route=\"/retrain\",code=\"500\"} ",
        "modelsync_lambda_server_answers_total{route=\"/deploy\",outcome=\"error\"} 1",
        "modelsync_lambda_server_requests_total{route=\"unmatched\",code=\"404\"} 1",
        "modelsync_lambda_server_request_duration_seconds_count{route=\"/retrain\"} ",
        "git_sync_count_total{status=\"success\"}",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    // Every family is described even with no series yet (no hook or notification here), so
    // a dashboard naming one can tell "nothing yet" from "renamed".
    for family in [
        "# TYPE modelsync_lambda_server_requests counter",
        "# TYPE modelsync_lambda_server_request_duration_seconds histogram",
        "# TYPE modelsync_lambda_server_answers counter",
        "# TYPE modelsync_lambda_server_notifications counter",
        "# TYPE modelsync_lambda_server_git_hooks counter",
        "# TYPE git_sync_count counter",
        "# TYPE git_sync_duration_seconds histogram",
    ] {
        assert!(text.contains(family), "missing {family} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_model_and_a_token_over_a_real_socket() {
    let up = Upstream::new();
    up.commit(&[("manifests/model.yaml", PIN_1)]);
    let root = tempfile::tempdir().unwrap();
    let here = tempfile::tempdir().unwrap();
    std::fs::write(here.path().join("token"), "s3cret\n").unwrap();
    let text = config_text(&up, root.path(), "auth: {bearerTokenFile: token}");
    let cfg = config::parse(&text, here.path()).unwrap();
    let app = server::app(server::start(cfg).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unauthorized = client.get(format!("{base}/retrain")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let retrain: Value = client
        .get(format!("{base}/retrain"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(retrain["needsSync"], true);
    assert_eq!(retrain["reason"], "no model exists yet");
    let deploy = client
        .get(format!("{base}/deploy"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(deploy.status(), 500, "no model is an error answer");
    let body: Value = deploy.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("no model to deploy"),
        "{body}"
    );
}

/// `compute` over scripted histories, including a mirror too shallow to find the training commit.
#[test]
fn new_data_over_scripted_histories() {
    let up = Upstream::new();
    let trained = up.commit(&[("data/a.csv", "1")]);
    up.commit(&[("README.md", "docs")]);
    let routes = config::parse(
        "mirror: {repo: x, root: r}\nmodels: {records: models}\nroutes:\n  /d: {lambda: retrain-on-new-data, dataPath: data}\n",
        std::path::Path::new("."),
    )
    .unwrap();
    let (routes, stores) = (routes.routes.clone(), routes.stores());
    let model = format!("id: m1\ncreated: 2026-01-01T00:00:00Z\ndataRevision: {trained}\n");
    let models = Ok(modelsync_lambdas::sources::records::parse("m", &model).unwrap());
    let answer = |depth: u32| {
        let root = tempfile::tempdir().unwrap();
        let spec = SyncSpec {
            repo: up.url(),
            git_ref: "main".into(),
            root: root.path().canonicalize().unwrap(),
            link: "repo".into(),
            depth,
            credentials: Default::default(),
        };
        let hash = mirror::sync::sync(&spec).unwrap().hash().to_owned();
        let synced = mirror::Synced {
            worktree: mirror::layout::worktree_path(&spec.root, &hash),
            hash,
        };
        let (answers, _) = engine::compute(&routes, &stores, &synced, &models, chrono::Utc::now());
        let served = &answers.routes["/d"];
        (
            served.status,
            serde_json::from_slice::<Value>(&served.body).unwrap(),
        )
    };
    let (status, body) = answer(0);
    assert_eq!(
        (status, &body["needsSync"]),
        (StatusCode::OK, &Value::Bool(false)),
        "{body}"
    );

    up.commit(&[("data/a.csv", "2")]);
    up.commit(&[("README.md", "more docs")]);
    let (_, body) = answer(0);
    assert_eq!(body["needsSync"], true, "{body}");

    // Rewritten history: the training commit is gone from the branch.
    support::git(&up.work(), &["checkout", "-q", "--orphan", "fresh"]);
    up.commit(&[("data/a.csv", "3")]);
    let (status, body) = answer(0);
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("is not in the 1 mirrored commit(s)"),
        "{body}"
    );
}
