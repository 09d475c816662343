//! One function per thing a pass does to the cluster: delete a run, cancel a run, create a
//! run, write status and its events. Each takes what the plan decided and reports what the
//! API server made of it; none decides anything.

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use modelsync_api::pipelinerun::SPEC_STATUS_CANCELLED;
use modelsync_api::{ModelSync, ModelSyncStatus, PipelineRun};
use serde_json::json;
use tracing::warn;

use crate::context::Context;
use crate::metrics::WriteResult;
use crate::plan::{Created, run_ref};
use crate::status::{self, Observation};

/// The controller's field manager on the API server.
pub const FIELD_MANAGER: &str = "modelsync-controller";

/// Errors that end a pass early; the pass is retried after a short delay.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API call failed while {doing}: {source}")]
    Kube {
        doing: String,
        #[source]
        source: kube::Error,
    },
    /// The object lacks what the API server always sets (namespace, uid): not from a server.
    #[error("ModelSync has no {0}; was it read from the API server?")]
    Incomplete(&'static str),
}

impl Error {
    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Incomplete(_) => "incomplete",
        }
    }
}

/// `fine` lists the API error codes that mean the work was done already (a run deleted twice,
/// a run adopted after a restart): those are not failed writes.
fn write_result<T>(result: &Result<T, kube::Error>, fine: &[u16]) -> WriteResult {
    match result {
        Ok(_) => WriteResult::Ok,
        Err(kube::Error::Api(s)) if fine.contains(&s.code) => WriteResult::Ok,
        Err(_) => WriteResult::Error,
    }
}

fn kube_err(doing: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let doing = doing.into();
    move |source| Error::Kube { doing, source }
}

/// Deletes a finished run; one already gone is fine.
pub async fn delete_run(ctx: &Context, ns: &str, run: &str) -> Result<bool, Error> {
    let api = Api::<PipelineRun>::namespaced(ctx.client.clone(), ns);
    let result = api.delete(run, &DeleteParams::background()).await;
    ctx.metrics
        .api_write("pipelineruns", "delete", write_result(&result, &[404]));
    match result {
        Ok(_) => {
            ctx.metrics.runs_deleted.inc();
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(kube_err(format!("deleting old run {ns}/{run}"))(e)),
    }
}

/// Asks Tekton to cancel a run (`spec.status: Cancelled`); one already gone is fine.
pub async fn cancel_run(ctx: &Context, ns: &str, run: &str) -> Result<(), Error> {
    let api = Api::<PipelineRun>::namespaced(ctx.client.clone(), ns);
    let patch = json!({"spec": {"status": SPEC_STATUS_CANCELLED}});
    let result = api
        .patch(run, &PatchParams::default(), &Patch::Merge(patch))
        .await;
    ctx.metrics
        .api_write("pipelineruns", "patch", write_result(&result, &[404]));
    match result {
        Ok(_) => {
            ctx.metrics.runs_cancelled.inc();
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(kube_err(format!("cancelling run {ns}/{run}"))(e)),
    }
}

/// Creates a run. Its name is deterministic per decision, so `AlreadyExists` means an earlier
/// pass (before a restart) created it: adopted, not a second run.
pub async fn create_run(
    ctx: &Context,
    ns: &str,
    run: &str,
    body: serde_json::Value,
) -> Result<Created, Error> {
    let ar = ApiResource::erase::<PipelineRun>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
    let obj: DynamicObject = serde_json::from_value(body).expect("built runs are objects");
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let result = api.create(&pp, &obj).await;
    ctx.metrics
        .api_write("pipelineruns", "create", write_result(&result, &[409]));
    match result {
        Ok(created) => {
            ctx.metrics.runs_created.inc();
            Ok(Created::New { uid: created.uid() })
        }
        Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
            Ok(Created::Adopted)
        }
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => {
            Ok(Created::Rejected(format!(
                "the API server rejected the PipelineRun built from spec.pipelineRunTemplate: {}",
                s.message
            )))
        }
        Err(e) => Err(kube_err(format!("creating run {ns}/{run}"))(e)),
    }
}

/// Writes status if it changed, then publishes the events the change deserves.
pub async fn write_status(
    ms: &ModelSync,
    ctx: &Context,
    obs: &Observation,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Error> {
    let prev: ModelSyncStatus = ms.status.clone().unwrap_or_default();
    let next = status::next_status(&prev, obs, now);
    if next == prev {
        return Ok(());
    }
    let ns = ms.namespace().unwrap_or_default();
    let name = ms.name_any();
    let api = Api::<ModelSync>::namespaced(ctx.client.clone(), &ns);
    let body = json!({
        "apiVersion": ModelSync::api_version(&()),
        "kind": ModelSync::kind(&()),
        "status": next,
    });
    let result = api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await;
    ctx.metrics
        .api_write("modelsyncs/status", "patch", write_result(&result, &[]));
    result.map_err(kube_err(format!("writing the status of {ns}/{name}")))?;
    ctx.metrics.status_written(std::time::SystemTime::now());

    let me = ms.object_ref(&());
    for ev in status::events(&prev, &next, obs) {
        let event = Event {
            type_: if ev.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: ev.reason.into(),
            note: Some(ev.note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: ev.run.as_deref().map(|r| run_ref(&ns, r, None)),
        };
        if let Err(e) = ctx.recorder.publish(&event, &me).await {
            // An event is a courtesy; failing to publish one must not fail the pass.
            warn!(modelsync = %format!("{ns}/{name}"), "could not publish event {}: {e}", ev.reason);
        }
    }
    Ok(())
}
