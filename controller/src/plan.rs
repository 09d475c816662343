//! What one reconcile pass should do, decided from facts alone: facts in ([`Facts`]: the
//! ModelSync, its runs, its [`schedule`](crate::schedule) entry, the clocks, the lambda's answer
//! when there is one), a [`Plan`] out (what to delete, whether to ask, what to cancel and
//! create, the status, the next schedule entry and due instant). Pure, so every rule of the
//! loop is unit-tested with a fake clock and no cluster (`plan/tests.rs`); `reconcile` only
//! gathers the facts and carries the plan out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};
use modelsync_api::ModelSync;
use modelsync_api::lambda::{NeedsSyncAnswer, ParamValue};
use modelsync_api::lambda_client::{CallError, FailureKind};
use modelsync_api::modelsync::{
    ANNOTATION_PARAMETERS, ANNOTATION_REQUESTED_AT, ConcurrencyPolicy, LABEL_NAME, LABEL_SHARD,
    LambdaDecision, ParameterMapping, RunResult, RunSummary,
};

use crate::credentials::SecretError;
use crate::runs::{OwnedRuns, RunRecord, summary};
use crate::schedule::Entry;
use crate::status::{Observation, Phase};
use crate::template::{self, RunRequest, mapped_params};

/// Facts that decide whether the lambda is asked in this pass.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    pub suspend: bool,
    pub policy: ConcurrencyPolicy,
    /// Runs that are going and not being cancelled.
    pub active_runs: usize,
    /// The poll schedule says it is time (or this ModelSync was never polled by this process).
    pub poll_due: bool,
    /// The newest run finished less than one poll interval ago. What it produced (a model, a
    /// merged pin) takes a moment to reach the lambda's view (a mirror period, a registry
    /// sync); asking at once would often get a stale "yes" and start the same work again.
    pub run_finished_recently: bool,
    /// A `modelsync.dev/requested-at` value not handled yet.
    pub requested: bool,
    /// `metadata.generation` differs from `status.observedGeneration`.
    pub spec_changed: bool,
}

/// The outcome of [`gate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateDecision {
    /// `suspend: true`: no lambda call, no run.
    Suspended,
    /// More than one active run (someone else created runs under our label): start nothing.
    TooManyActive,
    /// `Forbid` and a run is active: the lambda is not asked.
    WaitForActiveRun,
    /// Not time yet.
    NotDue,
    /// Ask the lambda.
    CallLambda,
}

pub fn gate(g: &Gate) -> GateDecision {
    if g.suspend {
        GateDecision::Suspended
    } else if g.active_runs > 1 {
        GateDecision::TooManyActive
    } else if g.active_runs == 1 && g.policy == ConcurrencyPolicy::Forbid {
        GateDecision::WaitForActiveRun
    } else if g.requested || g.spec_changed || (g.poll_due && !g.run_finished_recently) {
        GateDecision::CallLambda
    } else {
        GateDecision::NotDue
    }
}

/// What to do with a lambda's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerVerdict {
    /// No run wanted and none active.
    Idle,
    /// A run is active and stays (no sync wanted, or wanted with the same parameters).
    KeepActive,
    /// Start a run with these pipeline params.
    Start(BTreeMap<String, ParamValue>),
    /// Cancel the active run, then start one with these params (`Replace` only).
    Replace(BTreeMap<String, ParamValue>),
    /// A sync was asked for but cannot be run: the message says why.
    Unusable(String),
}

/// `active_params` is `Some` when a run is active, holding the params recorded on it.
pub fn on_answer(
    answer: &NeedsSyncAnswer,
    mappings: &[ParameterMapping],
    active_params: Option<Option<&BTreeMap<String, ParamValue>>>,
) -> AnswerVerdict {
    if !answer.needs_sync {
        return match active_params {
            Some(_) => AnswerVerdict::KeepActive,
            None => AnswerVerdict::Idle,
        };
    }
    let params = match mapped_params(mappings, answer) {
        Ok(p) => p,
        Err(e) => return AnswerVerdict::Unusable(e.0),
    };
    match active_params {
        None => AnswerVerdict::Start(params),
        Some(Some(current)) if *current == params => AnswerVerdict::KeepActive,
        Some(_) => AnswerVerdict::Replace(params),
    }
}

