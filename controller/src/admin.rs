//! The admin HTTP server: `/metrics`, `/healthz`, and `/readyz`, which turns ready only once
//! this replica leads and has the first full list of ModelSyncs and PipelineRuns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tracing::{error, info};

use crate::metrics::Metrics;

#[derive(Clone)]
struct Admin {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

fn app(state: Admin) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Admin>| async move {
                (
                    [(
                        "content-type",
                        modelsync_telemetry::OPENMETRICS_CONTENT_TYPE,
                    )],
                    s.metrics.encode(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<Admin>| async move {
                if s.ready.load(Ordering::Acquire) {
                    (StatusCode::OK, "ready")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "waiting for the first full list of ModelSyncs and PipelineRuns",
                    )
                }
            }),
        )
        .with_state(state)
}

/// Binds `addr` and serves in the background; binding fails at once with a message naming the
/// flag, so a port in use is reported before anything else starts.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr} for /metrics (change --metrics-addr)"))?;
    info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    let app = app(Admin { metrics, ready });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!("metrics server stopped: {e}");
        }
    });
    Ok(())
}
