//! An in-memory schema registry speaking the Confluent REST protocol, on
//! 127.0.0.1, for tests and demos without a real registry. It implements what
//! the codec uses and a little more, with the documented answers:
//!
//! | request | answer |
//! |---|---|
//! | `POST /subjects/{s}/versions` `{"schema": "..."}` | `{"id": N}`; the same schema (by Parsing Canonical Form) keeps its id; `409` `{"error_code": 409}` when not backward compatible with the subject's latest version; `422` `{"error_code": 42201}` for an invalid schema |
//! | `GET /schemas/ids/{id}` | `{"schema": "..."}`, or `404` `{"error_code": 40403}` |
//! | `GET /subjects` | `["s", …]` |
//! | `GET /subjects/{s}/versions` | `[1, 2, …]`, or `404` `{"error_code": 40401}` |
//! | `GET /subjects/{s}/versions/latest` | `{"subject", "version", "id", "schema"}` |
//!
//! With credentials set, every request without them gets `401`
//! `{"error_code": 40101}`. Query parameters are accepted and ignored (Confluent's
//! own clients send `?normalize=false` and `?subject=…`). Scripted answers ([`FakeRegistry::script`]) override
//! a path, for testing outages and malformed answers.

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Default)]
struct State {
    /// id → (schema text, canonical form), ids from 1.
    schemas: Vec<(String, String)>,
    /// subject → ids of its versions, oldest first.
    subjects: Vec<(String, Vec<u32>)>,
    /// `METHOD path` of every request, in order.
    requests: Vec<String>,
    /// Bodies of the requests that had one, with their `METHOD path`.
    bodies: Vec<(String, String)>,
    /// path → (status, body) answered instead of the protocol.
    scripted: HashMap<String, (u16, String)>,
    /// Expected `Authorization` header value.
    auth: Option<String>,
}

