//! The slice of Tekton's `tekton.dev/v1` PipelineRun that modelsync reads: enough to tell
//! whether a run is active and how it ended. Everything else is dropped on deserialization,
//! which keeps the controller's cache of runs small. Runs are created from untyped JSON.

use chrono::{DateTime, Utc};
use kube::CustomResource;
use serde::{Deserialize, Serialize};

use crate::lineage::{ANNOTATION_LINEAGE, ArtifactOutput, RunLineage};
use crate::modelsync::RunResult;

/// `spec.status` value that asks Tekton to cancel a run.
pub const SPEC_STATUS_CANCELLED: &str = "Cancelled";

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tekton.dev",
    version = "v1",
    kind = "PipelineRun",
    plural = "pipelineruns",
    namespaced,
    status = "PipelineRunStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRunSpec {
    /// `Cancelled`, `CancelledRunFinally`, `StoppedRunFinally` or `PipelineRunPending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRunStatus {
    #[serde(default)]
    pub conditions: Vec<RunCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<DateTime<Utc>>,
    /// The Pipeline's results once it ends: small by Tekton's own limits, and what `history`,
    /// `lineage` and the lineage events read (PR URL, commit, artifact outputs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<RunResultValue>,
}

/// One `status.results[]` entry: a string, an array of strings or an object of strings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunResultValue {
    pub name: String,
    #[serde(default)]
    pub value: serde_json::Value,
}

/// A knative-style condition as Tekton writes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

impl PipelineRun {
    /// Where the run stands by its `Succeeded` condition: active until it is True or False.
    pub fn result(&self) -> RunResult {
        let cond = self
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Succeeded"));
        match cond.map(|c| (c.status.as_str(), c.reason.as_str())) {
            Some(("True", _)) => RunResult::Succeeded,
            Some(("False", reason)) if reason.starts_with("Cancelled") => RunResult::Cancelled,
            Some(("False", _)) => RunResult::Failed,
            _ => RunResult::Running,
        }
    }

    /// The value of the Pipeline result `name`, if the run has one.
    pub fn result_value(&self, name: &str) -> Option<&serde_json::Value> {
        let results = &self.status.as_ref()?.results;
        results.iter().find(|r| r.name == name).map(|r| &r.value)
    }

    /// The string result `name`, when it is a non-empty string.
    pub fn result_str(&self, name: &str) -> Option<&str> {
        self.result_value(name)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    }

    /// The run's type-hinted artifact results (`ARTIFACT_OUTPUTS`, `*_ARTIFACT_OUTPUTS`), each
    /// parsed or with the reason it could not be.
    pub fn artifact_outputs(&self) -> Vec<Result<ArtifactOutput, String>> {
        let Some(status) = self.status.as_ref() else {
            return Vec::new();
        };
        status
            .results
            .iter()
            .filter(|r| ArtifactOutput::is_artifact_result(&r.name))
            .map(|r| ArtifactOutput::parse(&r.name, &r.value))
            .collect()
    }

    /// What the controller recorded at creation for lineage, if it did (runs created before
    /// lineage existed did not). An annotation that does not parse says why.
    pub fn lineage(&self) -> Option<Result<RunLineage, String>> {
        let text = self
            .metadata
            .annotations
            .as_ref()?
            .get(ANNOTATION_LINEAGE)?;
        Some(serde_json::from_str(text).map_err(|e| {
            format!("annotation {ANNOTATION_LINEAGE} is not the JSON modelsync writes: {e}")
        }))
    }

    /// True once cancellation was asked for, even before Tekton reports it.
    pub fn cancel_requested(&self) -> bool {
        self.spec
            .status
            .as_deref()
            .is_some_and(|s| s.starts_with("Cancelled") || s.starts_with("Stopped"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn artifact_outputs_are_read_from_results() {
        let run: PipelineRun = serde_json::from_value(json!({
            "apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
            "metadata": {"name": "r", "annotations": {ANNOTATION_LINEAGE: r#"{"lambdaUrl":"http://l/x"}"#}},
            "spec": {},
            "status": {"results": [
                {"name": "model-id", "value": "m-1"},
                {"name": "model_ARTIFACT_OUTPUTS", "value": {"uri": "http://g/r.git#models/m-1.yaml", "digest": "sha1:abc"}},
                {"name": "bad_ARTIFACT_OUTPUTS", "value": "s3://x/y"},
            ]},
        }))
        .unwrap();
        let outputs = run.artifact_outputs();
        assert_eq!(outputs.len(), 2);
        assert_eq!(
            outputs[0].as_ref().unwrap().uri,
            "http://g/r.git#models/m-1.yaml"
        );
        assert!(outputs[1].as_ref().unwrap_err().contains("not an object"));
        assert_eq!(run.lineage().unwrap().unwrap().lambda_url, "http://l/x");
        assert_eq!(run.result_str("model-id"), Some("m-1"));
    }
}
