//! `notify` against a real HTTP receiver on a socket: the token is sent, a refused delivery is
//! retried with backoff, and routes that change meanwhile ride along with the retry.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use modelsync_api::hook::{LambdaChanged, LambdaChangedReply};
use modelsync_lambdas::config::NotifyConfig;
use modelsync_lambdas::notify::{Notifier, NotifyMetrics};
use prometheus_client::registry::Registry;

type Calls = Arc<Mutex<Vec<(Option<String>, LambdaChanged)>>>;

async fn receive(
    State(calls): State<Calls>,
    headers: HeaderMap,
    body: axum::Json<LambdaChanged>,
) -> (StatusCode, axum::Json<LambdaChangedReply>) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut calls = calls.lock().unwrap();
    calls.push((auth, body.0.clone()));
    // The first delivery finds the controller not ready yet.
    let status = if calls.len() == 1 {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::ACCEPTED
    };
    let reply = LambdaChangedReply {
        unknown: body.0.urls,
        ..Default::default()
    };
    (status, axum::Json(reply))
}

#[tokio::test]
async fn a_refused_delivery_is_retried_with_what_changed_meanwhile() {
    let calls: Calls = Arc::default();
    let app = Router::new()
        .route("/hook/lambda-changed", post(receive))
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t0k\n").unwrap();

    let notifier = Notifier::spawn(
        NotifyConfig {
            url: format!("http://{addr}/hook/lambda-changed"),
            token_file: dir.path().join("token"),
            public_base_url: "http://lambdas.ml".into(),
        },
        NotifyMetrics::register(&mut Registry::default()),
    );
    let started = Instant::now();
    notifier.changed(vec!["/deploy".into()]);
    while calls.lock().unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never delivered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Refused; while it backs off, another route flips.
    notifier.changed(vec!["/retrain".into()]);
    while calls.lock().unwrap().len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(5), "never retried");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let retried_after = started.elapsed();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 2, "delivered once accepted: {calls:?}");
    assert_eq!(calls[0].0.as_deref(), Some("Bearer t0k"));
    assert_eq!(calls[0].1.urls, vec!["http://lambdas.ml/deploy"]);
    assert_eq!(
        calls[1].1.urls,
        vec!["http://lambdas.ml/deploy", "http://lambdas.ml/retrain"]
    );
    assert!(
        retried_after >= Duration::from_millis(400),
        "retried after {retried_after:?}, before the first backoff"
    );
}
