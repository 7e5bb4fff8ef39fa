//! `schemas/asyncapi.yaml` describes the contract the code implements: every
//! topic, every event type with its Avro schema, the headers and reason codes.
//! (Full validation: `npx @asyncapi/cli validate schemas/asyncapi.yaml`, see
//! docs/schemas.md; this test needs no network.)

use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::path::PathBuf;
use terminus::codec::schemas;
use terminus::contract::{DeadLetterReason, Topic};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn document() -> Json {
    let text = std::fs::read_to_string(root().join("schemas/asyncapi.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).expect("schemas/asyncapi.yaml is YAML")
}

/// Follows a local `#/a/b` reference.
fn resolve<'a>(doc: &'a Json, reference: &str) -> Option<&'a Json> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

fn refs(value: &Json, out: &mut Vec<String>) {
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().unwrap().to_owned());
                } else {
                    refs(v, out);
                }
            }
        }
        Json::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn it_is_asyncapi_3_and_every_reference_resolves() {
    let doc = document();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 50);
    for reference in all {
        if reference.starts_with('#') {
            assert!(
                resolve(&doc, &reference).is_some(),
                "{reference} does not resolve"
            );
        } else {
            let path = root().join("schemas").join(&reference);
            assert!(
                path.exists(),
                "{reference} is not a file beside asyncapi.yaml"
            );
        }
    }
}

fn channel_by_address<'a>(doc: &'a Json, address: &str) -> &'a Json {
    doc["channels"]
        .as_object()
        .unwrap()
        .values()
        .find(|c| c["address"] == address)
        .unwrap_or_else(|| panic!("no channel for {address}"))
}

#[test]
fn every_topic_and_event_type_is_described() {
    let doc = document();
    for topic in Topic::INPUTS.into_iter().chain(Topic::OUTPUTS) {
        let channel = channel_by_address(&doc, topic.default_name());
        let messages: BTreeSet<&str> = channel["messages"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let expected: BTreeSet<&str> = schemas::event_types_of(topic).into_iter().collect();
        assert_eq!(messages, expected, "{}", topic.default_name());
        for name in expected {
            let message = &doc["components"]["messages"][name];
            assert_eq!(message["name"], name);
            let file = message["payload"]["schema"]["$ref"].as_str().unwrap();
            assert_eq!(file, format!("./{name}.avsc"));
            let key = message["bindings"]["kafka"]["key"]["$ref"]
                .as_str()
                .unwrap();
            assert_eq!(key, "#/components/schemas/CustomerKey");
        }
        // Terminus receives inputs and sends outputs.
        let action = if Topic::INPUTS.contains(&topic) {
            "receive"
        } else {
            "send"
        };
        let operation = doc["operations"]
            .as_object()
            .unwrap()
            .values()
            .find(|op| {
                let reference = op["channel"]["$ref"].as_str().unwrap();
                resolve(&doc, reference).is_some_and(|c| c["address"] == topic.default_name())
            })
            .unwrap_or_else(|| panic!("no operation on {}", topic.default_name()));
        assert_eq!(operation["action"], action);
    }
    channel_by_address(&doc, Topic::DeadLetter.default_name());
    channel_by_address(&doc, "terminus.state.changelog");
}

#[test]
fn headers_and_reason_codes_match_the_code() {
    let doc = document();
    let components = &doc["components"]["schemas"];
    let keys = |name: &str| -> BTreeSet<String> {
        components[name]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let output = keys("OutputHeaders");
    for header in [
        "ce_specversion",
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_time",
        "content-type",
        "traceparent",
    ] {
        assert!(output.contains(header), "OutputHeaders lacks {header}");
    }
    let dead = keys("DeadLetterHeaders");
    for header in [
        "__connect.errors.topic",
        "__connect.errors.partition",
        "__connect.errors.offset",
        "__connect.errors.exception.class.name",
        "__connect.errors.exception.message",
        "terminus.dlq.reason",
        "terminus.dlq.timestamp",
    ] {
        assert!(dead.contains(header), "DeadLetterHeaders lacks {header}");
    }
    let reasons: Vec<&str> = components["DeadLetterReason"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let code: Vec<&str> = DeadLetterReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(reasons, code);
    let content_types: Vec<&str> =
        components["OutputHeaders"]["properties"]["content-type"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
    let formats: Vec<&str> = terminus::codec::WireFormat::ALL
        .iter()
        .map(|f| f.content_type())
        .collect();
    assert_eq!(content_types, formats);
}
