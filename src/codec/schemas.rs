//! The Avro schemas of contract v1, compiled into the binary from `schemas/`.
//!
//! Each event type has its own self-contained schema file
//! (`schemas/<EventType>.avsc`: the envelope record named after the event type,
//! with its typed `event` body). A topic carries several event types, so the
//! schema registered for a topic (subject `<topic>-value`) is the **union** of
//! its event types' records, composed here: named types shared by several
//! records (`Category`, `Vertical`) are defined once, at their first use, and
//! referred to by full name afterwards.

use crate::contract::Topic;
use apache_avro::Schema;
use serde_json::Value;
use std::collections::HashSet;

/// The namespace of every contract-v1 type.
pub const NAMESPACE: &str = "io.terminus.v1";

macro_rules! schema_files {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("../../schemas/", $name, ".avsc")))),*]
    };
}

/// Input event types with their schema text, in the contract's order.
pub const INPUT_SCHEMAS: [(&str, &str); 13] = schema_files!(
    "CustomerTerminationRequested",
    "CustomerTerminationWithdrawn",
    "CustomerDeceased",
    "OrganizationDissolved",
    "AllServicesTerminated",
    "RelationshipReestablishmentRequested",
    "FraudConfirmed",
    "EnterpriseTerminationDecided",
    "TerminationDecisionRevoked",
    "LegalHoldPlaced",
    "LegalHoldReleased",
    "DismantleCompleted",
    "DismantleFailed",
);

/// Output event types with their schema text.
pub const OUTPUT_SCHEMAS: [(&str, &str); 8] = schema_files!(
    "TerminationAccepted",
    "TerminationRejected",
    "TerminationWithdrawn",
    "TerminationStalled",
    "RelationshipReestablished",
    "CustomerRecordsAnonymized",
    "DismantleSolution",
    "RelationshipTerminated",
);

macro_rules! released_v1 {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("../../schemas/released/v1/", $name, ".avsc")))),*]
    };
}

/// The released baseline of contract v1 (`schemas/released/v1/`), every event
/// type: still recognised by fingerprint when the current schemas have evolved,
/// and the reference of the compatibility test.
pub const RELEASED_V1: [(&str, &str); 21] = released_v1!(
    "CustomerTerminationRequested",
    "CustomerTerminationWithdrawn",
    "CustomerDeceased",
    "OrganizationDissolved",
    "AllServicesTerminated",
    "RelationshipReestablishmentRequested",
    "FraudConfirmed",
    "EnterpriseTerminationDecided",
    "TerminationDecisionRevoked",
    "LegalHoldPlaced",
    "LegalHoldReleased",
    "DismantleCompleted",
    "DismantleFailed",
    "TerminationAccepted",
    "TerminationRejected",
    "TerminationWithdrawn",
    "TerminationStalled",
    "RelationshipReestablished",
    "CustomerRecordsAnonymized",
    "DismantleSolution",
    "RelationshipTerminated",
);

/// The changelog state record (`schemas/CustomerState.avsc`), mirroring the
/// JSON of `domain::CustomerState`.
pub const STATE_SCHEMA: &str = include_str!("../../schemas/CustomerState.avsc");

/// The topic role each input event type is published on: the contract's table.
pub const INPUT_EVENT_TOPICS: [(&str, Topic); 13] = crate::contract::INPUT_EVENT_TYPES;

/// The topic role each output event type is published on.
pub const OUTPUT_EVENT_TOPICS: [(&str, Topic); 8] = [
    ("TerminationAccepted", Topic::Status),
    ("TerminationRejected", Topic::Status),
    ("TerminationWithdrawn", Topic::Status),
    ("TerminationStalled", Topic::Status),
    ("RelationshipReestablished", Topic::Status),
    ("CustomerRecordsAnonymized", Topic::Status),
    ("DismantleSolution", Topic::Dismantle),
    ("RelationshipTerminated", Topic::Terminated),
];

