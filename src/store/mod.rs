//! Where customers' committed states live: in memory, or in an embedded
//! on-disk store that is a cache of the changelog.
//!
//! A store holds only what Kafka has committed. The [`Engine`](crate::engine::Engine)
//! keeps the open batch's changes in its own overlay and hands them over with
//! [`StateStore::apply`] after the transaction commits, together with the
//! changelog offset they reach; an abort simply drops the overlay. Each store
//! keeps the indexes derived from the states (timers by due time, the counts
//! behind the gauges) in step with the states it holds.

mod disk;
mod memory;
mod recent;

pub use disk::{DiskDb, DiskStore, StoreError};
pub use memory::MemoryStore;

use crate::domain::{CustomerState, Phase};
use crate::time::Timestamp;

/// The changelog record a store's state reaches: its offset, and a
/// fingerprint of it ([`record_fingerprint`]) that a later restore checks
/// against the record it finds there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub offset: i64,
    pub fingerprint: u64,
}

/// An armed timer: when it is due, and whose it is. Ordered by due time, then
/// customer id, which is the order timers fire in.
pub type TimerEntry = (Timestamp, String);

/// What a store's indexes and counts depend on in a state: its phase, the
/// timer it arms, and when a dismantling started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    phase: usize,
    pub timer: Option<Timestamp>,
    /// A dismantling's start and whether it stalled.
    pub dismantle: Option<(Timestamp, bool)>,
}

impl Footprint {
    pub fn of(state: &CustomerState) -> Footprint {
        Footprint {
            phase: phase_index(&state.phase),
            timer: state.next_timer().map(|(due, _)| due),
            dismantle: match &state.phase {
                Phase::Dismantling { dismantle, .. } => {
                    Some((dismantle.started_at, dismantle.stalled))
                }
                _ => None,
            },
        }
    }

    fn stalled(&self) -> bool {
        self.dismantle.is_some_and(|(_, stalled)| stalled)
    }

    /// The dismantling index entry of `key`: when its dismantling started.
    pub fn dismantle_entry(&self, key: &str) -> Option<TimerEntry> {
        self.dismantle.map(|(started, _)| (started, key.to_owned()))
    }

    /// The timer index entry of `key` with this footprint.
    pub fn timer_entry(&self, key: &str) -> Option<TimerEntry> {
        self.timer.map(|due| (due, key.to_owned()))
    }
}

/// The committed state a change replaces, as far as a store's indexes care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Before {
    /// The caller does not know (a restore): the store looks it up.
    Unknown,
    /// There was no committed state.
    Absent,
    Was(Footprint),
}

impl Before {
    pub fn of(state: Option<&CustomerState>) -> Before {
        state.map_or(Before::Absent, |s| Before::Was(Footprint::of(s)))
    }
}

/// One customer's committed change, as handed to [`StateStore::apply`].
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub key: String,
    pub before: Before,
    /// The new state (`None`: the customer is forgotten).
    pub after: Option<CustomerState>,
    /// `after` as a binary state record, when the caller encoded it already
    /// (for the changelog): the disk store writes these bytes as they are.
    pub encoded: Option<Vec<u8>>,
}

impl Change {
    /// A change whose previous state the store must look up.
    pub fn new(key: String, after: Option<CustomerState>) -> Change {
        Change {
            key,
            before: Before::Unknown,
            after,
            encoded: None,
        }
    }
}

impl From<(String, Option<CustomerState>)> for Change {
    fn from((key, after): (String, Option<CustomerState>)) -> Change {
        Change::new(key, after)
    }
}

/// The committed states of one set of customers (one input partition's, in
/// the worker), with their timer index.
///
/// Reads are infallible by design: an on-disk store that fails to read
/// records the failure, answers as best it can and reports it through
/// [`failure`](Self::failure), which the worker checks before every commit —
/// so a failed read can spoil an open transaction, never a committed one.
pub trait StateStore {
    /// A customer's committed state.
    fn load(&self, key: &str) -> Option<CustomerState>;
    /// The earliest committed timer strictly after `after` (from the start
    /// with `None`).
    fn next_timer(&self, after: Option<&TimerEntry>) -> Option<TimerEntry>;
    /// Stores a committed batch's changes (`None` forgets the customer) and,
    /// atomically with them, the changelog offset they reach.
    fn apply(&mut self, changes: Vec<Change>, checkpoint: Option<Checkpoint>);
    /// The changelog offset the stored states reflect, if known: a restore
    /// reads only what comes after it.
    fn checkpoint(&self) -> Option<Checkpoint> {
        None
    }
    /// Counts derived from the stored states.
    fn stats(&self) -> &StoreStats;
    /// When the longest-running dismantling still under way started.
    fn oldest_dismantling(&self) -> Option<Timestamp>;
    /// The first read or write error since the store was opened.
    fn failure(&self) -> Option<String> {
        None
    }
}

