//! `modelsync controller`: its flags, and the wiring of the admin server ([`crate::admin`]),
//! leader election ([`crate::lease`]), the watches ([`crate::watches`]), the reconciler and
//! shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
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

use crate::lineage::{Lineage, LineageArgs};
use crate::list_strategy::{InitialList, Refusals};
use crate::metrics::Metrics;
use crate::notify::{self, Notifier};
use crate::reconcile::{Context, error_policy, reconcile};
use crate::run_index::RunIndex;
use crate::shard::{InvalidShard, Shard};
use crate::{admin, lease, list_strategy, receiver, watches};

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
    /// Reconcile only ModelSyncs labelled `modelsync.dev/shard=NAME` (and their runs); without
    /// it, only those without the label. Each shard elects its own leader, on the Lease
    /// `<leader-election-id>-NAME`.
    #[arg(long, env = "MODELSYNC_SHARD", value_name = "NAME", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Name of the leader-election Lease (a shard's is this, then `-NAME`).
    #[arg(
        long,
        default_value = "modelsync-controller",
        env = "MODELSYNC_LEADER_ELECTION_ID"
    )]
    pub leader_election_id: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "MODELSYNC_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Serve `POST /hook/lambda-changed` (see README, "Change to run without a poll"); the file
    /// holds the token hooks must send as a bearer token or HMAC key. Off without it.
    #[arg(long, env = "MODELSYNC_RECEIVER_TOKEN_FILE")]
    pub receiver_token_file: Option<PathBuf>,
    /// Address of the hook receiver (with --receiver-token-file).
    #[arg(long, default_value = "0.0.0.0:8081", env = "MODELSYNC_RECEIVER_ADDR")]
    pub receiver_addr: SocketAddr,
    /// `requested-at` annotations the receiver writes per second at most, over all ModelSyncs
    /// (one ModelSync is written at most once a second whatever this is).
    #[arg(
        long,
        default_value_t = 20.0,
        env = "MODELSYNC_RECEIVER_WRITES_PER_SECOND"
    )]
    pub receiver_writes_per_second: f64,
    /// How the watches get their first full view: `auto` probes the API server for streaming
    /// lists (sendInitialEvents) and falls back to paged lists; `paged` and `streaming` force
    /// one without probing, `streaming` stopping the controller if the server refuses it.
    #[arg(
        long,
        value_enum,
        default_value_t = InitialList::Auto,
        env = "MODELSYNC_INITIAL_LIST"
    )]
    pub initial_list: InitialList,
    #[command(flatten)]
    pub lineage: LineageArgs,
    #[command(flatten)]
    pub egress: EgressArgs,
    #[command(flatten)]
    pub notify: NotifyArgs,
}

/// How notifications (`spec.notify`) are delivered.
#[derive(clap::Args, Debug, Clone)]
pub struct NotifyArgs {
    /// Notifications waiting to be sent, at most; more are dropped and counted in
    /// modelsync_notifications_dropped.
    #[arg(long, default_value_t = 1000, env = "MODELSYNC_NOTIFY_QUEUE_SIZE")]
    pub notify_queue_size: usize,
    /// How long a notification receiver may take to answer one attempt.
    #[arg(long, default_value = "10s", value_parser = duration_arg, env = "MODELSYNC_NOTIFY_TIMEOUT")]
    pub notify_timeout: Duration,
    /// Attempts per notification (waits of 1s, 2s, 4s... up to 5m between them).
    #[arg(long, default_value_t = 10, env = "MODELSYNC_NOTIFY_ATTEMPTS")]
    pub notify_attempts: u32,
    /// After a start, each ModelSync's runs that started or ended this recently are notified
    /// again (receivers drop repeats by id): what the last process queued and did not deliver.
    #[arg(long, default_value = "1h", value_parser = duration_arg, env = "MODELSYNC_NOTIFY_REPLAY_WINDOW")]
    pub notify_replay_window: Duration,
}

impl NotifyArgs {
    pub fn settings(&self) -> notify::Settings {
        notify::Settings {
            queue: self.notify_queue_size,
            timeout: self.notify_timeout,
            attempts: self.notify_attempts.max(1),
            replay_window: self.notify_replay_window,
            ..notify::Settings::default()
        }
    }
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    modelsync_api::modelsync::parse_duration(text)
}

