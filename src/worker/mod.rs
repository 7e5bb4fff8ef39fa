//! `terminus run`: consume, decide, publish and remember, exactly once.
//!
//! - [`pipeline`]: an input record → the records to write (codec, validation,
//!   the partition's engine); no Kafka client types.
//! - [`transaction`]: the transactional producer as a state machine.
//! - [`restore`]: a partition's state read back from the changelog.
//! - [`warm_up`]: a newcomer to a running group fills its disk store from
//!   the changelog before it joins.
//! - [`processor`]: the batch — one transaction per batch — and what to do
//!   when any part of it fails.
//! - this module: the consumer, its rebalance callbacks and the small loop.
//!
//! One thread polls the consumer and drives the [`Processor`]; rebalance
//! callbacks run inside that poll on the same thread, so a revocation commits
//! the open transaction before the partitions go. An assignment starts each
//! new partition's restore and pauses its input; the loop reads the changelog
//! between polls and resumes the partition once its state is complete, so the
//! partitions already owned keep going. With
//! `--tasks N`, N such threads run side by side ([`tasks`]).

mod options;
pub mod pipeline;
mod processor;
pub mod records;
mod restore;
pub mod resume_check;
pub mod tasks;
mod tracing_context;
pub mod transaction;
mod warm_up;

pub use options::{GroupProtocol, RegistrySettings, StateFormat, StoreKind, WarmUp, WorkerOptions};
pub use processor::Counters;
pub use tasks::TaskEngines;

use crate::engine::SharedEngines;
use crate::kafka::topics::{self, TopicError};
use crate::telemetry::{Metrics, Status};
use crate::time::Timestamp;
use processor::Processor;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Topics(#[from] TopicError),
    #[error("cannot create the Kafka {role}: {source}")]
    Client {
        role: &'static str,
        source: KafkaError,
    },
    #[error("fatal Kafka error, exiting so that the orchestrator restarts the worker: {0}")]
    Fatal(String),
    #[error(
        "the producer was fenced ({0}): another instance runs with this instance's transactional id; exiting (give every instance its own --instance-id)"
    )]
    Fenced(String),
    /// The broker aborted our own transaction at its timeout (librdkafka
    /// reports it as fencing): rebuild, restore and go on.
    #[error("our transaction outlived the transaction timeout and the broker aborted it: {0}")]
    TransactionTimedOut(String),
    /// A commit failed after it was requested: it may or may not have landed.
    #[error("the outcome of a transaction commit is unknown: {0}")]
    OutcomeUnknown(String),
    #[error("the producer failed fatally ({0}); it will be rebuilt")]
    ProducerBroken(String),
    #[error("transaction failed and will be retried: {0}")]
    Abortable(KafkaError),
    #[error("restoring partition {partition} from the changelog failed: {reason}")]
    Restore { partition: i32, reason: String },
    /// Something outside the record failed (the schema registry is down):
    /// abort, back off and retry the batch.
    #[error("transient failure, the batch will be retried: {0}")]
    Transient(String),
    #[error("cannot set up the codecs: {0}")]
    Codec(#[from] crate::codec::CodecError),
    #[error("schema registry: {0}")]
    Registry(#[from] crate::codec::RegistryError),
    /// The consumer lost its assignment and has not been given a new one.
    #[error("the consumer did not rejoin its group after losing its assignment")]
    Rejoin,
    /// The consumer's position cannot be trusted (a rewind failed): start
    /// it afresh from the committed offsets.
    #[error("resetting the consumer: {0}")]
    Reset(String),
    #[error("state store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error(
        "the partition count changed while running ({0}); stopping before a record reaches a partition without its state. Restore co-partitioning (docs/operations.md, resizing partitions) and restart"
    )]
    PartitionsChanged(String),
    /// `--tasks` does not fit the topics.
    #[error("{0}")]
    Tasks(String),
}

/// Rebalance callbacks reach the processor through this context.
struct WorkerContext {
    processor: Arc<Mutex<Processor>>,
    topics: topics::TopicNames,
}

