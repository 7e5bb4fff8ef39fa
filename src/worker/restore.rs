//! Restoring owned partitions' state from the compacted changelog.
//!
//! A restore reads each changelog partition (`read_committed`) up to the high
//! watermark captured when it starts. Under `read_committed` the end of a
//! partition is its last stable offset, which lags while a transaction is
//! open: right after a handover the previous owner's last committed batch may
//! not be readable yet while the group's offsets already point past it.
//! Stopping at the first end-of-partition would miss it; waiting for the
//! position to reach the captured high watermark cannot.
//!
//! With the disk store, a partition's store already holds the changelog up
//! to its checkpoint: the read starts there and first checks that the record
//! at that offset is the one the store saw. A store that does not match (a
//! recreated changelog, a log start moved past the checkpoint, a checkpoint
//! record compacted away) is cleared and the partition read in full.

use super::WorkerError;
use super::options::{StoreKind, WorkerOptions};
use crate::domain::{CustomerState, StateDecodeError, state_codec};
use crate::engine::{Engine, Partitions};
use crate::store::{
    Change, Checkpoint, DiskDb, MemoryStore, PartitionStore, StateStore, StoreError,
    record_fingerprint,
};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// The restore consumer's context: reaching a partition's end is how a restore
/// finishes, not an error worth a log line.
pub struct RestoreContext;

impl ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(rdkafka::error::RDKafkaErrorCode::PartitionEOF) {
            warn!(error = %error, reason, "changelog restore consumer error");
        }
    }
}

impl ConsumerContext for RestoreContext {}

/// What a restore read.
pub struct Restored {
    pub engines: Partitions,
    /// Records read during this call.
    pub records: u64,
    /// When this call ended a round (nothing left under way): its length
    /// and the records it read in all.
    pub round_ended: Option<(Duration, u64)>,
}

/// Where restored partitions' state goes: a fresh map each time, or the
/// instance's disk database, whose partitions keep their state and
/// checkpoint across revocations and restarts.
#[derive(Clone)]
pub enum Stores {
    Memory,
    Disk(DiskDb),
}

impl Stores {
    /// # Errors
    /// [`WorkerError::Store`] when the disk database cannot be used.
    pub fn open(opts: &WorkerOptions) -> Result<Stores, WorkerError> {
        match opts.state_store {
            StoreKind::Memory => Ok(Stores::Memory),
            StoreKind::Disk => {
                let db = DiskDb::open(&opts.state_dir, &opts.topics.changelog)?;
                info!(dir = %db.dir().display(), "state store opened");
                Ok(Stores::Disk(db))
            }
        }
    }

    fn partition(&self, partition: i32) -> Result<PartitionStore, WorkerError> {
        Ok(match self {
            Stores::Memory => PartitionStore::Memory(MemoryStore::new()),
            Stores::Disk(db) => PartitionStore::Disk(db.partition(partition)?),
        })
    }

    /// Makes what the stores hold durable, at a clean shutdown.
    pub fn persist(&self) {
        if let Stores::Disk(db) = self {
            db.persist();
        }
    }
}

/// Told, as a restore reads, the offsets each partition has left to read
/// (an empty slice when it is over).
pub type Progress<'a> = dyn FnMut(&[(i32, i64)]) + 'a;

/// Changelog records applied to a store per write batch.
const RESTORE_BATCH: usize = 5000;
/// The largest fetch of one changelog partition (librdkafka's default is
/// 1 MiB): a restore is a bulk read.
const RESTORE_FETCH_BYTES: u64 = 8 * 1024 * 1024;

/// One partition's restore under way.
struct Plan {
    /// The high watermark when the restore started: read up to here.
    target: i64,
    /// When the restore timeout runs out.
    deadline: Instant,
    /// The next record to read (where a reassignment resumes).
    next: Offset,
    /// The store's checkpoint, to be found as the first record read; any
    /// other record means the changelog is not the one the store holds.
    verify: Option<Checkpoint>,
    pending: Vec<Change>,
    /// Hand the disk store each record's bytes, which it writes as they are
    /// when they are a binary state record (the memory store has no use for them).
    keep_bytes: bool,
    /// The last record added to `pending`: its offset, key and value.
    last_offset: i64,
    last_key: Vec<u8>,
    last_value: Vec<u8>,
    last_tombstone: bool,
}

