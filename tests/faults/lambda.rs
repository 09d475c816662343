//! The in-test needs-sync lambda: per ModelSync a wanted model and the model in place (the
//! pin, set by the Tekton stand-in when a run succeeds), answering "yes" with the wanted
//! model while they differ. Every "yes" is a decision, remembered with the moment it was
//! first given, so the test can tell whether each led to exactly one run.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::get;
use serde_json::{Value, json};

/// The id of a ModelSync's `k`-th wanted model: unique in the whole test.
pub fn model_id(modelsync: &str, k: u32) -> String {
    format!("{modelsync}-m{k}")
}

/// A decision: the lambda said "yes, run with this model".
#[derive(Clone, Debug)]
pub struct Decision {
    pub first_given: Instant,
}

/// Called with the ModelSync's name on every ask, before the answer is sent: a test acts
/// there (kills the controller while it waits for the lambda).
pub type AskHook = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
struct Wanted {
    wanted: u32,
    pinned: Option<String>,
}

#[derive(Default)]
struct Inner {
    modelsyncs: HashMap<String, Wanted>,
    /// By model id.
    decisions: BTreeMap<String, Decision>,
    hook: Option<AskHook>,
}

#[derive(Clone)]
pub struct Lambda {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Lambda {
    /// Serves on a free loopback port, on the test's runtime.
    pub async fn start() -> Lambda {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .route("/needs-sync/{name}", get(ask))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Lambda { addr, inner }
    }

    pub fn url(&self, modelsync: &str) -> String {
        format!("http://{}/needs-sync/{modelsync}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("lambda lock")
    }

    /// Wants the next model for `modelsync`; returns its id.
    pub fn want_next(&self, modelsync: &str) -> String {
        let mut inner = self.lock();
        let w = inner.modelsyncs.entry(modelsync.to_owned()).or_default();
        w.wanted += 1;
        model_id(modelsync, w.wanted)
    }

    /// The model `modelsync` wants now.
    pub fn wanted(&self, modelsync: &str) -> String {
        let inner = self.lock();
        model_id(
            modelsync,
            inner.modelsyncs.get(modelsync).map_or(0, |w| w.wanted),
        )
    }

    /// A run put `model` in place (what the pipeline does before Tekton reports success).
    pub fn pin(&self, modelsync: &str, model: &str) {
        self.lock()
            .modelsyncs
            .entry(modelsync.to_owned())
            .or_default()
            .pinned = Some(model.to_owned());
    }

    pub fn pinned(&self, modelsync: &str) -> Option<String> {
        self.lock()
            .modelsyncs
            .get(modelsync)
            .and_then(|w| w.pinned.clone())
    }

    pub fn decisions(&self) -> BTreeMap<String, Decision> {
        self.lock().decisions.clone()
    }

    pub fn set_hook(&self, hook: Option<AskHook>) {
        self.lock().hook = hook;
    }
}

async fn ask(State(inner): State<Arc<Mutex<Inner>>>, Path(name): Path<String>) -> Json<Value> {
    let hook = inner.lock().expect("lambda lock").hook.clone();
    if let Some(hook) = hook {
        hook(&name);
    }
    let mut inner = inner.lock().expect("lambda lock");
    let w = inner.modelsyncs.entry(name.clone()).or_default();
    let wanted = model_id(&name, w.wanted);
    if w.pinned.as_deref() == Some(wanted.as_str()) {
        return Json(json!({"needsSync": false, "reason": format!("{wanted} is in place")}));
    }
    inner
        .decisions
        .entry(wanted.clone())
        .or_insert_with(|| Decision {
            first_given: Instant::now(),
        });
    Json(json!({
        "needsSync": true,
        "parameters": {"model": wanted},
        "reason": "a newer model is wanted",
    }))
}
