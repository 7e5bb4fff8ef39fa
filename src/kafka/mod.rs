//! Kafka edges: client configuration, topic layout, partitioning and headers.

pub mod produce;
pub mod topics;

use rdkafka::ClientConfig;
use std::fmt;

/// Connection settings shared by every client the worker creates.
#[derive(Clone, Default)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    /// Raw librdkafka properties (`security.protocol`, `sasl.*`, `ssl.*`, …).
    pub properties: Vec<(String, String)>,
}

impl KafkaSettings {
    /// A client configuration carrying the connection settings; callers add
    /// their role's properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// Prints the settings with every secret-looking value masked, for the start-up
/// configuration dump.
impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let props: Vec<(String, &str)> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret(k) { "********" } else { v.as_str() };
                (k.clone(), shown)
            })
            .collect();
        f.debug_struct("KafkaSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &props)
            .finish()
    }
}

/// Properties whose values must never be printed.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "token", "key.pem", "private", "jaas"]
        .iter()
        .any(|s| key.contains(s))
}

/// Why a librdkafka property was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("librdkafka property `{key}` (from {origin}) was refused: {reason}")]
pub struct PropertyError {
    pub key: String,
    pub origin: String,
    pub reason: String,
}

/// Turns `KAFKA_*` environment variables into librdkafka properties
/// (`KAFKA_SECURITY_PROTOCOL` → `security.protocol`). Variables that are not
/// librdkafka properties (such as `KAFKA_HEAP_OPTS` of a local broker) are
/// returned separately so the caller can say they were ignored.
pub fn properties_from_env(
    vars: impl IntoIterator<Item = (String, String)>,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut accepted = Vec::new();
    let mut ignored = Vec::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("KAFKA_") else {
            continue;
        };
        if rest.is_empty() || name == "KAFKA_BOOTSTRAP_SERVERS" {
            continue;
        }
        let key = rest.to_ascii_lowercase().replace('_', ".");
        if validate_property(&key, &value).is_ok() {
            accepted.push((key, value));
        } else {
            ignored.push(name);
        }
    }
    accepted.sort();
    ignored.sort();
    (accepted, ignored)
}

/// Parses a `--kafka key=value` flag and checks librdkafka knows the property.
///
/// # Errors
/// [`PropertyError`] when the flag has no `=` or librdkafka refuses it.
pub fn parse_property_flag(text: &str) -> Result<(String, String), PropertyError> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(PropertyError {
            key: text.chars().take(64).collect(),
            origin: "--kafka".into(),
            reason: "expected key=value".into(),
        });
    };
    let key = key.trim().to_owned();
    validate_property(&key, value).map_err(|reason| PropertyError {
        key: key.clone(),
        origin: "--kafka".into(),
        reason,
    })?;
    Ok((key, value.to_owned()))
}

fn validate_property(key: &str, value: &str) -> Result<(), String> {
    let mut config = ClientConfig::new();
    config.set(key, value);
    config
        .create_native_config()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), for placing keyed records
/// exactly where Java producers and Kafka Streams would.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len() as u32;
    let mut h: u32 = SEED ^ length;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java default partitioner picks for a keyed record.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Vectors from Apache Kafka's UtilsTest.testMurmur2.
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input.as_bytes()), expected, "{input}");
        }
    }

    #[test]
    fn env_vars_become_properties_and_strangers_are_ignored() {
        let (props, ignored) = properties_from_env([
            ("KAFKA_SECURITY_PROTOCOL".to_owned(), "SASL_SSL".to_owned()),
            (
                "KAFKA_SASL_MECHANISM".to_owned(),
                "SCRAM-SHA-512".to_owned(),
            ),
            ("KAFKA_HEAP_OPTS".to_owned(), "-Xmx1g".to_owned()),
            ("KAFKA_BOOTSTRAP_SERVERS".to_owned(), "x:1".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ]);
        assert_eq!(
            props,
            vec![
                ("sasl.mechanism".to_owned(), "SCRAM-SHA-512".to_owned()),
                ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
            ]
        );
        assert_eq!(ignored, vec!["KAFKA_HEAP_OPTS".to_owned()]);
    }

    #[test]
    fn secrets_are_masked_in_debug_output() {
        let settings = KafkaSettings {
            bootstrap_servers: "b:9092".into(),
            properties: vec![("sasl.password".into(), "hunter2-secret".into())],
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("sasl.password"));
    }

    #[test]
    fn property_flags_are_validated() {
        assert!(parse_property_flag("linger.ms=5").is_ok());
        assert!(parse_property_flag("no.such.property=1").is_err());
        assert!(parse_property_flag("linger.ms").is_err());
    }
}
