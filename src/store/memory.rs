//! The in-memory store: a hash map from customer id to state and an ordered
//! set of timers. Nothing survives a restart; the changelog is read in full.

use super::{Change, Footprint, StateStore, StoreStats, TimerEntry, timer_of};
use crate::domain::CustomerState;
use std::collections::BTreeSet;
use std::ops::Bound;

#[derive(Default, Debug)]
pub struct MemoryStore {
    states: foldhash::HashMap<String, CustomerState>,
    timers: BTreeSet<TimerEntry>,
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
            let before = self.states.remove(&key);
            self.stats
                .replace(&key, before.as_ref().map(Footprint::of), after.as_ref());
            if let Some(t) = before.as_ref().and_then(|b| timer_of(&key, b)) {
                self.timers.remove(&t);
            }
            if let Some(state) = after {
                if let Some(t) = timer_of(&key, &state) {
                    self.timers.insert(t);
                }
                self.states.insert(key, state);
            }
        }
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }
}
