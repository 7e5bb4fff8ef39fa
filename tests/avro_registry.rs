//! The schema-registry client and the Confluent wire format against a registry.
//!
//! No Confluent-compatible registry can be run here (see
//! tests/fixtures/registry/README.md), so these tests use
//! `terminus_test_support::FakeRegistry` (the dev-only crate `test-support/`): an in-memory registry on 127.0.0.1 that
//! speaks the documented protocol (ids by canonical form, BACKWARD
//! compatibility per subject, 40403/409/42201/401 errors), and serves the
//! recorded protocol fixtures verbatim where a test scripts them.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use serde_json::{Value as Json, json};
use terminus::codec::{
    CONFLUENT_MAGIC, Codec, RegistryClient, RegistryError, WireFormat, avro_json, schemas,
};
use terminus::contract::{DeadLetterReason, InputEvent, Topic, decode_envelope};
use terminus_test_support::FakeRegistry;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/registry")
        .join(name);
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

fn client(fake: &FakeRegistry) -> RegistryClient {
    RegistryClient::new(&fake.url()).unwrap()
}

#[test]
fn the_client_reads_the_documented_answers() {
    let fake = FakeRegistry::start().unwrap();
    fake.script(
        "/schemas/ids/1",
        200,
        &fixture("schema-by-id-response.json"),
    );
    fake.script(
        "/schemas/ids/2",
        200,
        &fixture("schema-by-id-response-apicurio.json"),
    );
    fake.script("/schemas/ids/42", 404, &fixture("schema-not-found.json"));
    fake.script("/schemas/ids/43", 503, &fixture("unavailable.json"));
    fake.script(
        "/subjects/accepted/versions",
        200,
        &fixture("register-response.json"),
    );
    fake.script(
        "/subjects/refused/versions",
        409,
        &fixture("incompatible.json"),
    );
    fake.script(
        "/subjects/invalid/versions",
        422,
        &fixture("invalid-schema.json"),
    );
    fake.script(
        "/subjects/missing/versions",
        404,
        &fixture("subject-not-found.json"),
    );
    let c = client(&fake);
    let probe: Json = serde_json::from_str(&fixture("register-request.json")).unwrap();
    let probe = probe["schema"].as_str().unwrap();

    assert_eq!(&*c.schema_by_id(1).unwrap(), probe);
    assert_eq!(&*c.schema_by_id(2).unwrap(), probe);
    match c.schema_by_id(42).unwrap_err() {
        RegistryError::NotFound {
            status, error_code, ..
        } => {
            assert_eq!((status, error_code), (404, 40403));
        }
        other => panic!("{other}"),
    }
    let unavailable = c.schema_by_id(43).unwrap_err();
    assert!(unavailable.is_transient(), "{unavailable}");

    assert_eq!(c.register("accepted", probe).unwrap(), 1);
    match c.register("refused", probe).unwrap_err() {
        RegistryError::Incompatible {
            subject,
            error_code,
            message,
        } => {
            assert_eq!((subject.as_str(), error_code), ("refused", 409));
            assert!(message.contains("incompatible"));
        }
        other => panic!("{other}"),
    }
    let invalid = c.register("invalid", probe).unwrap_err();
    assert!(
        matches!(
            invalid,
            RegistryError::Http {
                status: 422,
                error_code: 42201,
                ..
            }
        ),
        "{invalid}"
    );
    assert!(!invalid.is_transient());
    assert!(matches!(
        c.register("missing", probe).unwrap_err(),
        RegistryError::NotFound { .. }
    ));

    // The request the client sends is the documented one.
    let (request, body) = fake
        .bodies()
        .into_iter()
        .find(|(r, _)| r == "POST /subjects/accepted/versions")
        .unwrap();
    assert_eq!(request, "POST /subjects/accepted/versions");
    let sent: Json = serde_json::from_str(&body).unwrap();
    let documented: Json = serde_json::from_str(&fixture("register-request.json")).unwrap();
    assert_eq!(sent, documented);
}

#[test]
fn credentials_are_required_and_sent() {
    let fake = FakeRegistry::start().unwrap();
    fake.require_basic_auth("terminus", "s3cret");
    let err = client(&fake).schema_by_id(1).unwrap_err();
    assert!(
        matches!(err, RegistryError::Http { status: 401, .. }),
        "{err}"
    );
    assert!(!err.is_transient());
    let authed = client(&fake).with_basic_auth("terminus", "s3cret");
    let id = authed.register("s-value", r#"{"type":"string"}"#).unwrap();
    assert_eq!(&*authed.schema_by_id(id).unwrap(), r#"{"type":"string"}"#);
    // The password comes from the environment; a missing variable is a clear error.
    let missing = client(&fake)
        .basic_auth_from_env("terminus", "TERMINUS_TEST_SURELY_UNSET_PASSWORD")
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("TERMINUS_TEST_SURELY_UNSET_PASSWORD")
    );
}

/// The lifecycle topic's union with `edit` applied to the
/// CustomerTerminationRequested body's fields.
fn lifecycle_schema(edit: impl FnOnce(&mut Vec<Json>)) -> String {
    let mut union: Json =
        serde_json::from_str(&schemas::topic_schema_text(Topic::Lifecycle)).unwrap();
    let request = union
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["name"] == "CustomerTerminationRequested")
        .unwrap();
    let body = request["fields"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "event")
        .unwrap();
    edit(body["type"]["fields"].as_array_mut().unwrap());
    union.to_string()
}

