//! Many customers' states, their timer index, and the undo log of one batch.
//!
//! The worker keeps one [`Engine`] per owned input partition; the simulator keeps
//! one for everything. Both feed it events and ticks and read back outputs, so
//! the two run the same code path from decoded event to output.

use crate::contract::{InputEnvelope, OutputRecord};
use crate::domain::{CustomerState, Decision, Effect, Input, Policy, decide};
use crate::store::{Before, Change, Checkpoint, TimerEntry, timer_of};
pub use crate::store::{MemoryStore, StateStore};
use crate::time::Timestamp;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The outcome of handling one event.
#[derive(Debug)]
pub struct Handled {
    pub outputs: Vec<OutputRecord>,
    pub effect: Effect,
}

/// A set of customers with their states and timers.
///
/// Committed states live in the store; the open batch's changes live here,
/// in an overlay that [`commit`](Self::commit) hands to the store and
/// [`rollback`](Self::rollback) drops, so that a store never holds anything
/// an abort could undo.
pub struct Engine<S: StateStore = MemoryStore> {
    policy: Arc<Policy>,
    store: S,
    /// The open batch's changed customers.
    dirty: foldhash::HashMap<String, Dirty>,
    /// Timers armed by the dirty states. A dirty customer's committed timer
    /// no longer counts.
    dirty_timers: BTreeSet<TimerEntry>,
    /// Every committed timer up to here belongs to a dirty customer: the next
    /// search starts after it (reset whenever the overlay or the store changes).
    cursor: Option<TimerEntry>,
}

/// A customer the open batch changed.
struct Dirty {
    /// The state now (`None`: the customer is forgotten).
    state: Option<CustomerState>,
    /// The committed state it replaces, as the store's indexes need it: kept
    /// so that the commit does not read it back from the store.
    committed: Before,
    /// `state` as a binary record, once encoded for the changelog.
    encoded: Option<Vec<u8>>,
}

impl Engine<MemoryStore> {
    pub fn new(policy: Arc<Policy>) -> Self {
        Engine::with_store(policy, MemoryStore::default())
    }
}

