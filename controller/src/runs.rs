//! A ModelSync's runs: which are active, which finished, which to garbage-collect. Pure.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use modelsync_api::PipelineRun;
use modelsync_api::modelsync::{
    ANNOTATION_DECIDED_AT, ANNOTATION_PARAMETERS, RunResult, RunSummary,
};

/// What the controller keeps of a PipelineRun: only what it reads. A run as Kubernetes sends
/// it costs about 2 KB of heap even in the partial [`PipelineRun`] type (label and annotation
/// maps alone are 1.2 KB); a record is a sixth of that, which matters at 30,000 cached runs.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub name: String,
    pub uid: Option<String>,
    pub created: Option<DateTime<Utc>>,
    /// When the controller decided to start the run (the `modelsync.dev/decided-at`
    /// annotation), to the microsecond: `creationTimestamp` has whole seconds only, too coarse
    /// to order runs that start and finish within one second.
    pub decided_at: Option<DateTime<Utc>>,
    /// The uid of the run's controlling owner, if any.
    pub controller_uid: Option<String>,
    pub result: RunResult,
    /// Cancellation was asked for (`spec.status`), even if Tekton has not reported it yet.
    pub cancel_requested: bool,
    pub start_time: Option<DateTime<Utc>>,
    pub completion_time: Option<DateTime<Utc>>,
    /// The `modelsync.dev/parameters` annotation: the params the run was started with.
    pub parameters: Option<String>,
}

impl RunRecord {
    /// What orders a ModelSync's runs, oldest first: the decision time, else (a run made by
    /// hand) the creation time, then the name so the order is at least stable.
    fn age_order(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>, &str) {
        (self.decided_at.or(self.created), self.created, &self.name)
    }
}

impl From<&PipelineRun> for RunRecord {
    fn from(run: &PipelineRun) -> Self {
        let status = run.status.as_ref();
        RunRecord {
            name: run.name_any(),
            uid: run.uid(),
            created: run.metadata.creation_timestamp.as_ref().and_then(|t| {
                DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond() as u32)
            }),
            decided_at: run
                .annotations()
                .get(ANNOTATION_DECIDED_AT)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.to_utc()),
            controller_uid: run
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone()),
            result: run.result(),
            cancel_requested: run.cancel_requested(),
            start_time: status.and_then(|s| s.start_time),
            completion_time: status.and_then(|s| s.completion_time),
            parameters: run.annotations().get(ANNOTATION_PARAMETERS).cloned(),
        }
    }
}

/// The runs one ModelSync owns, oldest first.
#[derive(Clone, Debug, Default)]
pub struct OwnedRuns {
    runs: Vec<Arc<RunRecord>>,
}

impl OwnedRuns {
    pub fn new(mut runs: Vec<Arc<RunRecord>>) -> Self {
        runs.sort_by(|a, b| a.age_order().cmp(&b.age_order()));
        OwnedRuns { runs }
    }

    pub fn all(&self) -> &[Arc<RunRecord>] {
        &self.runs
    }

    /// Runs still going whose cancellation was not asked for. More than one means someone
    /// else created runs under our label; the controller then starts none.
    pub fn active(&self) -> Vec<&RunRecord> {
        self.runs
            .iter()
            .map(Arc::as_ref)
            .filter(|r| r.result == RunResult::Running && !r.cancel_requested)
            .collect()
    }

    pub fn newest(&self) -> Option<&RunRecord> {
        self.runs.last().map(Arc::as_ref)
    }

    pub fn newest_successful(&self) -> Option<&RunRecord> {
        self.runs
            .iter()
            .rev()
            .map(Arc::as_ref)
            .find(|r| r.result == RunResult::Succeeded)
    }

    /// Names of finished runs beyond the history limits, oldest first. Never an active run,
    /// never the newest successful one (even with a limit of 0: it is the last known good).
    pub fn to_collect(&self, keep_succeeded: usize, keep_failed: usize) -> Vec<String> {
        let newest_ok = self.newest_successful().map(|r| r.name.as_str());
        let mut succeeded: Vec<&RunRecord> = Vec::new();
        let mut failed: Vec<&RunRecord> = Vec::new();
        for run in self.runs.iter().rev().map(Arc::as_ref) {
            match run.result {
                RunResult::Succeeded => succeeded.push(run),
                RunResult::Failed | RunResult::Cancelled => failed.push(run),
                RunResult::Running => {}
            }
        }
        let mut doomed: Vec<&RunRecord> = succeeded
            .into_iter()
            .skip(keep_succeeded)
            .chain(failed.into_iter().skip(keep_failed))
            .filter(|r| Some(r.name.as_str()) != newest_ok)
            .collect();
        doomed.sort_by(|a, b| a.age_order().cmp(&b.age_order()));
        doomed.into_iter().map(|r| r.name.clone()).collect()
    }
}

