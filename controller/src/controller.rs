//! `modelsync controller`: wiring the watches, the reconciler, the HTTP endpoints and
//! shutdown together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use futures::StreamExt;
use kube::api::ListParams;
use kube::runtime::controller::{Config, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use modelsync_api::modelsync::LABEL_NAME;
use modelsync_api::{ModelSync, PipelineRun};
use tracing::{error, info, warn};

use crate::metrics::Metrics;
use crate::reconcile::{Context, error_policy, reconcile};
use crate::run_index::RunIndex;

/// Flags of `modelsync controller`.
#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "MODELSYNC_NAMESPACE")]
    pub namespace: Option<String>,
    /// ModelSyncs reconciled at the same time. Each pass waits for at most one lambda call
    /// (bounded by its lambdaTimeout), so a slow lambda holds one slot, never all of them.
    #[arg(long, default_value_t = 32, env = "MODELSYNC_CONCURRENCY")]
    pub concurrency: u16,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080", env = "MODELSYNC_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,
    /// Run only while holding a Lease, so several replicas can run with one active.
    #[arg(long, env = "MODELSYNC_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "MODELSYNC_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        default_value = "modelsync-controller",
        env = "MODELSYNC_LEADER_ELECTION_ID"
    )]
    pub leader_election_id: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "MODELSYNC_LOG_FORMAT")]
    pub log_format: LogFormat,
}

pub use modelsync_telemetry::LogFormat;

/// Entry point of the subcommand.
pub fn main(args: ControllerArgs) -> Result<()> {
    init_logging(args.log_format);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

fn init_logging(format: LogFormat) {
    modelsync_telemetry::init_logging(&modelsync_telemetry::Logging {
        format,
        default_filter: "info,kube=warn,hyper=warn,tower=warn",
        to_stderr: false,
    });
}

/// Fails with a message saying what to install when the CRDs this controller needs are missing.
async fn check_crds(client: &Client, namespace: Option<&str>) -> Result<()> {
    let lp = ListParams::default().limit(1);
    let modelsyncs: Api<ModelSync> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match modelsyncs.list_metadata(&lp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => bail!(
            "the ModelSync CRD (modelsyncs.modelsync.dev) is not installed in this cluster: \
             install it with `modelsync crd | kubectl apply -f -` or `kubectl apply -k kustomize/base`"
        ),
        Err(e) => return Err(e).context(
            "listing ModelSyncs (is the cluster reachable, and may this identity list modelsyncs?)",
        ),
    }
    let runs: Api<PipelineRun> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match runs.list_metadata(&lp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => bail!(
            "Tekton Pipelines is not installed (no pipelineruns.tekton.dev/v1): install Tekton \
             Pipelines v0.59 or newer before starting modelsync"
        ),
        Err(e) => {
            Err(e).context("listing PipelineRuns (may this identity list pipelineruns.tekton.dev?)")
        }
    }
}

#[derive(Clone)]
struct Http {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

fn http_app(state: Http) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Http>| async move {
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
            get(|State(s): State<Http>| async move {
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

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(args: ControllerArgs) -> Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to Kubernetes (from KUBECONFIG, ~/.kube/config or in-cluster)")?;
    check_crds(&client, args.namespace.as_deref()).await?;

    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| {
            format!(
                "binding {} for /metrics (change --metrics-addr)",
                args.metrics_addr
            )
        })?;
    info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    let app = http_app(Http {
        metrics: metrics.clone(),
        ready: ready.clone(),
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!("metrics server stopped: {e}");
        }
    });

    // Serve /healthz while waiting to lead; /readyz turns ready only once leading and synced.
    let elector = if args.leader_elect {
        let ns = args
            .leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .or_else(|| {
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .ok()
            })
            .unwrap_or_else(|| "default".to_owned());
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id()));
        let elector = crate::lease::Elector {
            api: Api::namespaced(client.clone(), &ns),
            name: args.leader_election_id.clone(),
            identity,
            lease_duration: Duration::from_secs(15),
        };
        elector.acquire().await.with_context(|| {
            format!(
                "taking the leader-election Lease {ns}/{}",
                args.leader_election_id
            )
        })?;
        Some(elector)
    } else {
        None
    };

    let (modelsyncs, runs_api): (Api<ModelSync>, Api<PipelineRun>) = match &args.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };

    let index = RunIndex::default();
    let feed = index.clone();
    let run_events = watcher(runs_api, watcher::Config::default().labels(LABEL_NAME))
        .default_backoff()
        .inspect(move |ev| {
            if let Ok(ev) = ev {
                feed.apply(ev);
            }
        })
        .touched_objects();

    let reporter = Reporter {
        controller: "modelsync-controller".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let ctx = Arc::new(Context::new(
        client.clone(),
        index.clone(),
        recorder,
        metrics.clone(),
    ));

    // Our own ModelSync watch (rather than Controller::new's) so that a deleted ModelSync's
    // poll schedule is forgotten: the reconciler is never called for an object that is gone.
    let (store, writer) = reflector::store::<ModelSync>();
    let forget = ctx.clone();
    let modelsync_events = watcher(modelsyncs, watcher::Config::default().any_semantic())
        .default_backoff()
        // The cache keeps only what passes read: managed fields and kubectl's copy of the last
        // applied object would more than double each cached ModelSync.
        .modify(|ms| {
            ms.managed_fields_mut().clear();
            ms.annotations_mut().remove(LAST_APPLIED);
        })
        .reflect(writer)
        .inspect(move |ev| {
            if let Ok(watcher::Event::Delete(ms)) = ev
                && let Some(uid) = ms.uid()
            {
                forget.forget(&uid);
            }
        })
        .touched_objects()
        .filter_map(|ev| async move {
            // Deletions need no pass; the schedule entry was dropped above.
            match ev {
                Ok(ms) if ms.metadata.deletion_timestamp.is_none() => Some(Ok(ms)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            }
        });
    let controller = Controller::for_stream(modelsync_events, store.clone())
        .owns_stream(run_events)
        .with_config(Config::default().concurrency(args.concurrency));
    let readiness = {
        let ready = ready.clone();
        let index = index.clone();
        tokio::spawn(async move {
            let _ = store.wait_until_ready().await;
            while !index.ready() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            ready.store(true, Ordering::Release);
            info!("ready: first full list of ModelSyncs and PipelineRuns received");
        })
    };

    info!(
        namespace = args.namespace.as_deref().unwrap_or("(all)"),
        concurrency = args.concurrency,
        "modelsync controller starting"
    );
    // The shutdown future must be Sync, which a future holding API calls is not: the Lease
    // is held in its own task, which reports losing it through a channel.
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    match elector {
        Some(elector) => {
            tokio::spawn(async move {
                elector.hold().await;
                let _ = lost_tx.send(());
            });
        }
        // Without a Lease the sender is dropped and the branch below is never taken.
        None => drop(lost_tx),
    }
    let stop = async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            Ok(()) = lost_rx => warn!("stopping: no longer the leader"),
        }
    };
    controller
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    readiness.abort();
    info!("modelsync controller stopped");
    Ok(())
}

/// The first SIGTERM or Ctrl-C lets running passes finish; a second one exits at once.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("shutting down: finishing passes in flight (signal again to exit now)");
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        std::process::exit(130);
    });
}

/// The annotation `kubectl apply` keeps its copy of the whole applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "modelsync".to_owned())
}
