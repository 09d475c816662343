//! Benchmark 1, decision to run: from the moment the lambda starts answering "yes" to the
//! PipelineRun existing in the API server (seen through a watch), beside the floor of the same
//! client creating the same PipelineRun directly; and from setting `modelsync.dev/requested-at`
//! to the run existing.
//!
//! Decisions are measured two ways. One at a time: one ModelSync decides while four others keep
//! the controller polling; once the controller has had time to write what the decision causes
//! (status, events, collection of old runs), the floor creates the same run directly, and so on in
//! turn, so both sides meet the same machine. In a burst: five ModelSyncs decide at once, so
//! each create competes with the writes the other decisions cause, and five direct creators
//! the same way, the two taking turns in short rounds.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{SecondsFormat, Utc};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use modelsync_api::ModelSync;
use modelsync_api::lambda::{NeedsSyncAnswer, ParamValue};
use modelsync_api::modelsync::ANNOTATION_REQUESTED_AT;
use modelsync_controller::reconcile::FIELD_MANAGER;
use modelsync_controller::template::{self, RunRequest};
use modelsync_testenv::tekton::{self, RunEnd};
use serde_json::json;

use crate::Opts;
use crate::env::{self, FastLambda};
use crate::report::{Figure, percentile};

const NS: &str = "bench-decision";
/// Where the floor's runs go: a namespace the controller does not watch, so they cause no
/// reconciles, with a twin of the deciding ModelSync as their owner.
const FLOOR_NS: &str = "bench-decision-floor";
/// Decisions per run in each mode, and creates per run for each floor.
const DECISIONS: usize = 500;
/// ModelSyncs deciding at once in the burst.
const BURST: usize = 5;
/// Turns the burst and its floor take in each run (each `DECISIONS / BURST / BURST_ROUNDS`
/// per ModelSync or creator).
const BURST_ROUNDS: usize = 10;
const REQUESTED_AT_SAMPLES: usize = 100;
/// Fast polling keeps the wait for the next poll (not measured) short.
const POLL: &str = "20ms";

use env::Seen;
type Armed = Arc<Mutex<HashMap<String, String>>>;
type YesAt = Arc<Mutex<HashMap<String, Instant>>>;

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

/// Every run's first arrival, in a watch of all namespaces (the floor's runs too).
fn watch_runs(client: &kube::Client) -> (Seen, env::AbortOnDrop) {
    env::watch_runs(Api::all_with(
        client.clone(),
        &tekton::pipelinerun_resource(),
    ))
}

/// Makes `name` decide once through the controller: arm the lambda, await the run, finish
/// it. The latency in ms from the lambda's "yes" to the run in the watch.
async fn decide_once(
    name: &str,
    model: &str,
    (armed, yes_at, seen): &(Armed, YesAt, Seen),
    client: &kube::Client,
) -> Result<f64> {
    armed
        .lock()
        .unwrap()
        .insert(name.to_owned(), model.to_owned());
    let (at, run) = seen_run(seen, model).await?;
    let said = yes_at
        .lock()
        .unwrap()
        .get(model)
        .copied()
        .context("the run appeared but the lambda never said yes for it")?;
    tekton::finish(client, NS, &run, RunEnd::Succeeded).await?;
    Ok(at.saturating_duration_since(said).as_secs_f64() * 1000.0)
}

/// Makes `name` decide `count` times in a row. Latencies in ms.
async fn decide(
    name: String,
    count: usize,
    tag: String,
    shared: (Armed, YesAt, Seen),
    client: kube::Client,
) -> Result<Vec<f64>> {
    let mut lat = Vec::with_capacity(count);
    for k in 0..count {
        lat.push(decide_once(&name, &format!("{name}-{tag}-{k}"), &shared, &client).await?);
    }
    Ok(lat)
}

/// How long the controller gets, after a run finished, for the pass that records it (status,
/// collection of old runs, events): a few ms on this machine; waited out in full, since its
/// status cannot say reliably that the pass is over (a poll 20 ms later rewrites the decision,
/// and runs finished within one second of each other have equal timestamps).
const SETTLE: Duration = Duration::from_millis(40);

