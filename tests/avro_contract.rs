//! The Avro schemas in `schemas/` and the Rust contract types agree, and the
//! schemas cannot break the released contract by accident.
//!
//! - Every input and output event type, from JSON fixtures (outputs made by
//!   running the simulator over `tests/fixtures/contract-inputs.jsonl`), goes
//!   JSON → Avro → binary → Avro → JSON and comes back equal, through its own
//!   schema and through its topic's union; the changelog state record too.
//! - Compatibility policy: every schema in `schemas/` must be backward
//!   compatible with `schemas/released/v1/` (new readers read old data); output
//!   events must also be forward compatible (downstream readers still on the
//!   released schema read new data). See docs/schemas.md.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::writer::datum::GenericDatumWriter;
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use terminus::codec::{avro_json, schemas};
use terminus::contract::{Topic, decode_envelope};
use terminus::domain::{CustomerState, Policy};
use terminus::engine::Engine;
use terminus::time::Timestamp;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(root().join("tests/fixtures").join(name)).unwrap()
}

fn lines(text: &str) -> Vec<Json> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// JSON → Avro value → binary → Avro value → JSON, with `schema_text`.
fn round_trip(json: &Json, schema_text: &str) -> Json {
    let schema = Schema::parse_str(schema_text).unwrap();
    let names = avro_json::names_of(&schema).unwrap();
    let value =
        avro_json::json_to_avro(json, &schema, &names).unwrap_or_else(|e| panic!("{e} in {json}"));
    let bytes = GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap();
    let mut slice = bytes.as_slice();
    let decoded = GenericDatumReader::builder(&schema)
        .build()
        .unwrap()
        .read_value(&mut slice)
        .unwrap();
    assert!(slice.is_empty(), "datum fully consumed");
    avro_json::avro_to_json(&decoded).unwrap()
}

