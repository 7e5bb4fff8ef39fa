//! The records a transaction writes, as plain data: outputs with their
//! CloudEvents headers, dead letters with the Kafka Connect error headers,
//! changelog records. No Kafka client types, so the pipeline that builds them
//! is tested in-process; the transaction layer turns them into produce calls.

use crate::contract::{DeadLetterReason, OutputRecord};
use std::borrow::Cow;

/// A record header. Most names and some values are fixed strings: borrowed,
/// they cost no allocation for each of the millions of records.
pub type Header = (Cow<'static, str>, Cow<'static, [u8]>);

/// The W3C trace context header, carried from each input to the outputs it causes.
pub const TRACEPARENT: &str = "traceparent";

/// Header set on a dead letter whose original value was too large to write.
pub const VALUE_DROPPED: &str = "terminus.dlq.value.dropped";
/// The original value's size in bytes, on a dead letter without its value.
pub const VALUE_BYTES: &str = "terminus.dlq.value.bytes";
/// Set when the original record's own headers were dropped too.
pub const HEADERS_DROPPED: &str = "terminus.dlq.headers.dropped";

/// What a record is, for counting and logging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Output { event_type: &'static str },
    DeadLetter { reason: DeadLetterReason },
    Changelog,
}

/// One record to write in the open transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub topic: String,
    /// Set for changelog records (partition = input partition); outputs and
    /// dead letters are placed by the producer's murmur2 partitioner.
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    pub kind: Kind,
}

impl Outgoing {
    /// Bytes this record adds to a produce request, near enough for limits:
    /// key, value, headers and a fixed per-record overhead.
    pub fn size(&self) -> usize {
        const OVERHEAD: usize = 64;
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum();
        OVERHEAD
            + self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + headers
    }
}

/// An input record, borrowed from the consumer's message.
#[derive(Clone, Debug)]
pub struct InputRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

impl InputRecord<'_> {
    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| *v)
    }
}

/// CloudEvents binary-mode headers plus the incoming `traceparent`.
pub fn output_headers(
    record: &OutputRecord,
    traceparent: Option<&[u8]>,
    content_type: &str,
) -> Vec<Header> {
    let env = &record.envelope;
    let mut headers = Vec::with_capacity(7);
    headers.extend([
        fixed("ce_specversion", b"1.0"),
        owned("ce_id", env.event_id.to_string().into_bytes()),
        fixed("ce_type", env.event_type.as_bytes()),
        header("ce_source", env.source.as_bytes()),
        owned("ce_time", env.event_time.0.to_rfc3339().into_bytes()),
        header("content-type", content_type.as_bytes()),
    ]);
    if let Some(tp) = traceparent {
        headers.push(header(TRACEPARENT, tp));
    }
    headers
}

/// Dead-letter headers, named as Kafka Connect names them (`__connect.errors.*`)
/// so existing DLQ tooling reads them, plus Terminus's stable reason code. The
/// original record's own headers are kept after them.
pub fn dead_letter_headers(
    input: &InputRecord<'_>,
    reason: DeadLetterReason,
    message: &str,
) -> Vec<Header> {
    let mut headers = vec![
        header("__connect.errors.topic", input.topic.as_bytes()),
        owned(
            "__connect.errors.partition",
            input.partition.to_string().into_bytes(),
        ),
        owned(
            "__connect.errors.offset",
            input.offset.to_string().into_bytes(),
        ),
        fixed(
            "__connect.errors.exception.class.name",
            reason.as_str().as_bytes(),
        ),
        header("__connect.errors.exception.message", message.as_bytes()),
        fixed("terminus.dlq.reason", reason.as_str().as_bytes()),
    ];
    if let Some(ts) = input.timestamp_ms {
        headers.push(owned("terminus.dlq.timestamp", ts.to_string().into_bytes()));
    }
    for (key, value) in &input.headers {
        headers.push((
            Cow::Owned((*key).to_owned()),
            Cow::Owned(value.unwrap_or_default().to_vec()),
        ));
    }
    headers
}

