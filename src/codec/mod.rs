//! Wire formats of contract v1: JSON (the default), and Avro in the Confluent
//! schema-registry framing or in Avro's own single-object encoding.
//!
//! - **JSON**: the UTF-8 TMF688 envelope, as `contract::decode_envelope` reads
//!   and `OutputRecord::to_json` writes.
//! - **Avro, Confluent framing**: byte `0x00`, the 4-byte big-endian schema id
//!   of the schema registry, then the Avro binary datum.
//! - **Avro single-object encoding**: bytes `0xC3 0x01`, the 8-byte
//!   little-endian CRC-64-AVRO fingerprint of the writer schema's canonical
//!   form, then the Avro binary datum.
//!
//! Decoding detects the format of each record by its first bytes (a JSON
//! document never starts with `0x00` or `0xC3`), so one topic can carry all
//! three while producers migrate. An Avro value is decoded with its writer
//! schema (fetched by id, or known by fingerprint), resolved against the
//! contract's reader schema (`schemas/`) by record name, turned into the JSON
//! envelope and validated by `contract::decode_envelope`: every format gets
//! the same rules and the same dead-letter reasons.
//!
//! Encoding writes JSON, or Avro with the topic's schema (the union of the
//! event types it carries), registered under the subject `<topic>-value`
//! (topic-name strategy) for the Confluent framing.

pub mod avro_json;
pub mod registry;
pub mod schemas;

pub use registry::{RegistryClient, RegistryError};

use crate::contract::{
    DeadLetterReason, DecodeError, InputEnvelope, OutputRecord, Topic, decode_envelope,
};
use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;
use avro_json::Names;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

/// `content-type` of JSON values.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// `content-type` of Avro values in the Confluent schema-registry framing.
pub const CONTENT_TYPE_AVRO_CONFLUENT: &str = "application/vnd.confluent.avro";
/// `content-type` of Avro single-object encoded values.
pub const CONTENT_TYPE_AVRO_SINGLE_OBJECT: &str = "application/avro";

/// First byte of the Confluent framing.
pub const CONFLUENT_MAGIC: u8 = 0;
/// First two bytes of Avro single-object encoding.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];

/// How values are written (and, for decoding, one of the formats recognised).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum WireFormat {
    Json,
    AvroConfluent,
    AvroSingleObject,
}

impl WireFormat {
    pub const ALL: [WireFormat; 3] = [
        WireFormat::Json,
        WireFormat::AvroConfluent,
        WireFormat::AvroSingleObject,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            WireFormat::Json => "json",
            WireFormat::AvroConfluent => "avro-confluent",
            WireFormat::AvroSingleObject => "avro-single-object",
        }
    }

    pub const fn content_type(self) -> &'static str {
        match self {
            WireFormat::Json => CONTENT_TYPE_JSON,
            WireFormat::AvroConfluent => CONTENT_TYPE_AVRO_CONFLUENT,
            WireFormat::AvroSingleObject => CONTENT_TYPE_AVRO_SINGLE_OBJECT,
        }
    }

    /// The format a value's first bytes announce.
    pub fn detect(value: &[u8]) -> WireFormat {
        match value {
            [CONFLUENT_MAGIC, ..] => WireFormat::AvroConfluent,
            [0xC3, 0x01, ..] => WireFormat::AvroSingleObject,
            _ => WireFormat::Json,
        }
    }
}

impl fmt::Display for WireFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WireFormat {
    type Err = CodecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        WireFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == text.trim())
            .ok_or_else(|| CodecError::UnknownFormat(text.chars().take(64).collect()))
    }
}

/// Why the codec could not be built or could not encode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("unknown wire format `{0}` (expected json, avro-confluent or avro-single-object)")]
    UnknownFormat(String),
    #[error("wire format avro-confluent needs a schema registry URL")]
    RegistryRequired,
    #[error("schema registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("Avro schema {name}: {message}")]
    Schema { name: String, message: String },
    #[error("cannot encode {event_type} for topic {topic} as Avro: {message}")]
    Encode {
        topic: String,
        event_type: String,
        message: String,
    },
}

