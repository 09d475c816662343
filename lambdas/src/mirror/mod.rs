//! A git-sync v4 compatible mirror: `modelsync mirror` on its own, and the same loop inside the
//! lambda server.

mod checkout;
mod fs;
pub mod layout;
pub mod metrics;
mod parallel;
mod prelink;
pub mod sync;
pub mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use modelsync_gitops::remote::redact;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

pub use metrics::{MirrorMetrics, SyncStatus};
pub use sync::{Credentials, SyncError, SyncOutcome, SyncSpec};

/// The published tree, as readers see it through the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced {
    pub hash: String,
    /// The worktree's absolute path (not the link, so a reader sees one commit throughout).
    pub worktree: PathBuf,
}

/// What the mirror last did, for readiness, the lambda engine and logs.
#[derive(Clone, Debug, Default)]
pub struct MirrorState {
    /// The last good tree; kept when a later sync fails.
    pub synced: Option<Synced>,
    /// Why the last sync failed, if it did.
    pub last_error: Option<String>,
    /// Sync attempts so far.
    pub attempts: u64,
}

/// Syncs every `period`, and at once when `now` is notified (a git host's push webhook), until
/// the process ends, publishing each attempt on `state`. Notifications during a sync make one
/// more sync after it, however many there were.
pub async fn run_loop(
    spec: SyncSpec,
    period: Duration,
    metrics: MirrorMetrics,
    state: watch::Sender<MirrorState>,
    webhook: Option<watch::Sender<Option<String>>>,
    now: Arc<tokio::sync::Notify>,
) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = now.notified() => {
                tracing::info!("syncing now: a push webhook asked");
                // The period counts from this sync, so the next tick is not a second sync
                // right behind it.
                ticker.reset();
            }
        }
        // A failure is logged and kept in the state; the next tick simply tries again.
        let _ = sync_and_publish(&spec, &metrics, &state, webhook.as_ref()).await;
    }
}

/// One attempt: runs the blocking sync off the runtime, then records what happened.
pub async fn sync_and_publish(
    spec: &SyncSpec,
    metrics: &MirrorMetrics,
    state: &watch::Sender<MirrorState>,
    webhook: Option<&watch::Sender<Option<String>>>,
) -> Result<SyncOutcome, SyncError> {
    let started = Instant::now();
    let job = spec.clone();
    let result = tokio::task::spawn_blocking(move || sync::sync(&job))
        .await
        .map_err(SyncError::Task)
        .and_then(|r| r);
    let seconds = started.elapsed().as_secs_f64();
    let repo = redact(&spec.repo);
    match &result {
        Ok(outcome) => {
            let hash = outcome.hash().to_owned();
            let changed = matches!(outcome, SyncOutcome::Updated { .. });
            metrics.observe(
                if changed {
                    SyncStatus::Success
                } else {
                    SyncStatus::Noop
                },
                seconds,
            );
            if changed {
                tracing::info!(%repo, git_ref = %spec.git_ref, %hash, seconds, "synced a new commit");
                if let Some(webhook) = webhook {
                    webhook.send_replace(Some(hash.clone()));
                }
            } else {
                tracing::debug!(%repo, %hash, "no new commit");
            }
            let worktree = layout::worktree_path(&spec.root, &hash);
            state.send_modify(|s| {
                s.attempts += 1;
                s.last_error = None;
                s.synced = Some(Synced { hash, worktree });
            });
        }
        Err(error) => {
            metrics.observe(SyncStatus::Error, seconds);
            tracing::warn!(%repo, git_ref = %spec.git_ref, %error, "sync failed; still serving the last good tree");
            state.send_modify(|s| {
                s.attempts += 1;
                s.last_error = Some(error.to_string());
            });
        }
    }
    result
}

