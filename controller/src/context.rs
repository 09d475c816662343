//! What every pass shares: the API client, the run index, the lambda clients, the event
//! recorder, the metrics and the schedule.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use kube::runtime::events::Recorder;
use modelsync_api::egress::EgressRules;

use crate::lambda_clients::LambdaClients;
use crate::metrics::Metrics;
use crate::run_index::RunIndex;
use crate::schedule::Schedule;
use crate::shard::Shard;

/// Everything a pass needs, shared by all passes.
pub struct Context {
    pub client: kube::Client,
    pub runs: RunIndex,
    pub lambdas: LambdaClients,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub schedule: Schedule,
    pub shard: Shard,
    /// ModelSyncs (by uid) whose runs were looked for outside the index and all found in it
    /// (see [`crate::shard`]): not looked for again by this process.
    runs_complete: Mutex<HashSet<String>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        runs: RunIndex,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        egress: EgressRules,
        shard: Shard,
    ) -> Self {
        Context {
            lambdas: LambdaClients::new(client.clone(), egress),
            client,
            runs,
            recorder,
            metrics,
            schedule: Schedule::default(),
            shard,
            runs_complete: Mutex::default(),
        }
    }

    /// Forgets a ModelSync that was deleted or moved to another shard: should it come back,
    /// its runs are looked for again.
    pub fn forget(&self, uid: &str) {
        self.schedule.forget(uid);
        self.runs_complete
            .lock()
            .expect("runs_complete lock")
            .remove(uid);
    }

    /// Whether the runs of ModelSync `uid` were already found complete in the index.
    pub fn runs_known_complete(&self, uid: &str) -> bool {
        self.runs_complete
            .lock()
            .expect("runs_complete lock")
            .contains(uid)
    }

    pub fn mark_runs_complete(&self, uid: &str) {
        self.runs_complete
            .lock()
            .expect("runs_complete lock")
            .insert(uid.to_owned());
    }
}