/// The JSON contract treats `null` and absent alike.
fn without_nulls(json: &Json) -> Json {
    match json {
        Json::Object(map) => Json::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn event_type(json: &Json) -> &str {
    json["eventType"].as_str().unwrap()
}

fn topic_of(event_type: &str) -> Topic {
    schemas::INPUT_EVENT_TOPICS
        .iter()
        .chain(schemas::OUTPUT_EVENT_TOPICS.iter())
        .find(|(name, _)| *name == event_type)
        .map(|(_, topic)| *topic)
        .unwrap_or_else(|| panic!("{event_type} has no topic"))
}

#[test]
fn every_input_event_type_round_trips_through_avro() {
    let inputs = lines(&fixture("contract-inputs.jsonl"));
    let mut seen = BTreeSet::new();
    for json in &inputs {
        let name = event_type(json);
        seen.insert(name.to_owned());
        let expected = without_nulls(json);
        let own = round_trip(json, schemas::event_schema_text(name).unwrap());
        assert_eq!(own, expected, "{name} through its own schema");
        let union = round_trip(json, &schemas::topic_schema_text(topic_of(name)));
        assert_eq!(union, expected, "{name} through its topic's union");
        // And the contract reads the Avro-born JSON exactly as the original.
        let original = decode_envelope(json.to_string().as_bytes()).unwrap();
        let again = decode_envelope(union.to_string().as_bytes()).unwrap();
        assert_eq!(again, original, "{name}");
        assert_eq!(original.event.topic(), topic_of(name), "{name}");
    }
    let all: BTreeSet<String> = schemas::INPUT_SCHEMAS
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    assert_eq!(seen, all, "the fixture covers every input event type");
}

fn simulated_outputs() -> Vec<(String, Json)> {
    let input = fixture("contract-inputs.jsonl");
    let mut out = Vec::new();
    let until = Timestamp::parse_rfc3339("2027-07-01T00:00:00Z").unwrap();
    let summary =
        terminus::simulate::run(input.as_bytes(), &mut out, Some(until), Policy::default())
            .unwrap();
    assert_eq!(summary.dead_letters, 0);
    lines(&String::from_utf8(out).unwrap())
        .into_iter()
        .map(|line| {
            (
                line["topic"].as_str().unwrap().to_owned(),
                line["value"].clone(),
            )
        })
        .collect()
}

#[test]
fn every_output_event_type_round_trips_through_avro() {
    let outputs = simulated_outputs();
    let mut seen = BTreeSet::new();
    for (topic, json) in &outputs {
        let name = event_type(json);
        seen.insert(name.to_owned());
        assert_eq!(topic, topic_of(name).default_name(), "{name}");
        assert_eq!(
            round_trip(json, schemas::event_schema_text(name).unwrap()),
            *json,
            "{name} through its own schema"
        );
        assert_eq!(
            round_trip(json, &schemas::topic_schema_text(topic_of(name))),
            *json,
            "{name} through its topic's union"
        );
    }
    let all: BTreeSet<String> = schemas::OUTPUT_SCHEMAS
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    assert_eq!(seen, all, "the journeys produce every output event type");
}

#[test]
fn the_output_fixture_round_trips_through_avro() {
    // tests/fixtures/contract-outputs.jsonl: one run of the simulator over the
    // input fixture, kept as a readable sample of every output event type. It is
    // not compared with today's simulator (the domain may evolve its rules);
    // regenerate it with TERMINUS_BLESS=1 cargo test --test avro_contract.
    let path = root().join("tests/fixtures/contract-outputs.jsonl");
    if std::env::var_os("TERMINUS_BLESS").is_some() {
        let text: String = simulated_outputs()
            .into_iter()
            .map(|(topic, value)| format!("{}\n", json!({"topic": topic, "value": value})))
            .collect();
        std::fs::write(&path, text).unwrap();
    }
    let mut seen = BTreeSet::new();
    for line in lines(&fixture("contract-outputs.jsonl")) {
        let json = &line["value"];
        let name = event_type(json);
        seen.insert(name.to_owned());
        assert_eq!(line["topic"], topic_of(name).default_name(), "{name}");
        assert_eq!(
            round_trip(json, &schemas::topic_schema_text(topic_of(name))),
            *json
        );
    }
    assert_eq!(seen.len(), schemas::OUTPUT_SCHEMAS.len());
}

/// Every state a customer passes through in the fixture's journeys, as the
/// changelog JSON, plus the hand-written states with every optional field.
fn state_records() -> Vec<Json> {
    let mut engine = Engine::new(Arc::new(Policy::default()));
    let mut states = Vec::new();
    let mut clock = Timestamp::MIN;
    let mut snapshot = |engine: &Engine| {
        for (_, state) in engine.changes() {
            if let Some(state) = state {
                states.push(serde_json::from_slice::<Json>(&state.to_json_bytes()).unwrap());
            }
        }
    };
    for line in fixture("contract-inputs.jsonl").lines() {
        let env = decode_envelope(line.as_bytes()).unwrap();
        clock = clock.max(env.event_time);
        engine.fire_due(clock);
        engine.handle(&env, clock);
        snapshot(&engine);
        engine.commit();
    }
    for due in [
        "2026-12-31T00:00:00Z",
        "2027-07-01T00:00:00Z",
        "2027-08-01T00:00:00Z",
    ] {
        engine.fire_due(Timestamp::parse_rfc3339(due).unwrap());
        snapshot(&engine);
        engine.commit();
    }
    states.extend(lines(&fixture("states.jsonl")));
    states
}

#[test]
fn the_changelog_state_record_round_trips_through_avro() {
    let mut phases = BTreeSet::new();
    for json in state_records() {
        let original = CustomerState::from_bytes(json.to_string().as_bytes()).unwrap();
        phases.insert(original.phase.name());
        let back = round_trip(&json, schemas::STATE_SCHEMA);
        let again = CustomerState::from_bytes(back.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{e}: {back}"));
        assert_eq!(again, original);
        // Byte for byte once re-serialised by the Rust type.
        assert_eq!(again.to_bytes(), original.to_bytes());
    }
    let all: BTreeSet<&str> = terminus::domain::Phase::NAMES.into_iter().collect();
    assert_eq!(phases, all, "every phase is covered");
}

// ---------------------------------------------------------------- compatibility

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Rule {
    /// New readers read data written with the released schema.
    Backward,
    /// Backward, and readers on the released schema read new data.
    Full,
}

fn rule_for(name: &str) -> Rule {
    if schemas::OUTPUT_SCHEMAS.iter().any(|(n, _)| *n == name) {
        Rule::Full
    } else {
        Rule::Backward
    }
}

/// Why `current` breaks `released` under `rule`, if it does.
fn breaks(released: &str, current: &str, rule: Rule) -> Option<String> {
    let released = match Schema::parse_str(released) {
        Ok(s) => s,
        Err(e) => return Some(format!("released schema does not parse: {e}")),
    };
    let current = match Schema::parse_str(current) {
        Ok(s) => s,
        Err(e) => return Some(format!("schema does not parse: {e}")),
    };
    // `Partial` means resolution can fail for some values (an enum symbol or a
    // union branch the reader lacks): not good enough for a contract.
    let check =
        |writer: &Schema, reader: &Schema| match SchemaCompatibility::can_read(writer, reader) {
            Ok(Compatibility::Full) => None,
            Ok(Compatibility::Partial) => {
                Some("only partially (some values cannot be read)".to_owned())
            }
            Err(e) => Some(e.to_string()),
        };
    if let Some(e) = check(&released, &current) {
        return Some(format!(
            "not backward compatible (new reader, released writer): {e}"
        ));
    }
    if rule == Rule::Full
        && let Some(e) = check(&current, &released)
    {
        return Some(format!(
            "not forward compatible (released reader, new writer): {e}"
        ));
    }
    None
}

fn avsc_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "avsc"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn schemas_stay_compatible_with_the_released_contract() {
    let current = avsc_files(&root().join("schemas"));
    let released = avsc_files(&root().join("schemas/released/v1"));
    assert!(released.len() >= 22, "the released baseline is complete");
    let mut problems = Vec::new();
    for (name, old) in &released {
        match current.get(name) {
            None => problems.push(format!("{name}: removed (a released schema must stay)")),
            Some(new) => {
                if let Some(why) = breaks(old, new, rule_for(name)) {
                    problems.push(format!("{name}: {why}"));
                }
            }
        }
    }
    // The unions registered per topic follow the same rules (an event type may
    // be added to an input topic, none removed).
    for topic in Topic::INPUTS.into_iter().chain(Topic::OUTPUTS) {
        let types = schemas::event_types_of(topic);
        let old: Vec<&str> = types
            .iter()
            .filter_map(|t| released.get(*t).map(String::as_str))
            .collect();
        let new: Vec<&str> = types
            .iter()
            .filter_map(|t| current.get(*t).map(String::as_str))
            .collect();
        let rule = if Topic::OUTPUTS.contains(&topic) {
            Rule::Full
        } else {
            Rule::Backward
        };
        if let Some(why) = breaks(
            &schemas::compose_union(&old),
            &schemas::compose_union(&new),
            rule,
        ) {
            problems.push(format!("{}-value: {why}", topic.default_name()));
        }
    }
    // The embedded copies are the files.
    for (name, text) in schemas::INPUT_SCHEMAS
        .iter()
        .chain(schemas::OUTPUT_SCHEMAS.iter())
    {
        assert_eq!(
            current.get(*name).map(String::as_str),
            Some(*text),
            "{name}"
        );
    }
    assert!(
        problems.is_empty(),
        "schema changes break contract v1:\n{}",
        problems.join("\n")
    );
}

fn edit(text: &str, f: impl FnOnce(&mut Json)) -> String {
    let mut json: Json = serde_json::from_str(text).unwrap();
    f(&mut json);
    json.to_string()
}

fn body_fields(json: &mut Json) -> &mut Vec<Json> {
    json["fields"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "event")
        .unwrap()["type"]["fields"]
        .as_array_mut()
        .unwrap()
}

#[test]
fn the_policy_accepts_optional_additions_and_refuses_breaking_changes() {
    let input = schemas::event_schema_text("CustomerTerminationRequested").unwrap();
    let output = schemas::event_schema_text("DismantleSolution").unwrap();
    let optional = |json: &mut Json| {
        body_fields(json).push(
            json!({"name": "channel", "type": ["null", "string"], "default": null, "doc": "new"}),
        );
    };
    let required = |json: &mut Json| {
        body_fields(json).push(json!({"name": "channel", "type": "string"}));
    };
    // Passes: a new optional field with a default, docs changed.
    assert_eq!(breaks(input, &edit(input, optional), Rule::Backward), None);
    assert_eq!(breaks(output, &edit(output, optional), Rule::Full), None);
    assert_eq!(
        breaks(
            input,
            &edit(input, |j| j["doc"] = json!("reworded")),
            Rule::Backward
        ),
        None
    );
    // Fails: a new field without a default.
    assert!(breaks(input, &edit(input, required), Rule::Backward).is_some());
    // Fails: a type change.
    assert!(
        breaks(
            input,
            &edit(input, |j| body_fields(j)[0]["type"] = json!("long")),
            Rule::Backward
        )
        .is_some()
    );
    // Fails: a renamed record (without an alias).
    assert!(
        breaks(
            input,
            &edit(input, |j| j["name"] = json!("Renamed")),
            Rule::Backward
        )
        .is_some()
    );
    // Fails for outputs only: a removed field without default (old readers
    // need it) — backward alone would allow it.
    let removed = edit(output, |j| {
        body_fields(j).retain(|f| f["name"] != "attempt")
    });
    assert_eq!(breaks(output, &removed, Rule::Backward), None);
    assert!(breaks(output, &removed, Rule::Full).is_some());
    // Fails for outputs: a new enum symbol old readers cannot read.
    let new_symbol = edit(output, |j| {
        let vertical = body_fields(j)
            .iter_mut()
            .find(|f| f["name"] == "vertical")
            .unwrap();
        vertical["type"]["symbols"]
            .as_array_mut()
            .unwrap()
            .push(json!("security"));
    });
    assert_eq!(breaks(output, &new_symbol, Rule::Backward), None);
    assert!(breaks(output, &new_symbol, Rule::Full).is_some());
}

#[test]
fn the_policy_lets_inputs_grow() {
    // A new symbol in an input enum, a removed optional input field, a doc change.
    let outcome = schemas::event_schema_text("DismantleCompleted").unwrap();
    let more_verticals = edit(outcome, |j| {
        let vertical = body_fields(j)
            .iter_mut()
            .find(|f| f["name"] == "vertical")
            .unwrap();
        vertical["type"]["symbols"]
            .as_array_mut()
            .unwrap()
            .push(json!("security"));
    });
    assert_eq!(breaks(outcome, &more_verticals, Rule::Backward), None);
    let request = schemas::event_schema_text("CustomerTerminationRequested").unwrap();
    let fewer = edit(request, |j| {
        body_fields(j).retain(|f| f["name"] != "reason")
    });
    assert_eq!(breaks(request, &fewer, Rule::Backward), None);
    // A new event type appended to an input topic's union.
    let types = schemas::event_types_of(Topic::Outcomes);
    let old: Vec<&str> = types
        .iter()
        .map(|t| schemas::event_schema_text(t).unwrap())
        .collect();
    let extra = edit(outcome, |j| {
        j["name"] = json!("DismantleDeferred");
        j["fields"][5]["type"]["name"] = json!("DismantleDeferredEvent");
    });
    let mut new = old.clone();
    new.push(&extra);
    assert_eq!(
        breaks(
            &schemas::compose_union(&old),
            &schemas::compose_union(&new),
            Rule::Backward
        ),
        None
    );
    // …but removing one is refused.
    assert!(
        breaks(
            &schemas::compose_union(&old),
            &schemas::compose_union(&old[..1]),
            Rule::Backward
        )
        .is_some()
    );
}

#[test]
fn the_released_baseline_is_a_copy_of_what_was_released() {
    // A released schema may only change by being re-released on purpose: each
    // released file parses and is named like its file.
    for (name, text) in avsc_files(&root().join("schemas/released/v1")) {
        let schema = Schema::parse_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let Schema::Record(record) = schema else {
            panic!("{name}")
        };
        assert_eq!(record.name.name(), name);
    }
}

/// Not a timed assertion: prints the cost of each decode path. Run with
/// `cargo test --release --test avro_contract -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_decode_paths() {
    use terminus::codec::{Codec, SINGLE_OBJECT_MAGIC, WireFormat};
    let codec = Codec::new(WireFormat::Json, None).unwrap();
    let inputs = lines(&fixture("contract-inputs.jsonl"));
    let union = schemas::all_inputs_schema_text();
    let schema = Schema::parse_str(&union).unwrap();
    let names = avro_json::names_of(&schema).unwrap();
    let writer = GenericDatumWriter::builder(&schema).build().unwrap();
    let mut json_values = Vec::new();
    let mut avro_values = Vec::new();
    for json in &inputs {
        json_values.push(json.to_string().into_bytes());
        let mut bytes = SINGLE_OBJECT_MAGIC.to_vec();
        bytes.extend_from_slice(&schemas::fingerprint(&schema).to_le_bytes());
        let value = avro_json::json_to_avro(json, &schema, &names).unwrap();
        bytes.extend(writer.write_value_to_vec(value).unwrap());
        avro_values.push(bytes);
    }
    for (label, values) in [("json", &json_values), ("avro-single-object", &avro_values)] {
        let rounds = 20_000;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            for v in values.iter() {
                codec.decode("t", v, None).unwrap();
            }
        }
        let n = rounds * values.len();
        let per = start.elapsed() / n as u32;
        println!(
            "{label}: {per:?} per record ({:.0} records/s)",
            1.0 / per.as_secs_f64()
        );
    }
}
