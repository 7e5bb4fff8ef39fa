//! Many customers' states, their timer index, and the undo log of one batch.
//!
//! The worker keeps one [`Engine`] per owned input partition; the simulator keeps
//! one for everything. Both feed it events and ticks and read back outputs, so
//! the two run the same code path from decoded event to output.

use crate::contract::{InputEnvelope, OutputRecord};
use crate::domain::{CustomerState, Decision, Effect, Input, Policy, decide};
use crate::time::Timestamp;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Where customers' states live. The in-memory map is the only implementation
/// today; an embedded on-disk store (with a cache in front) fits behind the same
/// four calls without touching the core or the engine.
pub trait StateStore {
    /// Removes and returns a customer's state, to be handed back with [`save`](Self::save).
    fn take(&mut self, key: &str) -> Option<CustomerState>;
    /// Stores a state, or forgets the customer on `None`.
    fn save(&mut self, key: &str, state: Option<CustomerState>);
    fn get(&self, key: &str) -> Option<&CustomerState>;
    /// The stored state, to be replaced in place (saves a remove and an insert
    /// on the hot path).
    fn get_mut(&mut self, key: &str) -> Option<&mut CustomerState>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Visits every stored state (for gauges and for rebuilding the timer index).
    fn for_each(&self, f: &mut dyn FnMut(&str, &CustomerState));
}

/// The in-memory store: a hash map from customer id to state.
#[derive(Default, Debug)]
pub struct MemoryStore {
    states: HashMap<String, CustomerState>,
}

impl StateStore for MemoryStore {
    fn take(&mut self, key: &str) -> Option<CustomerState> {
        self.states.remove(key)
    }

    fn save(&mut self, key: &str, state: Option<CustomerState>) {
        match state {
            Some(s) => {
                self.states.insert(key.to_owned(), s);
            }
            None => {
                self.states.remove(key);
            }
        }
    }

    fn get(&self, key: &str) -> Option<&CustomerState> {
        self.states.get(key)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut CustomerState> {
        self.states.get_mut(key)
    }

    fn len(&self) -> usize {
        self.states.len()
    }

    fn for_each(&self, f: &mut dyn FnMut(&str, &CustomerState)) {
        for (k, v) in &self.states {
            f(k, v);
        }
    }
}

/// The outcome of handling one event.
#[derive(Debug)]
pub struct Handled {
    pub outputs: Vec<OutputRecord>,
    pub effect: Effect,
}

/// A set of customers with their states and timers.
pub struct Engine<S: StateStore = MemoryStore> {
    policy: Arc<Policy>,
    store: S,
    /// (due, customer) of every armed timer: the next one is the first entry.
    timers: BTreeSet<(Timestamp, String)>,
    /// The state each customer had before the current batch touched it.
    undo: HashMap<String, Option<CustomerState>>,
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
            timers: BTreeSet::new(),
            undo: HashMap::new(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Loads a state read from the changelog (`None` for a tombstone). Not part
    /// of any batch: restored state is already committed.
    pub fn restore(&mut self, key: &str, state: Option<CustomerState>) {
        if let Some(old) = self.store.take(key) {
            self.unindex(key, &old);
        }
        if let Some(s) = &state {
            self.index(key, s);
        }
        self.store.save(key, state);
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
        while let Some((due, key)) = self.timers.first().cloned() {
            if due > now {
                break;
            }
            let decision = self.step(&key, Input::Timers, due);
            if !decision.changed {
                // Every armed timer changes the phase when it fires; one that did
                // not would be popped again forever. Leave it for the next tick.
                debug_assert!(false, "timer {due} of a customer did not fire");
                break;
            }
            outputs.extend(decision.outputs);
        }
        outputs
    }

    /// Fires the earliest timer due by `now` (one customer's), if any. The
    /// worker paces a burst of due timers with this, a bounded number per
    /// transaction, earliest first; the order of one customer's timers is
    /// the same as with [`fire_due`](Self::fire_due).
    pub fn fire_next_due(&mut self, now: Timestamp) -> Option<Vec<OutputRecord>> {
        let (due, key) = self.timers.first().cloned()?;
        if due > now {
            return None;
        }
        let decision = self.step(&key, Input::Timers, due);
        if !decision.changed {
            // See fire_due: a timer that does not move the phase would be
            // popped forever; drop it from the index rather than spin.
            debug_assert!(false, "timer {due} of a customer did not fire");
            self.timers.remove(&(due, key));
            return Some(Vec::new());
        }
        Some(decision.outputs)
    }

    /// The state as the last committed batch left it: what a query may show,
    /// since an abort would undo anything newer.
    pub fn committed(&self, key: &str) -> Option<&CustomerState> {
        match self.undo.get(key) {
            Some(before) => before.as_ref(),
            None => self.store.get(key),
        }
    }

    /// How many customers the open batch changed (changelog records to write).
    pub fn changed_count(&self) -> usize {
        self.undo.len()
    }

    /// The earliest armed timer.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.timers.first().map(|(due, _)| *due)
    }

    pub fn get(&self, key: &str) -> Option<&CustomerState> {
        self.store.get(key)
    }

    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The customers changed since the last [`commit`](Self::commit), with their
    /// current state (`None`: write a tombstone), in key order.
    pub fn changes(&self) -> Vec<(&str, Option<&CustomerState>)> {
        let mut keys: Vec<&str> = self.undo.keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys.into_iter().map(|k| (k, self.store.get(k))).collect()
    }

    /// The batch is durable: forget how to undo it.
    pub fn commit(&mut self) {
        self.undo.clear();
    }

    /// The batch was aborted: put back every state it changed.
    pub fn rollback(&mut self) {
        for (key, before) in std::mem::take(&mut self.undo) {
            self.restore(&key, before);
        }
    }

    fn step(&mut self, key: &str, input: Input<'_>, now: Timestamp) -> Decision {
        let mut slot = self.store.get_mut(key);
        let before = slot.as_deref_mut().map(std::mem::take);
        let timer_before = before.as_ref().and_then(due_of);
        let backup = (!self.undo.contains_key(key)).then(|| before.clone());
        let existed = before.is_some();
        let mut decision = decide(key, before, input, now, &self.policy);
        if decision.changed
            && let Some(backup) = backup
        {
            self.undo.insert(key.to_owned(), backup);
        }
        let timer_after = decision.state.as_ref().and_then(due_of);
        if timer_before != timer_after {
            if let Some(due) = timer_before {
                self.timers.remove(&(due, key.to_owned()));
            }
            if let Some(due) = timer_after {
                self.timers.insert((due, key.to_owned()));
            }
        }
        match (slot, decision.state.take()) {
            (Some(slot), Some(state)) => *slot = state,
            (_, None) if !existed => {}
            (_, state) => self.store.save(key, state),
        }
        decision
    }

    fn index(&mut self, key: &str, state: &CustomerState) {
        if let Some((due, _)) = state.next_timer() {
            self.timers.insert((due, key.to_owned()));
        }
    }

    fn unindex(&mut self, key: &str, state: &CustomerState) {
        if let Some((due, _)) = state.next_timer() {
            self.timers.remove(&(due, key.to_owned()));
        }
    }
}

fn due_of(state: &CustomerState) -> Option<Timestamp> {
    state.next_timer().map(|(due, _)| due)
}

/// The engines of the partitions a worker owns, by partition number.
pub type Partitions = std::collections::BTreeMap<i32, Engine>;

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
                Some(state) => Lookup::Found(Box::new(state.clone())),
                None => Lookup::Unknown,
            },
        }
    }
}
