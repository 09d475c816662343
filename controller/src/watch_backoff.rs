//! How long the watches wait after an error before they try again.
//!
//! kube's default is client-go's: from 0.8 s doubling up to 30 s, reset only by an event or
//! after two minutes, kind to an API server that thousands of clients watch. A controller's
//! two watches are no such load, and with that default a controller stayed blind for up to a
//! minute after an API server restart: the resumed watch is refused as too old (410), and the
//! relist it needs waited out the backoff grown during the outage. Here each watch waits
//! 0.5 s doubling up to 5 s, spread ±20%, reset by any event.

use std::time::Duration;

use kube::runtime::utils::Backoff;

const FIRST: Duration = Duration::from_millis(500);
const MOST: Duration = Duration::from_secs(5);

/// One watch's backoff.
#[derive(Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = (base * 2).min(MOST);
        Some(base.mul_f64(0.8 + 0.4 * rand::random::<f64>()))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

/// The controller's own backoff over its merged watches: none, since each watch backs off on
/// its own. A shared one stops polling both watches whenever either fails (the run index froze
/// while only the ModelSync watch was failing) and adds its wait to theirs.
#[derive(Debug)]
pub struct NoSharedBackoff;

impl Iterator for NoSharedBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl Backoff for NoSharedBackoff {
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_five_seconds_spread_and_starts_over_on_reset() {
        let mut b = WatchBackoff::default();
        let waits: Vec<Duration> = (&mut b).take(6).collect();
        for (wait, base) in waits.iter().zip([0.5, 1.0, 2.0, 4.0, 5.0, 5.0]) {
            let secs = wait.as_secs_f64();
            assert!(
                (base * 0.8..=base * 1.2).contains(&secs),
                "{secs} s is not within 20% of {base} s"
            );
        }
        b.reset();
        assert!(b.next().unwrap() <= Duration::from_millis(600));
    }
}
