//! Building a PipelineRun from a ModelSync's template and a lambda's answer. Pure: JSON in,
//! JSON out, so every rule here is unit-tested without a cluster.

use std::collections::BTreeMap;

use modelsync_api::lambda::{NeedsSyncAnswer, ParamValue};
use modelsync_api::modelsync::{
    ANNOTATION_DECIDED_AT, ANNOTATION_PARAMETERS, ANNOTATION_REASON, ANNOTATION_REVISION,
    LABEL_NAME, LABEL_SHARD, ParameterMapping, PipelineRunTemplate,
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

/// Where a template's spec sits in a ModelSync, for messages.
const SPEC: &str = "spec.pipelineRunTemplate.spec";

/// v1beta1 names of `taskRunSpecs` entry fields, with their v1 names.
const TASK_RUN_SPEC_RENAMES: [(&str, &str); 4] = [
    ("taskServiceAccountName", "serviceAccountName"),
    ("taskPodTemplate", "podTemplate"),
    ("stepOverrides", "stepSpecs"),
    ("sidecarOverrides", "sidecarSpecs"),
];

/// The template's spec as a Tekton v1 spec. v1beta1 fields with a v1 home are moved there;
/// a value that cannot be moved (PipelineResources, removed from Tekton, or a field of the
/// wrong shape) is refused with its field named, never dropped.
pub fn v1_spec(template: &PipelineRunTemplate) -> Result<Map<String, Value>, InvalidTemplate> {
    let Value::Object(spec) = &template.spec else {
        return Err(InvalidTemplate(format!(
            "{SPEC} must be an object (a Tekton PipelineRun spec)"
        )));
    };
    let mut spec = spec.clone();
    if spec.contains_key("resources") {
        return Err(InvalidTemplate(format!(
            "{SPEC}.resources uses PipelineResources, which Tekton removed (v0.50); pass what \
             they carried as params or workspaces and remove `resources`"
        )));
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
        let Value::Object(t) = timeouts else {
            return Err(InvalidTemplate(format!(
                "{SPEC}.timeouts must be an object like {{pipeline: 1h}} to take the v1beta1 \
                 timeout; set timeouts.pipeline and remove timeout"
            )));
        };
        t.entry("pipeline").or_insert(timeout);
    }
    rename_task_run_spec_fields(&mut spec)?;
    if let Some(names) = spec.remove("serviceAccountNames") {
        merge_service_account_names(&mut spec, names)?;
    }
    if !spec.contains_key("pipelineRef") && !spec.contains_key("pipelineSpec") {
        return Err(InvalidTemplate(format!(
            "{SPEC} has neither pipelineRef nor pipelineSpec: name the Pipeline to run"
        )));
    }
    Ok(spec)
}

/// v1beta1 `taskRunSpecs` entries name their fields `taskServiceAccountName`,
/// `taskPodTemplate`, `stepOverrides` and `sidecarOverrides`; v1 drops the prefixes and
/// renames the overrides, and refuses the old names.
fn rename_task_run_spec_fields(spec: &mut Map<String, Value>) -> Result<(), InvalidTemplate> {
    let Some(Value::Array(entries)) = spec.get_mut("taskRunSpecs") else {
        return Ok(());
    };
    for (i, entry) in entries.iter_mut().enumerate() {
        let Value::Object(entry) = entry else {
            continue;
        };
        for (old, new) in TASK_RUN_SPEC_RENAMES {
            let Some(value) = entry.remove(old) else {
                continue;
            };
            if entry.contains_key(new) {
                return Err(InvalidTemplate(format!(
                    "{SPEC}.taskRunSpecs[{i}] has both {old} (v1beta1) and {new} (v1); keep {new}"
                )));
            }
            entry.insert(new.into(), value);
        }
    }
    Ok(())
}

/// v1beta1 `serviceAccountNames: [{taskName, serviceAccountName}]` became v1 `taskRunSpecs:
/// [{pipelineTaskName, serviceAccountName}]`. A task that already has a `taskRunSpecs` entry
/// keeps it, with its own account if it names one (it won over `serviceAccountNames` in
/// v1beta1 too), so no task gets two entries.
fn merge_service_account_names(
    spec: &mut Map<String, Value>,
    names: Value,
) -> Result<(), InvalidTemplate> {
    let shape = || {
        InvalidTemplate(format!(
            "{SPEC}.serviceAccountNames must be a list of {{taskName, serviceAccountName}}"
        ))
    };
    let names = match names {
        Value::Null => return Ok(()),
        Value::Array(names) => names,
        _ => return Err(shape()),
    };
    let specs = spec
        .entry("taskRunSpecs")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(specs) = specs else {
        return Err(InvalidTemplate(format!(
            "{SPEC}.taskRunSpecs must be a list of {{pipelineTaskName, ...}} to take \
             serviceAccountNames"
        )));
    };
    for (i, entry) in names.into_iter().enumerate() {
        let Value::Object(mut entry) = entry else {
            return Err(shape());
        };
        let Some(Value::String(task)) = entry.remove("taskName") else {
            return Err(InvalidTemplate(format!(
                "{SPEC}.serviceAccountNames[{i}].taskName is missing or not a string: name the \
                 pipeline task the service account is for"
            )));
        };
        let account = entry.remove("serviceAccountName").filter(|a| !a.is_null());
        let same_task =
            |s: &&mut Value| s.get("pipelineTaskName").and_then(Value::as_str) == Some(&task);
        match specs.iter_mut().find(same_task) {
            Some(Value::Object(existing)) => {
                if let Some(account) = account {
                    existing.entry("serviceAccountName").or_insert(account);
                }
            }
            _ => {
                let mut new = Map::new();
                new.insert("pipelineTaskName".into(), Value::String(task));
                if let Some(account) = account {
                    new.insert("serviceAccountName".into(), account);
                }
                specs.push(Value::Object(new));
            }
        }
    }
    Ok(())
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
    /// The ModelSync's `modelsync.dev/shard` label, if any: copied onto the run so the shard
    /// that reconciles the ModelSync sees its runs (and no other shard does).
    pub shard: Option<&'a str>,
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
    // The ModelSync's shard wins over a template that names one: a run labelled for another
    // shard would be invisible to the controller that must find it.
    match req.shard {
        Some(shard) => labels.insert(LABEL_SHARD.into(), shard.into()),
        None => labels.remove(LABEL_SHARD),
    };

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
        return Err(InvalidTemplate(format!(
            "{SPEC}.params must be a list of {{name, value}}"
        )));
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
