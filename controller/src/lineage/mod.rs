//! OpenLineage events for runs: START when a run appears, COMPLETE / FAIL / ABORT when it
//! ends, both seen through the PipelineRun watch. [`event`] builds them, [`ledger`] keeps each
//! to once per controller life, [`delivery`] sends them without ever holding up a pass.

pub mod delivery;
pub mod event;
pub mod ledger;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::watcher::Event;
use modelsync_api::PipelineRun;
use tracing::warn;

use crate::metrics::Metrics;
use delivery::{Backoff, Endpoint, Sender};
use event::Transition;
use ledger::Ledger;

/// Flags enabling lineage events, named as OpenLineage's own clients name their settings.
#[derive(clap::Args, Clone)]
pub struct LineageArgs {
    /// OpenLineage server (e.g. Marquez) to send run events to, at <URL>/api/v1/lineage.
    /// Unset: no events.
    #[arg(
        id = "openlineage_url",
        long = "openlineage-url",
        env = "OPENLINEAGE_URL"
    )]
    pub url: Option<String>,
    /// Sent as `Authorization: Bearer <key>`.
    #[arg(
        id = "openlineage_api_key",
        long = "openlineage-api-key",
        env = "OPENLINEAGE_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// The namespace of the jobs (one job per ModelSync, named <namespace>/<name>).
    #[arg(
        id = "openlineage_namespace",
        long = "openlineage-namespace",
        env = "OPENLINEAGE_NAMESPACE",
        default_value = "modelsync"
    )]
    pub namespace: String,
}

// By hand, so the key never reaches a log line that prints the flags.
impl std::fmt::Debug for LineageArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineageArgs")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// The delays between attempts to send one event.
const BACKOFF: Backoff = Backoff {
    first: Duration::from_secs(1),
    max: Duration::from_secs(30),
};

/// Turns run watch events into lineage events.
pub struct Lineage {
    ledger: Mutex<Ledger>,
    sender: Sender,
    job_namespace: String,
}

impl Lineage {
    /// Starts sending when `--openlineage-url` is set; `None` otherwise.
    pub fn start(args: &LineageArgs, metrics: Arc<Metrics>) -> Option<Arc<Self>> {
        let url = args.url.as_deref()?.trim().trim_end_matches('/');
        let endpoint = Endpoint {
            url: format!("{url}/api/v1/lineage"),
            api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        };
        Some(Arc::new(Lineage {
            ledger: Mutex::default(),
            sender: delivery::spawn(endpoint, BACKOFF, metrics),
            job_namespace: args.namespace.clone(),
        }))
    }

    /// Queues what one watch event makes due. Never waits on the network.
    pub fn observe(&self, event: &Event<PipelineRun>) {
        match event {
            Event::Apply(run) | Event::InitApply(run) => self.offer_due(run),
            Event::Delete(run) => {
                // A run deleted before its end was seen still had one: report it, then forget.
                self.offer_due(run);
                if let Some(uid) = run.uid() {
                    self.ledger().forget(&uid);
                }
            }
            Event::Init => self.ledger().relist_started(),
            Event::InitDone => self.ledger().relist_done(),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("lineage ledger lock")
    }

    fn offer_due(&self, run: &PipelineRun) {
        let Some(uid) = run.uid() else { return };
        let due = self.ledger().due(&uid, Transition::end_of(run.result()));
        for transition in due {
            let event =
                match event::run_event(run, transition, &self.job_namespace, chrono::Utc::now()) {
                    Ok(e) => e,
                    Err(e) => {
                        warn!(error = %e, "no lineage event for this run");
                        return;
                    }
                };
            if !self.sender.offer(event) {
                return;
            }
            self.ledger().queued(&uid, transition);
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: crate::ControllerArgs,
    }

    #[test]
    fn lineage_flags_sit_beside_the_controllers_own() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "controller",
            "--namespace",
            "ml",
            "--openlineage-url",
            "http://marquez:5000/",
            "--openlineage-api-key",
            "secret",
        ])
        .unwrap();
        assert_eq!(cli.args.namespace.as_deref(), Some("ml"));
        assert_eq!(
            cli.args.lineage.url.as_deref(),
            Some("http://marquez:5000/")
        );
        assert_eq!(cli.args.lineage.namespace, "modelsync");
        assert!(!format!("{:?}", cli.args).contains("secret"));
    }
}