/// Partitions being restored, read a slice at a time between polls of the
/// input.
#[derive(Default)]
struct Job {
    plans: BTreeMap<i32, Plan>,
    /// Every partition under way, with the state restored so far.
    engines: Partitions,
    /// Restored, not yet handed over.
    done: Vec<i32>,
    round: Round,
    last_check: Option<Instant>,
    last_error: Option<Instant>,
    turns: u32,
}

/// What one stretch of restoring, from idle to idle, read: logged once at its
/// end so that a rebalance gives one line, however the partitions finish.
#[derive(Default)]
struct Round {
    started: Option<Instant>,
    partitions: Vec<i32>,
    from_checkpoint: Vec<i32>,
    records: u64,
    /// Records read since `advance` last returned.
    unreported: u64,
    customers: usize,
}

pub struct Restorer {
    opts: Arc<WorkerOptions>,
    stores: Stores,
    /// read_committed: what it returns is committed state.
    consumer: BaseConsumer<RestoreContext>,
    /// read_uncommitted: its ListOffsets answers the true high watermark
    /// (a read_committed client is answered the last stable offset).
    probe: BaseConsumer<RestoreContext>,
    job: Job,
    /// Reading for a warm-up before the group is joined: its rounds are not
    /// restores of owned partitions, and are not logged as such.
    warming: bool,
}

