//! The first start on a fleet without statuses (`cargo xtask bench first-start`): each
//! ModelSync's first pass writes its first status (Ready and the first decision), so this cold
//! start is bound by status writes, unlike every later one (section 2 and 8), which writes
//! nothing. Measured on a new fleet of `--scale-sizes` ModelSyncs (default 20,000; no runs) for
//! one controller and for 4 shards, each on a fresh control plane, with what the API server
//! did meanwhile: first status writes a second, requests it refused with 429 (its priority and
//! fairness limits), passes that failed, and the CPU of the control plane and the controllers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use crate::Opts;
use crate::env::{self, FastLambda};
use crate::fleet::{self, Shape};
use crate::report::Figure;

const SHARDS: usize = 4;
const NS: &str = "bench-first";
const LIMIT: Duration = Duration::from_secs(900);

struct Reading {
    /// Controllers started → every ModelSync asked once and its first status written.
    took_s: f64,
    status_writes_per_s: f64,
    refused_429: f64,
    failed_passes: f64,
    /// Lambda calls that failed (the benchmark's lambda shares the machine).
    lambda_failures: f64,
    controllers_cores: f64,
    control_plane_cores: f64,
}

/// ModelSync status writes the API server has served, from its metrics. Read from the API
/// server rather than the controllers: their metrics carry series per ModelSync, and scraping
/// 100,000 of them every second would load the machine being measured.
fn status_writes(apiserver_metrics: &str) -> f64 {
    env::counter_sum(
        apiserver_metrics,
        "apiserver_request_total{",
        &[
            "resource=\"modelsyncs\"",
            "subresource=\"status\"",
            "code=\"200\"",
        ],
        &[],
    )
}

async fn reading(opts: &Opts, n: usize, shards: usize) -> Result<Reading> {
    let (cp, client) = env::control_plane().await?;
    modelsync_testenv::create_namespace(&client, NS).await?;
    let lambda = FastLambda::start(Arc::new(
        |_: &str| json!({"needsSync": false, "reason": "bench"}),
    ))
    .await?;
    let shape = Shape {
        runs_each: 0,
        shards,
    };
    fleet::populate_shaped(&client, NS, 0, n, &lambda.url, shape).await?;
    let logs = tempfile::tempdir()?;
    let flags = shape.controllers();
    let before = env::apiserver_metrics(&cp, &client).await?;
    let written0 = status_writes(&before);
    let cp_pids = cp.pids();
    let cp_cpu = || -> Result<f64> { cp_pids.iter().map(|p| env::cpu_seconds(*p)).sum() };
    let cp0 = cp_cpu()?;
    let started = Instant::now();
    let (running, pids) =
        env::start_controllers(&cp, &opts.modelsync, NS, logs.path(), &flags).await?;
    let mut last_report = Instant::now();
    loop {
        let asked = lambda.calls.lock().unwrap().len();
        let written = status_writes(&env::apiserver_metrics(&cp, &client).await?) - written0;
        if asked >= n && written >= n as f64 {
            break;
        }
        if started.elapsed() > LIMIT {
            bail!(
                "after {LIMIT:?}, {asked} of {n} ModelSyncs were asked and {written} first statuses written"
            );
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "   {:.0}s: {asked} of {n} asked, {written} statuses written",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let took_s = started.elapsed().as_secs_f64();
    let controllers_cpu: f64 = pids
        .iter()
        .map(|p| env::cpu_seconds(*p))
        .sum::<Result<f64>>()?;
    let control_plane_cpu = cp_cpu()? - cp0;
    let after = env::apiserver_metrics(&cp, &client).await?;
    let refused = |m: &str| env::counter_sum(m, "apiserver_request_total{", &["code=\"429\""], &[]);
    let (mut failed_passes, mut lambda_failures) = (0.0, 0.0);
    for c in &running {
        let m = c.scrape().await?;
        failed_passes +=
            env::counter_sum(&m, "controller_runtime_reconcile_errors_total{", &[], &[]);
        lambda_failures += env::counter_sum(
            &m,
            "modelsync_lambda_requests_total{",
            &[],
            &["outcome=\"no\"", "outcome=\"yes\""],
        );
    }
    drop(running);
    let r = Reading {
        took_s,
        status_writes_per_s: n as f64 / took_s,
        refused_429: refused(&after) - refused(&before),
        failed_passes,
        lambda_failures,
        controllers_cores: controllers_cpu / took_s,
        control_plane_cores: control_plane_cpu / took_s,
    };
    eprintln!(
        "   n={n}, {} controller(s): first start {:.1}s ({:.0} first status writes/s), {} requests refused with 429, {} failed passes, {} failed lambda calls, controllers {:.2} cores, control plane {:.2} cores",
        flags.len(),
        r.took_s,
        r.status_writes_per_s,
        r.refused_429,
        r.failed_passes,
        r.lambda_failures,
        r.controllers_cores,
        r.control_plane_cores
    );
    Ok(r)
}

fn figures(k: &str, readings: &[Reading]) -> Vec<Figure> {
    let each = |f: fn(&Reading) -> f64| readings.iter().map(f).collect::<Vec<f64>>();
    let figure = |what: &str, unit: &str, f: fn(&Reading) -> f64| {
        Figure::new("first-start", &format!("{k}: {what}"), unit, each(f))
    };
    vec![
        figure("first start to all polled and written", "s", |r| r.took_s),
        figure("first status writes", "/s", |r| r.status_writes_per_s),
        figure("requests refused with 429", "", |r| r.refused_429),
        figure("failed passes", "", |r| r.failed_passes),
        figure("failed lambda calls", "", |r| r.lambda_failures),
        figure("controllers' CPU", "cores", |r| r.controllers_cores),
        figure("control plane's CPU", "cores", |r| r.control_plane_cores),
    ]
}

pub async fn run(opts: &Opts) -> Result<Vec<Figure>> {
    let n = opts.scale_sizes.first().copied().unwrap_or(20_000);
    let k = format!("{}k", n / 1000);
    let mut out = Vec::new();
    for (shards, label) in [
        (0, format!("{k}, one controller")),
        (SHARDS, format!("{k}, {SHARDS} shards")),
    ] {
        let mut readings = Vec::new();
        for _ in 0..opts.runs {
            readings.push(reading(opts, n, shards).await?);
        }
        out.extend(figures(&label, &readings));
    }
    Ok(out)
}
