//! Building the Kafka records the worker writes: outputs with their CloudEvents
//! headers, dead letters with the Kafka Connect error headers.

use crate::contract::{DeadLetterReason, OutputRecord};
use rdkafka::message::{Header, Headers, OwnedHeaders};

/// The W3C trace context header, carried from each input to the outputs it causes.
pub const TRACEPARENT: &str = "traceparent";

/// CloudEvents binary-mode headers plus the incoming `traceparent`.
pub fn output_headers(
    record: &OutputRecord,
    traceparent: Option<&[u8]>,
    content_type: &str,
) -> OwnedHeaders {
    let env = &record.envelope;
    let id = env.event_id.to_string();
    let time = env.event_time.0.to_rfc3339();
    let mut headers = OwnedHeaders::new_with_capacity(7)
        .insert(header("ce_specversion", b"1.0"))
        .insert(header("ce_id", id.as_bytes()))
        .insert(header("ce_type", env.event_type.as_bytes()))
        .insert(header("ce_source", env.source.as_bytes()))
        .insert(header("ce_time", time.as_bytes()))
        .insert(header("content-type", content_type.as_bytes()));
    if let Some(tp) = traceparent {
        headers = headers.insert(header(TRACEPARENT, tp));
    }
    headers
}

/// Where a refused record came from.
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
}

/// Dead-letter headers, named as Kafka Connect names them (`__connect.errors.*`)
/// so existing DLQ tooling reads them, plus Terminus's stable reason code. The
/// original record's own headers are kept after them.
pub fn dead_letter_headers(
    origin: &Origin<'_>,
    reason: DeadLetterReason,
    message: &str,
    original: Option<&rdkafka::message::BorrowedHeaders>,
) -> OwnedHeaders {
    let partition = origin.partition.to_string();
    let offset = origin.offset.to_string();
    let mut headers = OwnedHeaders::new_with_capacity(8)
        .insert(header("__connect.errors.topic", origin.topic.as_bytes()))
        .insert(header("__connect.errors.partition", partition.as_bytes()))
        .insert(header("__connect.errors.offset", offset.as_bytes()))
        .insert(header(
            "__connect.errors.exception.class.name",
            reason.as_str().as_bytes(),
        ))
        .insert(header(
            "__connect.errors.exception.message",
            message.as_bytes(),
        ))
        .insert(header("terminus.dlq.reason", reason.as_str().as_bytes()));
    if let Some(ts) = origin.timestamp_ms {
        headers = headers.insert(header("terminus.dlq.timestamp", ts.to_string().as_bytes()));
    }
    if let Some(original) = original {
        for h in original.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    headers
}

fn header<'a>(key: &'a str, value: &'a [u8]) -> Header<'a, &'a [u8]> {
    Header {
        key,
        value: Some(value),
    }
}

/// The value of the first header named `name`.
pub fn find_header<'a>(
    headers: Option<&'a rdkafka::message::BorrowedHeaders>,
    name: &str,
) -> Option<&'a [u8]> {
    headers?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}
