use std::sync::atomic::AtomicBool;

use axum::body::Body;
use axum::http::Request;
use kube::runtime::reflector;
use kube::runtime::watcher;
use modelsync_api::hook::sign;
use serde_json::Value;
use tower::ServiceExt;

use super::*;

const TOKEN: &str = "hook-t0ken";

fn modelsync(ns: &str, name: &str, url: &str) -> ModelSync {
    serde_json::from_value(json!({
        "apiVersion": "modelsync.dev/v1alpha1",
        "kind": "ModelSync",
        "metadata": {"namespace": ns, "name": name, "uid": format!("{ns}-{name}")},
        "spec": {
            "needsSyncUrl": url,
            "pipelineRunTemplate": {"spec": {"pipelineRef": {"name": "p"}}},
        },
    }))
    .unwrap()
}

struct Fixture {
    state: Receiver,
    _dir: tempfile::TempDir,
}

fn fixture(ready: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let (store, mut writer) = reflector::store::<ModelSync>();
    for ms in [
        modelsync("ml", "trainer", "http://lambdas/needsTrain"),
        modelsync(
            "ml",
            "deployer",
            "http://lambdas.ml.svc.cluster.local/needsSync",
        ),
        modelsync("prod", "deployer", "http://lambdas.ml/needsSync"),
    ] {
        writer.apply_watcher_event(&watcher::Event::Apply(ms));
    }
    let state = Receiver {
        token_file: Arc::from(token_file.as_path()),
        store,
        ready: Arc::new(AtomicBool::new(ready)),
        metrics: Arc::new(Metrics::default()),
        queue: Arc::new(Mutex::new(WriteQueue::new(
            PER_MODELSYNC,
            Duration::ZERO,
            QUEUE_CAPACITY,
        ))),
        wake: Arc::new(Notify::new()),
    };
    Fixture { state, _dir: dir }
}

async fn send(state: &Receiver, body: &str, auth: Option<(&str, String)>) -> (StatusCode, Value) {
    let mut request = Request::post(LAMBDA_CHANGED_PATH);
    if let Some((name, value)) = auth {
        request = request.header(name, value);
    }
    let response = app(state.clone())
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn bearer() -> Option<(&'static str, String)> {
    Some(("authorization", format!("Bearer {TOKEN}")))
}

fn queued(state: &Receiver) -> Vec<(String, String)> {
    let mut queue = state.queue.lock().unwrap();
    let mut out = Vec::new();
    while let Next::Write(key) = queue.next(Instant::now()) {
        out.push(key);
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_hook_queues_the_modelsyncs_naming_its_urls_and_reports_the_rest() {
    let f = fixture(true);
    let body = r#"{"urls": ["http://lambdas.ml/needsSync", "http://lambdas.ml/gone", "::"]}"#;
    let (status, reply) = send(&f.state, body, bearer()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    assert_eq!(
        reply["matched"]["http://lambdas.ml/needsSync"],
        json!(["ml/deployer", "prod/deployer"])
    );
    assert_eq!(reply["unknown"], json!(["http://lambdas.ml/gone"]));
    assert!(
        reply["invalid"]["::"]
            .as_str()
            .unwrap()
            .starts_with("not a URL")
    );
    assert_eq!(
        queued(&f.state),
        vec![
            ("ml".to_string(), "deployer".to_string()),
            ("prod".into(), "deployer".into())
        ]
    );
}

#[tokio::test]
async fn an_hmac_signature_is_as_good_as_the_bearer_token() {
    let f = fixture(true);
    let body = r#"{"urls": ["http://lambdas.ml/needsTrain"]}"#;
    let signed = Some(("x-signature", sign(TOKEN.as_bytes(), body.as_bytes())));
    let (status, reply) = send(&f.state, body, signed).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    assert_eq!(
        queued(&f.state),
        vec![("ml".to_string(), "trainer".to_string())]
    );
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_refused_saying_what_to_send() {
    let f = fixture(true);
    let body = r#"{"urls": ["http://lambdas.ml/needsTrain"]}"#;
    let wrong = [
        None,
        Some(("authorization", "Bearer nope".to_string())),
        Some(("authorization", TOKEN.to_string())),
        Some(("x-signature", sign(b"other key", body.as_bytes()))),
        Some(("x-signature", sign(TOKEN.as_bytes(), b"another body"))),
    ];
    for auth in wrong {
        let (status, reply) = send(&f.state, body, auth.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        let message = reply["error"].as_str().unwrap();
        assert!(
            message.contains("Authorization: Bearer <token>") && message.contains("X-Signature"),
            "{message}"
        );
    }
    assert!(queued(&f.state).is_empty());
    assert!(
        f.state
            .metrics
            .encode()
            .contains(r#"modelsync_receiver_hooks_total{outcome="unauthorized"} 5"#)
    );
}

#[tokio::test]
async fn a_rotated_token_is_used_at_the_next_hook() {
    let f = fixture(true);
    let body = r#"{"urls": []}"#;
    std::fs::write(&*f.state.token_file, "rotated\n").unwrap();
    let (status, _) = send(&f.state, body, bearer()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let new = Some(("authorization", "Bearer rotated".to_string()));
    let (status, _) = send(&f.state, body, new).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn bad_bodies_and_a_controller_not_ready_say_why() {
    let f = fixture(true);
    let (status, reply) = send(&f.state, r#"{"url": "x"}"#, bearer()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `url`"),
        "{reply}"
    );
    let many: Vec<String> = (0..=MAX_URLS).map(|i| format!("http://l.ns/{i}")).collect();
    let (status, reply) = send(&f.state, &json!({"urls": many}).to_string(), bearer()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        reply["error"].as_str().unwrap().contains("at most 256"),
        "{reply}"
    );

    let f = fixture(false);
    let (status, reply) = send(&f.state, r#"{"urls": []}"#, bearer()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply["error"].as_str().unwrap().starts_with("not ready"),
        "{reply}"
    );
}

#[tokio::test]
async fn a_flood_of_hooks_queues_each_modelsync_once() {
    let f = fixture(true);
    let body = r#"{"urls": ["http://lambdas.ml/needsSync"]}"#;
    for _ in 0..50 {
        let (status, _) = send(&f.state, body, bearer()).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    assert_eq!(queued(&f.state).len(), 2);
    assert!(
        f.state
            .metrics
            .encode()
            .contains("modelsync_receiver_coalesced_total 98")
    );
}
