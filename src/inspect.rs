//! `terminus inspect CUSTOMER_ID`: one customer's state for support staff.
//!
//! Online, it asks the admin servers of a consumer group (`GET
//! /relationships/{id}`) until the instance that owns the customer's
//! partition answers; offline (`--from-changelog`), it reads the customer's
//! changelog partition to its end (read_committed) and takes the last record
//! with the customer's key. Either way it prints the state in human terms, or
//! as JSON with `--json`.

use crate::contract::Vertical;
use crate::domain::CustomerState;
use crate::domain::{Phase, Termination, VerticalStatus};
use crate::kafka::KafkaSettings;
use crate::time::Timestamp;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Where the state was found, and the state (`None`: the owner holds none, or
/// the changelog has no live record for the customer).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub customer_id: String,
    pub partition: i32,
    /// `instance at 127.0.0.1:8686`, or `changelog terminus.state.changelog partition 2 offset 17`.
    pub source: String,
    pub state: Option<CustomerState>,
}

/// Why no answer could be given.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("no admin server owns customer {customer_id}: {detail}")]
    NotOwned { customer_id: String, detail: String },
    #[error("the changelog could not be read: {0}")]
    Changelog(String),
    #[error("an answer could not be read: {0}")]
    BadAnswer(String),
}

/// Asks each admin server in turn; the first that owns the customer answers.
///
/// # Errors
/// [`InspectError::NotOwned`] when none owns it (each server's answer named);
/// [`InspectError::BadAnswer`] when the owner's state cannot be read.
pub fn ask_admin_servers(addrs: &[String], customer_id: &str) -> Result<Found, InspectError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut asked = Vec::new();
    for addr in addrs {
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_owned()
        } else {
            format!("http://{addr}")
        };
        let url = format!("{base}/relationships/{}", encode_segment(customer_id));
        let (status, body) = match agent.get(&url).call() {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(e) => {
                asked.push(format!("{addr}: unreachable ({e})"));
                continue;
            }
        };
        let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let partition = answer["partition"].as_i64().unwrap_or(-1) as i32;
        match (status, answer["error"].as_str()) {
            (200, _) => {
                let state = serde_json::from_value(answer["state"].clone())
                    .map_err(|e| InspectError::BadAnswer(format!("{addr}: {e}")))?;
                return Ok(Found {
                    customer_id: customer_id.to_owned(),
                    partition,
                    source: format!("instance at {addr}"),
                    state: Some(state),
                });
            }
            (404, Some("unknown customer")) => {
                return Ok(Found {
                    customer_id: customer_id.to_owned(),
                    partition,
                    source: format!("instance at {addr}"),
                    state: None,
                });
            }
            (404, Some(error)) => asked.push(format!("{addr}: {error} (partition {partition})")),
            (status, _) => asked.push(format!("{addr}: HTTP {status}")),
        }
    }
    Err(InspectError::NotOwned {
        customer_id: customer_id.to_owned(),
        detail: if asked.is_empty() {
            "no admin server given".to_owned()
        } else {
            asked.join("; ")
        },
    })
}

