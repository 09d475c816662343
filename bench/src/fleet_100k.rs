//! Scale at 100,000 ModelSyncs (`cargo xtask bench scale-100k`): one controller, then 4 shards
//! of 25,000, each ModelSync polled every 60 s with one finished run, measured as section 2
//! measures 10k (cold start, polls achieved, lag, CPU, peak RSS, idle writes).
//!
//! Creating 200,000 objects takes minutes, so each fleet is made once and kept: etcd's data
//! folder lives in the benchmark cache (`<cache>/modelsync/bench/…`), keyed by the fleet's shape
//! and the API version, and a marker file says the fleet is complete. A cut-short creation resumes.
//! `MODELSYNC_BENCH_PREPARE_ONLY=1` makes the fleets and measures nothing.
//! The unsharded fleet and the sharded one are two folders: a controller without `--shard`
//! takes only ModelSyncs without the shard label, so the two cannot share objects.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use kube::{CustomResourceExt, Resource};
use modelsync_api::ModelSync;
use serde_json::json;

use crate::Opts;
use crate::env::FastLambda;
use crate::fleet::{self, Reading, Shape};
use crate::report::Figure;

const N: usize = 100_000;
const SHARDS: usize = 4;
const NS: &str = "bench-fleet";
/// The fleet's lambda is the benchmark's own, on a port that changes from run to run; the
/// ModelSyncs name it through this stable address, which the benchmark serves.
const LAMBDA_PORT: u16 = 18_731;

/// `<cache>/bench/fleet-<n>-runs<k>-shards<s>-<API version>`. Keyed by the API version, not
/// the CRD's text: the CRDs are applied again at every start, and an added optional field
/// leaves the stored objects valid, so it need not cost a new fleet.
fn etcd_folder(shape: Shape) -> Result<PathBuf> {
    let version = ModelSync::api_version(&()).replace('/', "-");
    let key = format!(
        "bench/fleet-{N}-runs{}-shards{}-{version}",
        shape.runs_each, shape.shards
    );
    Ok(modelsync_testenv::cache::root()?.join(key))
}

/// Starts a control plane on the kept fleet, creating (or completing) it first if needed.
async fn fleet(shape: Shape) -> Result<(modelsync_testenv::ControlPlane, kube::Client)> {
    let dir = etcd_folder(shape)?;
    let complete = dir.join("complete");
    let cp =
        modelsync_testenv::start_with_crds_keeping_etcd(&[ModelSync::crd()], &dir.join("etcd"))
            .await?;
    let client = cp.client().await?;
    if !complete.exists() {
        eprintln!(
            "   making the {N}-ModelSync fleet ({} shards) once, kept in {}",
            shape.shards,
            dir.display()
        );
        let started = Instant::now();
        modelsync_testenv::create_namespace(&client, NS).await?;
        let url = format!("http://127.0.0.1:{LAMBDA_PORT}/needsSync");
        let step = 10_000;
        for from in (0..N).step_by(step) {
            fleet::populate_shaped(&client, NS, from, (from + step).min(N), &url, shape).await?;
        }
        std::fs::write(
            &complete,
            format!("{:.0}s\n", started.elapsed().as_secs_f64()),
        )
        .with_context(|| format!("writing {}", complete.display()))?;
        eprintln!("   fleet made in {:.0}s", started.elapsed().as_secs_f64());
    } else {
        let took = std::fs::read_to_string(&complete).unwrap_or_default();
        eprintln!(
            "   reusing the fleet in {} (made in {})",
            dir.display(),
            took.trim()
        );
    }
    Ok((cp, client))
}

async fn reading(opts: &Opts, shape: Shape) -> Result<Reading> {
    let lambda = FastLambda::start_on(
        LAMBDA_PORT,
        Arc::new(|_: &str| json!({"needsSync": false, "reason": "bench"})),
    )
    .await?;
    let (cp, client) = fleet(shape).await?;
    warm(&client).await?;
    let logs = tempfile::tempdir()?;
    fleet::measure_with(
        &cp,
        &client,
        opts,
        NS,
        N,
        &lambda,
        logs.path(),
        &shape.controllers(),
    )
    .await
}

/// Waits until the API server serves watches of ModelSyncs and PipelineRuns from its watch
/// cache. A fresh API server on a kept fleet first loads 200,000 objects from etcd, and until
/// then it refuses watches (429): that is the API server starting, not the controller. The
/// measurement is a controller (re)starting against a running API server; how long the
/// server's own start took is printed beside it.
async fn warm(client: &kube::Client) -> Result<()> {
    let started = Instant::now();
    let modelsyncs: kube::Api<ModelSync> = kube::Api::all(client.clone());
    let pipelineruns: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(
        client.clone(),
        &modelsync_testenv::tekton::pipelinerun_resource(),
    );
    let wp = kube::api::WatchParams::default()
        .fields("metadata.name=.bench-warm-probe")
        .timeout(1);
    let deadline = started + std::time::Duration::from_secs(600);
    loop {
        let (a, b) = (
            modelsyncs.watch(&wp, "0").await,
            pipelineruns.watch(&wp, "0").await,
        );
        match (a, b) {
            (Ok(_), Ok(_)) => break,
            (Err(e), _) | (_, Err(e)) if Instant::now() > deadline => {
                anyhow::bail!("the API server's watch caches were not ready in 600s: {e}")
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
    eprintln!(
        "   API server's watch caches ready {:.1}s after it answered (not counted in the cold start)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn figures(k: &str, readings: &[Reading], rss_target_mb: f64) -> Vec<Figure> {
    let mut f = fleet::scale_figures(k, readings);
    f[0] = f[0].clone().with_target("< 120", |v, _| v < 120.0);
    f[1] = f[1].clone().with_target("≥ 99", |v, _| v >= 99.0);
    f[4] = f[4].clone().with_target("< 2", |v, _| v < 2.0);
    f[6] = f[6]
        .clone()
        .with_target(&format!("< {rss_target_mb:.0}"), move |v, _| {
            v < rss_target_mb
        });
    f[7] = f[7].clone().with_target("0", |v, _| v == 0.0);
    f
}

/// Which of the two measurements: one controller, or 4 shards of 25,000.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Replicas {
    One,
    Shards,
}

pub async fn run(opts: &Opts, replicas: Replicas) -> Result<Vec<Figure>> {
    let one = Shape {
        runs_each: 1,
        shards: 0,
    };
    let sharded = Shape {
        runs_each: 1,
        shards: SHARDS,
    };
    if std::env::var_os("MODELSYNC_BENCH_PREPARE_ONLY").is_some() {
        // Makes the kept fleets and stops: their creation is load, not a measurement, and
        // can run while the machine is busy with something else.
        for shape in [one, sharded] {
            drop(fleet(shape).await?);
        }
        return Ok(Vec::new());
    }
    let mut readings = Vec::new();
    if replicas == Replicas::One {
        for _ in 0..opts.runs {
            readings.push(reading(opts, one).await?);
        }
        return Ok(figures("100k, one controller", &readings, 1024.0));
    }
    for _ in 0..opts.runs {
        readings.push(reading(opts, sharded).await?);
    }
    Ok(figures("100k, 4 shards of 25k", &readings, 300.0))
}
