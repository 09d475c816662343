//! The hook receiver (`--receiver-token-file`): `POST /hook/lambda-changed` with the lambda
//! URLs whose answer changed; the ModelSyncs in the cache that name one get the
//! `modelsync.dev/requested-at` annotation, so their lambda is asked now instead of at the next
//! poll. Which ModelSyncs is [`matching`]'s; when to write is [`queue`]'s; this module is the
//! HTTP and API-server IO around them.

pub mod matching;
pub mod queue;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{SecondsFormat, Utc};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};
use modelsync_api::ModelSync;
use modelsync_api::hook::{
    LAMBDA_CHANGED_PATH, LambdaChanged, LambdaChangedReply, MAX_URLS, SIGNATURE_HEADER,
    bearer_matches, signature_matches,
};
use modelsync_api::modelsync::ANNOTATION_REQUESTED_AT;
use serde_json::json;
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::metrics::Metrics;
use queue::{Next, Requested, WriteQueue};

/// Hook bodies larger than this are refused: [`MAX_URLS`] URLs fit many times over.
const MAX_BODY: usize = 256 * 1024;
/// One ModelSync gets at most one write per this; a later request waits for the window's end.
const PER_MODELSYNC: Duration = Duration::from_secs(1);
/// ModelSyncs waiting for their write at most; more are refused with 429.
const QUEUE_CAPACITY: usize = 100_000;

/// Where and how the receiver listens.
#[derive(Clone, Debug)]
pub struct ReceiverSettings {
    pub addr: SocketAddr,
    pub token_file: PathBuf,
    /// Annotation writes per second at most, over all ModelSyncs.
    pub writes_per_second: f64,
}

/// A bound receiver, serving once [`Bound::serve`] hands it the cache.
pub struct Bound {
    listener: tokio::net::TcpListener,
    settings: ReceiverSettings,
}

/// Checks the token file and binds the address, so both mistakes stop the controller at start.
pub async fn bind(settings: ReceiverSettings) -> Result<Bound> {
    read_token(&settings.token_file).await?;
    if !(settings.writes_per_second > 0.0 && settings.writes_per_second.is_finite()) {
        bail!(
            "--receiver-writes-per-second {} must be a positive number",
            settings.writes_per_second
        );
    }
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .with_context(|| {
            format!(
                "binding {} for {LAMBDA_CHANGED_PATH} (change --receiver-addr)",
                settings.addr
            )
        })?;
    Ok(Bound { listener, settings })
}

impl Bound {
    /// Serves in the background, matching hooks against `store` once `ready`.
    pub fn serve(
        self,
        client: kube::Client,
        store: Store<ModelSync>,
        ready: Arc<AtomicBool>,
        metrics: Arc<Metrics>,
    ) -> Result<()> {
        let spacing = Duration::from_secs_f64(1.0 / self.settings.writes_per_second);
        let state = Receiver {
            token_file: Arc::from(self.settings.token_file.as_path()),
            store,
            ready,
            metrics: metrics.clone(),
            queue: Arc::new(Mutex::new(WriteQueue::new(
                PER_MODELSYNC,
                spacing,
                QUEUE_CAPACITY,
            ))),
            wake: Arc::new(Notify::new()),
        };
        info!(addr = %self.listener.local_addr()?, path = LAMBDA_CHANGED_PATH, "serving the hook receiver");
        tokio::spawn(write_loop(
            client,
            state.queue.clone(),
            state.wake.clone(),
            metrics,
        ));
        let listener = self.listener;
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app(state)).await {
                error!("hook receiver stopped: {e}");
            }
        });
        Ok(())
    }
}

#[derive(Clone)]
struct Receiver {
    token_file: Arc<Path>,
    store: Store<ModelSync>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    queue: Arc<Mutex<WriteQueue<(String, String)>>>,
    wake: Arc<Notify>,
}