/// Delay before retrying a failing lambda: 1s, 2s, 4s, ... never more than the poll interval.
pub fn backoff(consecutive_failures: u32, cap: Duration) -> Duration {
    let exp = consecutive_failures.saturating_sub(1).min(20);
    Duration::from_secs(1u64 << exp)
        .min(cap)
        .max(Duration::from_millis(100).min(cap))
}

/// The poll interval spread by ±10% so resources created together do not poll together.
/// `unit` is a random number in [0, 1).
pub fn jittered(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0))
}

/// The two clocks, read once: wall-clock time for what is stored (status, run annotations,
/// Tekton's timestamps), monotonic time for what is scheduled in this process.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub wall: DateTime<Utc>,
    pub mono: Instant,
}

impl Now {
    pub fn read() -> Self {
        Now {
            wall: Utc::now(),
            mono: Instant::now(),
        }
    }

    /// The monotonic instant of wall-clock time `t`.
    pub fn instant_of(&self, t: DateTime<Utc>) -> Instant {
        match (t - self.wall).to_std() {
            Ok(ahead) => self.mono + ahead,
            Err(_) => {
                let behind = (self.wall - t).to_std().unwrap_or_default();
                self.mono.checked_sub(behind).unwrap_or(self.mono)
            }
        }
    }
}

/// The lambda's answer, or why there is none, and when it came.
#[derive(Debug)]
pub struct Answer {
    pub result: Result<NeedsSyncAnswer, AskError>,
    pub at: Now,
}

/// Why a pass has no answer from the lambda. Each kind is its own `Ready` reason; none starts
/// a run, all are retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The Secret with the lambda's credentials cannot be used, so the lambda was not asked
    /// (`LambdaSecretError`).
    #[error("{0}")]
    Secret(SecretError),
    /// The call failed, was refused by the egress rules before connecting
    /// (`LambdaURLDenied`), or its answer broke the protocol.
    #[error("{0}")]
    Call(CallError),
}

impl AskError {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            AskError::Secret(_) => "secret",
            AskError::Call(e) => e.metric_label(),
        }
    }

    /// Where the failure leaves the ModelSync.
    pub fn phase(&self) -> Phase {
        let call = match self {
            AskError::Secret(e) => return Phase::LambdaSecretError(e.to_string()),
            AskError::Call(call) => call,
        };
        let message = call.condition_message();
        match call.kind() {
            FailureKind::Unavailable => Phase::LambdaError(message),
            FailureKind::InvalidResponse => Phase::InvalidLambdaResponse(message),
            FailureKind::Denied => Phase::LambdaUrlDenied(message),
        }
    }
}

/// Everything one pass decides from.
pub struct Facts<'a> {
    pub modelsync: &'a ModelSync,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    /// The runs this ModelSync controls, as the watch shows them.
    pub runs: Vec<Arc<RunRecord>>,
    pub schedule: Entry,
    pub now: Now,
    /// A random number in [0, 1) spreading the poll interval.
    pub jitter: f64,
    /// `None` until the lambda was asked in this pass.
    pub answer: Option<Answer>,
}

/// The lambda call a plan asks for; the pass plans again with the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AskLambda {
    pub last_run: Option<String>,
    pub timeout: Duration,
}

/// A run to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRun {
    pub name: String,
    pub body: serde_json::Value,
}

/// What creating a run led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// Created now; the API server's uid for it.
    New { uid: Option<String> },
    /// The same decision's run already existed (a pass before a restart created it): ours.
    Adopted,
    /// The API server (Tekton's schema) refused the run.
    Rejected(String),
}

