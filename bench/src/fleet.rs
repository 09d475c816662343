//! Benchmarks 2 (scale) and 3 (memory per object), measured on the same fleets: N ModelSyncs (1,000 and
//! 10,000), each with 3 finished runs, polled every 60s by one controller, with a lambda that
//! answers at once. Scale: cold start, polls achieved against N/60, poll lag, CPU, peak RSS and
//! API writes while nothing changes. Memory: controller RSS at 0, 1k and 10k, and the slope.
//! At the instant the cold start ends, the controllers' peak RSS so far and their initial lists
//! ([`cold_start`]); `--initial-list` forces paged or streaming lists, `--scale-sizes` picks
//! the fleet sizes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use chrono::{SecondsFormat, Utc};
use futures::StreamExt;
use kube::Resource;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use modelsync_api::ModelSync;
use modelsync_api::modelsync::{ANNOTATION_PARAMETERS, ANNOTATION_REASON, LABEL_NAME, LABEL_SHARD};
use modelsync_testenv::tekton::{self, RunEnd};
use serde_json::json;

use crate::Opts;
use crate::cold_start;
use crate::env::{self, FastLambda};
use crate::report::{self, Figure};

/// The poll interval of every ModelSync in the fleet, and the controller's jitter around it.
const PERIOD: Duration = Duration::from_secs(60);
const JITTER: f64 = 0.1;
/// How late a second poll may be and still count as on time: the lag target.
const LAG_ALLOWANCE: Duration = Duration::from_secs(2);

const RUNS_EACH: usize = 3;

pub struct Reading {
    pub cold_start_s: f64,
    /// The largest replica's peak RSS at the instant the cold start ended.
    pub cold_start_peak_rss_mb: f64,
    /// Which initial lists the controllers used (`paged`, `streaming`).
    pub initial_lists: String,
    /// Achieved polls over expected (one per period): the period over the mean interval.
    pub polls_ratio: f64,
    /// ModelSyncs polled a second time within period + jitter + the lag allowance.
    pub repolled_ratio: f64,
    pub lag_p50_s: f64,
    pub lag_p99_s: f64,
    pub cpu_cores: f64,
    pub peak_rss_mb: f64,
    pub rss_mb: f64,
    pub idle_writes_per_min: f64,
}

/// The status of the `k`th of a ModelSync's `each` old runs: succeeded `each - k` days ago. A
/// history, not runs that just finished: those would hold the next poll back by a period
/// (the settle after a run), which is not the steady state measured here.
fn history(each: usize, k: usize) -> serde_json::Value {
    let days_ago = |d: i64| {
        (Utc::now() - chrono::Duration::days(d)).to_rfc3339_opts(SecondsFormat::Secs, true)
    };
    let (start, end) = (days_ago((each - k) as i64 + 1), days_ago((each - k) as i64));
    json!({"status": tekton::ended(RunEnd::Succeeded, &start, &end)})
}

/// How a fleet is made: finished runs per ModelSync, and the shard label of the `i`th, if any.
#[derive(Clone, Copy)]
pub struct Shape {
    pub runs_each: usize,
    pub shards: usize,
}

impl Shape {
    /// One controller's extra flags per shard (`--shard=s<i>`), or one plain controller.
    pub fn controllers(&self) -> Vec<Vec<String>> {
        match self.shards {
            0 => vec![vec![]],
            k => (0..k).map(|i| vec![format!("--shard=s{i}")]).collect(),
        }
    }

    fn shard_of(&self, i: usize) -> Option<String> {
        (self.shards > 0).then(|| format!("s{}", i % self.shards))
    }
}