impl ClientContext for WorkerContext {
    fn error(&self, error: KafkaError, reason: &str) {
        error!(error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut processor = lock(&self.processor);
        processor.rebalances += 1;
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let partitions = self.input_partitions(tpl);
                processor.revoke(consumer, &partitions, consumer.assignment_lost());
                // Incremental protocols revoke some partitions and keep the rest.
                let kept = self.kept_after_revoke(consumer, tpl);
                processor.status().set_owned(kept);
            }
            Rebalance::Assign(tpl) => {
                let partitions: Vec<i32> = self.input_partitions(tpl).into_iter().collect();
                info!(?partitions, "partitions assigned; restoring state");
                processor.metrics().rebalanced("assign");
                if let Err(e) = self.check_co_partitioned(consumer, tpl) {
                    if processor.fatal.is_none() {
                        processor.fatal = Some(e);
                    }
                    return;
                }
                let mut owned: BTreeSet<i32> = processor.status().owned().into_iter().collect();
                owned.extend(partitions.iter().copied());
                processor.status().set_owned(owned.into_iter().collect());
                if let Err(e) = processor.assign(&partitions)
                    && processor.fatal.is_none()
                {
                    processor.fatal = Some(e);
                }
            }
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
        }
    }

    /// The assignment is in place: hold back the input of partitions still
    /// being restored, so the loop can read their changelog between records
    /// of the others; after an incremental rebalance that only took
    /// partitions away, have the loop restart the kept ones' fetch.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(added) = rebalance {
            let mut processor = lock(&self.processor);
            processor.pause_restoring(consumer);
            if added.count() == 0 {
                processor.rebalanced_without_new_partitions();
            }
        }
    }
}

impl WorkerContext {
    /// Input partitions still assigned once `revoked` is gone (none under the
    /// classic protocol, which revokes everything).
    fn kept_after_revoke(
        &self,
        consumer: &BaseConsumer<Self>,
        revoked: &rdkafka::TopicPartitionList,
    ) -> Vec<i32> {
        let gone: BTreeSet<(String, i32)> = revoked
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let Ok(current) = consumer.assignment() else {
            return Vec::new();
        };
        let kept: rdkafka::TopicPartitionList = {
            let mut tpl = rdkafka::TopicPartitionList::new();
            for e in current.elements() {
                if !gone.contains(&(e.topic().to_owned(), e.partition())) {
                    tpl.add_partition(e.topic(), e.partition());
                }
            }
            tpl
        };
        self.input_partitions(&kept).into_iter().collect()
    }

    /// After this assignment, every owned partition number must come with
    /// all three input topics: a customer's events arrive on any of them,
    /// and only one engine may hold the customer.
    fn check_co_partitioned(
        &self,
        consumer: &BaseConsumer<Self>,
        added: &rdkafka::TopicPartitionList,
    ) -> Result<(), WorkerError> {
        let mut by_partition: std::collections::BTreeMap<i32, BTreeSet<String>> =
            std::collections::BTreeMap::new();
        let current = consumer.assignment().unwrap_or_default();
        for e in current.elements().iter().chain(added.elements().iter()) {
            if self.topics.input_role(e.topic()).is_some() {
                by_partition
                    .entry(e.partition())
                    .or_default()
                    .insert(e.topic().to_owned());
            }
        }
        let inputs = self.topics.inputs().len();
        let split: Vec<String> = by_partition
            .iter()
            .filter(|(_, topics)| topics.len() != inputs)
            .map(|(p, topics)| format!("partition {p} of {topics:?} only"))
            .collect();
        if split.is_empty() {
            return Ok(());
        }
        Err(WorkerError::Fatal(format!(
            "the group assigned input partitions without their co-partitioned siblings ({}); a customer's state would be split across instances. Use --group-protocol classic, or a broker whose consumer-group assignor keeps co-partitioned topics together",
            split.join(", ")
        )))
    }

