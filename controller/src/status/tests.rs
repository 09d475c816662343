use std::collections::BTreeMap;

use chrono::TimeZone;

use super::*;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

fn decision(needs_sync: bool, reason: &str) -> LambdaDecision {
    LambdaDecision {
        needs_sync,
        parameters: BTreeMap::new(),
        reason: Some(reason.into()),
        revision: Some("r1".into()),
        time: at(0),
    }
}

fn obs(phase: Phase, decision: Option<LambdaDecision>) -> Observation {
    Observation {
        generation: Some(1),
        phase,
        active: None,
        last_run: None,
        last_successful_run: None,
        decision,
        run_started: false,
        handled_requested_at: None,
        previous_run_now: None,
    }
}

#[test]
fn an_idle_poll_that_changes_nothing_yields_the_same_status() {
    let first = next_status(
        &ModelSyncStatus::default(),
        &obs(Phase::Idle, Some(decision(false, "model is 1h old"))),
        at(0),
    );
    // Later polls: the clock moved and the lambda's wording changed, the decision did not.
    let second = next_status(
        &first,
        &obs(Phase::Idle, Some(decision(false, "model is 2h old"))),
        at(3600),
    );
    assert_eq!(first, second);
    let third = next_status(&second, &obs(Phase::Idle, None), at(7200));
    assert_eq!(first, third);
}

#[test]
fn a_changed_decision_updates_last_check_time() {
    let first = next_status(
        &ModelSyncStatus::default(),
        &obs(Phase::Idle, Some(decision(false, "fresh"))),
        at(0),
    );
    let second = next_status(
        &first,
        &obs(Phase::Idle, Some(decision(true, "stale"))),
        at(60),
    );
    assert_eq!(second.last_check_time, Some(at(60)));
    assert_eq!(second.last_decision.as_ref().unwrap().time, at(60));
    assert!(second.last_decision.unwrap().needs_sync);
}

#[test]
fn transition_time_moves_only_when_status_flips() {
    let idle = next_status(&ModelSyncStatus::default(), &obs(Phase::Idle, None), at(0));
    let err = next_status(&idle, &obs(Phase::LambdaError("down".into()), None), at(10));
    let ready = |s: &ModelSyncStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .cloned()
            .unwrap()
    };
    assert_eq!(ready(&err).status, "False");
    assert_eq!(ready(&err).reason, "LambdaError");
    assert_eq!(ready(&err).last_transition_time, to_time(at(10)));
    let err2 = next_status(&err, &obs(Phase::LambdaError("down".into()), None), at(20));
    assert_eq!(err, err2);
    let stalled = next_status(
        &err,
        &obs(Phase::InvalidTemplate("bad".into()), None),
        at(30),
    );
    let s = stalled
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap();
    assert_eq!(
        (s.status.as_str(), s.reason.as_str()),
        ("True", "InvalidTemplate")
    );
    assert_eq!(ready(&stalled).last_transition_time, to_time(at(10)));
}

#[test]
fn errors_are_told_once_and_finished_runs_once() {
    let idle = next_status(&ModelSyncStatus::default(), &obs(Phase::Idle, None), at(0));
    let phase = Phase::LambdaError("lambda GET http://x answered 500: boom".into());
    let failing = obs(phase, None);
    let err = next_status(&idle, &failing, at(1));
    assert_eq!(events(&idle, &err, &failing).len(), 1);
    assert!(events(&err, &err, &failing).is_empty());

    let running = RunSummary {
        name: "r1".into(),
        start_time: Some(at(0)),
        completion_time: None,
        result: RunResult::Running,
    };
    let mut o = obs(Phase::RunActive("r1".into()), None);
    o.last_run = Some(running.clone());
    let before = next_status(&idle, &o, at(2));
    // The run succeeded and, in the same pass, the next one started: both are told.
    let done = RunSummary {
        completion_time: Some(at(5)),
        result: RunResult::Succeeded,
        ..running
    };
    let mut o = obs(Phase::RunActive("r2".into()), None);
    o.run_started = true;
    o.previous_run_now = Some(done.clone());
    o.last_run = Some(RunSummary {
        name: "r2".into(),
        start_time: None,
        completion_time: None,
        result: RunResult::Running,
    });
    let after = next_status(&before, &o, at(5));
    let evs = events(&before, &after, &o);
    let reasons: Vec<_> = evs.iter().map(|e| e.reason).collect();
    assert_eq!(reasons, ["RunStarted", "RunSucceeded"]);
    assert_eq!(evs[1].run.as_deref(), Some("r1"));
    let mut quiet = obs(Phase::RunActive("r2".into()), None);
    quiet.previous_run_now = after.last_run.clone();
    assert!(events(&after, &after, &quiet).is_empty());
}

#[test]
fn secret_and_egress_errors_are_not_ready_retried_and_told_once() {
    let idle = next_status(&ModelSyncStatus::default(), &obs(Phase::Idle, None), at(0));
    for (phase, reason) in [
        (
            Phase::LambdaSecretError("Secret ns/creds has no key tls.key".into()),
            "LambdaSecretError",
        ),
        (
            Phase::LambdaUrlDenied("address 169.254.169.254 is in 169.254.0.0/16".into()),
            "LambdaURLDenied",
        ),
    ] {
        let failing = obs(phase.clone(), None);
        let status = next_status(&idle, &failing, at(1));
        let conditions: Vec<_> = status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(
            conditions,
            [
                ("Ready", "False", reason),
                ("Reconciling", "False", reason),
                ("Stalled", "False", reason),
            ]
        );
        let told = events(&idle, &status, &failing);
        assert_eq!(told.len(), 1);
        assert!(told[0].warning && told[0].reason == reason);
        assert!(events(&status, &status, &failing).is_empty());
        // A pass that does not ask again keeps reporting it.
        assert_eq!(Phase::still_reported(&status.conditions), Some(phase));
    }
}

#[test]
fn tekton_starting_a_run_is_no_status_write_its_end_brings_the_start_time() {
    let running = |start_time| RunSummary {
        name: "r1".into(),
        start_time,
        completion_time: None,
        result: RunResult::Running,
    };
    let created = next_status(
        &ModelSyncStatus::default(),
        &Observation {
            last_run: Some(running(None)),
            ..obs(Phase::RunActive("r1".into()), None)
        },
        at(0),
    );
    // The watch shows the run started: the status to write is the one already written.
    let started = next_status(
        &created,
        &Observation {
            last_run: Some(running(Some(at(2)))),
            ..obs(Phase::RunActive("r1".into()), None)
        },
        at(3),
    );
    assert_eq!(created, started);
    let ended = next_status(
        &started,
        &Observation {
            last_run: Some(RunSummary {
                start_time: Some(at(2)),
                completion_time: Some(at(9)),
                result: RunResult::Succeeded,
                ..running(None)
            }),
            ..obs(Phase::Idle, None)
        },
        at(10),
    );
    let last = ended.last_run.unwrap();
    assert_eq!(
        (last.start_time, last.result),
        (Some(at(2)), RunResult::Succeeded)
    );
}
