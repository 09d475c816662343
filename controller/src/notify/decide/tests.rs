use chrono::TimeZone;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

fn run(name: &str, result: RunResult, decided: i64, ended: Option<i64>) -> Arc<RunRecord> {
    Arc::new(RunRecord {
        name: name.into(),
        uid: Some(format!("uid-{name}")),
        created: Some(at(decided)),
        decided_at: Some(at(decided)),
        controller_uid: Some("ms-uid".into()),
        result,
        cancel_requested: false,
        start_time: Some(at(decided)),
        completion_time: ended.map(at),
        parameters: None,
    })
}

fn ready(status: &str, reason: &str, since: i64) -> Condition {
    Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message: "lambda GET http://l/x answered 500 after 0.1s: down".into(),
        observed_generation: Some(1),
        last_transition_time: Time(
            k8s_openapi::jiff::Timestamp::from_second(at(since).timestamp()).unwrap(),
        ),
    }
}

fn told(reason: &'static str, run: &str) -> EventSpec {
    EventSpec {
        warning: reason == "RunFailed",
        reason,
        note: format!("PipelineRun {run} {reason}"),
        run: Some(run.into()),
    }
}

fn facts<'a>(told: &'a [EventSpec], runs: &'a [Arc<RunRecord>]) -> PassFacts<'a> {
    PassFacts {
        namespace: "ml",
        name: "trainer",
        uid: "ms-uid",
        told,
        runs,
        failures_before: 0,
        failures_after: 0,
        answered: true,
        polled_before: true,
        ready_before: None,
        ready_after: None,
        replay: false,
        replay_window: Duration::from_secs(3600),
        now: at(1000),
    }
}

fn events(notices: &[Notice]) -> Vec<NotifyEvent> {
    notices.iter().map(|n| n.event).collect()
}

#[test]
fn status_events_of_runs_become_notices_with_the_runs_times() {
    let runs = [
        run("t-1", RunResult::Succeeded, 10, Some(50)),
        run("t-2", RunResult::Running, 900, None),
    ];
    let told = [told("RunSucceeded", "t-1"), told("RunStarted", "t-2")];
    let notices = decide(&facts(&told, &runs));
    assert_eq!(
        events(&notices),
        [NotifyEvent::RunSucceeded, NotifyEvent::RunStarted]
    );
    assert_eq!(notices[0].run.as_deref(), Some("t-1"));
    assert_eq!(notices[0].result, Some(RunResult::Succeeded));
    assert_eq!(
        notices[0].time,
        at(50),
        "a run's end is told at its completion"
    );
    assert_eq!(notices[1].time, at(900), "a start at its decision");
    assert_eq!(notices[0].message, "PipelineRun t-1 RunSucceeded");
}

#[test]
fn other_status_events_are_not_notices() {
    let told = [EventSpec {
        warning: true,
        reason: "LambdaError",
        note: "down".into(),
        run: None,
    }];
    assert!(decide(&facts(&told, &[])).is_empty());
}

#[test]
fn ids_are_stable_per_run_and_event_and_differ_otherwise() {
    let a = notice_id("ms-uid", "t-1", NotifyEvent::RunSucceeded);
    assert_eq!(a, notice_id("ms-uid", "t-1", NotifyEvent::RunSucceeded));
    assert_eq!(a.len(), 32);
    assert_ne!(a, notice_id("ms-uid", "t-1", NotifyEvent::RunStarted));
    assert_ne!(a, notice_id("ms-uid", "t-2", NotifyEvent::RunSucceeded));
    assert_ne!(a, notice_id("other-uid", "t-1", NotifyEvent::RunSucceeded));
}

