//! PipelineRuns carrying the `modelsync.dev/name` label, kept as [`RunRecord`]s and indexed by
//! (namespace, ModelSync), fed by one watch. A reconcile reads one ModelSync's runs without scanning every run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::watcher::Event;
use modelsync_api::PipelineRun;
use modelsync_api::modelsync::{LABEL_NAME, RunResult};

use crate::runs::RunRecord;

type Key = (String, String);

/// Runs by owner, and how many in all: the count is read on every pass (a metric), and
/// summing a 100,000-owner map there made each poll round quadratic.
#[derive(Default)]
struct Runs {
    by_owner: HashMap<Key, HashMap<String, Arc<RunRecord>>>,
    count: usize,
}

impl Runs {
    fn get(&self, k: &Key, name: &str) -> Option<&Arc<RunRecord>> {
        self.by_owner.get(k).and_then(|m| m.get(name))
    }

    fn put(&mut self, k: Key, record: RunRecord) {
        let runs = self.by_owner.entry(k).or_default();
        if runs.insert(record.name.clone(), Arc::new(record)).is_none() {
            self.count += 1;
        }
    }

    fn remove(&mut self, k: &Key, name: &str) {
        let Some(runs) = self.by_owner.get_mut(k) else {
            return;
        };
        if runs.remove(name).is_some() {
            self.count -= 1;
        }
        if runs.is_empty() {
            self.by_owner.remove(k);
        }
    }
}

#[derive(Default)]
struct Inner {
    runs: Runs,
    /// A re-list in progress: filled by InitApply, swapped in at InitDone.
    relist: Option<Runs>,
}

/// Shared, cheap to clone.
#[derive(Clone, Default)]
pub struct RunIndex {
    inner: Arc<Mutex<Inner>>,
    ready: Arc<AtomicBool>,
}

fn key(run: &PipelineRun) -> Option<Key> {
    Some((run.namespace()?, run.labels().get(LABEL_NAME)?.clone()))
}

/// A run the index saw go from running to finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    pub namespace: String,
    /// The ModelSync the run is labelled for.
    pub modelsync: String,
    pub result: RunResult,
}

/// The result `next` finished with, if `prev` is the same run still running. A run first seen
/// finished (the first list after a start) is not counted: it may have finished long ago, and
/// counting it again at every restart would read as a burst of results.
pub fn finished(prev: Option<&RunRecord>, next: &RunRecord) -> Option<RunResult> {
    match (prev.map(|p| p.result), next.result) {
        (Some(RunResult::Running), RunResult::Running) => None,
        (Some(RunResult::Running), result) => Some(result),
        _ => None,
    }
}

/// Inserts `run` into `runs`; `known` holds what was known of it before (the same map, or the
/// index a relist is about to replace).
fn insert(runs: &mut Runs, known: Option<&Runs>, run: &PipelineRun) -> Option<Finished> {
    let k = key(run)?;
    let record = RunRecord::from(run);
    let prev = known.unwrap_or(runs).get(&k, &record.name).cloned();
    let result = finished(prev.as_deref(), &record);
    runs.put(k.clone(), record);
    result.map(|result| Finished {
        namespace: k.0,
        modelsync: k.1,
        result,
    })
}

impl RunIndex {
    /// True once the first full list has been applied: before that, "no runs" means "not
    /// known yet", and a reconcile must not act on it.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Applies one watch event; says so when it shows a run finishing.
    pub fn apply(&self, event: &Event<PipelineRun>) -> Option<Finished> {
        let mut inner = self.inner.lock().expect("run index lock");
        let inner = &mut *inner;
        match event {
            Event::Apply(run) => return insert(&mut inner.runs, None, run),
            Event::Delete(run) => {
                if let Some(k) = key(run) {
                    inner.runs.remove(&k, &run.name_any());
                }
            }
            Event::Init => inner.relist = Some(Runs::default()),
            // Runs that finished during a watch gap are compared with the index being replaced.
            Event::InitApply(run) => {
                return match inner.relist.as_mut() {
                    Some(relist) => insert(relist, Some(&inner.runs), run),
                    None => insert(&mut inner.runs, None, run),
                };
            }
            Event::InitDone => {
                if let Some(relist) = inner.relist.take() {
                    inner.runs = relist;
                }
                self.ready.store(true, Ordering::Release);
            }
        }
        None
    }