/// The restore consumer's configuration, for a changelog of `partitions`
/// partitions: it may be asked to read every one of them at once.
fn restore_consumer_config(opts: &WorkerOptions, partitions: i32) -> rdkafka::ClientConfig {
    let mut config = opts.kafka.client_config();
    config
        .set("group.id", format!("{}-restore", opts.group_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        // Restore reads to the end and stops: don't let the broker hold
        // an empty fetch for the default 500 ms.
        .set("fetch.wait.max.ms", "10")
        .set("auto.offset.reset", "earliest");
    // Big fetches, a restore being a bulk read, within its share of the
    // prefetch budget.
    crate::kafka::Prefetch::within(
        opts.restore_prefetch_budget(),
        usize::try_from(partitions).unwrap_or(1),
        RESTORE_FETCH_BYTES,
    )
    .set_unless_given(&mut config);
    config
}

impl Restorer {
    /// # Errors
    /// [`WorkerError::Client`] when a consumer cannot be created.
    pub fn new(
        opts: Arc<WorkerOptions>,
        stores: Stores,
        partitions: i32,
    ) -> Result<Self, WorkerError> {
        let consumer = restore_consumer_config(&opts, partitions)
            .create_with_context(RestoreContext)
            .map_err(|source| WorkerError::Client {
                role: "changelog restore consumer",
                source,
            })?;
        // No group: it only asks for watermarks, and a group id would need
        // an ACL of its own.
        let mut config = opts.kafka.client_config();
        config
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_uncommitted");
        let probe = config
            .create_with_context(RestoreContext)
            .map_err(|source| WorkerError::Client {
                role: "changelog watermark probe",
                source,
            })?;
        Ok(Restorer {
            opts,
            stores,
            consumer,
            probe,
            job: Job::default(),
            warming: false,
        })
    }

    /// A restorer for [`warm_up`](super::warm_up): each pass it logs is a
    /// warm-up pass, not a restore round.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn for_warm_up(
        opts: Arc<WorkerOptions>,
        stores: Stores,
        partitions: i32,
    ) -> Result<Self, WorkerError> {
        Ok(Restorer {
            warming: true,
            ..Restorer::new(opts, stores, partitions)?
        })
    }

    /// Opens `partition`'s store. The tasks of a process share one disk
    /// database, whose partition stores open once at a time; a partition that
    /// moved between tasks is taken once the task that had it let it go.
    /// Both eager and KIP-848 rebalancing revoke a partition before they
    /// assign it elsewhere, so the wait is normally none: it covers a task
    /// whose assignment was lost while it still held the partition, in its
    /// pipeline or in a restore under way.
    fn open_store(&self, partition: i32, deadline: Instant) -> Result<PartitionStore, WorkerError> {
        let mut warned = false;
        loop {
            match self.stores.partition(partition) {
                Err(WorkerError::Store(StoreError::PartitionOpen(_))) => {}
                opened => return opened,
            }
            if Instant::now() > deadline {
                return Err(WorkerError::Restore {
                    partition,
                    reason: "another processing task of this instance still holds the partition"
                        .into(),
                });
            }
            if !warned {
                warn!(
                    partition,
                    "partition still held by another processing task; waiting for it to let go"
                );
                warned = true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether no restore is under way.
    pub fn is_idle(&self) -> bool {
        self.job.engines.is_empty()
    }

    /// Partitions whose restore is under way (their input stays paused).
    pub fn restoring(&self) -> Vec<i32> {
        self.job.engines.keys().copied().collect()
    }

    /// Starts restoring `partitions` (those not under way already): from the
    /// store's checkpoint when it has one that the changelog still holds,
    /// from the beginning otherwise. [`advance`](Self::advance) reads them.
    ///
    /// # Errors
    /// [`WorkerError::Restore`] when the changelog's watermarks cannot be
    /// read within the restore timeout; `Store` when the disk store cannot be
    /// used.
    pub fn add(&mut self, partitions: &[i32]) -> Result<(), WorkerError> {
        let now = Instant::now();
        let deadline = now + self.opts.restore_timeout;
        let restore_error =
            |partition: i32, reason: String| WorkerError::Restore { partition, reason };
        let policy = Arc::new(self.opts.policy.clone());
        let mut reading = false;
        for p in partitions {
            if self.job.engines.contains_key(p) {
                continue;
            }
            let (low, high) = self.watermarks(*p, deadline)?;
            let mut store = self.open_store(*p, deadline)?;
            let checkpoint = store.checkpoint();
            let verify = match checkpoint {
                Some(cp) if cp.offset >= low && cp.offset < high => Some(cp),
                Some(cp) => {
                    let reason = if cp.offset < low {
                        "the changelog's log start moved past the store's checkpoint"
                    } else {
                        "the changelog ends before the store's checkpoint (recreated?)"
                    };
                    warn!(
                        partition = *p,
                        checkpoint = cp.offset,
                        low,
                        high,
                        reason,
                        "partition store cleared; restoring from the changelog in full"
                    );
                    store.wipe().map_err(|e| restore_error(*p, e))?;
                    None
                }
                None => None,
            };
            self.job
                .engines
                .insert(*p, Engine::with_store(policy.clone(), store));
            self.job.round.started.get_or_insert(now);
            // Nothing left to read (empty, or everything deleted): done.
            if high <= low {
                self.job.done.push(*p);
                continue;
            }
            let start = match verify {
                Some(cp) => {
                    self.job.round.from_checkpoint.push(*p);
                    Offset::Offset(cp.offset)
                }
                None => Offset::Beginning,
            };
            self.job.plans.insert(
                *p,
                Plan {
                    target: high,
                    deadline,
                    next: start,
                    verify,
                    pending: Vec::new(),
                    keep_bytes: matches!(self.stores, Stores::Disk(_)),
                    last_offset: -1,
                    last_key: Vec::new(),
                    last_value: Vec::new(),
                    last_tombstone: false,
                },
            );
            reading = true;
        }
        if reading {
            self.reassign()?;
        }
        Ok(())
    }

    /// Stops restoring partitions that were taken away.
    pub fn drop_partitions(&mut self, gone: &[i32]) {
        let mut reading = false;
        for p in gone {
            self.job.engines.remove(p);
            self.job.done.retain(|d| d != p);
            reading |= self.job.plans.remove(p).is_some();
        }
        if reading && let Err(e) = self.reassign() {
            warn!(error = %e, "restore consumer not reassigned after a revocation");
        }
        if self.job.engines.is_empty() {
            self.job.round = Round::default();
        }
    }

    /// Points the restore consumer at the partitions still being read, each
    /// at its next record.
    fn reassign(&self) -> Result<(), WorkerError> {
        let changelog = &self.opts.topics.changelog;
        if self.job.plans.is_empty() {
            let _ = self.consumer.unassign();
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (p, plan) in &self.job.plans {
            tpl.add_partition_offset(changelog, *p, plan.next)
                .map_err(|e| WorkerError::Restore {
                    partition: *p,
                    reason: e.to_string(),
                })?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| WorkerError::Restore {
                partition: self.job.plans.keys().next().copied().unwrap_or(0),
                reason: format!("cannot assign the changelog to the restore consumer: {e}"),
            })
    }

    /// Reads the changelog for about `budget` and returns the partitions whose
    /// restore is complete, ready to process. The loop calls it between polls
    /// of the input, so a long restore holds up neither the partitions
    /// already owned nor the consumer's poll interval.
    ///
    /// # Errors
    /// [`WorkerError::Restore`] when a partition's changelog cannot be read to
    /// its target within the restore timeout; `Fatal` for a state record
    /// written by a newer release.
    pub fn advance(
        &mut self,
        budget: Duration,
        progress: &mut Progress<'_>,
    ) -> Result<Restored, WorkerError> {
        let mut job = std::mem::take(&mut self.job);
        let read = self.read_for(&mut job, budget, progress);
        self.job = job;
        read?;
        let mut done = Restored {
            engines: Partitions::new(),
            records: 0,
            round_ended: None,
        };
        for p in std::mem::take(&mut self.job.done) {
            if let Some(engine) = self.job.engines.remove(&p) {
                self.job.round.customers += engine.len();
                self.job.round.partitions.push(p);
                done.engines.insert(p, engine);
            }
        }
        done.records = std::mem::take(&mut self.job.round.unreported);
        if self.job.engines.is_empty() {
            progress(&[]);
            let round = std::mem::take(&mut self.job.round);
            let _ = self.consumer.unassign();
            let took = round.started.map_or(Duration::ZERO, |t| t.elapsed());
            if self.warming {
                debug!(
                    partitions = ?round.partitions,
                    from_checkpoint = ?round.from_checkpoint,
                    records = round.records,
                    millis = took.as_millis() as u64,
                    "warm-up pass read the changelog"
                );
            } else if !round.partitions.is_empty() {
                info!(
                    partitions = ?round.partitions,
                    from_checkpoint = ?round.from_checkpoint,
                    records = round.records,
                    customers = round.customers,
                    millis = took.as_millis() as u64,
                    "partitions restored from the changelog"
                );
            }
            done.round_ended = Some((took, round.records));
        } else if !done.engines.is_empty() {
            debug!(partitions = ?done.engines.keys().collect::<Vec<_>>(), "partitions restored; others still restoring");
        }
        Ok(done)
    }

    fn watermarks(&self, p: i32, deadline: Instant) -> Result<(i64, i64), WorkerError> {
        let changelog = &self.opts.topics.changelog;
        loop {
            match self
                .probe
                .fetch_watermarks(changelog, p, Duration::from_secs(5))
            {
                Ok(marks) => return Ok(marks),
                Err(e) => {
                    if let Some(reason) = crate::kafka::preflight::authorization_failure(&e) {
                        return Err(WorkerError::Restore {
                            partition: p,
                            reason,
                        });
                    }
                    if Instant::now() > deadline {
                        return Err(WorkerError::Restore {
                            partition: p,
                            reason: format!("cannot read the changelog's high watermark: {e}"),
                        });
                    }
                    warn!(partition = p, error = %e, "changelog watermark unavailable; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }

    /// The store does not match the changelog after all: clear it and read
    /// the partition from the beginning.
    fn start_over(
        &self,
        engines: &mut Partitions,
        plan: &mut Plan,
        partition: i32,
        reason: &str,
    ) -> Result<(), WorkerError> {
        warn!(
            partition,
            reason, "partition store cleared; restoring from the changelog in full"
        );
        if let Some(engine) = engines.get_mut(&partition) {
            engine
                .store_mut()
                .wipe()
                .map_err(|reason| WorkerError::Restore { partition, reason })?;
        }
        plan.verify = None;
        plan.pending.clear();
        plan.next = Offset::Beginning;
        seek(
            &self.consumer,
            &self.opts.topics.changelog,
            partition,
            Offset::Beginning,
        )
    }

    fn flush(engines: &mut Partitions, partition: i32, plan: &mut Plan) {
        if plan.pending.is_empty() {
            return;
        }
        let checkpoint = Checkpoint {
            offset: plan.last_offset,
            fingerprint: record_fingerprint(
                Some(&plan.last_key),
                (!plan.last_tombstone).then_some(plan.last_value.as_slice()),
            ),
        };
        if let Some(engine) = engines.get_mut(&partition) {
            engine.restore_batch(std::mem::take(&mut plan.pending), Some(checkpoint));
        }
    }

    fn read_for(
        &self,
        job: &mut Job,
        budget: Duration,
        progress: &mut Progress<'_>,
    ) -> Result<(), WorkerError> {
        let changelog = &self.opts.topics.changelog;
        let until = Instant::now() + budget;
        while !job.plans.is_empty() {
            job.turns = job.turns.wrapping_add(1);
            // The clock is read every 256 records: per record it cost 5 %.
            let clock_turn = job.turns.is_multiple_of(256);
            let mut check = false;
            if clock_turn {
                let now = Instant::now();
                if let Some((p, plan)) = job.plans.iter().find(|(_, plan)| now > plan.deadline) {
                    return Err(WorkerError::Restore {
                        partition: *p,
                        reason: format!(
                            "changelog {changelog} not read up to offset {} within {}",
                            plan.target,
                            humantime::format_duration(self.opts.restore_timeout)
                        ),
                    });
                }
                check = job
                    .last_check
                    .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(200));
                if now >= until {
                    check = true;
                }
            }
            // A short wait, so that a slice ends on time without reading the
            // clock per record; while records flow the poll does not wait.
            match self.consumer.poll(Duration::from_millis(10)) {
                Some(Ok(msg)) => {
                    use rdkafka::message::Message;
                    let partition = msg.partition();
                    let Some(plan) = job.plans.get_mut(&partition) else {
                        continue;
                    };
                    plan.next = Offset::Offset(msg.offset() + 1);
                    if msg.offset() + 1 >= plan.target {
                        check = true;
                    }
                    if let Some(expected) = plan.verify.take() {
                        let mark = Checkpoint {
                            offset: msg.offset(),
                            fingerprint: record_fingerprint(msg.key(), msg.payload()),
                        };
                        if mark == expected {
                            continue; // the store holds it already
                        }
                        self.start_over(
                            &mut job.engines,
                            plan,
                            partition,
                            "the changelog record at the store's checkpoint is not the one the store saw (recreated topic, or the record was compacted away)",
                        )?;
                        continue;
                    }
                    let Some(key) = msg.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                        warn!(
                            partition,
                            offset = msg.offset(),
                            "changelog record without a UTF-8 key skipped"
                        );
                        continue;
                    };
                    let state = match msg.payload() {
                        None => None,
                        Some(bytes) => match CustomerState::from_bytes(bytes) {
                            Ok(s) => Some(s),
                            Err(e @ StateDecodeError::TooNew(_)) => {
                                return Err(WorkerError::Fatal(e.to_string()));
                            }
                            Err(e) => {
                                error!(partition, offset = msg.offset(), error = %e, "unreadable changelog record skipped");
                                continue;
                            }
                        },
                    };
                    let encoded = msg
                        .payload()
                        .filter(|b| plan.keep_bytes && state_codec::is_binary(b))
                        .map(<[u8]>::to_vec);
                    plan.pending.push(Change {
                        encoded,
                        ..Change::new(key.to_owned(), state)
                    });
                    // The checkpoint of the batch so far; its fingerprint is
                    // taken when the batch is written (hashing every record
                    // cost more than keeping the last one's bytes).
                    plan.last_offset = msg.offset();
                    plan.last_key.clear();
                    plan.last_key
                        .extend_from_slice(msg.key().unwrap_or_default());
                    plan.last_value.clear();
                    plan.last_value
                        .extend_from_slice(msg.payload().unwrap_or_default());
                    plan.last_tombstone = msg.payload().is_none();
                    job.round.records += 1;
                    job.round.unreported += 1;
                    if plan.pending.len() >= RESTORE_BATCH {
                        Self::flush(&mut job.engines, partition, plan);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    check = true;
                    job.turns = 255; // read the clock on the next turn
                }
                Some(Err(e)) => {
                    job.turns = 255;
                    if let Some(reason) = crate::kafka::preflight::authorization_failure(&e) {
                        let p = job.plans.keys().next().copied().unwrap_or(0);
                        return Err(WorkerError::Restore {
                            partition: p,
                            reason,
                        });
                    }
                    // Brokers down: librdkafka reconnects. Errors queued during
                    // an outage arrive in a burst; pause once per burst, not
                    // per error (a soak run spent 65 s draining them).
                    if job
                        .last_error
                        .is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(1))
                    {
                        warn!(error = %e, "changelog read error during restore; retrying");
                        job.last_error = Some(Instant::now());
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                None => {
                    check = true;
                    job.turns = 255;
                }
            }
            if check {
                job.last_check = Some(Instant::now());
                self.settle(job, progress)?;
            }
            if check && Instant::now() >= until {
                break;
            }
        }
        Ok(())
    }

    /// Reports what is left to read, and completes the partitions whose
    /// position reached their target. The position moves past transaction
    /// markers and aborted records too, so it reaches the high watermark
    /// once every transaction below it is settled.
    fn settle(&self, job: &mut Job, progress: &mut Progress<'_>) -> Result<(), WorkerError> {
        let Ok(positions) = self.consumer.position() else {
            return Ok(());
        };
        let left: Vec<(i32, i64)> = positions
            .elements()
            .iter()
            .filter_map(|e| {
                let plan = job.plans.get(&e.partition())?;
                let at = match e.offset() {
                    Offset::Offset(at) => at,
                    _ => 0,
                };
                Some((e.partition(), (plan.target - at).max(0)))
            })
            .collect();
        progress(&left);
        for e in positions.elements() {
            let p = e.partition();
            let Offset::Offset(at) = e.offset() else {
                continue;
            };
            let Some(plan) = job.plans.get_mut(&p) else {
                continue;
            };
            if at < plan.target {
                continue;
            }
            if plan.verify.is_some() {
                self.start_over(
                    &mut job.engines,
                    plan,
                    p,
                    "the changelog holds no record at the store's checkpoint",
                )?;
                continue;
            }
            Self::flush(&mut job.engines, p, plan);
            job.plans.remove(&p);
            job.done.push(p);
        }
        Ok(())
    }
}

/// Seeks the restore consumer; a failure ends this restore (it is retried).
fn seek(
    consumer: &BaseConsumer<RestoreContext>,
    topic: &str,
    partition: i32,
    to: Offset,
) -> Result<(), WorkerError> {
    consumer
        .seek(topic, partition, to, Duration::from_secs(10))
        .map_err(|e| WorkerError::Restore {
            partition,
            reason: format!("cannot rewind the changelog to read it in full: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::KafkaSettings;

    fn restorer(db: &DiskDb) -> Restorer {
        let mut opts = WorkerOptions::new(KafkaSettings::default());
        opts.state_store = StoreKind::Disk;
        // The clients are created, never used: nothing connects.
        Restorer::new(Arc::new(opts), Stores::Disk(db.clone()), 6).expect("restorer")
    }

    fn restore_config(properties: &[(&str, &str)], partitions: i32) -> rdkafka::ClientConfig {
        let kafka = KafkaSettings {
            bootstrap_servers: "localhost:9".into(),
            properties: properties
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        restore_consumer_config(&WorkerOptions::new(kafka), partitions)
    }

    fn prefetched(config: &rdkafka::ClientConfig, partitions: u64) -> u64 {
        let number = |key| -> u64 {
            config
                .get(key)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{key} is not set"))
        };
        (number("queued.max.messages.kbytes") * 1024 + number("max.partition.fetch.bytes"))
            * partitions
    }

    #[test]
    fn the_restore_prefetch_stays_within_its_budget_whatever_the_partition_count() {
        let budget = WorkerOptions::new(KafkaSettings::default()).restore_prefetch_budget();
        for partitions in [1, 6, 24, 96] {
            let config = restore_config(&[], partitions);
            let held = prefetched(&config, partitions as u64);
            assert!(
                held <= budget && held >= budget * 9 / 10,
                "{partitions} partitions may prefetch {held} bytes against a budget of {budget}"
            );
        }
        // Few partitions: big fetches, a restore being a bulk read.
        let one = restore_config(&[], 1);
        assert_eq!(one.get("max.partition.fetch.bytes"), Some("8388608"));
        // A full queue is fetched again soon, not after librdkafka's 1 s.
        assert_eq!(
            one.get("fetch.queue.backoff.ms"),
            Some(crate::kafka::FETCH_QUEUE_BACKOFF_MS)
        );
    }

    #[test]
    fn an_operators_prefetch_settings_are_kept_for_the_restore() {
        let config = restore_config(
            &[
                ("queued.max.messages.kbytes", "4096"),
                ("max.partition.fetch.bytes", "1048576"),
            ],
            24,
        );
        assert_eq!(config.get("queued.max.messages.kbytes"), Some("4096"));
        assert_eq!(config.get("max.partition.fetch.bytes"), Some("1048576"));
        let backoff = restore_config(&[("fetch.queue.backoff.ms", "500")], 24);
        assert_eq!(backoff.get("fetch.queue.backoff.ms"), Some("500"));
    }

    #[test]
    fn a_partition_held_by_another_task_is_opened_once_it_is_let_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = DiskDb::open(dir.path(), "cl").expect("open");
        let restorer = restorer(&db);
        // Another task's restore, or pipeline, holds partition 2's store.
        let held = db.partition(2).expect("partition");
        let short = Instant::now() + Duration::from_millis(100);
        match restorer.open_store(2, short) {
            Err(WorkerError::Restore { partition: 2, .. }) => {}
            other => panic!("expected a restore error while held, got {:?}", other.err()),
        }
        let letting_go = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            drop(held);
        });
        let started = Instant::now();
        restorer
            .open_store(2, Instant::now() + Duration::from_secs(10))
            .expect("opened once released");
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "opened while the other store was still open"
        );
        letting_go.join().expect("thread");
    }
}
