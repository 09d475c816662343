//! Building a PipelineRun from a ModelSync's template and a lambda's answer. Pure: JSON in,
//! JSON out, so every rule here is unit-tested without a cluster.

use std::collections::BTreeMap;

use modelsync_api::lambda::{NeedsSyncAnswer, ParamValue};
use modelsync_api::modelsync::{
    ANNOTATION_DECIDED_AT, ANNOTATION_PARAMETERS, ANNOTATION_REASON, ANNOTATION_REVISION,
    LABEL_NAME, ParameterMapping, PipelineRunTemplate,
};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Why a template cannot become a run; the ModelSync is Stalled until its spec changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTemplate(pub String);

/// Why an answer that asked for a run cannot start one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnusableAnswer(pub String);

/// The template's spec as a Tekton v1 spec. v1beta1 fields with a v1 home are moved there;
/// PipelineResources, removed from Tekton, cannot be converted and are refused.
pub fn v1_spec(template: &PipelineRunTemplate) -> Result<Map<String, Value>, InvalidTemplate> {
    let Value::Object(spec) = &template.spec else {
        return Err(InvalidTemplate(
            "spec.pipelineRunTemplate.spec must be an object (a Tekton PipelineRun spec)".into(),
        ));
    };
    let mut spec = spec.clone();
    if spec.contains_key("resources") {
        return Err(InvalidTemplate(
            "spec.pipelineRunTemplate.spec.resources uses PipelineResources, which Tekton removed \
             (v0.50); pass what they carried as params or workspaces and remove `resources`"
                .into(),
        ));
    }
    if let Some(sa) = spec.remove("serviceAccountName") {
        task_run_template(&mut spec).insert("serviceAccountName".into(), sa);
    }
    if let Some(pod) = spec.remove("podTemplate") {
        task_run_template(&mut spec).insert("podTemplate".into(), pod);
    }
    if let Some(timeout) = spec.remove("timeout") {
        let timeouts = spec
            .entry("timeouts")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(t) = timeouts {
            t.entry("pipeline").or_insert(timeout);
        }
    }
    if let Some(Value::Array(names)) = spec.remove("serviceAccountNames") {
        // v1beta1 [{taskName, serviceAccountName}] became v1 taskRunSpecs[{pipelineTaskName, ...}].
        let specs = spec
            .entry("taskRunSpecs")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(specs) = specs {
            for n in names {
                specs.push(json!({
                    "pipelineTaskName": n.get("taskName").cloned().unwrap_or(Value::Null),
                    "serviceAccountName": n.get("serviceAccountName").cloned().unwrap_or(Value::Null),
                }));
            }
        }
    }
    if !spec.contains_key("pipelineRef") && !spec.contains_key("pipelineSpec") {
        return Err(InvalidTemplate(
            "spec.pipelineRunTemplate.spec has neither pipelineRef nor pipelineSpec: name the \
             Pipeline to run"
                .into(),
        ));
    }
    Ok(spec)
}

fn task_run_template(spec: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let entry = spec
        .entry("taskRunTemplate")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("made an object above")
}

/// The pipeline params a positive answer sets, by pipeline param name. Every mapped key must be
/// present and non-empty: a run with a missing or empty model id is worse than no run.
pub fn mapped_params(
    mappings: &[ParameterMapping],
    answer: &NeedsSyncAnswer,
) -> Result<BTreeMap<String, ParamValue>, UnusableAnswer> {
    let mut out = BTreeMap::new();
    for m in mappings {
        match answer.parameters.get(&m.needs_sync_name) {
            None => {
                return Err(UnusableAnswer(format!(
                    "the lambda asked for a run but its parameters lack {:?} (mapped to pipeline \
                     param {:?}); no run was started",
                    m.needs_sync_name, m.pipeline_name
                )));
            }
            Some(v) if v.is_empty() => {
                return Err(UnusableAnswer(format!(
                    "the lambda asked for a run but parameter {:?} (mapped to pipeline param \
                     {:?}) is empty; no run was started",
                    m.needs_sync_name, m.pipeline_name
                )));
            }
            Some(v) => {
                out.insert(m.pipeline_name.clone(), v.clone());
            }
        }
    }
    Ok(out)
}

