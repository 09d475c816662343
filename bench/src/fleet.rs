//! Benchmarks 2 (scale) and 3 (memory per object), measured on the same fleets: N ModelSyncs (1,000 and
//! 10,000), each with 3 finished runs, polled every 60s by one controller, with a lambda that
//! answers at once. Scale: cold start, polls achieved against N/60, poll lag, CPU, peak RSS and
//! API writes while nothing changes. Memory: controller RSS at 0, 1k and 10k, and the slope.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use modelsync_api::ModelSync;
use modelsync_testenv::tekton::{self, Outcome};
use serde_json::json;

use crate::Opts;
use crate::env::{self, Controller, FastLambda};
use crate::report::Figure;

/// How long polls are counted after cold start, per fleet size.
fn window(n: usize) -> Duration {
    if n >= 10_000 {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(75)
    }
}

const RUNS_EACH: usize = 3;

struct Reading {
    n: usize,
    cold_start_s: f64,
    polls_ratio: f64,
    lag_p50_s: f64,
    lag_p99_s: f64,
    cpu_cores: f64,
    peak_rss_mb: f64,
    rss_mb: f64,
    idle_writes_per_min: f64,
}

/// Creates `n` ModelSyncs named `m<i>` with `RUNS_EACH` finished runs each.
async fn populate(
    client: &kube::Client,
    ns: &str,
    from: usize,
    to: usize,
    url: &str,
) -> Result<()> {
    let ms_ar = ApiResource::erase::<ModelSync>(&());
    let ms_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ms_ar);
    let runs_api = tekton::pipelineruns(client, ns);
    let started = Instant::now();
    let made: Vec<Result<usize>> = futures::stream::iter(from..to)
        .map(|i| {
            let (ms_api, runs_api, client) = (ms_api.clone(), runs_api.clone(), client.clone());
            let url = url.to_owned();
            let ns = ns.to_owned();
            async move {
                let name = format!("m{i}");
                let obj: DynamicObject = serde_json::from_value(env::modelsync(&name, &url, "60s"))?;
                let ms = ms_api.create(&PostParams::default(), &obj).await?;
                let uid = ms.uid().unwrap_or_default();
                for k in 0..RUNS_EACH {
                    let run = format!("{name}-old{k}");
                    let obj: DynamicObject = serde_json::from_value(json!({
                        "apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
                        "metadata": {
                            "name": run,
                            "labels": {"modelsync.dev/name": name},
                            "annotations": {"modelsync.dev/parameters": "{\"model-id\":\"m-1\"}", "modelsync.dev/reason": "benchmark history"},
                            "ownerReferences": [{"apiVersion": "modelsync.dev/v1alpha1", "kind": "ModelSync", "name": name, "uid": uid, "controller": true}],
                        },
                        "spec": {"pipelineRef": {"name": "deploy"}, "params": [{"name": "model-id", "value": "m-1"}]},
                    }))?;
                    runs_api.create(&PostParams::default(), &obj).await?;
                    tekton::finish(&client, &ns, &run, Outcome::Succeeded).await?;
                }
                anyhow::Ok(i)
            }
        })
        .buffer_unordered(48)
        .collect()
        .await;
    made.into_iter().collect::<Result<Vec<_>>>()?;
    eprintln!(
        "   created ModelSyncs m{from}..m{to} with {RUNS_EACH} finished runs each in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn measure(
    cp: &modelsync_testenv::ControlPlane,
    client: &kube::Client,
    opts: &Opts,
    ns: &str,
    n: usize,
    lambda: &FastLambda,
    logs: &std::path::Path,
) -> Result<Reading> {
    lambda.calls.lock().unwrap().clear();
    let started = Instant::now();
    let controller = Controller::start(cp, &opts.modelsync, ns, logs).await?;
    let pid = controller
        .pid()
        .ok_or_else(|| anyhow::anyhow!("controller pid not found"))?;
    // Cold start: until every ModelSync was asked once.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let asked = lambda.calls.lock().unwrap().len();
        if asked >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {asked} of {n} ModelSyncs were polled within 600s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cold_start_s = started.elapsed().as_secs_f64();
    // Let first status writes and garbage collection finish, then count an idle window.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let w = window(n);
    let (m0, a0, c0, p0) = (
        controller.scrape().await?,
        env::api_writes(&env::apiserver_metrics(cp, client).await?),
        env::cpu_seconds(pid)?,
        lambda.total_calls(),
    );
    tokio::time::sleep(w).await;
    let (m1, a1, c1, p1) = (
        controller.scrape().await?,
        env::api_writes(&env::apiserver_metrics(cp, client).await?),
        env::cpu_seconds(pid)?,
        lambda.total_calls(),
    );
    let (rss, peak) = env::rss_mb(pid)?;
    let (h0, h1) = (
        env::histogram(&m0, "modelsync_poll_lag_seconds"),
        env::histogram(&m1, "modelsync_poll_lag_seconds"),
    );
    let secs = w.as_secs_f64();
    let polls_per_s = (p1 - p0) as f64 / secs;
    let expected = n as f64 / 60.0;
    drop(controller);
    let r = Reading {
        n,
        cold_start_s,
        polls_ratio: if n == 0 { 1.0 } else { polls_per_s / expected },
        lag_p50_s: env::histogram_quantile(&h0, &h1, 0.50),
        lag_p99_s: env::histogram_quantile(&h0, &h1, 0.99),
        cpu_cores: (c1 - c0) / secs,
        peak_rss_mb: peak,
        rss_mb: rss,
        idle_writes_per_min: (a1 - a0) / secs * 60.0,
    };
    eprintln!(
        "   n={n}: cold start {:.1}s, polls {:.1}/s of {expected:.1}/s expected, lag p50 ≤{}s p99 ≤{}s, {:.3} cores, RSS {:.0} MB (peak {:.0}), {:.1} writes/min idle",
        r.cold_start_s,
        polls_per_s,
        r.lag_p50_s,
        r.lag_p99_s,
        r.cpu_cores,
        r.rss_mb,
        r.peak_rss_mb,
        r.idle_writes_per_min
    );
    Ok(r)
}