/// Where lambda calls may connect. A flag group of its own so `modelsync sync --dry-run` asks
/// a lambda under the same flags and defaults as the controller.
#[derive(clap::Args, Debug, Clone)]
pub struct EgressArgs {
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

impl EgressArgs {
    pub fn rules(&self) -> EgressRules {
        EgressRules {
            allow: self.lambda_allow_cidrs.clone(),
            deny: self.lambda_deny_cidrs.clone(),
        }
    }
}

pub use modelsync_telemetry::LogFormat;

fn parse_shard(name: &str) -> Result<Shard, InvalidShard> {
    Shard::named(name)
}

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
    let receiver = match &args.receiver_token_file {
        Some(token_file) => Some(
            receiver::bind(receiver::ReceiverSettings {
                addr: args.receiver_addr,
                token_file: token_file.clone(),
                writes_per_second: args.receiver_writes_per_second,
            })
            .await?,
        ),
        None => None,
    };
    let shard = args.shard.clone().unwrap_or_default();
    let elector = match args.leader_elect {
        true => {
            let ns = lease::namespace(args.leader_election_namespace.as_deref());
            let lease_name = shard.lease_name(&args.leader_election_id);
            let elector = Arc::new(lease::Elector::new(
                Api::namespaced(client.clone(), &ns),
                lease_name.clone(),
                lease::identity(),
                Duration::from_secs(15),
            ));
            // Waiting replicas say so, so "no leader" is visible as every replica at 0.
            metrics.leading(&elector.name, false);
            elector
                .acquire()
                .await
                .with_context(|| format!("taking the leader-election Lease {ns}/{lease_name}"))?;
            metrics.leading(&elector.name, true);
            Some(elector)
        }
        false => {
            metrics.leading("", true);
            None
        }
    };

    let (modelsyncs, runs_api) = watches::apis(&client, args.namespace.as_deref());
    let strategy = list_strategy::choose(args.initial_list, &modelsyncs).await;
    let refusals = Refusals::new(args.initial_list);
    let index = RunIndex::default();
    let reporter = Reporter {
        controller: "modelsync-controller".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        index.clone(),
        Recorder::new(client.clone(), reporter.clone()),
        metrics.clone(),
        args.egress.rules(),
        shard.clone(),
        Notifier::start(
            client.clone(),
            Recorder::new(client.clone(), reporter),
            metrics.clone(),
            args.notify.settings(),
        ),
    ));
    let (controller, listed) = watches::controller(
        modelsyncs,
        watches::runs(
            runs_api,
            index.clone(),
            metrics.clone(),
            &shard,
            (strategy, refusals.clone()),
            Lineage::start(&args.lineage, metrics.clone()),
        ),
        ctx.clone(),
        (strategy, refusals.clone()),
    );
    if let Some(receiver) = receiver {
        receiver.serve(
            client.clone(),
            controller.store(),
            ready.clone(),
            metrics.clone(),
        )?;
    }
    let readiness = tokio::spawn(async move {
        while !(listed.load(Ordering::Acquire) && index.ready()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ready.store(true, Ordering::Release);
        info!("ready: first full list of ModelSyncs and PipelineRuns received");
    });

    info!(
        namespace = args.namespace.as_deref().unwrap_or("(all)"),
        shard = %shard.describe(),
        selector = %shard.modelsync_selector(),
        concurrency = args.concurrency,
        lambda_allow_cidrs = %args.egress.lambda_allow_cidrs,
        lambda_deny_cidrs = %args.egress.lambda_deny_cidrs,
        openlineage_url = args.lineage.url.as_deref().unwrap_or("(off)"),
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
    // A refused forced streaming list stops the controller too: retrying cannot help, and
    // falling back would measure the paged path while the operator asked for streaming.
    let refused = async move {
        let why = refusals.first().await;
        warn!("stopping: the API server refused a streaming list {why}");
        why
    };
    let (lost_lease, refused) = tokio::select! {
        () = passes => (false, None),
        () = lost => (true, None),
        why = refused => (false, Some(why)),
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
    if let Some(why) = refused {
        anyhow::bail!(
            "--initial-list streaming: the API server refused a streaming list {why}; it does not \
             serve sendInitialEvents (Kubernetes' WatchList feature is off or too old): start \
             with --initial-list auto or paged, or turn the feature on"
        );
    }
    info!("modelsync controller stopped");
    Ok(())
}
