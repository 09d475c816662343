//! The lambda server: `modelsync lambdas --config lambdas.yaml`. Requests read answers the
//! engine prepared; no git or disk work happens on the request path.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::builtins::Route;
use crate::config::{self, Config, GIT_HOOK_PATH, SourceConfig};
use crate::engine::{self, Answers, ModelInput, error_body};
use crate::git_hook::{GitHook, GitHookMetrics};
use crate::mirror::{self, MirrorMetrics, MirrorState};
use crate::notify::{Notifier, NotifyMetrics};
use crate::sources::mlflow::MlflowSource;

/// The label for requests to paths that are not routes, so unknown paths cannot grow the metrics.
const UNMATCHED: &str = "unmatched";
const MLFLOW_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    route: &'static str,
    outcome: &'static str,
}

/// `modelsync_lambda_server_requests_total{route,code}`,
/// `modelsync_lambda_server_request_duration_seconds{route}`,
/// `modelsync_lambda_server_answers_total{route,outcome}`.
///
/// Prefixed `modelsync_lambda_server_`, not `modelsync_lambda_`: the controller already exports
/// `modelsync_lambda_requests_total{namespace,name,outcome}` and
/// `modelsync_lambda_duration_seconds` for its own calls, and a query summing by name across
/// both processes must not mix the caller's view with the server's.
#[derive(Clone, Debug)]
pub struct ServerMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabel, Histogram>,
    answers: Family<AnswerLabels, Counter>,
}

impl ServerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::default();
        let latency = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
        let answers = Family::default();
        registry.register(
            "modelsync_lambda_server_requests",
            "Requests to lambda routes, by route and HTTP status",
            modelsync_telemetry::Declared(requests.clone()),
        );
        registry.register(
            "modelsync_lambda_server_request_duration_seconds",
            "Time to serve a lambda route",
            modelsync_telemetry::Declared(latency.clone()),
        );
        registry.register(
            "modelsync_lambda_server_answers",
            "Answers served, by route and outcome (yes, no, error, not_ready)",
            modelsync_telemetry::Declared(answers.clone()),
        );
        ServerMetrics {
            requests,
            latency,
            answers,
        }
    }
}

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub answers: Arc<ArcSwap<Answers>>,
    pub bearer_token: Option<Arc<str>>,
    pub metrics: ServerMetrics,
    pub registry: Arc<Registry>,
    /// `POST /hooks/git`, when `gitHook` is configured.
    pub git_hook: Option<GitHook>,
    /// Route paths as `'static` labels, made once so requests do not allocate label strings.
    route_labels: Arc<HashMap<String, &'static str>>,
}

impl AppState {
    pub fn new(
        routes: &[Route],
        bearer_token: Option<String>,
        metrics: ServerMetrics,
        registry: Registry,
    ) -> Self {
        let route_labels = routes
            .iter()
            // Leaked once per configured route at startup: a small, fixed set.
            .map(|r| (r.path.clone(), &*Box::leak(r.path.clone().into_boxed_str())))
            .collect();
        AppState {
            answers: Arc::new(ArcSwap::from_pointee(Answers::not_ready(routes))),
            bearer_token: bearer_token.map(Arc::from),
            metrics,
            registry: Arc::new(registry),
            git_hook: None,
            route_labels: Arc::new(route_labels),
        }
    }
}

impl axum::extract::FromRef<AppState> for Arc<Registry> {
    fn from_ref(s: &AppState) -> Self {
        s.registry.clone()
    }
}

/// The HTTP surface: `/healthz`, `/readyz`, `/metrics`, and every configured route.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(modelsync_telemetry::metrics_handler))
        .route(GIT_HOOK_PATH, post(git_hook))
        .fallback(lambda)
        .with_state(state)
}

async fn readyz(State(s): State<AppState>) -> (StatusCode, &'static str) {
    if s.answers.load().ready {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the git mirror has not synced yet\n",
        )
    }
}

async fn git_hook(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (status, reply) = match &s.git_hook {
        Some(hook) => hook.handle(&headers, &body),
        None => (
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": format!(
                "no git hook here: add gitHook: {{secretFile: ...}} to lambdas.yaml to have \
                 {GIT_HOOK_PATH} sync the mirror"
            )}),
        ),
    };
    json(status, axum::body::Bytes::from(reply.to_string()))
}

