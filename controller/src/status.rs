//! The ModelSync status a pass leads to, and the events worth telling about. Pure: the
//! reconciler writes status only when [`next_status`] differs from what is stored, so a poll
//! that changes nothing writes nothing.

use chrono::{DateTime, SubsecRound, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use modelsync_api::modelsync::{LambdaDecision, ModelSyncStatus, RunResult, RunSummary};

/// Where a ModelSync stands after a pass. Each maps to the `Ready` condition's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nothing to do: the lambda said no, or the last run is done.
    Idle,
    /// The named run is going (including one this pass started: see
    /// [`Observation::run_started`]).
    RunActive(String),
    Suspended,
    /// The lambda could not be asked, or did not answer properly; retried with backoff.
    LambdaError(String),
    InvalidLambdaResponse(String),
    /// The Secret `spec.lambdaSecretRef` names is missing, unreadable, or lacks a key; the
    /// lambda is not asked. Retried with backoff.
    LambdaSecretError(String),
    /// The egress rules refuse the lambda's address; no connection was made. Retried with
    /// backoff, since a name may resolve elsewhere later.
    LambdaUrlDenied(String),
    /// The template cannot become a run until the spec changes.
    InvalidTemplate(String),
    /// Several active runs carry this ModelSync's label: none is started until one remains.
    TooManyActiveRuns(String),
}

impl Phase {
    pub fn reason(&self) -> &'static str {
        match self {
            Phase::Idle => "Idle",
            Phase::RunActive(_) => "RunActive",
            Phase::Suspended => "Suspended",
            Phase::LambdaError(_) => "LambdaError",
            Phase::InvalidLambdaResponse(_) => "InvalidLambdaResponse",
            Phase::LambdaSecretError(_) => "LambdaSecretError",
            Phase::LambdaUrlDenied(_) => "LambdaURLDenied",
            Phase::InvalidTemplate(_) => "InvalidTemplate",
            Phase::TooManyActiveRuns(_) => "TooManyActiveRuns",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Phase::Idle => "no run needed; waiting for the next poll".into(),
            Phase::RunActive(run) => format!("PipelineRun {run} is running"),
            Phase::Suspended => "suspended: no lambda calls and no new runs".into(),
            Phase::LambdaError(m)
            | Phase::InvalidLambdaResponse(m)
            | Phase::LambdaSecretError(m)
            | Phase::LambdaUrlDenied(m)
            | Phase::InvalidTemplate(m)
            | Phase::TooManyActiveRuns(m) => m.clone(),
        }
    }

    /// (Ready, Reconciling, Stalled) as kstatus reads them.
    fn statuses(&self) -> (bool, bool, bool) {
        match self {
            Phase::Idle | Phase::Suspended => (true, false, false),
            Phase::RunActive(_) => (true, true, false),
            Phase::LambdaError(_)
            | Phase::InvalidLambdaResponse(_)
            | Phase::LambdaSecretError(_)
            | Phase::LambdaUrlDenied(_) => (false, false, false),
            Phase::InvalidTemplate(_) | Phase::TooManyActiveRuns(_) => (false, false, true),
        }
    }

    /// The error a stored `Ready` condition reports, for a pass that did not check again: it
    /// stays reported until a call shows otherwise. Status is the only memory that survives a
    /// restart, so this reads it back; other reasons are not carried over.
    pub fn still_reported(conditions: &[Condition]) -> Option<Phase> {
        let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
        let carried: [fn(String) -> Phase; 5] = [
            Phase::LambdaError,
            Phase::InvalidLambdaResponse,
            Phase::LambdaSecretError,
            Phase::LambdaUrlDenied,
            Phase::InvalidTemplate,
        ];
        carried
            .into_iter()
            .map(|phase| phase(ready.message.clone()))
            .find(|phase| phase.reason() == ready.reason)
    }
}

/// Everything one pass learned.
#[derive(Clone, Debug)]
pub struct Observation {
    pub generation: Option<i64>,
    pub phase: Phase,
    pub active: Option<ObjectReference>,
    pub last_run: Option<RunSummary>,
    pub last_successful_run: Option<RunSummary>,
    /// The lambda's answer in this pass, if it was asked and answered.
    pub decision: Option<LambdaDecision>,
    /// This pass created (or adopted) the run that [`Observation::phase`] names as active:
    /// told by a `RunStarted` event, recorded as a check.
    pub run_started: bool,
    /// A `requested-at` value handled in this pass.
    pub handled_requested_at: Option<String>,
    /// How the run that status last named stands now (it may no longer be the newest).
    pub previous_run_now: Option<RunSummary>,
}

