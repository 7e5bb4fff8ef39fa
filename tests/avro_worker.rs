//! A worker configured for Avro, through the real broker: it reads JSON,
//! Avro single-object and Confluent-framed Avro inputs (schema ids resolved in
//! a registry), publishes Confluent-framed Avro outputs registered under the
//! topic-name strategy, and dead-letters an unknown schema id.
//!
//! No Confluent-compatible registry can be fetched and run on these machines
//! (see docs/schemas.md), so the registry is `FakeRegistry`, an in-process
//! server of the documented REST protocol.

mod common;

use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use common::rig::{Rig, envelope, simulate, stop};
use std::time::Duration;
use terminus::codec::{
    CONFLUENT_MAGIC, Codec, RegistryClient, SINGLE_OBJECT_MAGIC, WireFormat, avro_json, schemas,
};
use terminus_test_support::FakeRegistry;

fn datum(schema_text: &str, json: &serde_json::Value) -> Vec<u8> {
    let schema = Schema::parse_str(schema_text).expect("schema");
    let names = avro_json::names_of(&schema).expect("names");
    let value: Avro = avro_json::json_to_avro(json, &schema, &names).expect("to avro");
    apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .expect("writer")
        .write_value_to_vec(value)
        .expect("datum")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_avro_worker_reads_every_format_and_writes_confluent_avro() {
    let registry = FakeRegistry::start().expect("registry");
    let mut rig = Rig::new("avro").await;
    rig.extra_args = vec![
        "--output-format".into(),
        "avro-confluent".into(),
        "--schema-registry-url".into(),
        registry.url(),
    ];
    let now = terminus::time::Timestamp::now().to_rfc3339();
    let as_json = envelope(
        "a-1",
        "FraudConfirmed",
        &now,
        serde_json::json!({"customerId": "AV-1", "caseRef": "c-1"}),
    );
    let as_single = envelope(
        "a-2",
        "CustomerDeceased",
        &now,
        serde_json::json!({"customerId": "AV-2", "evidenceRef": "d-2"}),
    );
    let as_confluent = envelope(
        "a-3",
        "CustomerTerminationRequested",
        &now,
        serde_json::json!({"customerId": "AV-3", "erasureRequested": true}),
    );

    let single_text = schemas::event_schema_text("CustomerDeceased").expect("schema text");
    let single_schema = Schema::parse_str(single_text).expect("schema");
    let mut single = SINGLE_OBJECT_MAGIC.to_vec();
    single.extend_from_slice(&schemas::fingerprint(&single_schema).to_le_bytes());
    single.extend(datum(
        single_text,
        &serde_json::from_str(&as_single).expect("json"),
    ));

    let confluent_text =
        schemas::event_schema_text("CustomerTerminationRequested").expect("schema text");
    let client = RegistryClient::new(&registry.url()).expect("client");
    let lifecycle = rig.topic("lifecycle");
    let id = client
        .register(&format!("{lifecycle}-value"), confluent_text)
        .expect("register the input schema");
    let mut confluent = vec![CONFLUENT_MAGIC];
    confluent.extend_from_slice(&id.to_be_bytes());
    confluent.extend(datum(
        confluent_text,
        &serde_json::from_str(&as_confluent).expect("json"),
    ));

    let mut unknown = vec![CONFLUENT_MAGIC];
    unknown.extend_from_slice(&999_999u32.to_be_bytes());
    unknown.extend_from_slice(b"\x02\x04ab");

    let mut worker = rig.spawn("a");
    common::produce(&rig.topic("decisions"), &[("AV-1", as_json.as_bytes())]).await;
    common::produce(
        &lifecycle,
        &[
            ("AV-2", single.as_slice()),
            ("AV-3", confluent.as_slice()),
            ("AV-9", unknown.as_slice()),
        ],
    )
    .await;
    rig.wait_caught_up(Duration::from_secs(60)).await;

    let codec = Codec::new(
        WireFormat::AvroConfluent,
        Some(RegistryClient::new(&registry.url()).expect("client")),
    )
    .expect("codec");
    let mut actual = Vec::new();
    for role in ["status", "dismantle", "terminated"] {
        for r in common::consume_until_idle(
            &rig.topic(role),
            Duration::from_millis(300),
            Duration::from_secs(30),
        )
        .await
        {
            assert_eq!(
                r.header("content-type"),
                Some("application/vnd.confluent.avro")
            );
            assert_eq!(r.value.first(), Some(&CONFLUENT_MAGIC), "Confluent framing");
            let value = codec
                .decode_to_json(&r.value)
                .expect("decodes with the registered schema");
            actual.push((role.to_owned(), r.key.clone().unwrap_or_default(), value));
        }
    }
    let dead = rig.dead_letters().await;
    stop(&mut worker);

    let expected = simulate(&[as_json, as_single, as_confluent]);
    let normal = |v: &mut Vec<(String, String, serde_json::Value)>| {
        v.sort_by(|a, b| {
            (a.0.clone(), a.1.clone(), a.2.to_string()).cmp(&(
                b.0.clone(),
                b.1.clone(),
                b.2.to_string(),
            ))
        });
    };
    let (mut actual, mut expected) = (actual, expected);
    normal(&mut actual);
    normal(&mut expected);
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(&expected) {
        assert_eq!((&a.0, &a.1), (&e.0, &e.1));
        // Avro carries absent optionals as null; compare the JSON without nulls.
        assert_eq!(strip_nulls(&a.2), strip_nulls(&e.2), "{}", a.1);
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].header("terminus.dlq.reason"),
        Some("UnknownSchemaId")
    );
    let subjects = registry.requests().join("\n");
    assert!(
        subjects.contains(&format!("{}-value", rig.topic("status"))),
        "outputs registered under <topic>-value: {subjects}"
    );
}

fn strip_nulls(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}
