//! The figures of one fault: how long until all-Ready, what happened to the decisions, and
//! duplicates seen. Printed as a row of a Markdown table and written to `faults-report.md` in
//! Cargo's temporary folder for tests (`target/tmp/`), started afresh by each run of the
//! target, so one run leaves its whole table behind.

use std::io::Write;
use std::sync::Once;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Figures {
    pub fault: String,
    /// From the end of the fault until every ModelSync was back to its expected state.
    pub recovery: Duration,
    pub decisions: usize,
    /// Decisions whose run appeared more than [`crate::fleet::DELAYED`] after the lambda first gave them.
    pub delayed: usize,
    pub max_delay: Duration,
    /// Every moment a ModelSync had two active runs or more.
    pub duplicates: Vec<String>,
    /// Decisions that led to no run.
    pub lost: Vec<String>,
    /// Decisions that led to more than one run.
    pub twice: Vec<String>,
    pub runs: usize,
    /// PipelineRun watch events the checker looked at.
    pub events: u64,
    pub note: String,
}

pub const HEADER: &str = "| fault | recovery to all-Ready | decisions | delayed (>2 s) | max delay | duplicates seen | lost / twice | runs | checked events | notes |\n|---|---|---|---|---|---|---|---|---|---|";

impl Figures {
    pub fn row(&self) -> String {
        format!(
            "| {} | {:.1} s | {} | {} | {:.1} s | {} | {} / {} | {} | {} | {} |",
            self.fault,
            self.recovery.as_secs_f64(),
            self.decisions,
            self.delayed,
            self.max_delay.as_secs_f64(),
            self.duplicates.len(),
            self.lost.len(),
            self.twice.len(),
            self.runs,
            self.events,
            self.note
        )
    }

    /// Prints the row and adds it to the report file (the first row of a run starts it anew).
    pub fn print(&self) {
        static FRESH: Once = Once::new();
        let row = self.row();
        eprintln!("\n{HEADER}\n{row}\n");
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults-report.md");
        FRESH.call_once(|| {
            let _ = std::fs::write(&path, format!("{HEADER}\n"));
        });
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&path) {
            let _ = writeln!(f, "{row}");
        }
    }

    /// No duplicate active run at any moment, every decision led to exactly one run.
    pub fn assert_clean(&self, logs: &str) {
        assert!(
            self.duplicates.is_empty(),
            "{}: two active runs for one ModelSync: {:?}\n{logs}",
            self.fault,
            self.duplicates
        );
        assert!(
            self.lost.is_empty(),
            "{}: decisions that led to no run: {:?}\n{logs}",
            self.fault,
            self.lost
        );
        assert!(
            self.twice.is_empty(),
            "{}: decisions that led to two runs: {:?}\n{logs}",
            self.fault,
            self.twice
        );
        assert!(
            self.decisions >= 4,
            "{}: only {} decisions, too few to prove anything",
            self.fault,
            self.decisions
        );
    }
}