    fn input_partitions(&self, tpl: &rdkafka::TopicPartitionList) -> BTreeSet<i32> {
        tpl.elements()
            .iter()
            .filter(|e| self.topics.input_role(e.topic()).is_some())
            .map(|e| e.partition())
            .collect()
    }
}

fn lock(m: &Mutex<Processor>) -> MutexGuard<'_, Processor> {
    // A panic while holding the lock leaves the processor in an unknown state;
    // the loop exits on the panic anyway, so take the guard as it is.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the worker shares with the admin server.
#[derive(Clone, Default)]
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    /// The process's status; with several tasks it combines theirs.
    pub status: Arc<Status>,
    /// The owned partitions' engines, per task, for queries of committed state.
    pub engines: TaskEngines,
    /// Filled with the input partition count after the topic check.
    pub partitions: Arc<OnceLock<i32>>,
}

/// How long the loop reads the changelog of partitions being restored
/// before it polls the input again.
const RESTORE_SLICE: Duration = Duration::from_millis(50);
/// How often consumer lag is recomputed (the issue asks for at most 10 s).
const LAG_INTERVAL: Duration = Duration::from_secs(5);
/// How long past the session timeout a consumer that lost its assignment may
/// wait for a new one before it is recreated.
const REJOIN_GRACE: Duration = Duration::from_secs(20);
/// How often the state gauges are recomputed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(10);
/// How often the topics' partition counts are compared with the start-up ones.
const LAYOUT_INTERVAL: Duration = Duration::from_secs(10);
/// The largest fetch of one input partition: librdkafka's default.
const INPUT_FETCH_BYTES: u64 = 1024 * 1024;

/// Runs the worker until `stop` is set, then commits, leaves the group and
/// returns. Blocking: call it from a dedicated thread.
///
/// # Errors
/// [`WorkerError`] when the topics are missing or mis-partitioned, a client
/// cannot be created, or Kafka reports a fatal error.
pub fn run(
    options: WorkerOptions,
    stop: Arc<AtomicBool>,
    telemetry: Telemetry,
) -> Result<(), WorkerError> {
    // Connects, authenticates and checks the ACLs on the topics and the group
    // before anything else, so a security mistake is one clear error.
    let layout =
        topics::check_with_group(&options.kafka, &options.topics, Some(&options.group_id))?;
    let _ = telemetry.partitions.set(layout.partitions);
    info!(
        partitions = layout.partitions,
        group_id = %options.group_id,
        transactional_id = %options.transactional_id(),
        tasks = options.tasks,
        "topics checked: inputs and changelog co-partitioned"
    );
    tasks::check_count(options.tasks, layout.partitions)?;
    // One database for every task: a partition moving between tasks keeps
    // its store.
    let stores = restore::Stores::open(&options)?;
    let options = Arc::new(options);
    warm_up::warm_up(
        &options,
        &stores,
        layout.partitions,
        &stop,
        &telemetry.status,
        &telemetry.metrics,
    )?;
    let result = if stop.load(Ordering::Relaxed) {
        Ok(())
    } else if options.tasks == 1 {
        // One task is the worker as it always was: its ids, its logs, the
        // process's status.
        let parts = TaskParts {
            task: 0,
            partitions: layout.partitions,
            stores: stores.clone(),
            metrics: telemetry.metrics.clone(),
            status: telemetry.status.clone(),
            engines: telemetry.engines.task(0),
            join_gate: None,
        };
        run_task(options, &stop, parts)
    } else {
        tasks::run_all(&options, &stop, &telemetry, &stores, layout.partitions)
    };
    telemetry.status.set_stopping();
    stores.persist();
    info!("worker stopped");
    result
}

/// What one processing task is given besides its options.
struct TaskParts {
    task: usize,
    /// The input partition count checked at start-up.
    partitions: i32,
    stores: restore::Stores,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
    engines: SharedEngines,
    /// With several tasks: where they wait for each other before joining.
    join_gate: Option<Arc<tasks::JoinGate>>,
}

