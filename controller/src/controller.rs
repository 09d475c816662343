//! `modelsync controller`: its flags, and the wiring of the admin server ([`crate::admin`]),
//! leader election ([`crate::lease`]), the watches ([`crate::watches`]), the reconciler and
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::StreamExt;
use kube::Api;
use kube::runtime::controller::Config;
use kube::runtime::events::{Recorder, Reporter};
use modelsync_api::connect::KubeTarget;
use modelsync_api::egress::{CidrList, DEFAULT_DENY, EgressRules};
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::reconcile::{Context, error_policy, reconcile};
use crate::run_index::RunIndex;
use crate::{admin, lease, watches};

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
    /// CIDRs a lambda's address must be in, comma-separated; empty allows any address the
    /// deny list does not refuse.
    #[arg(long, default_value = "", env = "MODELSYNC_LAMBDA_ALLOW_CIDRS")]
    pub lambda_allow_cidrs: CidrList,
    /// CIDRs no lambda call may connect to, comma-separated; checked after name resolution,
    /// on the address connected to. Wins over the allow list. The default keeps cloud metadata
    /// services (link-local addresses) out of reach.
    #[arg(long, default_value = DEFAULT_DENY, env = "MODELSYNC_LAMBDA_DENY_CIDRS")]
    pub lambda_deny_cidrs: CidrList,
}

pub use modelsync_telemetry::LogFormat;

/// Entry point of the subcommand; `target` is the cluster `--kubeconfig`/`--context` chose.
pub fn main(args: ControllerArgs, target: KubeTarget) -> Result<()> {
    init_logging(args.log_format);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args, target))
}

fn init_logging(format: LogFormat) {
    modelsync_telemetry::init_logging(&modelsync_telemetry::Logging {
        format,
        default_filter: "info,kube=warn,hyper=warn,tower=warn",
        to_stderr: false,
    });
}

/// Runs the controller until SIGTERM or Ctrl-C (a second one aborts passes in flight), or
/// until this replica loses the Lease.
pub async fn run(args: ControllerArgs, target: KubeTarget) -> Result<()> {
    let client = target.client().await.context("connecting to Kubernetes")?;
    watches::check_crds(&client, args.namespace.as_deref()).await?;

    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    // Serve /healthz while waiting to lead; /readyz turns ready only once leading and synced.
    admin::serve(args.metrics_addr, metrics.clone(), ready.clone()).await?;
    let elector = match args.leader_elect {
        true => {
            let ns = lease::namespace(args.leader_election_namespace.as_deref());
            let elector = Arc::new(lease::Elector::new(
                Api::namespaced(client.clone(), &ns),
                args.leader_election_id.clone(),
                lease::identity(),
                Duration::from_secs(15),
            ));
            // Waiting replicas say so, so "no leader" is visible as every replica at 0.
            metrics.leading(&elector.name, false);
            elector.acquire().await.with_context(|| {
                format!(
                    "taking the leader-election Lease {ns}/{}",
                    args.leader_election_id
                )
            })?;
            metrics.leading(&elector.name, true);
            Some(elector)
        }
        false => {
            metrics.leading("", true);
            None
        }
    };

    let (modelsyncs, runs_api) = watches::apis(&client, args.namespace.as_deref());
    let index = RunIndex::default();
    let reporter = Reporter {
        controller: "modelsync-controller".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        index.clone(),
        Recorder::new(client.clone(), reporter),
        metrics.clone(),
        EgressRules {
            allow: args.lambda_allow_cidrs.clone(),
            deny: args.lambda_deny_cidrs.clone(),
        },
    ));
    let (controller, listed) = watches::controller(
        modelsyncs,
        watches::runs(runs_api, index.clone(), metrics.clone()),
        ctx.clone(),
    );
    let readiness = tokio::spawn(async move {
        while !(listed.load(Ordering::Acquire) && index.ready()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ready.store(true, Ordering::Release);
        info!("ready: first full list of ModelSyncs and PipelineRuns received");
    });

    info!(
        namespace = args.namespace.as_deref().unwrap_or("(all)"),
        concurrency = args.concurrency,
        lambda_allow_cidrs = %args.lambda_allow_cidrs,
        lambda_deny_cidrs = %args.lambda_deny_cidrs,
        "modelsync controller starting"
    );
    // The Lease is renewed in its own task, beside the passes; losing it ends the controller.
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let lost_metrics = metrics.clone();
    let holder = elector.clone().map(|elector| {
        tokio::spawn(async move {
            elector.hold().await;
            lost_metrics.leading(&elector.name, false);
            let _ = lost_tx.send(());
        })
    });
    let lost = async move {
        match lost_rx.await {
            Ok(()) => warn!("stopping at once: no longer the leader"),
            // No Lease to lose: only a signal stops the controller.
            Err(_) => std::future::pending().await,
        }
    };
    let passes = controller
        .with_config(Config::default().concurrency(args.concurrency))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {});
    // A lost Lease ends the passes in flight too (dropping the stream aborts them): another
    // replica may lead now, and a pass left to finish, say one whose call hangs in a
    // partition, could still write after it does.
    let lost_lease = tokio::select! {
        () = passes => false,
        () = lost => true,
    };
    readiness.abort();
    if let (Some(elector), Some(holder)) = (elector, holder) {
        let still_leading = !lost_lease && !holder.is_finished();
        holder.abort();
        if still_leading {
            // Best effort, and bounded: an API server that does not answer must not keep a
            // stopping replica alive; the Lease then expires as usual.
            let release = tokio::time::timeout(Duration::from_secs(5), elector.release());
            if release.await.is_err() {
                warn!(
                    "the API server did not answer the Lease release within 5s; it expires in {:?}",
                    elector.lease_duration
                );
            }
        }
    }
    info!("modelsync controller stopped");
    Ok(())
}
