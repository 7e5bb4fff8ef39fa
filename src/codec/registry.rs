//! A blocking client of the Confluent Schema Registry REST API: the subset the
//! codec needs, spoken by Confluent Schema Registry, Apicurio's `ccompat` API
//! (`<base>/apis/ccompat/v7`), Karapace and Redpanda.
//!
//! - `POST {base}/subjects/{subject}/versions` `{"schema": "...", "schemaType": "AVRO"}`
//!   → `{"id": N}`: registers (or finds) a schema under a subject;
//! - `GET {base}/schemas/ids/{id}` → `{"schema": "..."}`: a schema by its global id.
//!
//! Both answers are immutable for a given input, so both are cached for the life
//! of the client. Errors keep the registry's own `error_code` (40403 schema not
//! found, 409 incompatible, 42201 invalid schema) so callers can tell a bad
//! record from a registry that is down.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The media type of the registry's v1 API.
const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// Longest answer read from the registry; schemas are kilobytes.
const MAX_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;

/// Why a registry call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered that the schema id (or subject) does not exist.
    #[error("schema registry has no {what} (HTTP {status}, error code {error_code}): {message}")]
    NotFound {
        what: String,
        status: u16,
        error_code: i64,
        message: String,
    },
    /// The registry refused the schema as incompatible with the subject's history.
    #[error(
        "schema registry refused the schema for subject `{subject}` as incompatible (error code {error_code}): {message}"
    )]
    Incompatible {
        subject: String,
        error_code: i64,
        message: String,
    },
    /// Any other HTTP error answer (401, 403, 422, 5xx, …).
    #[error("schema registry answered HTTP {status} (error code {error_code}): {message}")]
    Http {
        status: u16,
        error_code: i64,
        message: String,
    },
    /// The registry could not be reached or the exchange broke off.
    #[error("schema registry at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// The answer was not what the protocol says.
    #[error("schema registry answer is not understood: {0}")]
    BadAnswer(String),
}

impl RegistryError {
    /// True when retrying later may help (the registry is down or overloaded),
    /// false when the answer is final for this request.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } => true,
            RegistryError::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// Basic-auth credentials. The password should come from the environment
/// ([`RegistryClient::basic_auth_from_env`]), never a command-line flag.
#[derive(Clone)]
struct BasicAuth {
    header: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BasicAuth(***)")
    }
}

/// A Confluent-compatible schema-registry client with id caches. Cheap to share:
/// clones share the connection pool and the caches.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    base_url: String,
    auth: Option<BasicAuth>,
    agent: ureq::Agent,
    caches: Arc<Caches>,
}

#[derive(Debug, Default)]
struct Caches {
    /// Global id → schema text.
    by_id: Mutex<HashMap<u32, Arc<str>>>,
    /// (subject, schema text) → global id.
    by_subject: Mutex<HashMap<(String, String), u32>>,
}

impl RegistryClient {
    /// A client of the registry at `base_url` (for example `http://127.0.0.1:8081`
    /// or `https://registry.example/apis/ccompat/v7`), with a 10 s timeout per call.
    ///
    /// # Errors
    /// [`RegistryError::BadAnswer`] when the URL is not http(s).
    pub fn new(base_url: &str) -> Result<Self, RegistryError> {
        Self::with_timeout(base_url, Duration::from_secs(10))
    }

    /// As [`RegistryClient::new`] with another timeout for each call.
    ///
    /// # Errors
    /// [`RegistryError::BadAnswer`] when the URL is not http(s).
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Self, RegistryError> {
        let base = base_url.trim().trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(RegistryError::BadAnswer(format!(
                "schema registry URL must start with http:// or https://, got `{}`",
                base.chars().take(64).collect::<String>()
            )));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(RegistryClient {
            base_url: base.to_owned(),
            auth: None,
            agent,
            caches: Arc::new(Caches::default()),
        })
    }

