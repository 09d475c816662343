//! PipelineRuns carrying the `modelsync.dev/name` label, kept as [`RunRecord`]s and indexed by
//! (namespace, ModelSync), fed by one watch. A reconcile reads one ModelSync's runs without scanning every run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::watcher::Event;
use modelsync_api::PipelineRun;
use modelsync_api::modelsync::LABEL_NAME;

use crate::runs::RunRecord;

type Key = (String, String);
type Runs = HashMap<Key, HashMap<String, Arc<RunRecord>>>;

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

fn insert(runs: &mut Runs, run: &PipelineRun) {
    if let Some(k) = key(run) {
        let record = RunRecord::from(run);
        runs.entry(k)
            .or_default()
            .insert(record.name.clone(), Arc::new(record));
    }
}

impl RunIndex {
    /// True once the first full list has been applied: before that, "no runs" means "not
    /// known yet", and a reconcile must not act on it.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Applies one watch event.
    pub fn apply(&self, event: &Event<PipelineRun>) {
        let mut inner = self.inner.lock().expect("run index lock");
        match event {
            Event::Apply(run) => insert(&mut inner.runs, run),
            Event::Delete(run) => {
                if let Some(k) = key(run) {
                    let now_empty = inner.runs.get_mut(&k).is_some_and(|m| {
                        m.remove(&run.name_any());
                        m.is_empty()
                    });
                    if now_empty {
                        inner.runs.remove(&k);
                    }
                }
            }
            Event::Init => inner.relist = Some(Runs::new()),
            Event::InitApply(run) => match inner.relist.as_mut() {
                Some(relist) => insert(relist, run),
                None => insert(&mut inner.runs, run),
            },
            Event::InitDone => {
                if let Some(relist) = inner.relist.take() {
                    inner.runs = relist;
                }
                self.ready.store(true, Ordering::Release);
            }
        }
    }

    /// The runs labelled for `namespace/name` (ownership is checked by the caller).
    pub fn runs_of(&self, namespace: &str, name: &str) -> Vec<Arc<RunRecord>> {
        let inner = self.inner.lock().expect("run index lock");
        inner
            .runs
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of runs indexed, for metrics.
    pub fn len(&self) -> usize {
        let inner = self.inner.lock().expect("run index lock");
        inner.runs.values().map(HashMap::len).sum()
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
}