/// The dead letter of `input`, shrunk to fit `max_bytes`: a record that
/// cannot be written as it is goes out without its value (headers say so and
/// give the original size), and without the original headers if even that is
/// too large. A dead letter that does not fit would jam the partition: the
/// transaction would abort and retry it forever.
pub fn dead_letter(
    input: &InputRecord<'_>,
    topic: &str,
    reason: DeadLetterReason,
    message: &str,
    max_bytes: usize,
) -> Outgoing {
    let mut record = Outgoing {
        topic: topic.to_owned(),
        partition: None,
        key: input.key.map(<[u8]>::to_vec),
        value: input.value.map(<[u8]>::to_vec),
        headers: dead_letter_headers(input, reason, message),
        kind: Kind::DeadLetter { reason },
    };
    if record.size() <= max_bytes {
        return record;
    }
    let original = input.value.map_or(0, <[u8]>::len);
    record.value = None;
    record.headers.push(fixed(VALUE_DROPPED, b"true"));
    record
        .headers
        .push(owned(VALUE_BYTES, original.to_string().into_bytes()));
    if record.size() > max_bytes {
        let own = dead_letter_headers(
            &InputRecord {
                headers: Vec::new(),
                ..input.clone()
            },
            reason,
            message,
        );
        record.headers = own;
        record.headers.push(fixed(VALUE_DROPPED, b"true"));
        record
            .headers
            .push(owned(VALUE_BYTES, original.to_string().into_bytes()));
        record.headers.push(fixed(HEADERS_DROPPED, b"true"));
        if record.size() > max_bytes {
            // A key near the limit: keep the reason, lose the key.
            record.key = None;
        }
    }
    record
}

/// A fixed name and a fixed value.
pub fn fixed(name: &'static str, value: &'static [u8]) -> Header {
    (Cow::Borrowed(name), Cow::Borrowed(value))
}

/// A fixed name and a value copied from elsewhere.
fn header(name: &'static str, value: &[u8]) -> Header {
    (Cow::Borrowed(name), Cow::Owned(value.to_vec()))
}

/// A fixed name and a value made for this record.
fn owned(name: &'static str, value: Vec<u8>) -> Header {
    (Cow::Borrowed(name), Cow::Owned(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(value: &'a [u8], headers: Vec<(&'a str, Option<&'a [u8]>)>) -> InputRecord<'a> {
        InputRecord {
            topic: "in",
            partition: 2,
            offset: 41,
            timestamp_ms: Some(7),
            key: Some(b"C-1"),
            value: Some(value),
            headers,
        }
    }

    fn get<'a>(record: &'a Outgoing, name: &str) -> Option<&'a [u8]> {
        record
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }

    #[test]
    fn a_dead_letter_that_fits_keeps_everything() {
        let value = vec![b'x'; 1000];
        let r = dead_letter(
            &input(&value, vec![("h", Some(b"v"))]),
            "dlq",
            DeadLetterReason::InvalidJson,
            "m",
            10_000,
        );
        assert_eq!(r.value.as_deref(), Some(&value[..]));
        assert_eq!(get(&r, "h"), Some(&b"v"[..]));
        assert_eq!(get(&r, VALUE_DROPPED), None);
        assert_eq!(get(&r, "__connect.errors.offset"), Some(&b"41"[..]));
    }

    #[test]
    fn a_dead_letter_too_large_goes_out_without_its_value() {
        let value = vec![b'x'; 1_500_000];
        let r = dead_letter(
            &input(&value, vec![("h", Some(b"v"))]),
            "dlq",
            DeadLetterReason::RecordTooLarge,
            "m",
            1_000_000,
        );
        assert!(r.value.is_none());
        assert!(r.size() <= 1_000_000);
        assert_eq!(get(&r, VALUE_DROPPED), Some(&b"true"[..]));
        assert_eq!(get(&r, VALUE_BYTES), Some(&b"1500000"[..]));
        assert_eq!(get(&r, "h"), Some(&b"v"[..]), "small headers are kept");
        assert_eq!(r.key.as_deref(), Some(&b"C-1"[..]));
    }

    #[test]
    fn huge_original_headers_are_dropped_too() {
        let value = vec![b'x'; 10];
        let big = vec![b'h'; 2_000_000];
        let r = dead_letter(
            &input(&value, vec![("big", Some(&big))]),
            "dlq",
            DeadLetterReason::RecordTooLarge,
            "m",
            1_000_000,
        );
        assert!(r.size() <= 1_000_000);
        assert_eq!(get(&r, HEADERS_DROPPED), Some(&b"true"[..]));
        assert_eq!(get(&r, "terminus.dlq.reason"), Some(&b"RecordTooLarge"[..]));
    }
}
