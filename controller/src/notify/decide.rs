//! Which notifications one pass leads to. Pure: from what the pass wrote (the status events),
//! the lambda failure counts before and after it, the `Ready` condition and the runs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use modelsync_api::modelsync::{NotifyEvent, RunResult};
use sha2::{Digest, Sha256};

use crate::runs::RunRecord;
use crate::status::EventSpec;

/// Lambda failures in a row that make `LambdaFailing`.
pub const FAILING_AFTER: u32 = 3;

/// `Ready` reasons that mean the lambda could not be asked or did not answer usably.
const LAMBDA_REASONS: [&str; 4] = [
    "LambdaError",
    "InvalidLambdaResponse",
    "LambdaSecretError",
    "LambdaURLDenied",
];

/// One notification, before a receiver's format writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The same for every repeat of one event of one run (or one failure streak).
    pub id: String,
    pub event: NotifyEvent,
    pub namespace: String,
    pub name: String,
    /// The ModelSync's uid.
    pub uid: String,
    pub run: Option<String>,
    pub result: Option<RunResult>,
    pub message: String,
    /// When it happened (a run's start or completion when known).
    pub time: DateTime<Utc>,
}

impl Notice {
    /// Whether it reports trouble (receivers show these as errors).
    pub fn is_error(&self) -> bool {
        matches!(
            self.event,
            NotifyEvent::RunFailed | NotifyEvent::LambdaFailing
        )
    }
}

/// What a pass knows that decides its notifications.
pub struct PassFacts<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    /// The events the pass's status write published (empty when it wrote nothing).
    pub told: &'a [EventSpec],
    /// The runs this ModelSync owns, as the watch shows them.
    pub runs: &'a [Arc<RunRecord>],
    /// Lambda failures in a row, as this process counted them, before and after the pass.
    pub failures_before: u32,
    pub failures_after: u32,
    /// The pass got a usable answer from the lambda.
    pub answered: bool,
    /// This process had asked the lambda of this ModelSync before the pass.
    pub polled_before: bool,
    /// The `Ready` condition before and after the pass.
    pub ready_before: Option<&'a Condition>,
    pub ready_after: Option<&'a Condition>,
    /// The first pass of this process over this ModelSync: recent runs are told again.
    pub replay: bool,
    pub replay_window: Duration,
    pub now: DateTime<Utc>,
}

/// The notifications of one pass, each once.
pub fn decide(f: &PassFacts<'_>) -> Vec<Notice> {
    let mut out = Vec::new();
    for told in f.told {
        if let Some(notice) = from_event(f, told) {
            out.push(notice);
        }
    }
    if let Some(notice) = lambda_streak(f) {
        out.push(notice);
    }
    if f.replay {
        out.extend(replayed(f));
    }
    let mut ids = BTreeSet::new();
    out.retain(|n| ids.insert(n.id.clone()));
    out
}

/// A stable id: the ModelSync, what the event is about, and the event.
pub fn notice_id(uid: &str, subject: &str, event: NotifyEvent) -> String {
    let mut hash = Sha256::new();
    for part in [uid, subject, event.as_str()] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    format!("{:x}", hash.finalize())[..32].to_owned()
}

fn run_event(reason: &str) -> Option<(NotifyEvent, Option<RunResult>)> {
    Some(match reason {
        "RunStarted" => (NotifyEvent::RunStarted, Some(RunResult::Running)),
        "RunSucceeded" => (NotifyEvent::RunSucceeded, Some(RunResult::Succeeded)),
        "RunFailed" => (NotifyEvent::RunFailed, Some(RunResult::Failed)),
        "RunCancelled" => (NotifyEvent::RunCancelled, Some(RunResult::Cancelled)),
        _ => return None,
    })
}

