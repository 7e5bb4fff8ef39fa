//! The transactional producer as an explicit state machine.
//!
//! ```text
//!            begin            commit ok
//!   Idle ──────────► Open ──────────► Committing ──► Idle
//!    ▲                │                   │
//!    │   abort ok     │ abort             │ timed out / fatal mid-commit
//!    ├──────────── Aborting               ▼
//!    │                │ abort failed   OutcomeUnknown ─┐
//!    │                ▼                                │ rebuild: init_transactions
//!    └──────────── Broken ◄────────────────────────────┘ completes or aborts it
//! ```
//!
//! Only `rebuild` leaves `Broken` and `OutcomeUnknown`: a new producer under
//! the same transactional id, whose `init_transactions` settles whatever the
//! old one left pending. Whether an unknown commit landed is then read back
//! from Kafka (changelog and committed offsets), never guessed.

use super::WorkerError;
use super::options::WorkerOptions;
use super::records::Outgoing;
use crate::store::Checkpoint;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

pub type TxProducer = ThreadedProducer<ChangelogDeliveries>;

/// The producer's context: notes the offset of every changelog record the
/// brokers acknowledge, so that a committed transaction tells each
/// partition's store which changelog offset its state reaches.
pub struct ChangelogDeliveries {
    changelog: String,
    marks: Mutex<BTreeMap<i32, Checkpoint>>,
}

