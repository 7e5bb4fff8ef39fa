//! The per-instance processing state: owned partitions' engines, the open
//! transaction and what it consumed. Everything that must be atomic goes
//! through one transaction: outputs, dead letters, changelog, offsets.

use super::WorkerError;
use super::options::WorkerOptions;
use super::records::{Origin, TRACEPARENT, dead_letter_headers, find_header, output_headers};
use crate::codec::Codec;
use crate::contract::{DeadLetterReason, DecodeError, OutputRecord};
use crate::domain::{CustomerState, Effect, StateDecodeError};
use crate::engine::{Engine, StateStore};
use crate::telemetry::{Metrics, StateGauges, Status};
use crate::time::Timestamp;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, info_span, warn};

pub type TxProducer = ThreadedProducer<DefaultProducerContext>;

/// The transaction being filled.
struct OpenTxn {
    started: Instant,
    records: usize,
    /// (topic, partition) → (first offset consumed, next offset to commit).
    consumed: BTreeMap<(String, i32), (i64, i64)>,
    /// Kafka timestamps (ms) of the consumed records, for the latency histogram.
    timestamps: Vec<i64>,
}

/// Counters the worker keeps; exposed as metrics by the operability layer.
#[derive(Default, Debug, Clone)]
pub struct Counters {
    pub consumed: u64,
    pub produced: u64,
    pub dead_letters: u64,
    pub duplicates: u64,
    pub ignored: u64,
    pub commits: u64,
    pub aborts: u64,
    pub restored_records: u64,
}

pub struct Processor {
    opts: Arc<WorkerOptions>,
    producer: TxProducer,
    restorer: BaseConsumer<super::RestoreContext>,
    engines: BTreeMap<i32, Engine>,
    txn: Option<OpenTxn>,
    /// Next offsets committed by the last successful transaction, per input partition.
    pub committed: HashMap<(String, i32), i64>,
    /// An error raised inside a rebalance callback, for the loop to act on.
    pub fatal: Option<WorkerError>,
    pub counters: Counters,
    /// Rebalance callbacks seen, so the loop can re-apply a pause.
    pub rebalances: u64,
    /// When the assignment was lost, until the next assignment arrives.
    pub lost_since: Option<Instant>,
    codec: Codec,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
}

impl Processor {
    pub fn new(
        opts: Arc<WorkerOptions>,
        producer: TxProducer,
        restorer: BaseConsumer<super::RestoreContext>,
        codec: Codec,
        metrics: Arc<Metrics>,
        status: Arc<Status>,
    ) -> Self {
        Processor {
            codec,
            metrics,
            status,
            opts,
            producer,
            restorer,
            engines: BTreeMap::new(),
            txn: None,
            committed: HashMap::new(),
            fatal: None,
            counters: Counters::default(),
            rebalances: 0,
            lost_since: None,
        }
    }

    pub fn engines(&self) -> &BTreeMap<i32, Engine> {
        &self.engines
    }

    /// Whether the open transaction should be committed now.
    pub fn commit_due(&self) -> bool {
        self.txn.as_ref().is_some_and(|t| {
            t.records >= self.opts.batch_size || t.started.elapsed() >= self.opts.commit_interval
        })
    }

    /// How long the loop may block in poll without delaying a commit.
    pub fn poll_timeout(&self) -> Duration {
        let cap = Duration::from_millis(100);
        match &self.txn {
            Some(t) => self
                .opts
                .commit_interval
                .saturating_sub(t.started.elapsed())
                .min(cap),
            None => cap,
        }
    }

    fn begin(&mut self) -> Result<(), WorkerError> {
        if self.txn.is_none() {
            self.producer
                .begin_transaction()
                .map_err(WorkerError::from_txn)?;
            self.txn = Some(OpenTxn {
                started: Instant::now(),
                records: 0,
                consumed: BTreeMap::new(),
                timestamps: Vec::new(),
            });
        }
        Ok(())
    }

