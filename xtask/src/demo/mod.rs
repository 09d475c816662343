//! `cargo xtask demo`: the whole modelsync loop on a local control plane, narrated.
//!
//! Real: kube-apiserver, etcd, kube-controller-manager, Tekton's CRDs, the `modelsync`
//! controller, lambda server (with its git mirror) and `bump-pr`, and git. Played locally:
//! Tekton's controller (this program marks runs Running/Succeeded and does their work) and
//! GitHub (a small stand-in for its pull request API).

mod real;
mod repo;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{CustomResourceExt, ResourceExt};
use modelsync_api::ModelSync;
use modelsync_api::modelsync::{
    ANNOTATION_PARAMETERS, ANNOTATION_REASON, ANNOTATION_REVISION, LABEL_NAME,
};
use modelsync_testenv::process::{Guarded, free_port, log_tail};
use modelsync_testenv::tekton::{self, RunEnd};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use modelsync_testenv::github::GitHub;
use repo::Repo;

const NS: &str = "modelsync-demo";
const BRANCH: &str = "modelsync/deployer";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Non-interactive: exit (0) when the story is told, non-zero if a step does not happen
    /// within its time.
    #[arg(long)]
    ci: bool,
    /// Play Tekton's controller (no node, no pods) even where a real node could run.
    #[arg(long)]
    played: bool,
}

/// Prints timestamped story lines.
#[derive(Clone, Copy)]
struct Narrator(Instant);

impl Narrator {
    fn say(&self, who: &str, what: impl AsRef<str>) {
        let t = self.0.elapsed().as_secs_f64();
        let mut lines = what.as_ref().lines();
        println!("[{t:6.1}s] {who:<10} {}", lines.next().unwrap_or_default());
        for l in lines {
            println!("{:20}{l}", "");
        }
    }
}

pub fn run(args: DemoArgs) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        tokio::select! {
            r = choose(args) => r,
            r = tokio::signal::ctrl_c() => {
                r?;
                eprintln!("\ninterrupted: stopping the controller, lambda server and control plane");
                Ok(())
            }
        }
    })
}

fn workspace() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// Builds the `modelsync` binary the demo runs, and returns its path.
fn build_modelsync(say: Narrator) -> Result<PathBuf> {
    say.say(
        "build",
        "cargo build -p modelsync (the one binary every component runs)",
    );
    let status = modelsync_testenv::cargo::command()
        .args(["build", "--quiet", "-p", "modelsync"])
        .current_dir(workspace())
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build -p modelsync failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    Ok(target.join("debug/modelsync"))
}

/// What the story waits for, in order.
#[derive(Default)]
struct Progress {
    trained: bool,
    first_pr_merged: bool,
    /// The model a data scientist adds in the second act.
    newer_model: Option<String>,
    newer_model_merged: bool,
    deploy_run_collected: bool,
}

enum Note {
    Trained,
    /// A bump PR was merged, pinning this model.
    Merged(String),
}

/// The real node where the machine allows it, the played Tekton elsewhere; says which and why.
async fn choose(args: DemoArgs) -> Result<()> {
    let say = Narrator(Instant::now());
    if args.played {
        say.say(
            "demo",
            "--played: Tekton's controller is played; no node, no pods",
        );
        return story(args.ci, say).await;
    }
    match real::possible() {
        Ok(()) => {
            say.say("demo", "this machine can run a real node (Linux, root, containerd, runc, CNI plugins, iptables): the real loop");
            real::story(args.ci, say).await
        }
        Err(why) => {
            say.say(
                "demo",
                format!("no real node here, so Tekton's controller is played instead: {why}"),
            );
            story(args.ci, say).await
        }
    }
}