/// `modelsync mirror`: flags and environment variables as git-sync v4 names them.
#[derive(Clone, Debug, clap::Args)]
pub struct MirrorArgs {
    /// The repository to mirror (https://, ssh://, git://, file:// or a path).
    #[arg(long, env = "GITSYNC_REPO")]
    pub repo: String,
    /// Branch, tag or commit to check out.
    #[arg(long = "ref", env = "GITSYNC_REF", default_value = "HEAD")]
    pub git_ref: String,
    /// Folder holding the repository, `.worktrees/` and (by default) the link.
    #[arg(long, env = "GITSYNC_ROOT")]
    pub root: PathBuf,
    /// The symlink readers use; relative to --root unless absolute. Default: the repo's name.
    #[arg(long, env = "GITSYNC_LINK")]
    pub link: Option<PathBuf>,
    /// Time between syncs.
    #[arg(long, env = "GITSYNC_PERIOD", default_value = "10s", value_parser = humantime::parse_duration)]
    pub period: Duration,
    /// Commits of history to fetch; 0 for all.
    #[arg(long, env = "GITSYNC_DEPTH", default_value_t = 1)]
    pub depth: u32,
    /// URL to POST to, with header Gitsync-Hash, after each new commit.
    #[arg(long, env = "GITSYNC_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Address for `/` (503 until the first sync) and `/metrics`.
    #[arg(long, env = "GITSYNC_HTTP_BIND")]
    pub http_bind: Option<SocketAddr>,
    /// Sync once and exit.
    #[arg(long, env = "GITSYNC_ONE_TIME")]
    pub one_time: bool,
    /// User name for HTTPS or SSH.
    #[arg(long, env = "GITSYNC_USERNAME")]
    pub username: Option<String>,
    /// File holding the HTTPS password or token.
    #[arg(long, env = "GITSYNC_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// File holding the SSH private key.
    #[arg(long, env = "GITSYNC_SSH_KEY_FILE")]
    pub ssh_key_file: Option<PathBuf>,
}

impl MirrorArgs {
    fn spec(&self) -> anyhow::Result<SyncSpec> {
        let link = match &self.link {
            Some(link) => link.clone(),
            None => default_link(&self.repo).with_context(|| {
                format!(
                    "cannot name a link after --repo {}: give --link",
                    redact(&self.repo)
                )
            })?,
        };
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("creating --root {}", self.root.display()))?;
        let root = self
            .root
            .canonicalize()
            .with_context(|| format!("resolving --root {}", self.root.display()))?;
        Ok(SyncSpec {
            repo: self.repo.clone(),
            git_ref: self.git_ref.clone(),
            root,
            link,
            depth: self.depth,
            credentials: Credentials {
                username: self.username.clone(),
                password_file: self.password_file.clone(),
                ssh_key_file: self.ssh_key_file.clone(),
            },
        })
    }
}

/// git-sync's default link name: the last path element of the repository, without `.git`.
fn default_link(repo: &str) -> Option<PathBuf> {
    let name = repo.trim_end_matches('/').rsplit(['/', ':']).next()?;
    let name = name.strip_suffix(".git").unwrap_or(name);
    (!name.is_empty()).then(|| PathBuf::from(name))
}

/// Runs `modelsync mirror`.
pub fn run(args: MirrorArgs) -> anyhow::Result<()> {
    crate::logging::init_logging();
    let spec = args.spec()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut registry = Registry::default();
        let metrics = MirrorMetrics::register(&mut registry);
        let (state, state_rx) = watch::channel(MirrorState::default());
        let webhook = args.webhook_url.clone().map(webhook::spawn);
        if args.one_time {
            sync_and_publish(&spec, &metrics, &state, webhook.as_ref()).await?;
            return Ok(());
        }
        if let Some(addr) = args.http_bind {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on --http-bind {addr}"))?;
            let app = http_app(state_rx, Arc::new(registry));
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "mirror HTTP server stopped");
                }
            });
        }
        let never = Arc::new(tokio::sync::Notify::new());
        run_loop(spec, args.period, metrics, state, webhook, never).await;
        Ok(())
    })
}

#[derive(Clone)]
struct HttpState {
    mirror: watch::Receiver<MirrorState>,
    registry: Arc<Registry>,
}

/// git-sync's HTTP endpoint: `/` is 503 until the first sync, then 200; `/metrics`.
pub fn http_app(mirror: watch::Receiver<MirrorState>, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/metrics", get(modelsync_telemetry::metrics_handler))
        .with_state(HttpState { mirror, registry })
}

async fn root(State(s): State<HttpState>) -> (StatusCode, String) {
    match &s.mirror.borrow().synced {
        Some(synced) => (StatusCode::OK, format!("synced {}\n", synced.hash)),
        None => (StatusCode::SERVICE_UNAVAILABLE, "not synced yet\n".into()),
    }
}

impl axum::extract::FromRef<HttpState> for Arc<Registry> {
    fn from_ref(s: &HttpState) -> Self {
        s.registry.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_defaults_to_repo_name() {
        assert_eq!(
            default_link("https://h.example/org/models.git"),
            Some("models".into())
        );
        assert_eq!(
            default_link("git@h.example:org/gitops"),
            Some("gitops".into())
        );
        assert_eq!(default_link("file:///srv/r.git/"), Some("r".into()));
    }
}
