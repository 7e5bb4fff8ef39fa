//! The topic layout: names by role, the co-partitioning check, and creation.

use super::KafkaSettings;
use super::preflight::{self, ConnectError, Failure, Operation};
use crate::contract::Topic;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use std::time::Duration;

/// Topic names by role; defaults are contract v1's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicNames {
    pub lifecycle: String,
    pub decisions: String,
    pub outcomes: String,
    pub status: String,
    pub dismantle: String,
    pub terminated: String,
    pub dead_letter: String,
    pub changelog: String,
}

pub const DEFAULT_CHANGELOG: &str = "terminus.state.changelog";

impl Default for TopicNames {
    fn default() -> Self {
        TopicNames {
            lifecycle: Topic::Lifecycle.default_name().into(),
            decisions: Topic::Decisions.default_name().into(),
            outcomes: Topic::Outcomes.default_name().into(),
            status: Topic::Status.default_name().into(),
            dismantle: Topic::Dismantle.default_name().into(),
            terminated: Topic::Terminated.default_name().into(),
            dead_letter: Topic::DeadLetter.default_name().into(),
            changelog: DEFAULT_CHANGELOG.into(),
        }
    }
}

impl TopicNames {
    pub fn name(&self, topic: Topic) -> &str {
        match topic {
            Topic::Lifecycle => &self.lifecycle,
            Topic::Decisions => &self.decisions,
            Topic::Outcomes => &self.outcomes,
            Topic::Status => &self.status,
            Topic::Dismantle => &self.dismantle,
            Topic::Terminated => &self.terminated,
            Topic::DeadLetter => &self.dead_letter,
        }
    }

    pub fn inputs(&self) -> [&str; 3] {
        [&self.lifecycle, &self.decisions, &self.outcomes]
    }

    /// The role of an input topic name.
    pub fn input_role(&self, name: &str) -> Option<Topic> {
        Topic::INPUTS.into_iter().find(|t| self.name(*t) == name)
    }

    /// The operations the worker needs on each of its topics: Read on the
    /// inputs, Write on the outputs and the dead-letter topic, both on the
    /// changelog (Describe is implied by either).
    pub fn required_operations(&self) -> Vec<(&str, &'static [Operation])> {
        const READ: &[Operation] = &[Operation::Read];
        const WRITE: &[Operation] = &[Operation::Write];
        const BOTH: &[Operation] = &[Operation::Read, Operation::Write];
        vec![
            (&self.lifecycle, READ),
            (&self.decisions, READ),
            (&self.outcomes, READ),
            (&self.changelog, BOTH),
            (&self.status, WRITE),
            (&self.dismantle, WRITE),
            (&self.terminated, WRITE),
            (&self.dead_letter, WRITE),
        ]
    }

    /// Every topic the worker needs, with whether it is co-partitioned with the
    /// inputs (inputs and changelog are).
    pub fn all(&self) -> Vec<(&str, bool)> {
        vec![
            (&self.lifecycle, true),
            (&self.decisions, true),
            (&self.outcomes, true),
            (&self.changelog, true),
            (&self.status, false),
            (&self.dismantle, false),
            (&self.terminated, false),
            (&self.dead_letter, false),
        ]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("cannot create a Kafka client for {bootstrap}: {source}")]
    Metadata {
        bootstrap: String,
        source: rdkafka::error::KafkaError,
    },
    #[error(
        "Kafka at {bootstrap} refused the credentials of {principal}: {detail}; check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)"
    )]
    Authentication {
        bootstrap: String,
        principal: String,
        detail: String,
    },
    #[error(
        "TLS handshake with Kafka at {bootstrap} failed: {detail}; check KAFKA_SSL_CA_LOCATION (the CA that signed the broker's certificate) and that the bootstrap host is named in that certificate"
    )]
    Tls { bootstrap: String, detail: String },
    #[error(
        "Kafka at {bootstrap} closed the connection before speaking the protocol: {detail}; check KAFKA_SECURITY_PROTOCOL against the listener (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
    )]
    Protocol { bootstrap: String, detail: String },
    #[error(
        "no working connection to Kafka at {bootstrap} within {seconds} s: {detail}; check KAFKA_BOOTSTRAP_SERVERS and KAFKA_SECURITY_PROTOCOL"
    )]
    Unreachable {
        bootstrap: String,
        seconds: u64,
        detail: String,
    },
    #[error(
        "{principal} is not authorized for what Terminus needs: {missing}; grant these ACLs (docs/security.md lists them)"
    )]
    NotAuthorized { principal: String, missing: String },
    #[error(
        "topics missing: {0}; create them with `terminus topics create` (or your platform's tooling)"
    )]
    Missing(String),
    #[error(
        "the input topics and the changelog must have the same number of partitions (co-partitioned by customer id), but they have: {0}"
    )]
    NotCoPartitioned(String),
    #[error("cannot create topics: {0}")]
    Create(String),
}

/// Partition counts of the worker's topics, as checked at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Partitions of every input topic and of the changelog.
    pub partitions: i32,
}