async fn story(ci: bool, say: Narrator) -> Result<()> {
    say.say(
        "demo",
        "the modelsync loop on a local control plane. Real: kube-apiserver, etcd, \
         kube-controller-manager,\nTekton's CRDs, the modelsync controller, lambda server and \
         bump-pr, git. Played here: Tekton's\ncontroller (this demo marks runs running and \
         succeeded, and does their work) and GitHub's PR API.",
    );
    let bin = build_modelsync(say)?;

    say.say(
        "cluster",
        "starting etcd, kube-apiserver, kube-controller-manager (the first run builds them)",
    );
    let cp = modelsync_testenv::start_with_crds(&[ModelSync::crd()]).await?;
    let client = cp.client().await?;
    say.say(
        "cluster",
        format!(
            "ready at {}; CRDs: modelsyncs.modelsync.dev and Tekton's tekton.dev/v1\nkubeconfig: {}",
            cp.server(),
            cp.kubeconfig().display()
        ),
    );

    let dir = tempfile::Builder::new()
        .prefix("modelsync-demo-")
        .tempdir()?;
    let repo = Repo::seed(dir.path())?;
    say.say(
        "git",
        format!(
            "seeded the GitOps repository {}:\n  models/m-20261101.yaml    the only model, created 2026-11-01\n  manifests/model.yaml      ConfigMap pinning data.model: m-20261101",
            repo.bare.display()
        ),
    );
    let (gh, gh_api) = GitHub::start().await?;
    let token = dir.path().join("github-token");
    std::fs::write(&token, "demo-token-not-secret\n")?;

    // The lambda server, mirroring the repository.
    let port = free_port()?;
    let config = dir.path().join("lambdas.yaml");
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
            url = repo.url()
        ),
    )?;
    let lambdas_log = dir.path().join("lambdas.log");
    let mut lambdas = Guarded::spawn(
        "lambdas",
        &bin,
        &[
            "lambdas".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        &lambdas_log,
    )?;
    wait_http(
        &format!("http://127.0.0.1:{port}/readyz"),
        &mut lambdas,
        &lambdas_log,
    )
    .await?;
    say.say(
        "lambdas",
        format!(
            "modelsync lambdas on 127.0.0.1:{port}, mirroring the repository every 1s:\n  /needsTrain  retrain-if-stale, maxAge 24h\n  /needsSync   deploy-if-newer: newest model vs data.model in manifests/model.yaml"
        ),
    );

    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(NS.into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await?;
    let controller_log = dir.path().join("controller.log");
    let _controller = Guarded::spawn(
        "controller",
        Path::new("env"),
        &[
            format!("KUBECONFIG={}", cp.kubeconfig().display()),
            "RUST_LOG=warn".into(),
            bin.display().to_string(),
            "controller".into(),
            format!("--namespace={NS}"),
            "--metrics-addr=127.0.0.1:0".into(),
        ],
        &controller_log,
    )?;
    say.say(
        "controller",
        format!("modelsync controller watching namespace {NS}"),
    );

    let modelsyncs: Api<ModelSync> = Api::namespaced(client.clone(), NS);
    let lambda = format!("http://127.0.0.1:{port}");
    for body in [
        json!({
            "apiVersion": "modelsync.dev/v1alpha1", "kind": "ModelSync",
            "metadata": {"name": "trainer"},
            "spec": {
                "needsSyncUrl": format!("{lambda}/needsTrain"),
                "pollInterval": "2s",
                "successfulPipelineRunsHistoryLimit": 1,
                "pipelineRunTemplate": {"spec": {
                    "pipelineRef": {"name": "retrain"},
                    "params": [{"name": "notebook-path", "value": "notebooks/train.ipynb"}],
                }},
            },
        }),
        json!({
            "apiVersion": "modelsync.dev/v1alpha1", "kind": "ModelSync",
            "metadata": {"name": "deployer"},
            "spec": {
                "needsSyncUrl": format!("{lambda}/needsSync"),
                "pollInterval": "2s",
                "successfulPipelineRunsHistoryLimit": 1,
                "parameters": [{"needsSyncName": "model", "pipelineName": "model-id"}],
                "pipelineRunTemplate": {"spec": {
                    "pipelineRef": {"name": "update-model-pr"},
                    "params": [{"name": "model-id", "value": ""}],
                }},
            },
        }),
    ] {
        let name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        modelsyncs
            .patch(
                &name,
                &PatchParams::apply("modelsync-demo"),
                &Patch::Apply(body),
            )
            .await?;
    }
    say.say(
        "kubectl",
        "applied ModelSync trainer (→ pipeline retrain) and deployer (→ pipeline update-model-pr)",
    );

    let (notes_tx, mut notes) = mpsc::unbounded_channel::<Note>();
    let mut ms_events = watcher(modelsyncs.clone(), watcher::Config::default()).boxed();
    let runs_api = tekton::pipelineruns(&client, NS);
    let mut run_events = watcher(runs_api.clone(), watcher::Config::default()).boxed();
    let mut seen_decisions = std::collections::HashMap::<String, String>::new();
    let mut seen_runs = HashSet::<String>::new();
    let mut progress = Progress::default();
    let play = Player {
        client: client.clone(),
        bin: bin.clone(),
        repo: &repo,
        gh: gh.clone(),
        gh_api: gh_api.clone(),
        token: token.clone(),
        results: dir.path().join("results"),
        say,
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut waiting_for = "the trainer's first run";
    loop {
        if Instant::now() > deadline {
            bail!(
                "the demo stalled waiting for {waiting_for}; controller log:\n{}\nlambda server log:\n{}",
                log_tail(&controller_log, 20),
                log_tail(&lambdas_log, 20)
            );
        }
        tokio::select! {
            Some(ev) = ms_events.next() => {
                if let Ok(watcher::Event::Apply(ms) | watcher::Event::InitApply(ms)) = ev {
                    narrate_modelsync(say, &ms, &mut seen_decisions);
                }
            }
            Some(ev) = run_events.next() => match ev {
                Ok(watcher::Event::Apply(run) | watcher::Event::InitApply(run)) => {
                    let name = run.name_any();
                    if seen_runs.insert(name.clone()) {
                        narrate_new_run(say, &run);
                        let tx = notes_tx.clone();
                        let outcome = play.play(&run).await;
                        match outcome {
                            Ok(notes) => for n in notes { let _ = tx.send(n); },
                            Err(e) => bail!("playing Tekton for {name} failed: {e:#}"),
                        }
                    }
                }
                Ok(watcher::Event::Delete(run)) => {
                    let name = run.name_any();
                    say.say("gc", format!("controller collected old run {name} (history limit 1)"));
                    if run.labels().get(LABEL_NAME).map(String::as_str) == Some("deployer") {
                        progress.deploy_run_collected = true;
                    }
                }
                _ => {}
            },
            Some(note) = notes.recv() => match note {
                Note::Trained => progress.trained = true,
                Note::Merged(model) => {
                    progress.first_pr_merged = true;
                    if progress.newer_model.as_deref() == Some(model.as_str()) {
                        progress.newer_model_merged = true;
                    }
                }
            },
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if progress.trained && progress.first_pr_merged && progress.newer_model.is_none() {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let id = model_id(1);
            repo.add_model(&id, &now_rfc3339(), "registered by a data scientist")?;
            say.say(
                "git",
                format!(
                    "a newer model arrives: committed models/{id}.yaml; the deployer should react"
                ),
            );
            progress.newer_model = Some(id);
        }
        waiting_for = if !progress.trained {
            "the trainer's run"
        } else if !progress.first_pr_merged {
            "the deployer's first pull request"
        } else if !progress.newer_model_merged {
            "the pull request for the newer model"
        } else {
            "the old deploy run to be collected"
        };
        if progress.newer_model_merged && progress.deploy_run_collected {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let list = modelsyncs.list(&Default::default()).await?;
    let mut table = String::from(
        "kubectl get msync -n modelsync-demo:\nNAME       READY   STATUS    WHY (last decision)",
    );
    for ms in list.items {
        let ready = ms
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned());
        let decision = ms.status.as_ref().and_then(|s| s.last_decision.clone());
        table.push_str(&format!(
            "\n{:<10} {:<7} {:<9} {}",
            ms.name_any(),
            ready.as_ref().map(|c| c.status.as_str()).unwrap_or("-"),
            ready.as_ref().map(|c| c.reason.as_str()).unwrap_or("-"),
            decision.and_then(|d| d.reason).unwrap_or_default()
        ));
    }
    say.say("demo", table);
    say.say(
        "demo",
        "the story is told: stale model → retrain run → new model recorded → deploy run → one PR,\nmerged → a newer model → the same branch, a new PR → old runs collected.",
    );
    if ci {
        return Ok(());
    }
    say.say(
        "demo",
        format!(
            "everything keeps running; look around:\n  export KUBECONFIG={}\n  kubectl get msync,pipelineruns -n {NS}\nCtrl-C stops everything this demo started.",
            cp.kubeconfig().display()
        ),
    );
    std::future::pending::<()>().await;
    Ok(())
}

/// Tells the decision recorded on a new run (its annotations), then the run itself.
fn narrate_new_run(say: Narrator, run: &DynamicObject) {
    let owner = run.labels().get(LABEL_NAME).cloned().unwrap_or_default();
    let note = |k: &str| run.annotations().get(k).cloned().unwrap_or_default();
    let params = note(ANNOTATION_PARAMETERS);
    let params = if params.is_empty() || params == "{}" {
        String::new()
    } else {
        format!(" {params}")
    };
    say.say(
        &owner,
        format!(
            "lambda says YES{params}: {} [commit {}]",
            note(ANNOTATION_REASON),
            note(ANNOTATION_REVISION)
        ),
    );
    say.say(
        &owner,
        format!(
            "controller created PipelineRun {} (pipeline {}{})",
            run.name_any(),
            run.data["spec"]["pipelineRef"]["name"]
                .as_str()
                .unwrap_or("?"),
            params_text(&run.data)
        ),
    );
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A model id like the training notebook makes: `m-<UTC date and time>-<n>`.
fn model_id(n: u32) -> String {
    format!("m-{}-{n}", chrono::Utc::now().format("%Y%m%d-%H%M%S"))
}

fn params_text(run: &Value) -> String {
    let params: Vec<String> = run["spec"]["params"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| format!("{}={}", p["name"].as_str().unwrap_or("?"), p["value"]))
                .collect()
        })
        .unwrap_or_default();
    if params.is_empty() {
        String::new()
    } else {
        format!(", {}", params.join(" "))
    }
}

fn narrate_modelsync(
    say: Narrator,
    ms: &ModelSync,
    seen: &mut std::collections::HashMap<String, String>,
) {
    let Some(status) = &ms.status else { return };
    let name = ms.name_any();
    // A "yes" is told with the run it starts (from the run's annotations); here only "no".
    if let Some(d) = status.last_decision.as_ref().filter(|d| !d.needs_sync) {
        let key = format!("{}|{:?}|{:?}", d.needs_sync, d.parameters, d.revision);
        if seen.get(&name) != Some(&key) {
            seen.insert(name.clone(), key);
            say.say(
                &name,
                format!(
                    "lambda says no: {} [commit {}]",
                    d.reason.as_deref().unwrap_or("(no reason)"),
                    d.revision.as_deref().unwrap_or("?")
                ),
            );
        }
    }
    if let Some(c) = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "False")
    {
        let key = format!("error|{}", c.message);
        if seen.get(&format!("{name}#err")) != Some(&key) {
            seen.insert(format!("{name}#err"), key);
            say.say(&name, format!("{}: {}", c.reason, c.message));
        }
    }
}

/// Plays Tekton's controller and the pipelines' work for one run.
struct Player<'a> {
    client: kube::Client,
    bin: PathBuf,
    repo: &'a Repo,
    gh: GitHub,
    gh_api: String,
    token: PathBuf,
    results: PathBuf,
    say: Narrator,
}

impl Player<'_> {
    async fn play(&self, run: &DynamicObject) -> Result<Vec<Note>> {
        let name = run.name_any();
        tekton::start(&self.client, NS, &name).await?;
        self.say
            .say("tekton*", format!("{name} Running (*played by the demo)"));
        let pipeline = run.data["spec"]["pipelineRef"]["name"]
            .as_str()
            .unwrap_or_default();
        let mut notes = Vec::new();
        match pipeline {
            "retrain" => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let id = model_id(0);
                let commit =
                    self.repo
                        .add_model(&id, &now_rfc3339(), &format!("trained by {name}"))?;
                self.say.say(
                    "tekton*",
                    format!("{name}: notebook trained model {id}; recorded models/{id}.yaml (commit {commit})"),
                );
                notes.push(Note::Trained);
            }
            "update-model-pr" => {
                let model = tekton::param(run, "model-id")
                    .unwrap_or_default()
                    .to_owned();
                let results = self.results.join(&name);
                std::fs::create_dir_all(&results)?;
                let out = tokio::process::Command::new(&self.bin)
                    .args(["bump-pr", "--repo"])
                    .arg(&self.repo.bare)
                    .args([
                        "--github-repo",
                        "demo/label-bot-gitops",
                        "--base",
                        "main",
                        "--branch",
                        BRANCH,
                    ])
                    .args([
                        "--file",
                        "manifests/model.yaml",
                        "--set",
                        &format!("data.model={model}"),
                    ])
                    .args([
                        "--model",
                        &model,
                        "--modelsync",
                        &format!("{NS}/deployer"),
                        "--run",
                        &name,
                    ])
                    .args([
                        "--author",
                        "modelsync bot <bot@modelsync.invalid>",
                        "--github-api",
                        &self.gh_api,
                    ])
                    .arg("--token-file")
                    .arg(&self.token)
                    .arg("--results-dir")
                    .arg(&results)
                    .output()
                    .await?;
                if !out.status.success() {
                    bail!(
                        "modelsync bump-pr failed:\n{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                let read = |f: &str| {
                    std::fs::read_to_string(results.join(f))
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                };
                let (status, url, number, sha) = (
                    read("status"),
                    read("pr-url"),
                    read("pr-number"),
                    read("commit-sha"),
                );
                let diff = self.repo.branch_diff(BRANCH)?;
                self.say.say(
                    "tekton*",
                    format!(
                        "{name}: ran `modelsync bump-pr` → PR #{number} {status} ({url}), commit {}\n{diff}",
                        sha.chars().take(10).collect::<String>()
                    ),
                );
                if let Ok(n) = number.parse::<u64>() {
                    if let Some(pr) = self.gh.pr(n) {
                        self.say.say(
                            "github*",
                            format!("PR #{n} \"{}\" (head {})", pr.title, pr.head),
                        );
                    }
                    self.repo.merge(BRANCH)?;
                    self.gh.mark_merged(n);
                    self.say.say(
                        "review",
                        format!("a person reviews and merges PR #{n}: production now pins {model}"),
                    );
                    notes.push(Note::Merged(model.clone()));
                }
            }
            other => self.say.say(
                "tekton*",
                format!("{name}: pipeline {other} has no demo play; succeeding it"),
            ),
        }
        tekton::finish(&self.client, NS, &name, RunEnd::Succeeded).await?;
        self.say.say("tekton*", format!("{name} Succeeded"));
        Ok(notes)
    }
}

async fn wait_http(url: &str, proc: &mut Guarded, log: &Path) -> Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if let Some(status) = proc.exited() {
            bail!("{} exited ({status}):\n{}", proc.name(), log_tail(log, 20));
        }
        if Instant::now() > deadline {
            bail!("{url} not ready after 60s:\n{}", log_tail(log, 20));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
