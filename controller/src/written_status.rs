//! The status this process last wrote for each ModelSync, kept only until the watch cache
//! shows a newer version of the object. A pass that starts before its previous status write
//! reaches the cache (a repoll or a run's event, while a busy API server delivers watch events
//! late) would otherwise compare against the status before that write, find a change, and
//! write it again with a new timestamp (and publish the change's events, if it has any, a
//! second time). On a fleet's first start with the API server saturated, that fed itself:
//! 100,000 ModelSyncs on 4 shards took about 140,000 status writes (BENCHMARKS.md section 8).

use std::collections::HashMap;
use std::sync::Mutex;

use modelsync_api::ModelSyncStatus;

struct Remembered {
    /// The resourceVersion of the object the write was computed from.
    over: String,
    status: ModelSyncStatus,
}

#[derive(Default)]
pub struct WrittenStatuses {
    by_uid: Mutex<HashMap<String, Remembered>>,
}

impl WrittenStatuses {
    /// The status to compare a pass's result with: what this process wrote, while the cache
    /// still shows the version that write was computed from; else the cache's own.
    pub fn current(
        &self,
        uid: &str,
        resource_version: Option<&str>,
        cached: Option<&ModelSyncStatus>,
    ) -> ModelSyncStatus {
        let mut by_uid = self.by_uid.lock().unwrap();
        match by_uid.get(uid) {
            Some(r) if Some(r.over.as_str()) == resource_version => return r.status.clone(),
            // The cache moved on: it holds our write, or a later change to compare against.
            Some(_) => {
                by_uid.remove(uid);
            }
            None => {}
        }
        cached.cloned().unwrap_or_default()
    }

    /// Records a status written over the object at `resource_version`.
    pub fn wrote(&self, uid: &str, resource_version: Option<&str>, status: &ModelSyncStatus) {
        let Some(over) = resource_version else { return };
        self.by_uid.lock().unwrap().insert(
            uid.to_owned(),
            Remembered {
                over: over.to_owned(),
                status: status.clone(),
            },
        );
    }

    pub fn forget(&self, uid: &str) {
        self.by_uid.lock().unwrap().remove(uid);
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.by_uid.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(generation: i64) -> ModelSyncStatus {
        ModelSyncStatus {
            observed_generation: Some(generation),
            ..Default::default()
        }
    }

    #[test]
    fn a_stale_cache_reads_as_what_was_written() {
        let w = WrittenStatuses::default();
        w.wrote("u", Some("10"), &status(2));
        // The cache still shows version 10, without the write.
        assert_eq!(w.current("u", Some("10"), Some(&status(1))), status(2));
        assert_eq!(w.current("u", Some("10"), None), status(2));
    }

    #[test]
    fn a_newer_cache_wins_and_the_memory_goes() {
        let w = WrittenStatuses::default();
        w.wrote("u", Some("10"), &status(2));
        assert_eq!(w.current("u", Some("11"), Some(&status(3))), status(3));
        assert_eq!(w.remembered(), 0);
        // Nothing remembered: the cache as it is.
        assert_eq!(w.current("u", Some("10"), Some(&status(1))), status(1));
    }

    #[test]
    fn other_modelsyncs_and_forgotten_ones_read_their_cache() {
        let w = WrittenStatuses::default();
        w.wrote("u", Some("10"), &status(2));
        assert_eq!(w.current("v", Some("10"), Some(&status(1))), status(1));
        w.forget("u");
        assert_eq!(w.current("u", Some("10"), Some(&status(1))), status(1));
        // Without a resourceVersion there is nothing to tell staleness by.
        w.wrote("x", None, &status(2));
        assert_eq!(w.remembered(), 0);
    }
}