/// `AlreadyExists` is success: a fleet whose creation was cut short is completed, not redone.
fn created<T>(result: kube::Result<T>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates ModelSyncs `m<from>..m<to>` with `RUNS_EACH` finished runs each.
async fn populate(
    client: &kube::Client,
    ns: &str,
    from: usize,
    to: usize,
    url: &str,
) -> Result<()> {
    populate_shaped(
        client,
        ns,
        from,
        to,
        url,
        Shape {
            runs_each: RUNS_EACH,
            shards: 0,
        },
    )
    .await
}

/// Creates ModelSyncs `m<from>..m<to>` as `shape` says, each with its finished runs; the shard
/// label, when there is one, on the ModelSync and its runs alike (as the controller labels
/// the runs it creates).
pub async fn populate_shaped(
    client: &kube::Client,
    ns: &str,
    from: usize,
    to: usize,
    url: &str,
    shape: Shape,
) -> Result<()> {
    let ms_ar = ApiResource::erase::<ModelSync>(&());
    let ms_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ms_ar);
    let runs_api = tekton::pipelineruns(client, ns);
    let started = Instant::now();
    let made: Vec<Result<usize>> = futures::stream::iter(from..to)
        .map(|i| {
            let (ms_api, runs_api) = (ms_api.clone(), runs_api.clone());
            let url = url.to_owned();
            async move {
                let name = format!("m{i}");
                let mut body = env::modelsync(&name, &url, "60s");
                let mut labels = json!({LABEL_NAME: name});
                if let Some(shard) = shape.shard_of(i) {
                    body["metadata"]["labels"] = json!({LABEL_SHARD: shard});
                    labels[LABEL_SHARD] = shard.into();
                }
                let obj: DynamicObject = serde_json::from_value(body)?;
                created(ms_api.create(&PostParams::default(), &obj).await)?;
                let uid = ms_api.get(&name).await?.uid().unwrap_or_default();
                for k in 0..shape.runs_each {
                    let run = format!("{name}-old{k}");
                    let obj: DynamicObject = serde_json::from_value(json!({
                        "apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
                        "metadata": {
                            "name": run,
                            "labels": labels,
                            "annotations": {ANNOTATION_PARAMETERS: "{\"model-id\":\"m-1\"}", ANNOTATION_REASON: "benchmark history"},
                            "ownerReferences": [{"apiVersion": ModelSync::api_version(&()), "kind": ModelSync::kind(&()), "name": name, "uid": uid, "controller": true}],
                        },
                        "spec": {"pipelineRef": {"name": "deploy"}, "params": [{"name": "model-id", "value": "m-1"}]},
                    }))?;
                    created(runs_api.create(&PostParams::default(), &obj).await)?;
                    runs_api
                        .patch_status(
                            &run,
                            &PatchParams::default(),
                            &Patch::Merge(history(shape.runs_each, k)),
                        )
                        .await?;
                }
                anyhow::Ok(i)
            }
        })
        .buffer_unordered(48)
        .collect()
        .await;
    made.into_iter().collect::<Result<Vec<_>>>()?;
    eprintln!(
        "   created ModelSyncs m{from}..m{to} with {} finished runs each in {:.0}s",
        shape.runs_each,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Each ModelSync's first interval between polls, in seconds. One never asked again counts
/// with the time from its first poll to `end`, a lower bound that still lowers the mean.
fn poll_intervals(calls: &HashMap<String, Vec<Instant>>, end: Instant) -> Vec<f64> {
    calls
        .values()
        .filter_map(|c| {
            let first = *c.first()?;
            let next = c.get(1).copied().unwrap_or(end);
            Some(next.saturating_duration_since(first).as_secs_f64())
        })
        .collect()
}

/// One reading of a fleet of `n`, with one controller per entry of `controllers` (its extra
/// flags, such as `--shard s0`; one empty entry: one plain controller), all started at once: RSS is the largest one's, CPU and lag are all of theirs.
#[allow(clippy::too_many_arguments)]
pub async fn measure_with(
    cp: &modelsync_testenv::ControlPlane,
    client: &kube::Client,
    opts: &Opts,
    ns: &str,
    n: usize,
    lambda: &FastLambda,
    logs: &std::path::Path,
    controllers: &[Vec<String>],
) -> Result<Reading> {
    lambda.calls.lock().unwrap().clear();
    let started = Instant::now();
    let chosen = cold_start::flags(opts.initial_list.as_deref());
    let flags: Vec<Vec<String>> = controllers
        .iter()
        .map(|extra| extra.iter().chain(&chosen).cloned().collect())
        .collect();
    let (running, pids) = env::start_controllers(cp, &opts.modelsync, ns, logs, &flags).await?;
    let cpu = |pids: &[u32]| -> Result<f64> { pids.iter().map(|p| env::cpu_seconds(*p)).sum() };
    // Cold start: until every ModelSync was asked once.
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let asked = lambda.calls.lock().unwrap().len();
        if asked >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {asked} of {n} ModelSyncs were polled within 900s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cold_start_s = started.elapsed().as_secs_f64();
    let cold_start_peak_rss_mb = cold_start::peak_rss_mb(&pids)?;
    let initial_lists = cold_start::strategies(&running);
    // Let first status writes and garbage collection finish, then measure the steady state
    // until every ModelSync has had time for its second poll.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (a0, c0, t0) = (
        env::api_writes(&env::apiserver_metrics(cp, client).await?),
        cpu(&pids)?,
        Instant::now(),
    );
    let last_first = lambda
        .calls
        .lock()
        .unwrap()
        .values()
        .filter_map(|c| c.first().copied())
        .max()
        .unwrap_or(started);
    let on_time = PERIOD.mul_f64(1.0 + JITTER) + LAG_ALLOWANCE;
    let end = last_first + on_time;
    tokio::time::sleep_until(end.into()).await;
    let mut scrapes = Vec::new();
    for c in &running {
        scrapes.push(c.scrape().await?);
    }
    let (a1, c1) = (
        env::api_writes(&env::apiserver_metrics(cp, client).await?),
        cpu(&pids)?,
    );
    let secs = t0.elapsed().as_secs_f64();
    let (mut rss, mut peak) = (0.0f64, 0.0f64);
    for pid in &pids {
        let (r, p) = env::rss_mb(*pid)?;
        (rss, peak) = (rss.max(r), peak.max(p));
    }
    // Lag is only recorded for polls with a planned time, so not for the first ones: the
    // whole histogram is the steady state's. The controllers' buckets add up.
    let lag = scrapes
        .iter()
        .map(|m| env::histogram(m, "modelsync_poll_lag_seconds"))
        .reduce(|a, b| {
            a.iter()
                .zip(&b)
                .map(|((le, x), (_, y))| (*le, x + y))
                .collect()
        })
        .unwrap_or_default();
    let intervals = poll_intervals(&lambda.calls.lock().unwrap(), end);
    let mean_interval = intervals.iter().sum::<f64>() / intervals.len().max(1) as f64;
    let repolled = intervals
        .iter()
        .filter(|i| **i <= on_time.as_secs_f64())
        .count();
    drop(running);
    let r = Reading {
        cold_start_s,
        cold_start_peak_rss_mb,
        initial_lists,
        polls_ratio: PERIOD.as_secs_f64() / mean_interval,
        repolled_ratio: repolled as f64 / n as f64,
        lag_p50_s: env::histogram_quantile(&[], &lag, 0.50),
        lag_p99_s: env::histogram_quantile(&[], &lag, 0.99),
        cpu_cores: (c1 - c0) / secs,
        peak_rss_mb: peak,
        rss_mb: rss,
        idle_writes_per_min: (a1 - a0) / secs * 60.0,
    };
    eprintln!(
        "   n={n}: cold start {:.1}s ({} lists, cold-start peak RSS {:.1} MB), mean poll interval {mean_interval:.1}s ({:.2}% of expected polls), {repolled} of {n} polled again on time, lag p50 ≤{}s p99 ≤{}s, {:.3} cores, RSS {:.0} MB (peak {:.0}), {:.1} writes/min idle",
        r.cold_start_s,
        r.initial_lists,
        r.cold_start_peak_rss_mb,
        r.polls_ratio * 100.0,
        r.lag_p50_s,
        r.lag_p99_s,
        r.cpu_cores,
        r.rss_mb,
        r.peak_rss_mb,
        r.idle_writes_per_min
    );
    Ok(r)
}

/// The nine scale figures of `readings` (one per run), named `<k>: ...`, without targets.
pub fn scale_figures(k: &str, readings: &[Reading]) -> Vec<Figure> {
    let each = |f: fn(&Reading) -> f64| readings.iter().map(f).collect::<Vec<f64>>();
    let figure = |what: &str, unit: &str, f: fn(&Reading) -> f64| {
        Figure::new("scale", &format!("{k}: {what}"), unit, each(f))
    };
    vec![
        figure("cold start to all polled", "s", |r| r.cold_start_s),
        figure("polls achieved / expected", "%", |r| r.polls_ratio * 100.0),
        figure("polled again on time", "%", |r| r.repolled_ratio * 100.0),
        figure("poll lag p50 (bucket bound)", "s", |r| r.lag_p50_s),
        figure("poll lag p99 (bucket bound)", "s", |r| r.lag_p99_s),
        figure("controller CPU (all replicas)", "cores", |r| r.cpu_cores),
        figure("controller peak RSS (largest replica)", "MB", |r| {
            r.peak_rss_mb
        }),
        figure("API writes while idle", "/min", |r| r.idle_writes_per_min),
        // Last, so the figures above keep their places (callers set targets by index).
        Figure::new(
            "scale",
            &format!(
                "{k}: cold-start peak RSS, {} lists (largest replica)",
                lists(readings)
            ),
            "MB",
            each(|r| r.cold_start_peak_rss_mb),
        ),
    ]
}

/// The initial lists of all `readings`, once each.
fn lists(readings: &[Reading]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for r in readings {
        if !seen.contains(&r.initial_lists.as_str()) {
            seen.push(&r.initial_lists);
        }
    }
    seen.join(", ")
}

/// Runs measured at each fleet size. The 1k fleet gets one: it has no target, and each run of
/// a fleet lasts more than a poll period, which the suite's 15-minute budget cannot repeat.
fn runs_at(n: usize, opts: &Opts) -> usize {
    if n >= 10_000 { opts.runs } else { 1 }
}

/// The controller's memory with nothing to watch: the runtime's and caches' fixed cost.
async fn baseline(
    cp: &modelsync_testenv::ControlPlane,
    opts: &Opts,
    ns: &str,
    logs: &std::path::Path,
) -> Result<f64> {
    let controller = env::start_controller(cp, &opts.modelsync, ns, logs).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = controller
        .pid()
        .ok_or_else(|| anyhow::anyhow!("controller pid not found"))?;
    let (rss, peak) = env::rss_mb(pid)?;
    eprintln!("   n=0: RSS {rss:.1} MB (peak {peak:.1})");
    Ok(rss)
}

pub async fn run(opts: &Opts) -> Result<Vec<Figure>> {
    let (cp, client) = env::control_plane().await?;
    let logs = tempfile::tempdir()?;
    let ns = "bench-fleet";
    modelsync_testenv::create_namespace(&client, ns).await?;
    let lambda = FastLambda::start(Arc::new(
        |_: &str| json!({"needsSync": false, "reason": "bench"}),
    ))
    .await?;

    let mut empty = Vec::new();
    for _ in 0..opts.runs {
        empty.push(baseline(&cp, opts, ns, logs.path()).await?);
    }
    let mut fleets: Vec<(usize, Vec<Reading>)> = Vec::new();
    let mut have = 0;
    let sizes = match opts.scale_sizes.as_slice() {
        [] => &[1000, 10_000][..],
        given => given,
    };
    for n in sizes.iter().copied() {
        if n < have {
            bail!("--scale-sizes must grow ({have} then {n}): each size adds to the fleet before");
        }
        populate(&client, ns, have, n, &lambda.url).await?;
        have = n;
        let mut readings = Vec::new();
        for _ in 0..runs_at(n, opts) {
            readings.push(
                measure_with(&cp, &client, opts, ns, n, &lambda, logs.path(), &[vec![]]).await?,
            );
        }
        fleets.push((n, readings));
    }
    drop(cp);

    let mut out = Vec::new();
    for (n, readings) in &fleets {
        let k = match n % 1000 {
            0 => format!("{}k", n / 1000),
            _ => n.to_string(),
        };
        let mut f = scale_figures(&k, readings);
        if *n >= 10_000 {
            f[1] = f[1].clone().with_target("≥ 99", |v, _| v >= 99.0);
            f[4] = f[4].clone().with_target("< 2", |v, _| v < 2.0);
            f[5] = f[5].clone().with_target("< 0.5", |v, _| v < 0.5);
            f[6] = f[6].clone().with_target("< 150", |v, _| v < 150.0);
            f[7] = f[7].clone().with_target("0", |v, _| v == 0.0);
        }
        out.extend(f);
    }
    out.push(Figure::new("memory", "RSS at 0 ModelSyncs", "MB", empty));
    for (n, readings) in &fleets {
        out.push(Figure::new(
            "memory",
            &format!("RSS at {n} ModelSyncs (+3 runs each)"),
            "MB",
            readings.iter().map(|r| r.rss_mb).collect(),
        ));
    }
    if let [(n1, small), (n2, big)] = fleets.as_slice() {
        let small = report::median(&small.iter().map(|r| r.rss_mb).collect::<Vec<_>>());
        let kb: Vec<f64> = big
            .iter()
            .map(|r| (r.rss_mb - small) * 1024.0 / (n2 - n1) as f64)
            .collect();
        out.push(Figure::new(
            "memory",
            "per ModelSync with 3 runs (1k→10k slope)",
            "KB",
            kb,
        ));
    }
    Ok(out)
}
