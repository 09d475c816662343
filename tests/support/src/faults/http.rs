//! An HTTP proxy in front of the API server that lets a test decide the fate of each call:
//! pass it on, delay it, or answer it with an error the way the API server would (429 from
//! its priority and fairness limits, 500). A [`Hook`] also sees each answer before the
//! caller does, so a test can act at that very moment (kill the caller, say).
//!
//! The API server speaks TLS only, so the proxy terminates TLS with a certificate of its own
//! and writes a kubeconfig that trusts it; calls go on to the API server with the caller's
//! own credentials.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::ControlPlane;
use crate::certs;

/// One call as the proxy sees it.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
}

impl Call {
    /// Creates, updates, patches and deletes.
    pub fn is_write(&self) -> bool {
        matches!(
            self.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
    }

    /// A watch: a long-lived stream rather than one answer.
    pub fn is_watch(&self) -> bool {
        self.query
            .as_deref()
            .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
    }
}

/// What to do with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Forward,
    /// Wait, then pass it on.
    Delay(Duration),
    /// Answer with this status and a Kubernetes `Status` body; the API server is not asked.
    Fail(StatusCode),
}

/// A test's say over the calls. Any `Fn(&Call) -> Verdict` is one.
pub trait Hook: Send + Sync + 'static {
    fn before(&self, call: &Call) -> Verdict;

    /// The API server answered `status`; the caller has not seen the answer yet.
    fn after(&self, _call: &Call, _status: StatusCode) {}
}

impl<F: Fn(&Call) -> Verdict + Send + Sync + 'static> Hook for F {
    fn before(&self, call: &Call) -> Verdict {
        self(call)
    }
}

/// Counts of what the proxy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub forwarded: u64,
    pub delayed: u64,
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    forwarded: AtomicU64,
    delayed: AtomicU64,
    failed: AtomicU64,
}

struct Inner {
    upstream: String,
    http: reqwest::Client,
    hook: RwLock<Arc<dyn Hook>>,
    counters: Counters,
}

/// The proxy. Dropping it stops it.
pub struct HttpFaults {
    addr: SocketAddr,
    ca_pem: String,
    inner: Arc<Inner>,
    server: JoinHandle<()>,
}

impl HttpFaults {
    /// Serves on a free loopback port in front of `cp`'s API server, passing every call on
    /// until a hook says otherwise.
    pub async fn start(cp: &ControlPlane) -> Result<Self> {
        let pki = certs::loopback_serving("modelsync fault proxy")?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![pki.cert_der.clone().into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(pki.key_der.clone().into()),
            )
            .context("configuring the fault proxy's TLS")?;
        let ca = std::fs::read(cp.ca_cert())
            .with_context(|| format!("reading {}", cp.ca_cert().display()))?;
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let inner = Arc::new(Inner {
            upstream: cp.server().to_owned(),
            http,
            hook: RwLock::new(Arc::new(|_: &Call| Verdict::Forward)),
            counters: Counters::default(),
        });
        let tcp = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fault proxy to a loopback port")?;
        let addr = tcp.local_addr()?;
        let listener = TlsListener {
            tcp,
            tls: TlsAcceptor::from(Arc::new(tls)),
        };
        let app = axum::Router::new().fallback(pass).with_state(inner.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(HttpFaults {
            addr,
            ca_pem: pki.ca_pem,
            inner,
            server,
        })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A kubeconfig with `cp`'s admin credentials that talks to the API server through this
    /// proxy.
    pub fn write_kubeconfig(&self, cp: &ControlPlane, path: &Path) -> Result<()> {
        cp.write_kubeconfig_for(path, &self.url(), self.ca_pem.as_bytes())
    }

    /// From now on `hook` decides every call.
    pub fn set_hook(&self, hook: impl Hook) {
        *self.inner.hook.write().expect("hook lock") = Arc::new(hook);
    }

    /// Passes every call on again.
    pub fn clear_hook(&self) {
        self.set_hook(|_: &Call| Verdict::Forward);
    }

    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            forwarded: c.forwarded.load(Ordering::Relaxed),
            delayed: c.delayed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for HttpFaults {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Headers that belong to one connection, not to the call, and lengths the HTTP stacks set.
fn is_per_connection(name: &HeaderName) -> bool {
    name == header::HOST
        || name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::CONTENT_LENGTH
        || name == header::UPGRADE
        || name == header::TE
        || name == header::TRAILER
        || name.as_str() == "keep-alive"
}

async fn pass(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let call = Call {
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().map(str::to_owned),
    };
    let hook = inner.hook.read().expect("hook lock").clone();
    match hook.before(&call) {
        Verdict::Forward => {}
        Verdict::Delay(wait) => {
            inner.counters.delayed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
        Verdict::Fail(status) => {
            inner.counters.failed.fetch_add(1, Ordering::Relaxed);
            return failure(status);
        }
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("reading the call: {e}")).into_response();
        }
    };
    let target = format!(
        "{}{}",
        inner.upstream,
        parts.uri.path_and_query().map_or("/", |pq| pq.as_str())
    );
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if !is_per_connection(name) {
            headers.append(name, value.clone());
        }
    }
    let sent = inner
        .http
        .request(parts.method, target)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let upstream = match sent {
        Ok(res) => res,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("the fault proxy could not reach the API server: {e}"),
            )
                .into_response();
        }
    };
    inner.counters.forwarded.fetch_add(1, Ordering::Relaxed);
    hook.after(&call, upstream.status());
    let mut res = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        if !is_per_connection(name) {
            res = res.header(name, value);
        }
    }
    // Streamed chunk by chunk: a watch never ends, and its events must arrive as they come.
    let chunks = futures::stream::unfold(Some(upstream), |state| async move {
        let mut upstream = state?;
        match upstream.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(upstream))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    res.body(Body::from_stream(chunks))
        .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}

/// The answer the API server gives for `status`, as a `Status` object.
fn failure(status: StatusCode) -> Response {
    let reason = match status {
        StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
        StatusCode::INTERNAL_SERVER_ERROR => "InternalError",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        StatusCode::GATEWAY_TIMEOUT => "Timeout",
        _ => "Unknown",
    };
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("injected by the fault proxy: {status}"),
        "reason": reason,
        "code": status.as_u16(),
    });
    let mut res = (status, axum::Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        // What the API server's priority and fairness limits send with a 429.
        res.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    res
}

/// Accepts TCP connections and completes their TLS handshake.
struct TlsListener {
    tcp: TcpListener,
    tls: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            // A client that dies mid-handshake (a killed controller) must not stall the rest.
            let handshake = tokio::time::timeout(Duration::from_secs(5), self.tls.accept(tcp));
            if let Ok(Ok(tls)) = handshake.await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
