//! Where an input record becomes the records a transaction writes.
//!
//! bytes → validated envelope (codec, contract checks) → the partition's
//! engine (the pure domain core) → outputs encoded with their headers, or a
//! dead letter. No Kafka client types: the worker feeds it records and sends
//! what it returns, so every rule here is tested in-process.

use super::options::{StateFormat, WorkerOptions};
use super::records::{self, InputRecord, Kind, Outgoing, TRACEPARENT};
use crate::codec::Codec;
use crate::contract::{DeadLetterReason, DecodeError, InputEnvelope, OutputRecord};
use crate::domain::{CustomerState, Effect, Phase};
use crate::engine::{Engine, Partitions, SharedEngines, StateStore};
use crate::store::Checkpoint;
use crate::telemetry::metrics::EventTally;
use crate::telemetry::{Metrics, StateGauges};
use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::debug;

/// Why the pipeline could not handle a record or a timer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// Something outside the record failed (the schema registry is down):
    /// abort, back off and retry.
    #[error("transient failure, the batch will be retried: {0}")]
    Transient(String),
    /// An output cannot be encoded (the registry refuses our credentials):
    /// retrying cannot help.
    #[error("cannot encode an output: {0}")]
    Encode(String),
    /// A record of a partition whose state is not loaded.
    #[error("no state restored for partition {0}")]
    NoState(i32),
}

/// What one input record gave.
#[derive(Debug, Default)]
pub struct Handled {
    pub outgoing: Vec<Outgoing>,
    /// Set when the record went to the dead-letter topic.
    pub dead_letter: Option<DeadLetterReason>,
    /// What the event did (none for a dead letter).
    pub effect: Option<Effect>,
}

/// What one round of timer firing gave.
#[derive(Debug, Default)]
pub struct Fired {
    pub outgoing: Vec<Outgoing>,
    /// Customers whose timers fired.
    pub customers: usize,
    /// More timers are due by `now` than the round was allowed to fire.
    pub more_due: bool,
}

pub struct Pipeline {
    opts: Arc<WorkerOptions>,
    codec: Codec,
    engines: SharedEngines,
    metrics: Arc<Metrics>,
    /// Largest record the producer writes (its `message.max.bytes`).
    max_produce_bytes: usize,
    /// Events counted since the last commit or rollback.
    tally: std::cell::RefCell<EventTally>,
}

impl Pipeline {
    pub fn new(
        opts: Arc<WorkerOptions>,
        codec: Codec,
        engines: SharedEngines,
        metrics: Arc<Metrics>,
    ) -> Self {
        let max_produce_bytes = opts.max_produce_bytes();
        Pipeline {
            opts,
            codec,
            engines,
            metrics,
            max_produce_bytes,
            tally: Default::default(),
        }
    }

    pub fn engines(&self) -> &SharedEngines {
        &self.engines
    }

    pub fn owns(&self, partition: i32) -> bool {
        self.engines.lock().contains_key(&partition)
    }

    pub fn owned(&self) -> Vec<i32> {
        self.engines.lock().keys().copied().collect()
    }

    /// Takes over restored engines (their state is committed).
    pub fn adopt(&self, restored: Partitions) {
        self.engines.lock().extend(restored);
    }

    /// Forgets partitions given away (or about to be restored afresh).
    pub fn release(&self, partitions: &[i32]) {
        let mut engines = self.engines.lock();
        for p in partitions {
            engines.remove(p);
        }
    }

    /// Handles one input record at wall-clock time `now`.
    ///
    /// # Errors
    /// [`PipelineError::Transient`] when the schema registry cannot be
    /// reached, [`PipelineError::Encode`] when an output cannot be encoded,
    /// [`PipelineError::NoState`] for a partition without restored state.
    pub fn handle(
        &self,
        input: &InputRecord<'_>,
        now: Timestamp,
    ) -> Result<Handled, PipelineError> {
        let env = match self.validate(input, now) {
            Ok(env) => env,
            Err(err) if crate::codec::is_transient(&err) => {
                return Err(PipelineError::Transient(err.to_string()));
            }
            Err(err) => {
                self.tally.borrow_mut().consumed(input.topic, "invalid");
                let dlq = records::dead_letter(
                    input,
                    &self.opts.topics.dead_letter,
                    err.reason,
                    &err.message,
                    self.max_produce_bytes,
                );
                return Ok(Handled {
                    outgoing: vec![dlq],
                    dead_letter: Some(err.reason),
                    effect: None,
                });
            }
        };
        let event_type = env.event.event_type();
        self.tally.borrow_mut().consumed(input.topic, event_type);
        let traceparent = input.header(TRACEPARENT);
        let span = tracing::debug_span!(
            "decide",
            event_id = %env.event_id,
            customer_id = %env.customer_id,
            event_type
        );
        super::tracing_context::link_parent(&span, traceparent);
        let _entered = span.enter();
        let handled = {
            let mut engines = self.engines.lock();
            let engine = engines
                .get_mut(&input.partition)
                .ok_or(PipelineError::NoState(input.partition))?;
            engine.handle(&env, now)
        };
        match handled.effect {
            Effect::Duplicate => self.metrics.duplicate(),
            Effect::Ignored(reason) => self.metrics.outcome_ignored(reason.as_str()),
            Effect::Rejected(code) => self.metrics.rejected(code.as_str()),
            Effect::Applied | Effect::Timers => {}
        }
        debug!(event_id = %env.event_id, customer_id = %env.customer_id, event_type, effect = ?handled.effect, outputs = handled.outputs.len(), "event handled");
        let mut outgoing = Vec::with_capacity(handled.outputs.len());
        for record in &handled.outputs {
            outgoing.push(self.encode(record, traceparent)?);
        }
        Ok(Handled {
            outgoing,
            dead_letter: None,
            effect: Some(handled.effect),
        })
    }

