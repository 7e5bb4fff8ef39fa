//! The batch: one Kafka transaction holding the outputs, dead letters,
//! changelog records and consumed offsets of the records handled since the
//! last commit — and what to do when any part of it fails.

use super::WorkerError;
use super::options::WorkerOptions;
use super::pipeline::{Pipeline, PipelineError};
use super::records::{InputRecord, Kind, Outgoing};
use super::restore::Restorer;
use super::resume_check::{self, ResumeChecks, Resumed};
use super::transaction::{SendError, Transactions, TxnState};
use crate::contract::DeadLetterReason;
use crate::kafka;
use crate::telemetry::{Metrics, Status};
use crate::time::Timestamp;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, info_span, warn};

/// Customers' timers fired per call, so that the batch limits are checked
/// between chunks of a burst.
const TIMER_CHUNK: usize = 100;

/// How long a poll waits for more input before the batch counts as drained.
const DRAIN_PROBE: Duration = Duration::from_millis(1);

/// What the open batch holds so far.
#[derive(Default)]
struct Batch {
    started: Option<Instant>,
    inputs: usize,
    /// Records written so far: outputs and dead letters (changelog records
    /// are counted by the pipeline until the commit writes them).
    written: usize,
    bytes: usize,
    outputs: usize,
    timer_customers: usize,
    /// (topic, partition) → (first offset consumed, next offset to commit),
    /// in the order first seen: a handful of entries, searched without
    /// allocating a key per record.
    consumed: Vec<((String, i32), (i64, i64))>,
    /// Kafka timestamps (ms) of the consumed records, for the latency histogram.
    timestamps: Vec<i64>,
    /// Dead letters, logged once committed: (topic, partition, offset, reason).
    dead_letters: Vec<(String, i32, i64, DeadLetterReason)>,
}

impl Batch {
    fn register(&mut self, input: &InputRecord<'_>) {
        self.started.get_or_insert_with(Instant::now);
        self.inputs += 1;
        if let Some(ts) = input.timestamp_ms {
            self.timestamps.push(ts);
        }
        match self
            .consumed
            .iter_mut()
            .find(|((t, p), _)| *p == input.partition && t == input.topic)
        {
            Some((_, range)) => range.1 = input.offset + 1,
            None => self.consumed.push((
                (input.topic.to_owned(), input.partition),
                (input.offset, input.offset + 1),
            )),
        }
    }

