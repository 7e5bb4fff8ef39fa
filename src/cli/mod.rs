//! Command-line parsing: flags (each also an environment variable) turned into
//! plain option structs. No behaviour lives here.

use crate::domain::{Policy, Rule};
use crate::kafka::KafkaSettings;
use crate::kafka::topics::TopicNames;
use crate::time::Period;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "terminus",
    version,
    about = "Terminate Customer Relationship (eTOM 1.3.4.4) as an exactly-once Kafka worker"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the domain core over a file of events (JSON lines), with no Kafka.
    Simulate(SimulateArgs),
    /// Run the exactly-once Kafka worker.
    Run(Box<RunArgs>),
    /// Publish JSON-lines envelopes (FILE or stdin) to their input topics,
    /// keyed by customer id.
    Produce {
        #[command(flatten)]
        connection: ConnectionArgs,
        file: Option<PathBuf>,
    },
    /// Manage Terminus's topics.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Work with policy files (see `--policy`).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate a policy file and show, for sample inputs (or the triggers of a
    /// JSON-lines file of envelopes), which rule each gets and its dates.
    /// Exits non-zero when the file is invalid.
    Check(PolicyCheckArgs),
}

#[derive(Args, Debug)]
pub struct PolicyCheckArgs {
    /// The policy file (TOML).
    pub file: PathBuf,
    /// JSON-lines envelopes whose termination triggers to show instead of the
    /// built-in sample (each declared market × segment × trigger, and none).
    #[arg(long, value_name = "FILE.jsonl")]
    pub events: Option<PathBuf>,
    /// The event time of the built-in sample inputs (RFC 3339).
    #[arg(long, value_parser = parse_time, default_value = "2028-02-29T12:00:00Z")]
    pub at: crate::time::Timestamp,
}

#[derive(Subcommand, Debug)]
pub enum TopicsCommand {
    /// Create every topic Terminus reads and writes (existing ones are kept):
    /// inputs, outputs and dead-letter topic, and the compacted changelog.
    Create(TopicsCreateArgs),
    /// Check that the topics exist and are co-partitioned, as `run` does at start.
    Check(ConnectionArgs),
}

#[derive(Args, Debug)]
pub struct TopicsCreateArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Partitions of every topic (inputs and changelog must stay equal).
    #[arg(long, env = "TERMINUS_PARTITIONS", default_value_t = 6)]
    pub partitions: i32,
    /// Replication factor; -1 takes the broker's default.
    #[arg(long, env = "TERMINUS_REPLICATION_FACTOR", default_value_t = -1, allow_hyphen_values = true)]
    pub replication_factor: i32,
}

/// How to reach Kafka, and the topic names.
#[derive(Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_servers: String,
    /// Extra librdkafka property, `key=value` (repeatable). Every `KAFKA_*`
    /// environment variable is also passed on (`KAFKA_SECURITY_PROTOCOL` →
    /// `security.protocol`); put secrets there, not in flags.
    #[arg(long = "kafka", value_name = "KEY=VALUE", value_parser = parse_kafka_property)]
    pub kafka_properties: Vec<(String, String)>,
    #[arg(
        long,
        env = "TERMINUS_TOPIC_LIFECYCLE",
        default_value = "crm.customer.lifecycle.v1"
    )]
    pub lifecycle_topic: String,
    #[arg(
        long,
        env = "TERMINUS_TOPIC_DECISIONS",
        default_value = "crm.business.decisions.v1"
    )]
    pub decisions_topic: String,
    #[arg(
        long,
        env = "TERMINUS_TOPIC_OUTCOMES",
        default_value = "crm.dismantle.outcomes.v1"
    )]
    pub outcomes_topic: String,
    #[arg(
        long,
        env = "TERMINUS_TOPIC_STATUS",
        default_value = "crm.termination.status.v1"
    )]
    pub status_topic: String,
    #[arg(
        long,
        env = "TERMINUS_TOPIC_DISMANTLE",
        default_value = "crm.solution.dismantle.v1"
    )]
    pub dismantle_topic: String,
    #[arg(
        long,
        env = "TERMINUS_TOPIC_TERMINATED",
        default_value = "crm.relationship.terminated.v1"
    )]
    pub terminated_topic: String,
    #[arg(
        long,
        env = "TERMINUS_TOPIC_DLQ",
        default_value = "crm.termination.dlq.v1"
    )]
    pub dead_letter_topic: String,
    #[arg(
        long,
        env = "TERMINUS_TOPIC_CHANGELOG",
        default_value = "terminus.state.changelog"
    )]
    pub changelog_topic: String,
}

