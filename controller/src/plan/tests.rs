//! The rules of a pass, table-driven over a fake clock: the gate, settling after a run, poll
//! lag, backoff, the pending-run window and adoption, and Replace.

use std::sync::OnceLock;

use chrono::TimeZone;
use modelsync_api::egress::EgressRules;
use modelsync_api::lambda::AnswerError;
use modelsync_api::modelsync::ModelSyncStatus;
use serde_json::json;

use super::*;
use crate::schedule::{PENDING_GRACE, PendingRun, PollState};
use crate::status::next_status;

const UID: &str = "uid-1";

/// A fake clock: `at(s)` is `s` seconds after a fixed start, on both clocks.
fn at(secs: i64) -> Now {
    static START: OnceLock<Instant> = OnceLock::new();
    // Far enough from the process start that instants before the fixed start exist.
    let start = *START.get_or_init(|| Instant::now() + Duration::from_secs(3600));
    let mono = if secs >= 0 {
        start + Duration::from_secs(secs as u64)
    } else {
        start - Duration::from_secs(secs.unsigned_abs())
    };
    Now {
        wall: Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap(),
        mono,
    }
}

/// A ModelSync polling every 60s, its spec already observed, with `extra` merged into its spec.
fn modelsync(extra: serde_json::Value) -> ModelSync {
    let mut spec = json!({
        "needsSyncUrl": "http://lambda/retrain",
        "pollInterval": "60s",
        "parameters": [{"needsSyncName": "model", "pipelineName": "model-id"}],
        "pipelineRunTemplate": {"spec": {"pipelineRef": {"name": "train"}}},
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let mut ms = ModelSync::new("m", serde_json::from_value(spec).unwrap());
    ms.metadata.namespace = Some("ns".into());
    ms.metadata.uid = Some(UID.into());
    ms.metadata.generation = Some(1);
    ms.status = Some(ModelSyncStatus {
        observed_generation: Some(1),
        ..Default::default()
    });
    ms
}

fn run(name: &str, result: RunResult, completed: Option<i64>, model: &str) -> Arc<RunRecord> {
    Arc::new(RunRecord {
        name: name.into(),
        uid: Some(format!("{name}-uid")),
        created: Some(at(-600).wall),
        decided_at: None,
        controller_uid: Some(UID.into()),
        result,
        cancel_requested: false,
        start_time: Some(at(-600).wall),
        completion_time: completed.map(|s| at(s).wall),
        parameters: Some(format!(r#"{{"model-id":"{model}"}}"#)),
    })
}

fn facts(ms: &ModelSync, runs: Vec<Arc<RunRecord>>, schedule: Entry, now: Now) -> Facts<'_> {
    Facts {
        modelsync: ms,
        namespace: "ns",
        name: "m",
        uid: UID,
        runs,
        schedule,
        now,
        jitter: 0.5,
        answer: None,
    }
}

fn polled(next_due: i64, failures: u32) -> Entry {
    Entry {
        poll: Some(PollState {
            next_due: at(next_due).mono,
            failures,
        }),
        pending: None,
        acted: Default::default(),
    }
}

fn answered(result: Result<NeedsSyncAnswer, CallError>, now: Now) -> Option<Answer> {
    Some(Answer {
        result: result.map_err(AskError::Call),
        at: now,
    })
}

fn unreachable() -> CallError {
    CallError::Unreachable {
        url: "http://lambda/retrain".into(),
        detail: "connection refused".into(),
    }
}

fn not_json() -> CallError {
    CallError::Answer {
        url: "http://lambda/retrain".into(),
        error: AnswerError::NotJson {
            detail: "expected value".into(),
        },
        excerpt: "\"<html>\"".into(),
        elapsed: Duration::ZERO,
    }
}

/// What, extra spec, runs, schedule entry, asks?, due in s from now, poll lag in s.
type Case = (
    &'static str,
    serde_json::Value,
    Vec<Arc<RunRecord>>,
    Entry,
    bool,
    i64,
    Option<u64>,
);

#[test]
fn the_schedule_and_the_settle_period_decide_when_the_lambda_is_asked() {
    let ok = RunResult::Succeeded;
    let cases: Vec<Case> = vec![
        (
            "never polled by this process: ask now",
            json!({}),
            vec![],
            Entry::default(),
            true,
            60,
            None,
        ),
        (
            "due 3s ago: ask, 3s late",
            json!({}),
            vec![],
            polled(-3, 0),
            true,
            60,
            Some(3),
        ),
        (
            "due in 20s: wait for it",
            json!({}),
            vec![],
            polled(20, 0),
            false,
            20,
            None,
        ),
        (
            "a run finished 10s ago: settle until one interval after it",
            json!({}),
            vec![run("r1", ok, Some(-10), "m1")],
            polled(-5, 0),
            false,
            50,
            None,
        ),
        (
            "settling, never polled: a full jittered interval from now",
            json!({}),
            vec![run("r1", ok, Some(-10), "m1")],
            Entry::default(),
            false,
            60,
            None,
        ),
        (
            "due during settling: the later one wins",
            json!({}),
            vec![run("r1", ok, Some(-10), "m1")],
            polled(5, 0),
            false,
            50,
            None,
        ),
        (
            "settled 10s ago, due 30s ago: late by 10s only, settling was planned",
            json!({}),
            vec![run("r1", ok, Some(-70), "m1")],
            polled(-30, 0),
            true,
            60,
            Some(10),
        ),
        (
            "suspended: never ask",
            json!({"suspend": true}),
            vec![],
            Entry::default(),
            false,
            60,
            None,
        ),
        (
            "Forbid with an active run: do not ask",
            json!({}),
            vec![run("r1", RunResult::Running, None, "m1")],
            Entry::default(),
            false,
            60,
            None,
        ),
        (
            "Replace with an active run: ask",
            json!({"concurrencyPolicy": "Replace"}),
            vec![run("r1", RunResult::Running, None, "m1")],
            Entry::default(),
            true,
            60,
            None,
        ),
    ];
    for (what, extra, runs, schedule, asks, due, lag) in cases {
        let ms = modelsync(extra);
        let plan = plan(&facts(&ms, runs, schedule, at(0)));
        assert_eq!(plan.ask.is_some(), asks, "{what}");
        assert_eq!(plan.due, Some(at(due).mono), "{what}");
        assert_eq!(plan.poll_lag, lag.map(Duration::from_secs), "{what}");
    }
}

#[test]
fn a_request_or_a_spec_change_asks_even_while_settling() {
    let settling = vec![run("r1", RunResult::Succeeded, Some(-10), "m1")];
    let mut requested = modelsync(json!({}));
    requested
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(ANNOTATION_REQUESTED_AT.into(), "now".into());
    let mut changed = modelsync(json!({}));
    changed.metadata.generation = Some(2);
    for ms in [&requested, &changed] {
        let plan = plan(&facts(ms, settling.clone(), polled(30, 0), at(0)));
        assert!(plan.ask.is_some());
    }
    let plan = plan(&facts(&requested, settling, polled(30, 0), at(0)));
    assert_eq!(
        plan.observation.handled_requested_at.as_deref(),
        Some("now")
    );
}

/// A pass started by a run's event before the cache shows the status write that handled a
/// request (or a spec change) reads the old status: it must not take the request as new. The
/// run that request started has already finished (a quick run), so asking again could start a
/// second one for the same request.
#[test]
fn a_handled_request_or_spec_change_is_not_taken_again_from_a_stale_status() {
    let mut requested = modelsync(json!({}));
    requested
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(ANNOTATION_REQUESTED_AT.into(), "t1".into());
    let mut changed = modelsync(json!({}));
    changed.metadata.generation = Some(2);
    for ms in [&requested, &changed] {
        let first = plan(&facts(ms, vec![], polled(30, 0), at(0)));
        assert!(
            first.ask.is_some(),
            "the request or change is asked about once"
        );
        // The run it started finished at once; the cache still shows the status from before.
        let finished = vec![run("r1", RunResult::Succeeded, Some(1), "m1")];
        let again = plan(&facts(ms, finished, first.schedule.clone(), at(2)));
        assert!(
            again.ask.is_none(),
            "a stale status made the same request look new: {:?}",
            again.observation
        );
    }
    // A new request after it is still new.
    let first = plan(&facts(&requested, vec![], polled(30, 0), at(0)));
    let mut newer = requested.clone();
    newer
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(ANNOTATION_REQUESTED_AT.into(), "t2".into());
    let finished = vec![run("r1", RunResult::Succeeded, Some(1), "m1")];
    assert!(
        plan(&facts(&newer, finished, first.schedule, at(2)))
            .ask
            .is_some()
    );
}

#[test]
fn lambda_failures_back_off_and_keep_their_kind() {
    let ms = modelsync(json!({}));
    // (failures so far, error, retry after s, reason)
    let cases = [
        (0, unreachable(), 1, "LambdaError"),
        (1, unreachable(), 2, "LambdaError"),
        (5, not_json(), 32, "InvalidLambdaResponse"),
        (9, unreachable(), 60, "LambdaError"),
    ];
    for (failures, error, retry, reason) in cases {
        let mut f = facts(&ms, vec![], polled(0, failures), at(0));
        let message = error.condition_message();
        f.answer = answered(Err(error), at(1));
        let plan = plan(&f);
        assert_eq!(plan.due, Some(at(retry).mono), "after {failures} failures");
        assert_eq!(plan.schedule.failures(), failures + 1);
        assert_eq!(plan.observation.phase.reason(), reason);
        assert_eq!(
            plan.observation.phase,
            match reason {
                "LambdaError" => Phase::LambdaError(message),
                _ => Phase::InvalidLambdaResponse(message),
            }
        );
        assert!(plan.create.is_none() && plan.observation.decision.is_none());
    }
    // An unusable "yes" (the mapped parameter is empty) backs off too; a usable answer resets.
    let mut f = facts(&ms, vec![], polled(0, 2), at(0));
    f.answer = answered(Ok(yes(&[("model", "")])), at(1));
    let unusable = plan(&f);
    assert_eq!(unusable.schedule.failures(), 3);
    assert_eq!(unusable.due, Some(at(4).mono));
    assert_eq!(unusable.observation.phase.reason(), "InvalidLambdaResponse");
    f.answer = answered(Ok(NeedsSyncAnswer::default()), at(1));
    let fine = plan(&f);
    assert_eq!(fine.schedule.failures(), 0);
    assert_eq!(fine.observation.phase, Phase::Idle);
}

#[test]
fn secret_refusal_and_redirect_failures_are_typed_back_off_and_start_nothing() {
    let ms = modelsync(json!({"lambdaSecretRef": {"name": "lambda-auth"}}));
    let denied = EgressRules::default()
        .check("169.254.169.254".parse().unwrap())
        .unwrap_err();
    // (failure, reason, the message says)
    let cases = [
        (
            AskError::Secret(SecretError::NotFound {
                secret: "ns/lambda-auth".into(),
            }),
            "LambdaSecretError",
            "Secret ns/lambda-auth (spec.lambdaSecretRef) does not exist",
        ),
        (
            AskError::Secret(SecretError::MissingKey {
                secret: "ns/lambda-auth".into(),
                has: "tls.crt",
                missing: "tls.key",
            }),
            "LambdaSecretError",
            "has key tls.crt but no key tls.key",
        ),
        (
            AskError::Call(CallError::Denied {
                url: "http://169.254.169.254/latest".into(),
                refusal: denied,
            }),
            "LambdaURLDenied",
            "169.254.169.254 is in 169.254.0.0/16 of --lambda-deny-cidrs",
        ),
        (
            AskError::Call(CallError::Answer {
                url: "http://lambda/retrain".into(),
                error: AnswerError::redirect(302, Some("http://elsewhere/")),
                excerpt: "(empty)".into(),
                elapsed: Duration::ZERO,
            }),
            "LambdaError",
            "redirecting to http://elsewhere/; redirects are not followed",
        ),
    ];
    for (failures, (error, reason, says)) in cases.into_iter().enumerate() {
        let failures = failures as u32;
        let mut f = facts(&ms, vec![], polled(0, failures), at(0));
        f.answer = Some(Answer {
            result: Err(error),
            at: at(0),
        });
        let plan = plan(&f);
        assert_eq!(plan.observation.phase.reason(), reason);
        let (Phase::LambdaSecretError(message)
        | Phase::LambdaUrlDenied(message)
        | Phase::LambdaError(message)) = &plan.observation.phase
        else {
            panic!("{reason}: {:?}", plan.observation.phase);
        };
        assert!(message.contains(says), "{reason}: {message}");
        assert!(plan.create.is_none() && plan.observation.decision.is_none());
        assert_eq!(plan.schedule.failures(), failures + 1);
        assert_eq!(
            plan.due,
            Some(at(1 << failures).mono),
            "{reason} backs off like any lambda error"
        );
    }
}

#[test]
fn an_error_stays_reported_until_the_lambda_is_asked_again() {
    let mut ms = modelsync(json!({}));
    let mut f = facts(&ms, vec![], polled(0, 0), at(0));
    f.answer = answered(Err(unreachable()), at(0));
    let failing = plan(&f);
    ms.status = Some(next_status(
        ms.status.as_ref().unwrap(),
        &failing.observation,
        at(0).wall,
    ));
    let waiting = plan(&facts(&ms, vec![], failing.schedule.clone(), at(0)));
    assert!(waiting.ask.is_none());
    assert_eq!(waiting.observation.phase, failing.observation.phase);
}

#[test]
fn a_created_run_is_reported_once_and_held_until_the_watch_shows_it() {
    let mut ms = modelsync(json!({}));
    let mut f = facts(&ms, vec![], Entry::default(), at(0));
    f.answer = answered(Ok(yes(&[("model", "m1")])), at(1));
    let mut creating = plan(&f);
    let new = creating
        .create
        .clone()
        .expect("a yes with no active run creates");
    assert_eq!(new.body["metadata"]["ownerReferences"][0]["uid"], UID);
    // The same decision gives the same name, so a restart between create and status adopts.
    assert_eq!(plan(&f).create.unwrap().name, new.name);
    creating.created(
        "ns",
        &new.name,
        Created::New {
            uid: Some("run-uid".into()),
        },
        at(2),
    );
    assert_eq!(
        creating.observation.phase,
        Phase::RunActive(new.name.clone())
    );
    assert!(creating.observation.run_started);
    let written = next_status(
        ms.status.as_ref().unwrap(),
        &creating.observation,
        creating.status_time,
    );
    ms.status = Some(written.clone());

    // Passes before the watch shows the run: it is active, nothing is asked, nothing changes.
    let pending = creating.schedule.clone();
    let before_watch = plan(&facts(&ms, vec![], pending.clone(), at(30)));
    assert!(before_watch.ask.is_none() && before_watch.create.is_none());
    assert_eq!(
        next_status(&written, &before_watch.observation, at(30).wall),
        written
    );
    // The watch shows it: the pending entry is dropped, status still unchanged.
    let mut watched = (*run(&new.name, RunResult::Running, None, "m1")).clone();
    watched.uid = Some("run-uid".into());
    watched.start_time = None;
    watched.created = Some(at(2).wall);
    let after_watch = plan(&facts(
        &ms,
        vec![Arc::new(watched)],
        pending.clone(),
        at(31),
    ));
    assert!(after_watch.schedule.pending.is_none());
    assert_eq!(
        next_status(&written, &after_watch.observation, at(31).wall),
        written
    );
    // Never shown within the grace period (deleted at once): presumed gone, the lambda is asked.
    let late = at(2 + PENDING_GRACE.as_secs() as i64 + 1);
    let gone = plan(&facts(&ms, vec![], pending, late));
    assert!(gone.schedule.pending.is_none());
    assert!(gone.observation.active.is_none());
}

#[test]
fn adoption_reports_the_existing_run_as_started() {
    let ms = modelsync(json!({}));
    let mut f = facts(&ms, vec![], Entry::default(), at(0));
    f.answer = answered(Ok(yes(&[("model", "m1")])), at(0));
    let mut p = plan(&f);
    let name = p.create.clone().unwrap().name;
    p.created("ns", &name, Created::Adopted, at(0));
    assert_eq!(p.observation.phase, Phase::RunActive(name.clone()));
    assert!(p.observation.run_started);
    assert_eq!(p.observation.active.as_ref().unwrap().uid, None);
    assert_eq!(
        p.schedule.pending,
        Some(PendingRun {
            name: name.clone(),
            uid: None,
            since: at(0).mono,
            created: at(0).wall,
            parameters: Some(r#"{"model-id":"m1"}"#.into()),
        })
    );
    // After a restart the schedule is empty but the watch shows the run: Forbid holds.
    let restarted = plan(&facts(
        &ms,
        vec![run(&name, RunResult::Running, None, "m1")],
        Entry::default(),
        at(5),
    ));
    assert!(restarted.ask.is_none());
    assert_eq!(restarted.observation.phase, Phase::RunActive(name));

    let mut refused = plan(&f);
    refused.created(
        "ns",
        &name_of(&refused),
        Created::Rejected("bad".into()),
        at(0),
    );
    assert_eq!(
        refused.observation.phase,
        Phase::InvalidTemplate("bad".into())
    );
    assert!(refused.schedule.pending.is_none());
}

fn name_of(p: &Plan) -> String {
    p.create.as_ref().unwrap().name.clone()
}

#[test]
fn replace_cancels_only_for_different_parameters() {
    let ms = modelsync(json!({"concurrencyPolicy": "Replace"}));
    let active = vec![run("r1", RunResult::Running, None, "m1")];
    // (answer, cancels r1, creates, phase reason)
    let cases = [
        (yes(&[("model", "m2")]), true, true, "RunActive"),
        (yes(&[("model", "m1")]), false, false, "RunActive"),
        (NeedsSyncAnswer::default(), false, false, "RunActive"),
    ];
    for (answer, cancels, creates, reason) in cases {
        let mut f = facts(&ms, active.clone(), Entry::default(), at(0));
        f.answer = answered(Ok(answer.clone()), at(0));
        let mut p = plan(&f);
        assert_eq!(p.cancel.as_deref() == Some("r1"), cancels, "{answer:?}");
        assert_eq!(p.create.is_some(), creates, "{answer:?}");
        if let Some(new) = p.create.clone() {
            assert_ne!(new.name, "r1");
            assert_eq!(
                new.body["spec"]["params"],
                json!([{"name": "model-id", "value": "m2"}])
            );
            p.created("ns", &new.name, Created::New { uid: None }, at(0));
        }
        assert_eq!(p.observation.phase.reason(), reason, "{answer:?}");
    }
}

#[test]
fn replace_keeps_the_run_it_just_created_while_the_watch_has_not_shown_it() {
    let ms = modelsync(json!({"concurrencyPolicy": "Replace", "pollInterval": "1s"}));
    let mut f = facts(&ms, vec![], Entry::default(), at(0));
    f.answer = answered(Ok(yes(&[("model", "m1")])), at(0));
    let mut creating = plan(&f);
    let first = name_of(&creating);
    creating.created("ns", &first, Created::New { uid: None }, at(0));

    // The next poll comes before the watch shows the run (a watch reconnecting after a cut):
    // the same answer is the same decision, not a reason to cancel the run for a copy of it.
    let pending = creating.schedule.clone();
    let mut again = facts(&ms, vec![], pending.clone(), at(2));
    assert!(
        plan(&again).ask.is_some(),
        "Replace asks while a run is active"
    );
    again.answer = answered(Ok(yes(&[("model", "m1")])), at(2));
    let p = plan(&again);
    assert_eq!(p.cancel, None);
    assert!(p.create.is_none());
    assert_eq!(p.observation.phase, Phase::RunActive(first.clone()));

    // Another model still replaces it, watched or not.
    let mut newer = facts(&ms, vec![], pending, at(2));
    newer.answer = answered(Ok(yes(&[("model", "m2")])), at(2));
    let p = plan(&newer);
    assert_eq!(p.cancel.as_deref(), Some(first.as_str()));
    assert!(p.create.is_some());
}

#[test]
fn old_runs_are_collected_before_anything_else() {
    let ms = modelsync(json!({"successfulPipelineRunsHistoryLimit": 1, "suspend": true}));
    let mut old = (*run("old", RunResult::Succeeded, Some(-500), "m0")).clone();
    old.created = Some(at(-900).wall);
    let runs = vec![
        Arc::new(old),
        run("new", RunResult::Succeeded, Some(-400), "m1"),
    ];
    let p = plan(&facts(&ms, runs, Entry::default(), at(0)));
    assert_eq!(p.delete, ["old"]);
    assert_eq!(p.observation.phase, Phase::Suspended);
}

fn yes(params: &[(&str, &str)]) -> NeedsSyncAnswer {
    NeedsSyncAnswer {
        needs_sync: true,
        parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect(),
        ..Default::default()
    }
}

fn map(from: &str, to: &str) -> Vec<ParameterMapping> {
    vec![ParameterMapping {
        needs_sync_name: from.into(),
        pipeline_name: to.into(),
    }]
}

#[test]
fn gate_order_suspend_then_active_then_schedule() {
    let due = Gate {
        poll_due: true,
        ..Default::default()
    };
    assert_eq!(gate(&due), GateDecision::CallLambda);
    assert_eq!(
        gate(&Gate {
            suspend: true,
            active_runs: 1,
            ..due.clone()
        }),
        GateDecision::Suspended
    );
    assert_eq!(
        gate(&Gate {
            active_runs: 1,
            ..due.clone()
        }),
        GateDecision::WaitForActiveRun
    );
    assert_eq!(
        gate(&Gate {
            active_runs: 1,
            policy: ConcurrencyPolicy::Replace,
            ..due.clone()
        }),
        GateDecision::CallLambda
    );
    assert_eq!(
        gate(&Gate {
            active_runs: 2,
            policy: ConcurrencyPolicy::Replace,
            ..due.clone()
        }),
        GateDecision::TooManyActive
    );
    assert_eq!(gate(&Gate::default()), GateDecision::NotDue);
    let just_finished = Gate {
        run_finished_recently: true,
        ..due.clone()
    };
    assert_eq!(gate(&just_finished), GateDecision::NotDue);
    assert_eq!(
        gate(&Gate {
            requested: true,
            ..just_finished
        }),
        GateDecision::CallLambda
    );
    for forced in [
        Gate {
            requested: true,
            ..Default::default()
        },
        Gate {
            spec_changed: true,
            ..Default::default()
        },
    ] {
        assert_eq!(gate(&forced), GateDecision::CallLambda);
    }
}

#[test]
fn answers_map_to_actions() {
    let m = map("model", "model-id");
    let no = NeedsSyncAnswer::default();
    assert_eq!(on_answer(&no, &m, None), AnswerVerdict::Idle);
    assert_eq!(on_answer(&no, &m, Some(None)), AnswerVerdict::KeepActive);

    let a = yes(&[("model", "m2")]);
    let params: BTreeMap<_, _> = [("model-id".to_owned(), ParamValue::from("m2"))].into();
    assert_eq!(
        on_answer(&a, &m, None),
        AnswerVerdict::Start(params.clone())
    );
    assert_eq!(
        on_answer(&a, &m, Some(Some(&params))),
        AnswerVerdict::KeepActive
    );
    let old: BTreeMap<_, _> = [("model-id".to_owned(), ParamValue::from("m1"))].into();
    assert_eq!(
        on_answer(&a, &m, Some(Some(&old))),
        AnswerVerdict::Replace(params.clone())
    );
    assert!(matches!(
        on_answer(&yes(&[("model", "")]), &m, None),
        AnswerVerdict::Unusable(_)
    ));
}

#[test]
fn backoff_doubles_up_to_the_poll_interval() {
    let cap = Duration::from_secs(60);
    let got: Vec<u64> = (1..=8).map(|n| backoff(n, cap).as_secs()).collect();
    assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(backoff(3, Duration::from_secs(3)), Duration::from_secs(3));
    assert_eq!(backoff(u32::MAX, cap), cap);
}

#[test]
fn jitter_stays_within_ten_percent() {
    let i = Duration::from_secs(100);
    assert_eq!(jittered(i, 0.0), Duration::from_secs(90));
    assert_eq!(jittered(i, 0.5), Duration::from_secs(100));
    assert!(jittered(i, 0.999_999) <= Duration::from_secs(110));
}
