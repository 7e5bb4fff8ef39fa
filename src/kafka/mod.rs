//! Kafka edges: client configuration, topic layout, partitioning and headers.

pub mod preflight;
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

/// How soon a partition whose prefetch queue was full is fetched again.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// A consumer's prefetch limits per partition. librdkafka counts
/// `queued.max.messages.kbytes` (64 MiB by default) against each
/// partition's fetch queue, not the consumer's (confluentinc/librdkafka
/// #4137, #5140), and overshoots it by up to one fetch of
/// `max.partition.fetch.bytes`. Left alone, what a consumer may hold grows
/// with the partition count: 72 MiB for each changelog partition a restore
/// reads, 65 MiB for each input partition under a backlog. So each
/// partition gets an even share of a budget: one fetch (at most
/// `largest_fetch`, at most half the share) and the queue that fills the
/// rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefetch {
    pub queue_kbytes: u64,
    pub fetch_bytes: u64,
}

impl Prefetch {
    /// The floor of either limit: below it a partition would fetch in
    /// slivers. A budget too small for it is exceeded, not starved.
    pub const FLOOR_BYTES: u64 = 256 * 1024;

    pub fn within(budget: u64, partitions: usize, largest_fetch: u64) -> Prefetch {
        let share = budget / (partitions.max(1) as u64);
        let fetch_bytes = largest_fetch.min(share / 2).max(Self::FLOOR_BYTES);
        let queue = share.saturating_sub(fetch_bytes).max(Self::FLOOR_BYTES);
        Prefetch {
            queue_kbytes: queue / 1024,
            fetch_bytes,
        }
    }

    /// Sets these limits on `config`, a client configuration that already
    /// carries the operator's properties: a value the operator gave stays,
    /// as with the producer's retry backoff.
    pub fn set_unless_given(&self, config: &mut ClientConfig) {
        let given =
            |config: &ClientConfig, keys: &[&str]| keys.iter().any(|k| config.get(k).is_some());
        if !given(config, &["queued.max.messages.kbytes"]) {
            config.set("queued.max.messages.kbytes", self.queue_kbytes.to_string());
        }
        if !given(
            config,
            &["max.partition.fetch.bytes", "fetch.message.max.bytes"],
        ) {
            config.set("max.partition.fetch.bytes", self.fetch_bytes.to_string());
        }
        if !given(config, &["fetch.queue.backoff.ms"]) {
            // A partition whose queue is full is fetched again only after
            // this long (1 s by default): with bounded queues a restore of
            // 24 partitions read 31,101 records/s instead of 116,000.
            config.set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
        }
    }

