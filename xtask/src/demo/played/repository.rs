//! The played story's GitOps repository and the lambda server mirroring it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use modelsync_testenv::gitops_repo::{GitOpsRepo, record};
use modelsync_testenv::process::{Guarded, free_port, log_tail};

use crate::demo::narrate::Narrator;

const MANIFEST: &str =
    "# The model the production lambda serves. modelsync's deployer bumps it by pull request.
apiVersion: v1
kind: ConfigMap
metadata:
  name: label-bot-model
  namespace: label-bot
data:
  model: m-20261101   # pinned model id
";

/// The lambda server, running.
pub struct Lambdas {
    pub process: Guarded,
    /// `127.0.0.1:<port>`
    pub addr: String,
}

impl Lambdas {
    /// Where its routes are.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Seeds the repository under `dir` with one old model and a manifest pinning it, and starts
/// the lambda server (the `modelsync` binary `bin`) mirroring it.
pub async fn repository_and_lambdas(
    say: Narrator,
    bin: &Path,
    dir: &Path,
) -> Result<(GitOpsRepo, Lambdas)> {
    let repo = seed(dir)?;
    say.say(
        "git",
        format!(
            "seeded the GitOps repository {}:\n  models/m-20261101.yaml    the only model, created 2026-11-01\n  manifests/model.yaml      ConfigMap pinning data.model: m-20261101",
            repo.bare.display()
        ),
    );
    let lambdas = start_lambdas(bin, &repo, dir).await?;
    say.say(
        "lambdas",
        format!(
            "modelsync lambdas on {}, mirroring the repository every 1s:\n  /needsTrain  retrain-if-stale, maxAge 24h\n  /needsSync   deploy-if-newer: newest model vs data.model in manifests/model.yaml",
            lambdas.addr
        ),
    );
    Ok((repo, lambdas))
}

fn seed(dir: &Path) -> Result<GitOpsRepo> {
    let work = dir.join("work");
    for folder in ["models", "manifests", "data"] {
        std::fs::create_dir_all(work.join(folder))?;
    }
    std::fs::write(
        work.join("data/issues.csv"),
        "id,title,label\n1,crash on start,bug\n",
    )?;
    std::fs::write(work.join("manifests/model.yaml"), MANIFEST)?;
    std::fs::write(
        work.join("models/m-20261101.yaml"),
        record("m-20261101", "2026-11-01T08:00:00Z", "0000000"),
    )?;
    GitOpsRepo::publish(
        &work,
        &dir.join("gitops.git"),
        "Label bot: data, first model, production pin",
    )
}

async fn start_lambdas(bin: &Path, repo: &GitOpsRepo, dir: &Path) -> Result<Lambdas> {
    let port = free_port()?;
    let config = dir.join("lambdas.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}
mirror:
  repo: {url}
  ref: main
  root: mirror
  period: 1s
models:
  records: models/
routes:
  /needsTrain: {{lambda: retrain-if-stale, maxAge: 24h}}
  /needsSync: {{lambda: deploy-if-newer, file: manifests/model.yaml, yamlPath: data.model, parameter: model}}
",
            url = repo.file_url()
        ),
    )?;
    let log = dir.join("lambdas.log");
    let mut process = Guarded::spawn(
        "lambdas",
        bin,
        &[
            "lambdas".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        &log,
    )?;
    let addr = format!("127.0.0.1:{port}");
    wait_ready(&format!("http://{addr}/readyz"), &mut process).await?;
    Ok(Lambdas { process, addr })
}

async fn wait_ready(url: &str, process: &mut Guarded) -> Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if let Some(status) = process.exited() {
            bail!(
                "{} exited ({status}):\n{}",
                process.name(),
                log_tail(process.log(), 20)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{url} not ready after 60s:\n{}",
                log_tail(process.log(), 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
