//! The topic layout: names by role, the co-partitioning check, and creation.

use super::KafkaSettings;
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
    #[error("cannot reach Kafka at {bootstrap} to read topic metadata: {source}")]
    Metadata {
        bootstrap: String,
        source: rdkafka::error::KafkaError,
    },
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

/// Checks that every topic exists and that inputs and changelog are
/// co-partitioned.
///
/// # Errors
/// [`TopicError`] naming the missing topics or the mismatched counts.
pub fn check(settings: &KafkaSettings, names: &TopicNames) -> Result<Layout, TopicError> {
    let consumer: BaseConsumer =
        settings
            .client_config()
            .create()
            .map_err(|source| TopicError::Metadata {
                bootstrap: settings.bootstrap_servers.clone(),
                source,
            })?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(15))
        .map_err(|source| TopicError::Metadata {
            bootstrap: settings.bootstrap_servers.clone(),
            source,
        })?;
    let count = |name: &str| {
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
            .filter(|n| *n > 0)
    };
    let missing: Vec<&str> = names
        .all()
        .into_iter()
        .filter(|(name, _)| count(name).is_none())
        .map(|(name, _)| name)
        .collect();
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
    if failures.is_empty() {
        Ok(created)
    } else {
        Err(TopicError::Create(failures.join("; ")))
    }
}
