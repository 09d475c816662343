//! Benchmark `push`: from a commit pushed to the git host to the PipelineRun it causes, through
//! the git host's push webhook on `modelsync lambdas` and the controller's hook receiver, with
//! the defaults a user has: `pollInterval` 1m and the mirror's 10s period. Without the hooks
//! the same change waits for the next mirror sync and then the next poll (up to 70s).
//!
//! Each sample: push a new model record (the deployer's lambda flips to yes), call the webhook
//! as the host would, time until the run is in a watch; then finish the run, push the pin to
//! that model (as merging the bump PR would) with its webhook, and wait until the lambda and
//! the ModelSync say no again before the next sample.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::api::{Api, Patch, PatchParams};
use modelsync_api::ModelSync;
use modelsync_testenv::git::{GitDaemon, git};
use modelsync_testenv::process::{Guarded, free_port, log_tail};
use modelsync_testenv::tekton::{self, RunEnd};
use modelsync_testenv::{ControllerCommand, spawn_controller};
use serde_json::{Value, json};

use crate::Opts;
use crate::env;
use crate::report::{Figure, percentile};

const NS: &str = "bench-push";
const TOKEN: &str = "bench-receiver-token";
const SECRET: &str = "bench-git-hook-secret";
/// Samples per run; `MODELSYNC_BENCH_PUSH_SAMPLES` overrides it (a smoke test uses 2).
const SAMPLES: usize = 100;
const WAIT: Duration = Duration::from_secs(60);

fn model(id: &str) -> String {
    format!("id: {id}\ncreated: 2099-01-01T00:00:00Z\n")
}

fn pin(id: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: model}}\ndata:\n  model: {id}\n")
}

struct Repo {
    _daemon: GitDaemon,
    url: String,
    work: std::path::PathBuf,
}

impl Repo {
    fn start(dir: &Path) -> Result<Repo> {
        let served = dir.join("served");
        std::fs::create_dir_all(&served)?;
        git(
            &served,
            &["init", "-q", "--bare", "-b", "main", "gitops.git"],
        )?;
        let daemon = GitDaemon::start(&served, Ipv4Addr::LOCALHOST.into(), &dir.join("git.log"))?;
        let url = daemon.url("gitops.git");
        git(dir, &["clone", "-q", &url, "work"])?;
        let work = dir.join("work");
        git(&work, &["checkout", "-q", "-B", "main"])?;
        Ok(Repo {
            _daemon: daemon,
            url,
            work,
        })
    }

    fn push(&self, files: &[(&str, &str)], message: &str) -> Result<String> {
        for (path, text) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().context("a file in a folder")?)?;
            std::fs::write(p, text)?;
        }
        git(&self.work, &["add", "-A"])?;
        git(&self.work, &["commit", "-q", "-m", message])?;
        git(&self.work, &["push", "-q", "origin", "main"])?;
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

/// The push webhook as GitHub sends it.
async fn webhook(http: &reqwest::Client, lambdas: &str, after: &str) -> Result<()> {
    let body =
        json!({"ref": "refs/heads/main", "after": after, "repository": {"default_branch": "main"}})
            .to_string();
    let r = http
        .post(format!("{lambdas}/hooks/git"))
        .header("X-GitHub-Event", "push")
        .header(
            "X-Hub-Signature-256",
            modelsync_api::hook::sign(SECRET.as_bytes(), body.as_bytes()),
        )
        .body(body)
        .send()
        .await?;
    if r.status() != 202 {
        bail!(
            "the push webhook answered {}: {}",
            r.status(),
            r.text().await?
        );
    }
    Ok(())
}

async fn until<T, F: Future<Output = Option<T>>>(what: &str, check: impl Fn() -> F) -> Result<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// What the deployer's lambda answers now, for an error: a missing run is most often an answer
/// that never said yes, and its reason says why.
async fn answer(http: &reqwest::Client, lambdas: &str) -> String {
    let asked = async {
        http.get(format!("{lambdas}/deploy"))
            .send()
            .await?
            .text()
            .await
    };
    match asked.await {
        Ok(body) => format!("the lambda answers {body}"),
        Err(e) => format!("the lambda could not be asked: {e}"),
    }
}

