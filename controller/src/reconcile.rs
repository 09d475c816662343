//! One reconcile pass over one ModelSync: the IO shell around the pure decisions of [`plan`],
//! [`template`], [`runs`] and [`status`], in the order of the contract: classify runs, collect
//! old ones, respect suspend and Forbid, ask the lambda, start (or replace) a run, write status
//! only if it changed, requeue at the next jittered poll.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use modelsync_api::lambda_client::{Ask, FailureKind, LambdaClient};
use modelsync_api::modelsync::{ANNOTATION_REQUESTED_AT, Decision, RunResult};
use modelsync_api::pipelinerun::SPEC_STATUS_CANCELLED;
use modelsync_api::{ModelSync, PipelineRun};
use serde_json::json;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::plan::{self, AnswerAction, GateDecision};
use crate::run_index::RunIndex;
use crate::runs::{OwnedRuns, RunRecord, summary};
use crate::status::{self, Observation, Phase};
use crate::template::{self, RunRequest};

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

fn kube_err(doing: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let doing = doing.into();
    move |source| Error::Kube { doing, source }
}

/// When each ModelSync is next due, and how its lambda has been failing. In memory: after a
/// restart every ModelSync is due at once, which is what a cold start should do.
#[derive(Clone, Copy, Debug)]
struct PollState {
    next_due: Instant,
    failures: u32,
}

/// Everything a pass needs, shared by all passes.
pub struct Context {
    pub client: kube::Client,
    pub runs: RunIndex,
    pub lambda: LambdaClient,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    schedule: Mutex<HashMap<String, PollState>>,
    /// Runs this process created that the watch has not shown yet, by ModelSync uid. Closes
    /// the window in which a pass could miss a run it just created and start a second one.
    pending: Mutex<HashMap<String, (String, Instant)>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        runs: RunIndex,
        recorder: Recorder,
        metrics: Arc<Metrics>,
    ) -> Self {
        Context {
            client,
            runs,
            lambda: LambdaClient::new(concat!("modelsync-controller/", env!("CARGO_PKG_VERSION"))),
            recorder,
            metrics,
            schedule: Mutex::default(),
            pending: Mutex::default(),
        }
    }

    fn poll_state(&self, uid: &str) -> Option<PollState> {
        self.schedule
            .lock()
            .expect("schedule lock")
            .get(uid)
            .copied()
    }

    fn set_poll_state(&self, uid: &str, state: PollState) {
        self.schedule
            .lock()
            .expect("schedule lock")
            .insert(uid.to_owned(), state);
    }

    /// Forgets a deleted ModelSync.
    pub fn forget(&self, uid: &str) {
        self.schedule.lock().expect("schedule lock").remove(uid);
        self.pending.lock().expect("pending lock").remove(uid);
    }
}

/// How long a created run may stay invisible to the watch before it is presumed deleted.
const PENDING_GRACE: Duration = Duration::from_secs(60);

pub async fn reconcile(ms: Arc<ModelSync>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_pass(&ms, &ctx).await;
    let label = match &result {
        Ok(_) => "success",
        Err(_) => "error",
    };
    ctx.metrics.reconciled(started.elapsed(), label);
    ctx.metrics.indexed_runs.set(ctx.runs.len() as i64);
    result
}

pub fn error_policy(ms: Arc<ModelSync>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(
        modelsync = %format!("{}/{}", ms.namespace().unwrap_or_default(), ms.name_any()),
        kind = error.metric_label(),
        "reconcile failed, retrying in 5s: {error}"
    );
    Action::requeue(Duration::from_secs(5))
}

fn owned_by(run: &RunRecord, uid: &str) -> bool {
    run.controller_uid.as_deref() == Some(uid)
}

fn run_ref(namespace: &str, name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("tekton.dev/v1".into()),
        kind: Some("PipelineRun".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid,
        ..Default::default()
    }
}

/// Stand-in for a run this process created but has not seen through the watch yet.
fn placeholder(name: &str, owner_uid: &str) -> RunRecord {
    RunRecord {
        name: name.to_owned(),
        uid: None,
        created: Some(Utc::now()),
        controller_uid: Some(owner_uid.to_owned()),
        result: RunResult::Running,
        cancel_requested: false,
        start_time: None,
        completion_time: None,
        parameters: None,
    }
}

