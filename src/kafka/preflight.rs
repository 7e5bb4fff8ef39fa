//! Start-up checks that turn connection and permission mistakes into one error
//! naming the cause, before the worker creates its transactional producer and
//! joins its group.
//!
//! librdkafka retries failed connections forever and reports why only through
//! its error callback, so a wrong password or an untrusted CA would otherwise
//! surface as a metadata timeout ("broker transport failure"), and a missing
//! ACL as a consumer error logged over and over. The checks here:
//!
//! 1. [`connect`]: fetch cluster metadata with a client that records
//!    librdkafka's errors; an authentication or TLS failure ends the wait at
//!    once and is reported as such ([`Failure`]).
//! 2. Topic access: each topic must be visible (Describe) and the client's
//!    principal must hold the operations Terminus needs on it, as the broker
//!    reports them (KIP-430 authorized operations, through librdkafka's
//!    `DescribeTopics`); likewise Read on the consumer group. A broker without
//!    an authorizer reports every operation as allowed.
//!
//! The transactional id is not checked here: `init_transactions` fails at
//! once with `TRANSACTIONAL_ID_AUTHORIZATION_FAILED` when Write on it is missing.

use super::KafkaSettings;
use rdkafka::bindings as rdsys;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use std::ffi::{CStr, CString, c_char};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a client could not talk to Kafka, sorted by what the operator must fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// SASL authentication was refused (user, password or mechanism).
    Authentication(String),
    /// The TLS handshake failed (untrusted CA, host name not in the certificate).
    Tls(String),
    /// The broker hung up before speaking Kafka: usually a plaintext client on
    /// a TLS listener, or the other way round.
    Protocol(String),
    /// Nothing answered (refused, unresolvable, timed out).
    Unreachable(String),
}

impl Failure {
    /// Sorts one librdkafka error (code and reason text) by cause.
    pub fn classify(code: Option<RDKafkaErrorCode>, reason: &str) -> Failure {
        let lower = reason.to_ascii_lowercase();
        let reason = reason.to_owned();
        if lower.contains("plaintext broker listener") {
            // librdkafka's own diagnosis of a TLS client on a plaintext listener.
            Failure::Protocol(reason)
        } else if code == Some(RDKafkaErrorCode::Authentication)
            || code == Some(RDKafkaErrorCode::SaslAuthenticationFailed)
            || lower.contains("sasl authentication")
            || lower.contains("authentication failed")
        {
            Failure::Authentication(reason)
        } else if code == Some(RDKafkaErrorCode::SSL)
            || lower.contains("ssl handshake")
            || lower.contains("certificate verify failed")
        {
            Failure::Tls(reason)
        } else if lower.contains("security.protocol")
            || lower.contains("wrong version number")
            || lower.contains("packet length too long")
            || (lower.contains("disconnected") && lower.contains("apiversion_query"))
        {
            // A TLS listener hangs up on a plaintext ApiVersions request; a
            // TLS client reads garbage from a plaintext listener.
            Failure::Protocol(reason)
        } else {
            Failure::Unreachable(reason)
        }
    }

    /// Whether waiting longer cannot help: bad credentials and bad
    /// certificates do not heal by themselves. A protocol mismatch looks like
    /// a broker hanging up, which a restarting broker does too, so it counts
    /// only once it repeats (see [`ErrorCapture::failure`]).
    pub fn is_definitive(&self) -> bool {
        matches!(self, Failure::Authentication(_) | Failure::Tls(_))
    }

    fn is_generic(&self) -> bool {
        let Failure::Unreachable(text) = self else {
            return false;
        };
        text.contains("AllBrokersDown") || text.contains("brokers are down")
    }
}

/// How many protocol-mismatch hang-ups make the mismatch certain.
const PROTOCOL_REPEATS: usize = 3;

/// When `err` says the client's principal was refused (authentication, or a
/// missing ACL), the message to stop with: waiting or retrying cannot fix it.
/// `None` for every other error.
pub fn authorization_failure(err: &KafkaError) -> Option<String> {
    let what = match err.rdkafka_error_code()? {
        RDKafkaErrorCode::TopicAuthorizationFailed => "a topic ACL is missing",
        RDKafkaErrorCode::GroupAuthorizationFailed => "a consumer group ACL is missing",
        RDKafkaErrorCode::TransactionalIdAuthorizationFailed => {
            "Write on the transactional id (prefix `<group>-`) is missing"
        }
        RDKafkaErrorCode::ClusterAuthorizationFailed => "a cluster ACL is missing",
        RDKafkaErrorCode::SaslAuthenticationFailed | RDKafkaErrorCode::Authentication => {
            "the credentials were refused"
        }
        _ => return None,
    };
    Some(format!(
        "Kafka refused the worker: {err}; {what} (docs/security.md lists what Terminus needs)"
    ))
}