impl<S: StateStore> Engine<S> {
    pub fn with_store(policy: Arc<Policy>, store: S) -> Self {
        Engine {
            policy,
            store,
            dirty: foldhash::HashMap::default(),
            dirty_timers: BTreeSet::new(),
            cursor: None,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Loads states read from the changelog (`None` for a tombstone), which
    /// reach changelog offset `up_to`. Not part of any batch: restored state
    /// is already committed.
    pub fn restore_batch(&mut self, records: Vec<Change>, up_to: Option<Checkpoint>) {
        self.cursor = None;
        self.store.apply(records, up_to);
    }

    /// Loads one state read from the changelog.
    pub fn restore(&mut self, key: &str, state: Option<CustomerState>) {
        self.restore_batch(vec![Change::new(key.to_owned(), state)], None);
    }

    /// Handles one decoded event at wall/logical time `now`.
    pub fn handle(&mut self, env: &InputEnvelope, now: Timestamp) -> Handled {
        let decision = self.step(&env.customer_id, Input::Event(env), now);
        Handled {
            outputs: decision.outputs,
            effect: decision.effect,
        }
    }

    /// Fires every timer due by `now`, across customers, in due-time order (ties
    /// by customer id), one timer at a time so that order is global.
    pub fn fire_due(&mut self, now: Timestamp) -> Vec<OutputRecord> {
        let mut outputs = Vec::new();
        while let Some(fired) = self.fire_next_due(now) {
            outputs.extend(fired);
        }
        outputs
    }

    /// Fires the earliest timer due by `now` (one customer's), if any. The
    /// worker paces a burst of due timers with this, a bounded number per
    /// transaction, earliest first; the order of one customer's timers is
    /// the same as with [`fire_due`](Self::fire_due).
    pub fn fire_next_due(&mut self, now: Timestamp) -> Option<Vec<OutputRecord>> {
        let (due, key) = self.next_timer()?;
        if due > now {
            return None;
        }
        let decision = self.step(&key, Input::Timers, due);
        if !decision.changed {
            // Every armed timer changes the phase when it fires; one that did
            // not would be found again forever. Step past it.
            debug_assert!(false, "timer {due} of a customer did not fire");
            self.dirty_timers.remove(&(due, key.clone()));
            self.cursor = Some((due, key));
            return Some(Vec::new());
        }
        Some(decision.outputs)
    }

    /// The earliest armed timer, counting the open batch's changes.
    fn next_timer(&mut self) -> Option<TimerEntry> {
        let committed = loop {
            match self.store.next_timer(self.cursor.as_ref()) {
                Some(entry) if self.dirty.contains_key(&entry.1) => self.cursor = Some(entry),
                other => break other,
            }
        };
        match (committed, self.dirty_timers.first()) {
            (Some(c), Some(d)) => Some(if *d < c { d.clone() } else { c }),
            (c, d) => c.or_else(|| d.cloned()),
        }
    }

    /// The state as the last committed batch left it: what a query may show,
    /// since an abort would undo anything newer.
    pub fn committed(&self, key: &str) -> Option<CustomerState> {
        self.store.load(key)
    }

    /// How many customers the open batch changed (changelog records to write).
    pub fn changed_count(&self) -> usize {
        self.dirty.len()
    }

    /// When the earliest armed timer is due.
    pub fn next_due(&mut self) -> Option<Timestamp> {
        self.next_timer().map(|(due, _)| due)
    }

    /// A customer's state, including the open batch's changes.
    pub fn get(&self, key: &str) -> Option<CustomerState> {
        match self.dirty.get(key) {
            Some(dirty) => dirty.state.clone(),
            None => self.store.load(key),
        }
    }

    /// Customers, counting the open batch's changes.
    pub fn len(&self) -> usize {
        let delta = self.dirty_delta(|s| s.is_some());
        (self.store.stats().customers() as i64 + delta).max(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Armed timers, counting the open batch's changes.
    pub fn timer_count(&self) -> usize {
        let delta = self.dirty_delta(|s| s.is_some_and(|s| s.next_timer().is_some()));
        (self.store.stats().timers as i64 + delta).max(0) as usize
    }

    /// How many more dirty states than their committed ones satisfy `count`.
    fn dirty_delta(&self, count: impl Fn(Option<&CustomerState>) -> bool) -> i64 {
        self.dirty
            .iter()
            .map(|(key, dirty)| {
                i64::from(count(dirty.state.as_ref()))
                    - i64::from(count(self.store.load(key).as_ref()))
            })
            .sum()
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store itself, for a restore to wipe (drops the open batch).
    pub fn store_mut(&mut self) -> &mut S {
        self.rollback();
        &mut self.store
    }

    /// The customers changed since the last [`commit`](Self::commit), with their
    /// current state (`None`: write a tombstone), in key order.
    pub fn changes(&self) -> Vec<(&str, Option<&CustomerState>)> {
        let mut out: Vec<(&str, Option<&CustomerState>)> = self
            .dirty
            .iter()
            .map(|(k, d)| (k.as_str(), d.state.as_ref()))
            .collect();
        out.sort_unstable_by_key(|(k, _)| *k);
        out
    }

    /// As [`changes`](Self::changes), each state as a binary state record.
    /// The records are kept for the commit, which stores the same bytes.
    pub fn encoded_changes(&mut self) -> Vec<(&str, Option<&[u8]>)> {
        for dirty in self.dirty.values_mut() {
            if let (Some(state), None) = (&dirty.state, &dirty.encoded) {
                dirty.encoded = Some(state.to_bytes());
            }
        }
        let mut out: Vec<(&str, Option<&[u8]>)> = self
            .dirty
            .iter()
            .map(|(k, d)| (k.as_str(), d.state.as_ref().and(d.encoded.as_deref())))
            .collect();
        out.sort_unstable_by_key(|(k, _)| *k);
        out
    }

    /// The batch is durable: hand its changes to the store.
    pub fn commit(&mut self) {
        self.commit_at(None);
    }

    /// The batch is durable, and its changelog records reach offset
    /// `checkpoint`: hand both to the store, which keeps them together.
    pub fn commit_at(&mut self, checkpoint: Option<Checkpoint>) {
        self.dirty_timers.clear();
        self.cursor = None;
        if self.dirty.is_empty() && checkpoint.is_none() {
            return;
        }
        let changes: Vec<Change> = self
            .dirty
            .drain()
            .map(|(key, d)| Change {
                key,
                before: d.committed,
                encoded: d.state.as_ref().and(d.encoded),
                after: d.state,
            })
            .collect();
        self.store.apply(changes, checkpoint);
    }

    /// The batch was aborted: forget every change it made.
    pub fn rollback(&mut self) {
        self.dirty.clear();
        self.dirty_timers.clear();
        self.cursor = None;
    }

    fn step(&mut self, key: &str, input: Input<'_>, now: Timestamp) -> Decision {
        let (before, committed) = match self.dirty.get_mut(key) {
            Some(slot) => (slot.state.take(), Some(slot.committed)),
            None => (self.store.load(key), None),
        };
        let was_dirty = committed.is_some();
        let committed = committed.unwrap_or_else(|| Before::of(before.as_ref()));
        let timer_before = before.as_ref().and_then(|s| timer_of(key, s));
        let mut decision = decide(key, before, input, now, &self.policy);
        if !decision.changed {
            if was_dirty && let Some(slot) = self.dirty.get_mut(key) {
                // Unchanged: the state handed back is the one taken out, and
                // its encoding (if any) still holds.
                slot.state = decision.state.take();
            }
            return decision;
        }
        let after = decision.state.take();
        let timer_after = after.as_ref().and_then(|s| timer_of(key, s));
        if was_dirty && let Some(t) = &timer_before {
            self.dirty_timers.remove(t);
        }
        if let Some(t) = timer_after {
            self.dirty_timers.insert(t);
        }
        match self.dirty.get_mut(key) {
            Some(slot) => {
                slot.state = after;
                slot.encoded = None;
            }
            None => {
                self.dirty.insert(
                    key.to_owned(),
                    Dirty {
                        state: after,
                        committed,
                        encoded: None,
                    },
                );
            }
        }
        decision
    }
}

/// The engines of the partitions a worker owns, by partition number.
pub type Partitions = std::collections::BTreeMap<i32, Engine<crate::store::PartitionStore>>;

/// Owned partitions' engines behind a lock, shared by the worker (which holds
/// the lock only while it handles one record or one step of a commit, never
/// across a broker round trip) and the admin server's queries.
#[derive(Clone, Default)]
pub struct SharedEngines(Arc<std::sync::Mutex<Partitions>>);

/// What a query for one customer finds.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// This instance does not own the customer's partition.
    NotOwned,
    /// It owns the partition and holds no committed state for the customer.
    Unknown,
    /// The customer's committed state.
    Found(Box<CustomerState>),
}

impl SharedEngines {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Partitions> {
        // A panic while holding the lock ends the worker anyway; a query may
        // still read what is there.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The committed state of `key` in `partition`: never a change that an
    /// abort could still undo.
    pub fn committed(&self, partition: i32, key: &str) -> Lookup {
        let engines = self.lock();
        match engines.get(&partition) {
            None => Lookup::NotOwned,
            Some(engine) => match engine.committed(key) {
                Some(state) => Lookup::Found(Box::new(state)),
                None => Lookup::Unknown,
            },
        }
    }
}