    /// Where the batch started, for "the same batch aborted again".
    fn origin(&self) -> String {
        self.consumed
            .iter()
            .map(|((t, p), (first, _))| format!("{t}[{p}]@{first}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Counters the worker keeps, for tests and logs.
#[derive(Default, Debug, Clone)]
pub struct Counters {
    pub consumed: u64,
    pub produced: u64,
    pub dead_letters: u64,
    pub commits: u64,
    pub aborts: u64,
    pub restored_records: u64,
}

pub struct Processor {
    opts: Arc<WorkerOptions>,
    txn: Transactions,
    restorer: Restorer,
    pipeline: Pipeline,
    batch: Batch,
    /// Next offsets committed by the last successful transaction (or read
    /// from the group), per input partition.
    committed: HashMap<(String, i32), i64>,
    /// An error raised inside a rebalance callback, for the loop to act on.
    pub fatal: Option<WorkerError>,
    pub counters: Counters,
    /// Rebalance callbacks seen, so the loop can re-apply a pause.
    pub rebalances: u64,
    /// When the assignment was lost, until the next assignment arrives.
    pub lost_since: Option<Instant>,
    /// Set once an error ended the loop: nothing may be committed any more,
    /// not even by the revoke callback that closing the consumer runs.
    poisoned: bool,
    /// The batch origin that aborted last and how often in a row.
    abort_streak: (String, u32),
    /// Partition count of the inputs and changelog at start.
    partitions: i32,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
    /// Restored partitions whose input is still paused.
    to_resume: Vec<i32>,
    /// When to try again to resume restored partitions the broker could
    /// not position.
    resume_retry: Option<Instant>,
    /// An incremental rebalance paused and resumed the kept partitions'
    /// fetchers without starting any new one (see [`Self::wake_fetchers`]).
    fetchers_idle: bool,
    /// Resumed input partitions to check for a fetch (see [`resume_check`]).
    resume_checks: ResumeChecks,
}

impl Processor {
    pub fn new(
        opts: Arc<WorkerOptions>,
        txn: Transactions,
        restorer: Restorer,
        pipeline: Pipeline,
        partitions: i32,
        metrics: Arc<Metrics>,
        status: Arc<Status>,
    ) -> Self {
        Processor {
            opts,
            txn,
            restorer,
            pipeline,
            batch: Batch::default(),
            committed: HashMap::new(),
            fatal: None,
            counters: Counters::default(),
            rebalances: 0,
            lost_since: None,
            poisoned: false,
            abort_streak: (String::new(), 0),
            partitions,
            metrics,
            status,
            to_resume: Vec::new(),
            resume_retry: None,
            fetchers_idle: false,
            resume_checks: ResumeChecks::default(),
        }
    }

    /// Whether the open batch should be committed now; `drained`: the last
    /// poll found no input waiting.
    pub fn commit_due(&self, drained: bool) -> bool {
        let Some(started) = self.batch.started else {
            return false;
        };
        let b = &self.batch;
        let age = started.elapsed();
        b.inputs >= self.opts.batch_size
            || b.written + self.pipeline.changed() >= self.opts.max_transaction_records
            || b.bytes >= self.opts.max_transaction_bytes
            || b.timer_customers >= self.opts.timers_per_transaction
            || age >= self.opts.commit_interval
            // Nothing is waiting: a longer batch would only add latency.
            || (drained && age >= self.opts.min_commit_interval)
    }

    /// How long the loop may block in poll without delaying a commit.
    pub fn poll_timeout(&self) -> Duration {
        let cap = Duration::from_millis(100);
        match self.batch.started {
            Some(t) => {
                let age = t.elapsed();
                let until_max = self.opts.commit_interval.saturating_sub(age);
                // Until the batch may commit early, wait for input; after
                // that, a short poll tells whether the input is drained.
                let until_min = self.opts.min_commit_interval.saturating_sub(age);
                let wait = if until_min.is_zero() {
                    DRAIN_PROBE
                } else {
                    until_min
                };
                until_max.min(wait).min(cap)
            }
            None => cap,
        }
    }

    /// Handles one input record inside the open transaction.
    ///
    /// # Errors
    /// Whatever failed; [`recover`](Self::recover) decides what follows.
    pub fn process(
        &mut self,
        msg: &BorrowedMessage<'_>,
        now: Timestamp,
    ) -> Result<(), WorkerError> {
        let input = input_record(msg);
        // Registered before anything can fail, so that a failed begin
        // rewinds to this record instead of skipping it.
        self.batch.register(&input);
        self.counters.consumed += 1;
        self.txn.begin()?;
        if !self.pipeline.owns(input.partition) {
            // Assignment restores before fetching starts; this is a safety net.
            warn!(
                partition = input.partition,
                "record for a partition without restored state; restoring now"
            );
            self.restore(&[input.partition])?;
        }
        let handled = self.pipeline.handle(&input, now).map_err(from_pipeline)?;
        if let Some(reason) = handled.dead_letter {
            self.batch.dead_letters.push((
                input.topic.to_owned(),
                input.partition,
                input.offset,
                reason,
            ));
        }
        self.write(handled.outgoing)
    }

    /// Fires due timers, a bounded number of customers per transaction.
    /// Returns whether more are due than this call fired.
    ///
    /// # Errors
    /// As [`process`](Self::process).
    pub fn fire_timers(&mut self, now: Timestamp) -> Result<bool, WorkerError> {
        let budget = self
            .opts
            .timers_per_transaction
            .saturating_sub(self.batch.timer_customers)
            .min(TIMER_CHUNK);
        if budget == 0 {
            return Ok(true);
        }
        if !self.pipeline.timers_due(now) {
            return Ok(false);
        }
        self.txn.begin()?;
        self.batch.started.get_or_insert_with(Instant::now);
        let fired = self
            .pipeline
            .fire_timers(now, budget)
            .map_err(from_pipeline)?;
        self.batch.timer_customers += fired.customers;
        self.write(fired.outgoing)?;
        Ok(fired.more_due)
    }

    fn write(&mut self, records: Vec<Outgoing>) -> Result<(), WorkerError> {
        for record in records {
            let size = record.size();
            match self.txn.send(&record) {
                Ok(()) => {}
                Err(SendError::TooLarge) if matches!(record.kind, Kind::DeadLetter { .. }) => {
                    // Shrunk to the configured limit already; the producer's
                    // own limit is smaller: go without value and headers.
                    let bare = Outgoing {
                        value: None,
                        headers: record
                            .headers
                            .iter()
                            .filter(|(k, _)| {
                                k.starts_with("__connect.errors.") || k.starts_with("terminus.dlq.")
                            })
                            .cloned()
                            .chain([super::records::fixed(
                                super::records::VALUE_DROPPED,
                                b"true",
                            )])
                            .collect(),
                        ..record
                    };
                    self.txn
                        .send(&bare)
                        .map_err(|e| send_error(e, "a dead letter without its value"))?;
                }
                Err(e) => return Err(send_error(e, "a record")),
            }
            self.batch.written += 1;
            self.batch.bytes += size;
            match record.kind {
                Kind::Output { .. } => {
                    self.batch.outputs += 1;
                    self.counters.produced += 1;
                }
                Kind::DeadLetter { .. } => self.counters.dead_letters += 1,
                Kind::Changelog => {}
            }
        }
        Ok(())
    }

    /// Commits the open batch: changelog records of every changed customer,
    /// the consumed offsets (or, for a batch of timers only, the owned
    /// partitions' positions, so that the group generation fences this
    /// transaction too), then commit.
    ///
    /// # Errors
    /// Whatever failed; the batch is left for [`recover`](Self::recover).
    pub fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), WorkerError> {
        if self.batch.started.is_none() {
            return Ok(());
        }
        if self.poisoned {
            return Err(WorkerError::Fatal(
                "refusing to commit a batch after a fatal error".into(),
            ));
        }
        if self.txn.state() == TxnState::Idle {
            // Nothing was ever added (an empty timer round).
            self.batch = Batch::default();
            return Ok(());
        }
        if let Some(failure) = self.pipeline.store_failure() {
            // A failed read may have fed the batch a wrong state.
            return Err(WorkerError::Fatal(format!(
                "the state store failed ({failure}); exiting so that a restart rebuilds it from the changelog"
            )));
        }
        let span = info_span!("commit", records = self.batch.inputs);
        let _entered = span.enter();
        let started = Instant::now();
        let changelog = self.pipeline.changelog();
        let changed = changelog.len();
        self.write(changelog)?;
        let offsets = self.offsets_to_commit(consumer)?;
        let offsets_started = Instant::now();
        if offsets.count() > 0 {
            let metadata = consumer.group_metadata().ok_or_else(|| {
                WorkerError::Fatal(
                    "the consumer has no group metadata to commit offsets with".into(),
                )
            })?;
            self.txn.send_offsets(&offsets, &metadata)?;
        }
        let offsets_millis = offsets_started.elapsed().as_millis() as u64;
        self.txn.commit()?;
        let batch = std::mem::take(&mut self.batch);
        let now_ms = Timestamp::now().millis();
        let latencies: Vec<f64> = batch
            .timestamps
            .iter()
            .map(|ts| (now_ms - ts).max(0) as f64 / 1000.0)
            .collect();
        self.metrics
            .committed(started.elapsed().as_secs_f64(), &latencies);
        for ((topic, partition), (_, next)) in batch.consumed {
            self.committed.insert((topic, partition), next);
        }
        self.counters.commits += 1;
        if self.abort_streak.1 > 0 {
            self.abort_streak = (String::new(), 0);
            self.metrics.set_abort_streak(0);
            self.status.set_stuck(None);
        }
        info!(
            inputs = batch.inputs,
            outputs = batch.outputs,
            dead_letters = batch.dead_letters.len(),
            changelog = changed,
            timer_customers = batch.timer_customers,
            millis = started.elapsed().as_millis() as u64,
            offsets_millis,
            flush_millis = self.txn.last_flush().as_millis() as u64,
            "transaction committed"
        );
        log_dead_letters(&batch.dead_letters);
        // Kafka holds the batch now; the store follows (a crash from here on
        // costs the restore a few more changelog records, nothing else).
        self.pipeline.commit(&self.txn.take_changelog_marks());
        if let Some(failure) = self.pipeline.store_failure() {
            // Kafka holds the batch; the store missed it. A restart reads it
            // back from the changelog.
            self.poisoned = true;
            return Err(WorkerError::Fatal(format!(
                "the committed batch could not be written to the state store ({failure}); exiting so that a restart rebuilds it from the changelog"
            )));
        }
        Ok(())
    }

    /// The offsets this transaction commits: the consumed ones, or for a
    /// batch without input the positions of every owned input partition.
    fn offsets_to_commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<TopicPartitionList, WorkerError> {
        let mut offsets = TopicPartitionList::new();
        if !self.batch.consumed.is_empty() {
            for ((topic, partition), (_, next)) in &self.batch.consumed {
                offsets
                    .add_partition_offset(topic, *partition, Offset::Offset(*next))
                    .map_err(WorkerError::Abortable)?;
            }
            return Ok(offsets);
        }
        let positions = consumer.position().map_err(WorkerError::Abortable)?;
        for e in positions.elements() {
            if self.opts.topics.input_role(e.topic()).is_none() {
                continue;
            }
            let next = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => self
                    .committed
                    .get(&(e.topic().to_owned(), e.partition()))
                    .copied(),
            };
            if let Some(next) = next {
                offsets
                    .add_partition_offset(e.topic(), e.partition(), Offset::Offset(next))
                    .map_err(WorkerError::Abortable)?;
            }
        }
        Ok(offsets)
    }

    /// After an error: abort and rewind when the batch surely did not land;
    /// settle with Kafka when it may have; return the error when the worker
    /// must stop (the loop exits, or recreates the consumer on `Reset`).
    ///
    /// # Errors
    /// The errors the worker cannot carry on from.
    pub fn recover<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        err: WorkerError,
    ) -> Result<(), WorkerError> {
        match err {
            WorkerError::TransactionTimedOut(_) | WorkerError::OutcomeUnknown(_) => {
                self.resync(consumer, &err)
            }
            WorkerError::Transient(_)
            | WorkerError::Abortable(_)
            | WorkerError::ProducerBroken(_) => self.abort_and_rewind(consumer, &err),
            other => {
                self.stop_after_error();
                Err(other)
            }
        }
    }

    /// Aborts the open transaction and drops the batch's state changes, and
    /// marks the processor so that nothing is committed any more: for when the
    /// loop ends on an error (the consumer's close then runs the revoke
    /// callback, which must not commit a half-processed record).
    pub fn stop_after_error(&mut self) {
        self.poisoned = true;
        if let Err(e) = self.txn.abort() {
            warn!(error = %e, "abort after a fatal error failed; the broker aborts the transaction at its timeout");
        }
        self.pipeline.rollback();
        self.batch = Batch::default();
    }

    /// The consumer was recreated after a reset: its new assignment restores
    /// the partitions afresh, and commits are allowed again.
    pub fn resume_after_reset(&mut self) {
        let restoring = self.restorer.restoring();
        self.restorer.drop_partitions(&restoring);
        self.to_resume.clear();
        self.resume_retry = None;
        self.resume_checks.clear();
        self.status.set_restoring(false);
        self.poisoned = false;
        self.fatal = None;
        self.batch = Batch::default();
    }

    fn note_abort(&mut self, err: &WorkerError) {
        let origin = self.batch.origin();
        if !origin.is_empty() && origin == self.abort_streak.0 {
            self.abort_streak.1 += 1;
        } else {
            self.abort_streak = (origin, 1);
        }
        let streak = self.abort_streak.1;
        self.counters.aborts += 1;
        self.metrics.aborted();
        self.metrics.set_abort_streak(streak);
        if streak >= 3 {
            self.status.set_stuck(Some(format!(
                "the batch starting at {} aborted {streak} times in a row; last error: {err}",
                self.abort_streak.0
            )));
        }
        warn!(error = %err, batch = %self.abort_streak.0, streak, "aborting the transaction and rewinding");
    }

    fn abort_and_rewind<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        err: &WorkerError,
    ) -> Result<(), WorkerError> {
        self.note_abort(err);
        if matches!(err, WorkerError::Transient(_)) {
            // Give the registry (or whatever failed) a moment before the retry.
            std::thread::sleep(Duration::from_secs(1));
        }
        match self.txn.abort() {
            Ok(()) => {}
            Err(fenced @ WorkerError::Fenced(_)) => {
                self.stop_after_error();
                return Err(fenced);
            }
            Err(e) => {
                warn!(error = %e, "abort failed; rebuilding the producer");
                self.txn.rebuild()?;
            }
        }
        if self.txn.state() == TxnState::Broken {
            self.txn.rebuild()?;
        }
        self.pipeline.rollback();
        let batch = std::mem::take(&mut self.batch);
        let owned: BTreeSet<i32> = self.pipeline.owned().into_iter().collect();
        for ((topic, partition), (first, _)) in batch.consumed {
            if owned.contains(&partition) {
                seek(consumer, &topic, partition, Offset::Offset(first))?;
            }
        }
        // The same batch failing again and again: don't spin.
        let streak = self.abort_streak.1;
        if streak >= 2 {
            let pause = Duration::from_millis(100 * 2u64.pow(streak.min(6)));
            std::thread::sleep(pause.min(Duration::from_secs(5)));
        }
        Ok(())
    }