/// What one pass does, in this order: delete, ask (then plan again), cancel, create, write
/// status, requeue.
#[derive(Debug)]
pub struct Plan {
    /// Finished runs beyond the history limits, oldest first.
    pub delete: Vec<String>,
    pub ask: Option<AskLambda>,
    /// The active run to cancel (`Replace`).
    pub cancel: Option<String>,
    pub create: Option<NewRun>,
    /// The parameters annotation of the run in `create`, kept for [`Plan::created`] (the
    /// pass takes `create` to carry it out).
    pub create_parameters: Option<String>,
    pub observation: Observation,
    /// The wall-clock time the status describes.
    pub status_time: DateTime<Utc>,
    pub schedule: Entry,
    /// When the next pass is due; `None` waits for a change to the ModelSync.
    pub due: Option<Instant>,
    /// How late the lambda is asked compared with when it was due, for the metric.
    pub poll_lag: Option<Duration>,
    /// Worth a warning in the log (the condition carries the same text).
    pub warning: Option<String>,
}

impl Plan {
    /// Folds the create call's outcome in: a created or adopted run is reported active in
    /// this very status write (no second write when the watch shows it) and remembered until
    /// the watch does; a refused one makes the template invalid.
    pub fn created(&mut self, namespace: &str, run: &str, outcome: Created, now: Now) {
        let uid = match outcome {
            Created::New { uid } => uid,
            Created::Adopted => None,
            Created::Rejected(msg) => {
                self.observation.phase = Phase::InvalidTemplate(msg);
                return;
            }
        };
        self.observation.phase = Phase::RunActive(run.to_owned());
        self.observation.active = Some(run_ref(namespace, run, uid.clone()));
        self.observation.run_started = true;
        self.observation.last_run = Some(RunSummary {
            name: run.to_owned(),
            start_time: None,
            completion_time: None,
            result: RunResult::Running,
        });
        let parameters = self.create_parameters.clone();
        self.schedule
            .created(run, uid, parameters, now.mono, now.wall);
    }
}

/// A reference to a PipelineRun, for status and events.
pub fn run_ref(namespace: &str, name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("tekton.dev/v1".into()),
        kind: Some("PipelineRun".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid,
        ..Default::default()
    }
}