async fn reconcile_pass(ms: &ModelSync, ctx: &Context) -> Result<Action, Error> {
    // Before the first full list of runs, "no runs" means "unknown": acting on it could start
    // a second run after a restart.
    if !ctx.runs.ready() {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    // Being deleted (foreground deletion waits for its runs to go): start nothing new.
    if ms.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ms.namespace().ok_or(Error::Incomplete("namespace"))?;
    let name = ms.name_any();
    let uid = ms.uid().ok_or(Error::Incomplete("uid"))?;
    let spec = &ms.spec;
    let prev = ms.status.clone().unwrap_or_default();
    let now = Instant::now();

    // 1. The runs this ModelSync owns, including one just created and not yet watched.
    let mut owned: Vec<Arc<RunRecord>> = ctx
        .runs
        .runs_of(&ns, &name)
        .into_iter()
        .filter(|r| owned_by(r, &uid))
        .collect();
    {
        let mut pending = ctx.pending.lock().expect("pending lock");
        if let Some((run, since)) = pending.get(&uid).cloned() {
            if owned.iter().any(|r| r.name == run) || since.elapsed() > PENDING_GRACE {
                pending.remove(&uid);
            } else {
                owned.push(Arc::new(placeholder(&run, &uid)));
            }
        }
    }
    let runs = OwnedRuns::new(owned);

    // 2. Garbage-collect finished runs beyond the history limits.
    let runs_api = Api::<PipelineRun>::namespaced(ctx.client.clone(), &ns);
    for doomed in runs.to_collect(
        spec.successful_pipeline_runs_history_limit.max(0) as usize,
        spec.failed_pipeline_runs_history_limit.max(0) as usize,
    ) {
        match runs_api.delete(&doomed, &DeleteParams::background()).await {
            Ok(_) => {
                ctx.metrics.runs_deleted.inc();
                info!(modelsync = %format!("{ns}/{name}"), run = %doomed, "collected old run");
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(kube_err(format!("deleting old run {ns}/{doomed}"))(e)),
        }
    }

    let active = runs.active();
    let mut obs = Observation {
        generation: ms.metadata.generation,
        phase: Phase::Idle,
        active: active.first().map(|r| run_ref(&ns, &r.name, r.uid.clone())),
        last_run: runs.newest().map(summary),
        last_successful_run: runs.newest_successful().map(summary),
        decision: None,
        run_started: false,
        handled_requested_at: None,
        previous_run_now: prev.last_run.as_ref().and_then(|last| {
            runs.all()
                .iter()
                .find(|r| r.name == last.name)
                .map(|r| summary(r))
        }),
    };

    let interval = spec.poll_interval();
    let timeout = spec.lambda_timeout();
    let (interval, timeout) = match (interval, timeout) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            obs.phase = Phase::InvalidTemplate(e);
            finish(ms, ctx, &prev, &obs).await?;
            return Ok(Action::await_change());
        }
    };
    let requested_at = ms
        .annotations()
        .get(ANNOTATION_REQUESTED_AT)
        .filter(|v| prev.last_handled_requested_at.as_ref() != Some(*v))
        .cloned();
    let poll = ctx.poll_state(&uid);
    let finished_at = runs
        .newest()
        .filter(|r| r.result != RunResult::Running)
        .and_then(|r| r.completion_time);
    let settle_until =
        finished_at.map(|t| t + chrono::Duration::from_std(interval).unwrap_or_default());
    let run_finished_recently = settle_until.is_some_and(|t| t > Utc::now());
    let gate = plan::gate(&plan::Gate {
        run_finished_recently,
        suspend: spec.suspend,
        policy: spec.concurrency_policy,
        active_runs: active.len(),
        poll_due: poll.is_none_or(|p| p.next_due <= now),
        requested: requested_at.is_some(),
        spec_changed: prev.observed_generation != ms.metadata.generation,
    });
    let jittered = plan::jittered(interval, rand::random::<f64>());
    // When the next pass is due, as an instant: a pass can take seconds (a slow lambda, a busy
    // API server), and a delay counted from its end would make every poll that much late.
    let mut due = now + jittered;

    match gate {
        GateDecision::Suspended => obs.phase = Phase::Suspended,
        GateDecision::TooManyActive => {
            let names: Vec<String> = active.iter().map(|r| r.name.clone()).collect();
            obs.phase = Phase::TooManyActiveRuns(format!(
                "{} runs labelled {}={name} are active ({}); no run starts until at most one is",
                names.len(),
                modelsync_api::modelsync::LABEL_NAME,
                names.join(", ")
            ));
        }
        GateDecision::WaitForActiveRun => {
            obs.phase = Phase::RunActive(active[0].name.clone());
        }
        GateDecision::NotDue => {
            obs.phase = steady_phase(&prev, active.first().map(|r| r.name.clone()));
            if let Some(p) = poll {
                due = p.next_due;
            }
            if let Some(t) = settle_until.filter(|_| run_finished_recently) {
                due = due.max(instant_at(t, now));
            }
        }
        GateDecision::CallLambda => {
            if let Err(e) = template::v1_spec(&spec.pipeline_run_template) {
                obs.phase = Phase::InvalidTemplate(e.0);
                ctx.set_poll_state(
                    &uid,
                    PollState {
                        next_due: now + jittered,
                        failures: 0,
                    },
                );
            } else {
                if let Some(p) = poll.filter(|p| p.next_due <= now) {
                    // Waiting out a finished run's settle period is the plan, not lag.
                    let planned = settle_until
                        .map(|t| instant_at(t, now))
                        .map_or(p.next_due, |settled| settled.max(p.next_due))
                        .min(now);
                    ctx.metrics.poll_lag.observe((now - planned).as_secs_f64());
                }
                obs.handled_requested_at = requested_at;
                due = ask_and_act(
                    ms, ctx, &ns, &name, &uid, &runs, &mut obs, interval, timeout, jittered,
                )
                .await?;
            }
        }
    }

    finish(ms, ctx, &prev, &obs).await?;
    let wait = due.saturating_duration_since(Instant::now());
    Ok(Action::requeue(wait.max(Duration::from_millis(10))))
}

