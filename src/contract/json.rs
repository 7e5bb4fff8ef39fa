//! A JSON document borrowed from the record's bytes: what the envelope
//! validation reads, without the allocations of `serde_json::Value` (a
//! `String` for every key and value and a map per object).
//!
//! The parser is serde_json's (same syntax, UTF-8 and nesting-depth checks,
//! same error positions); only the tree it builds differs. Strings without
//! escapes borrow from the input. Numbers and arrays are checked and
//! dropped, since no field of the contract is either.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// One JSON value, as far as the contract cares.
#[derive(Debug, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Str(Cow<'a, str>),
    Object(Object<'a>),
    /// A number or an array: never a valid contract field.
    Other,
}

/// An object's members in document order.
#[derive(Debug, PartialEq, Default)]
pub struct Object<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Object<'a> {
    /// The member named `name`; of duplicates the last, as serde_json's map
    /// keeps it.
    pub fn get(&self, name: &str) -> Option<&Json<'a>> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| v)
    }
}

/// Parses `bytes` as one JSON document.
///
/// # Errors
/// serde_json's error for anything that is not a single valid JSON value.
pub fn parse(bytes: &[u8]) -> Result<Json<'_>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Json::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Json::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Json::Other)
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Parsed like any value (not skipped), so serde_json's nesting limit
        // refuses a too-deep array as it refuses a too-deep object.
        while seq.next_element::<Json<'de>>()?.is_some() {}
        Ok(Json::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8).min(16));
        while let Some(Key(key)) = map.next_key()? {
            members.push((key, map.next_value()?));
        }
        Ok(Json::Object(Object(members)))
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> Object<'_> {
        match parse(text.as_bytes()).expect("valid JSON") {
            Json::Object(o) => o,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn reads_what_the_contract_needs_and_borrows_plain_strings() {
        let o = object(r#"{"a":"x","b":true,"c":null,"d":1.5,"e":[1,{"f":2}],"g":{"h":"i"}}"#);
        assert!(matches!(o.get("a"), Some(Json::Str(Cow::Borrowed("x")))));
        assert_eq!(o.get("b"), Some(&Json::Bool(true)));
        assert_eq!(o.get("c"), Some(&Json::Null));
        assert_eq!(o.get("d"), Some(&Json::Other));
        assert_eq!(o.get("e"), Some(&Json::Other));
        let Some(Json::Object(g)) = o.get("g") else {
            panic!("g is an object");
        };
        assert_eq!(g.get("h"), Some(&Json::Str("i".into())));
        assert_eq!(o.get("zz"), None);
    }

    #[test]
    fn escapes_are_decoded_and_the_last_duplicate_wins_as_in_serde_json() {
        let text = r#"{"k":"first","k":"a\"b\u00e9","\u006b2":"v"}"#;
        let o = object(text);
        assert_eq!(o.get("k"), Some(&Json::Str("a\"b\u{e9}".into())));
        assert_eq!(o.get("k2"), Some(&Json::Str("v".into())));
        let value: serde_json::Value = serde_json::from_str(text).expect("valid");
        assert_eq!(value["k"], "a\"b\u{e9}");
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        let deep_in_a_field = format!("{{\"extra\":{deep}}}");
        let deep_objects = "{\"a\":".repeat(200) + "1" + &"}".repeat(200);
        for bad in [
            deep_in_a_field.as_str(),
            deep_objects.as_str(),
            "{",
            "{\"a\":}",
            "{\"a\":1} x",
            "\"\\ud800\"",
            deep.as_str(),
            "",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
            assert!(
                serde_json::from_str::<serde_json::Value>(bad).is_err(),
                "{bad}"
            );
        }
        assert!(parse(b"{\"a\":\"\xff\"}").is_err(), "invalid UTF-8");
    }
}
