//! API writes per run: every mutating request the controller makes over one run's life
//! (decision → create → running → finished → collected), read from the API server's own
//! `apiserver_request_total` counters by resource, subresource and verb.
//!
//! One ModelSync keeps one successful run (`successfulPipelineRunsHistoryLimit: 1`), so each new
//! run that succeeds collects the one before it: in the steady state every cycle holds exactly
//! one whole run life. The benchmark plays Tekton (two status patches a run: running, then
//! finished); those are its own writes and are subtracted, by count, from the PipelineRun
//! status writes. Leases are left out (leader election is not per run).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::api::{Api, Patch, PatchParams};
use modelsync_api::ModelSync;
use modelsync_testenv::tekton::{self, RunEnd};
use serde_json::json;

use crate::env::{self, FastLambda};

const NS: &str = "bench-writes";
const NAME: &str = "w";
/// Run lives counted; the first two are warm-up (the first has nothing to collect yet).
const CYCLES: usize = 20;
const WARM_UP: usize = 2;
/// Writes the benchmark itself makes per run while playing Tekton.
const PLAYED_STATUS_WRITES: f64 = 2.0;

/// Writes per run, by `resource[/subresource] VERB`.
pub type PerRun = BTreeMap<String, f64>;

/// Mutating requests by `resource[/subresource] VERB`, Leases left out.
fn writes_by_kind(metrics: &str) -> BTreeMap<String, f64> {
    let mut by = BTreeMap::new();
    for line in metrics.lines() {
        let Some(labels) = line
            .strip_prefix("apiserver_request_total{")
            .and_then(|l| l.split_once('}'))
        else {
            continue;
        };
        let (labels, value) = (labels.0, labels.1.trim());
        let label = |key: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let verb = label("verb");
        if !["POST", "PUT", "PATCH", "DELETE", "APPLY"].contains(&verb.as_str()) {
            continue;
        }
        let resource = label("resource");
        if resource == "leases" || resource == "namespaces" {
            continue;
        }
        let sub = label("subresource");
        let key = if sub.is_empty() {
            format!("{resource} {verb}")
        } else {
            format!("{resource}/{sub} {verb}")
        };
        *by.entry(key).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    by
}

/// Waits until `check` holds, or fails naming `what`.
async fn until<F, Fut>(what: &str, check: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await? {
        if Instant::now() > deadline {
            bail!("{what}: not seen within 30s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The names of the ModelSync's runs.
async fn run_names(runs: &Api<kube::api::DynamicObject>) -> Result<Vec<String>> {
    Ok(runs
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect())
}

/// One run life: arm a "yes", await the run, play it running then succeeded, and wait until
/// the controller has recorded the end and collected the run before it.
async fn one_life(
    client: &kube::Client,
    armed: &Arc<Mutex<Option<String>>>,
    k: usize,
    previous: Option<&str>,
) -> Result<String> {
    let runs = tekton::pipelineruns(client, NS);
    let before = run_names(&runs).await?;
    *armed.lock().unwrap() = Some(format!("model-{k}"));
    until("the controller to create a run", || {
        let (runs, before) = (runs.clone(), before.clone());
        async move { Ok(run_names(&runs).await?.iter().any(|n| !before.contains(n))) }
    })
    .await?;
    let run = run_names(&runs)
        .await?
        .into_iter()
        .find(|n| !before.contains(n))
        .context("a new run appeared and vanished")?;
    tekton::start(client, NS, &run).await?;
    // Give the controller the pass a running run causes, if any, before it ends.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tekton::finish(client, NS, &run, RunEnd::Succeeded).await?;
    let modelsyncs: Api<ModelSync> = Api::namespaced(client.clone(), NS);
    until("the controller to record the run's end", || {
        let (modelsyncs, run) = (modelsyncs.clone(), run.clone());
        async move {
            let ms = modelsyncs.get(NAME).await?;
            let status = ms.status.unwrap_or_default();
            Ok(status.active.is_empty()
                && status.last_successful_run.map(|r| r.name) == Some(run.clone()))
        }
    })
    .await?;
    if let Some(previous) = previous {
        until("the controller to collect the run before", || {
            let runs = runs.clone();
            async move { Ok(!run_names(&runs).await?.iter().any(|n| n == previous)) }
        })
        .await?;
    }
    // Whatever the end causes after status (events) has landed by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(run)
}

/// Measures writes per run life over `CYCLES` lives.
pub async fn per_run(opts: &crate::Opts) -> Result<PerRun> {
    let (cp, client) = env::control_plane().await?;
    let logs = tempfile::tempdir()?;
    modelsync_testenv::create_namespace(&client, NS).await?;
    let armed: Arc<Mutex<Option<String>>> = Arc::default();
    let lambda = {
        let armed = armed.clone();
        FastLambda::start(Arc::new(move |_name: &str| {
            match armed.lock().unwrap().take() {
                Some(model) => {
                    json!({"needsSync": true, "parameters": {"model": model}, "reason": "bench"})
                }
                None => json!({"needsSync": false}),
            }
        }))
        .await?
    };
    let _controller = env::start_controller(&cp, &opts.modelsync, NS, logs.path()).await?;
    let mut body = env::modelsync(NAME, &lambda.url, "50ms");
    body["spec"]["successfulPipelineRunsHistoryLimit"] = 1.into();
    Api::<ModelSync>::namespaced(client.clone(), NS)
        .patch(NAME, &PatchParams::apply("bench"), &Patch::Apply(body))
        .await?;

    let mut previous: Option<String> = None;
    let mut start = BTreeMap::new();
    for k in 0..CYCLES {
        if k == WARM_UP {
            start = writes_by_kind(&env::apiserver_metrics(&cp, &client).await?);
        }
        previous = Some(one_life(&client, &armed, k, previous.as_deref()).await?);
    }
    let end = writes_by_kind(&env::apiserver_metrics(&cp, &client).await?);
    let lives = (CYCLES - WARM_UP) as f64;
    let mut per_run: PerRun = end
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (v - start.get(k).copied().unwrap_or(0.0)) / lives,
            )
        })
        .filter(|(_, v)| *v > 0.0)
        .collect();
    if let Some(played) = per_run.get_mut("pipelineruns/status PATCH") {
        *played -= PLAYED_STATUS_WRITES;
    }
    per_run.retain(|_, v| *v > 0.001);
    drop(cp);
    Ok(per_run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_keyed_by_resource_subresource_and_verb_without_leases() {
        let metrics = r#"
apiserver_request_total{code="201",component="apiserver",dry_run="",group="tekton.dev",resource="pipelineruns",scope="resource",subresource="",verb="POST",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="modelsync.dev",resource="modelsyncs",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 7
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 40
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="GET",version="v1"} 9
"#;
        let by = writes_by_kind(metrics);
        assert_eq!(by.get("pipelineruns POST"), Some(&3.0));
        assert_eq!(by.get("modelsyncs/status PATCH"), Some(&7.0));
        assert_eq!(by.len(), 2, "{by:?}");
    }
}