    /// The runs labelled for `namespace/name` (ownership is checked by the caller).
    pub fn runs_of(&self, namespace: &str, name: &str) -> Vec<Arc<RunRecord>> {
        let inner = self.inner.lock().expect("run index lock");
        inner
            .runs
            .by_owner
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of runs indexed, for metrics.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("run index lock").runs.count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelsync_api::pipelinerun::PipelineRunSpec;

    fn run(ns: &str, owner: &str, name: &str) -> PipelineRun {
        let mut r = PipelineRun::new(name, PipelineRunSpec::default());
        r.metadata.namespace = Some(ns.into());
        r.labels_mut().insert(LABEL_NAME.into(), owner.into());
        r
    }

    #[test]
    fn indexes_by_owner_and_follows_relists() {
        let idx = RunIndex::default();
        assert!(!idx.ready());
        idx.apply(&Event::Init);
        idx.apply(&Event::InitApply(run("a", "m", "r1")));
        idx.apply(&Event::InitApply(run("b", "m", "r2")));
        assert!(
            idx.runs_of("a", "m").is_empty(),
            "a relist is applied only when done"
        );
        idx.apply(&Event::InitDone);
        assert!(idx.ready());
        assert_eq!(idx.runs_of("a", "m").len(), 1);
        assert_eq!(idx.runs_of("b", "m").len(), 1);

        idx.apply(&Event::Apply(run("a", "m", "r3")));
        idx.apply(&Event::Delete(run("a", "m", "r1")));
        let names: Vec<_> = idx
            .runs_of("a", "m")
            .iter()
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(names, ["r3"]);

        // A relist after a watch gap replaces everything: r3 vanished meanwhile.
        idx.apply(&Event::Init);
        idx.apply(&Event::InitApply(run("b", "m", "r2")));
        idx.apply(&Event::InitDone);
        assert!(idx.runs_of("a", "m").is_empty());
        assert_eq!(idx.len(), 1);
    }

    #[test]
    fn the_count_follows_updates_deletes_and_relists() {
        let idx = RunIndex::default();
        idx.apply(&Event::Apply(run("a", "m", "r1")));
        idx.apply(&Event::Apply(run("a", "m", "r2")));
        idx.apply(&Event::Apply(run("a", "n", "r3")));
        // An update of a run already held is not another run.
        idx.apply(&Event::Apply(run("a", "m", "r1")));
        assert_eq!(idx.len(), 3);
        // Deleting a run never seen, or twice, leaves the count alone.
        idx.apply(&Event::Delete(run("a", "m", "gone")));
        idx.apply(&Event::Delete(run("a", "n", "r3")));
        idx.apply(&Event::Delete(run("a", "n", "r3")));
        assert_eq!(idx.len(), 2);
        // A relist counts only what it listed, and only once it is done.
        idx.apply(&Event::Init);
        for name in ["r1", "r4", "r5", "r6"] {
            idx.apply(&Event::InitApply(run("b", "m", name)));
        }
        assert_eq!(idx.len(), 2);
        idx.apply(&Event::InitDone);
        assert_eq!(idx.len(), 4);
        assert!(!idx.is_empty());
    }

    fn with_result(mut r: PipelineRun, status: &str) -> PipelineRun {
        let conditions =
            serde_json::json!({"conditions": [{"type": "Succeeded", "status": status}]});
        r.status = Some(serde_json::from_value(conditions).unwrap());
        r
    }

    #[test]
    fn reports_a_run_once_when_it_finishes_even_across_a_relist() {
        let idx = RunIndex::default();
        idx.apply(&Event::Init);
        let old = with_result(run("a", "m", "old"), "False");
        assert_eq!(
            idx.apply(&Event::InitApply(old)),
            None,
            "finished before we looked"
        );
        idx.apply(&Event::InitDone);

        let r1 = run("a", "m", "r1");
        assert_eq!(idx.apply(&Event::Apply(r1.clone())), None, "started");
        assert_eq!(idx.apply(&Event::Apply(r1.clone())), None, "still running");
        let done = idx.apply(&Event::Apply(with_result(r1.clone(), "True")));
        let expected = Finished {
            namespace: "a".into(),
            modelsync: "m".into(),
            result: RunResult::Succeeded,
        };
        assert_eq!(done, Some(expected));
        assert_eq!(
            idx.apply(&Event::Apply(with_result(r1, "True"))),
            None,
            "counted once"
        );

        let r2 = run("a", "m", "r2");
        idx.apply(&Event::Apply(r2.clone()));
        // The watch broke while r2 failed; the relist compares with what was known.
        idx.apply(&Event::Init);
        let failed = idx.apply(&Event::InitApply(with_result(r2, "False")));
        assert_eq!(failed.map(|f| f.result), Some(RunResult::Failed));
        idx.apply(&Event::InitDone);
    }
}
