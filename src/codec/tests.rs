use super::*;
use crate::contract::{Category, OutputEnvelope, OutputEvent, Vertical};
use crate::time::{Rfc3339, Timestamp};
use serde_json::{Value as Json, json};
use terminus_test_support::FakeRegistry;
use uuid::Uuid;

const REQUEST: &str = r#"{"eventId":"e1","eventType":"CustomerTerminationRequested","eventTime":"2026-11-27T10:15:00Z","correlationId":"req-1","source":"care","event":{"customerId":"C-1","requestedEffectiveDate":"2026-12-31","reason":"moving","erasureRequested":true}}"#;
const FAILED: &str = r#"{"eventId":"e2","eventType":"DismantleFailed","eventTime":"2026-11-27T10:15:00Z","event":{"customerId":"C-1","terminationId":"6f1c1b1e-8c2a-5d1e-9b1a-1a2b3c4d5e6f","vertical":"billing","reason":"down","retryable":true}}"#;

fn datum(schema_text: &str, json: &Json) -> Vec<u8> {
    let schema = Schema::parse_str(schema_text).unwrap();
    let names = avro_json::names_of(&schema).unwrap();
    let value = avro_json::json_to_avro(json, &schema, &names).unwrap();
    GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap()
}

fn single_object(schema_text: &str, json: &Json) -> Vec<u8> {
    let schema = Schema::parse_str(schema_text).unwrap();
    let mut out = SINGLE_OBJECT_MAGIC.to_vec();
    out.extend_from_slice(&schemas::fingerprint(&schema).to_le_bytes());
    out.extend(datum(schema_text, json));
    out
}