/// The schema text of one event type, input or output.
pub fn event_schema_text(event_type: &str) -> Option<&'static str> {
    INPUT_SCHEMAS
        .iter()
        .chain(OUTPUT_SCHEMAS.iter())
        .find(|(name, _)| *name == event_type)
        .map(|(_, text)| *text)
}

/// The event types carried by a topic role.
pub fn event_types_of(topic: Topic) -> Vec<&'static str> {
    let inputs = INPUT_EVENT_TOPICS
        .iter()
        .filter(move |(_, t)| *t == topic)
        .map(|(name, _)| *name);
    let outputs = OUTPUT_EVENT_TOPICS
        .iter()
        .filter(move |(_, t)| *t == topic)
        .map(|(name, _)| *name);
    inputs.chain(outputs).collect()
}

/// The schema registered for a topic role (`<topic>-value`): the union of its
/// event types' records, as compact JSON text.
pub fn topic_schema_text(topic: Topic) -> String {
    let texts: Vec<&str> = event_types_of(topic)
        .into_iter()
        .filter_map(event_schema_text)
        .collect();
    compose_union(&texts)
}

/// The reader schema of the worker's input side: the union of every input
/// event type, whatever topic it came on (topic checks happen after decoding).
pub fn all_inputs_schema_text() -> String {
    let texts: Vec<&str> = INPUT_SCHEMAS.iter().map(|(_, text)| *text).collect();
    compose_union(&texts)
}

/// Composes self-contained record schemas into one union schema, keeping the
/// first definition of each named type and replacing later ones by its full name.
///
/// # Panics
/// Never for the embedded schemas (they are checked by the tests); a text that
/// is not JSON is skipped.
pub fn compose_union(texts: &[&str]) -> String {
    let mut defined = HashSet::new();
    let branches: Vec<Value> = texts
        .iter()
        .filter_map(|text| serde_json::from_str::<Value>(text).ok())
        .map(|value| dedupe_named(value, None, &mut defined))
        .collect();
    Value::Array(branches).to_string()
}

fn dedupe_named(value: Value, namespace: Option<&str>, defined: &mut HashSet<String>) -> Value {
    match value {
        Value::Object(mut map) => {
            let kind = map.get("type").and_then(Value::as_str).unwrap_or_default();
            let named = matches!(kind, "record" | "enum" | "fixed" | "error");
            let mut own_ns = namespace.map(str::to_owned);
            if named {
                let name = map.get("name").and_then(Value::as_str).unwrap_or_default();
                if let Some(ns) = map.get("namespace").and_then(Value::as_str) {
                    own_ns = Some(ns.to_owned());
                }
                let full = if name.contains('.') {
                    name.to_owned()
                } else {
                    match &own_ns {
                        Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
                        _ => name.to_owned(),
                    }
                };
                if !defined.insert(full.clone()) {
                    return Value::String(full);
                }
            }
            let ns = own_ns.as_deref();
            for key in ["type", "items", "values", "fields"] {
                if let Some(inner) = map.remove(key) {
                    let inner = match inner {
                        // `"type": "record"` and friends are keywords, not references.
                        Value::String(_) => inner,
                        other => dedupe_named(other, ns, defined),
                    };
                    map.insert(key.to_owned(), inner);
                }
            }
            Value::Object(map)
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| dedupe_named(item, namespace, defined))
                .collect(),
        ),
        other => other,
    }
}

/// Parses a schema text.
///
/// A union of one member (the schema of a topic that carries one event type,
/// such as `crm.solution.dismantle.v1`) is parsed member first and then
/// wrapped: the same schema, canonical form and fingerprint, without the
/// parser's "Union schema with just one member" warning on every start. (The
/// wire stays a one-branch union, as released; dropping the union would change
/// the registered schema and the single-object fingerprint.)
///
/// # Errors
/// The parser's message when the text is not a valid Avro schema.
pub fn parse(text: &str) -> Result<Schema, String> {
    if let Ok(Value::Array(mut members)) = serde_json::from_str::<Value>(text)
        && members.len() == 1
    {
        let member = Schema::parse(&members.remove(0)).map_err(|e| e.to_string())?;
        let union =
            apache_avro::schema::UnionSchema::new(vec![member]).map_err(|e| e.to_string())?;
        return Ok(Schema::Union(union));
    }
    Schema::parse_str(text).map_err(|e| e.to_string())
}