    /// Handles one input record inside the open transaction.
    pub fn process(
        &mut self,
        msg: &BorrowedMessage<'_>,
        now: Timestamp,
    ) -> Result<(), WorkerError> {
        self.begin()?;
        let topic = msg.topic().to_owned();
        let partition = msg.partition();
        let offset = msg.offset();
        if let Some(txn) = self.txn.as_mut() {
            txn.records += 1;
            if let Some(ts) = msg.timestamp().to_millis() {
                txn.timestamps.push(ts);
            }
            txn.consumed
                .entry((topic.clone(), partition))
                .and_modify(|e| e.1 = offset + 1)
                .or_insert((offset, offset + 1));
        }
        self.counters.consumed += 1;
        if !self.engines.contains_key(&partition) {
            // Assignment restores before fetching starts; this is a safety net.
            warn!(
                partition,
                "record for a partition without restored state; restoring now"
            );
            self.restore(&[partition])?;
        }
        let env = match self.validate(msg, now) {
            Ok(env) => env,
            Err(err) if crate::codec::is_transient(&err) => {
                return Err(WorkerError::Transient(err.to_string()));
            }
            Err(err) => {
                self.metrics.event_consumed(msg.topic(), "invalid");
                return self.dead_letter(msg, &err);
            }
        };
        self.metrics
            .event_consumed(msg.topic(), env.event.event_type());
        let span = tracing::debug_span!(
            "decide",
            event_id = %env.event_id,
            customer_id = %env.customer_id,
            event_type = env.event.event_type()
        );
        super::tracing_context::link_parent(&span, find_header(msg.headers(), TRACEPARENT));
        let _entered = span.enter();
        let Some(engine) = self.engines.get_mut(&partition) else {
            return Err(WorkerError::Restore {
                partition,
                reason: "state missing after restore".into(),
            });
        };
        let handled = engine.handle(&env, now);
        match handled.effect {
            Effect::Duplicate => {
                self.counters.duplicates += 1;
                self.metrics.duplicate();
            }
            Effect::Ignored(reason) => {
                self.counters.ignored += 1;
                self.metrics.outcome_ignored(reason.as_str());
                debug!(event_id = %env.event_id, customer_id = %env.customer_id, reason = reason.as_str(), "outcome ignored");
            }
            Effect::Rejected(code) => {
                self.metrics.rejected(code.as_str());
                info!(event_id = %env.event_id, customer_id = %env.customer_id, event_type = env.event.event_type(), reason_code = code.as_str(), "rejected");
            }
            Effect::Applied | Effect::Timers => {
                debug!(event_id = %env.event_id, customer_id = %env.customer_id, event_type = env.event.event_type(), outputs = handled.outputs.len(), "applied");
            }
        }
        let traceparent = find_header(msg.headers(), TRACEPARENT);
        for record in &handled.outputs {
            self.publish(record, traceparent)?;
        }
        Ok(())
    }

    fn validate(
        &self,
        msg: &BorrowedMessage<'_>,
        now: Timestamp,
    ) -> Result<crate::contract::InputEnvelope, DecodeError> {
        let payload = msg.payload().unwrap_or_default();
        if payload.len() > self.opts.max_record_bytes {
            return Err(DecodeError::new(
                DeadLetterReason::RecordTooLarge,
                format!(
                    "record value is {} bytes; the limit is {} bytes",
                    payload.len(),
                    self.opts.max_record_bytes
                ),
            ));
        }
        let content_type =
            find_header(msg.headers(), "content-type").and_then(|v| std::str::from_utf8(v).ok());
        let env = self.codec.decode(msg.topic(), payload, content_type)?;
        let expected = env.event.topic();
        if self.opts.topics.input_role(msg.topic()) != Some(expected) {
            return Err(DecodeError::new(
                DeadLetterReason::WrongTopic,
                format!(
                    "{} belongs on {}, not on {}",
                    env.event.event_type(),
                    self.opts.topics.name(expected),
                    msg.topic()
                ),
            ));
        }
        if msg.key() != Some(env.customer_id.as_bytes()) {
            return Err(DecodeError::new(
                DeadLetterReason::KeyMismatch,
                "the record key must equal event.customerId (keys route a customer's events to one partition)",
            ));
        }
        if env.event_time > now.plus(self.opts.future_tolerance) {
            return Err(DecodeError::new(
                DeadLetterReason::EventTimeInFuture,
                format!(
                    "eventTime is more than {} ahead of this worker's clock; check the producer's clock",
                    humantime::format_duration(self.opts.future_tolerance)
                ),
            ));
        }
        Ok(env)
    }