/// Reads the customer's changelog partition to its end (read_committed): the
/// last record with the customer's key is its state, a tombstone means forgotten.
///
/// # Errors
/// [`InspectError::Changelog`] when the topic cannot be read or a record is
/// not a state.
pub fn from_changelog(
    kafka: &KafkaSettings,
    topic: &str,
    customer_id: &str,
) -> Result<Found, InspectError> {
    let fail = |e: String| InspectError::Changelog(e);
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", "terminus-inspect")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .map_err(|e| fail(e.to_string()))?;
    let timeout = Duration::from_secs(30);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| fail(e.to_string()))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len() as i32)
        .filter(|n| *n > 0)
        .ok_or_else(|| fail(format!("topic {topic} does not exist")))?;
    let partition = crate::kafka::partition_for_key(customer_id.as_bytes(), partitions);
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, timeout)
        .map_err(|e| fail(e.to_string()))?;
    let mut found = Found {
        customer_id: customer_id.to_owned(),
        partition,
        source: format!("changelog {topic} partition {partition} (no record)"),
        state: None,
    };
    if high <= low {
        return Ok(found);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .map_err(|e| fail(e.to_string()))?;
    consumer.assign(&tpl).map_err(|e| fail(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if Instant::now() > deadline {
            return Err(fail(format!(
                "partition {partition} not read to its end in 120 s"
            )));
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                if m.key() == Some(customer_id.as_bytes()) {
                    found.source = format!(
                        "changelog {topic} partition {partition} offset {}",
                        m.offset()
                    );
                    found.state = match m.payload() {
                        None => None,
                        Some(bytes) => Some(
                            CustomerState::from_bytes(bytes).map_err(|e| fail(e.to_string()))?,
                        ),
                    };
                }
                if m.offset() + 1 >= high {
                    return Ok(found);
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Ok(found),
            Some(Err(e)) => return Err(fail(e.to_string())),
            None => {}
        }
    }
}

/// The state in support staff's terms, as data: phase, termination, pending
/// verticals, next timer and when it is due, legal holds, retention date.
pub fn summary(found: &Found, now: Timestamp) -> Value {
    let mut out = json!({
        "customerId": found.customer_id,
        "partition": found.partition,
        "source": found.source,
    });
    let Some(state) = &found.state else {
        out["phase"] = json!("Unknown");
        out["detail"] = json!(
            "no state: never seen, or anonymised and forgotten (nothing is kept after --forget-after)"
        );
        return out;
    };
    out["phase"] = json!(state.phase.name());
    out["clock"] = json!(state.clock.to_rfc3339());
    out["legalHolds"] = json!(state.holds);
    if let Some(t) = state.services_terminated_at {
        out["allServicesTerminatedAt"] = json!(t.to_rfc3339());
    }
    let termination = |t: &Termination| {
        json!({
            "terminationId": t.id,
            "category": t.category,
            "effectiveAt": t.effective_at.to_rfc3339(),
            "erasureRequested": t.erasure_requested,
        })
    };
    match &state.phase {
        Phase::Active => {}
        Phase::Pending { termination: t } => out["termination"] = termination(t),
        Phase::Dismantling {
            termination: t,
            dismantle,
        } => {
            out["termination"] = termination(t);
            out["dismantlingStartedAt"] = json!(dismantle.started_at.to_rfc3339());
            out["dismantleDeadline"] = json!(dismantle.deadline.to_rfc3339());
            out["stalled"] = json!(dismantle.stalled);
            out["pendingVerticals"] = Vertical::ALL
                .into_iter()
                .filter(|v| dismantle.verticals[v.index()].status != VerticalStatus::Completed)
                .map(|v| {
                    let p = &dismantle.verticals[v.index()];
                    json!({"vertical": v.as_str(), "attempt": p.attempt, "status": format!("{:?}", p.status)})
                })
                .collect::<Vec<_>>()
                .into();
        }
        Phase::Terminated {
            termination: t,
            terminated_at,
            retain_until,
            anonymize_at,
            reestablishable,
        } => {
            out["termination"] = termination(t);
            out["terminatedAt"] = json!(terminated_at.to_rfc3339());
            out["retainRecordsUntil"] = json!(retain_until.to_rfc3339());
            out["anonymizeAt"] = json!(anonymize_at.to_rfc3339());
            out["reestablishable"] = json!(reestablishable);
        }
        Phase::Anonymized {
            termination_id,
            anonymized_at,
            forget_at,
        } => {
            out["termination"] = json!({"terminationId": termination_id});
            out["anonymizedAt"] = json!(anonymized_at.to_rfc3339());
            out["forgetAt"] = json!(forget_at.to_rfc3339());
        }
    }
    out["nextTimer"] = match state.next_timer() {
        Some((due, kind)) => json!({
            "kind": kind.as_str(),
            "dueAt": due.to_rfc3339(),
            "dueInSeconds": (due.millis() - now.millis()) / 1000,
        }),
        None => Value::Null,
    };
    out
}

/// [`summary`] as text for a terminal.
pub fn render(summary: &Value) -> String {
    let s = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    let mut lines = vec![
        format!("customer      {}", s(&summary["customerId"])),
        if s(&summary["source"]).contains("partition") {
            format!("from          {}", s(&summary["source"]))
        } else {
            format!(
                "from          {} (partition {})",
                s(&summary["source"]),
                summary["partition"]
            )
        },
        format!("phase         {}", s(&summary["phase"])),
    ];
    if let Some(detail) = summary["detail"].as_str() {
        lines.push(format!("              {detail}"));
        return lines.join("\n") + "\n";
    }
    let t = &summary["termination"];
    if !t.is_null() {
        let mut line = format!("termination   {}", s(&t["terminationId"]));
        if !t["category"].is_null() {
            line += &format!(
                ", {}, effective {}",
                s(&t["category"]),
                s(&t["effectiveAt"])
            );
        }
        if t["erasureRequested"] == json!(true) {
            line += ", erasure requested";
        }
        lines.push(line);
    }
    if let Some(verticals) = summary["pendingVerticals"].as_array() {
        let list: Vec<String> = verticals
            .iter()
            .map(|v| {
                format!(
                    "{} (attempt {}, {})",
                    s(&v["vertical"]),
                    v["attempt"],
                    s(&v["status"]).to_lowercase()
                )
            })
            .collect();
        lines.push(format!(
            "waiting for   {}",
            if list.is_empty() {
                "nothing".to_owned()
            } else {
                list.join(", ")
            }
        ));
        lines.push(format!(
            "dismantling   since {}, deadline {}{}",
            s(&summary["dismantlingStartedAt"]),
            s(&summary["dismantleDeadline"]),
            if summary["stalled"] == json!(true) {
                ", TerminationStalled raised"
            } else {
                ""
            }
        ));
    }
    if !summary["terminatedAt"].is_null() {
        lines.push(format!("terminated    {}", s(&summary["terminatedAt"])));
        lines.push(format!(
            "retention     records kept until {}{}",
            s(&summary["retainRecordsUntil"]),
            if summary["reestablishable"] == json!(true) {
                " (re-establishable)"
            } else {
                " (not re-establishable)"
            }
        ));
    }
    if !summary["anonymizedAt"].is_null() {
        lines.push(format!(
            "anonymised    {}; ids forgotten at {}",
            s(&summary["anonymizedAt"]),
            s(&summary["forgetAt"])
        ));
    }
    let holds: Vec<String> = summary["legalHolds"]
        .as_array()
        .map(|h| h.iter().map(s).collect())
        .unwrap_or_default();
    lines.push(format!(
        "legal holds   {}",
        if holds.is_empty() {
            "none".to_owned()
        } else {
            holds.join(", ")
        }
    ));
    let timer = &summary["nextTimer"];
    lines.push(if timer.is_null() {
        "next timer    none".to_owned()
    } else {
        // To the minute: support staff need "in 2days 23h 59m", not seconds.
        let secs = timer["dueInSeconds"].as_i64().unwrap_or(0) / 60 * 60;
        let when = if secs >= 0 {
            format!(
                "in {}",
                humantime::format_duration(Duration::from_secs(secs as u64))
            )
        } else {
            format!(
                "overdue by {}",
                humantime::format_duration(Duration::from_secs(secs.unsigned_abs()))
            )
        };
        format!(
            "next timer    {} at {} ({when})",
            s(&timer["kind"]),
            s(&timer["dueAt"])
        )
    });
    lines.join("\n") + "\n"
}

/// Percent-encodes a path segment (customer ids may hold any printable character).
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