    /// The outcome of the last commit is unknown (or the broker aborted our
    /// transaction at its timeout): rebuild the producer, whose
    /// init_transactions completes or aborts it, then read back from Kafka
    /// what happened — the owned partitions' state from the changelog, the
    /// group's committed offsets — and go on from there.
    fn resync<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        err: &WorkerError,
    ) -> Result<(), WorkerError> {
        warn!(error = %err, "settling the last transaction with Kafka: rebuilding the producer, restoring the owned partitions, rewinding to the committed offsets");
        self.counters.aborts += 1;
        self.metrics.aborted();
        self.batch = Batch::default();
        self.txn.rebuild()?;
        self.pipeline.rollback();
        let owned = self.pipeline.owned();
        self.pipeline.release(&owned);
        self.restore(&owned)?;
        let assignment = consumer.assignment().map_err(|e| {
            WorkerError::Reset(format!("cannot read the consumer's assignment: {e}"))
        })?;
        let committed = consumer
            .committed_offsets(assignment, Duration::from_secs(30))
            .map_err(|e| WorkerError::Reset(format!("cannot read the committed offsets: {e}")))?;
        for e in committed.elements() {
            let to = match e.offset() {
                Offset::Offset(o) => {
                    self.committed
                        .insert((e.topic().to_owned(), e.partition()), o);
                    Offset::Offset(o)
                }
                _ => Offset::Beginning,
            };
            seek(consumer, e.topic(), e.partition(), to)?;
        }
        info!(partitions = ?owned, "transaction outcome settled; resuming from the committed offsets");
        Ok(())
    }

    /// Partitions taken away in a rebalance: commit what we have (abort when
    /// the assignment was lost or an error spoiled the batch), then drop
    /// their state.
    pub fn revoke<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &BTreeSet<i32>,
        lost: bool,
    ) {
        let healthy = !lost && !self.poisoned && self.txn.state() != TxnState::Broken;
        let committed = healthy
            && match self.commit(consumer) {
                Ok(()) => true,
                Err(e) => {
                    warn!(error = %e, "commit at revocation failed; aborting");
                    false
                }
            };
        if !committed {
            let outcome = match self.txn.state() {
                TxnState::Idle => Ok(()),
                TxnState::Open | TxnState::Aborting => self.txn.abort().or_else(|e| match e {
                    fenced @ WorkerError::Fenced(_) => Err(fenced),
                    _ => self.txn.rebuild(),
                }),
                _ => self.txn.rebuild(),
            };
            self.pipeline.rollback();
            self.batch = Batch::default();
            if let Err(e) = outcome
                && self.fatal.is_none()
            {
                self.fatal = Some(e);
            }
        }
        if lost {
            self.lost_since = Some(Instant::now());
        }
        let gone: Vec<i32> = partitions.iter().copied().collect();
        self.pipeline.release(&gone);
        self.restorer.drop_partitions(&gone);
        self.to_resume.retain(|p| !partitions.contains(p));
        self.resume_checks.forget(&gone);
        if self.restorer.is_idle() {
            self.status.set_restoring(false);
        }
        self.committed.retain(|(_, p), _| !partitions.contains(p));
        self.metrics
            .rebalanced(if lost { "lost" } else { "revoke" });
        self.metrics.clear_lag();
        info!(?partitions, lost, "partitions revoked");
    }

    /// Partitions received: refuse numbers the start-up layout did not have
    /// (their customers' state is elsewhere), then start restoring the rest.
    /// Their input stays paused until the loop has read them
    /// ([`advance_restore`](Self::advance_restore)); the partitions already
    /// owned go on meanwhile.
    pub fn assign(&mut self, partitions: &[i32]) -> Result<(), WorkerError> {
        if let Some(p) = partitions.iter().find(|p| **p >= self.partitions) {
            return Err(WorkerError::PartitionsChanged(format!(
                "partition {p} was assigned, but the input topics had {} partitions when this worker started",
                self.partitions
            )));
        }
        self.begin_restore(partitions)
    }

    /// Restores partitions not held yet from the changelog, and finishes any
    /// restore under way, before it returns: for where the loop cannot go on
    /// without their state.
    pub fn restore(&mut self, partitions: &[i32]) -> Result<(), WorkerError> {
        self.begin_restore(partitions)?;
        while self.is_restoring() {
            self.advance_restore(Duration::from_millis(200))?;
        }
        Ok(())
    }

    fn begin_restore(&mut self, partitions: &[i32]) -> Result<(), WorkerError> {
        self.lost_since = None;
        let partitions: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !self.pipeline.owns(*p))
            .collect();
        if partitions.is_empty() {
            return Ok(());
        }
        self.status.set_restoring(true);
        self.restorer.add(&partitions)
    }

    /// Whether a restore is under way.
    pub fn is_restoring(&self) -> bool {
        !self.restorer.is_idle()
    }

    /// Partitions being restored: their input must stay paused.
    pub fn restoring(&self) -> Vec<i32> {
        self.restorer.restoring()
    }

    /// Reads the changelog for about `budget` and hands the partitions it
    /// completed to the pipeline; the loop then resumes their input.
    ///
    /// # Errors
    /// As [`Restorer::advance`]: the worker cannot go on without the state.
    pub fn advance_restore(&mut self, budget: Duration) -> Result<(), WorkerError> {
        if self.restorer.is_idle() {
            return Ok(());
        }
        let (status, metrics) = (self.status.clone(), self.metrics.clone());
        let mut progress = |left: &[(i32, i64)]| {
            status.set_restore_left(left.to_vec());
            metrics.set_restore_remaining(left);
        };
        let restored = self.restorer.advance(budget, &mut progress)?;
        self.counters.restored_records += restored.records;
        self.to_resume.extend(restored.engines.keys().copied());
        self.pipeline.adopt(restored.engines);
        if let Some((took, records)) = restored.round_ended {
            self.metrics.restored(took.as_secs_f64(), records);
        }
        if self.restorer.is_idle() {
            self.status.set_restoring(false);
        }
        Ok(())
    }

    /// Resumes the input of partitions whose restore completed (once an
    /// operator's pause is lifted, if one is in force), each at the group's
    /// committed offset.
    ///
    /// # Errors
    /// [`WorkerError::Reset`] when a partition cannot be positioned: the
    /// consumer is recreated.
    pub fn resume_restored<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), WorkerError> {
        if self.to_resume.is_empty()
            || self.status.pause_requested()
            || self.resume_retry.is_some_and(|t| Instant::now() < t)
        {
            return Ok(());
        }
        let partitions = std::mem::take(&mut self.to_resume);
        let tpl = self.input_partitions(&partitions);
        // A pause right after an assign can make librdkafka drop the
        // assign's start offset (librdkafka #2190): the resumed partition
        // would fetch nothing. Seek each to the group's committed offset, as
        // librdkafka advises, unless this batch consumed from it already.
        let committed = match consumer
            .resume(&tpl)
            .and_then(|()| consumer.committed_offsets(tpl, Duration::from_secs(10)))
        {
            Ok(committed) => committed,
            Err(e) => {
                warn!(error = %e, ?partitions, "cannot resume restored partitions yet; retrying in 1 s");
                self.to_resume = partitions;
                self.resume_retry = Some(Instant::now() + Duration::from_secs(1));
                return Ok(());
            }
        };
        self.resume_retry = None;
        let mut resumed = Vec::new();
        for e in committed.elements() {
            let key = (e.topic().to_owned(), e.partition());
            let group_offset = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            // The lag gauge measures from here until this instance commits.
            if let Some(o) = group_offset {
                self.committed.insert(key.clone(), o);
            }
            if self.batch.consumed.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let to = group_offset.map_or(Offset::Beginning, Offset::Offset);
            seek(consumer, e.topic(), e.partition(), to)?;
            resumed.push(Resumed {
                topic: e.topic().to_owned(),
                partition: e.partition(),
                at: to,
                seen: kafka::cached_watermarks(consumer, e.topic(), e.partition()),
            });
        }
        self.resume_checks.expect(resumed, Instant::now());
        Ok(())
    }

    /// Resumes again the input partitions that were not fetched since their
    /// resume: librdkafka can drop a resume that races its own fetch start
    /// (see [`resume_check`]).
    ///
    /// # Errors
    /// [`WorkerError::Reset`] when librdkafka refuses to resume or position
    /// one of them: the consumer is recreated, which assigns it afresh.
    pub fn check_resumed<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), WorkerError> {
        let now = Instant::now();
        if !self.resume_checks.any_due(now) || self.status.pause_requested() {
            return Ok(());
        }
        // Without the positions a partition that handed out records could
        // look unfetched, and its seek would read them twice: wait.
        let Ok(positions) = consumer.position() else {
            return Ok(());
        };
        let mut held: BTreeSet<i32> = self.restoring().into_iter().collect();
        held.extend(self.to_resume.iter().copied());
        let (consumed, committed) = (&self.batch.consumed, &self.committed);
        let stale = self.resume_checks.take_unfetched(now, |r| {
            let key = (r.topic.clone(), r.partition);
            // A commit since the resume moved the group's offset past `at`
            // (a rewind after an abort then resets the position too).
            let uncommitted = match r.at {
                Offset::Offset(o) => committed.get(&key) == Some(&o),
                _ => !committed.contains_key(&key),
            };
            uncommitted
                && !held.contains(&r.partition)
                && !consumed.iter().any(|(k, _)| *k == key)
                && positions
                    .find_partition(&r.topic, r.partition)
                    .is_some_and(|e| {
                        resume_check::unfetched(
                            r,
                            kafka::cached_watermarks(consumer, &r.topic, r.partition),
                            e.offset(),
                        )
                    })
        });
        if stale.is_empty() {
            return Ok(());
        }
        resume_check::resume_again(consumer, &stale).map_err(|(topic, partition, e)| {
            WorkerError::Reset(format!(
                "cannot resume {topic}[{partition}], unfetched since its resume: {e}"
            ))
        })?;
        self.metrics
            .fetch_restarted("unfetched_after_resume", stale.len());
        let names: Vec<String> = stale
            .iter()
            .map(|r| format!("{}[{}]", r.topic, r.partition))
            .collect();
        // Never fetched at all (no watermarks cached) points at a lost
        // resume; the others may be idle partitions assigned here before.
        let never_fetched = stale.iter().filter(|r| r.seen.is_none()).count();
        info!(partitions = ?names, never_fetched, "input partitions showed no fetch since their resume (idle, or the resume was lost in librdkafka); resumed them again");
        Ok(())
    }

    /// Pauses the input of partitions being restored, right after an
    /// assignment and before anything is fetched for them.
    pub fn pause_restoring<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) {
        let partitions = self.restoring();
        if partitions.is_empty() {
            return;
        }
        let tpl = self.input_partitions(&partitions);
        if let Err(e) = consumer.pause(&tpl) {
            // Their records then reach `process`, which restores first.
            warn!(error = %e, ?partitions, "cannot pause partitions being restored");
        }
    }

    /// An incremental rebalance took partitions away and added none: the
    /// loop is to [`wake_fetchers`](Self::wake_fetchers) of those it kept.
    pub fn rebalanced_without_new_partitions(&mut self) {
        self.fetchers_idle = true;
    }

    /// Restarts the fetch of the kept partitions after an incremental
    /// rebalance that added none.
    ///
    /// librdkafka pauses every assigned partition's fetcher during an
    /// incremental rebalance and resumes the kept ones at its end, but a
    /// resume does not wake the broker thread, which then sleeps out its
    /// 1-second poll (`rd_kafka_max_block_ms`) before it fetches again: a
    /// KIP-848 join stopped the partitions that stayed for 1.0 s in every
    /// run of the bench. Starting a fetch does wake it, and a seek to the
    /// position the application reached starts one without skipping or
    /// repeating a record. Only a nudge: if a seek fails, the fetch resumes
    /// on librdkafka's own time.
    pub fn wake_fetchers<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        if !std::mem::take(&mut self.fetchers_idle) {
            return;
        }
        let Ok(positions) = consumer.position() else {
            return;
        };
        let mut held: BTreeSet<i32> = self.restoring().into_iter().collect();
        held.extend(self.to_resume.iter().copied());
        let inputs = self.opts.topics.inputs();
        let (mut restarted, mut seeks) = (BTreeSet::new(), 0);
        for (topic, partition, offset) in fetch_positions(&positions, &inputs, &held) {
            let restart = Offset::Offset(offset);
            match consumer.seek(&topic, partition, restart, Duration::from_secs(1)) {
                Ok(()) => {
                    restarted.insert(partition);
                    seeks += 1;
                }
                Err(e) => {
                    // The others would most likely wait as long: leave
                    // them to librdkafka too rather than hold the loop.
                    warn!(error = %e, topic = %topic, partition, "cannot restart the fetch of a kept partition; librdkafka resumes the kept partitions within a second");
                    break;
                }
            }
        }
        if !restarted.is_empty() {
            self.metrics.fetch_restarted("kept_after_rebalance", seeks);
            info!(partitions = ?restarted, "fetch of the kept partitions restarted after an incremental rebalance");
        }
    }

    /// The input topics' partitions of these partition numbers.
    fn input_partitions(&self, partitions: &[i32]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for topic in self.opts.topics.inputs() {
            for p in partitions {
                tpl.add_partition(topic, *p);
            }
        }
        tpl
    }

    /// Stops the worker when an input or the changelog no longer has the
    /// partition count it started with: customers would hash to partitions
    /// without their state.
    ///
    /// # Errors
    /// [`WorkerError::PartitionsChanged`] naming the counts.
    pub fn check_partition_counts<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), WorkerError> {
        let topics = &self.opts.topics;
        let counts = partition_counts(
            consumer,
            &[
                topics.lifecycle.as_str(),
                topics.decisions.as_str(),
                topics.outcomes.as_str(),
                topics.changelog.as_str(),
            ],
            Duration::from_secs(5),
        );
        let changed: Vec<String> = counts
            .iter()
            .filter(|(_, n)| *n != self.partitions && *n > 0)
            .map(|(topic, n)| format!("{topic} has {n}"))
            .collect();
        if changed.is_empty() {
            Ok(())
        } else {
            Err(WorkerError::PartitionsChanged(format!(
                "{} partitions, but every input topic and the changelog had {} when this worker started",
                changed.join(", "),
                self.partitions
            )))
        }
    }

    /// Recomputes the lag gauge: high watermark minus the offset committed by
    /// the last transaction (or the group's committed offset, or the low
    /// watermark, before this instance committed anything for a partition).
    pub fn refresh_lag<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        let Ok(assignment) = consumer.assignment() else {
            return;
        };
        let timeout = Duration::from_secs(2);
        let restoring = self.restorer.restoring();
        let paused = self.status.pause_requested();
        let sources: Vec<(String, i32, LagSource)> = assignment
            .elements()
            .iter()
            .map(|e| {
                let p = e.partition();
                let phase = if restoring.contains(&p) {
                    InputPhase::Restoring
                } else if self.to_resume.contains(&p) {
                    InputPhase::AwaitingResume
                } else {
                    InputPhase::Consuming
                };
                let source = lag_source(paused, phase, || {
                    kafka::cached_watermarks(consumer, e.topic(), e.partition())
                });
                (e.topic().to_owned(), p, source)
            })
            .filter(|(_, _, source)| *source != LagSource::Skip)
            .collect();
        // Consuming partitions learnt the group's offset when they resumed;
        // one without an entry has none (the low watermark is its position).
        // Only an operator's pause, with nothing processed, may wait on the
        // coordinator: with it away, this call blocked the loop for 2 s in 5.
        if paused {
            let mut unknown = TopicPartitionList::new();
            for (topic, partition, _) in &sources {
                if !self.committed.contains_key(&(topic.clone(), *partition)) {
                    let _ = unknown.add_partition(topic, *partition);
                }
            }
            if unknown.count() > 0
                && let Ok(committed) = consumer.committed_offsets(unknown, timeout)
            {
                for e in committed.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        self.committed
                            .insert((e.topic().to_owned(), e.partition()), o);
                    }
                }
            }
        }
        for (topic, partition, source) in sources {
            let watermarks = match source {
                LagSource::Cached(low, high) => Some((low, high)),
                LagSource::Broker => consumer.fetch_watermarks(&topic, partition, timeout).ok(),
                LagSource::Skip => None,
            };
            let Some((low, high)) = watermarks else {
                continue;
            };
            let position = self
                .committed
                .get(&(topic.clone(), partition))
                .copied()
                .unwrap_or(low);
            self.metrics
                .set_lag(&topic, partition, (high - position).max(0));
        }
    }

    pub fn refresh_gauges(&self, now: Timestamp) {
        self.pipeline.refresh_gauges(now);
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The input partitions with a known position, except those `held` back
/// (being restored or waiting to resume): where their fetch may restart.
fn fetch_positions(
    positions: &TopicPartitionList,
    inputs: &[&str],
    held: &BTreeSet<i32>,
) -> Vec<(String, i32, i64)> {
    positions
        .elements()
        .iter()
        .filter(|e| inputs.contains(&e.topic()) && !held.contains(&e.partition()))
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.topic().to_owned(), e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Seeks a partition, retrying a few times: a rewind that does not happen
/// would skip records, so a lasting failure resets the consumer instead.
fn seek<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    to: Offset,
) -> Result<(), WorkerError> {
    let mut last = None;
    for attempt in 0..3 {
        match consumer.seek(topic, partition, to, Duration::from_secs(10)) {
            Ok(()) => return Ok(()),
            Err(e) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(100 * (attempt + 1)));
            }
        }
    }
    Err(WorkerError::Reset(format!(
        "cannot rewind {topic}[{partition}] to {to:?}: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

fn from_pipeline(e: PipelineError) -> WorkerError {
    match e {
        PipelineError::Transient(m) => WorkerError::Transient(m),
        PipelineError::Encode(m) => WorkerError::Fatal(format!("cannot encode an output: {m}")),
        PipelineError::NoState(p) => WorkerError::Restore {
            partition: p,
            reason: "state missing after restore".into(),
        },
    }
}

fn send_error(e: SendError, what: &str) -> WorkerError {
    match e {
        SendError::TooLarge => WorkerError::Fatal(format!(
            "{what} exceeds the producer's message.max.bytes even without a value"
        )),
        SendError::Txn(e) => e,
    }
}

/// One line for the dead letters a transaction committed: counts by reason
/// and where the first few came from (never their content).
fn log_dead_letters(dead: &[(String, i32, i64, DeadLetterReason)]) {
    if dead.is_empty() {
        return;
    }
    let mut by_reason: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (_, _, _, reason) in dead {
        *by_reason.entry(reason.as_str()).or_default() += 1;
    }
    let first: Vec<String> = dead
        .iter()
        .take(5)
        .map(|(t, p, o, r)| format!("{t}[{p}]@{o} {r}"))
        .collect();
    warn!(
        dead_letters = dead.len(),
        reasons = ?by_reason,
        first = ?first,
        "records committed to the dead-letter topic"
    );
}

fn input_record<'a>(msg: &'a BorrowedMessage<'a>) -> InputRecord<'a> {
    let headers = msg
        .headers()
        .map(|hs| hs.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default();
    InputRecord {
        topic: msg.topic(),
        partition: msg.partition(),
        offset: msg.offset(),
        timestamp_ms: msg.timestamp().to_millis(),
        key: msg.key(),
        value: msg.payload(),
        headers,
    }
}

/// The partition count of each of `topics` that the cluster names. The
/// first request that fails ends the round: the broker is away, and asking
/// it once a topic would hold the loop for `timeout` a topic (20 s in all
/// with the worker's four). The caller checks again on its next round.
fn partition_counts<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &[&str],
    timeout: Duration,
) -> Vec<(String, i32)> {
    let mut counts = Vec::new();
    for topic in topics {
        let Ok(md) = consumer.fetch_metadata(Some(topic), timeout) else {
            break;
        };
        if let Some(t) = md.topics().iter().find(|t| t.name() == *topic)
            && t.error().is_none()
        {
            counts.push(((*topic).to_owned(), t.partitions().len() as i32));
        }
    }
    counts
}

/// Where one input partition's lag gauge comes from on a refresh.
#[derive(Debug, PartialEq)]
enum LagSource {
    /// librdkafka's cached watermarks: no round trip.
    Cached(i64, i64),
    /// Ask the broker: the partition is paused by an operator, so not
    /// fetched and its cache is stale, and nothing is processed meanwhile.
    Broker,
    /// Not this time: being restored (the restore gauges report it),
    /// restored but not resumed yet (the broker refused the resume), or just
    /// resumed and not fetched yet. Asking the broker for these, on the loop
    /// thread, stalled restores for seconds at a time (up to 2 s a
    /// partition) and the first inputs after a restore.
    Skip,
}

/// Where an assigned input partition stands, for its lag gauge.
#[derive(Debug, Clone, Copy, PartialEq)]
enum InputPhase {
    /// Paused while its state is read from the changelog.
    Restoring,
    /// Restored, its input not resumed yet (no position of its own yet).
    AwaitingResume,
    /// Fetched and processed.
    Consuming,
}

fn lag_source(
    operator_paused: bool,
    phase: InputPhase,
    cached: impl FnOnce() -> Option<(i64, i64)>,
) -> LagSource {
    match phase {
        InputPhase::Restoring => LagSource::Skip,
        _ if operator_paused => LagSource::Broker,
        InputPhase::AwaitingResume => LagSource::Skip,
        InputPhase::Consuming => {
            cached().map_or(LagSource::Skip, |(low, high)| LagSource::Cached(low, high))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_restarts_at_the_position_of_kept_input_partitions_only() {
        let mut positions = TopicPartitionList::new();
        let at = |tpl: &mut TopicPartitionList, topic: &str, p: i32, o: Offset| {
            tpl.add_partition_offset(topic, p, o).expect("offset");
        };
        at(&mut positions, "in.lifecycle", 0, Offset::Offset(255));
        at(&mut positions, "in.outcomes", 0, Offset::Invalid);
        at(&mut positions, "in.decisions", 1, Offset::Offset(7));
        at(&mut positions, "in.lifecycle", 2, Offset::Offset(9));
        at(&mut positions, "changelog", 0, Offset::Offset(3));
        let held = BTreeSet::from([2]);
        let inputs = ["in.lifecycle", "in.decisions", "in.outcomes"];
        assert_eq!(
            fetch_positions(&positions, &inputs, &held),
            [
                ("in.lifecycle".to_owned(), 0, 255),
                ("in.decisions".to_owned(), 1, 7)
            ]
        );
    }

    #[test]
    fn the_partition_count_check_asks_an_absent_broker_once() {
        use rdkafka::ClientConfig;
        // Nothing listens on port 1: every metadata request times out.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("group.id", "partition-count-check")
            .set("log_level", "0")
            .create()
            .expect("a consumer needs no broker to be created");
        let timeout = Duration::from_millis(400);
        let started = Instant::now();
        let counts = partition_counts(&consumer, &["a", "b", "c", "d"], timeout);
        let took = started.elapsed();
        assert!(counts.is_empty());
        // One timeout, not four: the loop it runs on is held for one.
        assert!(
            took < timeout * 3,
            "four topics took {took:?} with the broker away (timeout {timeout:?} each)"
        );
    }

    #[test]
    fn the_lag_refresh_never_waits_for_the_broker_while_processing() {
        use InputPhase::{AwaitingResume, Consuming, Restoring};
        // Being restored: skipped, whatever the operator does.
        assert_eq!(
            lag_source(false, Restoring, || Some((0, 9))),
            LagSource::Skip
        );
        assert_eq!(lag_source(true, Restoring, || None), LagSource::Skip);
        // Consuming: the cache, or nothing until the first fetch fills it.
        assert_eq!(
            lag_source(false, Consuming, || Some((2, 9))),
            LagSource::Cached(2, 9)
        );
        assert_eq!(lag_source(false, Consuming, || None), LagSource::Skip);
        // Restored, its resume refused by the broker: no position to measure
        // from, and the broker is not to be waited on.
        assert_eq!(
            lag_source(false, AwaitingResume, || Some((2, 9))),
            LagSource::Skip
        );
        // Paused by an operator: nothing is fetched, nothing processed.
        assert_eq!(
            lag_source(true, Consuming, || Some((2, 9))),
            LagSource::Broker
        );
        assert_eq!(
            lag_source(true, AwaitingResume, || Some((2, 9))),
            LagSource::Broker
        );
    }
}