impl CodecError {
    /// True when the same call may succeed later (the registry is unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, CodecError::Registry(e) if e.is_transient())
    }
}

/// True for a decode refusal that is not the record's fault (the schema
/// registry is unreachable): the worker should retry the batch rather than
/// dead-letter the record.
pub fn is_transient(error: &DecodeError) -> bool {
    error.reason == DeadLetterReason::SchemaRegistryUnavailable
}

/// A reader schema: a union of contract records, with its names and an index
/// of its branches by full name.
struct ReaderSet {
    schema: Schema,
    names: Names,
    branches: HashMap<String, usize>,
}

impl ReaderSet {
    fn new(text: &str) -> ReaderSet {
        // The embedded schemas are checked by the unit tests; failing here is a
        // build defect, not a runtime condition.
        let schema = schemas::parse(text).expect("embedded contract schema parses");
        let names = avro_json::names_of(&schema).expect("embedded contract schema resolves");
        let mut branches = HashMap::new();
        if let Schema::Union(union) = &schema {
            for (i, variant) in union.variants().iter().enumerate() {
                if let Schema::Record(r) = avro_json::deref(variant, &names) {
                    branches.insert(r.name.fullname(None), i);
                }
            }
        }
        ReaderSet {
            schema,
            names,
            branches,
        }
    }

    fn branch(&self, index: usize) -> &Schema {
        match &self.schema {
            Schema::Union(union) => &union.variants()[index],
            other => other,
        }
    }
}

/// A writer schema with a reusable datum reader. Writer schemas are leaked on
/// purpose (once per distinct schema text in the process): they are few (the
/// contract's own and those a registry holds) and live as long as the process.
struct Writer {
    reader: GenericDatumReader<'static>,
    schema: &'static Schema,
    names: Names,
    /// Where it came from, for messages: `schema id 7`, `fingerprint 0x…`.
    origin: String,
}

/// One encoding schema per output topic role.
struct OutputSchema {
    text: String,
    fingerprint: u64,
    names: Names,
    writer: GenericDatumWriter<'static>,
    schema: &'static Schema,
}

fn leak_schema(text: &str) -> Result<&'static Schema, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, &'static Schema>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(schema) = cache.get(text) {
        return Ok(schema);
    }
    let schema = schemas::parse(text)?;
    let schema: &'static Schema = Box::leak(Box::new(schema));
    cache.insert(text.to_owned(), schema);
    Ok(schema)
}

fn writer_for(text: &str, origin: String) -> Result<Writer, String> {
    let schema = leak_schema(text)?;
    let names = avro_json::names_of(schema)?;
    let reader = GenericDatumReader::builder(schema)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Writer {
        reader,
        schema,
        names,
        origin,
    })
}

fn input_reader() -> &'static ReaderSet {
    static READER: OnceLock<ReaderSet> = OnceLock::new();
    READER.get_or_init(|| ReaderSet::new(&schemas::all_inputs_schema_text()))
}

fn all_events_reader() -> &'static ReaderSet {
    static READER: OnceLock<ReaderSet> = OnceLock::new();
    READER.get_or_init(|| {
        let texts: Vec<&str> = schemas::INPUT_SCHEMAS
            .iter()
            .chain(schemas::OUTPUT_SCHEMAS.iter())
            .map(|(_, t)| *t)
            .collect();
        ReaderSet::new(&schemas::compose_union(&texts))
    })
}

