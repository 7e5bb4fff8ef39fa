//! Restoring owned partitions' state from the compacted changelog.
//!
//! A restore reads each changelog partition (`read_committed`) up to the high
//! watermark captured when it starts. Under `read_committed` the end of a
//! partition is its last stable offset, which lags while a transaction is
//! open: right after a handover the previous owner's last committed batch may
//! not be readable yet while the group's offsets already point past it.
//! Stopping at the first end-of-partition would miss it; waiting for the
//! position to reach the captured high watermark cannot.

use super::WorkerError;
use super::options::WorkerOptions;
use crate::domain::{CustomerState, StateDecodeError};
use crate::engine::{Engine, Partitions};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

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
    pub records: u64,
}

pub struct Restorer {
    opts: Arc<WorkerOptions>,
    /// read_committed: what it returns is committed state.
    consumer: BaseConsumer<RestoreContext>,
    /// read_uncommitted: its ListOffsets answers the true high watermark
    /// (a read_committed client is answered the last stable offset).
    probe: BaseConsumer<RestoreContext>,
}

impl Restorer {
    /// # Errors
    /// [`WorkerError::Client`] when a consumer cannot be created.
    pub fn new(opts: Arc<WorkerOptions>) -> Result<Self, WorkerError> {
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
        let consumer = config
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
            consumer,
            probe,
        })
    }

    /// Reads each partition's changelog from the beginning to the high
    /// watermark it had when the restore started, into fresh engines.
    ///
    /// # Errors
    /// [`WorkerError::Restore`] when the changelog cannot be read to that
    /// point within the restore timeout; `Fatal` for a state record written
    /// by a newer release.
    pub fn restore(&self, partitions: &[i32]) -> Result<Restored, WorkerError> {
        let started = Instant::now();
        let deadline = started + self.opts.restore_timeout;
        let changelog = &self.opts.topics.changelog;
        let restore_error =
            |partition: i32, reason: String| WorkerError::Restore { partition, reason };
        let policy = Arc::new(self.opts.policy.clone());
        let mut engines: Partitions = partitions
            .iter()
            .map(|p| (*p, Engine::new(policy.clone())))
            .collect();
        // The end to reach, per partition: captured now, before reading.
        let mut target: BTreeMap<i32, i64> = BTreeMap::new();
        for p in partitions {
            let (low, high) = loop {
                match self
                    .probe
                    .fetch_watermarks(changelog, *p, Duration::from_secs(5))
                {
                    Ok(marks) => break marks,
                    Err(e) => {
                        if let Some(reason) = crate::kafka::preflight::authorization_failure(&e) {
                            return Err(restore_error(*p, reason));
                        }
                        if Instant::now() > deadline {
                            return Err(restore_error(
                                *p,
                                format!("cannot read the changelog's high watermark: {e}"),
                            ));
                        }
                        warn!(partition = *p, error = %e, "changelog watermark unavailable; retrying");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            };
            // Nothing left to read (empty, or everything deleted): done.
            if high > low {
                target.insert(*p, high);
            }
        }
        let mut records = 0u64;
        if !target.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for p in target.keys() {
                tpl.add_partition_offset(changelog, *p, Offset::Beginning)
                    .map_err(|e| restore_error(*p, e.to_string()))?;
            }
            self.consumer
                .assign(&tpl)
                .map_err(|e| restore_error(partitions[0], e.to_string()))?;
            let result = self.read_until(&mut engines, &mut target, deadline, &mut records);
            let _ = self.consumer.unassign();
            result?;
        }
        let customers: usize = engines.values().map(Engine::len).sum();
        info!(
            ?partitions,
            records,
            customers,
            millis = started.elapsed().as_millis() as u64,
            "partitions restored from the changelog"
        );
        Ok(Restored { engines, records })
    }

    fn read_until(
        &self,
        engines: &mut Partitions,
        target: &mut BTreeMap<i32, i64>,
        deadline: Instant,
        records: &mut u64,
    ) -> Result<(), WorkerError> {
        let changelog = &self.opts.topics.changelog;
        let mut last_check = Instant::now();
        while !target.is_empty() {
            if Instant::now() > deadline {
                let (p, high) = target.iter().next().map_or((0, 0), |(p, h)| (*p, *h));
                return Err(WorkerError::Restore {
                    partition: p,
                    reason: format!(
                        "changelog {changelog} not read up to offset {high} within {}",
                        humantime::format_duration(self.opts.restore_timeout)
                    ),
                });
            }
            let mut check = last_check.elapsed() >= Duration::from_millis(200);
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(msg)) => {
                    use rdkafka::message::Message;
                    let partition = msg.partition();
                    if msg.offset() + 1 >= target.get(&partition).copied().unwrap_or(0) {
                        check = true;
                    }
                    let Some(engine) = engines.get_mut(&partition) else {
                        continue;
                    };
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
                    engine.restore(key, state);
                    *records += 1;
                }
                Some(Err(KafkaError::PartitionEOF(_))) => check = true,
                Some(Err(e)) => {
                    if let Some(reason) = crate::kafka::preflight::authorization_failure(&e) {
                        let p = target.keys().next().copied().unwrap_or(0);
                        return Err(WorkerError::Restore {
                            partition: p,
                            reason,
                        });
                    }
                    // Brokers down: librdkafka reconnects; don't spin on the error.
                    warn!(error = %e, "changelog read error during restore; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                None => check = true,
            }
            if check {
                last_check = Instant::now();
                // The position moves past transaction markers and aborted
                // records too, so it reaches the high watermark once every
                // transaction below it is settled.
                if let Ok(positions) = self.consumer.position() {
                    for e in positions.elements() {
                        if let Offset::Offset(at) = e.offset()
                            && target.get(&e.partition()).is_some_and(|high| at >= *high)
                        {
                            target.remove(&e.partition());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
