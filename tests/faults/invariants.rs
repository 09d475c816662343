//! The invariant checker: a watch on the namespace's PipelineRuns, straight to the API server
//! (never through a fault), that records after every event which runs are active per
//! ModelSync. A watch delivers every state the API server stored, in order, so two active
//! runs at any moment show up here. It also remembers every run ever seen, by uid, with the
//! model it was started for, to tell whether each decision led to exactly one run.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use modelsync_api::PipelineRun;
use modelsync_api::modelsync::{ANNOTATION_PARAMETERS, LABEL_NAME, RunResult};
use tokio::task::JoinHandle;

/// A run as the checker saw it last.
#[derive(Clone, Debug)]
pub struct RunSeen {
    pub name: String,
    pub modelsync: String,
    /// The `model-id` param it was started with.
    pub model: String,
    pub first_seen: Instant,
    pub result: RunResult,
    pub cancel_requested: bool,
    pub deleted: bool,
    /// Tekton (the stand-in) has started it.
    pub started: bool,
    /// When the checker first saw it ended.
    pub ended_seen: Option<Instant>,
}

impl RunSeen {
    /// Going and not asked to stop: what "active" means to the controller and its docs.
    pub fn active(&self) -> bool {
        !self.deleted && self.result == RunResult::Running && !self.cancel_requested
    }
}

#[derive(Default)]
struct Seen {
    /// By uid: a run deleted and created again under the same name is a second run.
    runs: HashMap<String, RunSeen>,
    /// Uids listed since the watch (re)started its list, until the list is done.
    relisting: Option<HashSet<String>>,
    /// Every moment a ModelSync had more than one active run.
    duplicates: Vec<String>,
    events: u64,
}

impl Seen {
    fn apply(&mut self, run: &PipelineRun, deleted: bool) -> Option<String> {
        let uid = run.uid()?;
        let model = run
            .annotations()
            .get(ANNOTATION_PARAMETERS)
            .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
            .and_then(|p| p["model-id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let modelsync = run.labels().get(LABEL_NAME).cloned().unwrap_or_default();
        let entry = self.runs.entry(uid.clone()).or_insert_with(|| RunSeen {
            name: run.name_any(),
            modelsync: modelsync.clone(),
            model,
            first_seen: Instant::now(),
            result: RunResult::Running,
            cancel_requested: false,
            deleted: false,
            started: false,
            ended_seen: None,
        });
        entry.result = run.result();
        if entry.result != RunResult::Running && entry.ended_seen.is_none() {
            entry.ended_seen = Some(Instant::now());
        }
        entry.cancel_requested = run.cancel_requested();
        entry.deleted = deleted;
        entry.started = run.status.as_ref().is_some_and(|s| s.start_time.is_some());
        if let Some(listed) = self.relisting.as_mut() {
            listed.insert(uid);
        }
        Some(modelsync)
    }

    /// Records a duplicate if `modelsync` has more than one active run now.
    fn check(&mut self, modelsync: &str) {
        let active: Vec<&str> = self
            .runs
            .values()
            .filter(|r| r.modelsync == modelsync && r.active())
            .map(|r| r.name.as_str())
            .collect();
        if active.len() > 1 {
            let seen = format!(
                "event {}: {modelsync} had {} active runs: {}",
                self.events,
                active.len(),
                active.join(", ")
            );
            self.duplicates.push(seen);
        }
    }

    fn on(&mut self, event: Event<PipelineRun>) {
        self.events += 1;
        match event {
            Event::Apply(run) => {
                if let Some(ms) = self.apply(&run, false) {
                    self.check(&ms);
                }
            }
            Event::Delete(run) => {
                self.apply(&run, true);
            }
            Event::Init => self.relisting = Some(HashSet::new()),
            // States inside a list are checked once it is complete: halfway, a run since
            // deleted and its successor could both look active.
            Event::InitApply(run) => {
                self.apply(&run, false);
            }
            Event::InitDone => {
                if let Some(listed) = self.relisting.take() {
                    for (uid, run) in &mut self.runs {
                        if !listed.contains(uid) {
                            run.deleted = true;
                        }
                    }
                }
                let names: HashSet<String> =
                    self.runs.values().map(|r| r.modelsync.clone()).collect();
                for ms in names {
                    self.check(&ms);
                }
            }
        }
    }
}

/// The running checker; cheap to clone. The watch stops when the last clone goes.
#[derive(Clone)]
pub struct Checker {
    seen: Arc<Mutex<Seen>>,
    _watch: Arc<AbortOnDrop>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Checker {
    pub fn start(client: &kube::Client, ns: &str) -> Checker {
        let api: Api<PipelineRun> = Api::namespaced(client.clone(), ns);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            let mut events =
                watcher::watcher(api, watcher::Config::default().labels(LABEL_NAME)).boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => sink.lock().expect("checker lock").on(event),
                    // The API server is down: the watcher resumes where it was when polled again.
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        Checker {
            seen,
            _watch: Arc::new(AbortOnDrop(task)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().expect("checker lock")
    }

    /// Every run seen so far, deleted ones included.
    pub fn runs(&self) -> Vec<RunSeen> {
        self.lock().runs.values().cloned().collect()
    }

    /// Runs started for `model`, ever.
    pub fn runs_for(&self, model: &str) -> Vec<RunSeen> {
        self.lock()
            .runs
            .values()
            .filter(|r| r.model == model)
            .cloned()
            .collect()
    }

    /// When a run for `model` was first seen, if one was.
    pub fn first_seen(&self, model: &str) -> Option<Instant> {
        self.lock()
            .runs
            .values()
            .filter(|r| r.model == model)
            .map(|r| r.first_seen)
            .min()
    }

    pub fn active_of(&self, modelsync: &str) -> Vec<RunSeen> {
        self.lock()
            .runs
            .values()
            .filter(|r| r.modelsync == modelsync && r.active())
            .cloned()
            .collect()
    }

    /// Every moment a ModelSync had two active runs or more (must stay empty).
    pub fn duplicates(&self) -> Vec<String> {
        self.lock().duplicates.clone()
    }

    pub fn events(&self) -> u64 {
        self.lock().events
    }
}
