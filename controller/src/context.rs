//! What every pass shares: the API client, the run index, the lambda clients, the event
//! recorder, the metrics, the schedule and the notification queue.

use std::sync::Arc;

use kube::runtime::events::Recorder;
use modelsync_api::egress::EgressRules;

use crate::lambda_clients::LambdaClients;
use crate::metrics::Metrics;
use crate::notify::Notifier;
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
    pub notifier: Notifier,
}

impl Context {
    pub fn new(
        client: kube::Client,
        runs: RunIndex,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        egress: EgressRules,
        notifier: Notifier,
    ) -> Self {
        Context {
            lambdas: LambdaClients::new(client.clone(), egress),
            client,
            runs,
            recorder,
            metrics,
            schedule: Schedule::default(),
            notifier,
        }
    }

    /// Forgets a deleted ModelSync.
    pub fn forget(&self, uid: &str) {
        self.schedule.forget(uid);
        self.notifier.forget(uid);
    }
}
