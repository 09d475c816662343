//! What the scale benchmarks record at the instant a cold start ends (every ModelSync polled
//! once): the controllers' peak RSS so far, and which initial lists each used. The peak at
//! that instant is the cold start's own, before the steady state could raise it; comparing it
//! under `--initial-list paged` and `streaming` is what streaming lists are for.

use anyhow::Result;
use modelsync_testenv::Controller;

use crate::env;

/// The largest `VmHWM` (peak RSS, MB) of `pids` now.
pub fn peak_rss_mb(pids: &[u32]) -> Result<f64> {
    let mut peak = 0.0f64;
    for pid in pids {
        peak = peak.max(env::rss_mb(*pid)?.1);
    }
    Ok(peak)
}

/// Which initial lists the controllers used, from their `initial lists: ...` log line:
/// `paged`, `streaming`, or both joined by `+` when replicas differ; `unknown` without the line.
pub fn strategies(controllers: &[Controller]) -> String {
    let mut seen: Vec<&'static str> = Vec::new();
    for c in controllers {
        let s = strategy(&c.log()).unwrap_or("unknown");
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    seen.join("+")
}

/// `paged` or `streaming`, from one controller's log.
fn strategy(log: &str) -> Option<&'static str> {
    let rest = log.split("initial lists: ").nth(1)?;
    if rest.starts_with("streaming") {
        Some("streaming")
    } else if rest.starts_with("paged") {
        Some("paged")
    } else {
        None
    }
}

/// `--initial-list` for the controllers a benchmark starts, when one was chosen.
pub fn flags(initial_list: Option<&str>) -> Vec<String> {
    initial_list
        .map(|mode| vec![format!("--initial-list={mode}")])
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strategy_is_read_from_the_log_line() {
        let log = "2026-11-27T16:00:00Z  INFO modelsync_controller::list_strategy: initial lists: paged (--initial-list paged)\n";
        assert_eq!(strategy(log), Some("paged"));
        let log = "INFO x: initial lists: streaming (the API server supports sendInitialEvents)";
        assert_eq!(strategy(log), Some("streaming"));
        assert_eq!(strategy("INFO modelsync controller starting"), None);
    }

    #[test]
    fn no_choice_adds_no_flag() {
        assert!(flags(None).is_empty());
        assert_eq!(flags(Some("paged")), vec!["--initial-list=paged"]);
    }
}