async fn lambda(State(s): State<AppState>, headers: HeaderMap, request: Request) -> Response {
    let started = Instant::now();
    let path = request.uri().path();
    let label = s.route_labels.get(path).copied().unwrap_or(UNMATCHED);
    let response = if label == UNMATCHED {
        json(
            StatusCode::NOT_FOUND,
            error_body(&format!("no lambda at {path}"), None),
        )
    } else if !authorized(&headers, s.bearer_token.as_deref()) {
        json(
            StatusCode::UNAUTHORIZED,
            error_body(
                "missing or wrong bearer token: send Authorization: Bearer <token>",
                None,
            ),
        )
    } else {
        let answers = s.answers.load();
        match answers.routes.get(path) {
            Some(served) => {
                s.metrics
                    .answers
                    .get_or_create(&AnswerLabels {
                        route: label,
                        outcome: served.outcome,
                    })
                    .inc();
                json(served.status, served.body.clone())
            }
            None => json(
                StatusCode::SERVICE_UNAVAILABLE,
                error_body("no answer computed yet", None),
            ),
        }
    };
    let code = response.status().as_u16();
    s.metrics
        .requests
        .get_or_create(&RequestLabels { route: label, code })
        .inc();
    s.metrics
        .latency
        .get_or_create(&RouteLabel { route: label })
        .observe(started.elapsed().as_secs_f64());
    response
}

fn json(status: StatusCode, body: axum::body::Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn authorized(headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Compare every byte so the time taken does not tell how much of a guess was right.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// `modelsync lambdas`.
#[derive(Clone, Debug, clap::Args)]
pub struct LambdasArgs {
    /// The lambda server's configuration (see lambdas/README.md).
    #[arg(long, env = "MODELSYNC_LAMBDAS_CONFIG")]
    pub config: PathBuf,
}

/// Runs `modelsync lambdas`: checks the configuration, then serves.
pub fn run(args: LambdasArgs) -> anyhow::Result<()> {
    crate::logging::init_logging();
    let config = config::load(&args.config)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| {
                format!(
                    "{}: listen: cannot listen on {}",
                    args.config.display(),
                    config.listen
                )
            })?;
        let state = start(config).await?;
        tracing::info!(addr = %listener.local_addr()?, "serving lambdas");
        axum::serve(listener, app(state)).await.context("serving")
    })
}

/// Starts the mirror, the model source and the engine, and returns the state to serve.
pub async fn start(config: Config) -> anyhow::Result<AppState> {
    let mut registry = Registry::default();
    let mirror_metrics = MirrorMetrics::register(&mut registry);
    let server_metrics = ServerMetrics::register(&mut registry);
    let notify_metrics = NotifyMetrics::register(&mut registry);
    let git_hook_metrics = GitHookMetrics::register(&mut registry);
    let mut state = AppState::new(
        &config.routes,
        config.bearer_token.clone(),
        server_metrics,
        registry,
    );
    let sync_now = Arc::new(tokio::sync::Notify::new());
    state.git_hook = config.git_hook.clone().map(|hook| GitHook {
        config: hook,
        mirror_ref: Arc::from(config.mirror.spec.git_ref.as_str()),
        sync_now: sync_now.clone(),
        metrics: git_hook_metrics,
    });

    let mut spec = config.mirror.spec.clone();
    std::fs::create_dir_all(&spec.root)
        .with_context(|| format!("creating mirror root {}", spec.root.display()))?;
    spec.root = spec.root.canonicalize()?;
    let (mirror_tx, mirror_rx) = watch::channel(MirrorState::default());
    let webhook = config
        .mirror
        .webhook_url
        .clone()
        .map(mirror::webhook::spawn);
    tokio::spawn(mirror::run_loop(
        spec,
        config.mirror.period,
        mirror_metrics,
        mirror_tx,
        webhook,
        sync_now,
    ));

    let stores = Arc::new(config.stores());
    let models = match &config.models {
        SourceConfig::Records(path) => ModelInput::Records(path.clone()),
        SourceConfig::Mlflow { spec, period } => {
            let source = MlflowSource::new(spec.clone(), MLFLOW_TIMEOUT)?;
            let (tx, rx) = watch::channel(None);
            let period = *period;
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(period);
                loop {
                    ticker.tick().await;
                    let models = source.models().await.map_err(|e| e.to_string());
                    if let Err(e) = &models {
                        tracing::warn!(error = %e, "model source failed");
                    }
                    tx.send_if_modified(|old| {
                        let changed = old.as_ref() != Some(&models);
                        *old = Some(models);
                        changed
                    });
                }
            });
            ModelInput::Polled(rx)
        }
    };
    let notifier = config
        .notify
        .clone()
        .map(|n| Notifier::spawn(n, notify_metrics));
    tokio::spawn(engine::run(
        Arc::new(config.routes),
        stores,
        mirror_rx,
        models,
        state.answers.clone(),
        move |routes| {
            if let Some(n) = &notifier {
                n.changed(routes);
            }
        },
    ));
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert!(authorized(&h, None));
        assert!(!authorized(&h, Some("t0k")));
        h.insert(header::AUTHORIZATION, "Bearer t0k".parse().unwrap());
        assert!(authorized(&h, Some("t0k")));
        assert!(!authorized(&h, Some("t0kk")));
        h.insert(header::AUTHORIZATION, "Bearer t0x".parse().unwrap());
        assert!(!authorized(&h, Some("t0k")));
    }
}