/// One task: its consumer, producer and processor, until `stop` is set or
/// it fails; then it commits (or aborts) and leaves the group.
fn run_task(
    opts: Arc<WorkerOptions>,
    stop: &AtomicBool,
    parts: TaskParts,
) -> Result<(), WorkerError> {
    let TaskParts {
        task,
        partitions,
        stores,
        metrics,
        status,
        engines,
        join_gate,
    } = parts;
    let codec = create_codec(&opts)?;
    let txn = transaction::Transactions::new(opts.clone())?;
    let restorer = restore::Restorer::new(opts.clone(), stores, partitions)?;
    let pipeline = pipeline::Pipeline::new(opts.clone(), codec, engines, metrics.clone());
    let processor = Arc::new(Mutex::new(Processor::new(
        opts.clone(),
        txn,
        restorer,
        pipeline,
        partitions,
        metrics,
        status.clone(),
    )));
    if let Some(gate) = join_gate {
        gate.wait();
    }
    let mut consumer = subscribe(&opts, &processor, partitions)?;
    if opts.tasks == 1 {
        info!("worker started");
    } else {
        info!(task, "processing task started");
    }
    let result = loop {
        match run_loop(&consumer, &processor, &opts, stop, &status) {
            Err(e @ (WorkerError::Rejoin | WorkerError::Reset(_))) => {
                warn!(error = %e, "recreating the consumer; it rejoins the group and restores its partitions");
                lock(&processor).stop_after_error();
                drop(consumer);
                lock(&processor).resume_after_reset();
                consumer = subscribe(&opts, &processor, partitions)?;
            }
            other => break other,
        }
    };
    status.set_stopping();
    {
        let mut p = lock(&processor);
        match &result {
            Ok(()) => {
                if let Err(e) = p.commit(&consumer) {
                    warn!(error = %e, "final commit failed; the uncommitted batch will be reprocessed");
                    p.stop_after_error();
                }
            }
            // Abort before the consumer closes: its revoke callback must not
            // commit a half-processed record.
            Err(_) => p.stop_after_error(),
        }
    }
    drop(consumer);
    result
}