/// Counts kept in step with the stored states, so that gauges never scan
/// millions of customers. Plain counters: nothing here grows with the
/// number of customers (the dismantling index behind the oldest-dismantling
/// gauge is the store's, on disk for the disk store).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Customers by phase, indexed like [`Phase::NAMES`].
    pub by_phase: [u64; 5],
    pub timers: u64,
    /// Customers in dismantling whose deadline passed (TerminationStalled).
    pub stalled: u64,
}

impl StoreStats {
    pub fn customers(&self) -> u64 {
        self.by_phase.iter().sum()
    }

    /// Accounts for one customer's state replacing another.
    pub fn replace(&mut self, before: Option<Footprint>, after: Option<Footprint>) {
        if let Some(b) = before {
            self.by_phase[b.phase] = self.by_phase[b.phase].saturating_sub(1);
            if b.timer.is_some() {
                self.timers = self.timers.saturating_sub(1);
            }
            if b.stalled() {
                self.stalled = self.stalled.saturating_sub(1);
            }
        }
        if let Some(a) = after {
            self.by_phase[a.phase] += 1;
            if a.timer.is_some() {
                self.timers += 1;
            }
            if a.stalled() {
                self.stalled += 1;
            }
        }
    }
}

pub fn phase_index(phase: &Phase) -> usize {
    match phase {
        Phase::Active => 0,
        Phase::Pending { .. } => 1,
        Phase::Dismantling { .. } => 2,
        Phase::Terminated { .. } => 3,
        Phase::Anonymized { .. } => 4,
    }
}

/// The timer a state arms, as an index entry.
pub fn timer_of(key: &str, state: &CustomerState) -> Option<TimerEntry> {
    state.next_timer().map(|(due, _)| (due, key.to_owned()))
}

/// A fingerprint (64-bit FNV-1a) of a changelog record's key and value, kept
/// with a store's checkpoint: finding another record at the checkpoint's
/// offset means the changelog is not the one the store was written from.
pub fn record_fingerprint(key: Option<&[u8]>, value: Option<&[u8]>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(key.unwrap_or_default());
    match value {
        Some(v) => {
            eat(&[1]);
            eat(v);
        }
        None => eat(&[0]),
    }
    h
}

/// The store of one of the worker's partitions, as `--state-store` chose.
pub enum PartitionStore {
    Memory(MemoryStore),
    Disk(DiskStore),
}

impl PartitionStore {
    /// Forgets everything (before a full restore).
    ///
    /// # Errors
    /// The disk store's error.
    pub fn wipe(&mut self) -> Result<(), String> {
        match self {
            PartitionStore::Memory(s) => {
                *s = MemoryStore::new();
                Ok(())
            }
            PartitionStore::Disk(s) => s.wipe().map_err(|e| e.to_string()),
        }
    }
}

impl StateStore for PartitionStore {
    fn load(&self, key: &str) -> Option<CustomerState> {
        match self {
            PartitionStore::Memory(s) => s.load(key),
            PartitionStore::Disk(s) => s.load(key),
        }
    }

    fn next_timer(&self, after: Option<&TimerEntry>) -> Option<TimerEntry> {
        match self {
            PartitionStore::Memory(s) => s.next_timer(after),
            PartitionStore::Disk(s) => s.next_timer(after),
        }
    }

    fn apply(&mut self, changes: Vec<Change>, checkpoint: Option<Checkpoint>) {
        match self {
            PartitionStore::Memory(s) => s.apply(changes, checkpoint),
            PartitionStore::Disk(s) => s.apply(changes, checkpoint),
        }
    }

    fn checkpoint(&self) -> Option<Checkpoint> {
        match self {
            PartitionStore::Memory(s) => s.checkpoint(),
            PartitionStore::Disk(s) => s.checkpoint(),
        }
    }

    fn stats(&self) -> &StoreStats {
        match self {
            PartitionStore::Memory(s) => s.stats(),
            PartitionStore::Disk(s) => s.stats(),
        }
    }

    fn oldest_dismantling(&self) -> Option<Timestamp> {
        match self {
            PartitionStore::Memory(s) => s.oldest_dismantling(),
            PartitionStore::Disk(s) => s.oldest_dismantling(),
        }
    }

    fn failure(&self) -> Option<String> {
        match self {
            PartitionStore::Memory(s) => s.failure(),
            PartitionStore::Disk(s) => s.failure(),
        }
    }
}
