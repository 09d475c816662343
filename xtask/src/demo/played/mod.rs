//! The demo on a local control plane, no node. Real: kube-apiserver, etcd,
//! kube-controller-manager, Tekton's CRDs, the `modelsync` controller, lambda server (with its
//! git mirror) and `bump-pr`, and git. Played locally: Tekton's controller ([`player`] marks runs
//! Running/Succeeded and does their work) and GitHub (a small stand-in for its pull request API).
//! The trainer's notifications go to three receivers on loopback, one per format.

mod player;
mod repository;
mod setup;

use std::time::Duration;

use anyhow::Result;
use kube::ResourceExt;
use kube::api::Api;
use modelsync_api::ModelSync;
use modelsync_testenv::github::GitHub;
use modelsync_testenv::process::log_tail;

use super::narrate::Narrator;
use super::watch::Watch;
use super::{acts, notifications};
use player::Player;

const NS: &str = "modelsync-demo";

pub async fn story(ci: bool, say: Narrator) -> Result<()> {
    say.say(
        "demo",
        "the modelsync loop on a local control plane. Real: kube-apiserver, etcd, \
         kube-controller-manager,\nTekton's CRDs, the modelsync controller, lambda server and \
         bump-pr, git. Played here: Tekton's\ncontroller (this demo marks runs running and \
         succeeded, and does their work) and GitHub's PR API.",
    );
    let bin = setup::build_modelsync(say)?;
    let cp = setup::start_cluster(say).await?;
    let client = cp.client().await?;
    let dir = tempfile::Builder::new()
        .prefix("modelsync-demo-")
        .tempdir()?;
    let (repo, lambdas) = repository::repository_and_lambdas(say, &bin, dir.path()).await?;
    let (github, github_api) = GitHub::start().await?;
    let token = dir.path().join("github-token");
    std::fs::write(&token, "demo-token-not-secret\n")?;
    let controller = setup::start_controller(say, &bin, &cp, &client, dir.path()).await?;
    let receivers = notifications::start(
        say,
        &client,
        NS,
        std::net::Ipv4Addr::LOCALHOST.into(),
        dir.path(),
    )
    .await?;
    setup::apply_modelsyncs(say, &client, &lambdas.url(), notifications::spec()).await?;

    let player = Player {
        say,
        client: client.clone(),
        bin,
        repo: &repo,
        github,
        github_api,
        token,
        results: dir.path().join("results"),
        played: Default::default(),
    };
    let stalled = || {
        format!(
            "controller log:\n{}\nlambda server log:\n{}",
            controller.log_tail(),
            log_tail(lambdas.process.log(), 20)
        )
    };
    let mut watch = Watch::new(say, &client, NS, player, Duration::from_secs(300), stalled);
    acts::the_trainers_run(&mut watch).await?;
    notifications::show(say, &receivers).await?;
    acts::the_deployers_pull_request(&mut watch).await?;
    acts::the_lineage(say, &client, NS, "deployer").await?;
    let newer = acts::a_newer_model_arrives(say, &repo, model_id(1)).await?;
    acts::its_pull_request(&mut watch, &newer).await?;
    acts::old_runs_collected(&mut watch).await?;

    tokio::time::sleep(Duration::from_secs(3)).await;
    say.say("demo", status_table(&client).await?);
    acts::the_end(
        say,
        ci,
        "the story is told: stale model → retrain run → new model recorded → deploy run → one PR,\nmerged → a newer model → the same branch, a new PR → old runs collected.",
        cp.kubeconfig(),
        &[format!("kubectl get msync,pipelineruns -n {NS}")],
        "",
    )
    .await
}

/// A model id like the training notebook makes: `m-<UTC date and time>-<n>`.
fn model_id(n: u32) -> String {
    format!("m-{}-{n}", chrono::Utc::now().format("%Y%m%d-%H%M%S"))
}

/// What `kubectl get msync` shows, with each one's last decision.
async fn status_table(client: &kube::Client) -> Result<String> {
    let list = Api::<ModelSync>::namespaced(client.clone(), NS)
        .list(&Default::default())
        .await?;
    let mut table =
        format!("kubectl get msync -n {NS}:\nNAME       READY   STATUS    WHY (last decision)");
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
    Ok(table)
}
