//! Which lineage events this controller has queued, so each run's START and end go out once
//! per controller life. Pure bookkeeping.
//!
//! Nothing is written to the cluster: a restart forgets the ledger, and the first list of runs
//! queues their events again. So an event is sent at most once more after a restart (a
//! duplicate OpenLineage consumers fold into the same run), and an end that happened while no
//! controller ran is never lost. Only a queued event is recorded; one refused by a full queue
//! stays due and is offered again with the run's next watch event or after a restart.

use std::collections::{HashMap, HashSet};

use super::event::Transition;

#[derive(Debug, Default)]
pub struct Ledger {
    /// Per run uid: START queued, end queued.
    runs: HashMap<String, (bool, bool)>,
    /// Uids seen during a re-list in progress; runs not in it are gone.
    relist: Option<HashSet<String>>,
}

impl Ledger {
    /// The transitions a run with this uid and end (`None` while it runs) deserves and has not
    /// been queued for, in order.
    pub fn due(&mut self, uid: &str, end: Option<Transition>) -> Vec<Transition> {
        if let Some(seen) = &mut self.relist {
            seen.insert(uid.to_owned());
        }
        let (started, ended) = self.runs.get(uid).copied().unwrap_or_default();
        let mut due = Vec::new();
        if !started {
            due.push(Transition::Start);
        }
        if let (Some(end), false) = (end, ended) {
            due.push(end);
        }
        due
    }

    /// Records a transition as queued.
    pub fn queued(&mut self, uid: &str, transition: Transition) {
        let entry = self.runs.entry(uid.to_owned()).or_default();
        match transition {
            Transition::Start => entry.0 = true,
            _ => entry.1 = true,
        }
    }

    /// A run was deleted.
    pub fn forget(&mut self, uid: &str) {
        self.runs.remove(uid);
    }

    /// A re-list of runs starts: runs it does not list are forgotten when it ends.
    pub fn relist_started(&mut self) {
        self.relist = Some(HashSet::new());
    }

    pub fn relist_done(&mut self) {
        if let Some(seen) = self.relist.take() {
            self.runs.retain(|uid, _| seen.contains(uid));
        }
    }

    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Transition::*;

    fn queue_all(l: &mut Ledger, uid: &str, end: Option<Transition>) -> Vec<Transition> {
        let due = l.due(uid, end);
        for t in &due {
            l.queued(uid, *t);
        }
        due
    }

    #[test]
    fn start_then_end_each_once() {
        let mut l = Ledger::default();
        assert_eq!(queue_all(&mut l, "a", None), vec![Start]);
        assert_eq!(queue_all(&mut l, "a", None), vec![]);
        assert_eq!(queue_all(&mut l, "a", Some(Complete)), vec![Complete]);
        assert_eq!(queue_all(&mut l, "a", Some(Complete)), vec![]);
    }

    #[test]
    fn a_run_first_seen_finished_gets_both_and_unqueued_stays_due() {
        let mut l = Ledger::default();
        assert_eq!(l.due("b", Some(Abort)), vec![Start, Abort]);
        l.queued("b", Start);
        assert_eq!(
            l.due("b", Some(Abort)),
            vec![Abort],
            "not queued: still due"
        );
    }

    #[test]
    fn relists_forget_runs_that_are_gone() {
        let mut l = Ledger::default();
        queue_all(&mut l, "gone", Some(Fail));
        queue_all(&mut l, "kept", Some(Fail));
        l.relist_started();
        assert!(l.due("kept", Some(Fail)).is_empty());
        l.relist_done();
        assert_eq!(l.len(), 1);
        l.forget("kept");
        assert!(l.is_empty());
    }
}