/// A client context that remembers librdkafka's error callbacks, so a failed
/// metadata request can say why it failed.
#[derive(Default)]
pub struct ErrorCapture {
    seen: Mutex<Vec<Failure>>,
}

impl ErrorCapture {
    /// The most telling failure seen: the first definitive one, else a
    /// protocol mismatch, else the first specific transient one ("connection
    /// refused" rather than "all brokers down").
    pub fn failure(&self) -> Option<Failure> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .find(|f| f.is_definitive())
            .or_else(|| seen.iter().find(|f| matches!(f, Failure::Protocol(_))))
            .or_else(|| seen.iter().find(|f| !f.is_generic()))
            .or_else(|| seen.last())
            .cloned()
    }

    /// Whether waiting longer cannot help (see [`Failure::is_definitive`]).
    pub fn is_definitive(&self) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().any(Failure::is_definitive)
            || seen
                .iter()
                .filter(|f| matches!(f, Failure::Protocol(_)))
                .count()
                >= PROTOCOL_REPEATS
    }

    fn record(&self, failure: Failure) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() < 64 {
            seen.push(failure);
        }
    }
}

impl ClientContext for ErrorCapture {
    fn error(&self, error: KafkaError, reason: &str) {
        self.record(Failure::classify(error.rdkafka_error_code(), reason));
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        // librdkafka logs each failed attempt (some only here, such as a
        // listener hanging up); the caller reports the outcome once, so they
        // are recorded and logged at debug level only.
        if fac == "FAIL" {
            self.record(Failure::classify(None, log_message));
        }
        tracing::debug!(target: "librdkafka", ?level, fac, "{log_message}");
    }
}

impl ConsumerContext for ErrorCapture {}

/// A connected client and the cluster metadata it fetched.
pub struct Connection {
    pub consumer: BaseConsumer<ErrorCapture>,
    pub metadata: Metadata,
}

/// Why [`connect`] gave up.
#[derive(Debug)]
pub enum ConnectError {
    /// The client could not even be created (a bad property value).
    Client(KafkaError),
    /// The broker could not be talked to, for this reason.
    Failed(Failure),
}

/// Connects with `settings` and fetches cluster metadata, waiting at most
/// `timeout` for the broker but returning at once on a definitive failure
/// (authentication, TLS, protocol mismatch).
///
/// # Errors
/// [`ConnectError`] with the cause.
pub fn connect(settings: &KafkaSettings, timeout: Duration) -> Result<Connection, ConnectError> {
    // No group.id: this client only fetches metadata and describes topics.
    let consumer: BaseConsumer<ErrorCapture> = settings
        .client_config()
        .create_with_context(ErrorCapture::default())
        .map_err(ConnectError::Client)?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = left.min(Duration::from_millis(500));
        let result = consumer.fetch_metadata(None, attempt);
        // Serve the error callbacks (and drain what they queued).
        while let Some(event) = consumer.poll(Duration::ZERO) {
            if let Err(e) = event {
                let code = e.rdkafka_error_code();
                consumer
                    .context()
                    .record(Failure::classify(code, &e.to_string()));
            }
        }
        match result {
            Ok(metadata) if !metadata.brokers().is_empty() => {
                return Ok(Connection { consumer, metadata });
            }
            Ok(_) => {}
            Err(e) => {
                if consumer.context().is_definitive()
                    && let Some(failure) = consumer.context().failure()
                {
                    return Err(ConnectError::Failed(failure));
                }
                if Instant::now() >= deadline {
                    let failure = consumer
                        .context()
                        .failure()
                        .unwrap_or_else(|| Failure::Unreachable(e.to_string()));
                    return Err(ConnectError::Failed(failure));
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(ConnectError::Failed(Failure::Unreachable(
                "the metadata named no brokers".into(),
            )));
        }
    }
}

/// An ACL operation, as Kafka names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Read,
    Write,
    Describe,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Read => "Read",
            Operation::Write => "Write",
            Operation::Describe => "Describe",
        })
    }
}

