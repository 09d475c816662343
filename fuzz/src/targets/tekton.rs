//! The fields of a Tekton `tekton.dev/v1` PipelineRunSpec, strictly: an unknown field (such
//! as a v1beta1 name left behind) or a value of the wrong type fails to parse. Written from
//! Tekton's API reference for the fields a template sets; nested objects Tekton defines at
//! length (pod templates, pipeline specs) stay untyped.

use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PipelineRunSpec {
    pub pipeline_ref: Option<Map<String, Value>>,
    pub pipeline_spec: Option<Map<String, Value>>,
    pub params: Option<Vec<Param>>,
    pub status: Option<String>,
    pub timeouts: Option<Timeouts>,
    pub task_run_template: Option<TaskRunTemplate>,
    pub workspaces: Option<Vec<Map<String, Value>>>,
    pub task_run_specs: Option<Vec<TaskRunSpec>>,
    pub managed_by: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    pub name: String,
    pub value: ParamValue,
}

/// A string, an array of strings, or an object of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    String(String),
    Array(Vec<String>),
    Object(std::collections::BTreeMap<String, String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    pub pipeline: Option<String>,
    pub tasks: Option<String>,
    pub finally: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskRunTemplate {
    pub pod_template: Option<Map<String, Value>>,
    pub service_account_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskRunSpec {
    pub pipeline_task_name: String,
    pub service_account_name: Option<String>,
    pub pod_template: Option<Map<String, Value>>,
    pub step_specs: Option<Vec<Map<String, Value>>>,
    pub sidecar_specs: Option<Vec<Map<String, Value>>>,
    pub metadata: Option<Map<String, Value>>,
    pub compute_resources: Option<Map<String, Value>>,
    pub timeout: Option<String>,
}
