//! `terminus simulate`: the domain core over a file of events, no Kafka.
//!
//! The clock is logical: it advances to each event's `eventTime` (never
//! backwards), firing every timer due by then first. Output is JSON lines
//! `{"topic","key","value"}`, byte for byte the same for the same input.

use crate::contract::{DecodeError, OutputEnvelope, Topic, decode_envelope};
use crate::domain::Policy;
use crate::engine::Engine;
use crate::time::Timestamp;
use serde::Serialize;
use std::io::{self, BufRead, Write};
use std::sync::Arc;

/// Counts for the summary the CLI prints to standard error.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub outputs: u64,
    pub dead_letters: u64,
}

#[derive(Serialize)]
struct Line<'a, V: Serialize> {
    topic: &'static str,
    key: Option<&'a str>,
    value: V,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeadLetter<'a> {
    reason_code: &'static str,
    message: &'a str,
    line: u64,
    record: &'a str,
}

/// Runs the simulator over JSON lines from `input`, writing output lines to `out`.
///
/// # Errors
/// Only I/O errors of `input` or `out`; bad lines become dead-letter lines.
pub fn run(
    input: impl BufRead,
    mut out: impl Write,
    until: Option<Timestamp>,
    policy: Policy,
) -> io::Result<Summary> {
    let mut engine = Engine::new(Arc::new(policy));
    let mut clock = Timestamp::MIN;
    let mut summary = Summary::default();
    for (index, line) in input.split(b'\n').enumerate() {
        let line = line?;
        let line_no = index as u64 + 1;
        let text = trim_ascii(&line);
        if text.is_empty() {
            continue;
        }
        let env = match decode_envelope(text) {
            Ok(env) => env,
            Err(err) => {
                write_dead_letter(&mut out, line_no, text, &err)?;
                summary.dead_letters += 1;
                continue;
            }
        };
        summary.events += 1;
        clock = clock.max(env.event_time);
        let mut outputs = engine.fire_due(clock);
        outputs.extend(engine.handle(&env, clock).outputs);
        for record in &outputs {
            write_output(&mut out, &record.key, record.topic, &record.envelope)?;
        }
        summary.outputs += outputs.len() as u64;
        engine.commit();
    }
    if let Some(until) = until {
        clock = clock.max(until);
        let outputs = engine.fire_due(clock);
        for record in &outputs {
            write_output(&mut out, &record.key, record.topic, &record.envelope)?;
        }
        summary.outputs += outputs.len() as u64;
    }
    out.flush()?;
    Ok(summary)
}

fn write_output(
    out: &mut impl Write,
    key: &str,
    topic: Topic,
    value: &OutputEnvelope,
) -> io::Result<()> {
    let line = Line {
        topic: topic.default_name(),
        key: Some(key),
        value,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

fn write_dead_letter(
    out: &mut impl Write,
    line_no: u64,
    raw: &[u8],
    err: &DecodeError,
) -> io::Result<()> {
    let record = String::from_utf8_lossy(raw);
    let line = Line {
        topic: Topic::DeadLetter.default_name(),
        key: None,
        value: DeadLetter {
            reason_code: err.reason.as_str(),
            message: &err.message,
            line: line_no,
            record: &record,
        },
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}
