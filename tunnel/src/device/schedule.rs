//! When each peer's next timer is due, so that firing timers costs in proportion to the peers
//! with something due, not to every configured peer: a server with 10,000 idle peers must not
//! walk them all every tick under the device lock.
//!
//! A min-heap of (deadline, peer) with lazy deletion: `at` holds each peer's current earliest
//! deadline, and a heap entry that no longer matches it is stale and skipped. The device updates
//! a peer's entry after every operation that can arm or disarm its timers; as a safety net
//! against a missed update, [`Schedule::full_scan_due`] asks for a walk over every peer once a
//! second (a missed timer then fires at most that late).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use crate::peer::PeerId;

/// How often every peer's deadline is re-read regardless.
const FULL_SCAN_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(crate) struct Schedule {
    heap: BinaryHeap<Reverse<(Instant, PeerId)>>,
    at: HashMap<PeerId, Instant>,
    last_full_scan: Option<Instant>,
}

impl Schedule {
    /// Records `id`'s earliest deadline (`None`: nothing armed).
    pub(crate) fn update(&mut self, id: PeerId, deadline: Option<Instant>) {
        match deadline {
            Some(d) => {
                if self.at.insert(id, d) != Some(d) {
                    self.heap.push(Reverse((d, id)));
                    self.compact();
                }
            }
            None => {
                self.at.remove(&id);
            }
        }
        self.drop_stale_top();
    }

    /// Forgets a removed peer.
    pub(crate) fn remove(&mut self, id: PeerId) {
        self.at.remove(&id);
        self.drop_stale_top();
    }

    /// Keeps the heap's top live, so that [`Schedule::earliest`] is exact.
    fn drop_stale_top(&mut self) {
        while let Some(&Reverse((d, id))) = self.heap.peek() {
            if self.at.get(&id) == Some(&d) {
                break;
            }
            self.heap.pop();
        }
    }

    /// Asks for a full scan at the next `handle_timeout` (after a change to every peer).
    pub(crate) fn invalidate(&mut self) {
        self.last_full_scan = None;
    }

    /// Whether every peer's deadline should be re-read at `now` (and notes that it will be).
    pub(crate) fn full_scan_due(&mut self, now: Instant) -> bool {
        let due = self.last_full_scan.is_none_or(|t| now.saturating_duration_since(t) >= FULL_SCAN_INTERVAL || now < t);
        if due {
            self.last_full_scan = Some(now);
        }
        due
    }

    /// The next peer whose deadline is at or before `now`, taken out of the schedule.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<PeerId> {
        while let Some(&Reverse((d, id))) = self.heap.peek() {
            if d > now {
                return None;
            }
            self.heap.pop();
            if self.at.get(&id) == Some(&d) {
                self.at.remove(&id);
                self.drop_stale_top();
                return Some(id);
            }
        }
        None
    }

    /// The earliest deadline.
    pub(crate) fn earliest(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((d, _))| *d)
    }

    /// Rebuilds the heap when stale entries outnumber live ones (deadlines of busy peers move
    /// with every batch they send).
    fn compact(&mut self) {
        if self.heap.len() > 2 * self.at.len() + 1024 {
            self.heap = self.at.iter().map(|(id, d)| Reverse((*d, *id))).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_peers_come_out_in_deadline_order_and_stale_entries_are_skipped() {
        let t0 = crate::test_instant();
        let s = |ms| t0 + Duration::from_millis(ms);
        let mut sch = Schedule::default();
        sch.update(PeerId(1), Some(s(300)));
        sch.update(PeerId(2), Some(s(100)));
        sch.update(PeerId(3), Some(s(200)));
        sch.update(PeerId(2), Some(s(400))); // moved later: the 100 ms entry is stale
        sch.update(PeerId(3), None); // disarmed
        assert_eq!(sch.earliest(), Some(s(300)), "stale entries never show as the earliest");
        assert_eq!(sch.pop_due(s(250)), None);
        assert_eq!(sch.pop_due(s(350)), Some(PeerId(1)));
        assert_eq!(sch.pop_due(s(350)), None);
        assert_eq!(sch.pop_due(s(1000)), Some(PeerId(2)));
        assert_eq!(sch.pop_due(s(1000)), None);
        assert!(sch.full_scan_due(s(0)));
        assert!(!sch.full_scan_due(s(500)));
        assert!(sch.full_scan_due(s(1000)));
    }

    #[test]
    fn the_heap_stays_bounded_when_deadlines_keep_moving() {
        let t0 = crate::test_instant();
        let mut sch = Schedule::default();
        for i in 0..100_000u64 {
            sch.update(PeerId(i % 3), Some(t0 + Duration::from_millis(i)));
        }
        assert!(sch.heap.len() <= 2 * 3 + 1024 + 1);
    }
}