/// The schema texts a single-object value may name by fingerprint without a
/// registry: every contract schema (each event type alone, each topic's union,
/// the union of all inputs), current and released.
fn known_schema_texts() -> Vec<String> {
    let mut texts: Vec<String> = schemas::INPUT_SCHEMAS
        .iter()
        .chain(schemas::OUTPUT_SCHEMAS.iter())
        .chain(schemas::RELEASED_V1.iter())
        .map(|(_, t)| (*t).to_owned())
        .collect();
    for topic in Topic::INPUTS.into_iter().chain(Topic::OUTPUTS) {
        texts.push(schemas::topic_schema_text(topic));
    }
    texts.push(schemas::all_inputs_schema_text());
    let released_inputs: Vec<&str> = schemas::RELEASED_V1
        .iter()
        .filter(|(name, _)| schemas::INPUT_SCHEMAS.iter().any(|(n, _)| n == name))
        .map(|(_, t)| *t)
        .collect();
    texts.push(schemas::compose_union(&released_inputs));
    texts
}

type Cached = Result<Arc<Writer>, DecodeError>;

/// Largest single allocation the Avro decoder may make (strings, arrays).
const MAX_AVRO_ALLOCATION: usize = 4 * 1024 * 1024;

/// Bound of the negative cache of schema ids (ids the registry does not have).
const MAX_CACHED_IDS: usize = 4096;

/// Encodes outputs and decodes inputs in the configured wire formats. Shareable
/// across threads; its caches are behind locks held only for look-ups.
pub struct Codec {
    output_format: WireFormat,
    registry: Option<RegistryClient>,
    outputs: HashMap<Topic, OutputSchema>,
    by_fingerprint: RwLock<HashMap<u64, Arc<Writer>>>,
    by_id: RwLock<HashMap<u32, Cached>>,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("output_format", &self.output_format)
            .field(
                "registry",
                &self.registry.as_ref().map(RegistryClient::base_url),
            )
            .finish_non_exhaustive()
    }
}

impl Codec {
    /// A codec writing `output_format`. Every format is accepted when decoding;
    /// Confluent-framed inputs need `registry`, and so does writing
    /// `avro-confluent`.
    ///
    /// # Errors
    /// [`CodecError::RegistryRequired`] for `avro-confluent` without a registry;
    /// [`CodecError::Schema`] if an embedded schema is defective (a build bug).
    pub fn new(
        output_format: WireFormat,
        registry: Option<RegistryClient>,
    ) -> Result<Codec, CodecError> {
        if output_format == WireFormat::AvroConfluent && registry.is_none() {
            return Err(CodecError::RegistryRequired);
        }
        // A length prefix in a corrupt value must not make the decoder allocate
        // hundreds of megabytes: no contract value comes near this. (The limit is
        // process-wide and set once; the first codec sets it.)
        apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
        let schema_error = |name: &str, message: String| CodecError::Schema {
            name: name.to_owned(),
            message,
        };
        let mut outputs = HashMap::new();
        for topic in Topic::OUTPUTS {
            let text = schemas::topic_schema_text(topic);
            let schema = leak_schema(&text).map_err(|e| schema_error(topic.default_name(), e))?;
            let names =
                avro_json::names_of(schema).map_err(|e| schema_error(topic.default_name(), e))?;
            let writer = GenericDatumWriter::builder(schema)
                .build()
                .map_err(|e| schema_error(topic.default_name(), e.to_string()))?;
            outputs.insert(
                topic,
                OutputSchema {
                    fingerprint: schemas::fingerprint(schema),
                    text,
                    names,
                    writer,
                    schema,
                },
            );
        }
        let mut by_fingerprint = HashMap::new();
        for text in known_schema_texts() {
            let writer =
                writer_for(&text, String::new()).map_err(|e| schema_error("contract", e))?;
            let fp = schemas::fingerprint(writer.schema);
            let writer = Writer {
                origin: format!("fingerprint {fp:#018x}"),
                ..writer
            };
            by_fingerprint.insert(fp, Arc::new(writer));
        }
        // Build the static reader sets now rather than on the first record.
        input_reader();
        all_events_reader();
        Ok(Codec {
            output_format,
            registry,
            outputs,
            by_fingerprint: RwLock::new(by_fingerprint),
            by_id: RwLock::new(HashMap::new()),
        })
    }

