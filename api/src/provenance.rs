//! How the model a deployer ModelSync last pinned came to be, read from the cluster alone (no
//! lineage server): its newest successful run and that run's decision, the pull request and
//! pinned file from its results, the model it read, the training run whose artifact results
//! name that model, and the training decision with the data revision it saw.
//!
//! [`trace`] is pure over a list of runs; [`fetch`] reads them. `modelsync lineage` and the
//! demo both print [`Provenance::table`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use crate::lineage::{ArtifactOutput, Dataset};
use crate::modelsync::{
    ANNOTATION_DECIDED_AT, ANNOTATION_PARAMETERS, ANNOTATION_REASON, ANNOTATION_REVISION,
    LABEL_NAME, RunResult,
};
use crate::{ModelSync, PipelineRun};

/// One run and the decision that started it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFacts {
    pub name: String,
    pub modelsync: String,
    pub result: String,
    pub completion_time: Option<DateTime<Utc>>,
    pub decided_at: Option<String>,
    pub reason: Option<String>,
    pub revision: Option<String>,
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub lambda_url: Option<String>,
}

impl RunFacts {
    pub fn of(run: &PipelineRun) -> Self {
        let a = run.annotations();
        let lineage = run.lineage().and_then(Result::ok);
        RunFacts {
            name: run.name_any(),
            modelsync: run.labels().get(LABEL_NAME).cloned().unwrap_or_default(),
            result: format!("{:?}", run.result()),
            completion_time: run.status.as_ref().and_then(|s| s.completion_time),
            decided_at: a.get(ANNOTATION_DECIDED_AT).cloned(),
            reason: a.get(ANNOTATION_REASON).cloned(),
            revision: a.get(ANNOTATION_REVISION).cloned(),
            parameters: a
                .get(ANNOTATION_PARAMETERS)
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or_default(),
            lambda_url: lineage.map(|l| l.lambda_url).filter(|u| !u.is_empty()),
        }
    }
}

/// The chain from a pin back to the data.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub namespace: String,
    pub deploy: RunFacts,
    /// The file the deploy run pinned, at its commit, and the pull request.
    pub pinned: Option<ArtifactOutput>,
    pub pull_request: Option<String>,
    pub model: Dataset,
    pub training: RunFacts,
    /// The model as the training run reported it (its digest).
    pub trained: ArtifactOutput,
    /// What the training decision read.
    pub data: Vec<Dataset>,
    /// The commit the model was trained on: the run's `data-revision` result, else the data
    /// input's version, else the decision's revision.
    pub data_revision: Option<String>,
}

/// Follows the links from `deployer`'s newest successful run; says which link is missing and
/// why when one is.
pub fn trace(namespace: &str, deployer: &str, runs: &[PipelineRun]) -> Result<Provenance, String> {
    let own: Vec<&PipelineRun> = runs
        .iter()
        .filter(|r| r.labels().get(LABEL_NAME).is_some_and(|n| n == deployer))
        .collect();
    let deploy = own
        .iter()
        .filter(|r| r.result() == RunResult::Succeeded)
        .max_by_key(|r| r.status.as_ref().and_then(|s| s.completion_time))
        .ok_or_else(|| {
            format!(
                "ModelSync {namespace}/{deployer} has no succeeded run to trace ({} run(s) kept, \
                 none succeeded): nothing it pinned is known yet, or its runs were garbage-collected",
                own.len()
            )
        })?;
    let deploy_name = deploy.name_any();
    let recorded = match deploy.lineage() {
        Some(Ok(l)) => l,
        Some(Err(e)) => return Err(format!("deploy run {deploy_name}: {e}")),
        None => {
            return Err(format!(
                "deploy run {deploy_name} has no {} annotation: it was created by a controller \
                 without lineage; the next deploy run will have it",
                crate::lineage::ANNOTATION_LINEAGE
            ));
        }
    };
    let pinned = deploy.artifact_outputs().into_iter().find_map(Result::ok);
    let pull_request = pinned
        .as_ref()
        .and_then(|p| p.extra.get("pr-url").cloned())
        .or_else(|| deploy.result_str("pr-url").map(str::to_owned));
    if recorded.inputs.is_empty() {
        return Err(format!(
            "deploy run {deploy_name} records no input dataset: its lambda {} answered without \
             `inputs`, so which model it deployed is not known (the built-in deploy-if-newer \
             names the model it compares)",
            recorded.lambda_url
        ));
    }

    // The model is the input some run in the namespace reports having produced.
    let produced = |model: &Dataset| {
        runs.iter()
            .filter(|r| r.result() == RunResult::Succeeded)
            .find_map(|r| {
                r.artifact_outputs()
                    .into_iter()
                    .filter_map(Result::ok)
                    .find(|a| a.dataset().is_ok_and(|d| d.same_as(model)))
                    .map(|a| (r, a))
            })
    };
    let Some((model, (training, trained))) = recorded
        .inputs
        .iter()
        .find_map(|m| produced(m).map(|p| (m.clone(), p)))
    else {
        let names: Vec<String> = recorded.inputs.iter().map(Dataset::uri).collect();
        return Err(format!(
            "deploy run {deploy_name} read {}, but no succeeded run in namespace {namespace} \
             reports it in an ARTIFACT_OUTPUTS result: the training run was garbage-collected \
             (raise the trainer's successfulPipelineRunsHistoryLimit), ran elsewhere, or its \
             Pipeline does not pass train-notebook's model_ARTIFACT_OUTPUTS on",
            names.join(", ")
        ));
    };
    let data: Vec<Dataset> = training
        .lineage()
        .and_then(Result::ok)
        .map(|l| l.inputs)
        .unwrap_or_default();
    let data_revision = training
        .result_str("data-revision")
        .map(str::to_owned)
        .or_else(|| data.iter().find_map(|d| d.version.clone()))
        .or_else(|| training.annotations().get(ANNOTATION_REVISION).cloned());
    Ok(Provenance {
        namespace: namespace.to_owned(),
        deploy: RunFacts::of(deploy),
        pinned,
        pull_request,
        model,
        training: RunFacts::of(training),
        trained,
        data,
        data_revision,
    })
}

