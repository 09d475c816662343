//! What every pass shares: the API client, the run index, the lambda clients, the event
//! recorder, the metrics and the schedule.

use std::sync::Arc;

use kube::runtime::events::Recorder;
use modelsync_api::egress::EgressRules;

use crate::lambda_clients::LambdaClients;
use crate::metrics::Metrics;
use crate::run_index::RunIndex;
use crate::schedule::Schedule;

/// Everything a pass needs, shared by all passes.
pub struct Context {
    pub client: kube::Client,
    pub runs: RunIndex,
    pub lambdas: LambdaClients,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub schedule: Schedule,
}

impl Context {
    pub fn new(
        client: kube::Client,
        runs: RunIndex,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        egress: EgressRules,
    ) -> Self {
        Context {
            lambdas: LambdaClients::new(client.clone(), egress),
            client,
            runs,
            recorder,
            metrics,
            schedule: Schedule::default(),
        }
    }

    /// Forgets a deleted ModelSync.
    pub fn forget(&self, uid: &str) {
        self.schedule.forget(uid);
    }
}