fn confluent(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = vec![CONFLUENT_MAGIC];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

fn json_codec() -> Codec {
    Codec::new(WireFormat::Json, None).unwrap()
}

fn registry_codec(format: WireFormat) -> (FakeRegistry, Codec) {
    let fake = FakeRegistry::start().unwrap();
    let client = RegistryClient::new(&fake.url()).unwrap();
    let codec = Codec::new(format, Some(client)).unwrap();
    (fake, codec)
}

fn reason(result: Result<InputEnvelope, DecodeError>) -> DeadLetterReason {
    result.expect_err("must be refused").reason
}

#[test]
fn wire_formats_parse_and_print() {
    for format in WireFormat::ALL {
        assert_eq!(format.as_str().parse::<WireFormat>().unwrap(), format);
        assert_eq!(format.to_string(), format.as_str());
    }
    assert!("avro".parse::<WireFormat>().is_err());
    assert_eq!(WireFormat::detect(b"{}"), WireFormat::Json);
    assert_eq!(
        WireFormat::detect(&[0, 0, 0, 0, 1]),
        WireFormat::AvroConfluent
    );
    assert_eq!(
        WireFormat::detect(&[0xC3, 0x01]),
        WireFormat::AvroSingleObject
    );
    assert_eq!(WireFormat::detect(&[0xC3, 0x02]), WireFormat::Json);
    assert_eq!(WireFormat::detect(b""), WireFormat::Json);
}

#[test]
fn avro_confluent_output_needs_a_registry() {
    assert_eq!(
        Codec::new(WireFormat::AvroConfluent, None).unwrap_err(),
        CodecError::RegistryRequired
    );
    Codec::new(WireFormat::AvroSingleObject, None).unwrap();
}

#[test]
fn json_decodes_exactly_as_the_contract_does() {
    let codec = json_codec();
    for text in [REQUEST, FAILED, "{", "[]", ""] {
        assert_eq!(
            codec.decode("t", text.as_bytes(), Some("application/json")),
            decode_envelope(text.as_bytes())
        );
        assert_eq!(
            codec.decode("t", text.as_bytes(), None),
            decode_envelope(text.as_bytes())
        );
    }
}

#[test]
fn a_value_announced_as_avro_must_carry_an_avro_header() {
    let codec = json_codec();
    let refused = codec.decode("t", REQUEST.as_bytes(), Some(CONTENT_TYPE_AVRO_CONFLUENT));
    assert_eq!(reason(refused), DeadLetterReason::InvalidAvro);
}

#[test]
fn single_object_with_an_event_schema_decodes_like_json() {
    let codec = json_codec();
    for (event_type, text) in [
        ("CustomerTerminationRequested", REQUEST),
        ("DismantleFailed", FAILED),
    ] {
        let json: Json = serde_json::from_str(text).unwrap();
        let schema = schemas::event_schema_text(event_type).unwrap();
        let bytes = single_object(schema, &json);
        assert_eq!(
            codec.decode("t", &bytes, Some(CONTENT_TYPE_AVRO_SINGLE_OBJECT)),
            decode_envelope(text.as_bytes()),
            "{event_type}"
        );
    }
}

#[test]
fn single_object_with_a_topic_union_decodes_like_json() {
    let codec = json_codec();
    let json: Json = serde_json::from_str(FAILED).unwrap();
    let schema = schemas::topic_schema_text(Topic::Outcomes);
    let bytes = single_object(&schema, &json);
    assert_eq!(
        codec.decode("t", &bytes, None),
        decode_envelope(FAILED.as_bytes())
    );
}

#[test]
fn an_unknown_fingerprint_is_refused() {
    let codec = json_codec();
    let json: Json = serde_json::from_str(REQUEST).unwrap();
    let mut bytes = single_object(
        schemas::event_schema_text("CustomerTerminationRequested").unwrap(),
        &json,
    );
    bytes[2] ^= 0xff;
    assert_eq!(
        reason(codec.decode("t", &bytes, None)),
        DeadLetterReason::UnknownFingerprint
    );
}

#[test]
fn truncated_headers_and_trailing_bytes_are_invalid_avro() {
    let codec = json_codec();
    for bytes in [&[0u8][..], &[0, 0, 0], &[0xC3, 0x01, 1, 2, 3]] {
        assert_eq!(
            reason(codec.decode("t", bytes, None)),
            DeadLetterReason::InvalidAvro
        );
    }
    let json: Json = serde_json::from_str(REQUEST).unwrap();
    let schema = schemas::event_schema_text("CustomerTerminationRequested").unwrap();
    let mut bytes = single_object(schema, &json);
    bytes.push(0);
    assert_eq!(
        reason(codec.decode("t", &bytes, None)),
        DeadLetterReason::InvalidAvro
    );
    // Every truncation, including one that ends exactly before a union index
    // (which apache-avro alone would read as null).
    let whole = single_object(schema, &json);
    for len in 10..whole.len() {
        assert_eq!(
            reason(codec.decode("t", &whole[..len], None)),
            DeadLetterReason::InvalidAvro,
            "truncated to {len} bytes"
        );
    }
}

#[test]
fn the_event_type_must_match_the_record() {
    let codec = json_codec();
    let mut json: Json = serde_json::from_str(REQUEST).unwrap();
    let schema = schemas::event_schema_text("CustomerTerminationRequested").unwrap();
    let bytes = {
        let parsed = Schema::parse_str(schema).unwrap();
        let names = avro_json::names_of(&parsed).unwrap();
        let mut value = avro_json::json_to_avro(&json, &parsed, &names).unwrap();
        if let Avro::Record(fields) = &mut value {
            fields[1].1 = Avro::String("CustomerDeceased".into());
        }
        json["eventType"] = json!("CustomerDeceased");
        let mut out = SINGLE_OBJECT_MAGIC.to_vec();
        out.extend_from_slice(&schemas::fingerprint(&parsed).to_le_bytes());
        out.extend(
            GenericDatumWriter::builder(&parsed)
                .build()
                .unwrap()
                .write_value_to_vec(value)
                .unwrap(),
        );
        out
    };
    assert_eq!(
        reason(codec.decode("t", &bytes, None)),
        DeadLetterReason::InvalidField
    );
}

#[test]
fn confluent_framing_resolves_the_writer_schema_by_id() {
    let (fake, codec) = registry_codec(WireFormat::Json);
    let client = codec.registry().unwrap();
    let lifecycle = schemas::topic_schema_text(Topic::Lifecycle);
    let id = client
        .register("crm.customer.lifecycle.v1-value", &lifecycle)
        .unwrap();
    let json: Json = serde_json::from_str(REQUEST).unwrap();
    let bytes = confluent(id, &datum(&lifecycle, &json));
    let fresh = Codec::new(
        WireFormat::Json,
        Some(RegistryClient::new(&fake.url()).unwrap()),
    )
    .unwrap();
    assert_eq!(
        fresh.decode("t", &bytes, None),
        decode_envelope(REQUEST.as_bytes())
    );
    // The writer schema is fetched once and cached.
    assert_eq!(
        fresh.decode("t", &bytes, None),
        decode_envelope(REQUEST.as_bytes())
    );
    let fetches = fake
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /schemas/ids/"))
        .count();
    assert_eq!(fetches, 1);
}

#[test]
fn unknown_ids_and_missing_registries_are_unknown_schema_ids() {
    let (_fake, codec) = registry_codec(WireFormat::Json);
    let bytes = confluent(4242, &[2, 0]);
    assert_eq!(
        reason(codec.decode("t", &bytes, None)),
        DeadLetterReason::UnknownSchemaId
    );
    assert_eq!(
        reason(json_codec().decode("t", &bytes, None)),
        DeadLetterReason::UnknownSchemaId
    );
}

#[test]
fn an_unreachable_registry_is_transient_not_a_dead_letter() {
    let (fake, codec) = registry_codec(WireFormat::Json);
    fake.script(
        "/schemas/ids/7",
        503,
        r#"{"error_code":50301,"message":"down"}"#,
    );
    let err = codec.decode("t", &confluent(7, &[]), None).unwrap_err();
    assert_eq!(err.reason, DeadLetterReason::SchemaRegistryUnavailable);
    assert!(is_transient(&err));
    // Not cached: asked again on the next record.
    let _ = codec.decode("t", &confluent(7, &[]), None);
    let asks = fake
        .requests()
        .iter()
        .filter(|r| *r == "GET /schemas/ids/7")
        .count();
    assert_eq!(asks, 2);
}

/// A CustomerTerminationRequested writer schema with `erasureRequested`
/// removed (an older producer) or a new optional `channel` (a newer one).
fn evolved_request_schema(edit: impl FnOnce(&mut Vec<Json>)) -> String {
    let mut schema: Json =
        serde_json::from_str(schemas::event_schema_text("CustomerTerminationRequested").unwrap())
            .unwrap();
    let body_fields = schema["fields"][5]["type"]["fields"]
        .as_array_mut()
        .unwrap();
    edit(body_fields);
    schema.to_string()
}

#[test]
fn older_and_newer_compatible_writers_decode() {
    let (fake, codec) = registry_codec(WireFormat::Json);
    let client = RegistryClient::new(&fake.url()).unwrap();
    let older = evolved_request_schema(|fields| fields.retain(|f| f["name"] != "erasureRequested"));
    let newer = evolved_request_schema(|fields| {
        fields.push(json!({"name":"channel","type":["null","string"],"default":null}));
    });
    let mut json: Json = serde_json::from_str(REQUEST).unwrap();
    json["event"]
        .as_object_mut()
        .unwrap()
        .remove("erasureRequested");
    let old_id = client.register("older", &older).unwrap();
    let decoded = codec
        .decode("t", &confluent(old_id, &datum(&older, &json)), None)
        .unwrap();
    assert_eq!(
        decoded.event,
        crate::contract::InputEvent::CustomerTerminationRequested {
            requested_effective_date: Some(
                Timestamp::parse_rfc3339("2026-12-31T00:00:00Z").unwrap()
            ),
            erasure_requested: false,
        }
    );
    json["event"]["channel"] = json!("shop");
    json["event"]["erasureRequested"] = json!(true);
    let new_id = client.register("newer", &newer).unwrap();
    let decoded = codec
        .decode("t", &confluent(new_id, &datum(&newer, &json)), None)
        .unwrap();
    assert_eq!(decoded, decode_envelope(REQUEST.as_bytes()).unwrap());
}

#[test]
fn incompatible_writers_and_foreign_records_are_refused() {
    let (fake, codec) = registry_codec(WireFormat::Json);
    let client = RegistryClient::new(&fake.url()).unwrap();
    // customerId turned into a long: cannot be resolved.
    let incompatible = evolved_request_schema(|fields| fields[0]["type"] = json!("long"));
    let mut json: Json = serde_json::from_str(REQUEST).unwrap();
    json["event"]["customerId"] = json!(7);
    let id = client.register("x", &incompatible).unwrap();
    let bytes = confluent(id, &datum(&incompatible, &json));
    assert_eq!(
        reason(codec.decode("t", &bytes, None)),
        DeadLetterReason::IncompatibleSchema
    );
    // A plain string schema is no contract record.
    let id = client.register("y", r#""string""#).unwrap();
    let bytes = confluent(id, &[2, b'a']);
    assert_eq!(
        reason(codec.decode("t", &bytes, None)),
        DeadLetterReason::IncompatibleSchema
    );
    // An output published on an input topic.
    let status = schemas::topic_schema_text(Topic::Status);
    let id = client.register("z", &status).unwrap();
    let record = sample_outputs().remove(0);
    let bytes = confluent(
        id,
        &datum(&status, &serde_json::to_value(&record.envelope).unwrap()),
    );
    assert_eq!(
        reason(codec.decode("t", &bytes, None)),
        DeadLetterReason::UnknownEventType
    );
}

fn sample_outputs() -> Vec<OutputRecord> {
    let t = Rfc3339(Timestamp::parse_rfc3339("2026-11-27T10:15:00Z").unwrap());
    let id = Uuid::parse_str("6f1c1b1e-8c2a-5d1e-9b1a-1a2b3c4d5e6f").unwrap();
    let envelope = |event: OutputEvent, correlation: Option<&str>| OutputEnvelope {
        event_id: id,
        event_type: event.event_type(),
        event_time: t,
        correlation_id: correlation.map(str::to_owned),
        source: "terminus".into(),
        causation_id: "e1".into(),
        event,
    };
    let events = vec![
        OutputEvent::TerminationAccepted {
            customer_id: "C-1".into(),
            termination_id: id,
            category: Category::Fraud,
            effective_at: t,
            notify_customer: false,
            policy_rule: "de-business".into(),
        },
        OutputEvent::TerminationStalled {
            customer_id: "C-1".into(),
            termination_id: id,
            awaiting: vec![Vertical::Billing, Vertical::Assurance],
        },
        OutputEvent::DismantleSolution {
            customer_id: "C-1".into(),
            termination_id: id,
            vertical: Vertical::Fulfillment,
            category: Category::CustomerRequest,
            effective_at: t,
            attempt: 2,
        },
        OutputEvent::RelationshipTerminated {
            customer_id: "C-1".into(),
            termination_id: id,
            category: Category::OrganizationDissolved,
            terminated_at: t,
            retain_records_until: t,
            reestablishable: true,
            erasure_requested: false,
        },
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| OutputRecord {
            topic: event.topic(),
            key: "C-1".into(),
            envelope: envelope(event, (i % 2 == 0).then_some("req-1")),
        })
        .collect()
}

#[test]
fn json_encoding_is_todays_bytes() {
    let codec = json_codec();
    for record in sample_outputs() {
        let (bytes, content_type) = codec.encode("t", &record).unwrap();
        assert_eq!(bytes, record.to_json());
        assert_eq!(content_type, CONTENT_TYPE_JSON);
    }
}

#[test]
fn single_object_outputs_round_trip() {
    let codec = Codec::new(WireFormat::AvroSingleObject, None).unwrap();
    for record in sample_outputs() {
        let (bytes, content_type) = codec.encode("t", &record).unwrap();
        assert_eq!(content_type, CONTENT_TYPE_AVRO_SINGLE_OBJECT);
        assert_eq!(bytes[..2], SINGLE_OBJECT_MAGIC);
        let schema = Schema::parse_str(codec.output_schema_text(record.topic).unwrap()).unwrap();
        assert_eq!(bytes[2..10], schemas::fingerprint(&schema).to_le_bytes());
        assert_eq!(
            codec.decode_to_json(&bytes).unwrap(),
            serde_json::to_value(&record.envelope).unwrap()
        );
    }
}

#[test]
fn confluent_outputs_register_once_per_subject_and_round_trip() {
    let (fake, codec) = registry_codec(WireFormat::AvroConfluent);
    for _ in 0..3 {
        for record in sample_outputs() {
            let topic = record.topic.default_name();
            let (bytes, content_type) = codec.encode(topic, &record).unwrap();
            assert_eq!(content_type, CONTENT_TYPE_AVRO_CONFLUENT);
            assert_eq!(bytes[0], CONFLUENT_MAGIC);
            assert_eq!(
                codec.decode_to_json(&bytes).unwrap(),
                serde_json::to_value(&record.envelope).unwrap()
            );
        }
    }
    let registrations: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("POST"))
        .collect();
    assert_eq!(
        registrations,
        vec![
            "POST /subjects/crm.termination.status.v1-value/versions",
            "POST /subjects/crm.solution.dismantle.v1-value/versions",
            "POST /subjects/crm.relationship.terminated.v1-value/versions",
        ]
    );
}

#[test]
fn basic_auth_is_sent() {
    let fake = FakeRegistry::start().unwrap();
    fake.require_basic_auth("svc", "pw");
    let anonymous = RegistryClient::new(&fake.url()).unwrap();
    let err = anonymous.register("s", r#""string""#).unwrap_err();
    assert!(
        matches!(err, RegistryError::Http { status: 401, .. }),
        "{err}"
    );
    let authed = RegistryClient::new(&fake.url())
        .unwrap()
        .with_basic_auth("svc", "pw");
    assert_eq!(authed.register("s", r#""string""#).unwrap(), 1);
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn codec() -> &'static Codec {
        static CODEC: OnceLock<Codec> = OnceLock::new();
        CODEC.get_or_init(|| Codec::new(WireFormat::AvroSingleObject, None).unwrap())
    }

    fn known_prefix() -> Vec<u8> {
        let schema = Schema::parse_str(&schemas::all_inputs_schema_text()).unwrap();
        let mut out = SINGLE_OBJECT_MAGIC.to_vec();
        out.extend_from_slice(&schemas::fingerprint(&schema).to_le_bytes());
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = codec().decode("t", &bytes, None);
            let _ = codec().decode_to_json(&bytes);
        }

        #[test]
        fn arbitrary_datums_after_a_known_fingerprint(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut bytes = known_prefix();
            bytes.extend(tail);
            let _ = codec().decode("t", &bytes, Some(CONTENT_TYPE_AVRO_SINGLE_OBJECT));
        }

        #[test]
        fn corrupted_valid_values(flip in 10usize..200, byte in any::<u8>()) {
            static VALID: OnceLock<Vec<u8>> = OnceLock::new();
            let mut bytes = VALID
                .get_or_init(|| {
                    let json: Json = serde_json::from_str(REQUEST).unwrap();
                    single_object(&schemas::all_inputs_schema_text(), &json)
                })
                .clone();
            let at = flip % bytes.len();
            bytes[at] = byte;
            let _ = codec().decode("t", &bytes, None);
        }
    }
}