/// The CRC-64-AVRO (Rabin) fingerprint of bytes, as the Avro specification
/// defines it for schema fingerprints and single-object encoding.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u64; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut fp = i as u64;
            for _ in 0..8 {
                fp = (fp >> 1) ^ (EMPTY & (0u64.wrapping_sub(fp & 1)));
            }
            *slot = fp;
        }
        table
    });
    let mut fp = EMPTY;
    for &b in bytes {
        fp = (fp >> 8) ^ table[((fp ^ u64::from(b)) & 0xff) as usize];
    }
    fp
}

/// The CRC-64-AVRO fingerprint of a schema's Parsing Canonical Form.
pub fn fingerprint(schema: &Schema) -> u64 {
    crc64_avro(schema.canonical_form().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from the Avro specification's test data
    /// (`share/test/data/schema-tests.txt`), published as signed 64-bit integers
    /// of the canonical form's fingerprint.
    #[test]
    fn crc64_avro_matches_the_specification_vectors() {
        for (canonical, expected) in [
            (r#""null""#, 7_195_948_357_588_979_594_i64),
            (r#""int""#, 8_247_732_601_305_521_295),
            (r#""long""#, -3_434_872_931_120_570_953),
            (r#""string""#, -8_142_146_995_180_207_161),
            (r#""bytes""#, 5_746_618_253_357_095_269),
            ("[]", -1_241_056_759_729_112_623),
            (r#"["int","boolean"]"#, 5_392_556_393_470_105_090),
            (
                r#"{"name":"foo","type":"record","fields":[]}"#,
                -4_824_392_279_771_201_922,
            ),
        ] {
            assert_eq!(
                crc64_avro(canonical.as_bytes()) as i64,
                expected,
                "{canonical}"
            );
        }
        // The same through a parsed schema's canonical form.
        let string = Schema::parse_str(r#"{"type":"string"}"#).unwrap();
        assert_eq!(fingerprint(&string) as i64, -8_142_146_995_180_207_161);
    }

    #[test]
    fn every_schema_parses_and_is_named_after_its_event_type() {
        for (name, text) in INPUT_SCHEMAS.iter().chain(OUTPUT_SCHEMAS.iter()) {
            let schema = parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let Schema::Record(record) = schema else {
                panic!("{name} is not a record");
            };
            assert_eq!(record.name.name(), *name);
            assert_eq!(record.name.namespace(), Some(NAMESPACE));
        }
        parse(STATE_SCHEMA).unwrap();
    }

    #[test]
    fn topic_unions_parse_and_cover_every_event_type() {
        for topic in Topic::INPUTS.into_iter().chain(Topic::OUTPUTS) {
            let text = topic_schema_text(topic);
            let Schema::Union(union) = parse(&text).unwrap() else {
                panic!("{topic:?} is not a union");
            };
            assert_eq!(union.variants().len(), event_types_of(topic).len());
        }
        let all = parse(&all_inputs_schema_text()).unwrap();
        let Schema::Union(union) = all else { panic!() };
        assert_eq!(union.variants().len(), 13);
    }

    #[test]
    fn the_schema_and_topic_tables_agree() {
        let names: Vec<&str> = INPUT_SCHEMAS.iter().map(|(n, _)| *n).collect();
        let topics: Vec<&str> = INPUT_EVENT_TOPICS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, topics);
        let names: Vec<&str> = OUTPUT_SCHEMAS.iter().map(|(n, _)| *n).collect();
        let topics: Vec<&str> = OUTPUT_EVENT_TOPICS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, topics);
    }
}