    fn dead_letter(
        &mut self,
        msg: &BorrowedMessage<'_>,
        err: &DecodeError,
    ) -> Result<(), WorkerError> {
        warn!(
            topic = msg.topic(),
            partition = msg.partition(),
            offset = msg.offset(),
            reason_code = err.reason.as_str(),
            "record sent to the dead-letter topic"
        );
        let origin = Origin {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp_ms: msg.timestamp().to_millis(),
        };
        let headers = dead_letter_headers(&origin, err.reason, &err.message, msg.headers());
        let dlq = self.opts.topics.dead_letter.clone();
        self.send(&dlq, None, msg.key(), msg.payload(), headers)?;
        self.counters.dead_letters += 1;
        self.metrics.dead_lettered(err.reason.as_str());
        Ok(())
    }

    fn publish(
        &mut self,
        record: &OutputRecord,
        traceparent: Option<&[u8]>,
    ) -> Result<(), WorkerError> {
        let topic = self.opts.topics.name(record.topic).to_owned();
        let (value, content_type) = self.codec.encode(&topic, record).map_err(|e| {
            if e.is_transient() {
                WorkerError::Transient(e.to_string())
            } else {
                WorkerError::Fatal(format!("cannot encode an output: {e}"))
            }
        })?;
        let headers = output_headers(record, traceparent, content_type);
        self.send(
            &topic,
            None,
            Some(record.key.as_bytes()),
            Some(&value),
            headers,
        )?;
        self.counters.produced += 1;
        self.metrics
            .event_produced(&topic, record.envelope.event_type);
        Ok(())
    }