/// The plan for one pass. Called without an answer first; when that plan asks the lambda, the
/// pass adds the answer to the facts and calls it again.
pub fn plan(facts: &Facts<'_>) -> Plan {
    let ms = facts.modelsync;
    let spec = &ms.spec;
    let now = facts.now;
    let prev = ms.status.clone().unwrap_or_default();
    let mut schedule = facts.schedule.clone();

    // The runs this ModelSync owns, including one just created and not yet watched.
    let mut owned = facts.runs.clone();
    if let Some(pending) =
        schedule.pending_unseen(|name| owned.iter().any(|r| r.name == name), now.mono)
    {
        owned.push(Arc::new(pending.placeholder(facts.uid)));
    }
    let runs = OwnedRuns::new(owned);
    let delete = runs.to_collect(
        spec.successful_pipeline_runs_history_limit.max(0) as usize,
        spec.failed_pipeline_runs_history_limit.max(0) as usize,
    );
    let active = runs.active();
    let observation = Observation {
        generation: ms.metadata.generation,
        phase: Phase::Idle,
        active: active
            .first()
            .map(|r| run_ref(facts.namespace, &r.name, r.uid.clone())),
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
    let mut plan = Plan {
        delete,
        ask: None,
        cancel: None,
        create: None,
        create_parameters: None,
        observation,
        status_time: facts.answer.as_ref().map_or(now.wall, |a| a.at.wall),
        schedule,
        due: None,
        poll_lag: None,
        warning: None,
    };
    let obs = &mut plan.observation;

    let (interval, timeout) = match (spec.poll_interval(), spec.lambda_timeout()) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            obs.phase = Phase::InvalidTemplate(e);
            return plan;
        }
    };
    let acted = &plan.schedule.acted;
    let requested_at = ms
        .annotations()
        .get(ANNOTATION_REQUESTED_AT)
        .filter(|v| prev.last_handled_requested_at.as_ref() != Some(*v))
        .filter(|v| acted.requested_at.as_ref() != Some(*v))
        .cloned();
    let spec_changed = prev.observed_generation != ms.metadata.generation
        && acted.generation != ms.metadata.generation;
    let poll = plan.schedule.poll;
    // The settle period: the newest run finished less than one interval ago.
    let settle_until = runs
        .newest()
        .filter(|r| r.result != RunResult::Running)
        .and_then(|r| r.completion_time)
        .map(|t| t + chrono::Duration::from_std(interval).unwrap_or_default());
    let settling = settle_until.filter(|t| *t > now.wall);
    let decision = gate(&Gate {
        run_finished_recently: settling.is_some(),
        suspend: spec.suspend,
        policy: spec.concurrency_policy,
        active_runs: active.len(),
        poll_due: plan.schedule.poll_due(now.mono),
        requested: requested_at.is_some(),
        spec_changed,
    });
    // Every status this pass writes records the generation it saw.
    plan.schedule.acted.generation = ms.metadata.generation;
    // A status read from a stale cache must not carry an older handled request back into
    // the status this pass writes.
    obs.handled_requested_at = plan.schedule.acted.requested_at.clone();
    // Due instants count from the start of the pass: a pass can take seconds (a slow lambda,
    // a busy API server), and counting from its end would make every poll that much late.
    let jittered = jittered(interval, facts.jitter);
    plan.due = Some(now.mono + jittered);

    match decision {
        GateDecision::Suspended => obs.phase = Phase::Suspended,
        GateDecision::TooManyActive => {
            let names: Vec<String> = active.iter().map(|r| r.name.clone()).collect();
            obs.phase = Phase::TooManyActiveRuns(format!(
                "{} runs labelled {LABEL_NAME}={} are active ({}); no run starts until at most one is",
                names.len(),
                facts.name,
                names.join(", ")
            ));
        }
        GateDecision::WaitForActiveRun => obs.phase = Phase::RunActive(active[0].name.clone()),
        GateDecision::NotDue => {
            obs.phase = match active.first() {
                Some(run) => Phase::RunActive(run.name.clone()),
                None => Phase::still_reported(&prev.conditions).unwrap_or(Phase::Idle),
            };
            let mut due = poll.map_or(now.mono + jittered, |p| p.next_due);
            if let Some(t) = settling {
                due = due.max(now.instant_of(t));
            }
            plan.due = Some(due);
        }
        GateDecision::CallLambda => {
            if let Err(e) = template::v1_spec(&spec.pipeline_run_template) {
                obs.phase = Phase::InvalidTemplate(e.0);
                plan.schedule.polled(now.mono + jittered);
                return plan;
            }
            if let Some(p) = poll.filter(|p| p.next_due <= now.mono) {
                // Waiting out a finished run's settle period is the plan, not lag.
                let planned = settle_until
                    .map(|t| now.instant_of(t))
                    .map_or(p.next_due, |settled| settled.max(p.next_due))
                    .min(now.mono);
                plan.poll_lag = Some(now.mono - planned);
            }
            if requested_at.is_some() {
                obs.handled_requested_at = requested_at.clone();
                plan.schedule.acted.requested_at = requested_at;
            }
            let last_run = runs.newest().map(|r| r.name.clone());
            match &facts.answer {
                None => plan.ask = Some(AskLambda { last_run, timeout }),
                Some(answer) => {
                    let active_params = active
                        .first()
                        .map(|r| template::recorded_params(r.parameters.as_deref()));
                    let active_name = active.first().map(|r| r.name.clone());
                    on_lambda(
                        &mut plan,
                        facts,
                        answer,
                        Held {
                            name: active_name,
                            params: active_params,
                        },
                        last_run,
                        interval,
                        jittered,
                    );
                }
            }
        }
    }
    plan
}