/// The name of the run for one decision: the same inputs give the same name, so a controller
/// that restarts between creating a run and recording it gets `AlreadyExists` and adopts it.
/// `previous_run` (the newest run that exists) makes the next decision's name differ.
pub fn run_name(
    modelsync: &str,
    uid: &str,
    previous_run: Option<&str>,
    params: &BTreeMap<String, ParamValue>,
) -> String {
    let mut h = Sha256::new();
    h.update(uid.as_bytes());
    h.update(b"\0");
    h.update(previous_run.unwrap_or("").as_bytes());
    h.update(b"\0");
    h.update(serde_json::to_string(params).unwrap_or_default().as_bytes());
    let digest = h.finalize();
    let suffix: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    // Tekton copies the run name into label values, which are limited to 63 characters.
    let mut prefix: String = modelsync.chars().take(63 - 1 - suffix.len()).collect();
    while prefix.ends_with(['-', '.']) {
        prefix.pop();
    }
    format!("{prefix}-{suffix}")
}

/// What the controller knows about the decision a run is built for.
pub struct RunRequest<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub modelsync: &'a str,
    pub owner: Value,
    pub template: &'a PipelineRunTemplate,
    pub params: &'a BTreeMap<String, ParamValue>,
    pub answer: &'a NeedsSyncAnswer,
    pub decided_at: &'a str,
}

/// The full `tekton.dev/v1` PipelineRun object to create.
pub fn build_run(req: &RunRequest<'_>) -> Result<Value, InvalidTemplate> {
    let mut spec = v1_spec(req.template)?;
    set_params(&mut spec, req.params)?;

    let mut labels: Map<String, Value> = req
        .template
        .metadata
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    labels.insert(LABEL_NAME.into(), req.modelsync.into());

    let mut annotations: Map<String, Value> = req
        .template
        .metadata
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    annotations.insert(
        ANNOTATION_PARAMETERS.into(),
        serde_json::to_string(req.params).unwrap_or_default().into(),
    );
    annotations.insert(ANNOTATION_DECIDED_AT.into(), req.decided_at.into());
    if let Some(reason) = &req.answer.reason {
        annotations.insert(ANNOTATION_REASON.into(), reason.clone().into());
    }
    if let Some(rev) = &req.answer.revision {
        annotations.insert(ANNOTATION_REVISION.into(), rev.clone().into());
    }

    Ok(json!({
        "apiVersion": "tekton.dev/v1",
        "kind": "PipelineRun",
        "metadata": {
            "name": req.name,
            "namespace": req.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [req.owner],
        },
        "spec": spec,
    }))
}

/// Mapped params replace template params of the same name; the template's others stay.
fn set_params(
    spec: &mut Map<String, Value>,
    params: &BTreeMap<String, ParamValue>,
) -> Result<(), InvalidTemplate> {
    let list = spec
        .entry("params")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(list) = list else {
        return Err(InvalidTemplate(
            "spec.pipelineRunTemplate.spec.params must be a list of {name, value}".into(),
        ));
    };
    for (name, value) in params {
        let value = serde_json::to_value(value).expect("params serialize");
        match list
            .iter_mut()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        {
            Some(existing) => existing["value"] = value,
            None => list.push(json!({ "name": name, "value": value })),
        }
    }
    Ok(())
}

/// The mapped params recorded on a run (its [`ANNOTATION_PARAMETERS`] annotation), to compare
/// a new decision with the active run's.
pub fn recorded_params(annotation: Option<&str>) -> Option<BTreeMap<String, ParamValue>> {
    serde_json::from_str(annotation?).ok()
}

#[cfg(test)]
mod tests;
