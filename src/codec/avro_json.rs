//! JSON ↔ Avro values, guided by the contract's schemas.
//!
//! The contract's JSON form is the source of truth (it is what
//! `contract::decode_envelope` validates and what `OutputRecord::to_json`
//! writes); Avro is another encoding of the same document:
//!
//! | JSON | Avro |
//! |---|---|
//! | absent or `null` | `null` branch of a `["null", T]` union |
//! | string | `string`, `enum` symbol, `string` with `logicalType: uuid` |
//! | integer | `int`, `long`, `long` with `logicalType: timestamp-millis`, `fixed` of 8 bytes (an unsigned 64-bit integer, big-endian) |
//! | object | `record`; in a union of records, the branch whose name equals the object's `eventType` (events) or `state` (state phases) |
//!
//! Converting JSON to Avro is strict: a key the schema does not know is an
//! error, so a Rust type and its schema cannot drift apart silently. Converting
//! Avro to JSON leaves `null` fields out, as the JSON contract does.

use apache_avro::Schema;
use apache_avro::schema::{Name, RecordSchema, ResolvedSchema};
use apache_avro::types::Value as Avro;
use serde_json::{Map, Number, Value as Json};
use std::collections::HashMap;
use uuid::Uuid;

/// Named types of a schema, owned, for resolving `Schema::Ref`s.
pub type Names = HashMap<Name, Schema>;

/// Why a value could not be converted. `path` names the field
/// (`event.vertical`); the message never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{path}`: {message}")]
pub struct ConvertError {
    pub path: String,
    pub message: String,
}

fn err(path: &str, message: impl Into<String>) -> ConvertError {
    ConvertError {
        path: if path.is_empty() {
            "(root)".to_owned()
        } else {
            path.to_owned()
        },
        message: message.into(),
    }
}

/// The named types defined in `schema`.
///
/// # Errors
/// The parser's message when a reference cannot be resolved.
pub fn names_of(schema: &Schema) -> Result<Names, String> {
    let resolved = ResolvedSchema::try_from(schema).map_err(|e| e.to_string())?;
    Ok(resolved
        .get_names()
        .iter()
        .map(|(name, schema)| (name.clone(), (*schema).clone()))
        .collect())
}

/// Follows a `Schema::Ref` to its definition.
pub fn deref<'a>(schema: &'a Schema, names: &'a Names) -> &'a Schema {
    match schema {
        Schema::Ref { name } => names.get(name).map_or(schema, |s| deref(s, names)),
        other => other,
    }
}

/// The discriminating field of a record in a union: `eventType` for events,
/// `state` for the changelog's phases.
fn discriminator(record: &RecordSchema) -> Option<&'static str> {
    ["eventType", "state"]
        .into_iter()
        .find(|key| record.lookup.contains_key(*key))
}

/// Converts a JSON document to the Avro value of `schema`.
///
/// # Errors
/// [`ConvertError`] naming the first field that does not fit the schema.
pub fn json_to_avro(json: &Json, schema: &Schema, names: &Names) -> Result<Avro, ConvertError> {
    to_avro(Some(json), schema, names, "")
}

