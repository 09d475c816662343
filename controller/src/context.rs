//! What every pass shares: the API client, the run index, the lambda client, the event
//! recorder, the metrics and the schedule.

use std::sync::Arc;

use kube::runtime::events::Recorder;
use modelsync_api::lambda_client::LambdaClient;

use crate::metrics::Metrics;
use crate::run_index::RunIndex;
use crate::schedule::Schedule;

/// Everything a pass needs, shared by all passes.
pub struct Context {
    pub client: kube::Client,
    pub runs: RunIndex,
    pub lambda: LambdaClient,
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
    ) -> Self {
        Context {
            client,
            runs,
            lambda: LambdaClient::new(concat!("modelsync-controller/", env!("CARGO_PKG_VERSION"))),
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