/// How long the start-up checks wait for an unreachable broker.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Checks that the client can connect and authenticate, that every topic
/// exists, that the principal may do what the worker does with each topic
/// (as the broker reports it), and that inputs and changelog are
/// co-partitioned.
///
/// # Errors
/// [`TopicError`] naming the cause: credentials, TLS, protocol, an
/// unreachable broker, missing ACLs, missing topics or mismatched counts.
pub fn check(settings: &KafkaSettings, names: &TopicNames) -> Result<Layout, TopicError> {
    inspect(settings, names, Acls::Check { group: None })
}

/// Only that the topics exist and are co-partitioned (and that the client can
/// connect): for right after `terminus topics create`, whose principal may
/// hold Create and Describe but not the worker's Read and Write.
///
/// # Errors
/// As [`check`], except for missing Read and Write ACLs.
pub fn check_layout(settings: &KafkaSettings, names: &TopicNames) -> Result<Layout, TopicError> {
    inspect(settings, names, Acls::Skip)
}

/// [`check`], and also that the principal may Read (join and commit as) the
/// consumer group `group`.
///
/// # Errors
/// As [`check`]; [`TopicError::NotAuthorized`] names the group too.
pub fn check_with_group(
    settings: &KafkaSettings,
    names: &TopicNames,
    group: Option<&str>,
) -> Result<Layout, TopicError> {
    inspect(settings, names, Acls::Check { group })
}

/// Whether [`inspect`] checks the worker's ACLs, and on which group.
#[derive(Clone, Copy)]
enum Acls<'a> {
    Skip,
    Check { group: Option<&'a str> },
}

fn inspect(
    settings: &KafkaSettings,
    names: &TopicNames,
    acls: Acls<'_>,
) -> Result<Layout, TopicError> {
    let bootstrap = settings.bootstrap_servers.clone();
    let principal = principal(settings);
    let connection = preflight::connect(settings, CONNECT_TIMEOUT).map_err(|e| match e {
        ConnectError::Client(source) => TopicError::Metadata {
            bootstrap: bootstrap.clone(),
            source,
        },
        ConnectError::Failed(Failure::Authentication(detail)) => TopicError::Authentication {
            bootstrap: bootstrap.clone(),
            principal: principal.clone(),
            detail,
        },
        ConnectError::Failed(Failure::Tls(detail)) => TopicError::Tls {
            bootstrap: bootstrap.clone(),
            detail,
        },
        ConnectError::Failed(Failure::Protocol(detail)) => TopicError::Protocol {
            bootstrap: bootstrap.clone(),
            detail,
        },
        ConnectError::Failed(Failure::Unreachable(detail)) => TopicError::Unreachable {
            bootstrap: bootstrap.clone(),
            seconds: CONNECT_TIMEOUT.as_secs(),
            detail,
        },
    })?;
    let metadata = &connection.metadata;
    let count = |name: &str| {
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
            .filter(|n| *n > 0)
    };
    // A topic the principal may not Describe is left out of the cluster-wide
    // metadata, as if it did not exist; asking for it by name tells which.
    let absent: Vec<&str> = names
        .all()
        .into_iter()
        .filter(|(name, _)| count(name).is_none())
        .map(|(name, _)| name)
        .collect();
    let mut missing = Vec::new();
    let mut hidden = false;
    if !absent.is_empty() {
        let access = preflight::topic_access(&connection.consumer, &absent, ACCESS_TIMEOUT)
            .unwrap_or_else(|detail| {
                cannot_check(&detail);
                Vec::new()
            });
        for name in &absent {
            match access
                .iter()
                .find(|a| a.name == *name)
                .and_then(|a| a.error)
            {
                Some(RDKafkaErrorCode::TopicAuthorizationFailed) => hidden = true,
                _ => missing.push(*name),
            }
        }
    }
    if !missing.is_empty() && !hidden {
        return Err(TopicError::Missing(missing.join(", ")));
    }
    // Every ACL that is lacking, in one message (a topic the principal cannot
    // Describe lacks all it needs; Read and Write imply Describe).
    let denied = match acls {
        Acls::Check { group } => missing_operations(&connection, names, group),
        Acls::Skip if hidden => names
            .all()
            .into_iter()
            .filter(|(name, _)| count(name).is_none() && !missing.contains(name))
            .map(|(name, _)| format!("Describe on topic {name}"))
            .collect(),
        Acls::Skip => Vec::new(),
    };
    if !denied.is_empty() {
        return Err(TopicError::NotAuthorized {
            principal,
            missing: denied.join(", "),
        });
    }
    if !missing.is_empty() {
        return Err(TopicError::Missing(missing.join(", ")));
    }
    let co: Vec<(&str, i32)> = names
        .all()
        .into_iter()
        .filter(|(_, co)| *co)
        .map(|(name, _)| (name, count(name).unwrap_or(0)))
        .collect();
    let first = co[0].1;
    if co.iter().any(|(_, n)| *n != first) {
        let listing: Vec<String> = co.iter().map(|(t, n)| format!("{t}={n}")).collect();
        return Err(TopicError::NotCoPartitioned(listing.join(", ")));
    }
    Ok(Layout { partitions: first })
}

