//! What one reconcile pass should do, decided from facts alone. Pure, so every rule of the
//! loop is unit-tested with an injected clock and no cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use modelsync_api::lambda::{NeedsSyncAnswer, ParamValue};
use modelsync_api::modelsync::{ConcurrencyPolicy, ParameterMapping};

use crate::template::mapped_params;

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
pub enum AnswerAction {
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
) -> AnswerAction {
    if !answer.needs_sync {
        return match active_params {
            Some(_) => AnswerAction::KeepActive,
            None => AnswerAction::Idle,
        };
    }
    let params = match mapped_params(mappings, answer) {
        Ok(p) => p,
        Err(e) => return AnswerAction::Unusable(e.0),
    };
    match active_params {
        None => AnswerAction::Start(params),
        Some(Some(current)) if *current == params => AnswerAction::KeepActive,
        Some(_) => AnswerAction::Replace(params),
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(on_answer(&no, &m, None), AnswerAction::Idle);
        assert_eq!(on_answer(&no, &m, Some(None)), AnswerAction::KeepActive);

        let a = yes(&[("model", "m2")]);
        let params: BTreeMap<_, _> = [("model-id".to_owned(), ParamValue::from("m2"))].into();
        assert_eq!(on_answer(&a, &m, None), AnswerAction::Start(params.clone()));
        assert_eq!(
            on_answer(&a, &m, Some(Some(&params))),
            AnswerAction::KeepActive
        );
        let old: BTreeMap<_, _> = [("model-id".to_owned(), ParamValue::from("m1"))].into();
        assert_eq!(
            on_answer(&a, &m, Some(Some(&old))),
            AnswerAction::Replace(params.clone())
        );
        assert!(matches!(
            on_answer(&yes(&[("model", "")]), &m, None),
            AnswerAction::Unusable(_)
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
}
