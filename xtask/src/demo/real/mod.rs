//! The demo on a real node: containerd and kubelet run the pods, the real Tekton Pipelines runs
//! the repository's Tasks, and modelsync runs from its own image, installed from `kustomize/`.
//! Only GitHub's pull request API is played, by a local stand-in. The trainer's notifications
//! go to three receivers on the node's bridge address, where the controller's pod reaches them.

mod runs;
mod setup;

use std::time::Duration;

use anyhow::{Context, Result};
use kube::api::{Api, Patch, PatchParams};
use modelsync_api::ModelSync;
use modelsync_testenv::kubectl::kubectl;
use modelsync_testenv::labelbot::{DEPLOYER, NAMESPACE, TRAINER};
use serde_json::json;

use super::narrate::Narrator;
use super::watch::Watch;
use super::{acts, notifications};
use runs::Told;

/// Whether this machine can run a real node, and if not, why (naming what to install).
pub fn possible() -> Result<(), String> {
    modelsync_testenv::node::preflight().map_err(|e| format!("{e:#}"))
}

pub async fn story(ci: bool, say: Narrator) -> Result<()> {
    say.say(
        "demo",
        "the modelsync loop on a real node. Real: kube-apiserver, etcd, kube-controller-manager,\n\
         containerd, kubelet, kube-scheduler, kube-proxy, the Tekton Pipelines controller and\n\
         webhook, modelsync's controller and lambda server as pods of its own image, the\n\
         repository's Tasks in real containers, git. Played here: GitHub's PR API only.",
    );
    let (modelsync, python) = setup::build_images(say).await?;
    let node = setup::start_node(say, [&modelsync, &python]).await?;
    setup::install_tekton(say, &node).await?;
    let client = node.client().await?;
    let lb = setup::label_bot(say, &client, &node, &modelsync, &python).await?;
    let logs = tempfile::Builder::new()
        .prefix("modelsync-demo-receivers-")
        .tempdir()?;
    let receivers = notifications::start(
        say,
        &client,
        NAMESPACE,
        node.bridge_ip().into(),
        logs.path(),
    )
    .await?;
    Api::<ModelSync>::namespaced(client.clone(), NAMESPACE)
        .patch(
            TRAINER,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"notify": notifications::spec()}})),
        )
        .await
        .with_context(|| format!("setting {TRAINER}'s spec.notify"))?;

    let told = Told {
        say,
        lb: &lb,
        told: Default::default(),
    };
    let stalled = || {
        let get = [
            "get",
            "msync,pipelineruns,pods",
            "-n",
            NAMESPACE,
            "-o",
            "wide",
        ];
        format!(
            "what the cluster shows:\n{}",
            kubectl(node.kubeconfig(), &get).unwrap_or_default()
        )
    };
    let mut watch = Watch::new(
        say,
        &client,
        NAMESPACE,
        told,
        Duration::from_secs(1200),
        stalled,
    );
    acts::the_trainers_run(&mut watch).await?;
    notifications::show(say, &receivers).await?;
    acts::the_deployers_pull_request(&mut watch).await?;
    acts::the_lineage(say, &client, NAMESPACE, DEPLOYER).await?;
    let id = format!("m-{}-registered", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let newer = acts::a_newer_model_arrives(say, &lb.repo, id).await?;
    acts::its_pull_request(&mut watch, &newer).await?;
    acts::old_runs_collected(&mut watch).await?;

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
    acts::the_end(
        say,
        ci,
        "the story is told: stale model → a real training pod ran the notebook → model recorded →\n\
         a real deploy pod ran `modelsync bump-pr` → one PR, merged → a newer model → the same\n\
         branch, a new PR → old runs collected, with their pods.",
        node.kubeconfig(),
        &[
            format!("kubectl get msync,pipelineruns,pods -n {NAMESPACE}"),
            format!("kubectl logs -n {NAMESPACE} <pod> --all-containers"),
        ],
        " and cleans the machine",
    )
    .await
}
