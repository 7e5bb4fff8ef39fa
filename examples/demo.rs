//! The Terminus demo: a worker on the local broker, five customers' journeys,
//! and this program playing the billing, fulfillment and assurance services.
//!
//! Run it with `scripts/demo`, which starts the broker and builds the binaries.
//! It creates its own topics (a fresh set per run), starts `terminus run` with
//! durations in seconds instead of days, publishes the journeys, acknowledges
//! each `DismantleSolution` after a short delay (failing Carol's billing once so
//! a retry shows), and prints a timeline of every output. Guarantee: it only
//! reads committed (read_committed) outputs, as a downstream service would.

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use terminus::kafka::KafkaSettings;
use terminus::kafka::topics::TopicNames;
use terminus::time::Timestamp;

fn main() -> anyhow::Result<()> {
    let bootstrap =
        std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let run = format!("demo{}", Timestamp::now().millis() / 1000);
    let names = demo_topics(&run);
    let settings = KafkaSettings {
        bootstrap_servers: bootstrap.clone(),
        properties: Vec::new(),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(terminus::kafka::topics::create(&settings, &names, 3, 1))?;
    println!("demo: topics {run}.* created on {bootstrap}");

    let mut worker = start_worker(&bootstrap, &names, &run)?;
    let result = play(&bootstrap, &names);
    let _ = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    let _ = worker.wait();
    println!("demo: worker stopped; its log is /tmp/terminus-{run}.log");
    result
}

fn demo_topics(run: &str) -> TopicNames {
    TopicNames {
        lifecycle: format!("{run}.crm.customer.lifecycle.v1"),
        decisions: format!("{run}.crm.business.decisions.v1"),
        outcomes: format!("{run}.crm.dismantle.outcomes.v1"),
        status: format!("{run}.crm.termination.status.v1"),
        dismantle: format!("{run}.crm.solution.dismantle.v1"),
        terminated: format!("{run}.crm.relationship.terminated.v1"),
        dead_letter: format!("{run}.crm.termination.dlq.v1"),
        changelog: format!("{run}.terminus.state.changelog"),
    }
}

fn start_worker(bootstrap: &str, names: &TopicNames, run: &str) -> anyhow::Result<Child> {
    let exe = std::env::var("TERMINUS_BIN").unwrap_or_else(|_| "target/debug/terminus".into());
    let log = std::fs::File::create(format!("/tmp/terminus-{run}.log"))?;
    let child = Command::new(exe)
        .arg("run")
        .args(["--bootstrap-servers", bootstrap])
        .args(["--group-id", &format!("{run}-terminus")])
        .args(["--instance-id", "demo"])
        .args(["--lifecycle-topic", &names.lifecycle])
        .args(["--decisions-topic", &names.decisions])
        .args(["--outcomes-topic", &names.outcomes])
        .args(["--status-topic", &names.status])
        .args(["--dismantle-topic", &names.dismantle])
        .args(["--terminated-topic", &names.terminated])
        .args(["--dead-letter-topic", &names.dead_letter])
        .args(["--changelog-topic", &names.changelog])
        // Days become seconds so a whole life fits in a minute.
        .args(["--customer-notice", "4s", "--enterprise-notice", "8s"])
        .args(["--dismantle-deadline", "30s", "--retention", "60s"])
        .args(["--erasure-retention", "8s", "--forget-after", "30s"])
        .args(["--timer-interval", "250ms", "--log-format", "text"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()?;
    Ok(child)
}

fn envelope(id: &str, event_type: &str, body: Value) -> (String, String) {
    let customer = body["customerId"].as_str().unwrap_or_default().to_owned();
    let value = json!({
        "eventId": id,
        "eventType": event_type,
        "eventTime": Timestamp::now().to_rfc3339(),
        "correlationId": format!("demo-{customer}"),
        "source": "demo",
        "event": body,
    });
    (customer, value.to_string())
}

/// (seconds after start, input topic role, event id, type, body)
fn script() -> Vec<(f64, &'static str, &'static str, &'static str, Value)> {
    vec![
        (
            0.0,
            "lifecycle",
            "alice-1",
            "CustomerTerminationRequested",
            json!({"customerId": "C-ALICE", "reason": "moving abroad", "erasureRequested": true}),
        ),
        (
            0.2,
            "lifecycle",
            "bob-1",
            "CustomerTerminationRequested",
            json!({"customerId": "C-BOB"}),
        ),
        (
            0.4,
            "decisions",
            "carol-1",
            "FraudConfirmed",
            json!({"customerId": "C-CAROL", "caseRef": "FR-2026-17"}),
        ),
        (
            0.6,
            "decisions",
            "dave-1",
            "EnterpriseTerminationDecided",
            json!({"customerId": "C-DAVE", "reason": "unpaid for a year"}),
        ),
        (
            0.8,
            "lifecycle",
            "erin-1",
            "CustomerTerminationRequested",
            json!({"customerId": "C-ERIN"}),
        ),
        (1.0, "lifecycle", "bad-1", "-", json!({})),
        (
            2.0,
            "lifecycle",
            "bob-2",
            "CustomerTerminationWithdrawn",
            json!({"customerId": "C-BOB"}),
        ),
        (
            2.5,
            "lifecycle",
            "erin-2",
            "CustomerDeceased",
            json!({"customerId": "C-ERIN", "evidenceRef": "DC-88812"}),
        ),
        (
            9.0,
            "lifecycle",
            "carol-2",
            "RelationshipReestablishmentRequested",
            json!({"customerId": "C-CAROL"}),
        ),
    ]
}

fn play(bootstrap: &str, names: &TopicNames) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "0")
        .create()?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{}-demo-viewer", names.status))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[
        names.status.as_str(),
        names.dismantle.as_str(),
        names.terminated.as_str(),
        names.dead_letter.as_str(),
    ])?;
    let start = Instant::now();
    let mut pending = script();
    pending.reverse();
    // Outcomes the "verticals" will send: (due, event id, type, body).
    let mut acks: Vec<(Instant, String, &'static str, Value)> = Vec::new();
    let mut failed_once = false;
    let mut finals: BTreeMap<&str, bool> = [
        "C-ALICE",
        "C-BOB",
        "C-CAROL",
        "C-DAVE",
        "C-ERIN",
        "dead-letter",
    ]
    .into_iter()
    .map(|c| (c, false))
    .collect();
    println!("\n   time  customer  topic        event");
    while start.elapsed() < Duration::from_secs(75) && finals.values().any(|done| !done) {
        while pending
            .last()
            .is_some_and(|(t, ..)| start.elapsed().as_secs_f64() >= *t)
        {
            let Some((_, role, id, event_type, body)) = pending.pop() else {
                break;
            };
            let topic = match role {
                "decisions" => &names.decisions,
                _ => &names.lifecycle,
            };
            let (key, value) = if event_type == "-" {
                (
                    "C-NOBODY".to_owned(),
                    "{\"eventId\": \"oops\", \"eventType\":".to_owned(),
                )
            } else {
                envelope(id, event_type, body)
            };
            let _ = producer.send(BaseRecord::to(topic).key(&key).payload(&value));
            println!(
                "{:>6.1}s  {key:<9} {:<12} -> {}",
                start.elapsed().as_secs_f64(),
                "input",
                if event_type == "-" {
                    "a truncated record"
                } else {
                    event_type
                }
            );
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = acks.drain(..).partition(|(t, ..)| *t <= now);
        acks = later;
        for (_, id, event_type, body) in due {
            let (key, value) = envelope(&id, event_type, body);
            let _ = producer.send(BaseRecord::to(&names.outcomes).key(&key).payload(&value));
        }
        producer.poll(Duration::ZERO);
        let Some(Ok(msg)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let t = start.elapsed().as_secs_f64();
        let key = msg
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        if msg.topic() == names.dead_letter {
            let reason = msg
                .headers()
                .and_then(|h| {
                    use rdkafka::message::Headers;
                    h.iter()
                        .find(|h| h.key == "terminus.dlq.reason")
                        .and_then(|h| h.value)
                })
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            println!(
                "{t:>6.1}s  {key:<9} {:<12} <- dead letter ({reason})",
                "dlq"
            );
            finals.insert("dead-letter", true);
            continue;
        }
        let v: Value =
            serde_json::from_slice(msg.payload().unwrap_or_default()).unwrap_or_default();
        let e = &v["event"];
        let event_type = v["eventType"].as_str().unwrap_or_default();
        let topic = if msg.topic() == names.dismantle {
            "dismantle"
        } else if msg.topic() == names.terminated {
            "terminated"
        } else {
            "status"
        };
        let detail = match event_type {
            "TerminationAccepted" => format!(
                "{} effective {} notifyCustomer={}",
                e["category"].as_str().unwrap_or(""),
                e["effectiveAt"].as_str().unwrap_or(""),
                e["notifyCustomer"]
            ),
            "TerminationRejected" => format!(
                "{}: {}",
                e["reasonCode"].as_str().unwrap_or(""),
                e["detail"].as_str().unwrap_or("")
            ),
            "DismantleSolution" => format!(
                "{} attempt {}",
                e["vertical"].as_str().unwrap_or(""),
                e["attempt"]
            ),
            "RelationshipTerminated" => format!(
                "{} reestablishable={} retain until {}",
                e["category"].as_str().unwrap_or(""),
                e["reestablishable"],
                e["retainRecordsUntil"].as_str().unwrap_or("")
            ),
            _ => String::new(),
        };
        println!("{t:>6.1}s  {key:<9} {topic:<12} <- {event_type} {detail}");
        match (key.as_str(), event_type) {
            ("C-ALICE", "CustomerRecordsAnonymized")
            | ("C-BOB", "TerminationWithdrawn")
            | ("C-DAVE", "TerminationRejected")
            | ("C-ERIN", "RelationshipTerminated") => {
                finals.insert(
                    match key.as_str() {
                        "C-ALICE" => "C-ALICE",
                        "C-BOB" => "C-BOB",
                        "C-DAVE" => "C-DAVE",
                        _ => "C-ERIN",
                    },
                    true,
                );
            }
            ("C-CAROL", "TerminationRejected") => {
                finals.insert("C-CAROL", true);
            }
            _ => {}
        }
        if event_type == "DismantleSolution" {
            let vertical = e["vertical"].as_str().unwrap_or_default().to_owned();
            let termination = e["terminationId"].as_str().unwrap_or_default().to_owned();
            let attempt = e["attempt"].as_u64().unwrap_or(1);
            let id = format!("{key}-{vertical}-{attempt}");
            let body =
                json!({"customerId": key, "terminationId": termination, "vertical": vertical});
            if key == "C-CAROL" && vertical == "billing" && !failed_once {
                failed_once = true;
                let mut b = body;
                b["reason"] = json!("billing system busy");
                b["retryable"] = json!(true);
                acks.push((
                    Instant::now() + Duration::from_millis(700),
                    id,
                    "DismantleFailed",
                    b,
                ));
            } else {
                acks.push((
                    Instant::now() + Duration::from_millis(1000),
                    id,
                    "DismantleCompleted",
                    body,
                ));
            }
        }
    }
    producer.flush(Duration::from_secs(5))?;
    let missing: Vec<&str> = finals
        .iter()
        .filter(|(_, d)| !**d)
        .map(|(c, _)| *c)
        .collect();
    if missing.is_empty() {
        println!(
            "\ndemo: every journey reached its end in {:.1}s",
            start.elapsed().as_secs_f64()
        );
        Ok(())
    } else {
        anyhow::bail!("demo: journeys that did not finish in time: {missing:?}")
    }
}