/// How long the authorized-operations requests may take.
const ACCESS_TIMEOUT: Duration = Duration::from_secs(10);

/// A broker that cannot answer the authorized-operations requests (an old or
/// partial Kafka implementation) must not keep the worker from starting: the
/// check is skipped, and a missing ACL shows up when it is used.
fn cannot_check(detail: &str) {
    tracing::warn!(
        detail,
        "cannot read the ACLs Kafka grants this client; starting without checking them"
    );
}

/// The operations the broker says the principal lacks, as `Read on topic x`.
/// Resources the principal cannot even Describe come back with an error
/// instead of operations; they are reported as lacking everything needed.
fn missing_operations(
    connection: &preflight::Connection,
    names: &TopicNames,
    group: Option<&str>,
) -> Vec<String> {
    let required = names.required_operations();
    let topics: Vec<&str> = required.iter().map(|(t, _)| *t).collect();
    let access = preflight::topic_access(&connection.consumer, &topics, ACCESS_TIMEOUT)
        .unwrap_or_else(|detail| {
            cannot_check(&detail);
            Vec::new()
        });
    let mut out = Vec::new();
    for (topic, ops) in &required {
        let Some(a) = access.iter().find(|a| a.name == *topic) else {
            continue;
        };
        for op in *ops {
            let allowed = if a.error == Some(RDKafkaErrorCode::TopicAuthorizationFailed) {
                Some(false)
            } else {
                a.allows(*op)
            };
            if allowed == Some(false) {
                out.push(format!("{op} on topic {topic}"));
            }
        }
    }
    if let Some(group) = group {
        let access = preflight::group_access(&connection.consumer, &[group], ACCESS_TIMEOUT)
            .unwrap_or_else(|detail| {
                cannot_check(&detail);
                Vec::new()
            });
        let allowed = match access.iter().find(|a| a.name == group) {
            Some(a) if a.error == Some(RDKafkaErrorCode::GroupAuthorizationFailed) => Some(false),
            Some(a) => a.allows(Operation::Read),
            None => None,
        };
        if allowed == Some(false) {
            out.push(format!("Read on group {group}"));
        }
    }
    out
}

/// `User:<sasl.username>` when the settings name one, for messages.
fn principal(settings: &KafkaSettings) -> String {
    settings
        .properties
        .iter()
        .find(|(k, _)| k == "sasl.username")
        .map(|(_, v)| format!("User:{v}"))
        .unwrap_or_else(|| "this client".to_owned())
}

/// Creates every topic the worker needs (existing ones are left alone): inputs,
/// outputs, dead-letter topic with `partitions` partitions, and the compacted
/// changelog co-partitioned with the inputs. `replication` −1 takes the broker's
/// default.
///
/// # Errors
/// [`TopicError::Create`] with the broker's reason for each refused topic.
pub async fn create(
    settings: &KafkaSettings,
    names: &TopicNames,
    partitions: i32,
    replication: i32,
) -> Result<Vec<String>, TopicError> {
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config()
        .create()
        .map_err(|e| TopicError::Create(e.to_string()))?;
    let all = names.all();
    let new_topics: Vec<NewTopic<'_>> = all
        .iter()
        .map(|(name, _)| {
            let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
            if *name == names.changelog {
                topic
                    .set("cleanup.policy", "compact")
                    .set("min.compaction.lag.ms", "0")
            } else {
                topic
            }
        })
        .collect();
    let results = admin
        .create_topics(
            &new_topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .map_err(|e| TopicError::Create(e.to_string()))?;
    let mut created = Vec::new();
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => failures.push(format!("{name}: {code}")),
        }
    }
    if !failures.is_empty() {
        return Err(TopicError::Create(failures.join("; ")));
    }
    wait_visible(settings, &created, Duration::from_secs(30))?;
    Ok(created)
}

/// Waits until the broker's metadata shows every topic in `names`: a created
/// topic reaches the metadata a moment after CreateTopics returns, and a
/// check right after creation must not call it missing.
fn wait_visible(
    settings: &KafkaSettings,
    names: &[String],
    timeout: Duration,
) -> Result<(), TopicError> {
    if names.is_empty() {
        return Ok(());
    }
    let consumer: BaseConsumer = settings
        .client_config()
        .create()
        .map_err(|e| TopicError::Create(e.to_string()))?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let pending: Vec<&str> = match consumer.fetch_metadata(None, Duration::from_secs(5)) {
            Ok(metadata) => names
                .iter()
                .map(String::as_str)
                .filter(|name| {
                    !metadata.topics().iter().any(|t| {
                        t.name() == *name && t.error().is_none() && !t.partitions().is_empty()
                    })
                })
                .collect(),
            Err(_) => names.iter().map(String::as_str).collect(),
        };
        if pending.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(TopicError::Create(format!(
                "created, but not in the broker's metadata after {} s: {}",
                timeout.as_secs(),
                pending.join(", ")
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
