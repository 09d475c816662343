//! The summary printed at the end of a run, one row per target.

use std::fmt::Write;

use crate::runner::{Progress, Report};

/// A progress line: cases done, rate, elapsed time, failures so far.
pub fn progress_line(p: &Progress) -> String {
    format!(
        "{:<10} {:>9}/{} cases  {:>7.0}/s  {:>6.1}s  {} panics  {} broken",
        p.target,
        p.done,
        p.total,
        p.rate(),
        p.elapsed.as_secs_f64(),
        p.panics,
        p.broken
    )
}

/// Target, cases, accepted, rejected, panics, broken properties, distinct error kinds, time.
pub fn summary(reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>9} {:>9} {:>9} {:>7} {:>7} {:>6} {:>9}",
        "target", "cases", "accepted", "rejected", "panics", "broken", "kinds", "time"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<10} {:>9} {:>9} {:>9} {:>7} {:>7} {:>6} {:>8.1}s",
            r.target,
            r.cases,
            r.accepted,
            r.rejected,
            r.panics,
            r.broken,
            r.kinds.len(),
            r.elapsed.as_secs_f64()
        );
    }
    out
}

/// Each target's error kinds with counts, then every kept failure with its input.
pub fn details(reports: &[Report]) -> String {
    let mut out = String::new();
    for r in reports {
        let kinds: Vec<String> = r.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(out, "{} (seed {}): {}", r.target, r.seed, kinds.join(", "));
        for f in &r.failures {
            let what = if f.panic { "PANIC" } else { "BROKEN" };
            let _ = writeln!(
                out,
                "  {what} in case {} (shrunk {} steps): {}",
                f.case, f.shrink_steps, f.message
            );
            if let Some(file) = &f.file {
                let _ = writeln!(out, "  saved to {}", file.display());
            }
            for line in f.input.lines().take(40) {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    out
}
