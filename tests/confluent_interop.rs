//! Wire compatibility with the Confluent serializers most users run: Python
//! `confluent-kafka`'s `AvroSerializer` and `AvroDeserializer` (PyPI, pinned
//! in `tests/interop/requirements.txt`, installed into a cached virtualenv by
//! `tests/interop/venv`), against the same registry protocol as the worker
//! (`FakeRegistry`, the dev-only `terminus-test-support` crate).
//!
//! Records that Confluent's serializer wrote (auto-registered under
//! `<topic>-value`, one with a plain record schema, two with the topic's union
//! schema) go through Kafka to a real worker running `--output-format
//! avro-confluent`; every output it commits is read back by Confluent's
//! deserializer (writer schema by id) and must equal the simulator's output
//! field for field.

mod common;

use common::rig::{Rig, envelope, simulate, stop};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use terminus::codec::{CONFLUENT_MAGIC, schemas};
use terminus::contract::Topic;
use terminus_test_support::FakeRegistry;

/// The virtualenv's python (created on first use, about 25 s).
fn interop_python() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("tests/interop/venv"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/interop/venv");
    assert!(
        out.status.success(),
        "tests/interop/venv failed: is python3 (with venv) installed? see scripts/prereqs"
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

/// Runs `confluent_serde.py MODE URL TOPIC` over `requests`, one JSON line each.
fn confluent(python: &str, mode: &str, url: &str, topic: &str, requests: &[Value]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/confluent_serde.py");
    let mut child = Command::new(python)
        .arg(script)
        .args([mode, url, topic])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start confluent_serde.py");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for r in requests {
            writeln!(stdin, "{r}").expect("write request");
        }
    }
    let answers: Vec<Value> = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map(|l| serde_json::from_str(&l.expect("line")).expect("answer is JSON"))
        .collect();
    assert!(
        child.wait().expect("wait").success(),
        "confluent_serde.py {mode} failed"
    );
    assert_eq!(answers.len(), requests.len(), "one answer per request");
    answers
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_python_serializers_and_the_worker_read_each_other() {
    let python = interop_python();
    let registry = FakeRegistry::start().expect("registry");
    let url = registry.url();
    let mut rig = Rig::new("interop").await;
    rig.extra_args = vec![
        "--output-format".into(),
        "avro-confluent".into(),
        "--schema-registry-url".into(),
        url.clone(),
    ];
    let now = terminus::time::Timestamp::now().to_rfc3339();
    let fraud = envelope(
        "i-1",
        "FraudConfirmed",
        &now,
        json!({"customerId": "CI-1", "caseRef": "case-1"}),
    );
    let deceased = envelope(
        "i-2",
        "CustomerDeceased",
        &now,
        json!({"customerId": "CI-2", "evidenceRef": "cert-2"}),
    );
    let request = envelope(
        "i-3",
        "CustomerTerminationRequested",
        &now,
        json!({"customerId": "CI-3", "erasureRequested": true, "reason": "moving"}),
    );

    // Confluent's serializer writes the inputs. The decisions topic gets the
    // FraudConfirmed record schema; the lifecycle topic the topic's union
    // schema (two event types under one subject), the branch named by
    // fastavro's (name, value) notation.
    let decisions = rig.topic("decisions");
    let lifecycle = rig.topic("lifecycle");
    let fraud_bytes = confluent(
        &python,
        "serialize",
        &url,
        &decisions,
        &[json!({
            "schema": schemas::event_schema_text("FraudConfirmed").expect("schema"),
            "value": serde_json::from_str::<Value>(&fraud).expect("json"),
        })],
    );
    let union = schemas::topic_schema_text(Topic::Lifecycle);
    let lifecycle_bytes = confluent(
        &python,
        "serialize",
        &url,
        &lifecycle,
        &[
            json!({"schema": union, "branch": "io.terminus.v1.CustomerDeceased",
                   "value": serde_json::from_str::<Value>(&deceased).expect("json")}),
            json!({"schema": union, "branch": "io.terminus.v1.CustomerTerminationRequested",
                   "value": serde_json::from_str::<Value>(&request).expect("json")}),
        ],
    );
    let bytes = |a: &Value| hex_decode(a["hex"].as_str().expect("hex answer"));
    let (fraud_bytes, deceased_bytes, request_bytes) = (
        bytes(&fraud_bytes[0]),
        bytes(&lifecycle_bytes[0]),
        bytes(&lifecycle_bytes[1]),
    );
    for b in [&fraud_bytes, &deceased_bytes, &request_bytes] {
        assert_eq!(b.first(), Some(&CONFLUENT_MAGIC), "Confluent framing");
    }
    assert_eq!(registry.versions(&format!("{decisions}-value")).len(), 1);
    assert_eq!(registry.versions(&format!("{lifecycle}-value")).len(), 1);

    let mut worker = rig.spawn("a");
    common::produce(&decisions, &[("CI-1", fraud_bytes.as_slice())]).await;
    common::produce(
        &lifecycle,
        &[
            ("CI-2", deceased_bytes.as_slice()),
            ("CI-3", request_bytes.as_slice()),
        ],
    )
    .await;
    rig.wait_caught_up(Duration::from_secs(60)).await;

    // Confluent's deserializer reads every output the worker committed.
    let mut actual = Vec::new();
    for role in ["status", "dismantle", "terminated"] {
        let topic = rig.topic(role);
        let records =
            common::consume_until_idle(&topic, Duration::from_millis(300), Duration::from_secs(30))
                .await;
        if records.is_empty() {
            continue;
        }
        let requests: Vec<Value> = records
            .iter()
            .map(|r| json!({"hex": hex_encode(&r.value)}))
            .collect();
        let answers = confluent(&python, "deserialize", &url, &topic, &requests);
        for (r, a) in records.iter().zip(answers) {
            actual.push((
                role.to_owned(),
                r.key.clone().unwrap_or_default(),
                a["value"].clone(),
            ));
        }
    }
    let dead = rig.dead_letters().await;
    stop(&mut worker);
    assert!(
        dead.is_empty(),
        "no dead letters, got {:?}",
        dead.iter()
            .map(|d| d.header("terminus.dlq.reason"))
            .collect::<Vec<_>>()
    );

    let mut expected = simulate(&[fraud, deceased, request]);
    let key =
        |v: &(String, String, Value)| (v.0.clone(), v.1.clone(), strip_nulls(&v.2).to_string());
    actual.sort_by_key(key);
    expected.sort_by_key(key);
    assert!(!expected.is_empty());
    assert_eq!(
        actual.len(),
        expected.len(),
        "{actual:#?}\nvs\n{expected:#?}"
    );
    for (a, e) in actual.iter().zip(&expected) {
        assert_eq!((&a.0, &a.1), (&e.0, &e.1));
        // Avro carries absent optionals as null; compare without nulls.
        assert_eq!(strip_nulls(&a.2), strip_nulls(&e.2), "{} {}", a.0, a.1);
    }
}