    /// Fires due timers, earliest first across the owned partitions, for at
    /// most `max_customers` customers: a month-end burst is spread over many
    /// transactions instead of one that outlives the transaction timeout.
    ///
    /// # Errors
    /// As [`handle`](Self::handle) for encoding the outputs.
    pub fn fire_timers(
        &self,
        now: Timestamp,
        max_customers: usize,
    ) -> Result<Fired, PipelineError> {
        let mut fired = Fired::default();
        let mut records: Vec<OutputRecord> = Vec::new();
        {
            let mut engines = self.engines.lock();
            while fired.customers < max_customers {
                let earliest = engines
                    .iter_mut()
                    .filter_map(|(p, e)| e.next_due().filter(|d| *d <= now).map(|d| (d, *p)))
                    .min();
                let Some((_, partition)) = earliest else {
                    break;
                };
                let Some(outputs) = engines
                    .get_mut(&partition)
                    .and_then(|e| e.fire_next_due(now))
                else {
                    break;
                };
                fired.customers += 1;
                records.extend(outputs);
            }
            fired.more_due = engines
                .values_mut()
                .any(|e| e.next_due().is_some_and(|d| d <= now));
        }
        if fired.customers > 0 {
            self.metrics.timers_fired(fired.customers as u64);
        }
        for record in &records {
            debug!(customer_id = %record.key, event_type = record.envelope.event_type, termination_id = ?record.envelope.event.termination_id(), "timer output");
            fired.outgoing.push(self.encode(record, None)?);
        }
        Ok(fired)
    }

    /// Whether any owned customer's timer is due by `now`.
    pub fn timers_due(&self, now: Timestamp) -> bool {
        self.engines
            .lock()
            .values_mut()
            .any(|e| e.next_due().is_some_and(|d| d <= now))
    }

    /// Customers the open batch changed: the changelog records still to write.
    pub fn changed(&self) -> usize {
        self.engines
            .lock()
            .values()
            .map(Engine::changed_count)
            .sum()
    }

    /// The changelog record of every customer the open batch changed
    /// (a tombstone for a forgotten one), by partition and key.
    pub fn changelog(&self) -> Vec<Outgoing> {
        let mut engines = self.engines.lock();
        let mut out = Vec::new();
        let topic = &self.opts.topics.changelog;
        let record = |partition: i32, key: &str, value: Option<Vec<u8>>| Outgoing {
            topic: topic.clone(),
            partition: Some(partition),
            key: Some(key.as_bytes().to_vec()),
            value,
            headers: Vec::new(),
            kind: Kind::Changelog,
        };
        for (partition, engine) in engines.iter_mut() {
            match self.opts.state_format {
                // Encoded once: the store writes the same bytes at commit.
                StateFormat::Binary => out.extend(
                    engine
                        .encoded_changes()
                        .into_iter()
                        .map(|(key, value)| record(*partition, key, value.map(<[u8]>::to_vec))),
                ),
                StateFormat::Json => {
                    out.extend(engine.changes().into_iter().map(|(key, state)| {
                        record(*partition, key, state.map(CustomerState::to_json_bytes))
                    }))
                }
            }
        }
        out
    }

    /// The batch is committed: hand each partition's changes to its store,
    /// with the changelog offset its last record landed at.
    pub fn commit(&self, checkpoints: &BTreeMap<i32, Checkpoint>) {
        self.metrics.add_tally(&mut self.tally.borrow_mut());
        for (partition, engine) in self.engines.lock().iter_mut() {
            engine.commit_at(checkpoints.get(partition).copied());
        }
    }