pub async fn run(opts: &Opts) -> Result<Vec<Figure>> {
    let (cp, client) = env::control_plane().await?;
    let logs = tempfile::tempdir()?;
    let ns = "bench-fleet";
    env::namespace(&client, ns).await?;
    let lambda = FastLambda::start(Arc::new(
        |_: &str| json!({"needsSync": false, "reason": "bench"}),
    ))
    .await?;

    let mut readings = Vec::new();
    // Baseline with nothing to watch: only the runtime and caches' fixed cost.
    {
        let controller = Controller::start(&cp, &opts.modelsync, ns, logs.path()).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let pid = controller
            .pid()
            .ok_or_else(|| anyhow::anyhow!("controller pid not found"))?;
        let (rss, peak) = env::rss_mb(pid)?;
        eprintln!("   n=0: RSS {rss:.1} MB (peak {peak:.1})");
        readings.push(Reading {
            n: 0,
            cold_start_s: 0.0,
            polls_ratio: 1.0,
            lag_p50_s: 0.0,
            lag_p99_s: 0.0,
            cpu_cores: 0.0,
            peak_rss_mb: peak,
            rss_mb: rss,
            idle_writes_per_min: 0.0,
        });
    }
    let mut have = 0;
    for n in [1_000usize, 10_000] {
        populate(&client, ns, have, n, &lambda.url).await?;
        have = n;
        readings.push(measure(&cp, &client, opts, ns, n, &lambda, logs.path()).await?);
    }
    drop(cp);

    let one = |v: f64| vec![v];
    let mut out = Vec::new();
    for r in readings.iter().filter(|r| r.n > 0) {
        let k = if r.n >= 10_000 { "10k" } else { "1k" };
        let big = r.n >= 10_000;
        let mut f = vec![
            Figure::new(
                "scale",
                &format!("{k}: cold start to all polled"),
                "s",
                one(r.cold_start_s),
            ),
            Figure::new(
                "scale",
                &format!("{k}: polls achieved / expected"),
                "%",
                one(r.polls_ratio * 100.0),
            ),
            Figure::new(
                "scale",
                &format!("{k}: poll lag p50 (bucket bound)"),
                "s",
                one(r.lag_p50_s),
            ),
            Figure::new(
                "scale",
                &format!("{k}: poll lag p99 (bucket bound)"),
                "s",
                one(r.lag_p99_s),
            ),
            Figure::new(
                "scale",
                &format!("{k}: controller CPU"),
                "cores",
                one(r.cpu_cores),
            ),
            Figure::new(
                "scale",
                &format!("{k}: controller peak RSS"),
                "MB",
                one(r.peak_rss_mb),
            ),
            Figure::new(
                "scale",
                &format!("{k}: API writes while idle"),
                "/min",
                one(r.idle_writes_per_min),
            ),
        ];
        if big {
            f[1] = f[1].clone().with_target("≥ 99", |v, _| v >= 99.0);
            f[3] = f[3].clone().with_target("< 2", |v, _| v < 2.0);
            f[4] = f[4].clone().with_target("< 0.5", |v, _| v < 0.5);
            f[5] = f[5].clone().with_target("< 150", |v, _| v < 150.0);
            f[6] = f[6].clone().with_target("0", |v, _| v == 0.0);
        }
        out.extend(f);
    }
    for r in &readings {
        out.push(Figure::new(
            "memory",
            &format!("RSS at {} ModelSyncs (+3 runs each)", r.n),
            "MB",
            one(r.rss_mb),
        ));
    }
    if let (Some(a), Some(b)) = (
        readings.iter().find(|r| r.n == 1_000),
        readings.iter().find(|r| r.n == 10_000),
    ) {
        let kb = (b.rss_mb - a.rss_mb) * 1024.0 / (b.n - a.n) as f64;
        out.push(Figure::new(
            "memory",
            "per ModelSync with 3 runs (1k→10k slope)",
            "KB",
            one(kb),
        ));
    }
    Ok(out)
}