impl Operation {
    fn native(self) -> u32 {
        match self {
            Operation::Read => rdsys::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_READ as u32,
            Operation::Write => rdsys::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_WRITE as u32,
            Operation::Describe => {
                rdsys::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_DESCRIBE as u32
            }
        }
    }
}

/// What the broker says the client may do with one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub name: String,
    /// The resource's own error (for example TopicAuthorizationFailed).
    pub error: Option<RDKafkaErrorCode>,
    /// The authorized operations (librdkafka's numeric codes), or `None` when
    /// the broker did not say.
    operations: Option<Vec<u32>>,
    /// A consumer group's members now (none for a topic): described by
    /// `ConsumerGroupDescribe` for a KIP-848 group, whose members the
    /// classic `DescribeGroups` does not show.
    pub members: Vec<GroupMember>,
}

/// One member of a consumer group, as the broker describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMember {
    pub client_id: String,
    /// Its `group.instance.id` (static membership), if any.
    pub instance_id: Option<String>,
}

impl Access {
    /// Whether `op` is allowed; `None` when the broker did not say. ALL
    /// implies every operation.
    pub fn allows(&self, op: Operation) -> Option<bool> {
        let all = rdsys::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_ALL as u32;
        self.operations
            .as_ref()
            .map(|ops| ops.iter().any(|o| *o == op.native() || *o == all))
    }
}

/// The authorized operations of each topic (KIP-430), through librdkafka's
/// `DescribeTopics` with `include_authorized_operations`.
///
/// # Errors
/// A description of the request's failure (timeout, broker error).
pub fn topic_access<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<Access>, String> {
    describe(consumer, Kind::Topics, topics, timeout)
}

/// The authorized operations on consumer groups, through librdkafka's
/// `DescribeConsumerGroups`. Kafka answers for a group that does not exist yet
/// too (its state is Dead), so a new deployment is checked as well.
///
/// # Errors
/// A description of the request's failure (timeout, broker error).
pub fn group_access<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    groups: &[&str],
    timeout: Duration,
) -> Result<Vec<Access>, String> {
    describe(consumer, Kind::Groups, groups, timeout)
}

#[derive(Clone, Copy)]
enum Kind {
    Topics,
    Groups,
}

/// Owns the native objects of one admin request and frees them on every path.
struct Native {
    options: *mut rdsys::rd_kafka_AdminOptions_t,
    queue: *mut rdsys::rd_kafka_queue_t,
    collection: *mut rdsys::rd_kafka_TopicCollection_t,
    event: *mut rdsys::rd_kafka_event_t,
}

impl Drop for Native {
    fn drop(&mut self) {
        // SAFETY: each pointer is null or was returned by the matching
        // librdkafka constructor and is destroyed exactly once, here.
        unsafe {
            if !self.event.is_null() {
                rdsys::rd_kafka_event_destroy(self.event);
            }
            if !self.collection.is_null() {
                rdsys::rd_kafka_TopicCollection_destroy(self.collection);
            }
            if !self.options.is_null() {
                rdsys::rd_kafka_AdminOptions_destroy(self.options);
            }
            if !self.queue.is_null() {
                rdsys::rd_kafka_queue_destroy(self.queue);
            }
        }
    }
}