/// The active run, if any, and the params recorded on it.
struct Held {
    name: Option<String>,
    params: Option<Option<BTreeMap<String, ParamValue>>>,
}

/// The part of [`plan`] that follows the lambda's answer.
fn on_lambda(
    plan: &mut Plan,
    facts: &Facts<'_>,
    answer: &Answer,
    held: Held,
    last_run: Option<String>,
    interval: Duration,
    jittered: Duration,
) {
    let now = facts.now;
    let url = &facts.modelsync.spec.needs_sync_url;
    let backoff_due = now.mono + backoff(plan.schedule.failures() + 1, interval);
    let obs = &mut plan.observation;
    let answer_value = match &answer.result {
        Ok(a) => a,
        Err(e) => {
            plan.schedule.failed(backoff_due);
            plan.due = Some(backoff_due);
            plan.warning = Some(format!(
                "{e}; retrying in {:?}",
                backoff_due.saturating_duration_since(now.mono)
            ));
            obs.phase = e.phase();
            return;
        }
    };
    obs.decision = Some(LambdaDecision {
        needs_sync: answer_value.needs_sync,
        parameters: answer_value.parameters.clone(),
        reason: answer_value.reason.clone(),
        revision: answer_value.revision.clone(),
        time: answer.at.wall,
    });
    let verdict = on_answer(
        answer_value,
        &facts.modelsync.spec.parameters,
        held.params.as_ref().map(|p| p.as_ref()),
    );
    if !matches!(verdict, AnswerVerdict::Unusable(_)) {
        plan.schedule.polled(now.mono + jittered);
        plan.due = Some(now.mono + jittered);
    }
    let params = match verdict {
        AnswerVerdict::Idle => {
            obs.phase = Phase::Idle;
            return;
        }
        AnswerVerdict::KeepActive => {
            obs.phase = Phase::RunActive(held.name.unwrap_or_default());
            return;
        }
        AnswerVerdict::Unusable(msg) => {
            plan.schedule.failed(backoff_due);
            plan.due = Some(backoff_due);
            obs.phase = Phase::InvalidLambdaResponse(format!("lambda GET {url}: {msg}"));
            plan.warning = Some(msg);
            return;
        }
        AnswerVerdict::Start(params) | AnswerVerdict::Replace(params) => params,
    };
    // Cancelled before the new run is built, as before: a Replace always ends the old run.
    plan.cancel = held.name;
    let run_name = template::run_name(facts.name, facts.uid, last_run.as_deref(), &params);
    let body = template::build_run(&RunRequest {
        name: &run_name,
        namespace: facts.namespace,
        modelsync: facts.name,
        owner: owner_ref(facts),
        template: &facts.modelsync.spec.pipeline_run_template,
        params: &params,
        answer: answer_value,
        // Microseconds: runs decided within one second must still order by decision.
        decided_at: &answer.at.wall.to_rfc3339_opts(SecondsFormat::Micros, true),
        lambda_url: &facts.modelsync.spec.needs_sync_url,
        shard: facts
            .modelsync
            .labels()
            .get(LABEL_SHARD)
            .map(String::as_str),
    });
    match body {
        Err(e) => obs.phase = Phase::InvalidTemplate(e.0),
        Ok(body) => {
            plan.create_parameters = body["metadata"]["annotations"][ANNOTATION_PARAMETERS]
                .as_str()
                .map(str::to_owned);
            plan.create = Some(NewRun {
                name: run_name,
                body,
            })
        }
    }
}

/// The ModelSync as the controlling owner of its runs, so deleting it deletes them.
fn owner_ref(facts: &Facts<'_>) -> serde_json::Value {
    let owner = OwnerReference {
        api_version: ModelSync::api_version(&()).into_owned(),
        kind: ModelSync::kind(&()).into_owned(),
        name: facts.name.to_owned(),
        uid: facts.uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    serde_json::to_value(owner).expect("owner references serialize")
}

#[cfg(test)]
mod tests;
