//! The on-disk store: an embedded LSM database ([fjall]) under `--state-dir`,
//! a cache of the changelog that a restart reads only the tail for.
//!
//! One database per instance; per owned partition three keyspaces — states
//! (customer → binary state record), timers (due ++ customer, ordered as they
//! fire) and dismantling (start ++ customer, for the oldest-dismantling
//! gauge) — plus one record in the shared `meta` keyspace: the checkpoint
//! (changelog offset and fingerprint the states reach) and the counts behind
//! the gauges. Nothing of a partition is held in memory per customer.
//! Each [`apply`](StateStore::apply) writes a committed batch's states, their
//! index entries and the new checkpoint in one atomic write batch, so after a
//! crash at any moment the store is some earlier committed prefix of the
//! changelog, and the restore reads on from its checkpoint.
//!
//! The store is only a cache: whatever cannot be opened or does not match the
//! changelog is wiped and rebuilt from it (see the worker's restore).

use super::recent::{self, Recent};
use super::{Before, Change, Checkpoint, Footprint, StateStore, StoreStats, TimerEntry};
use crate::domain::CustomerState;
use crate::time::Timestamp;
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing::warn;

/// What this release writes in the `format` record; another value means the
/// directory is not ours to read (or was written for another changelog).
/// (`/1` kept the dismantling index by customer and loaded it into memory;
/// such a directory is wiped and rebuilt from the changelog once.)
const FORMAT: &str = "terminus-store/2";
/// Memtable size of a partition's states keyspace; the index keyspaces get a
/// quarter. Small, because one instance owns many partitions.
const STATES_MEMTABLE: u64 = 16 * 1024 * 1024;
/// Block cache shared by every partition of the instance.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// Journal kept before memtables are flushed to disk: what a start after a
/// crash replays (fjall's default, 512 MiB, took seconds per million states).
const JOURNAL_BYTES: u64 = 128 * 1024 * 1024;

/// Why the store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the state directory {0} is in use by another process; give each instance its own --state-dir"
    )]
    InUse(PathBuf),
    #[error("the state directory {dir} cannot be used: {reason}")]
    Unusable { dir: PathBuf, reason: String },
    /// Another store of the same partition is open in this process (a
    /// processing task that has not let go of it yet): two would each keep
    /// their own counts and checkpoint over the same keyspaces.
    #[error("partition {0}'s store is still open in another processing task of this instance")]
    PartitionOpen(i32),
}

/// The instance's database, shared by its partitions' stores.
#[derive(Clone)]
pub struct DiskDb {
    db: Database,
    meta: Keyspace,
    dir: PathBuf,
    /// The partitions whose store is open, shared by every clone.
    open: Arc<Mutex<BTreeSet<i32>>>,
}

