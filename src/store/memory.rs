//! The in-memory store: a hash map from customer id to state and ordered
//! sets of timers and of dismantlings. Nothing survives a restart; the
//! changelog is read in full.

use super::{Change, Footprint, StateStore, StoreStats, TimerEntry};
use crate::domain::CustomerState;
use crate::time::Timestamp;
use std::collections::BTreeSet;
use std::ops::Bound;

#[derive(Default, Debug)]
pub struct MemoryStore {
    states: foldhash::HashMap<String, CustomerState>,
    timers: BTreeSet<TimerEntry>,
    /// Customers in dismantling, by when it started.
    dismantling: BTreeSet<TimerEntry>,
    stats: StoreStats,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A committed state without a copy.
    pub fn get(&self, key: &str) -> Option<&CustomerState> {
        self.states.get(key)
    }
}

impl StateStore for MemoryStore {
    fn load(&self, key: &str) -> Option<CustomerState> {
        self.states.get(key).cloned()
    }

    fn next_timer(&self, after: Option<&TimerEntry>) -> Option<TimerEntry> {
        match after {
            None => self.timers.first().cloned(),
            Some(after) => self
                .timers
                .range::<TimerEntry, _>((Bound::Excluded(after), Bound::Unbounded))
                .next()
                .cloned(),
        }
    }

    fn apply(&mut self, changes: Vec<Change>, _checkpoint: Option<super::Checkpoint>) {
        // The map knows the previous state exactly; `before` is not needed.
        for Change { key, after, .. } in changes {
            let before = self.states.remove(&key).as_ref().map(Footprint::of);
            let now = after.as_ref().map(Footprint::of);
            self.stats.replace(before, now);
            if let Some(t) = before.and_then(|b| b.timer_entry(&key)) {
                self.timers.remove(&t);
            }
            if let Some(d) = before.and_then(|b| b.dismantle_entry(&key)) {
                self.dismantling.remove(&d);
            }
            if let Some(t) = now.and_then(|n| n.timer_entry(&key)) {
                self.timers.insert(t);
            }
            if let Some(d) = now.and_then(|n| n.dismantle_entry(&key)) {
                self.dismantling.insert(d);
            }
            if let Some(state) = after {
                self.states.insert(key, state);
            }
        }
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }

    fn oldest_dismantling(&self) -> Option<Timestamp> {
        self.dismantling.first().map(|(started, _)| *started)
    }
}