    pub fn output_format(&self) -> WireFormat {
        self.output_format
    }

    pub fn registry(&self) -> Option<&RegistryClient> {
        self.registry.as_ref()
    }

    /// Decodes one input value of `topic`, whatever its wire format, into the
    /// validated envelope the JSON path gives.
    ///
    /// `content_type` (the record's `content-type` header) is a hint: a value
    /// announced as Avro without an Avro header is refused (`InvalidAvro`)
    /// instead of being misread as JSON.
    ///
    /// # Errors
    /// A [`DecodeError`] with the contract's reason codes, plus
    /// `UnknownSchemaId`, `UnknownFingerprint`, `IncompatibleSchema`,
    /// `InvalidAvro` and the transient `SchemaRegistryUnavailable` (see
    /// [`is_transient`]).
    pub fn decode(
        &self,
        topic: &str,
        value: &[u8],
        content_type: Option<&str>,
    ) -> Result<InputEnvelope, DecodeError> {
        let _ = topic; // topic checks are the worker's; the reader covers every input
        match WireFormat::detect(value) {
            WireFormat::Json => {
                if let Some(ct) = content_type
                    && ct.to_ascii_lowercase().contains("avro")
                {
                    return Err(DecodeError::new(
                        DeadLetterReason::InvalidAvro,
                        "content-type announces Avro but the value has neither the Confluent header (0x00 + schema id) nor the single-object header (0xC3 0x01 + fingerprint)",
                    ));
                }
                decode_envelope(value)
            }
            _ => {
                let json = self.avro_to_json(value, input_reader())?;
                let bytes = serde_json::to_vec(&json).unwrap_or_default();
                decode_envelope(&bytes)
            }
        }
    }

    /// Decodes any contract-v1 event (input or output) in either Avro framing, or
    /// JSON, to its JSON envelope without validating it: for tools and tests
    /// that read the worker's outputs.
    ///
    /// # Errors
    /// As [`Codec::decode`] for the framing and schema problems; `InvalidJson`
    /// when a non-Avro value is not JSON.
    pub fn decode_to_json(&self, value: &[u8]) -> Result<serde_json::Value, DecodeError> {
        match WireFormat::detect(value) {
            WireFormat::Json => serde_json::from_slice(value).map_err(|_| {
                DecodeError::new(
                    DeadLetterReason::InvalidJson,
                    "value is not valid UTF-8 JSON",
                )
            }),
            _ => self.avro_to_json(value, all_events_reader()),
        }
    }

    /// Encodes one output for `topic` (the configured topic name, which names the
    /// registry subject `<topic>-value`) in the configured wire format, with the
    /// value's `content-type`.
    ///
    /// # Errors
    /// [`CodecError::Registry`] when registering the schema fails (check
    /// [`CodecError::is_transient`]); [`CodecError::Encode`] when the record does
    /// not fit its schema (a defect the tests guard against).
    pub fn encode(
        &self,
        topic: &str,
        record: &OutputRecord,
    ) -> Result<(Vec<u8>, &'static str), CodecError> {
        let format = self.output_format;
        if format == WireFormat::Json {
            return Ok((record.to_json(), CONTENT_TYPE_JSON));
        }
        let encode_error = |message: String| CodecError::Encode {
            topic: topic.to_owned(),
            event_type: record.envelope.event_type.to_owned(),
            message,
        };
        let output = self
            .outputs
            .get(&record.topic)
            .ok_or_else(|| encode_error(format!("{:?} is not an output topic", record.topic)))?;
        let json =
            serde_json::to_value(&record.envelope).map_err(|e| encode_error(e.to_string()))?;
        let avro = avro_json::json_to_avro(&json, output.schema, &output.names)
            .map_err(|e| encode_error(e.to_string()))?;
        let mut out = Vec::with_capacity(256);
        match format {
            WireFormat::AvroConfluent => {
                let registry = self.registry.as_ref().ok_or(CodecError::RegistryRequired)?;
                let id = registry.register(&format!("{topic}-value"), &output.text)?;
                out.push(CONFLUENT_MAGIC);
                out.extend_from_slice(&id.to_be_bytes());
            }
            WireFormat::AvroSingleObject => {
                out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
                out.extend_from_slice(&output.fingerprint.to_le_bytes());
            }
            WireFormat::Json => unreachable!("handled above"),
        }
        output
            .writer
            .write_value_ref(&mut out, &avro)
            .map_err(|e| encode_error(e.to_string()))?;
        Ok((out, format.content_type()))
    }

