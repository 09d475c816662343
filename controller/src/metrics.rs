//! Prometheus metrics, named like controller-runtime's where they mean the same thing.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use modelsync_api::modelsync::NotifyFormat;

fn fmt(format: NotifyFormat) -> FormatLabels {
    FormatLabels {
        format: format.as_str(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub controller: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FormatLabels {
    pub format: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    reconcile_total: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ResultLabels, Counter>,
    reconcile_time: Histogram,
    lambda_requests: Family<OutcomeLabels, Counter>,
    lambda_duration: Histogram,
    pub runs_created: Counter,
    pub runs_cancelled: Counter,
    pub runs_deleted: Counter,
    pub status_writes: Counter,
    pub indexed_runs: Gauge,
    /// How late each scheduled poll ran compared with its planned time: the jittered interval
    /// after the last poll, or the end of a finished run's settle period if later.
    pub poll_lag: Histogram,
    lineage_events: Family<OutcomeLabels, Counter>,
    /// Lineage events queued and not yet delivered or given up on.
    pub lineage_queue: Gauge,
    /// Hooks received by `--receiver-addr`, by outcome.
    hooks: Family<OutcomeLabels, Counter>,
    /// `requested-at` annotations written for hooks, and writes that failed.
    pub hook_writes: Counter,
    pub hook_write_errors: Counter,
    /// Hook requests for a ModelSync already waiting for its write.
    pub hook_coalesced: Counter,
    notifications: Notifications,
}

/// Delivery of `spec.notify` notifications.
#[derive(Default)]
struct Notifications {
    sent: Family<FormatLabels, Counter>,
    failed: Family<FormatLabels, Counter>,
    retries: Family<FormatLabels, Counter>,
    dropped: Family<FormatLabels, Counter>,
    /// Queued or waiting for a retry.
    pending: Gauge,
}

impl Notifications {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "modelsync_notifications_sent",
            "Notifications a receiver accepted (2xx), by format",
            self.sent.clone(),
        );
        registry.register(
            "modelsync_notifications_failed",
            "Notifications given up on after their last attempt or a permanent refusal, by format",
            self.failed.clone(),
        );
        registry.register(
            "modelsync_notification_retries",
            "Failed notification attempts that will be retried, by format",
            self.retries.clone(),
        );
        registry.register(
            "modelsync_notifications_dropped",
            "Notifications dropped because the queue was full, by format",
            self.dropped.clone(),
        );
        registry.register(
            "modelsync_notification_queue_depth",
            "Notifications queued or waiting for a retry",
            self.pending.clone(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconcile_total = Family::<ResultLabels, Counter>::default();
        let reconcile_errors = Family::<ResultLabels, Counter>::default();
        let reconcile_time = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let lambda_requests = Family::<OutcomeLabels, Counter>::default();
        let lambda_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let runs_created = Counter::default();
        let runs_cancelled = Counter::default();
        let runs_deleted = Counter::default();
        let status_writes = Counter::default();
        let indexed_runs = Gauge::default();
        let poll_lag = Histogram::new([
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
        ]);
        registry.register(
            "controller_runtime_reconcile",
            "Reconciles per controller and result",
            reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Reconciles that ended in an error",
            reconcile_errors.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Time per reconcile",
            reconcile_time.clone(),
        );
        registry.register(
            "modelsync_lambda_requests",
            "Lambda calls by outcome (yes, no, or the kind of error)",
            lambda_requests.clone(),
        );
        registry.register(
            "modelsync_lambda_duration_seconds",
            "Time a lambda took to answer",
            lambda_duration.clone(),
        );
        registry.register(
            "modelsync_runs_created",
            "PipelineRuns created",
            runs_created.clone(),
        );
        registry.register(
            "modelsync_runs_cancelled",
            "PipelineRuns cancelled under concurrencyPolicy Replace",
            runs_cancelled.clone(),
        );
        registry.register(
            "modelsync_runs_garbage_collected",
            "Finished PipelineRuns deleted beyond the history limits",
            runs_deleted.clone(),
        );
        registry.register(
            "modelsync_status_writes",
            "ModelSync status updates written",
            status_writes.clone(),
        );
        registry.register(
            "modelsync_indexed_pipelineruns",
            "PipelineRuns held in the controller's index",
            indexed_runs.clone(),
        );
        registry.register(
            "modelsync_poll_lag_seconds",
            "How late a scheduled lambda poll ran compared with its planned time (jittered \
             interval, or the end of a finished run's settle period)",
            poll_lag.clone(),
        );
        let lineage_events = Family::<OutcomeLabels, Counter>::default();
        let lineage_queue = Gauge::default();
        registry.register(
            "modelsync_lineage_events",
            "OpenLineage event deliveries by outcome: sent, retried (an attempt failed and will \
             be repeated), rejected (4xx, dropped) or refused (queue full, kept due)",
            lineage_events.clone(),
        );
        registry.register(
            "modelsync_lineage_queue_depth",
            "OpenLineage events waiting to be sent",
            lineage_queue.clone(),
        );
        let hooks = Family::<OutcomeLabels, Counter>::default();
        let (hook_writes, hook_write_errors, hook_coalesced) =
            (Counter::default(), Counter::default(), Counter::default());
        registry.register(
            "modelsync_receiver_hooks",
            "Lambda-changed hooks received, by outcome (accepted, unauthorized, invalid, \
             not_ready, queue_full, token_unreadable)",
            hooks.clone(),
        );
        registry.register(
            "modelsync_receiver_annotations_written",
            "requested-at annotations written because a hook named the ModelSync's lambda",
            hook_writes.clone(),
        );
        registry.register(
            "modelsync_receiver_annotation_errors",
            "requested-at annotation writes for hooks that the API server refused",
            hook_write_errors.clone(),
        );
        registry.register(
            "modelsync_receiver_coalesced",
            "Hook requests for a ModelSync already waiting for its annotation write",
            hook_coalesced.clone(),
        );
        let notifications = Notifications::default();
        notifications.register(&mut registry);
        Metrics {
            lineage_events,
            lineage_queue,
            notifications,
            hooks,
            hook_writes,
            hook_write_errors,
            hook_coalesced,
            poll_lag,
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            lambda_requests,
            lambda_duration,
            runs_created,
            runs_cancelled,
            runs_deleted,
            status_writes,
            indexed_runs,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, took: Duration, result: &'static str) {
        let labels = ResultLabels {
            controller: "modelsync",
            result,
        };
        self.reconcile_total.get_or_create(&labels).inc();
        if result == "error" {
            self.reconcile_errors.get_or_create(&labels).inc();
        }
        self.reconcile_time.observe(took.as_secs_f64());
    }

    pub fn lambda_called(&self, took: Duration, outcome: &'static str) {
        self.lambda_requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.lambda_duration.observe(took.as_secs_f64());
    }

    pub fn lineage_event(&self, outcome: &'static str) {
        self.lineage_events
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn hook(&self, outcome: &'static str) {
        self.hooks.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn notification_queued(&self) {
        self.notifications.pending.inc();
    }

    pub fn notification_done(&self) {
        self.notifications.pending.dec();
    }

    pub fn notification_sent(&self, format: NotifyFormat) {
        self.notifications.sent.get_or_create(&fmt(format)).inc();
        self.notification_done();
    }

    pub fn notification_failed(&self, format: NotifyFormat) {
        self.notifications.failed.get_or_create(&fmt(format)).inc();
        self.notification_done();
    }

    pub fn notification_retried(&self, format: NotifyFormat) {
        self.notifications.retries.get_or_create(&fmt(format)).inc();
    }

    pub fn notification_dropped(&self, format: NotifyFormat) {
        self.notifications.dropped.get_or_create(&fmt(format)).inc();
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        modelsync_telemetry::encode(&self.registry).expect("writing to a String cannot fail")
    }
}
