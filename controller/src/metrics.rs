//! Prometheus metrics, named like controller-runtime's where they mean the same thing.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use modelsync_api::modelsync::NotifyFormat;
use modelsync_api::modelsync::RunResult;
use modelsync_telemetry::Declared;

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
pub struct LambdaLabels {
    pub namespace: String,
    pub name: String,
    pub outcome: &'static str,
}

/// One ModelSync, for the few series a dashboard or an alert must break down by resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelSyncLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FinishedLabels {
    pub namespace: String,
    pub name: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub resource: &'static str,
    pub verb: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabels {
    pub lease: String,
}

/// Every write the controller makes to the API server, as (resource, verb). Declared at start
/// so `rate()` over them reads 0 rather than "no data" before the first write.
pub const API_WRITES: [(&str, &str); 4] = [
    ("pipelineruns", "create"),
    ("pipelineruns", "delete"),
    ("pipelineruns", "patch"),
    ("modelsyncs/status", "patch"),
];

/// The `result` label of [`Metrics::api_write`]: the call succeeded (or found its work done
/// already, like deleting a run that is gone), or it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteResult {
    Ok,
    Error,
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
    lambda_calls: Family<LambdaLabels, Counter>,
    lambda_duration: Histogram,
    lambda_seconds: Family<ModelSyncLabels, Counter<f64, AtomicU64>>,
    lambda_failing: Family<ModelSyncLabels, Gauge>,
    runs_finished: Family<FinishedLabels, Counter>,
    failed_in_a_row: Family<ModelSyncLabels, Gauge>,
    api_writes: Family<WriteLabels, Counter>,
    last_status_write: Gauge<f64, AtomicU64>,
    leader: Family<LeaseLabels, Gauge>,
    /// Polls that ran later than their ModelSync's whole poll interval: the controller is
    /// behind, most likely because every concurrency slot is busy.
    pub polls_late: Counter,
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
            Declared(self.sent.clone()),
        );
        registry.register(
            "modelsync_notifications_failed",
            "Notifications given up on after their last attempt or a permanent refusal, by format",
            Declared(self.failed.clone()),
        );
        registry.register(
            "modelsync_notification_retries",
            "Failed notification attempts that will be retried, by format",
            Declared(self.retries.clone()),
        );
        registry.register(
            "modelsync_notifications_dropped",
            "Notifications dropped because the queue was full, by format",
            Declared(self.dropped.clone()),
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
        let lambda_calls = Family::<LambdaLabels, Counter>::default();
        let lambda_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let lambda_seconds = Family::<ModelSyncLabels, Counter<f64, AtomicU64>>::default();
        let lambda_failing = Family::<ModelSyncLabels, Gauge>::default();
        let runs_finished = Family::<FinishedLabels, Counter>::default();
        let failed_in_a_row = Family::<ModelSyncLabels, Gauge>::default();
        let api_writes = Family::<WriteLabels, Counter>::default();
        for (resource, verb) in API_WRITES {
            for result in ["ok", "error"] {
                let _ = api_writes.get_or_create(&WriteLabels {
                    resource,
                    verb,
                    result,
                });
            }
        }
        let last_status_write = Gauge::<f64, AtomicU64>::default();
        let leader = Family::<LeaseLabels, Gauge>::default();
        let polls_late = Counter::default();
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
            Declared(reconcile_total.clone()),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Reconciles that ended in an error",
            Declared(reconcile_errors.clone()),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Time per reconcile",
            reconcile_time.clone(),
        );
        registry.register(
            "modelsync_lambda_requests",
            "Lambda calls by ModelSync and outcome (yes, no, or the kind of error)",
            Declared(lambda_calls.clone()),
        );
        registry.register(
            "modelsync_lambda_wait_seconds",
            "Seconds spent waiting for each ModelSync's lambda; divided by the rate of \
             modelsync_lambda_requests_total it is the mean latency per ModelSync",
            Declared(lambda_seconds.clone()),
        );
        registry.register(
            "modelsync_lambda_failing",
            "1 while a ModelSync's last lambda call failed, 0 once it answered",
            Declared(lambda_failing.clone()),
        );
        registry.register(
            "modelsync_runs_finished",
            "PipelineRuns seen to finish, by ModelSync and result (Succeeded, Failed, Cancelled)",
            Declared(runs_finished.clone()),
        );
        registry.register(
            "modelsync_runs_failed_in_a_row",
            "Runs of a ModelSync that failed since its last successful run (cancelled runs \
             neither count nor reset; since this controller started)",
            Declared(failed_in_a_row.clone()),
        );
        registry.register(
            "modelsync_api_writes",
            "Writes to the Kubernetes API by resource, verb and result (ok or error)",
            api_writes.clone(),
        );
        registry.register(
            "modelsync_last_status_write_timestamp_seconds",
            "Unix time of the last ModelSync status write (0: none since start)",
            last_status_write.clone(),
        );
        registry.register(
            "modelsync_leader",
            "1 while this replica holds its leader-election Lease (lease=\"\" without \
             --leader-elect, where every replica leads), 0 while it waits",
            Declared(leader.clone()),
        );
        registry.register(
            "modelsync_polls_late",
            "Polls that ran later than their ModelSync's whole poll interval",
            polls_late.clone(),
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
            Declared(lineage_events.clone()),
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
            Declared(hooks.clone()),
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
            lambda_calls,
            lambda_duration,
            lambda_seconds,
            lambda_failing,
            runs_finished,
            failed_in_a_row,
            api_writes,
            last_status_write,
            leader,
            polls_late,
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

    /// One lambda call of `namespace/name`; `answered` is false for every kind of error.
    pub fn lambda_called(
        &self,
        namespace: &str,
        name: &str,
        took: Duration,
        outcome: &'static str,
        answered: bool,
    ) {
        self.lambda_calls
            .get_or_create(&LambdaLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                outcome,
            })
            .inc();
        self.lambda_duration.observe(took.as_secs_f64());
        let modelsync = ModelSyncLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.lambda_seconds
            .get_or_create(&modelsync)
            .inc_by(took.as_secs_f64());
        self.lambda_failing
            .get_or_create(&modelsync)
            .set(i64::from(!answered));
    }

    /// A deleted ModelSync's gauges go, so a lambda that failed last does not alert forever.
    /// Its counters stay until restart: a counter that vanishes and returns reads as a reset.
    pub fn forget_modelsync(&self, namespace: &str, name: &str) {
        let modelsync = ModelSyncLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.lambda_failing.remove(&modelsync);
        self.failed_in_a_row.remove(&modelsync);
    }

    /// A run of `namespace/name` was seen to finish.
    pub fn run_finished(&self, namespace: &str, name: &str, result: RunResult) {
        let result = match result {
            RunResult::Running => return,
            RunResult::Succeeded => "Succeeded",
            RunResult::Failed => "Failed",
            RunResult::Cancelled => "Cancelled",
        };
        let modelsync = ModelSyncLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        match result {
            "Succeeded" => self.failed_in_a_row.get_or_create(&modelsync).set(0),
            "Failed" => self.failed_in_a_row.get_or_create(&modelsync).inc(),
            _ => 0,
        };
        self.runs_finished
            .get_or_create(&FinishedLabels {
                namespace: modelsync.namespace,
                name: modelsync.name,
                result,
            })
            .inc();
    }

    pub fn api_write(&self, resource: &'static str, verb: &'static str, result: WriteResult) {
        let result = match result {
            WriteResult::Ok => "ok",
            WriteResult::Error => "error",
        };
        self.api_writes
            .get_or_create(&WriteLabels {
                resource,
                verb,
                result,
            })
            .inc();
    }

    pub fn status_written(&self, at: SystemTime) {
        self.status_writes.inc();
        let secs = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_status_write.set(secs);
    }

    /// Whether this replica leads under `lease` (empty without leader election).
    pub fn leading(&self, lease: &str, leading: bool) {
        self.leader
            .get_or_create(&LeaseLabels {
                lease: lease.to_owned(),
            })
            .set(i64::from(leading));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn labelled_families_are_described_before_their_first_series() {
        let text = Metrics::default().encode();
        for family in [
            "# TYPE controller_runtime_reconcile counter",
            "# TYPE modelsync_lambda_requests counter",
            "# TYPE modelsync_lambda_wait_seconds counter",
            "# TYPE modelsync_lambda_failing gauge",
            "# TYPE modelsync_runs_finished counter",
            "# TYPE modelsync_runs_failed_in_a_row gauge",
            "# TYPE modelsync_leader gauge",
            "# TYPE modelsync_receiver_hooks counter",
            "# TYPE modelsync_lineage_events counter",
            "# TYPE modelsync_notifications_sent counter",
            "# TYPE modelsync_notifications_failed counter",
            "# TYPE modelsync_notification_retries counter",
            "# TYPE modelsync_notifications_dropped counter",
        ] {
            assert!(text.contains(family), "{family} missing from:\n{text}");
        }
    }

    #[test]
    fn api_writes_are_declared_before_the_first_write() {
        let text = Metrics::default().encode();
        for (resource, verb) in API_WRITES {
            let series = format!(
                "modelsync_api_writes_total{{resource=\"{resource}\",verb=\"{verb}\",result=\"ok\"}} 0"
            );
            assert!(text.contains(&series), "{series} missing from:\n{text}");
        }
    }

    #[test]
    fn a_failing_lambda_is_flagged_until_it_answers_and_forgotten_with_its_modelsync() {
        let m = Metrics::default();
        let failing = "modelsync_lambda_failing{namespace=\"ns\",name=\"trainer\"}";
        m.lambda_called(
            "ns",
            "trainer",
            Duration::from_millis(250),
            "timeout",
            false,
        );
        assert_eq!(line(&m.encode(), failing), Some(&*format!("{failing} 1")));
        m.lambda_called("ns", "trainer", Duration::from_millis(750), "no", true);
        let text = m.encode();
        assert_eq!(line(&text, failing), Some(&*format!("{failing} 0")));
        assert!(text.contains(
            "modelsync_lambda_requests_total{namespace=\"ns\",name=\"trainer\",outcome=\"timeout\"} 1"
        ));
        assert!(
            text.contains(
                "modelsync_lambda_wait_seconds_total{namespace=\"ns\",name=\"trainer\"} 1.0"
            ),
            "the waits add up: {text}"
        );
        m.forget_modelsync("ns", "trainer");
        assert_eq!(line(&m.encode(), failing), None);
    }

    #[test]
    fn runs_finished_count_by_result_and_never_running() {
        let m = Metrics::default();
        m.run_finished("ns", "trainer", RunResult::Failed);
        m.run_finished("ns", "trainer", RunResult::Failed);
        m.run_finished("ns", "trainer", RunResult::Running);
        m.run_finished("ns", "trainer", RunResult::Cancelled);
        let text = m.encode();
        assert!(text.contains(
            "modelsync_runs_finished_total{namespace=\"ns\",name=\"trainer\",result=\"Failed\"} 2"
        ));
        assert!(!text.contains("result=\"Running\""), "{text}");
        let in_a_row = "modelsync_runs_failed_in_a_row{namespace=\"ns\",name=\"trainer\"}";
        assert_eq!(line(&text, in_a_row), Some(&*format!("{in_a_row} 2")));
        m.run_finished("ns", "trainer", RunResult::Succeeded);
        assert_eq!(line(&m.encode(), in_a_row), Some(&*format!("{in_a_row} 0")));
    }

    #[test]
    fn a_status_write_counts_and_stamps_its_time() {
        let m = Metrics::default();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        m.status_written(at);
        let text = m.encode();
        assert!(text.contains("modelsync_status_writes_total 1"), "{text}");
        assert!(
            text.contains("modelsync_last_status_write_timestamp_seconds 1800000000.0"),
            "{text}"
        );
    }

    #[test]
    fn the_leader_gauge_follows_the_lease() {
        let m = Metrics::default();
        m.leading("modelsync-controller", false);
        assert!(
            m.encode()
                .contains("modelsync_leader{lease=\"modelsync-controller\"} 0")
        );
        m.leading("modelsync-controller", true);
        assert!(
            m.encode()
                .contains("modelsync_leader{lease=\"modelsync-controller\"} 1")
        );
    }
}
