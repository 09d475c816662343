//! The delivery's policies, pure: how long to wait before the next attempt, which answers are
//! worth retrying, and how often a failing receiver may raise a Warning event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The wait after failed attempt `attempt` (1-based): `first`, doubling, at most `max`.
pub fn delay(attempt: u32, first: Duration, max: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).min(30);
    first.saturating_mul(1u32 << doublings).min(max)
}

/// Whether an HTTP status may change on its own: server errors, timeouts and rate limits.
/// Other 4xx say the request is wrong (a revoked Slack webhook answers 403 or 404), and
/// sending it again would not help.
pub fn retryable_status(status: u16) -> bool {
    !(400..500).contains(&status) || status == 408 || status == 429
}

/// At most one warning per key per `every`, so a dead receiver does not flood events.
#[derive(Debug)]
pub struct WarnLimit {
    every: Duration,
    last: HashMap<String, Instant>,
}

impl WarnLimit {
    pub fn new(every: Duration) -> Self {
        WarnLimit {
            every,
            last: HashMap::new(),
        }
    }

    /// Whether a warning for `key` may go out at `now`; if so, it counts as sent.
    pub fn allow(&mut self, key: &str, now: Instant) -> bool {
        if self
            .last
            .get(key)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.every)
        {
            return false;
        }
        // Keys of long-quiet receivers go, so the map stays as small as the trouble.
        let every = self.every;
        self.last
            .retain(|_, t| now.saturating_duration_since(*t) < every);
        self.last.insert(key.to_owned(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let s = Duration::from_secs;
        let got: Vec<Duration> = (1..=6).map(|a| delay(a, s(1), s(10))).collect();
        assert_eq!(got, [s(1), s(2), s(4), s(8), s(10), s(10)]);
        assert_eq!(delay(u32::MAX, s(1), s(300)), s(300));
    }

    #[test]
    fn only_answers_that_may_change_are_retried() {
        for status in [500, 502, 503, 408, 429, 302] {
            assert!(retryable_status(status), "{status}");
        }
        for status in [400, 401, 403, 404, 410, 413] {
            assert!(!retryable_status(status), "{status}");
        }
    }

    #[test]
    fn a_key_warns_once_per_period() {
        let mut limit = WarnLimit::new(Duration::from_secs(300));
        let t0 = Instant::now();
        assert!(limit.allow("ml/a", t0));
        assert!(!limit.allow("ml/a", t0 + Duration::from_secs(299)));
        assert!(
            limit.allow("ml/b", t0 + Duration::from_secs(1)),
            "keys are apart"
        );
        assert!(limit.allow("ml/a", t0 + Duration::from_secs(301)));
        assert!(limit.last.len() == 1, "ml/b went quiet and was dropped");
    }
}