    /// The most it lets one consumer hold over `partitions` partitions.
    pub fn bound(&self, partitions: usize) -> u64 {
        (self.queue_kbytes * 1024 + self.fetch_bytes) * partitions as u64
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
///
/// `KAFKA_<PROPERTY>_FILE=/path` sets `<property>` to the file's content
/// without its trailing line break (`KAFKA_SASL_PASSWORD_FILE=/run/secrets/kafka`
/// → `sasl.password`), the convention of container secrets. A file that cannot
/// be read is reported as ignored here; [`try_properties_from_env`] makes it
/// an error instead.
pub fn properties_from_env(
    vars: impl IntoIterator<Item = (String, String)>,
) -> (Vec<(String, String)>, Vec<String>) {
    let (accepted, ignored, _) = collect_env(vars);
    (accepted, ignored)
}

/// [`properties_from_env`], failing when a `KAFKA_*_FILE` secret cannot be
/// read or a property is given both directly and as a file: a worker should
/// not start without the secret it was told to use.
///
/// # Errors
/// [`PropertyError`] naming the variable (never the secret).
pub fn try_properties_from_env(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(Properties, Vec<String>), PropertyError> {
    let (accepted, ignored, errors) = collect_env(vars);
    match errors.into_iter().next() {
        Some(error) => Err(error),
        None => Ok((accepted, ignored)),
    }
}

/// librdkafka properties as `(key, value)` pairs.
pub type Properties = Vec<(String, String)>;

type EnvProperties = (Properties, Vec<String>, Vec<PropertyError>);

fn collect_env(vars: impl IntoIterator<Item = (String, String)>) -> EnvProperties {
    let mut accepted: Vec<(String, String)> = Vec::new();
    let mut ignored = Vec::new();
    let mut errors = Vec::new();
    let mut from_files: Vec<(String, String, String)> = Vec::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("KAFKA_") else {
            continue;
        };
        if rest.is_empty() || name == "KAFKA_BOOTSTRAP_SERVERS" {
            continue;
        }
        let key = env_key(rest);
        if validate_property(&key, &value).is_ok() {
            accepted.push((key, value));
            continue;
        }
        if let Some(base) = rest.strip_suffix("_FILE").filter(|b| !b.is_empty()) {
            let key = env_key(base);
            if validate_property(&key, "x").is_ok() || is_secret(&key) {
                from_files.push((name, key, value));
                continue;
            }
        }
        ignored.push(name);
    }
    for (name, key, path) in from_files {
        let refuse = |reason: String| PropertyError {
            key: key.clone(),
            origin: name.clone(),
            reason,
        };
        if accepted.iter().any(|(k, _)| *k == key) {
            errors.push(refuse(format!(
                "both {name} and KAFKA_{} are set; keep one",
                key.to_ascii_uppercase().replace('.', "_")
            )));
            ignored.push(name);
            continue;
        }
        let value = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim_end_matches(['\n', '\r']).to_owned(),
            Err(e) => {
                errors.push(refuse(format!("cannot read the file {path}: {e}")));
                ignored.push(name);
                continue;
            }
        };
        match validate_property(&key, &value) {
            Ok(()) => accepted.push((key, value)),
            Err(_) => {
                // librdkafka's message could quote the value: name the file only.
                errors.push(refuse(format!("librdkafka refused the content of {path}")));
                ignored.push(name);
            }
        }
    }
    accepted.sort();
    ignored.sort();
    (accepted, ignored, errors)
}

/// `SASL_PASSWORD` → `sasl.password`.
fn env_key(rest: &str) -> String {
    rest.to_ascii_lowercase().replace('_', ".")
}

/// Parses a `--kafka key=value` flag and checks librdkafka knows the property.
/// Secrets are refused: a command line shows in `ps` and in `/proc` to every
/// user of the machine, so they come from the environment or a file.
///
/// # Errors
/// [`PropertyError`] when the flag has no `=`, names a secret, or librdkafka
/// refuses it.
pub fn parse_property_flag(text: &str) -> Result<(String, String), PropertyError> {
    let Some((key, value)) = text.split_once('=') else {
        // Never echo the text: it could be a secret that lost its `=`.
        return Err(PropertyError {
            key: "(unparsed)".into(),
            origin: "--kafka".into(),
            reason: "expected key=value".into(),
        });
    };
    let key = key.trim().to_owned();
    if is_secret(&key) {
        let var = format!("KAFKA_{}", key.to_ascii_uppercase().replace('.', "_"));
        return Err(PropertyError {
            reason: format!(
                "secrets are not accepted as flags (a command line is visible in ps); set {var} or {var}_FILE=<path of a file holding it> instead"
            ),
            key,
            origin: "--kafka".into(),
        });
    }
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

/// The low and high watermarks librdkafka last saw in a fetch response for
/// this partition (no request), or None before the first fetch.
pub fn cached_watermarks<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    use rdkafka::consumer::Consumer as _;
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: a live client handle, a NUL-terminated topic name and two
    // out-pointers; rd_kafka_get_watermark_offsets only reads cached state.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low, high))
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
    fn a_prefetch_budget_is_shared_by_the_partitions() {
        let mib = 1024 * 1024;
        // Few partitions: the largest fetch, and the rest of the share queued.
        let few = Prefetch::within(128 * mib, 6, 8 * mib);
        assert_eq!(few.fetch_bytes, 8 * mib);
        assert!(
            few.bound(6) <= 128 * mib && few.bound(6) > 127 * mib,
            "{few:?}"
        );
        // Many: smaller fetches, still within the budget.
        let many = Prefetch::within(128 * mib, 48, 8 * mib);
        assert!(many.fetch_bytes < 8 * mib, "{many:?}");
        assert!(
            many.bound(48) <= 128 * mib && many.bound(48) > 120 * mib,
            "{many:?}"
        );
        // Too many for the budget: each limit stays at its floor.
        let floor = Prefetch::within(16 * mib, 10_000, 8 * mib);
        assert_eq!(floor.fetch_bytes, Prefetch::FLOOR_BYTES);
        assert_eq!(floor.queue_kbytes * 1024, Prefetch::FLOOR_BYTES);
        // No partition count known: the whole budget for one.
        assert_eq!(
            Prefetch::within(64 * mib, 0, mib),
            Prefetch::within(64 * mib, 1, mib)
        );
    }

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

    #[test]
    fn secret_flags_are_refused_and_name_the_environment_variable() {
        for flag in [
            "sasl.password=hunter2-secret",
            "ssl.key.password=hunter2-secret",
            "sasl.oauthbearer.client.secret=hunter2-secret",
        ] {
            let err = parse_property_flag(flag).unwrap_err().to_string();
            assert!(!err.contains("hunter2-secret"), "{err}");
            assert!(err.contains("_FILE"), "{err}");
        }
        let err = parse_property_flag("sasl.password=x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("KAFKA_SASL_PASSWORD"), "{err}");
        let err = parse_property_flag("hunter2-secret")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2-secret"), "{err}");
        // Not secrets: paths and names.
        assert!(parse_property_flag("sasl.username=terminus").is_ok());
        assert!(parse_property_flag("ssl.ca.location=/etc/ca.pem").is_ok());
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_file_variable_supplies_the_property_without_its_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cret pass\n").unwrap();
        let crlf = dir.path().join("ca");
        std::fs::write(&crlf, "/etc/ssl/ca.pem\r\n").unwrap();
        let (props, ignored) = try_properties_from_env(vars(&[
            ("KAFKA_SASL_PASSWORD_FILE", path.to_str().unwrap()),
            ("KAFKA_SSL_CA_LOCATION_FILE", crlf.to_str().unwrap()),
            ("KAFKA_SASL_USERNAME", "terminus"),
        ]))
        .unwrap();
        assert_eq!(
            props,
            vec![
                ("sasl.password".to_owned(), "s3cret pass".to_owned()),
                ("sasl.username".to_owned(), "terminus".to_owned()),
                ("ssl.ca.location".to_owned(), "/etc/ssl/ca.pem".to_owned()),
            ]
        );
        assert!(ignored.is_empty(), "{ignored:?}");
        let shown = format!(
            "{:?}",
            KafkaSettings {
                bootstrap_servers: "b:1".into(),
                properties: props,
            }
        );
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn an_unreadable_or_doubled_secret_is_an_error_that_names_no_secret() {
        let err = try_properties_from_env(vars(&[(
            "KAFKA_SASL_PASSWORD_FILE",
            "/nonexistent/terminus/password",
        )]))
        .unwrap_err();
        assert_eq!(err.origin, "KAFKA_SASL_PASSWORD_FILE");
        assert!(err.to_string().contains("/nonexistent/terminus/password"));
        // The lenient form reports it as ignored instead.
        let (props, ignored) = properties_from_env(vars(&[(
            "KAFKA_SASL_PASSWORD_FILE",
            "/nonexistent/terminus/password",
        )]));
        assert!(props.is_empty());
        assert_eq!(ignored, vec!["KAFKA_SASL_PASSWORD_FILE".to_owned()]);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "from-file").unwrap();
        let err = try_properties_from_env(vars(&[
            ("KAFKA_SASL_PASSWORD", "from-env"),
            ("KAFKA_SASL_PASSWORD_FILE", path.to_str().unwrap()),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("both"), "{err}");
        assert!(
            !err.contains("from-env") && !err.contains("from-file"),
            "{err}"
        );
    }

    #[test]
    fn file_suffixes_of_unknown_properties_are_ignored() {
        let (props, ignored) = properties_from_env(vars(&[
            ("KAFKA_NO_SUCH_THING_FILE", "/etc/hostname"),
            ("KAFKA_FILE", "/etc/hostname"),
        ]));
        assert!(props.is_empty());
        assert_eq!(
            ignored,
            vec![
                "KAFKA_FILE".to_owned(),
                "KAFKA_NO_SUCH_THING_FILE".to_owned()
            ]
        );
    }
}