/// The deployer's answer says no at `commit`, and the ModelSync has no run active.
async fn settled(
    http: &reqwest::Client,
    lambdas: &str,
    modelsyncs: &Api<ModelSync>,
    commit: &str,
) -> Result<()> {
    let short = &commit[..12];
    until(&format!("the lambda to say no at {short}"), || async {
        let v: Value = http
            .get(format!("{lambdas}/deploy"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["revision"] == short && v["needsSync"] == false).then_some(())
    })
    .await?;
    until("the deployer to be idle", || async {
        let s = modelsyncs.get("deployer").await.ok()?.status?;
        (s.active.is_empty() && s.last_decision.is_some_and(|d| !d.needs_sync)).then_some(())
    })
    .await
}

pub async fn run(opts: &Opts) -> Result<Vec<Figure>> {
    let samples = std::env::var("MODELSYNC_BENCH_PUSH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SAMPLES);
    let (cp, client) = env::control_plane().await?;
    modelsync_testenv::create_namespace(&client, NS).await?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let repo = Repo::start(d)?;
    let mut commit = repo.push(
        &[
            ("manifests/model.yaml", &pin("m0")),
            ("models/m0.yaml", &model("m0")),
        ],
        "m0, pinned",
    )?;

    std::fs::write(d.join("token"), TOKEN)?;
    std::fs::write(d.join("secret"), SECRET)?;
    let receiver_port = free_port()?;
    let log_level = std::env::var("MODELSYNC_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let command = ControllerCommand::new(&opts.modelsync, cp.kubeconfig())
        .namespace(NS)
        .arg(format!(
            "--receiver-token-file={}",
            d.join("token").display()
        ))
        .arg(format!("--receiver-addr=127.0.0.1:{receiver_port}"))
        // MODELSYNC_BENCH_LOG=info (or debug) makes a failed run's error show what the
        // controller did; the default keeps its log out of the way of the timings.
        .env("RUST_LOG", &log_level)
        .log_dir(d);
    let mut controller = spawn_controller(command)?;
    controller.wait_healthy(Duration::from_secs(120)).await?;

    let port = free_port()?;
    let lambdas = format!("http://127.0.0.1:{port}");
    let config = d.join("lambdas.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\n\
             mirror: {{repo: \"{}\", ref: main, root: \"{}\"}}\n\
             models: {{records: models/}}\n\
             notify: {{url: \"http://127.0.0.1:{receiver_port}/hook/lambda-changed\", tokenFile: token, publicBaseUrl: \"{lambdas}\"}}\n\
             gitHook: {{secretFile: secret}}\n\
             routes:\n  /deploy: {{lambda: deploy-if-newer, file: manifests/model.yaml, yamlPath: data.model}}\n",
            repo.url,
            d.join("mirror").display()
        ),
    )?;
    let log = d.join("lambdas.log");
    let _server = Guarded::spawn(
        "lambdas",
        &opts.modelsync,
        &[
            "lambdas".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        &log,
    )?;
    let http = reqwest::Client::new();
    until("the lambda server to be ready", || async {
        let r = http.get(format!("{lambdas}/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await
    .with_context(|| log_tail(&log, 20))?;

    let modelsyncs: Api<ModelSync> = Api::namespaced(client.clone(), NS);
    let mut ms = env::modelsync("deployer", &format!("{lambdas}/deploy"), "1m");
    ms["spec"]["successfulPipelineRunsHistoryLimit"] = 1.into();
    modelsyncs
        .patch(
            "deployer",
            &PatchParams::apply("bench").force(),
            &Patch::Apply(ms),
        )
        .await?;
    let (seen, _watch) = env::watch_runs(Api::namespaced_with(
        client.clone(),
        NS,
        &tekton::pipelinerun_resource(),
    ));
    settled(&http, &lambdas, &modelsyncs, &commit).await?;

    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    let mut k = 0;
    for r in 0..opts.runs {
        let mut lat = Vec::with_capacity(samples);
        for _ in 0..samples {
            k += 1;
            let id = format!("m{k}");
            commit = repo.push(&[(&format!("models/{id}.yaml"), &model(&id))], &id)?;
            let pushed = Instant::now();
            webhook(&http, &lambdas, &commit).await?;
            let waited = until(&format!("a run for {id}"), || async {
                seen.lock().unwrap().get(&id).cloned()
            })
            .await;
            let (at, run) = match waited {
                Ok(found) => found,
                Err(e) => bail!("{e}; {}", answer(&http, &lambdas).await),
            };
            lat.push(at.saturating_duration_since(pushed).as_secs_f64() * 1000.0);
            tekton::finish(&client, NS, &run, RunEnd::Succeeded).await?;
            // The bump PR merged: the pin follows, and the deployer goes back to no.
            commit = repo.push(&[("manifests/model.yaml", &pin(&id))], &format!("pin {id}"))?;
            webhook(&http, &lambdas, &commit).await?;
            if let Err(e) = settled(&http, &lambdas, &modelsyncs, &commit).await {
                let (annotations, status) = match modelsyncs.get("deployer").await {
                    Ok(m) => (
                        format!("{:?}", m.metadata.annotations),
                        serde_json::to_string_pretty(&m.status).unwrap_or_default(),
                    ),
                    Err(e) => (String::new(), e.to_string()),
                };
                bail!(
                    "{e} (sample {id}); annotations {annotations}\nstatus: {status}\ncontroller log:\n{}",
                    controller.log_tail()
                );
            }
        }
        eprintln!(
            "   run {}: {} pushes, push→run p50 {:.0} ms, p99 {:.0} ms",
            r + 1,
            lat.len(),
            percentile(&lat, 50.0),
            percentile(&lat, 99.0)
        );
        p50.push(percentile(&lat, 50.0));
        p99.push(percentile(&lat, 99.0));
    }
    if controller.exited().is_some() {
        bail!("the controller exited during the benchmark");
    }
    Ok(vec![
        Figure::new(
            "push",
            "commit pushed→run p50 (1m poll, 10s mirror)",
            "ms",
            p50,
        ),
        Figure::new(
            "push",
            "commit pushed→run p99 (1m poll, 10s mirror)",
            "ms",
            p99,
        )
        .with_target("< 2000", |v, _| v < 2_000.0),
    ])
}
