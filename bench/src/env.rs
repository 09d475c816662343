//! What the controller benchmarks share: a local control plane with the CRDs, the release
//! controller as a real process, an in-process lambda that answers at once, and readings of
//! a process's CPU and memory and of the API server's write counters.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use kube::CustomResourceExt;
use modelsync_api::ModelSync;
use modelsync_testenv::{ControlPlane, Controller, ControllerCommand, spawn_controller};
use serde_json::{Value, json};

pub async fn control_plane() -> Result<(ControlPlane, kube::Client)> {
    let cp = modelsync_testenv::start_with_crds(&[ModelSync::crd()]).await?;
    let client = cp.client().await?;
    Ok((cp, client))
}

/// The release controller as a process, with its metrics on a known port, once it is healthy.
pub async fn start_controller(
    cp: &ControlPlane,
    bin: &Path,
    ns: &str,
    logs: &Path,
) -> Result<Controller> {
    start_controller_with(cp, bin, ns, logs, &[]).await
}

/// [`start_controller`] with more flags, such as `--shard NAME`.
pub async fn start_controller_with(
    cp: &ControlPlane,
    bin: &Path,
    ns: &str,
    logs: &Path,
    extra: &[String],
) -> Result<Controller> {
    // MODELSYNC_BENCH_LOGS keeps the controller's log past the run, for a closer look.
    let dir =
        std::env::var_os("MODELSYNC_BENCH_LOGS").map_or_else(|| logs.to_path_buf(), PathBuf::from);
    let command = ControllerCommand::new(bin, cp.kubeconfig())
        .namespace(ns)
        .arg("--concurrency=64")
        .args(extra.iter().cloned())
        // The one info line kept says which initial lists it used (see cold_start).
        .env("RUST_LOG", "warn,modelsync_controller::list_strategy=info")
        .log_dir(&dir);
    let mut controller = spawn_controller(command)?;
    controller.wait_healthy(Duration::from_secs(120)).await?;
    Ok(controller)
}

/// One controller per entry of `flags` (its extra flags), started together, with their pids.
pub async fn start_controllers(
    cp: &ControlPlane,
    bin: &Path,
    ns: &str,
    logs: &Path,
    flags: &[Vec<String>],
) -> Result<(Vec<Controller>, Vec<u32>)> {
    let running = futures::future::try_join_all(
        flags
            .iter()
            .map(|extra| start_controller_with(cp, bin, ns, logs, extra)),
    )
    .await?;
    let pids = running
        .iter()
        .map(|c| c.pid())
        .collect::<Option<Vec<u32>>>()
        .ok_or_else(|| anyhow::anyhow!("controller pid not found"))?;
    Ok((running, pids))
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).unwrap_or(&"0").parse::<f64>()? + f.get(12).unwrap_or(&"0").parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// (current RSS, peak RSS) in MB.
pub fn rss_mb(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// Sum of a Prometheus counter family's samples whose labels contain all of `want`.
pub fn counter_sum(text: &str, family: &str, want: &[&str], except: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family) && !l.starts_with('#'))
        .filter(|l| want.iter().all(|w| l.contains(w)) && !except.iter().any(|e| l.contains(e)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Buckets of a Prometheus histogram (upper bound, cumulative count).
pub fn histogram(text: &str, family: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{family}_bucket{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit_once(' ')?.1.parse().ok()?;
            Some((le, count))
        })
        .collect()
}

/// The `q` quantile (0..1) of the observations between two scrapes of one histogram, as the
/// upper bound of the bucket it falls in.
pub fn histogram_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> f64 {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| {
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map(|(_, c)| *c)
                .unwrap_or(0.0);
            (*le, c - b)
        })
        .collect();
    let total = delta.last().map(|(_, c)| *c).unwrap_or(0.0);
    if total == 0.0 {
        return f64::NAN;
    }
    delta
        .iter()
        .find(|(_, c)| *c >= q * total)
        .map(|(le, _)| *le)
        .unwrap_or(f64::INFINITY)
}

/// The API server's `/metrics`, read with the admin token.
pub async fn apiserver_metrics(cp: &ControlPlane, client: &kube::Client) -> Result<String> {
    let req = axum::http::Request::get("/metrics").body(Vec::new())?;
    let _ = cp;
    Ok(client.request_text(req).await?)
}