/// Reads the deployer and the runs of its namespace, then [`trace`]s.
pub async fn fetch(client: &Client, namespace: &str, deployer: &str) -> Result<Provenance, String> {
    let modelsyncs: Api<ModelSync> = Api::namespaced(client.clone(), namespace);
    modelsyncs.get(deployer).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 404 => format!(
            "ModelSync {namespace}/{deployer} not found; `modelsync get -n {namespace}` lists them"
        ),
        e => format!("reading ModelSync {namespace}/{deployer}: {e}"),
    })?;
    let runs: Api<PipelineRun> = Api::namespaced(client.clone(), namespace);
    let runs = runs
        .list(&ListParams::default().labels(LABEL_NAME))
        .await
        .map_err(|e| format!("listing the PipelineRuns of namespace {namespace}: {e}"))?
        .items;
    trace(namespace, deployer, &runs)
}

impl Provenance {
    /// Two columns, newest link first, for people.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let run = |label: &str, r: &RunFacts, rows: &mut Vec<(String, String)>| {
            let done = r
                .completion_time
                .map(|t| format!(", ended {}", t.format("%Y-%m-%d %H:%M:%SZ")))
                .unwrap_or_default();
            rows.push((
                label.to_owned(),
                format!(
                    "{}/{} run {} ({}{done})",
                    self.namespace, r.modelsync, r.name, r.result
                ),
            ));
            let mut why = r
                .reason
                .clone()
                .unwrap_or_else(|| "(no reason given)".into());
            if let Some(rev) = &r.revision {
                why.push_str(&format!(" [revision {rev}]"));
            }
            rows.push(("  decision".into(), why));
            if !r.parameters.is_empty() {
                let params: Vec<String> = r
                    .parameters
                    .iter()
                    .map(|(k, v)| {
                        format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_owned))
                    })
                    .collect();
                rows.push(("  params".into(), params.join(" ")));
            }
            if let Some(url) = &r.lambda_url {
                rows.push(("  lambda".into(), url.clone()));
            }
        };
        run("DEPLOY", &self.deploy, &mut rows);
        if let Some(p) = &self.pinned {
            rows.push(("  pinned".into(), format!("{} at {}", p.uri, p.digest)));
        }
        rows.push((
            "  pull request".into(),
            self.pull_request.clone().unwrap_or_else(|| "(none)".into()),
        ));
        rows.push((
            "MODEL".into(),
            format!("{} at {}", self.model.uri(), self.trained.digest),
        ));
        run("TRAINING", &self.training, &mut rows);
        for d in &self.data {
            rows.push(("  read".into(), d.uri()));
        }
        rows.push((
            "DATA REVISION".into(),
            self.data_revision
                .clone()
                .unwrap_or_else(|| "(not recorded)".into()),
        ));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}   {v}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests;