    /// The schema registered for an output topic role (the union of its event
    /// types), as registered and as fingerprinted.
    pub fn output_schema_text(&self, topic: Topic) -> Option<&str> {
        self.outputs.get(&topic).map(|o| o.text.as_str())
    }

    /// Decodes a framed Avro value to the JSON envelope, resolved against `reader`.
    fn avro_to_json(
        &self,
        value: &[u8],
        reader: &ReaderSet,
    ) -> Result<serde_json::Value, DecodeError> {
        let (writer, datum) = self.writer_of(value)?;
        let mut cursor = EofGuard {
            rest: datum,
            hit_end: false,
        };
        let decoded = writer.reader.read_value(&mut cursor);
        // apache-avro reads a union index cut off by the end of the data as
        // `null`; a datum that needed more bytes than it has is truncated.
        let decoded = match decoded {
            Ok(value) if !cursor.hit_end => value,
            _ => {
                return Err(DecodeError::new(
                    DeadLetterReason::InvalidAvro,
                    format!(
                        "value does not decode as Avro with its writer schema ({}): truncated or corrupt",
                        writer.origin
                    ),
                ));
            }
        };
        if !cursor.rest.is_empty() {
            return Err(DecodeError::new(
                DeadLetterReason::InvalidAvro,
                format!(
                    "value has {} bytes after the Avro datum ({})",
                    cursor.rest.len(),
                    writer.origin
                ),
            ));
        }
        // The writer's record: the union branch written, or the schema itself.
        let (branch_schema, inner) = match (writer.schema, decoded) {
            (Schema::Union(union), Avro::Union(i, inner)) => {
                let variant = union.variants().get(i as usize).ok_or_else(|| {
                    DecodeError::new(DeadLetterReason::InvalidAvro, "union index out of range")
                })?;
                (avro_json::deref(variant, &writer.names), *inner)
            }
            (schema, value) => (avro_json::deref(schema, &writer.names), value),
        };
        let Schema::Record(record) = branch_schema else {
            return Err(DecodeError::new(
                DeadLetterReason::IncompatibleSchema,
                format!(
                    "writer schema ({}) is not a record of contract v1",
                    writer.origin
                ),
            ));
        };
        let full = record.name.fullname(None);
        let Some(&index) = reader.branches.get(&full) else {
            return Err(DecodeError::new(
                DeadLetterReason::UnknownEventType,
                format!(
                    "the Avro record ({}) is not an event type this reader knows",
                    writer.origin
                ),
            ));
        };
        let resolved = inner
            .resolve_with_names(reader.branch(index), &reader.names)
            .map_err(|_| {
                DecodeError::new(
                    DeadLetterReason::IncompatibleSchema,
                    format!(
                        "Avro record `{full}` ({}) cannot be resolved against the contract-v1 reader schema: a field without default is missing or a type changed incompatibly",
                        writer.origin
                    ),
                )
            })?;
        let json = avro_json::avro_to_json(&resolved).map_err(|e| {
            DecodeError::new(
                DeadLetterReason::IncompatibleSchema,
                format!("Avro record `{full}` field {}", e),
            )
        })?;
        let event_type = json.get("eventType").and_then(|t| t.as_str());
        if event_type != Some(record.name.name()) {
            return Err(DecodeError::new(
                DeadLetterReason::InvalidField,
                format!(
                    "field `eventType` must equal the Avro record name `{}`",
                    record.name.name()
                ),
            ));
        }
        Ok(json)
    }

