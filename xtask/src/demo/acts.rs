//! The acts both stories tell the same way, in the order they happen once everything runs: the
//! trainer's run, the deployer's pull request and its merge, a newer model and its pull request,
//! the old runs collected, the end.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use modelsync_testenv::github::GitHub;
use modelsync_testenv::gitops_repo::GitOpsRepo;

use super::narrate::{Narrator, short};
use super::watch::{Tekton, Watch};

/// The trainer's lambda finds the newest model stale; a run trains a model and records it.
pub async fn the_trainers_run(watch: &mut Watch<'_, impl Tekton>) -> Result<()> {
    watch.until("the trainer's run", |p| p.trained).await
}

/// The deployer's lambda sees the new model; a run opens a pull request, which a person merges.
pub async fn the_deployers_pull_request(watch: &mut Watch<'_, impl Tekton>) -> Result<()> {
    watch
        .until("the deployer's first pull request", |p| {
            !p.merged.is_empty()
        })
        .await
}

/// A person reviews a deploy run's pull request `number` and merges it with `merge`.
pub fn a_person_merges(
    say: Narrator,
    github: &GitHub,
    number: u64,
    model: &str,
    merge: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let pr = github
        .pr(number)
        .with_context(|| format!("the GitHub stand-in has no PR #{number}"))?;
    say.say(
        "github*",
        format!("PR #{number} \"{}\" (head {})", pr.title, pr.head),
    );
    merge()?;
    say.say(
        "review",
        format!("a person reviews and merges PR #{number}: production now pins {model}"),
    );
    Ok(())
}

/// `modelsync lineage deployer`: the pin traced back to its training run and data, read from
/// the cluster alone by the same code as the verb.
pub async fn the_lineage(
    say: Narrator,
    client: &kube::Client,
    ns: &str,
    deployer: &str,
) -> Result<()> {
    let chain = modelsync_api::provenance::fetch(client, ns, deployer)
        .await
        .map_err(|e| anyhow::anyhow!("modelsync lineage {deployer}: {e}"))?;
    say.say(
        "lineage",
        format!(
            "modelsync lineage {deployer} -n {ns}: what production pins, and where it came from\n{}",
            chain.table().trim_end()
        ),
    );
    Ok(())
}

/// A data scientist registers model `id` by hand, a little after the merge so the story
/// reads in order; returns the id.
pub async fn a_newer_model_arrives(say: Narrator, repo: &GitOpsRepo, id: String) -> Result<String> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let commit = repo.add_model(&id, &now, &format!("Register model {id}"))?;
    say.say(
        "git",
        format!(
            "a newer model arrives: a data scientist committed models/{id}.yaml ({}); the deployer should react",
            short(&commit)
        ),
    );
    Ok(id)
}

/// The deployer's lambda sees the newer model; the same branch gets a new pull request, merged
/// too.
pub async fn its_pull_request(watch: &mut Watch<'_, impl Tekton>, model: &str) -> Result<()> {
    watch
        .until("the pull request for the newer model", |p| {
            p.merged.iter().any(|m| m == model)
        })
        .await
}

/// With a second deploy run finished, the controller collects the first (history limit 1).
pub async fn old_runs_collected(watch: &mut Watch<'_, impl Tekton>) -> Result<()> {
    watch
        .until("the old deploy run to be collected", |p| {
            p.deploy_run_collected
        })
        .await
}

/// The story's last words. Outside CI everything keeps running, for a look around with
/// `commands`, until Ctrl-C; `stops` says what Ctrl-C does besides stopping it.
pub async fn the_end(
    say: Narrator,
    ci: bool,
    told: &str,
    kubeconfig: &Path,
    commands: &[String],
    stops: &str,
) -> Result<()> {
    say.say("demo", told);
    if ci {
        return Ok(());
    }
    say.say(
        "demo",
        format!(
            "everything keeps running; look around:\n  export KUBECONFIG={}\n  {}\nCtrl-C stops everything this demo started{stops}.",
            kubeconfig.display(),
            commands.join("\n  ")
        ),
    );
    std::future::pending().await
}