/// What an upstream producer does: Avro datum with `schema_text`, framed with `id`.
fn produce(id: u32, schema_text: &str, json: &Json) -> Vec<u8> {
    let schema = Schema::parse_str(schema_text).unwrap();
    let names = avro_json::names_of(&schema).unwrap();
    let value = avro_json::json_to_avro(json, &schema, &names).unwrap();
    let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap();
    let mut out = vec![CONFLUENT_MAGIC];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend(datum);
    out
}

#[test]
fn registration_fetching_and_evolution() {
    let fake = FakeRegistry::start().unwrap();
    let upstream = client(&fake);
    let subject = "crm.customer.lifecycle.v1-value";

    // v1: the released contract.
    let v1 = schemas::topic_schema_text(Topic::Lifecycle);
    let id1 = upstream.register(subject, &v1).unwrap();
    assert_eq!(upstream.register(subject, &v1).unwrap(), id1, "idempotent");

    // v2: an optional field added (BACKWARD compatible): a new version and id.
    let v2 = lifecycle_schema(|fields| {
        fields.push(
            json!({"name": "channel", "type": ["null", "string"], "default": null,
                           "doc": "Where the customer asked (shop, app, call centre)."}),
        );
    });
    let id2 = upstream.register(subject, &v2).unwrap();
    assert_ne!(id1, id2);
    assert_eq!(fake.versions(subject), vec![id1, id2]);

    // v3: a required field without a default: refused by the registry.
    let v3 = lifecycle_schema(|fields| fields.push(json!({"name": "agent", "type": "string"})));
    assert!(matches!(
        upstream.register(subject, &v3).unwrap_err(),
        RegistryError::Incompatible { .. }
    ));

    // Old and new producers publish; the worker's codec, which knows only the
    // registry URL and the contract's reader schemas, decodes both.
    let old_event = json!({"eventId": "old-1", "eventType": "CustomerTerminationRequested",
        "eventTime": "2026-11-27T10:15:00Z", "source": "care-portal",
        "event": {"customerId": "C-1", "requestedEffectiveDate": "2026-12-31", "erasureRequested": true}});
    let mut new_event = old_event.clone();
    new_event["eventId"] = json!("new-1");
    new_event["event"]["channel"] = json!("app");

    let worker = Codec::new(WireFormat::Json, Some(client(&fake))).unwrap();
    let old = worker
        .decode(
            "crm.customer.lifecycle.v1",
            &produce(id1, &v1, &old_event),
            None,
        )
        .unwrap();
    let new = worker
        .decode(
            "crm.customer.lifecycle.v1",
            &produce(id2, &v2, &new_event),
            None,
        )
        .unwrap();
    assert_eq!(
        old,
        decode_envelope(old_event.to_string().as_bytes()).unwrap()
    );
    assert_eq!(new.event_id, "new-1");
    assert_eq!(new.event, old.event);
    assert!(matches!(
        new.event,
        InputEvent::CustomerTerminationRequested {
            erasure_requested: true,
            ..
        }
    ));

    // Other event types written with v2 decode too, and an unknown id is refused.
    let withdrawn = json!({"eventId": "w-1", "eventType": "CustomerTerminationWithdrawn",
        "eventTime": "2026-11-27T11:00:00Z", "event": {"customerId": "C-1"}});
    let decoded = worker
        .decode("t", &produce(id2, &v2, &withdrawn), None)
        .unwrap();
    assert_eq!(decoded.event, InputEvent::CustomerTerminationWithdrawn);
    let err = worker
        .decode("t", &produce(999, &v2, &withdrawn), None)
        .unwrap_err();
    assert_eq!(err.reason, DeadLetterReason::UnknownSchemaId);
}

#[test]
fn a_consumer_reads_the_workers_avro_outputs_through_the_registry() {
    let fake = FakeRegistry::start().unwrap();
    let worker = Codec::new(WireFormat::AvroConfluent, Some(client(&fake))).unwrap();
    let input = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/contract-inputs.jsonl"),
    )
    .unwrap();
    let mut engine =
        terminus::engine::Engine::new(std::sync::Arc::new(terminus::domain::Policy::default()));
    let mut records = Vec::new();
    for line in input.lines() {
        let env = decode_envelope(line.as_bytes()).unwrap();
        records.extend(engine.fire_due(env.event_time));
        records.extend(engine.handle(&env, env.event_time).outputs);
        engine.commit();
    }
    assert!(records.len() > 10);
    // A downstream consumer with nothing but a registry client and an Avro library.
    let downstream = client(&fake);
    for record in &records {
        let topic = record.topic.default_name();
        let (bytes, content_type) = worker.encode(topic, record).unwrap();
        assert_eq!(content_type, "application/vnd.confluent.avro");
        assert_eq!(bytes[0], CONFLUENT_MAGIC);
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let writer = Schema::parse_str(&downstream.schema_by_id(id).unwrap()).unwrap();
        let mut datum = &bytes[5..];
        let value = GenericDatumReader::builder(&writer)
            .build()
            .unwrap()
            .read_value(&mut datum)
            .unwrap();
        assert!(datum.is_empty());
        assert_eq!(
            avro_json::avro_to_json(&value).unwrap(),
            serde_json::to_value(&record.envelope).unwrap()
        );
    }
    // One subject per output topic, each registered once.
    let mut subjects: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("POST "))
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        vec![
            "POST /subjects/crm.relationship.terminated.v1-value/versions",
            "POST /subjects/crm.solution.dismantle.v1-value/versions",
            "POST /subjects/crm.termination.status.v1-value/versions",
        ]
    );
}