/// A running in-memory registry; stops when dropped.
pub struct FakeRegistry {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeRegistry {
    /// Starts a registry on an ephemeral port of 127.0.0.1.
    ///
    /// # Errors
    /// When the listening socket cannot be opened.
    pub fn start() -> std::io::Result<FakeRegistry> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let state = Arc::clone(&state);
                            std::thread::spawn(move || {
                                let _ = serve(stream, &state);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        Ok(FakeRegistry {
            addr,
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requires HTTP basic authentication with these credentials.
    pub fn require_basic_auth(&self, user: &str, password: &str) {
        let token = super::basic_auth_token(user, password);
        self.state().auth = Some(format!("Basic {token}"));
    }

    /// Answers `path` (e.g. `/schemas/ids/1`) with `status` and `body` from now on.
    pub fn script(&self, path: &str, status: u16, body: &str) {
        self.state()
            .scripted
            .insert(path.to_owned(), (status, body.to_owned()));
    }

    /// Every request so far, as `METHOD path`.
    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }

    /// Every request body so far, with its `METHOD path`.
    pub fn bodies(&self) -> Vec<(String, String)> {
        self.state().bodies.clone()
    }

    /// The subject's version ids, oldest first.
    pub fn versions(&self, subject: &str) -> Vec<u32> {
        self.state()
            .subjects
            .iter()
            .find(|(s, _)| s == subject)
            .map(|(_, ids)| ids.clone())
            .unwrap_or_default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut length = 0usize;
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "authorization" => authorization = Some(value.to_owned()),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; length.min(16 * 1024 * 1024)];
    reader.read_exact(&mut body)?;
    let (status, answer) = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        state.requests.push(format!("{method} {path}"));
        if !body.is_empty() {
            let text = String::from_utf8_lossy(&body).into_owned();
            state.bodies.push((format!("{method} {path}"), text));
        }
        handle(&mut state, &method, &path, &body, authorization.as_deref())
    };
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        _ => "Status",
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    stream.flush()
}

fn error(status: u16, code: u32, message: &str) -> (u16, String) {
    (
        status,
        serde_json::json!({ "error_code": code, "message": message }).to_string(),
    )
}

fn handle(
    state: &mut State,
    method: &str,
    path: &str,
    body: &[u8],
    authorization: Option<&str>,
) -> (u16, String) {
    if let Some(expected) = &state.auth
        && authorization != Some(expected.as_str())
    {
        return error(401, 40101, "Unauthorized");
    }
    // Query parameters (`?normalize=false`, `?subject=…` from Confluent's
    // clients) do not change the answers here.
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    if let Some((status, body)) = state.scripted.get(path) {
        return (*status, body.clone());
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", ["schemas", "ids", id]) => {
            let index = id.parse::<usize>().ok().and_then(|i| i.checked_sub(1));
            match index.and_then(|i| state.schemas.get(i)) {
                Some((text, _)) => (200, serde_json::json!({ "schema": text }).to_string()),
                None => error(404, 40403, &format!("Schema {id} not found")),
            }
        }
        ("GET", ["subjects"]) => {
            let names: Vec<&String> = state.subjects.iter().map(|(s, _)| s).collect();
            (200, serde_json::json!(names).to_string())
        }
        ("GET", ["subjects", subject, "versions"]) => {
            let subject = decode_segment(subject);
            match state.subjects.iter().find(|(s, _)| *s == subject) {
                Some((_, ids)) => {
                    let versions: Vec<usize> = (1..=ids.len()).collect();
                    (200, serde_json::json!(versions).to_string())
                }
                None => error(404, 40401, &format!("Subject '{subject}' not found.")),
            }
        }
        ("GET", ["subjects", subject, "versions", "latest"]) => {
            let subject = decode_segment(subject);
            match state.subjects.iter().find(|(s, _)| *s == subject) {
                Some((_, ids)) => {
                    let id = ids[ids.len() - 1];
                    let text = &state.schemas[id as usize - 1].0;
                    (
                        200,
                        serde_json::json!({"subject": subject, "version": ids.len(), "id": id, "schema": text})
                            .to_string(),
                    )
                }
                None => error(404, 40401, &format!("Subject '{subject}' not found.")),
            }
        }
        ("POST", ["subjects", subject, "versions"]) => {
            register(state, &decode_segment(subject), body)
        }
        _ => error(404, 404, "HTTP 404 Not Found"),
    }
}

fn register(state: &mut State, subject: &str, body: &[u8]) -> (u16, String) {
    let request: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return error(422, 42201, "Invalid schema: request is not JSON"),
    };
    if let Some(kind) = request.get("schemaType").and_then(|t| t.as_str())
        && kind != "AVRO"
    {
        return error(422, 42201, "Invalid schema: only AVRO is supported here");
    }
    let Some(text) = request.get("schema").and_then(|s| s.as_str()) else {
        return error(422, 42201, "Invalid schema: no `schema` string");
    };
    let Ok(schema) = Schema::parse_str(text) else {
        return error(422, 42201, "Invalid schema");
    };
    let canonical = schema.canonical_form();
    let existing = state.schemas.iter().position(|(_, c)| *c == canonical);
    let versions = state
        .subjects
        .iter()
        .find(|(s, _)| s == subject)
        .map(|(_, ids)| ids.clone())
        .unwrap_or_default();
    if let Some(i) = existing
        && versions.contains(&(i as u32 + 1))
    {
        return (200, serde_json::json!({ "id": i + 1 }).to_string());
    }
    // BACKWARD, the registry default: the new schema reads data of the latest.
    if let Some(&latest) = versions.last() {
        let previous = Schema::parse_str(&state.schemas[latest as usize - 1].0);
        let compatible = previous
            .map(|previous| {
                matches!(
                    SchemaCompatibility::can_read(&previous, &schema),
                    Ok(Compatibility::Full)
                )
            })
            .unwrap_or(false);
        if !compatible {
            return error(
                409,
                409,
                "Schema being registered is incompatible with an earlier schema for subject",
            );
        }
    }
    let id = match existing {
        Some(i) => i as u32 + 1,
        None => {
            state.schemas.push((text.to_owned(), canonical));
            state.schemas.len() as u32
        }
    };
    match state.subjects.iter_mut().find(|(s, _)| s == subject) {
        Some((_, ids)) => ids.push(id),
        None => state.subjects.push((subject.to_owned(), vec![id])),
    }
    (200, serde_json::json!({ "id": id }).to_string())
}

fn decode_segment(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