impl ConnectionArgs {
    /// Connection settings: flags first, then `KAFKA_*` variables from `env`.
    /// Returns the names of `KAFKA_*` variables that are not librdkafka properties.
    pub fn kafka_settings(
        &self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(KafkaSettings, Vec<String>), crate::kafka::PropertyError> {
        let (mut properties, ignored) = crate::kafka::try_properties_from_env(env)?;
        for (k, v) in &self.kafka_properties {
            properties.retain(|(key, _)| key != k);
            properties.push((k.clone(), v.clone()));
        }
        Ok((
            KafkaSettings {
                bootstrap_servers: self.bootstrap_servers.clone(),
                properties,
            },
            ignored,
        ))
    }

    pub fn topic_names(&self) -> TopicNames {
        TopicNames {
            lifecycle: self.lifecycle_topic.clone(),
            decisions: self.decisions_topic.clone(),
            outcomes: self.outcomes_topic.clone(),
            status: self.status_topic.clone(),
            dismantle: self.dismantle_topic.clone(),
            terminated: self.terminated_topic.clone(),
            dead_letter: self.dead_letter_topic.clone(),
            changelog: self.changelog_topic.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Consumer group id.
    #[arg(long, env = "TERMINUS_GROUP_ID", default_value = "terminus")]
    pub group_id: String,
    /// Stable id of this instance (for example the pod name); the transactional
    /// id is `<group>-<instance>`. Defaults to the host name.
    #[arg(long, env = "TERMINUS_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Longest time a transaction stays open.
    #[arg(long, env = "TERMINUS_COMMIT_INTERVAL", default_value = "100ms", value_parser = parse_duration)]
    pub commit_interval: Duration,
    /// Most input records per transaction.
    #[arg(long, env = "TERMINUS_BATCH_SIZE", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: u32,
    /// Most records one transaction writes: outputs, dead letters and
    /// changelog records together.
    #[arg(long, env = "TERMINUS_MAX_TRANSACTION_RECORDS", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(10..=1_000_000))]
    pub max_transaction_records: u32,
    /// Most bytes one transaction writes (keys, values and headers).
    #[arg(long, env = "TERMINUS_MAX_TRANSACTION_BYTES", default_value_t = 32 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1_048_576..=1_073_741_824))]
    pub max_transaction_bytes: u64,
    /// Most customers whose due timers fire in one transaction; the rest fire
    /// in the following ones, earliest first, between input records.
    #[arg(long, env = "TERMINUS_TIMERS_PER_TRANSACTION", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub timers_per_transaction: u32,
    /// Input records larger than this many bytes go to the dead-letter topic.
    #[arg(long, env = "TERMINUS_MAX_RECORD_BYTES", default_value_t = 1_048_576)]
    pub max_record_bytes: usize,
    /// How far ahead of the wall clock an eventTime may be before it is refused.
    #[arg(long, env = "TERMINUS_FUTURE_TOLERANCE", default_value = "5m", value_parser = parse_duration)]
    pub future_tolerance: Duration,
    /// How often due timers are looked for.
    #[arg(long, env = "TERMINUS_TIMER_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub timer_interval: Duration,
    /// transaction.timeout.ms of the producer.
    #[arg(long, env = "TERMINUS_TRANSACTION_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub transaction_timeout: Duration,
    /// Consumer session timeout: how long a vanished instance keeps its
    /// partitions before the group moves them (the broker allows 6s to 30min
    /// by default).
    #[arg(long, env = "TERMINUS_SESSION_TIMEOUT", default_value = "45s", value_parser = parse_duration)]
    pub session_timeout: Duration,
    /// Static group membership (group.instance.id = instance id): restarts
    /// keep their partitions without a rebalance, but a stopped instance does
    /// not leave the group on SIGTERM (its partitions move after the session
    /// timeout). Off by default: SIGTERM leaves the group.
    #[arg(long, env = "TERMINUS_STATIC_MEMBERSHIP", default_value_t = false, action = clap::ArgAction::Set)]
    pub static_membership: bool,
    /// Wire format of the outputs: json, avro-confluent (needs
    /// --schema-registry-url) or avro-single-object. Inputs in any of them are
    /// recognised per record.
    #[arg(long, env = "TERMINUS_OUTPUT_FORMAT", default_value = "json")]
    pub output_format: crate::codec::WireFormat,
    /// Confluent-compatible schema registry URL (for avro-confluent in or out).
    #[arg(long, env = "TERMINUS_SCHEMA_REGISTRY_URL")]
    pub schema_registry_url: Option<String>,
    /// Schema registry basic-auth user; the password is read from
    /// TERMINUS_SCHEMA_REGISTRY_PASSWORD (never a flag).
    #[arg(long, env = "TERMINUS_SCHEMA_REGISTRY_USER")]
    pub schema_registry_user: Option<String>,
    /// Address of the admin HTTP server (health, readiness, metrics, queries).
    /// Keep it on loopback or a private network: it serves customer state.
    #[arg(long, env = "TERMINUS_ADMIN_ADDR", default_value = "127.0.0.1:8686")]
    pub admin_addr: std::net::SocketAddr,
    /// Log format: json (default) or text.
    #[arg(long, env = "TERMINUS_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

fn parse_kafka_property(text: &str) -> Result<(String, String), String> {
    crate::kafka::parse_property_flag(text).map_err(|e| e.to_string())
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// After the last event, advance the logical clock to this time (RFC 3339)
    /// and fire the timers due by then.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<crate::time::Timestamp>,
    /// Input file of JSON-lines envelopes; standard input when absent or `-`.
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// The rules' durations and limits (see docs/state-machine.md). The rule flags
/// set the default rule; `--policy` loads a file of rules instead, and giving
/// both is refused.
#[derive(Args, Debug, Clone)]
pub struct PolicyArgs {
    /// Policy file (TOML): a default rule and rules per market and segment.
    /// Excludes the rule flags below.
    #[arg(long, env = "TERMINUS_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Minimum notice for a customer's own termination request.
    #[arg(long, env = "TERMINUS_CUSTOMER_NOTICE", default_value = "14d", value_parser = parse_period, conflicts_with = "policy")]
    pub customer_notice: Period,
    /// Notice for an enterprise termination decision.
    #[arg(long, env = "TERMINUS_ENTERPRISE_NOTICE", default_value = "30d", value_parser = parse_period, conflicts_with = "policy")]
    pub enterprise_notice: Period,
    /// Delay before a death, dissolution or confirmed fraud takes effect.
    #[arg(long, env = "TERMINUS_IMMEDIATE_NOTICE", default_value = "0s", value_parser = parse_period, conflicts_with = "policy")]
    pub immediate_notice: Period,
    /// Time the verticals have to confirm dismantling before TerminationStalled.
    #[arg(long, env = "TERMINUS_DISMANTLE_DEADLINE", default_value = "72h", value_parser = parse_period, conflicts_with = "policy")]
    pub dismantle_deadline: Period,
    /// Dismantle instructions per vertical, the first included.
    #[arg(long, env = "TERMINUS_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100), conflicts_with = "policy")]
    pub max_attempts: u32,
    /// Retention of a terminated relationship's records (7 calendar years).
    #[arg(long, env = "TERMINUS_RETENTION", default_value = "P7Y", value_parser = parse_period, conflicts_with = "policy")]
    pub retention: Period,
    /// Retention when the customer asked for erasure (never applied to fraud).
    #[arg(long, env = "TERMINUS_ERASURE_RETENTION", default_value = "180d", value_parser = parse_period, conflicts_with = "policy")]
    pub erasure_retention: Period,
    /// How long an anonymised customer's id-only marker is kept before it is forgotten.
    #[arg(long, env = "TERMINUS_FORGET_AFTER", default_value = "30d", value_parser = parse_period, conflicts_with = "policy")]
    pub forget_after: Period,
    /// Require evidence/case/approval references on service-provider terminations.
    #[arg(long, env = "TERMINUS_REQUIRE_EVIDENCE", default_value_t = true, action = clap::ArgAction::Set, conflicts_with = "policy")]
    pub require_evidence: bool,
    /// Recent event ids remembered per customer for deduplication.
    #[arg(long, env = "TERMINUS_DEDUP_WINDOW", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub dedup_window: u32,
    /// The `source` field of every output envelope.
    #[arg(long, env = "TERMINUS_SOURCE", default_value = "terminus")]
    pub source: String,
}

impl PolicyArgs {
    /// The policy of the flags alone: their values make the default rule.
    pub fn to_policy(&self) -> Policy {
        let mut policy = Policy::with_default(Rule {
            customer_notice: self.customer_notice,
            enterprise_notice: self.enterprise_notice,
            immediate_notice: self.immediate_notice,
            dismantle_deadline: self.dismantle_deadline,
            max_attempts: self.max_attempts,
            retention: self.retention,
            erasure_retention: self.erasure_retention,
            forget_after: self.forget_after,
            require_evidence: self.require_evidence,
            ..Rule::default()
        });
        self.apply_settings(&mut policy);
        policy
    }

    /// The policy to run: the `--policy` file when given, else the flags.
    ///
    /// # Errors
    /// [`crate::policy_file::PolicyFileError`] when the file cannot be read or
    /// is invalid; the message names the file and the line.
    pub fn load(&self) -> Result<Policy, crate::policy_file::PolicyFileError> {
        let Some(path) = &self.policy else {
            return Ok(self.to_policy());
        };
        let mut policy = crate::policy_file::load(path)?;
        self.apply_settings(&mut policy);
        Ok(policy)
    }

    /// The settings that are not per customer come from flags either way.
    fn apply_settings(&self, policy: &mut Policy) {
        policy.dedup_window = self.dedup_window as usize;
        policy.source = self.source.clone();
    }
}

/// Durations with units: `500ms`, `30s`, `14d`, `72h`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration such as 30s, 72h or 14d ({e})"))
}

/// Policy durations: ISO 8601 periods on the calendar (`P7Y`, `P1M`, `P14D`,
/// `PT72H`) or exact units (`14d`, `72h`, `30s`).
pub fn parse_period(text: &str) -> Result<Period, String> {
    Period::parse(text).map_err(|e| e.to_string())
}

pub fn parse_time(text: &str) -> Result<crate::time::Timestamp, String> {
    crate::time::Timestamp::parse_rfc3339(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_briefs() {
        let cli = Cli::try_parse_from(["terminus", "simulate"]).unwrap();
        let Command::Simulate(args) = cli.command else {
            panic!("simulate expected");
        };
        assert_eq!(args.policy.to_policy(), Policy::default());
    }

    #[test]
    fn durations_need_units_and_report_clearly() {
        assert_eq!(
            parse_duration("14d").unwrap(),
            Duration::from_secs(14 * 86400)
        );
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        let err = parse_duration("fortnight").unwrap_err();
        assert!(err.contains("fortnight"), "{err}");
        assert_eq!(parse_period("P7Y").unwrap(), Period::years(7));
        assert_eq!(
            parse_period("14d").unwrap(),
            Period::exact(Duration::from_secs(14 * 86400))
        );
    }

    #[test]
    fn a_policy_file_excludes_the_rule_flags() {
        let both = Cli::try_parse_from([
            "terminus",
            "simulate",
            "--policy",
            "p.toml",
            "--customer-notice",
            "3d",
        ]);
        let err = both.expect_err("--policy and a rule flag together");
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        let settings = Cli::try_parse_from([
            "terminus", "simulate", "--policy", "p.toml", "--source", "x",
        ]);
        assert!(settings.is_ok(), "--source is not a rule flag");
    }
}