/// The run the controller would create for `owner` deciding `model`, built by the controller's
/// own code, for the floor to create directly.
fn floor_body(owner: &ModelSync, model: &str) -> Result<DynamicObject> {
    let params: BTreeMap<String, ParamValue> = [("model-id".to_owned(), model.into())].into();
    let answer = NeedsSyncAnswer {
        needs_sync: true,
        parameters: [("model".to_owned(), model.into())].into(),
        reason: Some("bench".into()),
        revision: None,
        ..Default::default()
    };
    let uid = owner.uid().context("floor owner uid")?;
    let body = template::build_run(&RunRequest {
        name: &template::run_name(&owner.name_any(), &uid, None, &params),
        namespace: FLOOR_NS,
        modelsync: &owner.name_any(),
        owner: serde_json::to_value(owner.controller_owner_ref(&()).context("owner ref")?)?,
        template: &owner.spec.pipeline_run_template,
        params: &params,
        answer: &answer,
        decided_at: &Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        lambda_url: &owner.spec.needs_sync_url,
        shard: None,
    })
    .map_err(|e| anyhow::anyhow!("floor run: {}", e.0))?;
    Ok(serde_json::from_value(body)?)
}

/// Creates one run directly and awaits it in the watch. The latency in ms, and the run's name.
async fn create_once(
    api: &Api<DynamicObject>,
    owner: &ModelSync,
    model: &str,
    seen: &Seen,
) -> Result<(f64, String)> {
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let body = floor_body(owner, model)?;
    let t0 = Instant::now();
    api.create(&pp, &body).await?;
    let (at, run) = seen_run(seen, model).await?;
    Ok((at.saturating_duration_since(t0).as_secs_f64() * 1000.0, run))
}

/// What a floor creator writes besides its creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Floor {
    /// Nothing: the creates alone.
    Creates,
    /// After each create, the other writes a decision causes, made the way the controller and
    /// the Tekton stand-in make them: the start's status write and event while the run is
    /// finished, then the end's status write, two events and the delete of the run before it.
    /// They go on beside the next create, as the controller's do; only creates are timed.
    WithDecisionWrites,
}

/// Creates `count` runs in a row directly, owned by `owner`. Latencies in ms.
async fn create_directly(
    owner: Arc<ModelSync>,
    count: usize,
    tag: String,
    seen: Seen,
    client: kube::Client,
    floor: Floor,
) -> Result<Vec<f64>> {
    let runs = tekton::pipelineruns(&client, FLOOR_NS);
    let writer = (floor == Floor::WithDecisionWrites).then(|| SideWriter {
        owners: Api::namespaced(client.clone(), FLOOR_NS),
        runs: runs.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "modelsync-bench".into(),
                instance: None,
            },
        ),
        owner: owner.clone(),
    });
    let mut lat = Vec::with_capacity(count);
    let mut side = Vec::new();
    let mut previous: Option<String> = None;
    for k in 0..count {
        let model = format!("floor-{tag}-{k}");
        let (ms, run) = create_once(&runs, &owner, &model, &seen).await?;
        lat.push(ms);
        let Some(writer) = &writer else { continue };
        side.push(tokio::spawn(writer.clone().write(run.clone(), 1, None)));
        tekton::finish(&client, FLOOR_NS, &run, RunEnd::Succeeded).await?;
        let collect = previous.replace(run.clone());
        side.push(tokio::spawn(writer.clone().write(run, 2, collect)));
    }
    for task in side {
        task.await??;
    }
    Ok(lat)
}

/// The writes around a decision's create, for [`Floor::WithDecisionWrites`].
#[derive(Clone)]
struct SideWriter {
    owners: Api<ModelSync>,
    runs: Api<DynamicObject>,
    recorder: Recorder,
    owner: Arc<ModelSync>,
}

impl SideWriter {
    /// A status write, `events` events naming `run`, and the delete of `collect`.
    async fn write(self, run: String, events: usize, collect: Option<String>) -> Result<()> {
        let name = self.owner.name_any();
        let body = json!({
            "apiVersion": ModelSync::api_version(&()),
            "kind": ModelSync::kind(&()),
            "status": {"lastCheckTime": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)},
        });
        self.owners
            .patch_status(
                &name,
                &PatchParams::apply("modelsync-bench-floor").force(),
                &Patch::Apply(body),
            )
            .await
            .with_context(|| format!("writing the status of floor owner {name}"))?;
        let me = self.owner.object_ref(&());
        for i in 0..events {
            let event = Event {
                type_: EventType::Normal,
                reason: "BenchFloor".into(),
                note: Some(format!("run {run}, event {i}")),
                action: "Reconcile".into(),
                secondary: None,
            };
            self.recorder
                .publish(&event, &me)
                .await
                .context("publishing a floor event")?;
        }
        if let Some(old) = collect {
            self.runs
                .delete(&old, &Default::default())
                .await
                .with_context(|| format!("deleting floor run {old}"))?;
        }
        Ok(())
    }
}