/// Mutating requests the API server has served, minus Leases and Events (not ModelSync state).
pub fn api_writes(metrics: &str) -> f64 {
    ["POST", "PUT", "PATCH", "DELETE", "APPLY"]
        .iter()
        .map(|verb| {
            counter_sum(
                metrics,
                "apiserver_request_total{",
                &[&format!("verb=\"{verb}\"")],
                &["resource=\"leases\"", "resource=\"events\""],
            )
        })
        .sum()
}

/// How the in-process lambda answers one ModelSync.
pub type Answerer = Arc<dyn Fn(&str) -> Value + Send + Sync>;

/// When each ModelSync asked, by name.
pub type CallLog = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

/// An in-process needs-sync lambda: answers from a closure at once and records when each
/// ModelSync asked.
pub struct FastLambda {
    pub url: String,
    pub calls: CallLog,
    _server: AbortOnDrop,
}

/// Stops a spawned task when dropped, so a benchmark leaves nothing running for the next.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl FastLambda {
    pub async fn start(answer: Answerer) -> Result<Self> {
        Self::start_on(0, answer).await
    }

    /// On a fixed loopback `port` (0: any free one), for a fleet kept between runs whose
    /// ModelSyncs name the lambda's address.
    pub async fn start_on(port: u16, answer: Answerer) -> Result<Self> {
        let calls: CallLog = Arc::default();
        let state = (answer, calls.clone());
        let app = Router::new()
            .route(
                "/needsSync",
                get(
                    |State((answer, calls)): State<(Answerer, CallLog)>,
                     headers: HeaderMap| async move {
                        let name = headers
                            .get(modelsync_api::lambda::HEADER_NAME)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        calls
                            .lock()
                            .unwrap()
                            .entry(name.clone())
                            .or_default()
                            .push(Instant::now());
                        axum::Json(answer(&name))
                    },
                ),
            )
            .with_state(state);
        // A fixed port may still be held for a moment by the lambda of the measurement before,
        // whose server task is aborted but not yet gone.
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => break l,
                Err(_) if port != 0 && tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("binding the benchmark's lambda to 127.0.0.1:{port}")
                    });
                }
            }
        };
        let url = format!("http://{}/needsSync", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FastLambda {
            url,
            calls,
            _server: AbortOnDrop(server),
        })
    }
}

/// A ModelSync for benchmarks.
pub fn modelsync(name: &str, url: &str, poll: &str) -> Value {
    json!({
        "apiVersion": "modelsync.dev/v1alpha1",
        "kind": "ModelSync",
        "metadata": {"name": name},
        "spec": {
            "needsSyncUrl": url,
            "pollInterval": poll,
            "parameters": [{"needsSyncName": "model", "pipelineName": "model-id"}],
            "successfulPipelineRunsHistoryLimit": 3,
            "pipelineRunTemplate": {"spec": {
                "pipelineRef": {"name": "deploy"},
                "params": [{"name": "model-id", "value": ""}],
            }},
        },
    })
}

/// Every run's first sighting (when, and its name), by its `model-id` param.
pub type Seen = Arc<Mutex<HashMap<String, (Instant, String)>>>;

/// Records every run's first arrival in a watch through `api`, by its `model-id` param. The
/// watch stops when the returned guard is dropped: left running after its control plane is
/// gone, it would retry at full speed and load the benchmarks that follow.
pub fn watch_runs(api: kube::Api<kube::api::DynamicObject>) -> (Seen, AbortOnDrop) {
    use futures::StreamExt;
    let seen: Seen = Arc::default();
    let out = seen.clone();
    let task = tokio::spawn(async move {
        let mut stream =
            kube::runtime::watcher(api, kube::runtime::watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            if let Ok(
                kube::runtime::watcher::Event::Apply(run)
                | kube::runtime::watcher::Event::InitApply(run),
            ) = ev
            {
                let now = Instant::now();
                let model = modelsync_testenv::tekton::param(&run, "model-id")
                    .unwrap_or_default()
                    .to_owned();
                let name = run.metadata.name.clone().unwrap_or_default();
                out.lock().unwrap().entry(model).or_insert((now, name));
            }
        }
    });
    (seen, AbortOnDrop(task))
}
