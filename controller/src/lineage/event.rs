//! Builds OpenLineage 2-0-2 RunEvents from a PipelineRun: what it was started for (its
//! decision annotations and the datasets recorded at creation) and what it produced (its
//! `*ARTIFACT_OUTPUTS` results). Pure: a run and a clock in, JSON out.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use kube::ResourceExt;
use modelsync_api::PipelineRun;
use modelsync_api::lineage::{ArtifactOutput, Dataset, RunLineage};
use modelsync_api::modelsync::{
    ANNOTATION_DECIDED_AT, ANNOTATION_PARAMETERS, ANNOTATION_REASON, ANNOTATION_REVISION,
    LABEL_NAME, RunResult,
};
use serde_json::{Map, Value, json};

/// Who wrote the events: this project, at this version.
pub const PRODUCER: &str = concat!(
    "https://modelsync.dev/controller/v",
    env!("CARGO_PKG_VERSION")
);
/// The OpenLineage version the events follow.
pub const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
/// The schema of the `modelsync_decision` run facet, kept in docs/lineage/.
pub const DECISION_FACET_SCHEMA: &str = "https://modelsync.dev/spec/facets/1-0-0/ModelSyncDecisionRunFacet.json#/$defs/ModelSyncDecisionRunFacet";
/// The schema of the `modelsync_artifact` dataset facet, kept in docs/lineage/.
pub const ARTIFACT_FACET_SCHEMA: &str = "https://modelsync.dev/spec/facets/1-0-0/ModelSyncArtifactDatasetFacet.json#/$defs/ModelSyncArtifactDatasetFacet";
const VERSION_FACET_SCHEMA: &str = "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet";
const ERROR_FACET_SCHEMA: &str = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";

/// Where a run stands, in OpenLineage's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transition {
    Start,
    Complete,
    Fail,
    Abort,
}

impl Transition {
    /// The end a finished run reached; `None` while it runs.
    pub fn end_of(result: RunResult) -> Option<Self> {
        match result {
            RunResult::Succeeded => Some(Transition::Complete),
            RunResult::Failed => Some(Transition::Fail),
            RunResult::Cancelled => Some(Transition::Abort),
            RunResult::Running => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Start => "START",
            Transition::Complete => "COMPLETE",
            Transition::Fail => "FAIL",
            Transition::Abort => "ABORT",
        }
    }
}

/// The RunEvent for `transition` of `run`. `now` stands in for times the run does not carry yet.
pub fn run_event(
    run: &PipelineRun,
    transition: Transition,
    job_namespace: &str,
    now: DateTime<Utc>,
) -> Result<Value, String> {
    let name = run.name_any();
    let uid = run
        .uid()
        .ok_or_else(|| format!("run {name} has no uid; was it read from the API server?"))?;
    let namespace = run
        .namespace()
        .ok_or_else(|| format!("run {name} has no namespace"))?;
    let modelsync = run
        .labels()
        .get(LABEL_NAME)
        .ok_or_else(|| format!("run {namespace}/{name} has no {LABEL_NAME} label"))?;
    // Runs made before lineage existed have no record; they still get events, without datasets.
    let recorded = match run.lineage() {
        Some(Ok(l)) => l,
        Some(Err(e)) => return Err(format!("run {namespace}/{name}: {e}")),
        None => RunLineage::default(),
    };

    let mut run_facets = Map::new();
    run_facets.insert("modelsync_decision".into(), decision_facet(run, &recorded));
    if transition == Transition::Fail
        && let Some(message) = failure_message(run)
    {
        run_facets.insert(
            "errorMessage".into(),
            json!({
                "_producer": PRODUCER,
                "_schemaURL": ERROR_FACET_SCHEMA,
                "message": message,
                "programmingLanguage": "tekton",
            }),
        );
    }

    let inputs: Vec<Value> = recorded.inputs.iter().map(input).collect();
    let outputs: Vec<Value> = match transition {
        Transition::Complete => {
            let produced = produced(run);
            if produced.is_empty() {
                recorded.outputs.iter().map(predicted).collect()
            } else {
                produced
            }
        }
        _ => recorded.outputs.iter().map(predicted).collect(),
    };

    Ok(json!({
        "eventType": transition.as_str(),
        "eventTime": event_time(run, transition, now).to_rfc3339_opts(SecondsFormat::Millis, true),
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
        "run": {"runId": uid, "facets": run_facets},
        "job": {"namespace": job_namespace, "name": format!("{namespace}/{modelsync}")},
        "inputs": inputs,
        "outputs": outputs,
    }))
}

