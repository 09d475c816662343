//! Which ModelSyncs and runs one controller reconciles when several split a cluster by the
//! `modelsync.dev/shard` label, its Lease's name, and how a ModelSync moved in from another
//! shard brings its runs along. Pure: selectors and decisions, no calls.
//!
//! Moving a ModelSync is changing its label. The old shard's ModelSync watch then reports it
//! deleted (it left the selector), so the old shard forgets it and acts on it no more; it
//! deletes nothing. The new shard sees it added, but its runs still carry the old label, so
//! the new shard's run watch, which selects on the label server side, does not show them.
//! Acting on that empty view would start a second run while the first is still going.
//!
//! The new shard therefore relabels the runs rather than looking for them some other way: a
//! second, unselected run watch would cost every shard the memory of every run (the point of
//! sharding is not to), and a one-off lookup would leave the runs outside the watch for good,
//! so GC and "the active run finished" would never be seen. Relabelling is one list and one
//! patch per run, once per move, and afterwards the runs are exactly where a run the new shard
//! created would be. The pass does nothing else until its run watch shows every run the list
//! found ([`Adoption::WaitForWatch`]).
//!
//! It looks only when the ModelSync's status names a run (active, last, last successful) that
//! its run index lacks, which after a move is always the case for a ModelSync that ever ran,
//! and otherwise happens only when runs were deleted by hand. A name a look found missing
//! everywhere is not looked for again, but a new unknown name is: a pass of the old shard
//! that was under way during the move may still create a run (under the old label) and name
//! it in status.

use std::collections::{BTreeMap, BTreeSet};

use modelsync_api::ModelSyncStatus;
use modelsync_api::modelsync::{LABEL_NAME, LABEL_SHARD};

/// The shard a controller serves: `Some(name)` for `--shard NAME`, `None` for the ModelSyncs
/// without the label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shard(Option<String>);

/// Why a `--shard` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "shard name {0:?} is not usable: it must be 1-63 lowercase letters, digits or '-', starting \
     and ending with a letter or digit (it is a label value and part of a Lease name)"
)]
pub struct InvalidShard(pub String);

impl Shard {
    /// The controller for ModelSyncs without the label.
    pub fn unlabelled() -> Self {
        Shard(None)
    }

    /// A named shard. The name must be a valid label value and, as part of the Lease's name,
    /// a DNS label: the intersection is lowercase alphanumerics and '-'.
    pub fn named(name: &str) -> Result<Self, InvalidShard> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        match ok {
            true => Ok(Shard(Some(name.to_owned()))),
            false => Err(InvalidShard(name.to_owned())),
        }
    }

    pub fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// The label selector of this shard's ModelSyncs, evaluated by the API server.
    pub fn modelsync_selector(&self) -> String {
        match &self.0 {
            Some(name) => format!("{LABEL_SHARD}={name}"),
            None => format!("!{LABEL_SHARD}"),
        }
    }

    /// The label selector of this shard's runs: those a ModelSync started, in this shard.
    pub fn run_selector(&self) -> String {
        format!("{LABEL_NAME},{}", self.modelsync_selector())
    }

    /// The Lease this shard's replicas elect a leader with: each shard has its own, so one
    /// replica of every shard leads. The unlabelled controller keeps the plain id, so an
    /// install that does not shard keeps its Lease.
    pub fn lease_name(&self, leader_election_id: &str) -> String {
        match &self.0 {
            Some(name) => format!("{leader_election_id}-{name}"),
            None => leader_election_id.to_owned(),
        }
    }

    /// Whether an object with these labels belongs to this shard.
    pub fn owns(&self, labels: &BTreeMap<String, String>) -> bool {
        labels.get(LABEL_SHARD).map(String::as_str) == self.name()
    }

    /// How logs name it: `shard a`, or `the unlabelled shard`.
    pub fn describe(&self) -> String {
        match &self.0 {
            Some(name) => format!("shard {name}"),
            None => "the unlabelled shard".to_owned(),
        }
    }
}

/// A run as a direct list shows it, for [`adoption`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedRun {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The uid of its controlling owner.
    pub controller_uid: Option<String>,
}

/// What a ModelSync new to this shard needs before a pass may act on its runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// Every run it owns is in this shard's index: plan as usual.
    Complete,
    /// These runs carry another shard's label (or none, or one where none belongs): give
    /// them this shard's, then look again.
    Relabel(Vec<String>),
    /// Every run is labelled for this shard but the watch has not shown them all yet.
    WaitForWatch,
}

/// The runs `status` names (active, last, last successful) that `indexed` does not hold: the
/// sign that the ModelSync's runs may be labelled for another shard.
pub fn unknown_runs(
    status: Option<&ModelSyncStatus>,
    indexed: impl Fn(&str) -> bool,
) -> BTreeSet<String> {
    let Some(status) = status else {
        return BTreeSet::new();
    };
    let active = status.active.iter().filter_map(|r| r.name.as_deref());
    let summaries = [&status.last_run, &status.last_successful_run]
        .into_iter()
        .flatten()
        .map(|s| s.name.as_str());
    active
        .chain(summaries)
        .filter(|name| !indexed(name))
        .map(str::to_owned)
        .collect()
}

/// Decides from a direct list of the runs labelled for the ModelSync (any shard) what stands
/// between this shard and a complete view of the runs `owner_uid` owns.
pub fn adoption(
    shard: &Shard,
    owner_uid: &str,
    listed: &[ListedRun],
    indexed: impl Fn(&str) -> bool,
) -> Adoption {
    // A run with the same name label but another owner belongs to an earlier ModelSync of the
    // same name; it is not ours to move.
    let owned: Vec<&ListedRun> = listed
        .iter()
        .filter(|r| r.controller_uid.as_deref() == Some(owner_uid))
        .collect();
    let relabel: Vec<String> = owned
        .iter()
        .filter(|r| !shard.owns(&r.labels))
        .map(|r| r.name.clone())
        .collect();
    if !relabel.is_empty() {
        Adoption::Relabel(relabel)
    } else if owned.iter().any(|r| !indexed(&r.name)) {
        Adoption::WaitForWatch
    } else {
        Adoption::Complete
    }
}

#[cfg(test)]
mod tests;