#[test]
fn the_third_failure_in_a_row_is_lambda_failing_once() {
    let failing = ready("False", "LambdaError", 990);
    let mut f = facts(&[], &[]);
    f.answered = false;
    f.ready_after = Some(&failing);
    f.ready_before = Some(&failing);
    for (before, after, expected) in [(0, 1, false), (1, 2, false), (2, 3, true), (3, 4, false)] {
        f.failures_before = before;
        f.failures_after = after;
        let notices = decide(&f);
        assert_eq!(notices.len(), usize::from(expected), "{before} -> {after}");
        if expected {
            assert_eq!(notices[0].event, NotifyEvent::LambdaFailing);
            assert!(
                notices[0].message.contains("3 times"),
                "{}",
                notices[0].message
            );
            assert!(notices[0].message.contains("answered 500"));
            assert!(notices[0].is_error());
        }
    }
}

#[test]
fn recovered_follows_a_streak_of_three_and_keeps_its_streak_id() {
    let failing = ready("False", "InvalidLambdaResponse", 990);
    let idle = ready("True", "Idle", 1000);
    let mut f = facts(&[], &[]);
    f.failures_before = 2;
    f.failures_after = 3;
    f.answered = false;
    f.ready_after = Some(&failing);
    let down = decide(&f).pop().unwrap();

    f.failures_before = 3;
    f.failures_after = 0;
    f.answered = true;
    f.ready_before = Some(&failing);
    f.ready_after = Some(&idle);
    let up = decide(&f).pop().unwrap();
    assert_eq!(up.event, NotifyEvent::Recovered);
    assert!(!up.is_error());
    assert_ne!(up.id, down.id);
    assert_eq!(
        up.id,
        notice_id(
            "ms-uid",
            &format!("lambda-failing-since:{}", failing.last_transition_time.0),
            NotifyEvent::Recovered
        )
    );
    // A later pass that fails 3 times again, in a new streak, gets a new id.
    let later = ready("False", "LambdaError", 2000);
    f.failures_before = 2;
    f.failures_after = 3;
    f.answered = false;
    f.ready_after = Some(&later);
    assert_ne!(decide(&f).pop().unwrap().id, down.id);
}

#[test]
fn a_short_streak_recovers_silently_but_one_found_at_start_is_told() {
    let failing = ready("False", "LambdaError", 990);
    let mut f = facts(&[], &[]);
    f.failures_before = 2;
    f.failures_after = 0;
    f.ready_before = Some(&failing);
    assert!(decide(&f).is_empty(), "2 failures never made LambdaFailing");
    // After a restart the count is gone; the streak in status may have reached 3.
    f.failures_before = 0;
    f.polled_before = false;
    assert_eq!(events(&decide(&f)), [NotifyEvent::Recovered]);
    // An unusable answer is no recovery.
    f.answered = false;
    assert!(decide(&f).is_empty());
    // Nor is an answer after a Ready=False that was not the lambda's doing.
    let stalled = ready("False", "InvalidTemplate", 990);
    f.answered = true;
    f.ready_before = Some(&stalled);
    assert!(decide(&f).is_empty());
}

#[test]
fn the_first_pass_replays_recent_starts_and_ends_once() {
    let runs = [
        run("old", RunResult::Succeeded, -10_000, Some(-9_000)),
        run("t-1", RunResult::Failed, -10_000, Some(500)),
        run("t-2", RunResult::Cancelled, 600, Some(700)),
        run("t-3", RunResult::Running, 900, None),
    ];
    // The live pass also told t-3's start: the same notice, not two.
    let told = [told("RunStarted", "t-3")];
    let mut f = facts(&told, &runs);
    f.replay = true;
    let notices = decide(&f);
    let got: Vec<(NotifyEvent, &str)> = notices
        .iter()
        .map(|n| (n.event, n.run.as_deref().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (NotifyEvent::RunStarted, "t-3"),
            (NotifyEvent::RunFailed, "t-1"),
            (NotifyEvent::RunStarted, "t-2"),
            (NotifyEvent::RunCancelled, "t-2"),
        ]
    );
    // The replayed end has the id the live end had.
    let live = decide(&facts(&[self::told("RunFailed", "t-1")], &runs));
    assert_eq!(live[0].id, notices[1].id);
    assert_eq!(live[0].time, notices[1].time);
    // Not the first pass: nothing replayed.
    f.replay = false;
    assert_eq!(decide(&f).len(), 1);
}
