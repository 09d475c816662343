//! A ModelSync's runs: which are active, which finished, which to garbage-collect. Pure.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use modelsync_api::PipelineRun;
use modelsync_api::modelsync::{RunResult, RunSummary};

/// The runs one ModelSync owns, oldest first.
#[derive(Clone, Debug, Default)]
pub struct OwnedRuns {
    runs: Vec<Arc<PipelineRun>>,
}

fn created(run: &PipelineRun) -> Option<DateTime<Utc>> {
    run.metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond() as u32))
}

impl OwnedRuns {
    pub fn new(mut runs: Vec<Arc<PipelineRun>>) -> Self {
        // Runs created in the same second are ordered by name, which is at least stable.
        runs.sort_by(|a, b| {
            created(a)
                .cmp(&created(b))
                .then_with(|| a.name_any().cmp(&b.name_any()))
        });
        OwnedRuns { runs }
    }

    pub fn all(&self) -> &[Arc<PipelineRun>] {
        &self.runs
    }

    /// Runs still going whose cancellation was not asked for. More than one means someone
    /// else created runs under our label; the controller then starts none.
    pub fn active(&self) -> Vec<&PipelineRun> {
        self.runs
            .iter()
            .map(Arc::as_ref)
            .filter(|r| r.result() == RunResult::Running && !r.cancel_requested())
            .collect()
    }

    pub fn newest(&self) -> Option<&PipelineRun> {
        self.runs.last().map(Arc::as_ref)
    }

    pub fn newest_successful(&self) -> Option<&PipelineRun> {
        self.runs
            .iter()
            .rev()
            .map(Arc::as_ref)
            .find(|r| r.result() == RunResult::Succeeded)
    }

    /// Names of finished runs beyond the history limits, oldest first. Never an active run,
    /// never the newest successful one (even with a limit of 0: it is the last known good).
    pub fn to_collect(&self, keep_succeeded: usize, keep_failed: usize) -> Vec<String> {
        let newest_ok = self.newest_successful().map(|r| r.name_any());
        let mut succeeded: Vec<&PipelineRun> = Vec::new();
        let mut failed: Vec<&PipelineRun> = Vec::new();
        for run in self.runs.iter().rev().map(Arc::as_ref) {
            match run.result() {
                RunResult::Succeeded => succeeded.push(run),
                RunResult::Failed | RunResult::Cancelled => failed.push(run),
                RunResult::Running => {}
            }
        }
        let mut doomed: Vec<&PipelineRun> = succeeded
            .into_iter()
            .skip(keep_succeeded)
            .chain(failed.into_iter().skip(keep_failed))
            .filter(|r| Some(r.name_any()) != newest_ok)
            .collect();
        doomed.sort_by_key(|r| created(r));
        doomed.into_iter().map(|r| r.name_any()).collect()
    }
}

/// A run as recorded in ModelSync status.
pub fn summary(run: &PipelineRun) -> RunSummary {
    let status = run.status.as_ref();
    RunSummary {
        name: run.name_any(),
        start_time: status.and_then(|s| s.start_time),
        completion_time: status.and_then(|s| s.completion_time),
        result: run.result(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use modelsync_api::pipelinerun::{PipelineRunSpec, PipelineRunStatus, RunCondition};

    fn run(name: &str, age_secs: i64, state: Option<(&str, &str)>) -> Arc<PipelineRun> {
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
        Arc::new(r)
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
        let active: Vec<_> = runs.active().iter().map(|r| r.name_any()).collect();
        assert_eq!(active, ["running", "new"]);
        assert_eq!(runs.newest().unwrap().name_any(), "new");
        assert_eq!(runs.newest_successful().unwrap().name_any(), "done");
    }

    #[test]
    fn cancelled_runs_count_as_failed_and_cancel_requests_as_not_active() {
        let mut r = (*run("c", 5, RUNNING)).clone();
        r.spec.status = Some("Cancelled".into());
        let runs = OwnedRuns::new(vec![Arc::new(r), run("x", 9, Some(("False", "Cancelled")))]);
        assert!(runs.active().is_empty());
        assert_eq!(runs.all()[0].result(), RunResult::Cancelled);
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
