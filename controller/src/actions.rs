//! One function per thing a pass does to the cluster: delete a run, cancel a run, create a
//! run, write status and its events. Each takes what the plan decided and reports what the
//! API server made of it; none decides anything.

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use modelsync_api::modelsync::{LABEL_NAME, LABEL_SHARD};
use modelsync_api::pipelinerun::SPEC_STATUS_CANCELLED;
use modelsync_api::run_history::{Collected, REASON_RUN_COLLECTED};
use modelsync_api::{ModelSync, ModelSyncStatus, PipelineRun};
use serde_json::json;
use tracing::warn;

use crate::context::Context;
use crate::metrics::WriteResult;
use crate::plan::{Created, run_ref};
use crate::runs::RunRecord;
use crate::shard::{ListedRun, Shard};
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

/// Every run labelled for ModelSync `ns/name`, whatever its shard label: asked of the API
/// server, not the index, which holds only this shard's runs. Metadata only.
pub async fn list_runs_of(ctx: &Context, ns: &str, name: &str) -> Result<Vec<ListedRun>, Error> {
    let api = Api::<PipelineRun>::namespaced(ctx.client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{LABEL_NAME}={name}"));
    let list = api
        .list_metadata(&lp)
        .await
        .map_err(kube_err(format!("listing the runs of {ns}/{name}")))?;
    Ok(list
        .items
        .into_iter()
        .map(|run| ListedRun {
            controller_uid: run
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone()),
            name: run.name_any(),
            labels: run.metadata.labels.unwrap_or_default(),
        })
        .collect())
}

/// Gives a run `shard`'s label (removes it for the unlabelled shard); one already gone is fine.
pub async fn relabel_run(ctx: &Context, ns: &str, run: &str, shard: &Shard) -> Result<(), Error> {
    let api = Api::<PipelineRun>::namespaced(ctx.client.clone(), ns);
    // A merge patch: `null` deletes the label, and no other label is touched.
    let patch = json!({"metadata": {"labels": {LABEL_SHARD: shard.name()}}});
    match api
        .patch(run, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(kube_err(format!(
            "moving run {ns}/{run} to {}",
            shard.describe()
        ))(e)),
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

/// Tells, in an Event on the ModelSync, which run was collected and how it had ended: once
/// deleted, a run leaves no other trace, and `modelsync history` reads these.
pub async fn record_collected(ms: &ModelSync, ctx: &Context, run: &RunRecord) {
    let ns = ms.namespace().unwrap_or_default();
    let note = Collected {
        run: run.name.clone(),
        result: run.result,
        decided_at: run.decided_at,
    }
    .note();
    let event = Event {
        type_: EventType::Normal,
        reason: REASON_RUN_COLLECTED.into(),
        note: Some(note),
        action: "Collect".into(),
        secondary: Some(run_ref(&ns, &run.name, run.uid.clone())),
    };
    if let Err(e) = ctx.recorder.publish(&event, &ms.object_ref(&())).await {
        // As with every event: a courtesy, never a reason to fail the pass.
        warn!(modelsync = %format!("{ns}/{}", ms.name_any()), "could not publish event {REASON_RUN_COLLECTED}: {e}");
    }
}

/// What [`write_status`] left on the server: the status, and the events it published.
pub struct Written {
    /// The status it compared with (the cache's, or this process's last write while the
    /// cache lags behind it).
    pub before: ModelSyncStatus,
    pub status: ModelSyncStatus,
    pub events: Vec<status::EventSpec>,
}

/// Writes status if it changed, then publishes the events the change deserves.
pub async fn write_status(
    ms: &ModelSync,
    ctx: &Context,
    obs: &Observation,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Written, Error> {
    let uid = ms.uid().unwrap_or_default();
    let version = ms.resource_version();
    let prev = ctx
        .written
        .current(&uid, version.as_deref(), ms.status.as_ref());
    let next = status::next_status(&prev, obs, now);
    if next == prev {
        return Ok(Written {
            before: prev,
            status: next,
            events: Vec::new(),
        });
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
    ctx.written.wrote(&uid, version.as_deref(), &next);
    ctx.metrics.status_written(std::time::SystemTime::now());

    let me = ms.object_ref(&());
    let events = status::events(&prev, &next, obs);
    for ev in &events {
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
    Ok(Written {
        before: prev,
        status: next,
        events,
    })
}