fn notice(
    f: &PassFacts<'_>,
    event: NotifyEvent,
    subject: &str,
    run: Option<&str>,
    result: Option<RunResult>,
    message: String,
    time: DateTime<Utc>,
) -> Notice {
    Notice {
        id: notice_id(f.uid, subject, event),
        event,
        namespace: f.namespace.to_owned(),
        name: f.name.to_owned(),
        uid: f.uid.to_owned(),
        run: run.map(str::to_owned),
        result,
        message,
        time,
    }
}

/// When a run started, or ended for the end events.
fn run_time(run: Option<&RunRecord>, event: NotifyEvent) -> Option<DateTime<Utc>> {
    let run = run?;
    match event {
        NotifyEvent::RunStarted => run.decided_at.or(run.created),
        _ => run.completion_time,
    }
}

fn from_event(f: &PassFacts<'_>, told: &EventSpec) -> Option<Notice> {
    let (event, result) = run_event(told.reason)?;
    let run = told.run.as_deref()?;
    let record = f.runs.iter().find(|r| r.name == run).map(|r| &**r);
    let time = run_time(record, event).unwrap_or(f.now);
    Some(notice(
        f,
        event,
        run,
        Some(run),
        result,
        told.note.clone(),
        time,
    ))
}

fn is_lambda_trouble(ready: Option<&Condition>) -> bool {
    ready.is_some_and(|c| c.status == "False" && LAMBDA_REASONS.contains(&c.reason.as_str()))
}

/// The streak a `Ready=False` condition names: its transition time, kept in status, so both
/// ends of one streak get the same subject across restarts.
fn streak(ready: &Condition) -> String {
    format!("lambda-failing-since:{}", ready.last_transition_time.0)
}

fn lambda_streak(f: &PassFacts<'_>) -> Option<Notice> {
    if f.failures_before < FAILING_AFTER && f.failures_after >= FAILING_AFTER {
        let ready = f.ready_after.filter(|c| is_lambda_trouble(Some(c)))?;
        return Some(notice(
            f,
            NotifyEvent::LambdaFailing,
            &streak(ready),
            None,
            None,
            format!(
                "the lambda failed {} times in a row: {}: {}",
                f.failures_after, ready.reason, ready.message
            ),
            f.now,
        ));
    }
    // A streak this process saw reach 3, or one it found in status at its start: that one may
    // have reached 3 before a restart, and a repeated `Recovered` costs less than a lost one.
    let failed_long = f.failures_before >= FAILING_AFTER || !f.polled_before;
    if f.answered && failed_long && is_lambda_trouble(f.ready_before) {
        let ready = f.ready_before?;
        return Some(notice(
            f,
            NotifyEvent::Recovered,
            &streak(ready),
            None,
            None,
            format!(
                "the lambda answers again; it had failed since {} ({})",
                ready.last_transition_time.0, ready.reason
            ),
            f.now,
        ));
    }
    None
}

/// What a lost queue may have held: recent starts and ends of this ModelSync's runs.
fn replayed(f: &PassFacts<'_>) -> Vec<Notice> {
    let window = chrono::Duration::from_std(f.replay_window).unwrap_or(chrono::Duration::MAX);
    let since = f
        .now
        .checked_sub_signed(window)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut out = Vec::new();
    for run in f.runs {
        if let Some(started) = run_time(Some(run), NotifyEvent::RunStarted)
            && started >= since
        {
            out.push(notice(
                f,
                NotifyEvent::RunStarted,
                &run.name,
                Some(&run.name),
                Some(RunResult::Running),
                format!("started PipelineRun {}", run.name),
                started,
            ));
        }
        let ended = match run.result {
            RunResult::Succeeded => (NotifyEvent::RunSucceeded, "succeeded"),
            RunResult::Failed => (NotifyEvent::RunFailed, "failed"),
            RunResult::Cancelled => (NotifyEvent::RunCancelled, "was cancelled"),
            RunResult::Running => continue,
        };
        if let Some(at) = run.completion_time.filter(|t| *t >= since) {
            out.push(notice(
                f,
                ended.0,
                &run.name,
                Some(&run.name),
                Some(run.result),
                format!("PipelineRun {} {}", run.name, ended.1),
                at,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
