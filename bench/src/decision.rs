//! Benchmark 1, decision to run: from the moment the lambda starts answering "yes" to the PipelineRun
//! existing in the API server (seen through a watch), beside the floor of the same client
//! creating the same PipelineRun directly; and from setting `modelsync.dev/requested-at` to
//! the run existing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use modelsync_api::ModelSync;
use modelsync_testenv::tekton::{self, Outcome};
use serde_json::json;

use crate::Opts;
use crate::env::{self, Controller, FastLambda};
use crate::report::{Figure, percentile};

const NS: &str = "bench-decision";
/// ModelSyncs deciding in parallel, and decisions each makes per run.
const PARALLEL: usize = 5;
const DECISIONS_EACH: usize = 100;
const REQUESTED_AT_SAMPLES: usize = 100;

type Seen = Arc<Mutex<HashMap<String, (Instant, String)>>>;

/// Waits until the watch has seen a run whose `model-id` param is `model`.
async fn seen_run(seen: &Seen, model: &str) -> Result<(Instant, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(hit) = seen.lock().unwrap().get(model).cloned() {
            return Ok(hit);
        }
        if Instant::now() > deadline {
            bail!("no run for {model} within 30s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub async fn run(opts: &Opts) -> Result<Vec<Figure>> {
    let (cp, client) = env::control_plane().await?;
    let logs = tempfile::tempdir()?;
    env::namespace(&client, NS).await?;

    // The lambda answers "no" until a ModelSync is armed; then one "yes" with that model.
    let armed: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let yes_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let lambda = {
        let (armed, yes_at) = (armed.clone(), yes_at.clone());
        FastLambda::start(Arc::new(move |name: &str| {
            match armed.lock().unwrap().remove(name) {
                Some(model) => {
                    yes_at.lock().unwrap().insert(model.clone(), Instant::now());
                    json!({"needsSync": true, "parameters": {"model": model}, "reason": "bench"})
                }
                None => json!({"needsSync": false}),
            }
        }))
        .await?
    };

    // Every run's arrival in the watch, by its model-id.
    let seen: Seen = Arc::default();
    let runs_api = tekton::pipelineruns(&client, NS);
    {
        let seen = seen.clone();
        let stream = watcher(runs_api.clone(), watcher::Config::default());
        tokio::spawn(async move {
            let mut stream = stream.boxed();
            while let Some(ev) = stream.next().await {
                if let Ok(watcher::Event::Apply(run) | watcher::Event::InitApply(run)) = ev {
                    let now = Instant::now();
                    let model = run.data["spec"]["params"]
                        .as_array()
                        .and_then(|ps| ps.iter().find(|p| p["name"] == "model-id"))
                        .and_then(|p| p["value"].as_str())
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock()
                        .unwrap()
                        .entry(model)
                        .or_insert((now, run.name_any()));
                }
            }
        });
    }

    let _controller = Controller::start(&cp, &opts.modelsync, NS, logs.path()).await?;
    let modelsyncs: Api<ModelSync> = Api::namespaced(client.clone(), NS);
    for i in 0..PARALLEL {
        let name = format!("d{i}");
        modelsyncs
            .patch(
                &name,
                &PatchParams::apply("bench"),
                &Patch::Apply(env::modelsync(&name, &lambda.url, "100ms")),
            )
            .await?;
    }
    let mut requested = env::modelsync("req", &lambda.url, "1h");
    requested["spec"]["successfulPipelineRunsHistoryLimit"] = 1.into();
    modelsyncs
        .patch(
            "req",
            &PatchParams::apply("bench"),
            &Patch::Apply(requested),
        )
        .await?;

    let (mut p50, mut p99, mut floor50, mut floor99, mut req50, mut req99) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for r in 0..opts.runs {
        // Decisions: each ModelSync is armed, its run awaited and finished, in a loop.
        let tasks = (0..PARALLEL).map(|i| {
            let (armed, yes_at, seen, client) =
                (armed.clone(), yes_at.clone(), seen.clone(), client.clone());
            async move {
                let name = format!("d{i}");
                let mut lat = Vec::new();
                for k in 0..DECISIONS_EACH {
                    let model = format!("{name}-r{r}-{k}");
                    armed.lock().unwrap().insert(name.clone(), model.clone());
                    let (at, run) = seen_run(&seen, &model).await?;
                    let said = yes_at
                        .lock()
                        .unwrap()
                        .get(&model)
                        .copied()
                        .context("yes time")?;
                    lat.push(at.saturating_duration_since(said).as_secs_f64() * 1000.0);
                    tekton::finish(&client, NS, &run, Outcome::Succeeded).await?;
                }
                anyhow::Ok(lat)
            }
        });
        let lat: Vec<f64> = futures::future::try_join_all(tasks).await?.concat();
        p50.push(percentile(&lat, 50.0));
        p99.push(percentile(&lat, 99.0));

        // Floor: the same client kind creating the same runs directly, as many in parallel.
        let floor_tasks = (0..PARALLEL).map(|i| {
            let (seen, runs_api) = (seen.clone(), runs_api.clone());
            async move {
                let mut lat = Vec::new();
                for k in 0..DECISIONS_EACH {
                    let model = format!("floor{i}-r{r}-{k}");
                    let obj: DynamicObject = serde_json::from_value(json!({
                        "apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
                        "metadata": {"name": model, "labels": {"bench": "floor"}},
                        "spec": {"pipelineRef": {"name": "deploy"}, "params": [{"name": "model-id", "value": model}]},
                    }))?;
                    let t0 = Instant::now();
                    runs_api.create(&PostParams::default(), &obj).await?;
                    let (at, _) = seen_run(&seen, &model).await?;
                    lat.push(at.saturating_duration_since(t0).as_secs_f64() * 1000.0);
                }
                anyhow::Ok(lat)
            }
        });
        let lat: Vec<f64> = futures::future::try_join_all(floor_tasks).await?.concat();
        floor50.push(percentile(&lat, 50.0));
        floor99.push(percentile(&lat, 99.0));

        // requested-at: a ModelSync polled hourly, asked to check now.
        let mut lat = Vec::new();
        for k in 0..REQUESTED_AT_SAMPLES {
            let model = format!("req-r{r}-{k}");
            armed.lock().unwrap().insert("req".into(), model.clone());
            let t0 = Instant::now();
            modelsyncs
                .patch(
                    "req",
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({"metadata": {"annotations": {"modelsync.dev/requested-at": model}}}),
                    ),
                )
                .await?;
            let (at, run) = seen_run(&seen, &model).await?;
            lat.push(at.saturating_duration_since(t0).as_secs_f64() * 1000.0);
            tekton::finish(&client, NS, &run, Outcome::Succeeded).await?;
            // Let the controller see the run finish before asking again (Forbid).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        req50.push(percentile(&lat, 50.0));
        req99.push(percentile(&lat, 99.0));
        eprintln!(
            "   run {r}: decision p50 {:.1} ms p99 {:.1} ms (floor {:.1} / {:.1}); requested-at p50 {:.1} p99 {:.1}",
            p50[r], p99[r], floor50[r], floor99[r], req50[r], req99[r]
        );
    }
    drop(cp);
    Ok(vec![
        Figure::new("decision", "decision→run p50", "ms", p50).with_floor(floor50),
        Figure::new("decision", "decision→run p99", "ms", p99)
            .with_floor(floor99)
            .with_target("≤ floor + 5", |v, f| v <= f.unwrap_or(f64::NAN) + 5.0),
        Figure::new("decision", "requested-at→run p50", "ms", req50),
        Figure::new("decision", "requested-at→run p99", "ms", req99)
            .with_target("< 100", |v, _| v < 100.0),
    ])
}
