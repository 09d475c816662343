//! What every pass shares: the API client, the run index, the lambda clients, the event
//! recorder, the metrics, the schedule, the notification queue and the statuses written.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use kube::runtime::events::Recorder;
use modelsync_api::egress::EgressRules;

use crate::lambda_clients::LambdaClients;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::run_index::RunIndex;
use crate::schedule::Schedule;
use crate::shard::Shard;
use crate::written_status::WrittenStatuses;

/// Everything a pass needs, shared by all passes.
pub struct Context {
    pub client: kube::Client,
    pub runs: RunIndex,
    pub lambdas: LambdaClients,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub schedule: Schedule,
    pub shard: Shard,
    /// Per ModelSync (by uid), runs its status names that a look outside the index found
    /// nowhere (deleted by hand; see [`crate::shard`]): not looked for again by this process.
    missing_runs: Mutex<HashMap<String, BTreeSet<String>>>,
    pub notifier: Notifier,
    /// Statuses written that the cache may not show yet.
    pub written: WrittenStatuses,
}

impl Context {
    pub fn new(
        client: kube::Client,
        runs: RunIndex,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        egress: EgressRules,
        shard: Shard,
        notifier: Notifier,
    ) -> Self {
        Context {
            lambdas: LambdaClients::new(client.clone(), egress),
            client,
            runs,
            recorder,
            metrics,
            schedule: Schedule::default(),
            shard,
            missing_runs: Mutex::default(),
            notifier,
            written: WrittenStatuses::default(),
        }
    }

    /// Forgets a ModelSync that was deleted or moved to another shard: should it come back,
    /// its runs are looked for again.
    pub fn forget(&self, uid: &str) {
        self.schedule.forget(uid);
        self.notifier.forget(uid);
        self.written.forget(uid);
        self.missing().remove(uid);
    }

    /// Whether a look already found run `name` of ModelSync `uid` nowhere.
    pub fn run_known_missing(&self, uid: &str, name: &str) -> bool {
        self.missing().get(uid).is_some_and(|m| m.contains(name))
    }

    pub fn mark_runs_missing(&self, uid: &str, names: BTreeSet<String>) {
        self.missing()
            .entry(uid.to_owned())
            .or_default()
            .extend(names);
    }

    fn missing(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeSet<String>>> {
        self.missing_runs.lock().expect("missing_runs lock")
    }
}
