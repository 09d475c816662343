//! Tekton's controller, played: each new run is marked Running, and after a run time of 1.5 to
//! 2.5 s it has done its work (the lambda's pin moves to its model) and is marked Succeeded;
//! a run asked to cancel is marked Cancelled. Like Tekton's own controller it keeps what it
//! knows in memory and writes status when it can: a run that ends while the API server is
//! unreachable has still ended (its model is in place), and its status is written, with the
//! real completion time, once the API server answers again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use modelsync_api::PipelineRun;
use modelsync_api::modelsync::{ANNOTATION_PARAMETERS, LABEL_NAME, RunResult};
use modelsync_testenv::tekton::{self, RunEnd};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::lambda::Lambda;

struct Tracked {
    modelsync: String,
    model: String,
    /// Wall-clock start as written to status, once written.
    started: Option<String>,
    ends_at: Instant,
    /// How it ended and when (RFC 3339), once it has.
    ended: Option<(RunEnd, String)>,
}

/// The stand-in's loop; dropping it stops it.
pub struct TektonPlay(JoinHandle<()>);

impl Drop for TektonPlay {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl TektonPlay {
    pub fn start(client: kube::Client, ns: String, lambda: Lambda) -> TektonPlay {
        TektonPlay(tokio::spawn(async move {
            let api: Api<PipelineRun> = Api::namespaced(client.clone(), &ns);
            let mut tracked: HashMap<String, Tracked> = HashMap::new();
            loop {
                if let Ok(list) = api.list(&ListParams::default().labels(LABEL_NAME)).await {
                    let listed: Vec<String> = list.items.iter().map(|r| r.name_any()).collect();
                    // Runs deleted (collected) are forgotten.
                    tracked.retain(|name, _| listed.contains(name));
                    for run in &list.items {
                        notice(&mut tracked, run);
                    }
                }
                for (name, t) in &mut tracked {
                    step(&client, &ns, &lambda, name, t).await;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }))
    }
}

/// Takes in what the API server says about a run.
fn notice(tracked: &mut HashMap<String, Tracked>, run: &PipelineRun) {
    let t = tracked.entry(run.name_any()).or_insert_with(|| Tracked {
        modelsync: run.labels().get(LABEL_NAME).cloned().unwrap_or_default(),
        model: run
            .annotations()
            .get(ANNOTATION_PARAMETERS)
            .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
            .and_then(|p| p["model-id"].as_str().map(str::to_owned))
            .unwrap_or_default(),
        started: None,
        ends_at: Instant::now() + Duration::from_millis(rand::random_range(1500..2500)),
        ended: None,
    });
    if run.result() != RunResult::Running {
        // Written already (by this loop, before a restart of the API server lost the answer).
        t.ended.get_or_insert((RunEnd::Succeeded, String::new()));
        t.started.get_or_insert_with(String::new);
        return;
    }
    if t.started.is_none()
        && let Some(start) = run.status.as_ref().and_then(|s| s.start_time)
    {
        t.started = Some(start.to_rfc3339_opts(SecondsFormat::Millis, true));
    }
    if run.cancel_requested() && t.ended.is_none() {
        t.ended = Some((RunEnd::Cancelled, now()));
    }
}

/// Moves one run along: start it, end it when its time is up, write what is not written yet.
async fn step(client: &kube::Client, ns: &str, lambda: &Lambda, name: &str, t: &mut Tracked) {
    if t.started.is_none() {
        if tekton::start(client, ns, name).await.is_ok() {
            t.started = Some(now());
        }
        return;
    }
    if t.ended.is_none() && Instant::now() >= t.ends_at {
        // The pipeline's work is done the moment it ends, reachable API server or not.
        lambda.pin(&t.modelsync, &t.model);
        t.ended = Some((RunEnd::Succeeded, now()));
    }
    let Some((outcome, end)) = &t.ended else {
        return;
    };
    if end.is_empty() {
        return; // already written
    }
    let start = t.started.clone().unwrap_or_else(|| end.clone());
    let status = tekton::ended(*outcome, &start, end);
    let written = tekton::pipelineruns(client, ns)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await;
    match written {
        Ok(_) => t.ended = Some((*outcome, String::new())),
        Err(kube::Error::Api(s)) if s.code == 404 => t.ended = Some((*outcome, String::new())),
        Err(_) => {} // tried again next round
    }
}
