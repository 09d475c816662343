//! A stand-in for Tekton's controller: moves PipelineRuns through their life by patching their
//! `/status` the way Tekton does, so tests (and the demo) can drive runs without Tekton running.

use anyhow::{Context, Result};
use chrono::{SecondsFormat, Utc};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

/// How a run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    Succeeded,
    Failed,
    /// What Tekton reports after `spec.status: Cancelled`.
    Cancelled,
}

/// The `tekton.dev/v1` PipelineRun resource, for dynamic clients.
pub fn pipelinerun_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("tekton.dev", "v1", "PipelineRun"),
        "pipelineruns",
    )
}

/// PipelineRuns of one namespace, untyped.
pub fn pipelineruns(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &pipelinerun_resource())
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Marks a run as started: `startTime` and `Succeeded=Unknown` with reason `Running`.
pub async fn start(client: &kube::Client, namespace: &str, name: &str) -> Result<()> {
    let now = now();
    patch_status(
        client,
        namespace,
        name,
        json!({
            "startTime": now,
            "conditions": [condition("Unknown", "Running", "Tasks Completed: 0 (Failed: 0, Cancelled 0), Incomplete: 1, Skipped: 0", &now)],
        }),
    )
    .await
}

/// Ends a run with `outcome`, setting `completionTime` (and `startTime` if it never started).
pub async fn finish(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    outcome: RunEnd,
) -> Result<()> {
    let api = pipelineruns(client, namespace);
    let run = api
        .get(name)
        .await
        .with_context(|| format!("reading PipelineRun {namespace}/{name}"))?;
    let now = now();
    let start = run.data["status"]["startTime"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| now.clone());
    patch_status(client, namespace, name, ended(outcome, &start, &now)).await
}

/// Sets the Pipeline results of a run (`status.results`), as Tekton writes them when it ends:
/// `[{name, value}]` with a string, array or object value.
pub async fn set_results(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    results: Value,
) -> Result<()> {
    patch_status(client, namespace, name, json!({ "results": results })).await
}

/// The `status` of a run that started at `start` and ended with `outcome` at `end` (RFC 3339),
/// as Tekton writes it.
pub fn ended(outcome: RunEnd, start: &str, end: &str) -> Value {
    let (status, reason, message) = match outcome {
        RunEnd::Succeeded => (
            "True",
            "Succeeded",
            "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 0",
        ),
        RunEnd::Failed => (
            "False",
            "Failed",
            "Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0",
        ),
        RunEnd::Cancelled => ("False", "Cancelled", "PipelineRun was cancelled"),
    };
    json!({
        "startTime": start,
        "completionTime": end,
        "conditions": [condition(status, reason, message, end)],
    })
}

/// The string value of param `name` in a run's `spec.params`.
pub fn param<'a>(run: &'a DynamicObject, name: &str) -> Option<&'a str> {
    run.data["spec"]["params"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?["value"]
        .as_str()
}

fn condition(status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": "Succeeded",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
    })
}

async fn patch_status(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    status: Value,
) -> Result<()> {
    pipelineruns(client, namespace)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .with_context(|| format!("patching the status of PipelineRun {namespace}/{name}"))?;
    Ok(())
}

/// The `Succeeded` condition's status and reason, if the run has one.
pub fn succeeded_condition(run: &DynamicObject) -> Option<(String, String)> {
    run.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Succeeded")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
}