fn to_avro(
    json: Option<&Json>,
    schema: &Schema,
    names: &Names,
    path: &str,
) -> Result<Avro, ConvertError> {
    let schema = deref(schema, names);
    let present = json.filter(|j| !j.is_null());
    match (schema, present) {
        (Schema::Null, None) => Ok(Avro::Null),
        (Schema::Union(union), _) => {
            let variants = union.variants();
            if present.is_none() {
                return variants
                    .iter()
                    .position(|v| matches!(v, Schema::Null))
                    .map(|i| Avro::Union(i as u32, Box::new(Avro::Null)))
                    .ok_or_else(|| err(path, "is required"));
            }
            let mut last = None;
            for (i, variant) in variants.iter().enumerate() {
                let variant_schema = deref(variant, names);
                if matches!(variant_schema, Schema::Null) {
                    continue;
                }
                if let (Schema::Record(record), Some(Json::Object(map))) = (variant_schema, present)
                    && let Some(key) = discriminator(record)
                    && map.get(key).and_then(Json::as_str) != Some(record.name.name())
                {
                    continue;
                }
                match to_avro(present, variant_schema, names, path) {
                    Ok(v) => return Ok(Avro::Union(i as u32, Box::new(v))),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| err(path, "matches no branch of its union")))
        }
        (_, None) => Err(err(path, "is required")),
        (Schema::Boolean, Some(Json::Bool(b))) => Ok(Avro::Boolean(*b)),
        (Schema::Int, Some(Json::Number(n))) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(Avro::Int)
            .ok_or_else(|| err(path, "must be a 32-bit integer")),
        (Schema::Long, Some(Json::Number(n))) => n
            .as_i64()
            .map(Avro::Long)
            .ok_or_else(|| err(path, "must be a 64-bit integer")),
        (Schema::TimestampMillis, Some(Json::Number(n))) => n
            .as_i64()
            .map(Avro::TimestampMillis)
            .ok_or_else(|| err(path, "must be milliseconds since the epoch")),
        (Schema::Double, Some(Json::Number(n))) => n
            .as_f64()
            .map(Avro::Double)
            .ok_or_else(|| err(path, "must be a number")),
        (Schema::String, Some(Json::String(s))) => Ok(Avro::String(s.clone())),
        (Schema::Uuid(_), Some(Json::String(s))) => Uuid::parse_str(s)
            .map(Avro::Uuid)
            .map_err(|_| err(path, "must be a UUID")),
        (Schema::Enum(e), Some(Json::String(s))) => e
            .symbols
            .iter()
            .position(|sym| sym == s)
            .map(|i| Avro::Enum(i as u32, s.clone()))
            .ok_or_else(|| err(path, format!("must be one of {}", e.symbols.join(", ")))),
        (Schema::Fixed(f), Some(Json::Number(n))) if f.size == 8 => n
            .as_u64()
            .map(|n| Avro::Fixed(8, n.to_be_bytes().to_vec()))
            .ok_or_else(|| err(path, "must be an unsigned 64-bit integer")),
        (Schema::Array(array), Some(Json::Array(items))) => items
            .iter()
            .enumerate()
            .map(|(i, item)| to_avro(Some(item), &array.items, names, &format!("{path}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Avro::Array),
        (Schema::Map(map), Some(Json::Object(entries))) => entries
            .iter()
            .map(|(k, v)| {
                to_avro(Some(v), &map.types, names, &join(path, k)).map(|v| (k.clone(), v))
            })
            .collect::<Result<HashMap<_, _>, _>>()
            .map(Avro::Map),
        (Schema::Record(record), Some(Json::Object(map))) => {
            if let Some(unknown) = map.keys().find(|k| !record.lookup.contains_key(*k)) {
                return Err(err(
                    &join(path, unknown),
                    format!("is not a field of {}", record.name.name()),
                ));
            }
            let mut fields = Vec::with_capacity(record.fields.len());
            for field in &record.fields {
                let field_path = join(path, &field.name);
                let value = match (map.get(&field.name), &field.default) {
                    (Some(v), _) => to_avro(Some(v), &field.schema, names, &field_path)?,
                    (None, Some(default)) => {
                        to_avro(Some(default), &field.schema, names, &field_path)?
                    }
                    (None, None) => to_avro(None, &field.schema, names, &field_path)?,
                };
                fields.push((field.name.clone(), value));
            }
            Ok(Avro::Record(fields))
        }
        (other, Some(_)) => Err(err(
            path,
            format!("does not fit its schema type ({})", kind_name(other)),
        )),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn kind_name(schema: &Schema) -> &'static str {
    match schema {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int => "int",
        Schema::Long => "long",
        Schema::Float => "float",
        Schema::Double => "double",
        Schema::Bytes => "bytes",
        Schema::String => "string",
        Schema::Array(_) => "array",
        Schema::Map(_) => "map",
        Schema::Union(_) => "union",
        Schema::Record(_) => "record",
        Schema::Enum(_) => "enum",
        Schema::Fixed(_) => "fixed",
        Schema::Uuid(_) => "uuid",
        Schema::TimestampMillis => "timestamp-millis",
        _ => "unsupported logical type",
    }
}

/// Converts an Avro value (decoded, and resolved against one of the contract's
/// schemas) to its JSON document. `null` record fields are left out.
///
/// # Errors
/// [`ConvertError`] for Avro types the contract does not use (floats that are
/// not finite, decimals, durations, …).
pub fn avro_to_json(value: &Avro) -> Result<Json, ConvertError> {
    to_json(value, "")
}

fn to_json(value: &Avro, path: &str) -> Result<Json, ConvertError> {
    Ok(match value {
        Avro::Null => Json::Null,
        Avro::Boolean(b) => Json::Bool(*b),
        Avro::Int(n) => Json::from(*n),
        Avro::Long(n) | Avro::TimestampMillis(n) => Json::from(*n),
        Avro::Double(f) => Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| err(path, "is not a finite number"))?,
        Avro::Float(f) => Number::from_f64(f64::from(*f))
            .map(Json::Number)
            .ok_or_else(|| err(path, "is not a finite number"))?,
        Avro::String(s) | Avro::Enum(_, s) => Json::String(s.clone()),
        Avro::Uuid(u) => Json::String(u.hyphenated().to_string()),
        Avro::Fixed(8, bytes) => {
            let mut be = [0u8; 8];
            be.copy_from_slice(bytes);
            Json::from(u64::from_be_bytes(be))
        }
        Avro::Union(_, inner) => to_json(inner, path)?,
        Avro::Array(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Avro::Map(entries) => {
            let mut keys: Vec<&String> = entries.keys().collect();
            keys.sort();
            let mut map = Map::new();
            for key in keys {
                map.insert(key.clone(), to_json(&entries[key], &join(path, key))?);
            }
            Json::Object(map)
        }
        Avro::Record(fields) => {
            let mut map = Map::new();
            for (name, field) in fields {
                let json = to_json(field, &join(path, name))?;
                if !json.is_null() {
                    map.insert(name.clone(), json);
                }
            }
            Json::Object(map)
        }
        _ => return Err(err(path, "has an Avro type the contract does not use")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMA: &str = r#"[
      {"type":"record","name":"A","namespace":"t","fields":[
        {"name":"eventType","type":"string"},
        {"name":"id","type":{"type":"string","logicalType":"uuid"}},
        {"name":"n","type":["null","long"],"default":null},
        {"name":"e","type":{"type":"enum","name":"E","symbols":["x","y"]}},
        {"name":"fp","type":{"type":"array","items":{"type":"fixed","name":"F","size":8}},"default":[]}
      ]},
      {"type":"record","name":"B","namespace":"t","fields":[
        {"name":"eventType","type":"string"},
        {"name":"e","type":"t.E"}
      ]}
    ]"#;

    fn schema() -> (Schema, Names) {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let names = names_of(&schema).unwrap();
        (schema, names)
    }

    #[test]
    fn union_branches_are_chosen_by_event_type() {
        let (schema, names) = schema();
        let b = json_to_avro(&json!({"eventType":"B","e":"y"}), &schema, &names).unwrap();
        assert!(matches!(b, Avro::Union(1, _)));
        let a = json!({"eventType":"A","id":"6f1c1b1e-8c2a-5d1e-9b1a-1a2b3c4d5e6f","e":"x","fp":[18446744073709551615u64, 1]});
        let avro = json_to_avro(&a, &schema, &names).unwrap();
        assert!(matches!(avro, Avro::Union(0, _)));
        assert_eq!(avro_to_json(&avro).unwrap(), a);
    }

    #[test]
    fn conversion_is_strict_and_names_the_field_not_the_value() {
        let (schema, names) = schema();
        let e = json_to_avro(
            &json!({"eventType":"B","e":"secret-value"}),
            &schema,
            &names,
        )
        .unwrap_err();
        assert_eq!(e.path, "e");
        assert!(!e.to_string().contains("secret-value"));
        let e =
            json_to_avro(&json!({"eventType":"B","e":"x","extra":1}), &schema, &names).unwrap_err();
        assert_eq!(e.path, "extra");
        assert!(json_to_avro(&json!({"eventType":"C"}), &schema, &names).is_err());
        assert!(json_to_avro(&json!({"eventType":"A","e":"x"}), &schema, &names).is_err());
    }
}