/// The monotonic instant of wall-clock time `t`, given that `now` is the present.
fn instant_at(t: chrono::DateTime<Utc>, now: Instant) -> Instant {
    match (t - Utc::now()).to_std() {
        Ok(ahead) => now + ahead,
        Err(_) => {
            let behind = (Utc::now() - t).to_std().unwrap_or_default();
            now.checked_sub(behind).unwrap_or(now)
        }
    }
}

/// What a pass that does not ask the lambda reports: an error stays reported until the next
/// call shows otherwise, a running run is reported as such.
fn steady_phase(prev: &modelsync_api::ModelSyncStatus, active: Option<String>) -> Phase {
    if let Some(run) = active {
        return Phase::RunActive(run);
    }
    let ready = prev.conditions.iter().find(|c| c.type_ == "Ready");
    match ready.map(|c| (c.reason.as_str(), c.message.clone())) {
        Some(("LambdaError", m)) => Phase::LambdaError(m),
        Some(("InvalidLambdaResponse", m)) => Phase::InvalidLambdaResponse(m),
        Some(("InvalidTemplate", m)) => Phase::InvalidTemplate(m),
        _ => Phase::Idle,
    }
}

#[allow(clippy::too_many_arguments)]
async fn ask_and_act(
    ms: &ModelSync,
    ctx: &Context,
    ns: &str,
    name: &str,
    uid: &str,
    runs: &OwnedRuns,
    obs: &mut Observation,
    interval: Duration,
    timeout: Duration,
    jittered: Duration,
) -> Result<Instant, Error> {
    let now = Instant::now();
    let last_run = runs.newest().map(|r| r.name.clone());
    let asked = Instant::now();
    let answer = ctx
        .lambda
        .ask(&Ask {
            url: &ms.spec.needs_sync_url,
            namespace: ns,
            name,
            last_run: last_run.as_deref(),
            timeout,
            // Credentials from spec.lambdaSecretRef come with the Secret support.
            bearer_token: None,
        })
        .await;
    let failures = ctx.poll_state(uid).map(|p| p.failures).unwrap_or(0);
    let answer = match answer {
        Ok(a) => {
            ctx.metrics
                .lambda_called(asked.elapsed(), if a.needs_sync { "yes" } else { "no" });
            a
        }
        Err(e) => {
            ctx.metrics.lambda_called(asked.elapsed(), e.metric_label());
            let delay = plan::backoff(failures + 1, interval);
            warn!(modelsync = %format!("{ns}/{name}"), retry_in = ?delay, "{e}");
            ctx.set_poll_state(
                uid,
                PollState {
                    next_due: now + delay,
                    failures: failures + 1,
                },
            );
            let msg = e.condition_message();
            obs.phase = match e.kind() {
                FailureKind::Unavailable => Phase::LambdaError(msg),
                FailureKind::InvalidResponse => Phase::InvalidLambdaResponse(msg),
            };
            return Ok(now + delay);
        }
    };

    let decided_at = Utc::now();
    obs.decision = Some(Decision {
        needs_sync: answer.needs_sync,
        parameters: answer.parameters.clone(),
        reason: answer.reason.clone(),
        revision: answer.revision.clone(),
        time: decided_at,
    });
    let active = runs.active();
    let active_params = active
        .first()
        .map(|r| template::recorded_params(r.parameters.as_deref()));
    let action = plan::on_answer(
        &answer,
        &ms.spec.parameters,
        active_params.as_ref().map(|p| p.as_ref()),
    );
    let mut next = PollState {
        next_due: now + jittered,
        failures: 0,
    };
    match action {
        AnswerAction::Idle => obs.phase = Phase::Idle,
        AnswerAction::KeepActive => obs.phase = Phase::RunActive(active[0].name.clone()),
        AnswerAction::Unusable(msg) => {
            let delay = plan::backoff(failures + 1, interval);
            next = PollState {
                next_due: now + delay,
                failures: failures + 1,
            };
            warn!(modelsync = %format!("{ns}/{name}"), "{msg}");
            obs.phase = Phase::InvalidLambdaResponse(format!(
                "lambda GET {}: {msg}",
                ms.spec.needs_sync_url
            ));
        }
        AnswerAction::Start(params) | AnswerAction::Replace(params) => {
            if let Some(old) = active.first() {
                cancel(ctx, ns, &old.name).await?;
                info!(modelsync = %format!("{ns}/{name}"), run = %old.name, "cancelled run with outdated parameters (Replace)");
            }
            let run_name = template::run_name(name, uid, last_run.as_deref(), &params);
            let owner = serde_json::to_value(
                ms.controller_owner_ref(&())
                    .ok_or(Error::Incomplete("uid"))?,
            )
            .expect("owner references serialize");
            let body = template::build_run(&RunRequest {
                name: &run_name,
                namespace: ns,
                modelsync: name,
                owner,
                template: &ms.spec.pipeline_run_template,
                params: &params,
                answer: &answer,
                decided_at: &decided_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            });
            match body {
                Err(e) => obs.phase = Phase::InvalidTemplate(e.0),
                Ok(body) => match create_run(ctx, ns, &run_name, body).await? {
                    Created::Yes { uid } => {
                        ctx.pending
                            .lock()
                            .expect("pending lock")
                            .insert(uid_key(ms), (run_name.clone(), Instant::now()));
                        info!(modelsync = %format!("{ns}/{name}"), run = %run_name, reason = answer.reason.as_deref().unwrap_or(""), "started run");
                        obs.phase = Phase::RunStarted(run_name.clone());
                        obs.active = Some(run_ref(ns, &run_name, uid));
                        obs.run_started = true;
                        obs.last_run = Some(modelsync_api::modelsync::RunSummary {
                            name: run_name,
                            start_time: None,
                            completion_time: None,
                            result: RunResult::Running,
                        });
                    }
                    Created::Rejected(msg) => obs.phase = Phase::InvalidTemplate(msg),
                },
            }
        }
    }
    ctx.set_poll_state(uid, next);
    Ok(next.next_due)
}