/// A run as recorded in ModelSync status.
pub fn summary(run: &RunRecord) -> RunSummary {
    RunSummary {
        name: run.name.clone(),
        start_time: run.start_time,
        completion_time: run.completion_time,
        result: run.result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use modelsync_api::pipelinerun::{PipelineRunSpec, PipelineRunStatus, RunCondition};

    fn pipelinerun(name: &str, age_secs: i64, state: Option<(&str, &str)>) -> PipelineRun {
        let mut r = PipelineRun::new(name, PipelineRunSpec::default());
        let t = k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 - age_secs).unwrap();
        r.metadata.creation_timestamp = Some(Time(t));
        r.status = state.map(|(status, reason)| PipelineRunStatus {
            conditions: vec![RunCondition {
                type_: "Succeeded".into(),
                status: status.into(),
                reason: reason.into(),
                message: String::new(),
            }],
            ..Default::default()
        });
        r
    }

    fn run(name: &str, age_secs: i64, state: Option<(&str, &str)>) -> Arc<RunRecord> {
        Arc::new(RunRecord::from(&pipelinerun(name, age_secs, state)))
    }

    const OK: Option<(&str, &str)> = Some(("True", "Succeeded"));
    const FAIL: Option<(&str, &str)> = Some(("False", "Failed"));
    const RUNNING: Option<(&str, &str)> = Some(("Unknown", "Running"));

    #[test]
    fn active_until_succeeded_is_true_or_false() {
        let runs = OwnedRuns::new(vec![
            run("new", 10, None),
            run("running", 20, RUNNING),
            run("done", 30, OK),
            run("failed", 40, FAIL),
        ]);
        let active: Vec<_> = runs.active().iter().map(|r| r.name.clone()).collect();
        assert_eq!(active, ["running", "new"]);
        assert_eq!(runs.newest().unwrap().name, "new");
        assert_eq!(runs.newest_successful().unwrap().name, "done");
    }

    #[test]
    fn cancelled_runs_count_as_failed_and_cancel_requests_as_not_active() {
        let mut r = pipelinerun("c", 5, RUNNING);
        r.spec.status = Some("Cancelled".into());
        let runs = OwnedRuns::new(vec![
            Arc::new(RunRecord::from(&r)),
            run("x", 9, Some(("False", "Cancelled"))),
        ]);
        assert!(runs.active().is_empty());
        assert_eq!(runs.all()[0].result, RunResult::Cancelled);
    }

    #[test]
    fn gc_keeps_limits_oldest_go_first() {
        let runs = OwnedRuns::new(vec![
            run("s1", 100, OK),
            run("s2", 90, OK),
            run("f1", 85, FAIL),
            run("s3", 80, OK),
            run("f2", 75, FAIL),
            run("s4", 70, OK),
            run("active", 10, RUNNING),
        ]);
        assert_eq!(runs.to_collect(2, 1), ["s1", "s2", "f1"]);
        assert_eq!(runs.to_collect(10, 10), Vec::<String>::new());
    }

    /// Two runs decided 300 ms apart within one second of `creationTimestamp`, the newer with
    /// the name that sorts first.
    fn same_second(older: &str, newer: &str) -> Vec<Arc<RunRecord>> {
        [
            (older, "2027-01-15T08:00:00.400000Z"),
            (newer, "2027-01-15T08:00:00.700000Z"),
        ]
        .into_iter()
        .map(|(name, decided)| {
            let mut r = pipelinerun(name, 0, OK);
            r.annotations_mut()
                .insert(ANNOTATION_DECIDED_AT.into(), decided.into());
            Arc::new(RunRecord::from(&r))
        })
        .collect()
    }

    #[test]
    fn runs_of_one_second_are_ordered_by_decision_time_not_name() {
        let runs = OwnedRuns::new(same_second("zz-older", "aa-newer"));
        assert_eq!(runs.all()[0].created, runs.all()[1].created);
        assert_eq!(runs.newest().unwrap().name, "aa-newer");
        assert_eq!(runs.newest_successful().unwrap().name, "aa-newer");
        assert_eq!(runs.to_collect(0, 0), ["zz-older"]);
        let mut both = same_second("zz-2", "aa-3");
        both.extend(same_second("zz-0", "aa-1").into_iter().map(|r| {
            let mut r = (*r).clone();
            r.decided_at = r
                .decided_at
                .map(|t| t - chrono::Duration::milliseconds(350));
            Arc::new(r)
        }));
        let order: Vec<_> = OwnedRuns::new(both)
            .all()
            .iter()
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(order, ["zz-0", "aa-1", "zz-2", "aa-3"]);
    }

    #[test]
    fn runs_without_a_decision_time_fall_back_to_creation() {
        let mut decided = (*run("decided", 50, OK)).clone();
        decided.decided_at = decided.created;
        let by_hand = run("by-hand", 5, OK);
        assert_eq!(by_hand.decided_at, None);
        let runs = OwnedRuns::new(vec![by_hand, Arc::new(decided)]);
        assert_eq!(runs.newest().unwrap().name, "by-hand");
    }

    #[test]
    fn gc_never_takes_the_newest_success_or_an_active_run() {
        let runs = OwnedRuns::new(vec![
            run("s1", 100, OK),
            run("s2", 90, OK),
            run("f1", 80, FAIL),
            run("active", 10, RUNNING),
        ]);
        assert_eq!(runs.to_collect(0, 0), ["s1", "f1"]);
    }
}