fn describe<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    kind: Kind,
    names: &[&str],
    timeout: Duration,
) -> Result<Vec<Access>, String> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let c_names: Vec<CString> = names
        .iter()
        .map(|n| CString::new(*n).map_err(|_| format!("name `{n}` contains a NUL byte")))
        .collect::<Result<_, _>>()?;
    let mut pointers: Vec<*const c_char> = c_names.iter().map(|n| n.as_ptr()).collect();
    let rk = consumer.client().native_ptr();
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let op = match kind {
        Kind::Topics => rdsys::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        Kind::Groups => rdsys::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS,
    };
    // SAFETY: `rk` is the live handle of `consumer`, borrowed for this call;
    // every object created here is owned by `native` and freed on return; the
    // name strings outlive the request (librdkafka copies them anyway); result
    // pointers are read only while the event that owns them is alive.
    unsafe {
        let mut native = Native {
            options: rdsys::rd_kafka_AdminOptions_new(rk, op),
            queue: rdsys::rd_kafka_queue_new(rk),
            collection: std::ptr::null_mut(),
            event: std::ptr::null_mut(),
        };
        if native.options.is_null() || native.queue.is_null() {
            return Err("librdkafka could not create the admin request".into());
        }
        let mut errstr = [0 as c_char; 256];
        rdsys::rd_kafka_AdminOptions_set_request_timeout(
            native.options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let error =
            rdsys::rd_kafka_AdminOptions_set_include_authorized_operations(native.options, 1);
        if !error.is_null() {
            let text = cstr(rdsys::rd_kafka_error_string(error));
            rdsys::rd_kafka_error_destroy(error);
            return Err(text);
        }
        match kind {
            Kind::Topics => {
                native.collection = rdsys::rd_kafka_TopicCollection_of_topic_names(
                    pointers.as_mut_ptr(),
                    pointers.len(),
                );
                rdsys::rd_kafka_DescribeTopics(rk, native.collection, native.options, native.queue);
            }
            Kind::Groups => {
                rdsys::rd_kafka_DescribeConsumerGroups(
                    rk,
                    pointers.as_mut_ptr(),
                    pointers.len(),
                    native.options,
                    native.queue,
                );
            }
        }
        native.event = rdsys::rd_kafka_queue_poll(native.queue, timeout_ms.saturating_add(2000));
        if native.event.is_null() {
            return Err(format!(
                "no answer within {} ms",
                timeout_ms.saturating_add(2000)
            ));
        }
        let err = rdsys::rd_kafka_event_error(native.event);
        if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(format!(
                "{} ({})",
                cstr(rdsys::rd_kafka_event_error_string(native.event)),
                RDKafkaErrorCode::from(err)
            ));
        }
        let mut out = Vec::new();
        match kind {
            Kind::Topics => {
                let result = rdsys::rd_kafka_event_DescribeTopics_result(native.event);
                if result.is_null() {
                    return Err("unexpected admin result".into());
                }
                let mut count = 0usize;
                let items = rdsys::rd_kafka_DescribeTopics_result_topics(result, &mut count);
                for i in 0..count {
                    let item = *items.add(i);
                    let mut n = 0usize;
                    let ops = rdsys::rd_kafka_TopicDescription_authorized_operations(item, &mut n);
                    out.push(Access {
                        name: cstr(rdsys::rd_kafka_TopicDescription_name(item)),
                        error: error_code(rdsys::rd_kafka_TopicDescription_error(item)),
                        operations: operations(ops, n),
                        members: Vec::new(),
                    });
                }
            }
            Kind::Groups => {
                let result = rdsys::rd_kafka_event_DescribeConsumerGroups_result(native.event);
                if result.is_null() {
                    return Err("unexpected admin result".into());
                }
                let mut count = 0usize;
                let items =
                    rdsys::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut count);
                for i in 0..count {
                    let item = *items.add(i);
                    let mut n = 0usize;
                    let ops = rdsys::rd_kafka_ConsumerGroupDescription_authorized_operations(
                        item, &mut n,
                    );
                    out.push(Access {
                        name: cstr(rdsys::rd_kafka_ConsumerGroupDescription_group_id(item)),
                        error: error_code(rdsys::rd_kafka_ConsumerGroupDescription_error(item)),
                        operations: operations(ops, n),
                        members: (0..rdsys::rd_kafka_ConsumerGroupDescription_member_count(item))
                            .map(|m| {
                                let member =
                                    rdsys::rd_kafka_ConsumerGroupDescription_member(item, m);
                                let instance =
                                    rdsys::rd_kafka_MemberDescription_group_instance_id(member);
                                GroupMember {
                                    client_id: cstr(rdsys::rd_kafka_MemberDescription_client_id(
                                        member,
                                    )),
                                    instance_id: (!instance.is_null()).then(|| cstr(instance)),
                                }
                            })
                            .collect(),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// # Safety
/// `p` is null or a NUL-terminated string that lives for this call.
unsafe fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: per this function's contract.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// # Safety
/// `error` is null or a live `rd_kafka_error_t`.
unsafe fn error_code(error: *const rdsys::rd_kafka_error_t) -> Option<RDKafkaErrorCode> {
    if error.is_null() {
        return None;
    }
    // SAFETY: per this function's contract.
    let code = unsafe { rdsys::rd_kafka_error_code(error) };
    (code != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
        .then(|| RDKafkaErrorCode::from(code))
}

/// # Safety
/// `ops` is null or points at `n` operation codes that live for this call.
unsafe fn operations(ops: *const rdsys::rd_kafka_AclOperation_t, n: usize) -> Option<Vec<u32>> {
    if ops.is_null() || n == 0 {
        return None;
    }
    // Read as plain integers: a code newer than these bindings must not be
    // materialised as an out-of-range Rust enum.
    // SAFETY: per this function's contract; the enum is repr(u32).
    let raw = unsafe { std::slice::from_raw_parts(ops.cast::<u32>(), n) };
    Some(raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_sorted_by_cause() {
        let auth = Failure::classify(
            Some(RDKafkaErrorCode::Authentication),
            "sasl_ssl://127.0.0.1:9094/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
        );
        assert!(matches!(auth, Failure::Authentication(_)));
        let tls = Failure::classify(
            Some(RDKafkaErrorCode::SSL),
            "ssl://127.0.0.1:9094/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed",
        );
        assert!(matches!(tls, Failure::Tls(_)));
        let protocol = Failure::classify(
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            "Disconnected while requesting ApiVersion: might be caused by incorrect security.protocol configuration (connecting to a SSL listener?)",
        );
        assert!(matches!(protocol, Failure::Protocol(_)));
        let down = Failure::classify(
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            "Connect to ipv4#127.0.0.1:1 failed: Connection refused",
        );
        assert_eq!(
            down,
            Failure::Unreachable("Connect to ipv4#127.0.0.1:1 failed: Connection refused".into())
        );
        assert!(auth.is_definitive() && tls.is_definitive());
        assert!(!protocol.is_definitive() && !down.is_definitive());
        let hangup = Failure::classify(
            None,
            "127.0.0.1:9094/bootstrap: Disconnected: connection closed by peer: receive 0 after POLLIN (after 3ms in state APIVERSION_QUERY)",
        );
        assert!(matches!(hangup, Failure::Protocol(_)));
        let tls_on_plaintext = Failure::classify(
            Some(RDKafkaErrorCode::SSL),
            "sasl_ssl://127.0.0.1:9092/bootstrap: SSL handshake failed: Disconnected: SSL connection closed by peer: connecting to a PLAINTEXT broker listener? (after 15ms in state SSL_HANDSHAKE)",
        );
        assert!(matches!(tls_on_plaintext, Failure::Protocol(_)));
    }

    #[test]
    fn a_definitive_failure_wins_over_later_transient_ones() {
        let capture = ErrorCapture::default();
        capture.record(Failure::Unreachable("refused".into()));
        capture.record(Failure::Authentication("bad password".into()));
        capture.record(Failure::Unreachable("all brokers down".into()));
        assert_eq!(
            capture.failure(),
            Some(Failure::Authentication("bad password".into()))
        );
        assert!(capture.is_definitive());
    }

    #[test]
    fn a_repeated_hang_up_is_a_protocol_mismatch_and_refusals_beat_generic_errors() {
        let capture = ErrorCapture::default();
        capture.record(Failure::Unreachable("AllBrokersDown".into()));
        capture.record(Failure::Unreachable("Connection refused".into()));
        assert_eq!(
            capture.failure(),
            Some(Failure::Unreachable("Connection refused".into()))
        );
        for _ in 0..PROTOCOL_REPEATS {
            assert!(!capture.is_definitive());
            capture.record(Failure::Protocol("hung up".into()));
        }
        assert!(capture.is_definitive());
        assert_eq!(capture.failure(), Some(Failure::Protocol("hung up".into())));
    }

    #[test]
    fn authorization_errors_are_recognised_and_others_are_not() {
        let group = KafkaError::MessageConsumption(RDKafkaErrorCode::GroupAuthorizationFailed);
        let text = authorization_failure(&group).expect("an authorization failure");
        assert!(text.contains("consumer group ACL"), "{text}");
        let fetch = KafkaError::MessageConsumption(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert!(authorization_failure(&fetch).is_some());
        let eof = KafkaError::PartitionEOF(3);
        assert_eq!(authorization_failure(&eof), None);
        let transient = KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure);
        assert_eq!(authorization_failure(&transient), None);
    }

    #[test]
    fn access_reads_the_operation_codes() {
        let read = Operation::Read.native();
        let describe = Operation::Describe.native();
        let access = Access {
            name: "t".into(),
            error: None,
            operations: Some(vec![read, describe]),
            members: Vec::new(),
        };
        assert_eq!(access.allows(Operation::Read), Some(true));
        assert_eq!(access.allows(Operation::Write), Some(false));
        let unknown = Access {
            name: "t".into(),
            error: None,
            operations: None,
            members: Vec::new(),
        };
        assert_eq!(unknown.allows(Operation::Write), None);
    }
}
