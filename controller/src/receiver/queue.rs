//! When to write the `requested-at` annotations hooks ask for, so a flood of hooks cannot
//! become a flood of writes to the API server:
//! - a ModelSync already waiting for its write is not queued twice (the queued write, made
//!   later, covers the newer request too);
//! - one ModelSync is written at most once per `per_object`; a request inside that window is
//!   written when it ends, never dropped, so the newest change is always asked about;
//! - writes are at least `spacing` apart overall;
//! - at most `capacity` ModelSyncs wait; beyond that requests are refused, and said so.
//!
//! Pure: the caller passes the clock and does the writing.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// What became of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requested {
    /// Queued for a write.
    Queued,
    /// Already waiting for its write, which will cover this request.
    Coalesced,
    /// The queue is full; not written.
    Refused,
}

/// What the writer does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next<K> {
    /// Write this one now.
    Write(K),
    /// Nothing is due before this instant.
    WaitUntil(Instant),
    /// Nothing is queued.
    Idle,
}

pub struct WriteQueue<K> {
    per_object: Duration,
    spacing: Duration,
    capacity: usize,
    due: BinaryHeap<Reverse<(Instant, u64, K)>>,
    queued: HashSet<K>,
    last_write: HashMap<K, Instant>,
    next_free: Option<Instant>,
    seq: u64,
}

impl<K: Clone + Eq + Hash + Ord> WriteQueue<K> {
    pub fn new(per_object: Duration, spacing: Duration, capacity: usize) -> Self {
        WriteQueue {
            per_object,
            spacing,
            capacity,
            due: BinaryHeap::new(),
            queued: HashSet::new(),
            last_write: HashMap::new(),
            next_free: None,
            seq: 0,
        }
    }

    /// Asks for `key` to be written at `now` or as soon after as the limits allow.
    pub fn request(&mut self, key: K, now: Instant) -> Requested {
        if self.queued.contains(&key) {
            return Requested::Coalesced;
        }
        if self.queued.len() >= self.capacity {
            return Requested::Refused;
        }
        let at = match self.last_write.get(&key) {
            Some(last) => now.max(*last + self.per_object),
            None => now,
        };
        self.seq += 1;
        self.due.push(Reverse((at, self.seq, key.clone())));
        self.queued.insert(key);
        Requested::Queued
    }

    /// The next write due at `now`; a returned key counts as written at `now`.
    pub fn next(&mut self, now: Instant) -> Next<K> {
        let Some(Reverse((at, _, _))) = self.due.peek() else {
            return Next::Idle;
        };
        let ready_at = match self.next_free {
            Some(free) => (*at).max(free),
            None => *at,
        };
        if ready_at > now {
            return Next::WaitUntil(ready_at);
        }
        let Some(Reverse((_, _, key))) = self.due.pop() else {
            return Next::Idle;
        };
        self.queued.remove(&key);
        self.next_free = Some(now + self.spacing);
        // Forget writes too old to delay anything, so the map stays as small as the window.
        if self.last_write.len() >= self.capacity {
            let window = self.per_object;
            self.last_write
                .retain(|_, last| now.saturating_duration_since(*last) < window);
        }
        self.last_write.insert(key.clone(), now);
        Next::Write(key)
    }

    /// ModelSyncs waiting for their write.
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_request_is_written_at_once_and_repeats_are_coalesced() {
        let t = Instant::now();
        let mut q = WriteQueue::new(SEC, ms(10), 100);
        assert_eq!(q.request("a", t), Requested::Queued);
        assert_eq!(q.request("a", t), Requested::Coalesced);
        assert_eq!(q.next(t), Next::Write("a"));
        assert_eq!(q.next(t), Next::Idle);
    }

    #[test]
    fn a_request_inside_the_window_is_written_when_it_ends_not_dropped() {
        let t = Instant::now();
        let mut q = WriteQueue::new(SEC, ms(10), 100);
        q.request("a", t);
        assert_eq!(q.next(t), Next::Write("a"));
        // A second change 200ms later: written once the second since the last write is over.
        assert_eq!(q.request("a", t + ms(200)), Requested::Queued);
        for _ in 0..50 {
            assert_eq!(q.request("a", t + ms(300)), Requested::Coalesced);
        }
        assert_eq!(q.next(t + ms(300)), Next::WaitUntil(t + SEC));
        assert_eq!(q.next(t + SEC), Next::Write("a"));
        assert_eq!(q.next(t + SEC), Next::Idle);
    }

    #[test]
    fn writes_are_spaced_overall_whatever_the_flood() {
        let t = Instant::now();
        let mut q = WriteQueue::new(SEC, ms(50), 1000);
        for i in 0..100 {
            for _ in 0..10 {
                q.request(i, t);
            }
        }
        assert_eq!(q.len(), 100);
        let mut now = t;
        let mut written = Vec::new();
        loop {
            match q.next(now) {
                Next::Write(k) => written.push((k, now)),
                Next::WaitUntil(at) => now = at,
                Next::Idle => break,
            }
        }
        assert_eq!(written.len(), 100, "each ModelSync written once");
        for pair in written.windows(2) {
            assert!(pair[1].1 - pair[0].1 >= ms(50));
        }
        assert_eq!(written.last().unwrap().1 - t, ms(50) * 99);
    }

    #[test]
    fn a_full_queue_refuses_and_says_so() {
        let t = Instant::now();
        let mut q = WriteQueue::new(SEC, ms(10), 2);
        assert_eq!(q.request("a", t), Requested::Queued);
        assert_eq!(q.request("b", t), Requested::Queued);
        assert_eq!(q.request("c", t), Requested::Refused);
        assert_eq!(q.request("a", t), Requested::Coalesced);
        assert_eq!(q.next(t), Next::Write("a"));
        assert_eq!(q.request("c", t), Requested::Queued);
    }

    #[test]
    fn old_writes_are_forgotten_so_memory_stays_bounded() {
        let t = Instant::now();
        let mut q = WriteQueue::new(SEC, Duration::ZERO, 4);
        for i in 0..4 {
            q.request(i, t);
            q.next(t);
        }
        assert_eq!(q.last_write.len(), 4);
        q.request(9, t + 2 * SEC);
        assert_eq!(q.next(t + 2 * SEC), Next::Write(9));
        assert_eq!(q.last_write.len(), 1);
    }
}