    /// Adds HTTP basic authentication (Confluent Cloud API key and secret, or a
    /// registry user).
    #[must_use]
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Self {
        let token = basic_auth_token(user, password);
        self.auth = Some(BasicAuth {
            header: format!("Basic {token}"),
        });
        self
    }

    /// Adds HTTP basic authentication with the password read from the
    /// environment variable `password_var` (for example
    /// `TERMINUS_SCHEMA_REGISTRY_PASSWORD`).
    ///
    /// # Errors
    /// [`RegistryError::BadAnswer`] when the variable is unset or not UTF-8.
    pub fn basic_auth_from_env(
        self,
        user: &str,
        password_var: &str,
    ) -> Result<Self, RegistryError> {
        let password = std::env::var(password_var).map_err(|_| {
            RegistryError::BadAnswer(format!(
                "schema registry user `{user}` is set but environment variable {password_var} (its password) is not"
            ))
        })?;
        Ok(self.with_basic_auth(user, &password))
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Registers `schema` (Avro JSON text) under `subject` and returns its global
    /// id; registering the same schema again returns the same id. Cached per
    /// (subject, schema).
    ///
    /// # Errors
    /// [`RegistryError::Incompatible`] when the subject's compatibility rule refuses
    /// it; other variants for transport and protocol failures.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let key = (subject.to_owned(), schema.to_owned());
        if let Some(id) = lock(&self.caches.by_subject).get(&key) {
            return Ok(*id);
        }
        let url = format!(
            "{}/subjects/{}/versions",
            self.base_url,
            encode_path_segment(subject)
        );
        let body = serde_json::json!({ "schema": schema, "schemaType": "AVRO" }).to_string();
        let answer = self.call("POST", &url, Some(body))?;
        let id = match answer {
            Ok(json) => json_id(&json)?,
            Err((status, code, message)) if status == 409 || code == 409 => {
                return Err(RegistryError::Incompatible {
                    subject: subject.to_owned(),
                    error_code: code,
                    message,
                });
            }
            Err((status, error_code, message)) if status == 404 => {
                return Err(RegistryError::NotFound {
                    what: format!("subject `{subject}`"),
                    status,
                    error_code,
                    message,
                });
            }
            Err((status, error_code, message)) => {
                return Err(RegistryError::Http {
                    status,
                    error_code,
                    message,
                });
            }
        };
        lock(&self.caches.by_id).insert(id, Arc::from(schema));
        lock(&self.caches.by_subject).insert(key, id);
        Ok(id)
    }

    /// The schema text with global id `id`. Cached.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] when the registry has no such id; other
    /// variants for transport and protocol failures.
    pub fn schema_by_id(&self, id: u32) -> Result<Arc<str>, RegistryError> {
        if let Some(text) = lock(&self.caches.by_id).get(&id) {
            return Ok(Arc::clone(text));
        }
        let url = format!("{}/schemas/ids/{id}", self.base_url);
        let json = match self.call("GET", &url, None)? {
            Ok(json) => json,
            Err((status, error_code, message)) if status == 404 => {
                return Err(RegistryError::NotFound {
                    what: format!("schema id {id}"),
                    status,
                    error_code,
                    message,
                });
            }
            Err((status, error_code, message)) => {
                return Err(RegistryError::Http {
                    status,
                    error_code,
                    message,
                });
            }
        };
        if let Some(kind) = json.get("schemaType").and_then(|t| t.as_str())
            && kind != "AVRO"
        {
            return Err(RegistryError::BadAnswer(format!(
                "schema id {id} is a {} schema, not Avro",
                kind.chars().take(32).collect::<String>()
            )));
        }
        let text: Arc<str> = match json.get("schema") {
            Some(serde_json::Value::String(s)) => Arc::from(s.as_str()),
            _ => {
                return Err(RegistryError::BadAnswer(format!(
                    "GET /schemas/ids/{id} answer has no `schema` string"
                )));
            }
        };
        lock(&self.caches.by_id).insert(id, Arc::clone(&text));
        Ok(text)
    }

