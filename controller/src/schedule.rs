//! The controller's memory between passes, per ModelSync: when it is next due, how its lambda
//! has been failing, the run it just created that the watch has not shown yet, and the request
//! and spec generation it has acted on before its status write shows in the cache. In memory
//! only: after a restart every ModelSync is due at once, which is what a cold start should do,
//! and runs are found again through the watch.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use modelsync_api::modelsync::RunResult;

use crate::runs::RunRecord;

/// How long a created run may stay invisible to the watch before it is presumed deleted.
pub const PENDING_GRACE: Duration = Duration::from_secs(60);

/// When the lambda is next asked, and how many calls in a row have failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollState {
    pub next_due: Instant,
    pub failures: u32,
}

/// A run this process created and has not seen through the watch yet. Without it a pass in
/// that window would see no active run and could start a second one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRun {
    pub name: String,
    /// From the create call's answer; `None` when an existing run was adopted.
    pub uid: Option<String>,
    pub since: Instant,
    pub created: DateTime<Utc>,
    /// The parameters it records (its `modelsync.dev/parameters`): under `Replace`, a pass
    /// before the watch shows the run compares the lambda's answer with these, and the same
    /// decision keeps the run rather than cancelling it for a copy of itself.
    pub parameters: Option<String>,
}

impl PendingRun {
    /// Stands in for the run until the watch shows it: active, newest, owned by `owner_uid`.
    pub fn placeholder(&self, owner_uid: &str) -> RunRecord {
        RunRecord {
            name: self.name.clone(),
            uid: self.uid.clone(),
            created: Some(self.created),
            decided_at: Some(self.created),
            controller_uid: Some(owner_uid.to_owned()),
            result: RunResult::Running,
            cancel_requested: false,
            start_time: None,
            completion_time: None,
            parameters: self.parameters.clone(),
        }
    }
}

/// One ModelSync's entry. The planner reads a copy and returns the next one; each method is
/// one transition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// `None` until this process has asked the lambda once: then the ModelSync is due.
    pub poll: Option<PollState>,
    pub pending: Option<PendingRun>,
    /// What this process has acted on, by its own record rather than the status it wrote.
    pub acted: Acted,
}

/// The `requested-at` value and the spec generation a pass of this process has acted on. The
/// status write that records them reaches the watch cache a little later, and a pass started
/// in between (a run's event) reads the ModelSync as it was: without this, it would take the
/// same request (or spec change) as new, ask again and, when the run it caused has already
/// finished, start a second run for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acted {
    pub requested_at: Option<String>,
    pub generation: Option<i64>,
}

impl Entry {
    /// Due now (never polled by this process) or past the planned instant.
    pub fn poll_due(&self, now: Instant) -> bool {
        self.poll.is_none_or(|p| p.next_due <= now)
    }

    pub fn failures(&self) -> u32 {
        self.poll.map_or(0, |p| p.failures)
    }

    /// The lambda answered usably: the failure count starts over.
    pub fn polled(&mut self, next_due: Instant) {
        self.poll = Some(PollState {
            next_due,
            failures: 0,
        });
    }

    /// The lambda failed (or answered unusably) once more; `next_due` includes the backoff.
    pub fn failed(&mut self, next_due: Instant) {
        self.poll = Some(PollState {
            next_due,
            failures: self.failures() + 1,
        });
    }

    /// A run recording `parameters` was created (or adopted) at `now`.
    pub fn created(
        &mut self,
        name: &str,
        uid: Option<String>,
        parameters: Option<String>,
        now: Instant,
        wall: DateTime<Utc>,
    ) {
        self.pending = Some(PendingRun {
            name: name.to_owned(),
            uid,
            since: now,
            created: wall,
            parameters,
        });
    }

    /// The pending run, unless the watch now shows it (`seen`) or it stayed invisible for
    /// longer than [`PENDING_GRACE`] (deleted before the watch caught up); those forget it.
    pub fn pending_unseen(
        &mut self,
        seen: impl Fn(&str) -> bool,
        now: Instant,
    ) -> Option<&PendingRun> {
        let expired = self.pending.as_ref().is_some_and(|p| {
            seen(&p.name) || now.saturating_duration_since(p.since) > PENDING_GRACE
        });
        if expired {
            self.pending = None;
        }
        self.pending.as_ref()
    }
}

/// Every ModelSync's entry, by uid, shared by all passes. The controller runs at most one pass
/// per ModelSync at a time, so a pass may read its entry, plan, and write it back.
#[derive(Debug, Default)]
pub struct Schedule {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Schedule {
    pub fn entry(&self, uid: &str) -> Entry {
        self.lock().get(uid).cloned().unwrap_or_default()
    }

    pub fn put(&self, uid: &str, entry: Entry) {
        self.lock().insert(uid.to_owned(), entry);
    }

    /// Forgets a deleted ModelSync.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().expect("schedule lock")
    }
}
