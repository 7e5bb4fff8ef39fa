//! `terminus produce`: publish JSON-lines envelopes to their input topics, keyed
//! by customer id — for demos, replays and re-driving repaired dead letters.

use super::KafkaSettings;
use super::topics::TopicNames;
use crate::contract::decode_envelope;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::io::BufRead;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("line {line}: {reason}")]
    Invalid { line: usize, reason: String },
    #[error("cannot read input: {0}")]
    Io(#[from] std::io::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Publishes each valid line to the topic its `eventType` belongs on, keyed by
/// `event.customerId`, waiting for every acknowledgement. Invalid lines stop
/// the run before anything of theirs is sent, so nothing is half-published.
///
/// # Errors
/// [`ProduceError`] for an invalid line, unreadable input or a Kafka failure.
pub async fn produce(
    settings: &KafkaSettings,
    names: &TopicNames,
    input: impl BufRead,
) -> Result<usize, ProduceError> {
    let mut records = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let env = decode_envelope(line.as_bytes()).map_err(|e| ProduceError::Invalid {
            line: index + 1,
            reason: e.to_string(),
        })?;
        let topic = names.name(env.event.topic()).to_owned();
        records.push((topic, env.customer_id, line));
    }
    let producer: FutureProducer = settings
        .client_config()
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create()?;
    for (topic, key, value) in &records {
        producer
            .send(
                FutureRecord::to(topic).key(key).payload(value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(records.len())
}