fn uid_key(ms: &ModelSync) -> String {
    ms.uid().unwrap_or_default()
}

enum Created {
    /// Created now, or by an earlier pass for the same decision (adopted).
    Yes { uid: Option<String> },
    /// The API server (Tekton's schema) refused the run.
    Rejected(String),
}

async fn create_run(
    ctx: &Context,
    ns: &str,
    run_name: &str,
    body: serde_json::Value,
) -> Result<Created, Error> {
    let ar = ApiResource::erase::<PipelineRun>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
    let obj: DynamicObject = serde_json::from_value(body).expect("built runs are objects");
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&pp, &obj).await {
        Ok(created) => {
            ctx.metrics.runs_created.inc();
            Ok(Created::Yes { uid: created.uid() })
        }
        // The same decision's run exists: a pass before a restart created it. Adopt it.
        Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
            Ok(Created::Yes { uid: None })
        }
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => {
            Ok(Created::Rejected(format!(
                "the API server rejected the PipelineRun built from spec.pipelineRunTemplate: {}",
                s.message
            )))
        }
        Err(e) => Err(kube_err(format!("creating run {ns}/{run_name}"))(e)),
    }
}

async fn cancel(ctx: &Context, ns: &str, run: &str) -> Result<(), Error> {
    let api = Api::<PipelineRun>::namespaced(ctx.client.clone(), ns);
    let patch = json!({"spec": {"status": SPEC_STATUS_CANCELLED}});
    match api
        .patch(run, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => {
            ctx.metrics.runs_cancelled.inc();
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(kube_err(format!("cancelling run {ns}/{run}"))(e)),
    }
}

/// Writes status if it changed, then publishes the events the change deserves.
async fn finish(
    ms: &ModelSync,
    ctx: &Context,
    prev: &modelsync_api::ModelSyncStatus,
    obs: &Observation,
) -> Result<(), Error> {
    let next = status::next_status(prev, obs, Utc::now());
    if next == *prev {
        return Ok(());
    }
    let ns = ms.namespace().unwrap_or_default();
    let name = ms.name_any();
    let api = Api::<ModelSync>::namespaced(ctx.client.clone(), &ns);
    let body = json!({
        "apiVersion": "modelsync.dev/v1alpha1",
        "kind": "ModelSync",
        "status": next,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map_err(kube_err(format!("writing the status of {ns}/{name}")))?;
    ctx.metrics.status_writes.inc();

    let me = ms.object_ref(&());
    for ev in status::events(prev, &next, obs) {
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
