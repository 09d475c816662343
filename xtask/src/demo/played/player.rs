//! Tekton's controller, played: marks each new run Running, does its pipeline's work (trains a
//! model, or runs the real `modelsync bump-pr` and lets a person merge its pull request) and
//! marks it Succeeded.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use kube::ResourceExt;
use kube::api::DynamicObject;
use modelsync_testenv::github::GitHub;
use modelsync_testenv::gitops_repo::GitOpsRepo;
use modelsync_testenv::tekton::{self, RunEnd};

use super::{NS, model_id};
use crate::demo::acts;
use crate::demo::narrate::{self, BumpPr, Narrator, short};
use crate::demo::watch::{Progress, Tekton};

/// The deployer's one pull request branch.
const BRANCH: &str = "modelsync/deployer";

pub struct Player<'a> {
    pub say: Narrator,
    pub client: kube::Client,
    /// The `modelsync` binary, for `bump-pr`.
    pub bin: PathBuf,
    pub repo: &'a GitOpsRepo,
    pub github: GitHub,
    pub github_api: String,
    pub token: PathBuf,
    /// Where each deploy run's `bump-pr` writes its results, in a folder named for the run.
    pub results: PathBuf,
    pub played: HashSet<String>,
}

impl Tekton for Player<'_> {
    const DEPLOYER: &'static str = "deployer";

    async fn changed(&mut self, run: &DynamicObject, progress: &mut Progress) -> Result<()> {
        let name = run.name_any();
        if !self.played.insert(name.clone()) {
            return Ok(());
        }
        narrate::new_run(self.say, run);
        self.play(run, progress)
            .await
            .map_err(|e| anyhow!("playing Tekton for {name} failed: {e:#}"))
    }

    fn collected(&self, run: &str) {
        self.say.say(
            "gc",
            format!("controller collected old run {run} (history limit 1)"),
        );
    }
}

impl Player<'_> {
    async fn play(&self, run: &DynamicObject, progress: &mut Progress) -> Result<()> {
        let name = run.name_any();
        tekton::start(&self.client, NS, &name).await?;
        self.say
            .say("tekton*", format!("{name} Running (*played by the demo)"));
        match run.data["spec"]["pipelineRef"]["name"]
            .as_str()
            .unwrap_or_default()
        {
            "retrain" => {
                self.retrain(&name).await?;
                progress.trained = true;
            }
            "update-model-pr" => {
                let model = tekton::param(run, "model-id").unwrap_or_default();
                if self.update_model_pr(&name, model).await? {
                    progress.merged.push(model.to_owned());
                }
            }
            other => self.say.say(
                "tekton*",
                format!("{name}: pipeline {other} has no demo play; succeeding it"),
            ),
        }
        tekton::finish(&self.client, NS, &name, RunEnd::Succeeded).await?;
        self.say.say("tekton*", format!("{name} Succeeded"));
        Ok(())
    }

    /// The training notebook's work: a new model, recorded on main.
    async fn retrain(&self, run: &str) -> Result<()> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let id = model_id(0);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let commit =
            self.repo
                .add_model(&id, &now, &format!("Record model {id} (trained by {run})"))?;
        // The results train-notebook writes: the model in Tekton Chains' type-hinted form, named
        // as the deploy lambda names it (the mirrored URL and the record's path).
        let model = serde_json::json!({
            "uri": format!("{}#models/{id}.yaml", self.repo.file_url()),
            "digest": format!("sha1:{commit}"),
        });
        let results = serde_json::json!([
            {"name": "model-id", "value": id},
            {"name": "record-commit", "value": commit},
            {"name": "model_ARTIFACT_OUTPUTS", "value": model},
        ]);
        tekton::set_results(&self.client, NS, run, results).await?;
        self.say.say(
            "tekton*",
            format!(
                "{run}: notebook trained model {id}; recorded models/{id}.yaml (commit {})",
                short(&commit)
            ),
        );
        Ok(())
    }

    /// What update-model-pr's Pipeline results carry, from the files `bump-pr` wrote.
    async fn report_results(&self, run: &str, dir: &std::path::Path) -> Result<()> {
        let mut results = Vec::new();
        for name in ["status", "pr-url", "pr-number", "commit-sha"] {
            let value = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            results.push(serde_json::json!({"name": name, "value": value.trim()}));
        }
        if let Ok(text) = std::fs::read_to_string(dir.join("pr_ARTIFACT_OUTPUTS")) {
            let value: serde_json::Value = serde_json::from_str(&text)?;
            results.push(serde_json::json!({"name": "pr_ARTIFACT_OUTPUTS", "value": value}));
        }
        tekton::set_results(&self.client, NS, run, serde_json::Value::Array(results)).await
    }

    /// The deploy pipeline's work: the real `modelsync bump-pr`, then a person merges its pull
    /// request. Whether one was merged.
    async fn update_model_pr(&self, run: &str, model: &str) -> Result<bool> {
        let results = self.results.join(run);
        std::fs::create_dir_all(&results)?;
        let out = tokio::process::Command::new(&self.bin)
            .args(["bump-pr", "--repo"])
            .arg(&self.repo.bare)
            .args(["--github-repo", "demo/label-bot-gitops"])
            .args(["--base", "main", "--branch", BRANCH])
            .args(["--file", "manifests/model.yaml"])
            .args(["--set", &format!("data.model={model}")])
            .args(["--model", model, "--modelsync", &format!("{NS}/deployer")])
            .args(["--run", run])
            .args(["--author", "modelsync bot <bot@modelsync.invalid>"])
            .args(["--github-api", &self.github_api])
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
        let bump = BumpPr::read(|f| {
            std::fs::read_to_string(results.join(f))
                .unwrap_or_default()
                .trim()
                .to_owned()
        });
        self.report_results(run, &results).await?;
        let diff = self.repo.branch_diff(BRANCH, "manifests/model.yaml")?;
        self.say
            .say("tekton*", format!("{run}: {}", bump.told(&diff)));
        let Some(number) = bump.pr() else {
            return Ok(false);
        };
        acts::a_person_merges(self.say, &self.github, number, model, || {
            self.repo.merge(BRANCH)?;
            self.github.mark_merged(number);
            Ok(())
        })?;
        Ok(true)
    }
}
