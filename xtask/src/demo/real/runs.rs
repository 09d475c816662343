//! The real Tekton, told: each run's news once per stage, read from the run as Tekton updates
//! it; a deploy run's pull request merged as a reviewer would.

use std::collections::HashSet;

use anyhow::{Result, bail};
use kube::ResourceExt;
use kube::api::DynamicObject;
use modelsync_api::modelsync::LABEL_NAME;
use modelsync_testenv::labelbot::{DEPLOYER, LabelBot, NAMESPACE, TRAINER};
use modelsync_testenv::tekton::{param, succeeded_condition};

use crate::demo::acts;
use crate::demo::narrate::{self, BumpPr, Narrator, short};
use crate::demo::watch::{Progress, Tekton};

pub struct Told<'a> {
    pub say: Narrator,
    pub lb: &'a LabelBot,
    /// `<run>/<stage>` of what was told already.
    pub told: HashSet<String>,
}

impl Tekton for Told<'_> {
    const DEPLOYER: &'static str = DEPLOYER;

    async fn changed(&mut self, run: &DynamicObject, progress: &mut Progress) -> Result<()> {
        let name = run.name_any();
        if self.told.insert(format!("{name}/created")) {
            narrate::new_run(self.say, run);
        }
        let Some((status, reason)) = succeeded_condition(run) else {
            return Ok(());
        };
        if status == "Unknown" {
            if reason == "Running" && self.told.insert(format!("{name}/running")) {
                self.say.say(
                    "tekton",
                    format!("{name} Running: Tekton started its TaskRun's pod"),
                );
            }
            return Ok(());
        }
        if !self.told.insert(format!("{name}/ended")) {
            return Ok(());
        }
        if reason != "Succeeded" {
            bail!(
                "{name} ended {reason}: {}\nsee `kubectl logs -n {NAMESPACE} -l tekton.dev/pipelineRun={name} --all-containers`",
                run.data["status"]["conditions"][0]["message"]
            );
        }
        if run.labels().get(LABEL_NAME).map(String::as_str) == Some(TRAINER) {
            self.trained(run);
            progress.trained = true;
        } else if let Some(model) = self.deployed(run)? {
            progress.merged.push(model);
        }
        Ok(())
    }

    fn collected(&self, run: &str) {
        self.say.say(
            "gc",
            format!("controller collected old run {run} (history limit 1); Kubernetes deleted its TaskRuns and pods"),
        );
    }
}

impl Told<'_> {
    fn trained(&self, run: &DynamicObject) {
        let model = result(run, "model-id");
        self.say.say(
            "tekton",
            format!(
                "{} Succeeded: the notebook trained model {model} in a pod (papermill); recorded models/{model}.yaml (commit {})",
                run.name_any(),
                short(&result(run, "record-commit"))
            ),
        );
    }

    /// Tells what the deploy run did and merges its pull request; returns the model it pins.
    fn deployed(&self, run: &DynamicObject) -> Result<Option<String>> {
        let bump = BumpPr::read(|k| result(run, k));
        let diff = self.lb.branch_diff().unwrap_or_default();
        self.say.say(
            "tekton",
            format!("{} Succeeded: {}", run.name_any(), bump.told(&diff)),
        );
        let Some(number) = bump.pr() else {
            return Ok(None);
        };
        let model = param(run, "model-id").unwrap_or_default().to_owned();
        acts::a_person_merges(self.say, &self.lb.github, number, &model, || {
            self.lb.merge(number).map(drop)
        })?;
        Ok(Some(model))
    }
}

/// A Tekton result of a finished run, empty when it has none.
fn result(run: &DynamicObject, name: &str) -> String {
    run.data["status"]["results"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == name))
        .and_then(|r| r["value"].as_str())
        .unwrap_or_default()
        .to_owned()
}