fn run_loop(
    consumer: &BaseConsumer<WorkerContext>,
    processor: &Mutex<Processor>,
    opts: &WorkerOptions,
    stop: &AtomicBool,
    status: &Status,
) -> Result<(), WorkerError> {
    let mut last_tick = Instant::now();
    let mut last_lag = Instant::now() - LAG_INTERVAL;
    let mut last_gauges = Instant::now() - GAUGE_INTERVAL;
    let mut last_layout = Instant::now();
    let mut last_restore = Instant::now();
    let mut paused = false;
    let mut seen_rebalances = 0u64;
    // More timers were due than the last round fired: keep firing without
    // waiting for the next tick.
    let mut timer_backlog = false;
    while !stop.load(Ordering::Relaxed) {
        status.beat(Timestamp::now().millis());
        // Pause/resume on an operator's request; a new assignment is paused again.
        let rebalances = lock(processor).rebalances;
        if status.pause_requested() && (!paused || rebalances != seen_rebalances) {
            if let Ok(assignment) = consumer.assignment() {
                let _ = consumer.pause(&assignment);
                info!(partitions = assignment.count(), "consumption paused");
            }
            paused = true;
        } else if !status.pause_requested() && paused {
            if let Ok(assignment) = consumer.assignment() {
                let _ = consumer.resume(&assignment);
                info!(partitions = assignment.count(), "consumption resumed");
            }
            paused = false;
        }
        seen_rebalances = rebalances;
        let timeout = {
            let p = lock(processor);
            if timer_backlog || p.is_restoring() {
                Duration::ZERO
            } else {
                p.poll_timeout()
            }
        };
        let polled = consumer.poll(timeout);
        let mut p = lock(processor);
        if let Some(err) = p.fatal.take() {
            return Err(err);
        }
        let drained = polled.is_none();
        match polled {
            Some(Ok(msg)) => {
                if let Err(e) = p.process(&msg, Timestamp::now()) {
                    p.recover(consumer, e)?;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                // A refused principal (an ACL revoked, the group's Read
                // missing) never heals by retrying: stop loudly.
                if let Some(reason) = crate::kafka::preflight::authorization_failure(&e) {
                    return Err(WorkerError::Fatal(reason));
                }
                warn!(error = %e, "consumer error");
            }
            None => {}
        }
        // A restore reads its changelog in slices between polls: whenever the
        // input is drained, and under a backlog at least every other slice.
        // The owned partitions keep flowing and the poll interval is never
        // exceeded.
        if p.is_restoring() && (drained || last_restore.elapsed() >= RESTORE_SLICE) {
            p.advance_restore(RESTORE_SLICE)?;
            last_restore = Instant::now();
        }
        if let Err(e) = p.resume_restored(consumer) {
            p.recover(consumer, e)?;
        }
        p.wake_fetchers(consumer);
        if let Err(e) = p.check_resumed(consumer) {
            p.recover(consumer, e)?;
        }
        if timer_backlog || last_tick.elapsed() >= opts.timer_interval {
            last_tick = Instant::now();
            match p.fire_timers(Timestamp::now()) {
                Ok(more) => timer_backlog = more,
                Err(e) => {
                    timer_backlog = true;
                    p.recover(consumer, e)?;
                }
            }
        }
        if p.commit_due(drained && !timer_backlog)
            && let Err(e) = p.commit(consumer)
        {
            p.recover(consumer, e)?;
        }
        if last_lag.elapsed() >= LAG_INTERVAL {
            last_lag = Instant::now();
            p.refresh_lag(consumer);
        }
        if last_layout.elapsed() >= LAYOUT_INTERVAL {
            last_layout = Instant::now();
            p.check_partition_counts(consumer)?;
        }
        // librdkafka normally rejoins by itself after a lost assignment; if no
        // rebalance arrives well after the session timeout, start afresh.
        if p.lost_since
            .is_some_and(|t| t.elapsed() > opts.session_timeout + REJOIN_GRACE)
        {
            p.lost_since = None;
            return Err(WorkerError::Rejoin);
        }
        if last_gauges.elapsed() >= GAUGE_INTERVAL {
            last_gauges = Instant::now();
            p.refresh_gauges(Timestamp::now());
        }
    }
    Ok(())
}

fn create_codec(opts: &WorkerOptions) -> Result<crate::codec::Codec, WorkerError> {
    let registry = match &opts.schema_registry {
        None => None,
        Some(r) => {
            let mut client = crate::codec::RegistryClient::new(&r.url)?;
            if let (Some(user), Some(password)) = (&r.user, &r.password) {
                client = client.with_basic_auth(user, password);
            }
            Some(client)
        }
    };
    Ok(crate::codec::Codec::new(opts.output_format, registry)?)
}

fn subscribe(
    opts: &WorkerOptions,
    processor: &Arc<Mutex<Processor>>,
    partitions: i32,
) -> Result<BaseConsumer<WorkerContext>, WorkerError> {
    let consumer = create_consumer(opts, processor.clone(), partitions)?;
    consumer
        .subscribe(&opts.topics.inputs())
        .map_err(|source| WorkerError::Client {
            role: "consumer subscription",
            source,
        })?;
    Ok(consumer)
}

fn create_consumer(
    opts: &WorkerOptions,
    processor: Arc<Mutex<Processor>>,
    partitions: i32,
) -> Result<BaseConsumer<WorkerContext>, WorkerError> {
    let context = WorkerContext {
        processor,
        topics: opts.topics.clone(),
    };
    consumer_config(opts, partitions)
        .create_with_context(context)
        .map_err(|source| WorkerError::Client {
            role: "consumer",
            source,
        })
}

/// The input consumer's configuration, for inputs of `partitions`
/// partitions each: a task may be handed every partition of every input.
fn consumer_config(opts: &WorkerOptions, partitions: i32) -> rdkafka::ClientConfig {
    let mut config = opts.kafka.client_config();
    config
        .set("group.id", &opts.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest");
    match opts.group_protocol {
        GroupProtocol::Classic => {
            // Range assignment gives one member partition p of every input
            // topic: co-partitioning is what lets one engine own a customer.
            config.set("partition.assignment.strategy", "range").set(
                "session.timeout.ms",
                opts.session_timeout.as_millis().to_string(),
            );
        }
        GroupProtocol::Consumer => {
            // KIP-848: the broker assigns, incrementally; its range assignor
            // gives partition p of co-partitioned topics to one member. The
            // session timeout is the group's (group.consumer.session.timeout.ms).
            config
                .set("group.protocol", "consumer")
                .set("group.remote.assignor", "range");
        }
    }
    if !opts.kafka.properties.iter().any(|(k, _)| k == "client.id") {
        config.set("client.id", opts.member_client_id());
    }
    if opts.static_membership {
        // A restarted instance takes its partitions back at once instead of
        // waiting out the session of its previous incarnation.
        config.set("group.instance.id", &opts.instance_id);
    }
    let heartbeat_set = opts
        .kafka
        .properties
        .iter()
        .any(|(k, _)| k == "heartbeat.interval.ms");
    if opts.tasks > 1 && opts.group_protocol == GroupProtocol::Classic && !heartbeat_set {
        // The tasks join one after another; unless the broker's initial
        // rebalance delay groups them, each join is a rebalance that the
        // members already in learn of at their next heartbeat (librdkafka's
        // default: every 3 s), and until then the first task holds every
        // partition. Half a second keeps that start-up gap short.
        config.set("heartbeat.interval.ms", "500");
    }
    let inputs = opts.topics.inputs().len() * usize::try_from(partitions).unwrap_or(1);
    crate::kafka::Prefetch::within(opts.input_prefetch_budget(), inputs, INPUT_FETCH_BYTES)
        .set_unless_given(&mut config);
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::KafkaSettings;

    fn options(properties: &[(&str, &str)], tasks: usize) -> WorkerOptions {
        let mut opts = WorkerOptions::new(KafkaSettings {
            bootstrap_servers: "localhost:9".into(),
            properties: properties
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        });
        opts.tasks = tasks;
        opts
    }

    fn number(config: &rdkafka::ClientConfig, key: &str) -> u64 {
        config
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} is not set"))
    }

    #[test]
    fn the_input_prefetch_of_all_tasks_stays_within_its_budget() {
        for tasks in [1, 2, 4] {
            for partitions in [1, 6, 24, 64] {
                let opts = options(&[], tasks);
                let config = consumer_config(&opts, partitions);
                // Each task's consumer may be handed every partition of the
                // three inputs (while the other tasks join, or after they
                // fail).
                let per_partition = number(&config, "queued.max.messages.kbytes") * 1024
                    + number(&config, "max.partition.fetch.bytes");
                let all_tasks = per_partition * 3 * partitions as u64 * tasks as u64;
                let budget = opts.prefetch_bytes / 4;
                let floor = crate::kafka::Prefetch::FLOOR_BYTES;
                if budget / (3 * partitions as u64 * tasks as u64) < 2 * floor {
                    // Too many partitions for the budget: slivers at the floor.
                    assert_eq!(
                        per_partition,
                        2 * floor,
                        "{tasks} tasks, {partitions} partitions"
                    );
                    continue;
                }
                assert!(
                    all_tasks <= budget && all_tasks >= budget * 9 / 10,
                    "{tasks} tasks over {partitions} partitions may prefetch {all_tasks} bytes against {budget}"
                );
                assert!(number(&config, "max.partition.fetch.bytes") <= INPUT_FETCH_BYTES);
            }
        }
    }

    #[test]
    fn an_operators_prefetch_settings_are_kept_for_the_inputs() {
        let opts = options(&[("queued.max.messages.kbytes", "65536")], 1);
        let config = consumer_config(&opts, 24);
        assert_eq!(config.get("queued.max.messages.kbytes"), Some("65536"));
        // The fetch size the operator left alone is still bounded.
        assert!(number(&config, "max.partition.fetch.bytes") <= INPUT_FETCH_BYTES);
    }
}