fn app(state: Receiver) -> Router {
    Router::new()
        .route(LAMBDA_CHANGED_PATH, post(hook))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The token, read at each hook so a rotated Secret is used at once.
async fn read_token(file: &Path) -> Result<String> {
    let token = tokio::fs::read_to_string(file)
        .await
        .with_context(|| format!("reading --receiver-token-file {}", file.display()))?;
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!(
            "--receiver-token-file {} is empty; put the hook token in it",
            file.display()
        );
    }
    Ok(token)
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn refuse(r: &Receiver, status: StatusCode, outcome: &'static str, message: String) -> Response {
    r.metrics.hook(outcome);
    reply(status, json!({ "error": message }))
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let token = match read_token(&r.token_file).await {
        Ok(token) => token,
        Err(e) => {
            error!("hook refused: {e:#}");
            return refuse(
                &r,
                StatusCode::SERVICE_UNAVAILABLE,
                "token_unreadable",
                format!("the receiver cannot read its token: {e:#}"),
            );
        }
    };
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let signature = headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
    if !(bearer_matches(authorization, token.as_bytes())
        || signature_matches(signature, token.as_bytes(), &body))
    {
        warn!("hook refused: missing or wrong credentials");
        return refuse(
            &r,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "missing or wrong credentials: send Authorization: Bearer <token>, or \
                 {SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256 of the body keyed with the token>, \
                 the token being the one in the controller's --receiver-token-file"
            ),
        );
    }
    let hook: LambdaChanged = match serde_json::from_slice(&body) {
        Ok(hook) => hook,
        Err(e) => {
            return refuse(
                &r,
                StatusCode::BAD_REQUEST,
                "invalid",
                format!(r#"the body is not {{"urls": ["<lambda URL>", ...]}}: {e}"#),
            );
        }
    };
    if hook.urls.len() > MAX_URLS {
        return refuse(
            &r,
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid",
            format!(
                "{} URLs in one hook; send at most {MAX_URLS} per hook",
                hook.urls.len()
            ),
        );
    }
    if !r.ready.load(Ordering::Acquire) {
        return refuse(
            &r,
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "not ready: this controller is not leading or has not listed ModelSyncs yet; \
             retry, or send hooks to the Service, which routes to the ready replica"
                .into(),
        );
    }

    let cached = r.store.state();
    let found = matching::match_urls(
        &hook.urls,
        cached.iter().filter_map(|ms| {
            Some((
                (ms.namespace()?, ms.name_any()),
                ms.metadata.namespace.as_deref()?,
                ms.spec.needs_sync_url.as_str(),
            ))
        }),
    );
    let mut refused = Vec::new();
    {
        let now = Instant::now();
        let mut queue = r
            .queue
            .lock()
            .expect("the write queue's lock is never poisoned");
        for key in found.matched.values().flatten() {
            match queue.request(key.clone(), now) {
                Requested::Queued => {}
                Requested::Coalesced => {
                    r.metrics.hook_coalesced.inc();
                }
                Requested::Refused => refused.push(format!("{}/{}", key.0, key.1)),
            }
        }
    }
    r.wake.notify_one();
    if !found.unknown.is_empty() {
        warn!(urls = ?found.unknown, "hook named lambda URLs no ModelSync here uses; ignored");
    }
    let answer = LambdaChangedReply {
        matched: found
            .matched
            .into_iter()
            .map(|(url, keys)| {
                (
                    url,
                    keys.into_iter()
                        .map(|(ns, n)| format!("{ns}/{n}"))
                        .collect(),
                )
            })
            .collect(),
        unknown: found.unknown,
        invalid: found.invalid,
    };
    let mut body = serde_json::to_value(&answer).unwrap_or_default();
    if !refused.is_empty() {
        body["refused"] = json!(refused);
        body["error"] = json!(format!(
            "{QUEUE_CAPACITY} ModelSyncs wait for their write already; those under refused \
             were not queued: retry later"
        ));
        r.metrics.hook("queue_full");
        return reply(StatusCode::TOO_MANY_REQUESTS, body);
    }
    r.metrics.hook("accepted");
    reply(StatusCode::ACCEPTED, body)
}

/// Writes the queued annotations at the pace [`WriteQueue`] allows.
async fn write_loop(
    client: kube::Client,
    queue: Arc<Mutex<WriteQueue<(String, String)>>>,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
) {
    loop {
        let next = queue
            .lock()
            .expect("the write queue's lock is never poisoned")
            .next(Instant::now());
        let (ns, name) = match next {
            Next::Write(key) => key,
            Next::WaitUntil(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {},
                    () = wake.notified() => {},
                }
                continue;
            }
            Next::Idle => {
                wake.notified().await;
                continue;
            }
        };
        let value = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let patch = json!({"metadata": {"annotations": {ANNOTATION_REQUESTED_AT: value}}});
        let api: Api<ModelSync> = Api::namespaced(client.clone(), &ns);
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                metrics.hook_writes.inc();
                info!(modelsync = %format!("{ns}/{name}"), requested_at = %value, "lambda changed: asking it now");
            }
            // Deleted since the cache saw it: nothing to ask.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                metrics.hook_write_errors.inc();
                warn!(modelsync = %format!("{ns}/{name}"), "could not set {ANNOTATION_REQUESTED_AT} (the next poll still asks the lambda): {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests;