fn to_time(t: DateTime<Utc>) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).unwrap_or_default())
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    prev: &[Condition],
    now: DateTime<Utc>,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_owned();
    // The transition time moves only when the status flips (kstatus / API conventions).
    let last_transition_time = prev
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| to_time(now));
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// Whether two decisions differ in what they ask for (not in wording or time): a lambda whose
/// reason says "model is 26h old" must not cause a status write every poll.
fn same_decision(a: &LambdaDecision, b: &LambdaDecision) -> bool {
    a.needs_sync == b.needs_sync && a.parameters == b.parameters && a.revision == b.revision
}

pub fn next_status(
    prev: &ModelSyncStatus,
    obs: &Observation,
    now: DateTime<Utc>,
) -> ModelSyncStatus {
    let now = now.trunc_subsecs(0);
    let (ready, reconciling, stalled) = obs.phase.statuses();
    let reason = obs.phase.reason();
    let message = obs.phase.message();
    let conditions = [
        ("Ready", ready),
        ("Reconciling", reconciling),
        ("Stalled", stalled),
    ]
    .into_iter()
    .map(|(type_, status)| {
        condition(
            type_,
            status,
            reason,
            message.clone(),
            obs.generation,
            &prev.conditions,
            now,
        )
    })
    .collect();

    let mut last_decision = prev.last_decision.clone();
    let mut last_check_time = prev.last_check_time;
    if let Some(d) = &obs.decision {
        let changed = prev
            .last_decision
            .as_ref()
            .is_none_or(|p| !same_decision(p, d));
        if changed {
            last_decision = Some(LambdaDecision {
                time: now,
                ..d.clone()
            });
            last_check_time = Some(now);
        }
    }
    if obs.run_started {
        last_check_time = Some(now);
    }

    ModelSyncStatus {
        observed_generation: obs.generation,
        conditions,
        active: obs.active.iter().cloned().collect(),
        last_check_time,
        last_decision,
        last_run: still_running(&prev.last_run, &obs.last_run)
            .or_else(|| obs.last_run.clone())
            .or_else(|| prev.last_run.clone()),
        last_successful_run: obs
            .last_successful_run
            .clone()
            .or_else(|| prev.last_successful_run.clone()),
        last_handled_requested_at: obs
            .handled_requested_at
            .clone()
            .or_else(|| prev.last_handled_requested_at.clone()),
    }
}

/// The summary already written for a run that is still running, kept as it is: Tekton setting
/// the run's `startTime` is no reason for a status write of its own. The start time is written
/// with the run's end, so a run's life costs one status write when it starts and one when it
/// ends.
fn still_running(written: &Option<RunSummary>, now: &Option<RunSummary>) -> Option<RunSummary> {
    match (written, now) {
        (Some(w), Some(n))
            if w.name == n.name
                && w.result == RunResult::Running
                && n.result == RunResult::Running =>
        {
            Some(w.clone())
        }
        _ => None,
    }
}

/// An event to publish: (warning?, reason, note, related run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
    pub run: Option<String>,
}

/// Events for what changed between two statuses: state changes only, never "still the same".
pub fn events(prev: &ModelSyncStatus, next: &ModelSyncStatus, obs: &Observation) -> Vec<EventSpec> {
    let phase = &obs.phase;
    let mut out = Vec::new();
    let prev_ready = prev.conditions.iter().find(|c| c.type_ == "Ready");
    let ready_changed =
        prev_ready.is_none_or(|c| c.reason != phase.reason() || c.message != phase.message());
    match phase {
        Phase::RunActive(run) if obs.run_started => out.push(EventSpec {
            warning: false,
            reason: "RunStarted",
            note: match &next.last_decision {
                Some(LambdaDecision {
                    reason: Some(r), ..
                }) => format!("started PipelineRun {run}: {r}"),
                _ => format!("started PipelineRun {run}"),
            },
            run: Some(run.clone()),
        }),
        Phase::LambdaError(m)
        | Phase::InvalidLambdaResponse(m)
        | Phase::LambdaSecretError(m)
        | Phase::LambdaUrlDenied(m)
        | Phase::InvalidTemplate(m)
        | Phase::TooManyActiveRuns(m)
            if ready_changed =>
        {
            out.push(EventSpec {
                warning: true,
                reason: phase.reason(),
                note: m.clone(),
                run: None,
            });
        }
        _ => {}
    }
    // A run that status last saw going and that has now finished.
    if let (Some(before), Some(now)) = (&prev.last_run, &obs.previous_run_now)
        && before.name == now.name
        && before.result == RunResult::Running
        && now.result != RunResult::Running
    {
        let (warning, reason, verb) = match now.result {
            RunResult::Succeeded => (false, "RunSucceeded", "succeeded"),
            RunResult::Cancelled => (false, "RunCancelled", "was cancelled"),
            _ => (true, "RunFailed", "failed"),
        };
        out.push(EventSpec {
            warning,
            reason,
            note: format!("PipelineRun {} {verb}", now.name),
            run: Some(now.name.clone()),
        });
    }
    out
}

#[cfg(test)]
mod tests;