impl DiskDb {
    /// Opens (or creates) the database in `dir` for `changelog`. A
    /// directory that cannot be opened, or was written by another format or
    /// for another changelog topic, is wiped: it is only a cache.
    ///
    /// # Errors
    /// [`StoreError::InUse`] when another process holds it;
    /// [`StoreError::Unusable`] when it cannot be created even when empty.
    pub fn open(dir: &Path, changelog: &str) -> Result<DiskDb, StoreError> {
        let unusable = |reason: String| StoreError::Unusable {
            dir: dir.to_owned(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| unusable(e.to_string()))?;
        let expected = format!("{FORMAT} {changelog}");
        for attempt in 0..2 {
            let opened = Database::builder(dir)
                .cache_size(CACHE_BYTES)
                .max_journaling_size(JOURNAL_BYTES)
                .open();
            let reason = match opened {
                Err(fjall::Error::Locked) => return Err(StoreError::InUse(dir.to_owned())),
                Err(e) => format!("cannot be opened ({e})"),
                Ok(db) => match db.keyspace("meta", KeyspaceCreateOptions::default) {
                    Err(e) => format!("has no readable meta keyspace ({e})"),
                    Ok(meta) => match meta.get("format") {
                        Ok(None) if db.keyspace_count() <= 1 => {
                            meta.insert("format", expected.as_bytes())
                                .map_err(|e| unusable(e.to_string()))?;
                            return Ok(DiskDb {
                                db,
                                meta,
                                dir: dir.to_owned(),
                                open: Arc::default(),
                            });
                        }
                        Ok(Some(f)) if *f == *expected.as_bytes() => {
                            return Ok(DiskDb {
                                db,
                                meta,
                                dir: dir.to_owned(),
                                open: Arc::default(),
                            });
                        }
                        Ok(Some(f)) => format!(
                            "was written as `{}`, not `{expected}`",
                            String::from_utf8_lossy(&f)
                        ),
                        Ok(None) => "holds data without a format record".to_owned(),
                        Err(e) => format!("has an unreadable format record ({e})"),
                    },
                },
            };
            if attempt > 0 {
                return Err(unusable(reason));
            }
            warn!(dir = %dir.display(), reason = %reason, "state directory wiped; its partitions restore from the changelog in full");
            wipe_dir(dir).map_err(|e| unusable(format!("{reason}, and cannot be wiped: {e}")))?;
        }
        Err(unusable("cannot be opened".into()))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store of one partition, with its checkpoint and counts as last
    /// committed. A partition whose records cannot be read is cleared. Each
    /// partition's store is open at most once at a time: it is released when
    /// the store is dropped.
    ///
    /// # Errors
    /// [`StoreError::PartitionOpen`] while the partition's store is open;
    /// [`StoreError::Unusable`] when its keyspaces cannot be opened.
    pub fn partition(&self, partition: i32) -> Result<DiskStore, StoreError> {
        let claim = Claim::take(&self.open, partition)?;
        let unusable = |e: fjall::Error| StoreError::Unusable {
            dir: self.dir.clone(),
            reason: format!("partition {partition}: {e}"),
        };
        let small = STATES_MEMTABLE / 4;
        let states = self
            .db
            .keyspace(&format!("states-{partition}"), || {
                KeyspaceCreateOptions::default().max_memtable_size(STATES_MEMTABLE)
            })
            .map_err(unusable)?;
        let timers = self
            .db
            .keyspace(&format!("timers-{partition}"), || {
                KeyspaceCreateOptions::default().max_memtable_size(small)
            })
            .map_err(unusable)?;
        let dismantling = self
            .db
            .keyspace(&format!("dismantling-{partition}"), || {
                KeyspaceCreateOptions::default().max_memtable_size(small)
            })
            .map_err(unusable)?;
        let mut store = DiskStore {
            db: self.db.clone(),
            meta: self.meta.clone(),
            states,
            timers: SortedIndex::new(timers),
            dismantling: SortedIndex::new(dismantling),
            meta_key: format!("partition-{partition}"),
            stats: StoreStats::default(),
            checkpoint: None,
            failure: Mutex::new(None),
            recent: Box::new(Mutex::new(Recent::new(recent::BYTES_PER_GENERATION))),
            _claim: claim,
        };
        match store.read_meta() {
            Ok(()) => {}
            Err(reason) => {
                warn!(partition, reason = %reason, "partition store cleared; it restores from the changelog in full");
                store.wipe().map_err(unusable)?;
            }
        }
        Ok(store)
    }

    /// At a clean shutdown: flushes every memtable to disk files, so that
    /// the next start has no journal to replay, and syncs.
    pub fn persist(&self) {
        for name in self.db.list_keyspace_names() {
            let Ok(ks) = self.db.keyspace(&name, KeyspaceCreateOptions::default) else {
                continue;
            };
            if let Err(e) = ks.rotate_memtable_and_wait() {
                warn!(error = %e, "state store keyspace not flushed at shutdown; the next start replays its journal");
            }
        }
        if let Err(e) = self.db.persist(fjall::PersistMode::SyncAll) {
            warn!(error = %e, "state store not persisted at shutdown; the next start reads more of the changelog");
        }
    }
}

/// One partition's committed states in the disk database.
pub struct DiskStore {
    db: Database,
    meta: Keyspace,
    states: Keyspace,
    timers: SortedIndex,
    dismantling: SortedIndex,
    meta_key: String,
    stats: StoreStats,
    checkpoint: Option<Checkpoint>,
    failure: Mutex<Option<String>>,
    /// What `states` holds for the keys used last (a lock only because
    /// queries read through `&self`; boxed, as it is large beside the rest).
    recent: Box<Mutex<Recent<fjall::Slice>>>,
    _claim: Claim,
}

/// A keyspace of (time ++ customer) keys with empty values, read in key
/// order: the timers by due time, the dismantlings by start.
struct SortedIndex {
    keyspace: Keyspace,
    /// A lower bound of every live key: the next search from the start
    /// begins here, past the deletions of entries already gone (an LSM
    /// iterator would otherwise step over each of their tombstones).
    head: Mutex<Option<Vec<u8>>>,
}

impl SortedIndex {
    fn new(keyspace: Keyspace) -> SortedIndex {
        SortedIndex {
            keyspace,
            head: Mutex::new(None),
        }
    }

    /// The first entry strictly after `after` (from the start with `None`).
    fn first_after(&self, after: Option<&TimerEntry>) -> Result<Option<TimerEntry>, String> {
        let from_head = after.is_none();
        let start = match after {
            Some(entry) => {
                let mut k = index_key(entry.0, &entry.1);
                k.push(0); // the smallest key after it
                k
            }
            None => lock(&self.head).clone().unwrap_or_default(),
        };
        let Some(guard) = self.keyspace.range(start..).next() else {
            return Ok(None);
        };
        let key = guard.key().map_err(|e| e.to_string())?;
        let entry = parse_index_key(&key).ok_or("malformed key")?;
        if from_head {
            *lock(&self.head) = Some(key.to_vec());
        }
        Ok(Some(entry))
    }

    /// A batch committed whose lowest inserted key is `lowest`: the head
    /// moves back to it when it is lower.
    fn inserted(&self, lowest: Option<Vec<u8>>) {
        if let Some(low) = lowest {
            let mut head = lock(&self.head);
            if head.as_ref().is_some_and(|h| low < *h) {
                *head = Some(low);
            }
        }
    }

    fn clear(&self) -> Result<(), fjall::Error> {
        self.keyspace.clear()?;
        *lock(&self.head) = None;
        Ok(())
    }
}

/// One write batch's changes to a [`SortedIndex`]: an entry that stays the
/// same is not written again (each write is a memtable insert and, later, a
/// tombstone to compact).
fn update_index(
    batch: &mut fjall::OwnedWriteBatch,
    index: &SortedIndex,
    key: &str,
    before: Option<Timestamp>,
    now: Option<Timestamp>,
    lowest: &mut Option<Vec<u8>>,
) {
    if before == now {
        return;
    }
    if let Some(b) = before {
        batch.remove(&index.keyspace, index_key(b, key));
    }
    if let Some(n) = now {
        let k = index_key(n, key);
        if lowest.as_ref().is_none_or(|low| k < *low) {
            *lowest = Some(k.clone());
        }
        batch.insert(&index.keyspace, k, []);
    }
}

/// A partition's mark in [`DiskDb`]'s set of open stores, removed when the
/// store is dropped.
struct Claim {
    open: Arc<Mutex<BTreeSet<i32>>>,
    partition: i32,
}

impl Claim {
    fn take(open: &Arc<Mutex<BTreeSet<i32>>>, partition: i32) -> Result<Claim, StoreError> {
        if !lock(open).insert(partition) {
            return Err(StoreError::PartitionOpen(partition));
        }
        Ok(Claim {
            open: open.clone(),
            partition,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.open).remove(&self.partition);
    }
}

impl DiskStore {
    /// Forgets everything of this partition (before a full restore).
    ///
    /// # Errors
    /// The database's error.
    pub fn wipe(&mut self) -> Result<(), fjall::Error> {
        self.states.clear()?;
        self.timers.clear()?;
        self.dismantling.clear()?;
        self.meta.remove(self.meta_key.as_str())?;
        lock(&self.recent).clear();
        self.stats = StoreStats::default();
        self.checkpoint = None;
        Ok(())
    }

    fn read_meta(&mut self) -> Result<(), String> {
        let meta = self
            .meta
            .get(self.meta_key.as_str())
            .map_err(|e| format!("meta record unreadable: {e}"))?;
        let Some(meta) = meta else {
            // Never written: it must be empty.
            return match self.states.first_key_value() {
                None => Ok(()),
                Some(_) => Err("states without a checkpoint".into()),
            };
        };
        let (checkpoint, stats) =
            decode_meta(&meta).ok_or_else(|| "meta record malformed".to_owned())?;
        self.stats = stats;
        self.checkpoint = Some(checkpoint);
        Ok(())
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) {
        let mut failure = lock(&self.failure);
        if failure.is_none() {
            *failure = Some(format!("{what}: {e}"));
            // Never trust this partition's files again: without its meta
            // record the next start clears it and reads the changelog in full.
            let _ = self.meta.remove(self.meta_key.as_str());
        }
    }

    fn read(&self, key: &str) -> Option<CustomerState> {
        let known = lock(&self.recent).get(key);
        let found = match known {
            Some(value) => Ok(value),
            None => self.states.get(key).inspect(|value| {
                lock(&self.recent).put(key.to_owned(), value.clone());
            }),
        };
        match found {
            Ok(None) => None,
            Ok(Some(bytes)) => match CustomerState::from_bytes(&bytes) {
                Ok(state) => Some(state),
                Err(e) => {
                    self.fail("a stored state cannot be read", e);
                    None
                }
            },
            Err(e) => {
                self.fail("the state store cannot be read", e);
                None
            }
        }
    }
}

impl StateStore for DiskStore {
    fn load(&self, key: &str) -> Option<CustomerState> {
        self.read(key)
    }

    fn next_timer(&self, after: Option<&TimerEntry>) -> Option<TimerEntry> {
        self.timers.first_after(after).unwrap_or_else(|e| {
            self.fail("the timer index cannot be read", e);
            None
        })
    }

    fn apply(&mut self, changes: Vec<Change>, checkpoint: Option<Checkpoint>) {
        if lock(&self.failure).is_some() {
            return; // the worker stops; writing on could only make it worse
        }
        let mut batch = self.db.batch();
        // For changes whose previous state is unknown (a restore, where a
        // key may come twice): what this batch wrote for each key already.
        let mut written: foldhash::HashMap<String, Option<Footprint>> =
            foldhash::HashMap::default();
        let (mut lowest_timer, mut lowest_dismantle) = (None, None);
        let mut recent_writes = Vec::with_capacity(changes.len());
        for change in changes {
            let Change {
                key,
                before,
                after,
                encoded,
            } = change;
            let unknown = before == Before::Unknown;
            let before = match before {
                Before::Was(f) => Some(f),
                Before::Absent => None,
                Before::Unknown => match written.remove(&key) {
                    Some(footprint) => footprint,
                    None => self.read(&key).as_ref().map(Footprint::of),
                },
            };
            let now = after.as_ref().map(Footprint::of);
            self.stats.replace(before, now);
            let timer = |f: Option<Footprint>| f.and_then(|f| f.timer);
            let started = |f: Option<Footprint>| f.and_then(|f| f.dismantle).map(|(at, _)| at);
            update_index(
                &mut batch,
                &self.timers,
                &key,
                timer(before),
                timer(now),
                &mut lowest_timer,
            );
            update_index(
                &mut batch,
                &self.dismantling,
                &key,
                started(before),
                started(now),
                &mut lowest_dismantle,
            );
            let value = after
                .as_ref()
                .map(|state| fjall::Slice::from(encoded.unwrap_or_else(|| state.to_bytes())));
            match &value {
                Some(bytes) => batch.insert(&self.states, key.as_str(), bytes.clone()),
                None => batch.remove(&self.states, key.as_str()),
            }
            if unknown {
                written.insert(key.clone(), now);
            }
            recent_writes.push((key, value));
        }
        if let Some(cp) = checkpoint {
            self.checkpoint = Some(cp);
        }
        if let Some(cp) = self.checkpoint {
            batch.insert(
                &self.meta,
                self.meta_key.as_str(),
                encode_meta(cp, &self.stats),
            );
        }
        if let Err(e) = batch.commit() {
            lock(&self.recent).clear();
            self.fail("the state store cannot be written", e);
            return;
        }
        let mut recent = lock(&self.recent);
        for (key, value) in recent_writes {
            recent.put(key, value);
        }
        drop(recent);
        self.timers.inserted(lowest_timer);
        self.dismantling.inserted(lowest_dismantle);
    }

    fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }

    fn oldest_dismantling(&self) -> Option<Timestamp> {
        match self.dismantling.first_after(None) {
            Ok(oldest) => oldest.map(|(started, _)| started),
            Err(e) => {
                self.fail("the dismantling index cannot be read", e);
                None
            }
        }
    }

    fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes the database's files but keeps the directory (it may be a
/// mount point).
fn wipe_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// An index key: the time (sign-flipped big-endian milliseconds, so bytes
/// sort like times), then the customer id.
fn index_key(at: Timestamp, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&((at.millis() as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

fn parse_index_key(k: &[u8]) -> Option<TimerEntry> {
    let (at, key) = k.split_at_checked(8)?;
    let at = u64::from_be_bytes(at.try_into().ok()?) ^ (1 << 63);
    Some((
        Timestamp::from_millis(at as i64),
        std::str::from_utf8(key).ok()?.to_owned(),
    ))
}

/// The meta record's length: checkpoint offset and fingerprint, customers
/// by phase, timers, stalled dismantlings, as 8-byte big-endian words.
const META_LEN: usize = 9 * 8;

fn encode_meta(cp: Checkpoint, stats: &StoreStats) -> Vec<u8> {
    let mut v = Vec::with_capacity(META_LEN);
    v.extend_from_slice(&cp.offset.to_be_bytes());
    v.extend_from_slice(&cp.fingerprint.to_be_bytes());
    for n in stats.by_phase {
        v.extend_from_slice(&n.to_be_bytes());
    }
    v.extend_from_slice(&stats.timers.to_be_bytes());
    v.extend_from_slice(&stats.stalled.to_be_bytes());
    v
}

fn decode_meta(v: &[u8]) -> Option<(Checkpoint, StoreStats)> {
    if v.len() != META_LEN {
        return None;
    }
    let word = |i: usize| -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&v[i * 8..i * 8 + 8]);
        u64::from_be_bytes(b)
    };
    let cp = Checkpoint {
        offset: word(0) as i64,
        fingerprint: word(1),
    };
    let stats = StoreStats {
        by_phase: [word(2), word(3), word(4), word(5), word(6)],
        timers: word(7),
        stalled: word(8),
    };
    Some((cp, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Category;
    use crate::domain::{Dismantle, Phase, Termination, VerticalProgress, VerticalStatus};
    use crate::store::MemoryStore;

    fn pending(effective_ms: i64) -> CustomerState {
        CustomerState {
            phase: Phase::Pending {
                termination: Termination {
                    id: uuid::Uuid::from_u128(effective_ms as u128),
                    category: Category::CustomerRequest,
                    effective_at: Timestamp::from_millis(effective_ms),
                    erasure_requested: false,
                    cause: "e".into(),
                    correlation_id: None,
                    policy_rule: None,
                },
            },
            ..CustomerState::new()
        }
    }

    fn dismantling(started_ms: i64, stalled: bool) -> CustomerState {
        let Phase::Pending { termination } = pending(started_ms).phase else {
            unreachable!("pending() is pending")
        };
        let awaiting = VerticalProgress {
            attempt: 1,
            status: VerticalStatus::Awaiting,
        };
        CustomerState {
            phase: Phase::Dismantling {
                termination,
                dismantle: Dismantle {
                    started_at: Timestamp::from_millis(started_ms),
                    deadline: Timestamp::from_millis(started_ms + 1_000),
                    verticals: [awaiting.clone(), awaiting.clone(), awaiting],
                    stalled,
                },
            },
            ..CustomerState::new()
        }
    }

    fn changes(list: impl IntoIterator<Item = (String, Option<CustomerState>)>) -> Vec<Change> {
        list.into_iter().map(Change::from).collect()
    }

    fn cp(offset: i64) -> Option<Checkpoint> {
        Some(Checkpoint {
            offset,
            fingerprint: offset as u64 * 7,
        })
    }

    fn timers(store: &impl StateStore) -> Vec<TimerEntry> {
        let mut out = Vec::new();
        let mut at = None;
        while let Some(t) = store.next_timer(at.as_ref()) {
            out.push(t.clone());
            at = Some(t);
        }
        out
    }

    #[test]
    fn reads_see_every_write_delete_and_wipe_however_often_the_key_was_read_before() {
        // The store keeps what it last read or wrote in memory; a stale entry
        // would show here as a read that differs from the memory store's.
        let dir = tempfile::tempdir().expect("tempdir");
        let db = DiskDb::open(dir.path(), "cl").expect("open");
        let mut disk = db.partition(1).expect("partition");
        let mut memory = MemoryStore::new();
        let keys: Vec<String> = (0..40).map(|n| format!("C-{n}")).collect();
        // A fixed pseudo-random walk of writes, deletes and reads (an LCG).
        let mut seed: u64 = 7;
        let mut next = |bound: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % bound
        };
        for round in 0..300_i64 {
            let batch: Vec<(String, Option<CustomerState>)> = (0..next(5))
                .map(|_| {
                    let key = keys[next(40) as usize].clone();
                    let state = (next(3) > 0).then(|| pending(round * 10 + next(9) as i64));
                    (key, state)
                })
                .collect();
            // Half the batches name no previous state, as a restore does, and
            // may name a key twice; the others name it once, as the engine does.
            let unknown = round % 2 == 0;
            let mut batch = batch;
            if !unknown {
                let mut seen = std::collections::HashSet::new();
                batch.reverse();
                batch.retain(|(key, _)| seen.insert(key.clone()));
            }
            let to_changes = |batch: Vec<(String, Option<CustomerState>)>,
                              store: &dyn StateStore| {
                batch
                    .into_iter()
                    .map(|(key, after)| {
                        let mut change = Change::from((key.clone(), after));
                        change.before = if unknown {
                            Before::Unknown
                        } else {
                            match store.load(&key) {
                                Some(state) => Before::Was(Footprint::of(&state)),
                                None => Before::Absent,
                            }
                        };
                        change
                    })
                    .collect::<Vec<_>>()
            };
            let for_disk = to_changes(batch.clone(), &disk);
            let for_memory = to_changes(batch, &memory);
            disk.apply(for_disk, cp(round));
            memory.apply(for_memory, None);
            for _ in 0..10 {
                let key = &keys[next(40) as usize];
                assert_eq!(disk.load(key), memory.load(key), "{key} in round {round}");
            }
            assert_eq!(disk.stats(), memory.stats(), "round {round}");
        }
        for key in &keys {
            assert_eq!(disk.load(key), memory.load(key), "{key} at the end");
        }
        disk.wipe().expect("wipe");
        for key in &keys {
            assert_eq!(disk.load(key), None, "{key} after the wipe");
        }
        assert!(disk.failure().is_none());
    }

    #[test]
    fn behaves_like_the_memory_store_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = DiskDb::open(dir.path(), "cl").expect("open");
        let mut disk = db.partition(3).expect("partition");
        let mut memory = MemoryStore::new();
        let batches: Vec<Vec<(String, Option<CustomerState>)>> = vec![
            vec![
                ("a".into(), Some(pending(30))),
                ("b".into(), Some(pending(-10))),
                ("c".into(), Some(CustomerState::new())),
                ("a".into(), Some(pending(20))),
            ],
            vec![("b".into(), None), ("d".into(), Some(pending(20)))],
            vec![("zz".into(), None)],
        ];
        for (i, batch) in batches.into_iter().enumerate() {
            disk.apply(changes(batch.clone()), cp(i as i64));
            memory.apply(changes(batch), None);
            assert_eq!(timers(&disk), timers(&memory));
            assert_eq!(disk.stats(), memory.stats());
        }
        assert_eq!(
            timers(&disk),
            [
                (Timestamp::from_millis(20), "a".to_owned()),
                (Timestamp::from_millis(20), "d".to_owned())
            ]
        );
        assert_eq!(disk.load("b"), None);
        assert_eq!(disk.load("a"), memory.load("a"));
        assert!(disk.failure().is_none());
        drop(disk);
        db.persist();
        drop(db);
        let db = DiskDb::open(dir.path(), "cl").expect("reopen");
        let disk = db.partition(3).expect("partition");
        assert_eq!(disk.checkpoint(), cp(2));
        assert_eq!(disk.stats(), memory.stats());
        assert_eq!(timers(&disk), timers(&memory));
        assert_eq!(disk.load("d"), memory.load("d"));
        let other = db.partition(4).expect("partition");
        assert_eq!(other.checkpoint(), None);
        assert_eq!(other.stats().customers(), 0);
    }

    #[test]
    fn the_dismantling_gauges_come_from_disk_and_match_the_memory_store() {
        // The oldest dismantling and the stalled count are read from the
        // index and the meta record, never from a per-customer map in memory:
        // after reopening, they are there without reading any state.
        let dir = tempfile::tempdir().expect("tempdir");
        let db = DiskDb::open(dir.path(), "cl").expect("open");
        let mut disk = db.partition(0).expect("partition");
        let mut memory = MemoryStore::new();
        let steps: Vec<Vec<(String, Option<CustomerState>)>> = vec![
            // Many dismantlings; the oldest is c0.
            (0..500)
                .map(|i| (format!("c{i:03}"), Some(dismantling(1_000 + i, i % 7 == 0))))
                .collect(),
            // The oldest ones complete (their index entries become tombstones
            // ahead of the head), one stalls, one starts earlier than any.
            (0..200)
                .map(|i| (format!("c{i:03}"), Some(pending(9_000 + i))))
                .chain([
                    ("c300".to_owned(), Some(dismantling(1_300, true))),
                    ("early".to_owned(), Some(dismantling(50, false))),
                ])
                .collect(),
            // The earliest is forgotten; the next oldest is c200.
            vec![("early".into(), None)],
            // Stalled again with the same start: the index entry stays.
            vec![("c201".into(), Some(dismantling(1_201, true)))],
        ];
        let expected_oldest = [1_000, 50, 1_200, 1_200];
        for (i, batch) in steps.into_iter().enumerate() {
            disk.apply(changes(batch.clone()), cp(i as i64));
            memory.apply(changes(batch), None);
            assert_eq!(disk.stats(), memory.stats(), "after step {i}");
            assert_eq!(
                disk.oldest_dismantling(),
                memory.oldest_dismantling(),
                "after step {i}"
            );
            assert_eq!(
                disk.oldest_dismantling(),
                Some(Timestamp::from_millis(expected_oldest[i])),
                "after step {i}"
            );
        }
        let stalled = (200..500).filter(|i| i % 7 == 0 || *i == 300 || *i == 201);
        assert_eq!(memory.stats().stalled, stalled.count() as u64);
        drop(disk);
        db.persist();
        drop(db);
        let db = DiskDb::open(dir.path(), "cl").expect("reopen");
        let mut disk = db.partition(0).expect("partition");
        assert_eq!(disk.stats(), memory.stats());
        assert_eq!(disk.oldest_dismantling(), memory.oldest_dismantling());
        // Every dismantling ends: no oldest, nothing stalled.
        disk.apply(
            changes((200..500).map(|i| (format!("c{i:03}"), None))),
            cp(9),
        );
        assert_eq!(disk.oldest_dismantling(), None);
        assert_eq!(disk.stats().stalled, 0);
        assert_eq!(disk.stats().customers(), 200);
        assert!(disk.failure().is_none());
    }

    #[test]
    fn known_previous_states_give_what_looking_them_up_gives() {
        // The engine hands over what each change replaced (no read back);
        // a restore does not know it. Both must leave the same store,
        // including changes that keep the timer or the dismantling as it was.
        let dir = tempfile::tempdir().expect("tempdir");
        let db = DiskDb::open(dir.path(), "cl").expect("open");
        let (mut looked_up, mut told) =
            (db.partition(0).expect("p0"), db.partition(1).expect("p1"));
        let mut same_timer = pending(20);
        if let Phase::Pending { termination } = &mut same_timer.phase {
            termination.cause = "another cause".into();
        }
        let steps: Vec<(&str, Option<CustomerState>)> = vec![
            ("a", Some(pending(30))),
            ("b", Some(pending(10))),
            ("a", Some(pending(20))),
            ("a", Some(same_timer)),
            ("b", None),
            ("c", Some(CustomerState::new())),
            ("c", Some(pending(5))),
        ];
        let mut committed: foldhash::HashMap<String, CustomerState> = Default::default();
        for (i, (key, after)) in steps.into_iter().enumerate() {
            let before = Before::of(committed.get(key));
            looked_up.apply(changes([(key.to_owned(), after.clone())]), cp(i as i64));
            told.apply(
                vec![Change {
                    before,
                    ..Change::new(key.to_owned(), after.clone())
                }],
                cp(i as i64),
            );
            match after {
                Some(s) => committed.insert(key.to_owned(), s),
                None => committed.remove(key),
            };
            assert_eq!(timers(&told), timers(&looked_up), "after step {i}");
            assert_eq!(told.stats(), looked_up.stats(), "after step {i}");
        }
        for key in ["a", "b", "c"] {
            assert_eq!(told.load(key), looked_up.load(key));
            assert_eq!(told.load(key).as_ref(), committed.get(key));
        }
        assert_eq!(
            timers(&told),
            [
                (Timestamp::from_millis(5), "c".to_owned()),
                (Timestamp::from_millis(20), "a".to_owned())
            ]
        );
    }

    #[test]
    fn a_store_for_another_changelog_or_garbage_is_wiped() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = DiskDb::open(dir.path(), "cl").expect("open");
            let mut p = db.partition(0).expect("partition");
            p.apply(changes(vec![("a".into(), Some(pending(1)))]), cp(5));
            db.persist();
        }
        {
            let db = DiskDb::open(dir.path(), "another").expect("open");
            let p = db.partition(0).expect("partition");
            assert_eq!(
                p.checkpoint(),
                None,
                "another changelog's store is not used"
            );
            assert_eq!(p.load("a"), None);
        }
        // Garbage in place of the database.
        wipe_dir(dir.path()).expect("wipe");
        std::fs::write(dir.path().join("version"), b"not a database").expect("write");
        std::fs::create_dir(dir.path().join("keyspaces")).expect("mkdir");
        std::fs::write(dir.path().join("keyspaces").join("junk"), [0xff; 100]).expect("write");
        let db = DiskDb::open(dir.path(), "cl").expect("a torn directory is rebuilt");
        assert_eq!(db.partition(0).expect("partition").checkpoint(), None);
    }

    #[test]
    fn a_partition_store_is_open_once_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = DiskDb::open(dir.path(), "cl").expect("open");
        let mut first = db.partition(3).expect("partition");
        first.apply(changes(vec![("a".into(), Some(pending(1)))]), cp(7));
        match db.clone().partition(3) {
            Err(StoreError::PartitionOpen(3)) => {}
            other => panic!("expected PartitionOpen(3), got {:?}", other.err()),
        }
        let other = db.partition(4).expect("another partition opens meanwhile");
        drop(first);
        let again = db.partition(3).expect("released when dropped");
        assert_eq!(again.checkpoint(), cp(7));
        assert_eq!(again.load("a"), Some(pending(1)));
        drop(other);
    }

    #[test]
    fn a_second_process_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = DiskDb::open(dir.path(), "cl").expect("open");
        match DiskDb::open(dir.path(), "cl") {
            Err(StoreError::InUse(_)) => {}
            other => panic!("expected InUse, got {:?}", other.err()),
        }
    }

