//! Notifications (`spec.notify`): what to tell receivers after a pass ([`decide`]), how each
//! format writes it ([`render`]), what a receiver's Secret holds ([`receiver`]), and the
//! asynchronous delivery ([`deliver`]) with its retry and warning policies ([`retry`]).
//!
//! Delivery is at least once without any write of its own to the API server. The rule:
//! - a notification is queued after the status write that records its change (a run started,
//!   a run ended), or after the pass that counted the 3rd lambda failure in a row or the
//!   first usable answer after them;
//! - the queue is in memory, so a restart loses what was queued. To make up for it, the first
//!   pass of a process over each ModelSync queues again the `RunStarted` of every run of it
//!   decided within `--notify-replay-window` (default 1h) and the end of every run of it that
//!   ended within that window. A lost `LambdaFailing` comes again by itself: the new process
//!   counts the failures again;
//! - every notification carries an id derived from the ModelSync's uid, the run's name (or,
//!   for `LambdaFailing`/`Recovered`, the time the `Ready` condition turned False, which status
//!   keeps) and the event, so a repeat has the same id and receivers drop it by id. A process
//!   never queues the same id twice for one receiver.
//!
//! So a receiver may get duplicates after a restart, never less than once for a change that
//! status recorded, as long as the controller is back within the replay window and the
//! receiver answers within the retries (10 attempts over about 9 minutes by default).

pub mod decide;
pub mod deliver;
pub mod receiver;
pub mod render;
pub mod retry;

pub use decide::{Notice, PassFacts, decide};
pub use deliver::{Notifier, Settings};