    /// The first failure of an owned partition's store, if any.
    pub fn store_failure(&self) -> Option<String> {
        self.engines
            .lock()
            .iter()
            .find_map(|(p, e)| e.store().failure().map(|f| format!("partition {p}: {f}")))
    }

    /// The batch was aborted: put back every state it changed.
    pub fn rollback(&self) {
        // Counted as handled, as they were before the batch aborted.
        self.metrics.add_tally(&mut self.tally.borrow_mut());
        for engine in self.engines.lock().values_mut() {
            engine.rollback();
        }
    }

    /// Recomputes the gauges derived from owned customers' states.
    pub fn refresh_gauges(&self, now: Timestamp) {
        let mut gauges = StateGauges::default();
        let mut by_state: BTreeMap<&'static str, i64> =
            Phase::NAMES.iter().map(|n| (*n, 0)).collect();
        let mut oldest: Option<Timestamp> = None;
        for engine in self.engines.lock().values() {
            let stats = engine.store().stats();
            gauges.pending_timers += stats.timers as i64;
            for (name, count) in Phase::NAMES.iter().zip(stats.by_phase) {
                *by_state.entry(name).or_default() += count as i64;
            }
            gauges.stalled += stats.stalled as i64;
            if let Some(started_at) = engine.store().oldest_dismantling() {
                oldest = Some(oldest.map_or(started_at, |o| o.min(started_at)));
            }
        }
        gauges.by_state = by_state.into_iter().collect();
        gauges.oldest_dismantle_age_seconds = oldest.map_or(0.0, |o| now.since(o).as_secs_f64());
        self.metrics.set_state_gauges(&gauges);
    }

    fn encode(
        &self,
        record: &OutputRecord,
        traceparent: Option<&[u8]>,
    ) -> Result<Outgoing, PipelineError> {
        let topic = self.opts.topics.name(record.topic);
        let (value, content_type) = self.codec.encode(topic, record).map_err(|e| {
            if e.is_transient() {
                PipelineError::Transient(e.to_string())
            } else {
                PipelineError::Encode(e.to_string())
            }
        })?;
        self.tally
            .borrow_mut()
            .produced(topic, record.envelope.event_type);
        Ok(Outgoing {
            topic: topic.to_owned(),
            partition: None,
            key: Some(record.key.as_bytes().to_vec()),
            value: Some(value),
            headers: records::output_headers(record, traceparent, content_type),
            kind: Kind::Output {
                event_type: record.envelope.event_type,
            },
        })
    }

