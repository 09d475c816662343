//! The mirror's metrics, named as git-sync names them so dashboards carry over.
//!
//! These alone keep git-sync's names rather than the lambda server's
//! `modelsync_lambda_server_` prefix: a dashboard or alert written for git-sync's
//! `git_sync_count_total` and `git_sync_duration_seconds` then works on this mirror unchanged.
//! Do not rename them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Status {
    status: &'static str,
}

/// How a sync ended, as the `status` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncStatus {
    Success,
    Error,
    Noop,
}

impl SyncStatus {
    fn label(self) -> Status {
        let status = match self {
            SyncStatus::Success => "success",
            SyncStatus::Error => "error",
            SyncStatus::Noop => "noop",
        };
        Status { status }
    }
}

/// `git_sync_count_total{status}` and `git_sync_duration_seconds{status}`.
#[derive(Clone, Debug)]
pub struct MirrorMetrics {
    count: Family<Status, Counter>,
    duration: Family<Status, Histogram>,
}

impl MirrorMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let count = Family::<Status, Counter>::default();
        let duration = Family::<Status, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 14))
        });
        registry.register(
            "git_sync_count",
            "How many git syncs were attempted, by outcome",
            modelsync_telemetry::Declared(count.clone()),
        );
        registry.register(
            "git_sync_duration_seconds",
            "How long git syncs took, by outcome",
            modelsync_telemetry::Declared(duration.clone()),
        );
        MirrorMetrics { count, duration }
    }

    pub fn observe(&self, status: SyncStatus, seconds: f64) {
        let label = status.label();
        self.count.get_or_create(&label).inc();
        self.duration.get_or_create(&label).observe(seconds);
    }
}