    /// The writer schema a framed value names, and the datum after the header.
    fn writer_of<'v>(&self, value: &'v [u8]) -> Result<(Arc<Writer>, &'v [u8]), DecodeError> {
        match WireFormat::detect(value) {
            WireFormat::AvroConfluent => {
                let Some((id, datum)) = value.get(1..5).map(|id| {
                    (
                        u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
                        &value[5..],
                    )
                }) else {
                    return Err(DecodeError::new(
                        DeadLetterReason::InvalidAvro,
                        "value starts with the Confluent magic byte 0 but is shorter than its 5-byte header",
                    ));
                };
                Ok((self.writer_by_id(id)?, datum))
            }
            WireFormat::AvroSingleObject => {
                let Some(fp) = value.get(2..10) else {
                    return Err(DecodeError::new(
                        DeadLetterReason::InvalidAvro,
                        "value starts with the single-object header 0xC3 0x01 but is shorter than its 10-byte header",
                    ));
                };
                let mut le = [0u8; 8];
                le.copy_from_slice(fp);
                let fp = u64::from_le_bytes(le);
                let writer = read(&self.by_fingerprint).get(&fp).cloned().ok_or_else(|| {
                    DecodeError::new(
                        DeadLetterReason::UnknownFingerprint,
                        format!(
                            "schema fingerprint {fp:#018x} is not a contract-v1 schema nor one fetched from the schema registry"
                        ),
                    )
                })?;
                Ok((writer, &value[10..]))
            }
            WireFormat::Json => Err(DecodeError::new(
                DeadLetterReason::InvalidAvro,
                "value has no Avro header",
            )),
        }
    }

    fn writer_by_id(&self, id: u32) -> Result<Arc<Writer>, DecodeError> {
        if let Some(cached) = read(&self.by_id).get(&id) {
            return cached.clone();
        }
        let Some(registry) = &self.registry else {
            return Err(DecodeError::new(
                DeadLetterReason::UnknownSchemaId,
                format!("value names schema id {id} but no schema registry is configured"),
            ));
        };
        let result: Cached = match registry.schema_by_id(id) {
            Ok(text) => writer_for(&text, format!("schema id {id}"))
                .map(Arc::new)
                .map_err(|_| {
                    DecodeError::new(
                        DeadLetterReason::IncompatibleSchema,
                        format!("schema id {id} is not a valid Avro schema"),
                    )
                }),
            Err(e) if e.is_transient() => {
                // Not cached: the next record asks again.
                return Err(DecodeError::new(
                    DeadLetterReason::SchemaRegistryUnavailable,
                    format!("schema id {id} could not be fetched: {e}"),
                ));
            }
            Err(RegistryError::NotFound { .. }) => Err(DecodeError::new(
                DeadLetterReason::UnknownSchemaId,
                format!("schema id {id} is not in the schema registry"),
            )),
            Err(e) => Err(DecodeError::new(
                DeadLetterReason::UnknownSchemaId,
                format!("schema id {id} could not be fetched: {e}"),
            )),
        };
        if let Ok(writer) = &result {
            let fp = schemas::fingerprint(writer.schema);
            write(&self.by_fingerprint)
                .entry(fp)
                .or_insert_with(|| Arc::clone(writer));
        }
        let mut cache = write(&self.by_id);
        if cache.len() >= MAX_CACHED_IDS {
            cache.retain(|_, v| v.is_ok());
        }
        cache.insert(id, result.clone());
        result
    }
}

/// A reader over the datum that notes any attempt to read past its end.
struct EofGuard<'a> {
    rest: &'a [u8],
    hit_end: bool,
}

impl std::io::Read for EofGuard<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.rest.is_empty() && !buf.is_empty() {
            self.hit_end = true;
            return Ok(0);
        }
        let n = buf.len().min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