impl ChangelogDeliveries {
    fn take(&self) -> BTreeMap<i32, Checkpoint> {
        std::mem::take(
            &mut *self
                .marks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl ClientContext for ChangelogDeliveries {}

impl ProducerContext for ChangelogDeliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let Ok(msg) = result else { return };
        if msg.topic() != self.changelog {
            return;
        }
        let mark = Checkpoint {
            offset: msg.offset(),
            fingerprint: crate::store::record_fingerprint(msg.key(), msg.payload()),
        };
        let mut marks = self
            .marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = marks.entry(msg.partition()).or_insert(mark);
        if mark.offset >= entry.offset {
            *entry = mark;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnState {
    /// No transaction open.
    Idle,
    /// A transaction is open and healthy: records may be added, it may commit.
    Open,
    /// commit_transaction is under way.
    Committing,
    /// A commit failed in a way that leaves its outcome open.
    OutcomeUnknown,
    /// abort_transaction is under way.
    Aborting,
    /// The producer failed fatally; only `rebuild` helps.
    Broken,
}

/// Why a record could not be added to the transaction.
#[derive(Debug)]
pub enum SendError {
    /// The record exceeds the producer's `message.max.bytes`.
    TooLarge,
    /// The transaction itself failed.
    Txn(WorkerError),
}

pub struct Transactions {
    opts: Arc<WorkerOptions>,
    producer: TxProducer,
    state: TxnState,
    opened: Option<Instant>,
    /// How long the last commit waited for its records' acknowledgements.
    last_flush: Duration,
}

impl Transactions {
    /// Creates the producer and fences any previous incarnation.
    ///
    /// # Errors
    /// [`WorkerError`] when the producer cannot be created or initialised.
    pub fn new(opts: Arc<WorkerOptions>) -> Result<Self, WorkerError> {
        let producer = create_producer(&opts)?;
        Ok(Transactions {
            opts,
            producer,
            state: TxnState::Idle,
            opened: None,
            last_flush: Duration::ZERO,
        })
    }

    pub fn state(&self) -> TxnState {
        self.state
    }

    /// How long the last commit waited for its records to be acknowledged
    /// (the rest of a commit is the offsets and `EndTxn`).
    pub fn last_flush(&self) -> Duration {
        self.last_flush
    }

    /// Whether a healthy transaction is open.
    pub fn is_open(&self) -> bool {
        self.state == TxnState::Open
    }

    /// How long the open transaction has been open.
    pub fn open_for(&self) -> Option<Duration> {
        self.opened.map(|t| t.elapsed())
    }

    /// Opens a transaction unless one is open.
    ///
    /// # Errors
    /// The classified error; the state is then `Broken` or stays `Idle`.
    pub fn begin(&mut self) -> Result<(), WorkerError> {
        match self.state {
            TxnState::Open => Ok(()),
            TxnState::Idle => match self.producer.begin_transaction() {
                Ok(()) => {
                    // Reports of an aborted transaction's records say nothing
                    // about committed state.
                    self.producer.context().take();
                    self.state = TxnState::Open;
                    self.opened = Some(Instant::now());
                    Ok(())
                }
                Err(e) => Err(self.fail(e)),
            },
            other => Err(WorkerError::ProducerBroken(format!(
                "cannot begin a transaction while the producer is {other:?}"
            ))),
        }
    }

    /// Adds one record; a full local queue is waited out.
    ///
    /// # Errors
    /// [`SendError::TooLarge`] for a record over `message.max.bytes` (the
    /// transaction stays usable); otherwise the classified error.
    pub fn send(&mut self, out: &Outgoing) -> Result<(), SendError> {
        if self.state != TxnState::Open {
            return Err(SendError::Txn(WorkerError::ProducerBroken(format!(
                "no open transaction to add a record to (producer {:?})",
                self.state
            ))));
        }
        let mut headers = OwnedHeaders::new_with_capacity(out.headers.len());
        for (key, value) in &out.headers {
            headers = headers.insert(Header {
                key: key.as_ref(),
                value: Some(value.as_ref()),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&out.topic).headers(headers);
        if let Some(key) = &out.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &out.value {
            record = record.payload(value.as_slice());
        }
        if let Some(p) = out.partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    return Err(SendError::TooLarge);
                }
                Err((e, _)) => return Err(SendError::Txn(self.fail(e))),
            }
        }
    }

    /// Adds the consumed offsets, with the consumer's group metadata (KIP-447:
    /// the group coordinator refuses them from a member that lost its
    /// partitions, which fences a zombie).
    ///
    /// # Errors
    /// The classified error.
    pub fn send_offsets(
        &mut self,
        offsets: &TopicPartitionList,
        metadata: &ConsumerGroupMetadata,
    ) -> Result<(), WorkerError> {
        self.producer
            .send_offsets_to_transaction(offsets, metadata, Duration::from_secs(30))
            .map_err(|e| self.fail(e))
    }

    /// Flushes and commits. A commit that timed out, or failed fatally while
    /// under way, leaves `OutcomeUnknown`: it may have landed.
    ///
    /// # Errors
    /// [`WorkerError::OutcomeUnknown`], or the classified error of a commit
    /// that surely did not land (`Abortable`: abort and retry).
    pub fn commit(&mut self) -> Result<(), WorkerError> {
        if self.state != TxnState::Open {
            return Err(WorkerError::ProducerBroken(format!(
                "no open transaction to commit (producer {:?})",
                self.state
            )));
        }
        self.state = TxnState::Committing;
        // librdkafka's own flush returns as soon as every record is
        // acknowledged; the flush inside commit_transaction polls in 100 ms
        // steps.
        let flushing = Instant::now();
        flush(&self.producer, self.opts.transaction_timeout);
        self.last_flush = flushing.elapsed();
        let mut attempts = 0;
        loop {
            match self
                .producer
                .commit_transaction(self.opts.transaction_timeout)
            {
                Ok(()) => {
                    self.state = TxnState::Idle;
                    self.opened = None;
                    return Ok(());
                }
                Err(KafkaError::Transaction(e)) if e.is_retriable() && attempts < 3 => {
                    attempts += 1;
                    warn!(error = %e, attempts, "transaction commit will be retried");
                }
                Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => {
                    // The transaction is in an abortable state: it did not land.
                    self.state = TxnState::Open;
                    return Err(WorkerError::Abortable(KafkaError::Transaction(e)));
                }
                Err(e) => {
                    let classified = self.classify(&e);
                    if matches!(classified, WorkerError::Fenced(_) | WorkerError::Fatal(_)) {
                        self.state = TxnState::Broken;
                        return Err(classified);
                    }
                    self.state = TxnState::OutcomeUnknown;
                    return Err(WorkerError::OutcomeUnknown(format!(
                        "commit_transaction failed after the commit was requested: {e}"
                    )));
                }
            }
        }
    }

    /// The changelog records the last committed transaction wrote, by
    /// partition: the offset of the last one and its fingerprint. Call
    /// right after [`commit`](Self::commit) succeeds.
    pub fn take_changelog_marks(&self) -> BTreeMap<i32, Checkpoint> {
        self.producer.context().take()
    }

    /// Aborts the open transaction, if any.
    ///
    /// # Errors
    /// `Fenced` when another instance took our transactional id; otherwise
    /// the producer is marked `Broken` and `ProducerBroken` returned.
    pub fn abort(&mut self) -> Result<(), WorkerError> {
        match self.state {
            TxnState::Idle => return Ok(()),
            TxnState::Open | TxnState::Aborting => {}
            TxnState::Committing | TxnState::OutcomeUnknown | TxnState::Broken => {
                return Err(WorkerError::ProducerBroken(format!(
                    "cannot abort while the producer is {:?}",
                    self.state
                )));
            }
        }
        self.state = TxnState::Aborting;
        match self.producer.abort_transaction(Duration::from_secs(30)) {
            Ok(()) => {
                self.state = TxnState::Idle;
                self.opened = None;
                Ok(())
            }
            Err(e) => {
                let classified = self.classify(&e);
                self.state = TxnState::Broken;
                match classified {
                    fenced @ WorkerError::Fenced(_) => Err(fenced),
                    other => Err(WorkerError::ProducerBroken(other.to_string())),
                }
            }
        }
    }

    /// Replaces the producer with a new one under the same transactional id:
    /// its init_transactions completes or aborts whatever the old one left
    /// pending. Retried while the brokers are unreachable.
    ///
    /// # Errors
    /// `Fenced`, or `Fatal` after the attempts ran out.
    pub fn rebuild(&mut self) -> Result<(), WorkerError> {
        let mut last = None;
        for attempt in 1..=15 {
            match create_producer(&self.opts) {
                Ok(producer) => {
                    self.producer = producer;
                    self.state = TxnState::Idle;
                    self.opened = None;
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

    /// Classifies an error and moves the state on: fatal producer errors
    /// leave it `Broken`, abortable ones keep the transaction `Open` (to be
    /// aborted).
    fn fail(&mut self, err: KafkaError) -> WorkerError {
        let classified = self.classify(&err);
        if !matches!(classified, WorkerError::Abortable(_)) {
            self.state = TxnState::Broken;
        }
        classified
    }

    /// Sorts an error of the transactional producer. A fencing error on a
    /// transaction that has been open about as long as the transaction
    /// timeout is the broker aborting our own late transaction (librdkafka
    /// reports `_FENCED` for it too), not another instance.
    fn classify(&self, err: &KafkaError) -> WorkerError {
        if let Some(reason) = crate::kafka::preflight::authorization_failure(err) {
            return WorkerError::Fatal(reason);
        }
        let fenced = matches!(
            err.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::Fenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
            )
        ) || matches!(err, KafkaError::Transaction(e) if matches!(e.code(),
            RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fenced | RDKafkaErrorCode::InvalidProducerEpoch));
        if fenced {
            let open_for = self.open_for().unwrap_or_default();
            // The coordinator aborts at transaction.timeout.ms after the
            // first partition was added; allow for clocks and round trips.
            if open_for + Duration::from_millis(500) >= self.opts.transaction_timeout {
                return WorkerError::TransactionTimedOut(format!(
                    "the broker aborted our transaction after it was open for {} ms (transaction timeout {} ms): {err}",
                    open_for.as_millis(),
                    self.opts.transaction_timeout.as_millis()
                ));
            }
            return WorkerError::Fenced(format!(
                "transactional id {}: {err}",
                self.opts.transactional_id()
            ));
        }
        if let KafkaError::Transaction(e) = err
            && e.is_fatal()
        {
            return WorkerError::ProducerBroken(e.to_string());
        }
        WorkerError::Abortable(err.clone())
    }
}

/// librdkafka's first retry backoff and its cap for the transactional
/// producer, unless the operator set them (`--kafka`, `KAFKA_*`). Right after
/// a commit, the next transaction's AddOffsetsToTxn is refused with
/// CONCURRENT_TRANSACTIONS until the broker has written the previous one's
/// markers, which in a new producer's first seconds takes 100–800 ms. At
/// librdkafka's defaults (100 ms doubling to 1 s) the retries overshoot that
/// wait by up to twice: commits of 300–800 ms, and a p99 of 700–1,000 ms over
/// the first second of input. Retrying every 20–100 ms waits about as long
/// as the broker does.
const RETRY_BACKOFF: [(&str, &str); 2] =
    [("retry.backoff.ms", "20"), ("retry.backoff.max.ms", "100")];

/// The transactional producer's configuration.
fn producer_config(opts: &WorkerOptions) -> ClientConfig {
    let mut config = opts.kafka.client_config();
    for (key, value) in RETRY_BACKOFF {
        if config.get(key).is_none() {
            config.set(key, value);
        }
    }
    config
        .set("transactional.id", opts.transactional_id())
        .set("enable.idempotence", "true")
        .set(
            "transaction.timeout.ms",
            opts.transaction_timeout.as_millis().to_string(),
        )
        // The Java clients' placement of keyed records (see kafka::murmur2).
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "lz4");
    config
}

fn create_producer(opts: &WorkerOptions) -> Result<TxProducer, WorkerError> {
    let config = producer_config(opts);
    let context = ChangelogDeliveries {
        changelog: opts.topics.changelog.clone(),
        marks: Mutex::new(BTreeMap::new()),
    };
    let producer: TxProducer =
        config
            .create_with_context(context)
            .map_err(|source| WorkerError::Client {
                role: "transactional producer",
                source,
            })?;
    producer
        .init_transactions(Duration::from_secs(60))
        .map_err(|e| {
            if let Some(reason) = crate::kafka::preflight::authorization_failure(&e) {
                return WorkerError::Fatal(reason);
            }
            match e.rdkafka_error_code() {
                Some(
                    RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::Fenced
                    | RDKafkaErrorCode::InvalidProducerEpoch,
                ) => WorkerError::Fenced(format!(
                    "transactional id {}: {e}",
                    opts.transactional_id()
                )),
                _ => WorkerError::Client {
                    role: "transactional producer (init_transactions)",
                    source: e,
                },
            }
        })?;
    warm_up(&producer, opts);
    Ok(producer)
}

/// Loads the metadata of every topic the producer writes before the first
/// transaction: librdkafka otherwise asks for a topic's metadata when its
/// first record is sent and holds the record until the answer comes, which
/// made the first transactions after a start the slowest (issue 14). A
/// failure only costs that delay, so it is logged and ignored.
fn warm_up(producer: &TxProducer, opts: &WorkerOptions) {
    let t = &opts.topics;
    for topic in [
        &t.changelog,
        &t.status,
        &t.dismantle,
        &t.terminated,
        &t.dead_letter,
    ] {
        if let Err(e) = producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
        {
            warn!(topic = %topic, error = %e, "cannot load the topic's metadata ahead of the first transaction");
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::KafkaSettings;

    #[test]
    fn the_producer_retries_a_busy_transaction_coordinator_soon() {
        let config = producer_config(&WorkerOptions::new(KafkaSettings::default()));
        assert_eq!(config.get("retry.backoff.ms"), Some("20"));
        assert_eq!(config.get("retry.backoff.max.ms"), Some("100"));
    }

    #[test]
    fn an_operators_retry_backoff_is_kept() {
        let kafka = KafkaSettings {
            bootstrap_servers: "127.0.0.1:9092".into(),
            properties: vec![("retry.backoff.ms".into(), "250".into())],
        };
        let config = producer_config(&WorkerOptions::new(kafka));
        assert_eq!(config.get("retry.backoff.ms"), Some("250"));
        assert_eq!(config.get("retry.backoff.max.ms"), Some("100"));
    }
}