async fn apply(api: &Api<ModelSync>, name: &str, body: serde_json::Value) -> Result<()> {
    api.patch(name, &PatchParams::apply("bench"), &Patch::Apply(body))
        .await
        .with_context(|| format!("applying ModelSync {name}"))?;
    Ok(())
}

/// p50 and p99 per run, kept for the figures.
#[derive(Default)]
struct Series {
    p50: Vec<f64>,
    p99: Vec<f64>,
}

impl Series {
    fn push(&mut self, lat: &[f64]) {
        self.p50.push(percentile(lat, 50.0));
        self.p99.push(percentile(lat, 99.0));
    }
}

pub async fn run(opts: &Opts) -> Result<Vec<Figure>> {
    let (cp, client) = env::control_plane().await?;
    let logs = tempfile::tempdir()?;
    modelsync_testenv::create_namespace(&client, NS).await?;
    modelsync_testenv::create_namespace(&client, FLOOR_NS).await?;

    // The lambda answers "no" until a ModelSync is armed; then one "yes" with that model.
    let armed: Armed = Arc::default();
    let yes_at: YesAt = Arc::default();
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
    let (seen, watch) = watch_runs(&client);
    let shared = (armed.clone(), yes_at.clone(), seen.clone());

    let _controller = env::start_controller(&cp, &opts.modelsync, NS, logs.path()).await?;
    let modelsyncs: Api<ModelSync> = Api::namespaced(client.clone(), NS);
    let deciders: Vec<String> = (0..BURST).map(|i| format!("d{i}")).collect();
    for name in &deciders {
        apply(&modelsyncs, name, env::modelsync(name, &lambda.url, POLL)).await?;
    }
    // Twins of the deciders: each floor creator owns its runs through one of them, and the
    // creators that also write status write their own twin's, as each decision writes its own
    // ModelSync's.
    let floor_api: Api<ModelSync> = Api::namespaced(client.clone(), FLOOR_NS);
    let mut floor_owners = Vec::with_capacity(BURST);
    for name in &deciders {
        apply(&floor_api, name, env::modelsync(name, &lambda.url, POLL)).await?;
        floor_owners.push(Arc::new(floor_api.get(name).await?));
    }
    let floor_owner = floor_owners[0].clone();
    let mut requested = env::modelsync("req", &lambda.url, "1h");
    requested["spec"]["successfulPipelineRunsHistoryLimit"] = 1.into();
    apply(&modelsyncs, "req", requested).await?;

    // Warm-up, not measured: the API server's first create of a kind is slow (about 2 s here,
    // building its handlers), as are the first requests on new connections.
    decide(
        "d0".into(),
        5,
        "warm".into(),
        shared.clone(),
        client.clone(),
    )
    .await?;
    create_directly(
        floor_owner.clone(),
        5,
        "warm".into(),
        seen.clone(),
        client.clone(),
        Floor::WithDecisionWrites,
    )
    .await?;

    let (mut one, mut one_floor, mut burst, mut burst_floor, mut req) = Default::default();
    let mut burst_written = Series::default();
    for r in 0..opts.runs {
        // One at a time, each decision paired with a direct create right after it, so both
        // sides meet the same machine; each waits until the controller is idle again.
        let floor_api = tekton::pipelineruns(&client, FLOOR_NS);
        let (mut lat, mut floor_lat) = (Vec::new(), Vec::new());
        for k in 0..DECISIONS {
            let model = format!("d0-r{r}-{k}");
            lat.push(decide_once("d0", &model, &shared, &client).await?);
            tokio::time::sleep(SETTLE).await;
            let model = format!("floor-r{r}-{k}");
            let (ms, _) = create_once(&floor_api, &floor_owner, &model, &seen).await?;
            floor_lat.push(ms);
        }
        Series::push(&mut one, &lat);
        Series::push(&mut one_floor, &floor_lat);

        // The burst and its floor take turns in short rounds, so that both meet the same
        // machine (etcd's compactions, the API server's garbage collection) in every part of
        // the run rather than one after the other.
        let (mut lat, mut floor_lat, mut written_lat) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..BURST_ROUNDS {
            let tasks = deciders.iter().map(|name| {
                decide(
                    name.clone(),
                    DECISIONS / BURST / BURST_ROUNDS,
                    format!("burst{r}-{round}"),
                    shared.clone(),
                    client.clone(),
                )
            });
            lat.extend(futures::future::try_join_all(tasks).await?.concat());
            for (floor, series) in [
                (Floor::Creates, &mut floor_lat),
                (Floor::WithDecisionWrites, &mut written_lat),
            ] {
                tokio::time::sleep(SETTLE).await;
                let tasks = floor_owners.iter().enumerate().map(|(i, owner)| {
                    create_directly(
                        owner.clone(),
                        DECISIONS / BURST / BURST_ROUNDS,
                        format!("{floor:?}-burst{r}-{round}-{i}"),
                        seen.clone(),
                        client.clone(),
                        floor,
                    )
                });
                series.extend(futures::future::try_join_all(tasks).await?.concat());
            }
        }
        Series::push(&mut burst, &lat);
        Series::push(&mut burst_floor, &floor_lat);
        Series::push(&mut burst_written, &written_lat);

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
                        json!({"metadata": {"annotations": {ANNOTATION_REQUESTED_AT: model}}}),
                    ),
                )
                .await?;
            let (at, run) = seen_run(&seen, &model).await?;
            lat.push(at.saturating_duration_since(t0).as_secs_f64() * 1000.0);
            tekton::finish(&client, NS, &run, RunEnd::Succeeded).await?;
            // Let the controller see the run finish before asking again (Forbid).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Series::push(&mut req, &lat);
        eprintln!(
            "   run {r}: one at a time p50 {:.1} p99 {:.1} ms (floor {:.1} / {:.1}); burst of {BURST} \
             p50 {:.1} p99 {:.1} (floor {:.1} / {:.1}, creates with a decision's other writes \
             {:.1} / {:.1}); requested-at p50 {:.1} p99 {:.1}",
            one.p50[r],
            one.p99[r],
            one_floor.p50[r],
            one_floor.p99[r],
            burst.p50[r],
            burst.p99[r],
            burst_floor.p50[r],
            burst_floor.p99[r],
            burst_written.p50[r],
            burst_written.p99[r],
            req.p50[r],
            req.p99[r],
        );
    }
    drop(watch);
    drop(cp);
    let within_5ms = |v: f64, f: Option<f64>| v <= f.unwrap_or(f64::NAN) + 5.0;
    let mut figures = writes_figures(opts).await?;
    figures.extend(vec![
        Figure::new("decision", "decision→run p50", "ms", one.p50).with_floor(one_floor.p50),
        Figure::new("decision", "decision→run p99", "ms", one.p99)
            .with_floor(one_floor.p99)
            .with_target("≤ floor + 5", within_5ms),
        Figure::new("decision", "burst of 5: decision→run p50", "ms", burst.p50)
            .with_floor(burst_floor.p50),
        Figure::new("decision", "burst of 5: decision→run p99", "ms", burst.p99)
            .with_floor(burst_floor.p99)
            .with_target("≤ 2× floor", |v, f| v <= 2.0 * f.unwrap_or(f64::NAN)),
        Figure::new(
            "decision",
            "burst of 5: direct creates with a decision's other writes p50",
            "ms",
            burst_written.p50,
        ),
        Figure::new(
            "decision",
            "burst of 5: direct creates with a decision's other writes p99",
            "ms",
            burst_written.p99,
        ),
        Figure::new("decision", "requested-at→run p50", "ms", req.p50),
        Figure::new("decision", "requested-at→run p99", "ms", req.p99)
            .with_target("< 100", |v, _| v < 100.0),
    ]);
    Ok(figures)
}

/// API writes per run life, by kind, and in all. Counted once (a count, not a timing) on a
/// control plane of its own, so the latency runs' writes do not mix in.
pub async fn writes_figures(opts: &Opts) -> Result<Vec<Figure>> {
    let per_run = crate::writes::per_run(opts).await?;
    let total: f64 = per_run.values().sum();
    eprintln!("   API writes per run: {total:.2} in all: {per_run:?}");
    let mut figures: Vec<Figure> = per_run
        .iter()
        .map(|(kind, n)| {
            Figure::new(
                "decision",
                &format!("writes per run: {kind}"),
                "writes",
                vec![*n],
            )
        })
        .collect();
    figures.push(Figure::new(
        "decision",
        "API writes per run (all)",
        "writes",
        vec![total],
    ));
    Ok(figures)
}
