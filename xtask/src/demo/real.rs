//! The demo on a real node: containerd and kubelet run the pods, the real Tekton Pipelines runs
//! the repository's Tasks, and modelsync runs from its own image, installed from `kustomize/`.
//! Only GitHub's pull request API is played, by a local stand-in.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::watcher;
use modelsync_api::ModelSync;
use modelsync_api::modelsync::LABEL_NAME;
use modelsync_testenv::image::{modelsync as ms_image, python};
use modelsync_testenv::kubectl::kubectl;
use modelsync_testenv::labelbot::{DEPLOYER, Images, LabelBot, NAMESPACE, TRAINER};
use modelsync_testenv::node::Node;
use modelsync_testenv::tekton::pipelineruns;
use modelsync_testenv::tekton_real;
use serde_json::json;

use super::{Narrator, narrate_modelsync, narrate_new_run};

/// Whether this machine can run a real node, and if not, why (naming what to install).
pub fn possible() -> Result<(), String> {
    modelsync_testenv::node::preflight().map_err(|e| format!("{e:#}"))
}

/// What the story waits for, in order.
#[derive(Default)]
struct Progress {
    trained: Option<String>,
    merged: Vec<String>,
    newer_model: Option<String>,
    deploy_run_collected: bool,
}

pub async fn story(ci: bool, say: Narrator) -> Result<()> {
    say.say(
        "demo",
        "the modelsync loop on a real node. Real: kube-apiserver, etcd, kube-controller-manager,\n\
         containerd, kubelet, kube-scheduler, kube-proxy, the Tekton Pipelines controller and\n\
         webhook, modelsync's controller and lambda server as pods of its own image, the\n\
         repository's Tasks in real containers, git. Played here: GitHub's PR API only.",
    );
    say.say(
        "build",
        "images without a container engine: modelsync (release binary, Dockerfile recipe) and the\nnotebook image (the first run builds them; later runs reuse them)",
    );
    let (modelsync, python) = tokio::task::spawn_blocking(|| -> Result<_> {
        Ok((ms_image::modelsync_image()?, python::python_image()?))
    })
    .await??;
    say.say(
        "cluster",
        "starting the control plane and a node: containerd, kubelet, kube-scheduler, kube-proxy",
    );
    let node = Node::start().await?;
    say.say(
        "cluster",
        format!(
            "node Ready in {:.1}s; kubeconfig: {}",
            node.started_in().as_secs_f64(),
            node.kubeconfig().display()
        ),
    );
    for tar in [&modelsync.tar, &python.tar] {
        node.import_image(tar)?;
    }
    say.say(
        "cluster",
        format!(
            "imported {} and {} into the node",
            modelsync.name, python.name
        ),
    );
    let tekton = tekton_real::install(node.kubeconfig(), node.containerd_socket()).await?;
    say.say(
        "tekton",
        format!(
            "Tekton Pipelines {} running in namespace {} ({:.1}s after apply): controller and webhook pods",
            tekton.version,
            tekton.namespace,
            tekton.ready_after_apply.as_secs_f64()
        ),
    );
    let client = node.client().await?;
    let images = Images {
        modelsync: modelsync.name.clone(),
        python: python.name.clone(),
    };
    let lb = LabelBot::start(
        &client,
        node.kubeconfig(),
        node.bridge_ip().into(),
        &images,
        &|line| say.say("setup", line),
    )
    .await?;
    // One finished run of each kept, so the story shows the controller collecting one.
    let modelsyncs: Api<ModelSync> = Api::namespaced(client.clone(), NAMESPACE);
    for name in [TRAINER, DEPLOYER] {
        modelsyncs
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"successfulPipelineRunsHistoryLimit": 1}})),
            )
            .await?;
    }

    let mut ms_events = watcher(modelsyncs.clone(), watcher::Config::default()).boxed();
    let runs = pipelineruns(&client, NAMESPACE);
    let mut run_events = watcher(runs.clone(), watcher::Config::default()).boxed();
    let mut seen_decisions = HashMap::<String, String>::new();
    let mut told = HashSet::<String>::new();
    let mut progress = Progress::default();
    let deadline = Instant::now() + Duration::from_secs(1200);
    loop {
        if Instant::now() > deadline {
            bail!(
                "the demo stalled; what the cluster shows:\n{}",
                kubectl(
                    node.kubeconfig(),
                    &[
                        "get",
                        "msync,pipelineruns,pods",
                        "-n",
                        NAMESPACE,
                        "-o",
                        "wide"
                    ]
                )
                .unwrap_or_default()
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
                    if let Some(merged) = narrate_run(say, &run, &mut told, &lb, &mut progress)? {
                        progress.merged.push(merged);
                    }
                }
                Ok(watcher::Event::Delete(run)) => {
                    let name = run.name_any();
                    say.say("gc", format!("controller collected old run {name} (history limit 1); Kubernetes deleted its TaskRuns and pods"));
                    if run.labels().get(LABEL_NAME).map(String::as_str) == Some(DEPLOYER) {
                        progress.deploy_run_collected = true;
                    }
                }
                _ => {}
            },
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if progress.trained.is_some()
            && !progress.merged.is_empty()
            && progress.newer_model.is_none()
        {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let id = format!("m-{}-registered", chrono::Utc::now().format("%Y%m%d%H%M%S"));
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let commit = lb.add_model(&id, &now)?;
            say.say(
                "git",
                format!(
                    "a newer model arrives: a data scientist committed models/{id}.yaml ({}); the deployer should react",
                    &commit[..10]
                ),
            );
            progress.newer_model = Some(id);
        }
        let newer_merged = progress
            .newer_model
            .as_ref()
            .is_some_and(|m| progress.merged.contains(m));
        if newer_merged && progress.deploy_run_collected {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    say.say(
        "kubectl",
        format!(
            "kubectl get msync,pipelineruns,pods -n {NAMESPACE}\n{}",
            kubectl(
                node.kubeconfig(),
                &["get", "msync,pipelineruns,pods", "-n", NAMESPACE]
            )?
        ),
    );
    say.say(
        "demo",
        "the story is told: stale model → a real training pod ran the notebook → model recorded →\n\
         a real deploy pod ran `modelsync bump-pr` → one PR, merged → a newer model → the same\n\
         branch, a new PR → old runs collected, with their pods.",
    );
    if ci {
        return Ok(());
    }
    say.say(
        "demo",
        format!(
            "everything keeps running; look around:\n  export KUBECONFIG={}\n  kubectl get msync,pipelineruns,pods -n {NAMESPACE}\n  kubectl logs -n {NAMESPACE} <pod> --all-containers\nCtrl-C stops everything this demo started and cleans the machine.",
            node.kubeconfig().display()
        ),
    );
    std::future::pending::<()>().await;
    Ok(())
}

/// Tells a run's news once per stage; merges a deploy run's pull request as a reviewer would,
/// returning the model it pins.
fn narrate_run(
    say: Narrator,
    run: &DynamicObject,
    told: &mut HashSet<String>,
    lb: &LabelBot,
    progress: &mut Progress,
) -> Result<Option<String>> {
    let name = run.name_any();
    let owner = run.labels().get(LABEL_NAME).cloned().unwrap_or_default();
    if told.insert(format!("{name}/created")) {
        narrate_new_run(say, run);
    }
    let Some((status, reason)) = modelsync_testenv::tekton::succeeded_condition(run) else {
        return Ok(None);
    };
    if status == "Unknown" {
        if reason == "Running" && told.insert(format!("{name}/running")) {
            say.say(
                "tekton",
                format!("{name} Running: Tekton started its TaskRun's pod"),
            );
        }
        return Ok(None);
    }
    if !told.insert(format!("{name}/ended")) {
        return Ok(None);
    }
    if reason != "Succeeded" {
        bail!(
            "{name} ended {reason}: {}\nsee `kubectl logs -n {NAMESPACE} -l tekton.dev/pipelineRun={name} --all-containers`",
            run.data["status"]["conditions"][0]["message"]
        );
    }
    let result = |k: &str| -> String {
        run.data["status"]["results"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["name"] == k))
            .and_then(|r| r["value"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    if owner == TRAINER {
        let model = result("model-id");
        say.say(
            "tekton",
            format!(
                "{name} Succeeded: the notebook trained model {model} in a pod (papermill); recorded models/{model}.yaml (commit {})",
                result("record-commit").chars().take(10).collect::<String>()
            ),
        );
        progress.trained = Some(model);
        return Ok(None);
    }
    let (status, url, number) = (result("status"), result("pr-url"), result("pr-number"));
    let diff = lb.branch_diff().unwrap_or_default();
    say.say(
        "tekton",
        format!(
            "{name} Succeeded: ran `modelsync bump-pr` → PR #{number} {status} ({url}), commit {}\n{diff}",
            result("commit-sha").chars().take(10).collect::<String>()
        ),
    );
    let Ok(n) = number.parse::<u64>() else {
        return Ok(None);
    };
    let pr = lb
        .github
        .pr(n)
        .with_context(|| format!("the GitHub stand-in has no PR #{n}"))?;
    say.say(
        "github*",
        format!("PR #{n} \"{}\" (head {})", pr.title, pr.head),
    );
    let model = param(run, "model-id");
    lb.merge(n)?;
    say.say(
        "review",
        format!("a person reviews and merges PR #{n}: production now pins {model}"),
    );
    Ok(Some(model))
}

fn param(run: &DynamicObject, name: &str) -> String {
    modelsync_testenv::tekton::param(run, name)
        .unwrap_or_default()
        .to_owned()
}