    fn validate(
        &self,
        input: &InputRecord<'_>,
        now: Timestamp,
    ) -> Result<InputEnvelope, DecodeError> {
        let payload = input.value.unwrap_or_default();
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
        let content_type = input
            .header("content-type")
            .and_then(|v| std::str::from_utf8(v).ok());
        let env = self.codec.decode(input.topic, payload, content_type)?;
        let expected = env.event.topic();
        if self.opts.topics.input_role(input.topic) != Some(expected) {
            return Err(DecodeError::new(
                DeadLetterReason::WrongTopic,
                format!(
                    "this event type belongs on {}, not on {}",
                    self.opts.topics.name(expected),
                    input.topic
                ),
            ));
        }
        if input.key != Some(env.customer_id.as_bytes()) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::WireFormat;
    use crate::kafka::KafkaSettings;

    fn pipeline(opts: WorkerOptions) -> Pipeline {
        let codec = Codec::new(WireFormat::Json, None).expect("codec");
        let engines = SharedEngines::default();
        let policy = Arc::new(opts.policy.clone());
        engines.lock().insert(
            0,
            Engine::with_store(
                policy,
                crate::store::PartitionStore::Memory(crate::store::MemoryStore::new()),
            ),
        );
        Pipeline::new(Arc::new(opts), codec, engines, Arc::new(Metrics::default()))
    }

    fn options() -> WorkerOptions {
        WorkerOptions::new(KafkaSettings::default())
    }

    fn record<'a>(topic: &'a str, key: &'a str, value: &'a [u8]) -> InputRecord<'a> {
        InputRecord {
            topic,
            partition: 0,
            offset: 7,
            timestamp_ms: Some(1),
            key: Some(key.as_bytes()),
            value: Some(value),
            headers: vec![("traceparent", Some(b"00-abc-def-01".as_slice()))],
        }
    }

    fn request(customer: &str, id: &str, at: Timestamp) -> Vec<u8> {
        serde_json::json!({
            "eventId": id, "eventType": "CustomerTerminationRequested",
            "eventTime": at.to_rfc3339(), "event": {"customerId": customer},
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_valid_record_becomes_outputs_with_their_headers() {
        let p = pipeline(options());
        let now = Timestamp::now();
        let value = request("C-1", "e-1", now);
        let lifecycle = crate::contract::Topic::Lifecycle.default_name();
        let handled = p.handle(&record(lifecycle, "C-1", &value), now).unwrap();
        assert_eq!(handled.dead_letter, None);
        assert_eq!(handled.outgoing.len(), 1);
        let out = &handled.outgoing[0];
        assert_eq!(
            out.kind,
            Kind::Output {
                event_type: "TerminationAccepted"
            }
        );
        assert_eq!(out.topic, "crm.termination.status.v1");
        assert!(
            out.headers
                .iter()
                .any(|(k, v)| k == "traceparent" && **v == *b"00-abc-def-01")
        );
        assert_eq!(p.changed(), 1, "one customer to write to the changelog");
        let changelog = p.changelog();
        assert_eq!(changelog.len(), 1);
        assert_eq!(changelog[0].partition, Some(0));
        p.rollback();
        assert_eq!(p.changed(), 0);
    }

    #[test]
    fn refused_records_become_dead_letters_that_fit_the_producer() {
        let mut opts = options();
        opts.max_record_bytes = 4 * 1024 * 1024;
        let p = pipeline(opts);
        let now = Timestamp::now();
        let lifecycle = crate::contract::Topic::Lifecycle.default_name();
        let value = request("C-1", "e-1", now);
        let wrong_key = p.handle(&record(lifecycle, "C-2", &value), now).unwrap();
        assert_eq!(wrong_key.dead_letter, Some(DeadLetterReason::KeyMismatch));
        assert_eq!(wrong_key.outgoing[0].value.as_deref(), Some(&value[..]));
        let huge = vec![b'{'; 1_500_000];
        let big = p.handle(&record(lifecycle, "C-1", &huge), now).unwrap();
        assert_eq!(big.dead_letter, Some(DeadLetterReason::InvalidJson));
        let dlq = &big.outgoing[0];
        assert!(dlq.value.is_none() && dlq.size() <= 1_000_000);
        assert!(
            dlq.headers
                .iter()
                .any(|(k, v)| k == records::VALUE_BYTES && **v == *b"1500000")
        );
    }

    #[test]
    fn due_timers_fire_earliest_first_a_bounded_number_at_a_time() {
        let mut opts = options();
        opts.policy = crate::domain::Policy::with_default(crate::domain::Rule {
            customer_notice: crate::time::Period::ZERO,
            ..crate::domain::Rule::default()
        });
        let p = pipeline(opts);
        let lifecycle = crate::contract::Topic::Lifecycle.default_name();
        let t0 = Timestamp::from_millis(1_800_000_000_000);
        for c in 0..5 {
            // Requested dates in reverse order of arrival.
            let customer = format!("C-{c}");
            let value = serde_json::json!({
                "eventId": format!("e-{c}"), "eventType": "CustomerTerminationRequested",
                "eventTime": t0.to_rfc3339(),
                "event": {"customerId": customer,
                          "requestedEffectiveDate": t0.plus(std::time::Duration::from_secs(100 - c)).to_rfc3339()},
            })
            .to_string();
            p.handle(&record(lifecycle, &customer, value.as_bytes()), t0)
                .unwrap();
        }
        p.commit(&BTreeMap::new());
        let later = t0.plus(std::time::Duration::from_secs(1000));
        let first = p.fire_timers(later, 2).unwrap();
        assert_eq!(first.customers, 2);
        assert!(first.more_due);
        let keys: Vec<_> = first
            .outgoing
            .iter()
            .map(|o| o.key.clone().unwrap())
            .collect();
        assert_eq!(keys[0], b"C-4", "the earliest due first");
        assert_eq!(keys[3], b"C-3");
        assert_eq!(first.outgoing.len(), 6, "three instructions each");
        let rest = p.fire_timers(later, 10).unwrap();
        assert_eq!(rest.customers, 3);
        assert!(!rest.more_due);
        assert!(!p.timers_due(later));
    }

    #[test]
    fn queries_see_committed_state_only() {
        let p = pipeline(options());
        let now = Timestamp::now();
        let lifecycle = crate::contract::Topic::Lifecycle.default_name();
        let value = request("C-1", "e-1", now);
        p.handle(&record(lifecycle, "C-1", &value), now).unwrap();
        assert_eq!(
            p.engines().committed(0, "C-1"),
            crate::engine::Lookup::Unknown
        );
        assert_eq!(
            p.engines().committed(1, "C-1"),
            crate::engine::Lookup::NotOwned
        );
        p.commit(&BTreeMap::new());
        assert!(matches!(
            p.engines().committed(0, "C-1"),
            crate::engine::Lookup::Found(_)
        ));
    }
}