    #[test]
    fn the_head_of_the_timers_skips_what_fired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = DiskDb::open(dir.path(), "cl").expect("open");
        let mut p = db.partition(0).expect("partition");
        let n = 2000;
        p.apply(
            changes((0..n).map(|i| (format!("c{i:05}"), Some(pending(i))))),
            cp(1),
        );
        assert_eq!(p.next_timer(None).map(|t| t.1), Some("c00000".into()));
        p.apply(
            changes((0..n - 1).map(|i| (format!("c{i:05}"), None))),
            cp(2),
        );
        assert_eq!(
            p.next_timer(None).map(|t| t.1),
            Some(format!("c{:05}", n - 1))
        );
        // A new timer earlier than the head is found.
        p.apply(changes(vec![("early".into(), Some(pending(-5)))]), cp(3));
        assert_eq!(p.next_timer(None).map(|t| t.1), Some("early".into()));
        assert_eq!(p.stats().timers, 2);
    }

    #[test]
    fn timer_keys_sort_like_times() {
        let times = [i64::MIN / 4, -1, 0, 1, 1_790_000_000_000];
        let keys: Vec<Vec<u8>> = times
            .iter()
            .map(|t| index_key(Timestamp::from_millis(*t), "k"))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for (t, k) in times.iter().zip(&keys) {
            assert_eq!(
                parse_index_key(k),
                Some((Timestamp::from_millis(*t), "k".into()))
            );
        }
    }
}