    /// One exchange: `Ok(Ok(json))` for a 2xx answer, `Ok(Err((status,
    /// error_code, message)))` for an HTTP error answer, `Err` when the registry
    /// could not be reached or answered something unreadable.
    #[allow(clippy::type_complexity)]
    fn call(
        &self,
        method: &str,
        url: &str,
        body: Option<String>,
    ) -> Result<Result<serde_json::Value, (u16, i64, String)>, RegistryError> {
        let unreachable = |e: ureq::Error| RegistryError::Unreachable {
            url: self.base_url.clone(),
            message: e.to_string(),
        };
        let result = match (method, body) {
            ("POST", Some(body)) => {
                let mut req = self
                    .agent
                    .post(url)
                    .header("Accept", MEDIA_TYPE)
                    .header("Content-Type", MEDIA_TYPE);
                if let Some(auth) = &self.auth {
                    req = req.header("Authorization", &auth.header);
                }
                req.send(body)
            }
            _ => {
                let mut req = self.agent.get(url).header("Accept", MEDIA_TYPE);
                if let Some(auth) = &self.auth {
                    req = req.header("Authorization", &auth.header);
                }
                req.call()
            }
        };
        let mut response = result.map_err(unreachable)?;
        let status = response.status().as_u16();
        let mut text = String::new();
        response
            .body_mut()
            .as_reader()
            .take(MAX_RESPONSE_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| RegistryError::Unreachable {
                url: self.base_url.clone(),
                message: format!("reading the answer: {e}"),
            })?;
        let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        if (200..300).contains(&status) {
            return json.map(Ok).ok_or_else(|| {
                RegistryError::BadAnswer(format!("HTTP {status} answer is not JSON"))
            });
        }
        let error_code = json
            .as_ref()
            .and_then(|j| j.get("error_code"))
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(i64::from(status));
        let message = json
            .as_ref()
            .and_then(|j| j.get("message"))
            .and_then(|m| m.as_str())
            .map_or_else(
                || text.chars().take(200).collect(),
                |m| m.chars().take(500).collect(),
            );
        Ok(Err((status, error_code, message)))
    }
}

fn json_id(json: &serde_json::Value) -> Result<u32, RegistryError> {
    json.get("id")
        .and_then(serde_json::Value::as_u64)
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| RegistryError::BadAnswer("register answer has no numeric `id`".into()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Percent-encodes one URL path segment (RFC 3986 unreserved characters pass).
fn encode_path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The base64 token of an HTTP basic `Authorization` header.
pub(crate) fn basic_auth_token(user: &str, password: &str) -> String {
    base64_encode(format!("{user}:{password}").as_bytes())
}

/// Standard base64 with padding (RFC 4648), for the basic-auth header.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), encoded, "{plain}");
        }
    }

    #[test]
    fn subjects_are_percent_encoded() {
        assert_eq!(
            encode_path_segment("crm.termination.status.v1-value"),
            "crm.termination.status.v1-value"
        );
        assert_eq!(encode_path_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn urls_must_be_http() {
        assert!(RegistryClient::new("ftp://x").is_err());
        let c = RegistryClient::new("http://127.0.0.1:1/apis/ccompat/v7/").unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:1/apis/ccompat/v7");
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let c = RegistryClient::new("http://127.0.0.1:1")
            .unwrap()
            .with_basic_auth("user", "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(!format!("{c:?}").contains(&base64_encode(b"user:s3cret")));
    }

    #[test]
    fn an_unreachable_registry_is_transient() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let c = RegistryClient::with_timeout("http://127.0.0.1:1", Duration::from_secs(2)).unwrap();
        let err = c.schema_by_id(1).unwrap_err();
        assert!(err.is_transient(), "{err}");
    }
}