    /// Enqueues one record in the transaction; a full local queue is waited out.
    fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: OwnedHeaders,
    ) -> Result<(), WorkerError> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(WorkerError::from_txn(e)),
            }
        }
    }

    /// Fires every owned customer's timers due by `now`.
    pub fn fire_timers(&mut self, now: Timestamp) -> Result<(), WorkerError> {
        let due: Vec<i32> = self
            .engines
            .iter()
            .filter(|(_, e)| e.next_due().is_some_and(|d| d <= now))
            .map(|(p, _)| *p)
            .collect();
        for partition in due {
            self.begin()?;
            let outputs = match self.engines.get_mut(&partition) {
                Some(engine) => engine.fire_due(now),
                None => continue,
            };
            if !outputs.is_empty() {
                self.metrics.timer_fired();
            }
            for record in &outputs {
                info!(customer_id = %record.key, event_type = record.envelope.event_type, termination_id = ?record.envelope.event.termination_id(), "timer fired");
                self.publish(record, None)?;
            }
        }
        Ok(())
    }

    /// Commits the open transaction: changelog records of every changed
    /// customer, the consumed offsets with the group metadata, then commit.
    pub fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), WorkerError> {
        let Some(txn) = self.txn.as_ref() else {
            return Ok(());
        };
        let span = info_span!("commit", records = txn.records);
        let _entered = span.enter();
        let changelog = self.opts.topics.changelog.clone();
        let mut changes: Vec<(i32, String, Option<Vec<u8>>)> = Vec::new();
        for (partition, engine) in &self.engines {
            for (key, state) in engine.changes() {
                changes.push((
                    *partition,
                    key.to_owned(),
                    state.map(CustomerState::to_bytes),
                ));
            }
        }
        for (partition, key, value) in &changes {
            self.send(
                &changelog,
                Some(*partition),
                Some(key.as_bytes()),
                value.as_deref(),
                OwnedHeaders::new(),
            )?;
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), (_, next)) in &txn.consumed {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(WorkerError::from_txn)?;
        }
        if offsets.count() > 0 {
            let metadata = consumer.group_metadata().ok_or_else(|| {
                WorkerError::Fatal(
                    "the consumer has no group metadata to commit offsets with".into(),
                )
            })?;
            self.producer
                .send_offsets_to_transaction(&offsets, &metadata, Duration::from_secs(30))
                .map_err(WorkerError::from_txn)?;
        }
        let commit_started = Instant::now();
        // Flush first, with librdkafka's own flush: the flush inside
        // commit_transaction polls in 100 ms steps, this one returns as soon
        // as every record is acknowledged.
        flush(&self.producer, Duration::from_secs(60));
        let mut attempts = 0;
        loop {
            match self.producer.commit_transaction(Duration::from_secs(60)) {
                Ok(()) => break,
                Err(KafkaError::Transaction(e)) if e.is_retriable() && attempts < 3 => {
                    attempts += 1;
                    warn!(error = %e, attempts, "transaction commit will be retried");
                }
                Err(e) => return Err(WorkerError::from_txn(e)),
            }
        }
        if let Some(txn) = self.txn.take() {
            let now_ms = Timestamp::now().millis();
            let latencies: Vec<f64> = txn
                .timestamps
                .iter()
                .map(|ts| (now_ms - ts).max(0) as f64 / 1000.0)
                .collect();
            self.metrics
                .committed(commit_started.elapsed().as_secs_f64(), &latencies);
            for ((topic, partition), (_, next)) in txn.consumed {
                self.committed.insert((topic, partition), next);
            }
        }
        for engine in self.engines.values_mut() {
            engine.commit();
        }
        self.counters.commits += 1;
        Ok(())
    }

    /// After an abortable error: abort, drop the uncommitted state changes and
    /// rewind the consumer to the last committed offsets, so the batch is
    /// processed again. A fatal error is returned for the loop to exit on.
    pub fn recover<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        err: WorkerError,
    ) -> Result<(), WorkerError> {
        if matches!(
            err,
            WorkerError::Fatal(_) | WorkerError::Fenced(_) | WorkerError::Restore { .. }
        ) {
            return Err(err);
        }
        warn!(error = %err, "aborting the transaction and rewinding");
        if matches!(err, WorkerError::Transient(_)) {
            // Give the registry (or whatever failed) a moment before the retry.
            std::thread::sleep(Duration::from_secs(1));
        }
        let producer_usable = !matches!(err, WorkerError::ProducerBroken(_)) && self.abort()?;
        for engine in self.engines.values_mut() {
            engine.rollback();
        }
        if let Some(txn) = self.txn.take() {
            for ((topic, partition), (first, _)) in txn.consumed {
                if let Err(e) = consumer.seek(
                    &topic,
                    partition,
                    Offset::Offset(first),
                    Duration::from_secs(10),
                ) {
                    // Seeking a partition we no longer own fails; its new owner
                    // starts from the committed offset anyway.
                    warn!(topic = %topic, partition, error = %e, "rewind failed");
                }
            }
        }
        if !producer_usable {
            self.rebuild_producer()?;
        }
        Ok(())
    }

    /// Aborts the open transaction. `Ok(false)` when the producer failed
    /// fatally and must be rebuilt; `Err` when it was fenced.
    fn abort(&mut self) -> Result<bool, WorkerError> {
        if self.txn.is_none() {
            return Ok(true);
        }
        match self.producer.abort_transaction(Duration::from_secs(30)) {
            Ok(()) => {
                self.counters.aborts += 1;
                self.metrics.aborted();
                Ok(true)
            }
            Err(e) => match WorkerError::from_txn(e) {
                fenced @ WorkerError::Fenced(_) => Err(fenced),
                other => {
                    warn!(error = %other, "abort failed; the producer will be rebuilt");
                    self.counters.aborts += 1;
                    self.metrics.aborted();
                    Ok(false)
                }
            },
        }
    }

    /// Replaces a producer in a fatal state with a new one under the same
    /// transactional id: init_transactions aborts whatever the old one left
    /// open. Retried while the brokers are unreachable.
    fn rebuild_producer(&mut self) -> Result<(), WorkerError> {
        let mut last = None;
        for attempt in 1..=10 {
            match super::create_producer(&self.opts) {
                Ok(producer) => {
                    self.producer = producer;
                    info!(attempt, "transactional producer rebuilt");
                    return Ok(());
                }
                Err(fenced @ WorkerError::Fenced(_)) => return Err(fenced),
                Err(e) => {
                    warn!(attempt, error = %e, "rebuilding the producer failed; retrying");
                    last = Some(e);
                    std::thread::sleep(Duration::from_secs(2));
                }
            }
        }
        Err(WorkerError::Fatal(format!(
            "cannot rebuild the transactional producer: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    /// Partitions taken away in a rebalance: commit what we have (or abort when
    /// the assignment was lost), then drop their state.
    pub fn revoke<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &BTreeSet<i32>,
        lost: bool,
    ) {
        let committed = !lost
            && match self.commit(consumer) {
                Ok(()) => true,
                Err(e) => {
                    warn!(error = %e, "commit at revocation failed; aborting");
                    false
                }
            };
        if !committed {
            let outcome = match self.abort() {
                Ok(true) => Ok(()),
                Ok(false) => self.rebuild_producer(),
                Err(e) => Err(e),
            };
            self.txn = None;
            for engine in self.engines.values_mut() {
                engine.rollback();
            }
            if let Err(e) = outcome {
                self.fatal = Some(e);
            }
        }
        if lost {
            self.lost_since = Some(Instant::now());
        }
        for p in partitions {
            self.engines.remove(p);
            self.committed.retain(|(_, partition), _| partition != p);
        }
        self.metrics
            .rebalanced(if lost { "lost" } else { "revoke" });
        self.metrics.clear_lag();
        info!(?partitions, lost, "partitions revoked");
    }

    /// Reads each partition's changelog from the beginning to its end
    /// (read_committed) into a fresh engine.
    pub fn restore(&mut self, partitions: &[i32]) -> Result<(), WorkerError> {
        self.lost_since = None;
        let partitions: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !self.engines.contains_key(p))
            .collect();
        if partitions.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let changelog = self.opts.topics.changelog.clone();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(&changelog, *p, Offset::Beginning)
                .map_err(|e| WorkerError::Restore {
                    partition: *p,
                    reason: e.to_string(),
                })?;
        }
        self.restorer
            .assign(&tpl)
            .map_err(|e| WorkerError::Restore {
                partition: partitions[0],
                reason: e.to_string(),
            })?;
        let policy = Arc::new(self.opts.policy.clone());
        let mut engines: BTreeMap<i32, Engine> = partitions
            .iter()
            .map(|p| (*p, Engine::new(policy.clone())))
            .collect();
        let mut remaining: BTreeSet<i32> = partitions.iter().copied().collect();
        let mut records = 0u64;
        let deadline = Instant::now() + self.opts.restore_timeout;
        while !remaining.is_empty() {
            if Instant::now() > deadline {
                return Err(WorkerError::Restore {
                    partition: *remaining.first().unwrap_or(&0),
                    reason: format!(
                        "changelog {changelog} not read to its end within {}",
                        humantime::format_duration(self.opts.restore_timeout)
                    ),
                });
            }
            match self.restorer.poll(Duration::from_millis(200)) {
                Some(Ok(msg)) => {
                    let Some(engine) = engines.get_mut(&msg.partition()) else {
                        continue;
                    };
                    let Some(key) = msg.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                        warn!(
                            partition = msg.partition(),
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
                                error!(partition = msg.partition(), offset = msg.offset(), customer_id = key, error = %e, "unreadable changelog record skipped");
                                continue;
                            }
                        },
                    };
                    engine.restore(key, state);
                    records += 1;
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    remaining.remove(&p);
                }
                Some(Err(e))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::error::RDKafkaErrorCode::TopicAuthorizationFailed) =>
                {
                    return Err(WorkerError::Restore {
                        partition: *remaining.first().unwrap_or(&0),
                        reason: crate::kafka::preflight::authorization_failure(&e)
                            .unwrap_or_else(|| e.to_string()),
                    });
                }
                Some(Err(e)) => {
                    // Brokers down: librdkafka reconnects; don't spin on the error.
                    warn!(error = %e, "changelog read error during restore; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                None => {}
            }
        }
        let _ = self.restorer.unassign();
        let customers: usize = engines.values().map(Engine::len).sum();
        info!(
            ?partitions,
            records,
            customers,
            millis = started.elapsed().as_millis() as u64,
            "partitions restored from the changelog"
        );
        self.counters.restored_records += records;
        self.metrics
            .restored(started.elapsed().as_secs_f64(), records);
        self.engines.extend(engines);
        Ok(())
    }

    /// Recomputes the lag gauge: high watermark minus the offset committed by
    /// the last transaction (or the group's committed offset, or the low
    /// watermark, before this instance committed anything for a partition).
    pub fn refresh_lag<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        let Ok(assignment) = consumer.assignment() else {
            return;
        };
        let timeout = Duration::from_secs(2);
        let mut unknown = TopicPartitionList::new();
        for e in assignment.elements() {
            if !self
                .committed
                .contains_key(&(e.topic().to_owned(), e.partition()))
            {
                let _ = unknown.add_partition(e.topic(), e.partition());
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
        // librdkafka's cached watermarks cost no round trip; asking the broker
        // for each partition on the loop thread stalled consumption under a
        // backlog. Paused partitions are not fetched, so their cache goes
        // stale: ask the broker then (nothing is being processed anyway).
        let paused = self.status.pause_requested();
        for e in assignment.elements() {
            let cached = if paused {
                None
            } else {
                cached_watermarks(consumer, e.topic(), e.partition())
            };
            let Some((low, high)) = cached.or_else(|| {
                consumer
                    .fetch_watermarks(e.topic(), e.partition(), timeout)
                    .ok()
            }) else {
                continue;
            };
            let position = self
                .committed
                .get(&(e.topic().to_owned(), e.partition()))
                .copied()
                .unwrap_or(low);
            self.metrics
                .set_lag(e.topic(), e.partition(), (high - position).max(0));
        }
    }

    /// Recomputes the gauges derived from owned customers' states.
    pub fn refresh_gauges(&self, now: Timestamp) {
        let mut gauges = StateGauges::default();
        let mut by_state: BTreeMap<&'static str, i64> = crate::domain::Phase::NAMES
            .iter()
            .map(|n| (*n, 0))
            .collect();
        let mut oldest: Option<Timestamp> = None;
        for engine in self.engines.values() {
            gauges.pending_timers += engine.timer_count() as i64;
            engine.store().for_each(&mut |_, state| {
                *by_state.entry(state.phase.name()).or_default() += 1;
                if let crate::domain::Phase::Dismantling { dismantle, .. } = &state.phase {
                    if dismantle.stalled {
                        gauges.stalled += 1;
                    }
                    oldest =
                        Some(oldest.map_or(dismantle.started_at, |o| o.min(dismantle.started_at)));
                }
            });
        }
        gauges.by_state = by_state.into_iter().collect();
        gauges.oldest_dismantle_age_seconds = oldest.map_or(0.0, |o| now.since(o).as_secs_f64());
        self.metrics.set_state_gauges(&gauges);
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// librdkafka's flush: sends what lingers at once and waits (up to `timeout`)
/// until every record is acknowledged; the producer's own thread serves the
/// delivery reports. A timeout is left for commit_transaction to report.
fn flush(producer: &TxProducer, timeout: Duration) {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: a live producer handle; rd_kafka_flush is thread-safe.
    let _ = unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), ms) };
}

/// The low and high watermarks librdkafka last saw in a fetch response for
/// this partition (no request), or None before the first fetch.
fn cached_watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: a live client handle, a NUL-terminated topic name and two
    // out-pointers; rd_kafka_get_watermark_offsets only reads cached state.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low, high))
}