/// START is when the decision was taken (the run was created right after); an end is the
/// run's completion time as Tekton recorded it.
fn event_time(run: &PipelineRun, transition: Transition, now: DateTime<Utc>) -> DateTime<Utc> {
    let status = run.status.as_ref();
    match transition {
        Transition::Start => run
            .annotations()
            .get(ANNOTATION_DECIDED_AT)
            .and_then(|t| t.parse().ok())
            .or_else(|| {
                let t = run.metadata.creation_timestamp.as_ref()?;
                DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond() as u32)
            })
            .unwrap_or(now),
        _ => status.and_then(|s| s.completion_time).unwrap_or(now),
    }
}

fn decision_facet(run: &PipelineRun, recorded: &RunLineage) -> Value {
    let annotations = run.annotations();
    let parameters: BTreeMap<String, Value> = annotations
        .get(ANNOTATION_PARAMETERS)
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    let mut facet = json!({
        "_producer": PRODUCER,
        "_schemaURL": DECISION_FACET_SCHEMA,
        // A run exists only because a lambda said yes.
        "needsSync": true,
        "parameters": parameters,
    });
    for (key, annotation) in [
        ("reason", ANNOTATION_REASON),
        ("revision", ANNOTATION_REVISION),
        ("decidedAt", ANNOTATION_DECIDED_AT),
    ] {
        if let Some(v) = annotations.get(annotation) {
            facet[key] = v.clone().into();
        }
    }
    if !recorded.lambda_url.is_empty() {
        facet["lambdaUrl"] = recorded.lambda_url.clone().into();
    }
    facet
}

fn failure_message(run: &PipelineRun) -> Option<String> {
    let cond = run
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Succeeded")?;
    Some(match cond.message.is_empty() {
        true => cond.reason.clone(),
        false => format!("{}: {}", cond.reason, cond.message),
    })
}

fn input(d: &Dataset) -> Value {
    let mut v = json!({"namespace": d.namespace, "name": d.name});
    if let Some(version) = &d.version {
        v["facets"] = json!({"version": version_facet(version)});
    }
    v
}

/// An output the lambda expected. Its version is what the lambda read, not what the run will
/// write, so it is left out.
fn predicted(d: &Dataset) -> Value {
    json!({"namespace": d.namespace, "name": d.name})
}

/// The outputs the run reported in its artifact results. A malformed result is skipped: the
/// event still tells the run's end, and the log says what was wrong.
fn produced(run: &PipelineRun) -> Vec<Value> {
    let mut out = Vec::new();
    for artifact in run.artifact_outputs() {
        let parsed = artifact.and_then(|a| Ok((a.dataset()?, a)));
        match parsed {
            Ok((d, a)) => out.push(json!({
                "namespace": d.namespace,
                "name": d.name,
                "facets": {
                    "version": version_facet(&a.digest),
                    "modelsync_artifact": artifact_facet(&a),
                },
            })),
            Err(e) => tracing::warn!(run = %run.name_any(), error = %e, "artifact result skipped"),
        }
    }
    out
}

fn version_facet(version: &str) -> Value {
    json!({"_producer": PRODUCER, "_schemaURL": VERSION_FACET_SCHEMA, "datasetVersion": version})
}

fn artifact_facet(a: &ArtifactOutput) -> Value {
    let mut facet = json!({
        "_producer": PRODUCER,
        "_schemaURL": ARTIFACT_FACET_SCHEMA,
        "result": a.result,
        "uri": a.uri,
        "digest": a.digest,
    });
    for (k, v) in &a.extra {
        facet[k] = v.clone().into();
    }
    facet
}

#[cfg(test)]
mod tests;
