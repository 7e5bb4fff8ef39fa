//! Command-line parsing: flags (each also an environment variable) turned into
//! plain option structs. No behaviour lives here.
//!
//! **Every default is defined once, here**, in the clap arguments:
//! [`RunArgs::defaults`] and [`PolicyArgs::defaults`] parse an empty command
//! line with the environment ignored, and `Policy::default()` and
//! `WorkerOptions::new` are built from them; `TryFrom<&RunArgs>` turns the
//! parsed flags into `WorkerOptions`. Topic names come from the contract
//! (`Topic::default_name`, `DEFAULT_CHANGELOG`).

use crate::contract::Topic;
use crate::domain::{Policy, Rule};
use crate::kafka::KafkaSettings;
use crate::kafka::topics::{DEFAULT_CHANGELOG, TopicNames};
use crate::time::Period;
use crate::worker::{
    GroupProtocol, RegistrySettings, StateFormat, StoreKind, WarmUp, WorkerOptions,
};
use clap::{Args, FromArgMatches, Parser, Subcommand};
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
    /// Show one customer's state in human terms (or --json): asks the group's
    /// admin servers which instance owns the customer, or reads the changelog
    /// with --from-changelog when no worker runs.
    Inspect(InspectArgs),
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

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The customer id (the Kafka key of its events).
    pub customer_id: String,
    /// Admin servers of the group's instances to ask, comma-separated
    /// (host:port); the one that owns the customer's partition answers.
    #[arg(
        long = "admin-addrs",
        alias = "admin-addr",
        env = "TERMINUS_INSPECT_ADMIN_ADDRS",
        value_delimiter = ',',
        default_value = DEFAULT_ADMIN_ADDR
    )]
    pub admin_addrs: Vec<String>,
    /// Read the state from the changelog topic instead (no worker needed):
    /// the customer's partition is read to its end, read_committed.
    #[arg(long)]
    pub from_changelog: bool,
    /// Print the same as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
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
        default_value = "127.0.0.1:9092",
        help_heading = "Kafka"
    )]
    pub bootstrap_servers: String,
    /// Extra librdkafka property, `key=value` (repeatable). Every `KAFKA_*`
    /// environment variable is also passed on (`KAFKA_SECURITY_PROTOCOL` →
    /// `security.protocol`); put secrets there, not in flags.
    #[arg(long = "kafka", value_name = "KEY=VALUE", value_parser = parse_kafka_property, help_heading = "Kafka")]
    pub kafka_properties: Vec<(String, String)>,
    /// Input topic of customer life-stage events.
    #[arg(
        long,
        env = "TERMINUS_TOPIC_LIFECYCLE",
        default_value = Topic::Lifecycle.default_name(),
        help_heading = "Topics"
    )]
    pub lifecycle_topic: String,
    /// Input topic of fraud, enterprise and legal-hold decisions.
    #[arg(
        long,
        env = "TERMINUS_TOPIC_DECISIONS",
        default_value = Topic::Decisions.default_name(),
        help_heading = "Topics"
    )]
    pub decisions_topic: String,
    /// Input topic of the verticals' dismantle outcomes.
    #[arg(
        long,
        env = "TERMINUS_TOPIC_OUTCOMES",
        default_value = Topic::Outcomes.default_name(),
        help_heading = "Topics"
    )]
    pub outcomes_topic: String,
    /// Output topic of termination status events.
    #[arg(
        long,
        env = "TERMINUS_TOPIC_STATUS",
        default_value = Topic::Status.default_name(),
        help_heading = "Topics"
    )]
    pub status_topic: String,
    /// Output topic of DismantleSolution instructions.
    #[arg(
        long,
        env = "TERMINUS_TOPIC_DISMANTLE",
        default_value = Topic::Dismantle.default_name(),
        help_heading = "Topics"
    )]
    pub dismantle_topic: String,
    /// Output topic of RelationshipTerminated.
    #[arg(
        long,
        env = "TERMINUS_TOPIC_TERMINATED",
        default_value = Topic::Terminated.default_name(),
        help_heading = "Topics"
    )]
    pub terminated_topic: String,
    /// Dead-letter topic.
    #[arg(
        long,
        env = "TERMINUS_TOPIC_DLQ",
        default_value = Topic::DeadLetter.default_name(),
        help_heading = "Topics"
    )]
    pub dead_letter_topic: String,
    /// Compacted changelog of the customers' state (co-partitioned with the inputs).
    #[arg(
        long,
        env = "TERMINUS_TOPIC_CHANGELOG",
        default_value = DEFAULT_CHANGELOG,
        help_heading = "Topics"
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
    #[arg(
        long,
        env = "TERMINUS_GROUP_ID",
        default_value = "terminus",
        help_heading = "Kafka"
    )]
    pub group_id: String,
    /// Stable id of this instance (for example the pod name); the transactional
    /// id is `<group>-<instance>`. Defaults to the host name.
    #[arg(long, env = "TERMINUS_INSTANCE_ID", help_heading = "Kafka")]
    pub instance_id: Option<String>,
    /// Longest time a transaction stays open.
    #[arg(long, env = "TERMINUS_COMMIT_INTERVAL", default_value = "100ms", value_parser = parse_duration, help_heading = "Kafka")]
    pub commit_interval: Duration,
    /// When the input is drained, a transaction commits once it is this old
    /// instead of waiting for --commit-interval: lower latency at light load,
    /// the same large batches under a backlog (set it to --commit-interval to
    /// commit on the interval only).
    #[arg(long, env = "TERMINUS_MIN_COMMIT_INTERVAL", default_value = "30ms", value_parser = parse_duration, help_heading = "Kafka")]
    pub min_commit_interval: Duration,
    /// Most input records per transaction.
    #[arg(long, env = "TERMINUS_BATCH_SIZE", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000), help_heading = "Kafka")]
    pub batch_size: u32,
    /// Most records one transaction writes: outputs, dead letters and
    /// changelog records together.
    #[arg(long, env = "TERMINUS_MAX_TRANSACTION_RECORDS", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(10..=1_000_000), help_heading = "Kafka")]
    pub max_transaction_records: u32,
    /// Most bytes one transaction writes (keys, values and headers).
    #[arg(long, env = "TERMINUS_MAX_TRANSACTION_BYTES", default_value_t = 32 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1_048_576..=1_073_741_824), help_heading = "Kafka")]
    pub max_transaction_bytes: u64,
    /// Most customers whose due timers fire in one transaction; the rest fire
    /// in the following ones, earliest first, between input records.
    #[arg(long, env = "TERMINUS_TIMERS_PER_TRANSACTION", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000), help_heading = "Kafka")]
    pub timers_per_transaction: u32,
    /// Input records larger than this many bytes go to the dead-letter topic.
    #[arg(
        long,
        env = "TERMINUS_MAX_RECORD_BYTES",
        default_value_t = 1_048_576,
        help_heading = "Records and wire format"
    )]
    pub max_record_bytes: usize,
    /// How far ahead of the wall clock an eventTime may be before it is refused.
    #[arg(long, env = "TERMINUS_FUTURE_TOLERANCE", default_value = "5m", value_parser = parse_duration, help_heading = "Records and wire format")]
    pub future_tolerance: Duration,
    /// How often due timers are looked for.
    #[arg(long, env = "TERMINUS_TIMER_INTERVAL", default_value = "1s", value_parser = parse_duration, help_heading = "Operations")]
    pub timer_interval: Duration,
    /// transaction.timeout.ms of the producer.
    #[arg(long, env = "TERMINUS_TRANSACTION_TIMEOUT", default_value = "10s", value_parser = parse_duration, help_heading = "Kafka")]
    pub transaction_timeout: Duration,
    /// Consumer session timeout: how long a vanished instance keeps its
    /// partitions before the group moves them (the broker allows 6s to 30min
    /// by default).
    #[arg(long, env = "TERMINUS_SESSION_TIMEOUT", default_value = "45s", value_parser = parse_duration, help_heading = "Kafka")]
    pub session_timeout: Duration,
    /// Static group membership (group.instance.id = instance id): restarts
    /// keep their partitions without a rebalance, but a stopped instance does
    /// not leave the group on SIGTERM (its partitions move after the session
    /// timeout). Off by default: SIGTERM leaves the group.
    #[arg(long, env = "TERMINUS_STATIC_MEMBERSHIP", default_value_t = false, action = clap::ArgAction::Set, help_heading = "Kafka")]
    pub static_membership: bool,
    /// Consumer group protocol: `classic` (eager range assignment: every
    /// rebalance revokes every partition) or `consumer` (KIP-848, Kafka 4.x:
    /// incremental, the broker's range assignor keeps co-partitioned inputs
    /// together; partitions that stay are never revoked).
    #[arg(
        long,
        env = "TERMINUS_GROUP_PROTOCOL",
        default_value = "classic",
        help_heading = "Kafka"
    )]
    pub group_protocol: GroupProtocol,
    /// Wire format of the outputs: json, avro-confluent (needs
    /// --schema-registry-url) or avro-single-object. Inputs in any of them are
    /// recognised per record.
    #[arg(
        long,
        env = "TERMINUS_OUTPUT_FORMAT",
        default_value = "json",
        help_heading = "Records and wire format"
    )]
    pub output_format: crate::codec::WireFormat,
    /// Confluent-compatible schema registry URL (for avro-confluent in or out).
    #[arg(
        long,
        env = "TERMINUS_SCHEMA_REGISTRY_URL",
        help_heading = "Records and wire format"
    )]
    pub schema_registry_url: Option<String>,
    /// Schema registry basic-auth user; the password is read from
    /// TERMINUS_SCHEMA_REGISTRY_PASSWORD (never a flag).
    #[arg(
        long,
        env = "TERMINUS_SCHEMA_REGISTRY_USER",
        help_heading = "Records and wire format"
    )]
    pub schema_registry_user: Option<String>,
    /// Address of the admin HTTP server (health, readiness, metrics, queries).
    /// Keep it on loopback or a private network: it serves customer state.
    #[arg(
        long,
        env = "TERMINUS_ADMIN_ADDR",
        default_value = DEFAULT_ADMIN_ADDR,
        help_heading = "Operations"
    )]
    pub admin_addr: std::net::SocketAddr,
    /// Log format: json (default) or text.
    #[arg(
        long,
        env = "TERMINUS_LOG_FORMAT",
        default_value = "json",
        help_heading = "Operations"
    )]
    pub log_format: LogFormat,
    /// Longest the restore of assigned partitions from the changelog may take
    /// before the worker gives up (and exits non-zero for a restart).
    #[arg(long, env = "TERMINUS_RESTORE_TIMEOUT", default_value = "5m", value_parser = parse_duration, help_heading = "Operations")]
    pub restore_timeout: Duration,
    /// Where owned partitions' committed state lives between restarts:
    /// `disk` (an embedded store under --state-dir, a cache of the
    /// changelog: a restart reads only the changelog's tail) or `memory`
    /// (every restart reads the whole changelog).
    #[arg(
        long,
        env = "TERMINUS_STATE_STORE",
        default_value = "disk",
        help_heading = "State"
    )]
    pub state_store: StoreKind,
    /// `auto`: an instance that finds its group already running first reads
    /// the whole changelog into its disk store, outside the group, and joins
    /// only then, so that the partitions it is given resume after reading
    /// only their tail (the others keep processing meanwhile; its /readyz
    /// says so). The first member of an empty group joins at once. `off`:
    /// always join at once.
    #[arg(
        long,
        env = "TERMINUS_WARM_UP",
        default_value = "auto",
        help_heading = "State"
    )]
    pub warm_up: WarmUp,
    /// Directory of the disk store, one subdirectory per changelog
    /// partition. Give each instance its own (a persistent volume in
    /// Kubernetes); losing it costs a full restore, never data. Default:
    /// `<temp dir>/terminus-<group>-<instance>`.
    #[arg(
        long,
        env = "TERMINUS_STATE_DIR",
        value_name = "DIR",
        help_heading = "State"
    )]
    pub state_dir: Option<std::path::PathBuf>,
    /// Encoding of the changelog records written: `binary` (compact, the
    /// default) or `json` (what releases before the binary record read; use
    /// it while a rolling upgrade from them is under way). Both are read.
    #[arg(
        long,
        env = "TERMINUS_STATE_FORMAT",
        default_value = "binary",
        help_heading = "State"
    )]
    pub state_format: StateFormat,
    /// Processing tasks in this process, each with its own consumer and
    /// transactional producer and a disjoint share of the partitions, so
    /// that one task's commit overlaps another's processing. At most the
    /// input partition count. With 1 (the default) the transactional id is
    /// `<group>-<instance>`; with more, task k's is `<group>-<instance>-t<k>`.
    #[arg(long, env = "TERMINUS_TASKS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024), help_heading = "Operations")]
    pub tasks: u32,
    /// Most bytes of records the process's consumers prefetch, as librdkafka
    /// counts them (compressed): a quarter for the input consumers, the rest
    /// for the changelog restore, each split over the partitions it may
    /// read. librdkafka's own limit (`queued.max.messages.kbytes`, 64 MiB)
    /// holds per partition, so without a budget the prefetch grows with the
    /// partition count. A `--kafka queued.max.messages.kbytes=…` is kept.
    #[arg(long, env = "TERMINUS_PREFETCH_BYTES", default_value_t = 512 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(16 * 1024 * 1024..=1 << 40), help_heading = "Kafka")]
    pub prefetch_bytes: u64,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

impl RunArgs {
    /// `terminus run` with no flag and the environment ignored: every default.
    pub fn defaults() -> RunArgs {
        defaults_of(RunArgs::augment_args(clap::Command::new("run")))
    }

    /// The worker's options: these flags, then `KAFKA_*` and
    /// `TERMINUS_SCHEMA_REGISTRY_PASSWORD` from `env`. Also returns the names
    /// of `KAFKA_*` variables that are not librdkafka properties (to warn about).
    ///
    /// # Errors
    /// A malformed `KAFKA_*` variable; a registry user without
    /// `TERMINUS_SCHEMA_REGISTRY_PASSWORD`; registry credentials without a
    /// registry URL.
    pub fn worker_options(
        &self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<(WorkerOptions, Vec<String>)> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let (kafka, ignored) = self.connection.kafka_settings(env.iter().cloned())?;
        let password = env
            .iter()
            .find(|(k, _)| k == REGISTRY_PASSWORD_VAR)
            .map(|(_, v)| v.clone());
        let schema_registry = match (&self.schema_registry_url, &self.schema_registry_user) {
            (Some(_), Some(user)) if password.is_none() => anyhow::bail!(
                "schema registry user `{user}` is set (--schema-registry-user / TERMINUS_SCHEMA_REGISTRY_USER) \
                 but its password is not: set {REGISTRY_PASSWORD_VAR}"
            ),
            (None, Some(_)) => anyhow::bail!(
                "--schema-registry-user / TERMINUS_SCHEMA_REGISTRY_USER is set but no \
                 --schema-registry-url / TERMINUS_SCHEMA_REGISTRY_URL"
            ),
            (Some(url), user) => Some(RegistrySettings {
                url: url.clone(),
                user: user.clone(),
                password: user.as_ref().and(password),
            }),
            (None, None) => None,
        };
        let instance_id = self
            .instance_id
            .clone()
            .filter(|id| !id.trim().is_empty())
            .unwrap_or_else(host_name);
        let state_dir = self.state_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "terminus-{}-{}",
                sanitize(&self.group_id),
                sanitize(&instance_id)
            ))
        });
        let options = WorkerOptions {
            kafka,
            topics: self.connection.topic_names(),
            group_id: self.group_id.clone(),
            instance_id,
            commit_interval: self.commit_interval,
            min_commit_interval: self.min_commit_interval.min(self.commit_interval),
            batch_size: self.batch_size as usize,
            max_transaction_records: self.max_transaction_records as usize,
            max_transaction_bytes: usize::try_from(self.max_transaction_bytes)
                .unwrap_or(usize::MAX),
            timers_per_transaction: self.timers_per_transaction as usize,
            max_record_bytes: self.max_record_bytes,
            future_tolerance: self.future_tolerance,
            timer_interval: self.timer_interval,
            transaction_timeout: self.transaction_timeout,
            session_timeout: self.session_timeout,
            static_membership: self.static_membership,
            group_protocol: self.group_protocol,
            restore_timeout: self.restore_timeout,
            state_store: self.state_store,
            warm_up: self.warm_up,
            state_dir,
            state_format: self.state_format,
            policy: self.policy.load()?,
            output_format: self.output_format,
            schema_registry,
            tasks: self.tasks as usize,
            prefetch_bytes: self.prefetch_bytes,
        };
        Ok((options, ignored))
    }
}

/// A file-name-safe form of a group or instance id.
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Where `run` serves its admin HTTP server, and where `inspect` asks by default.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:8686";

/// The environment variable holding the schema registry's password.
pub const REGISTRY_PASSWORD_VAR: &str = "TERMINUS_SCHEMA_REGISTRY_PASSWORD";

/// The parsed flags with `KAFKA_*` and the registry password from the process
/// environment (see [`RunArgs::worker_options`]).
impl TryFrom<&RunArgs> for WorkerOptions {
    type Error = anyhow::Error;

    fn try_from(args: &RunArgs) -> anyhow::Result<WorkerOptions> {
        args.worker_options(std::env::vars())
            .map(|(options, _)| options)
    }
}

/// The default instance id: the host name (the pod name on Kubernetes), else
/// `terminus-0`.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "terminus-0".into())
}

/// Parses an empty command line of `command` with every `env` source removed.
fn defaults_of<T: FromArgMatches>(command: clap::Command) -> T {
    let matches = command
        .no_binary_name(true)
        .mut_args(|arg| arg.env(None::<&'static str>))
        .try_get_matches_from(std::iter::empty::<String>())
        .expect("the defaults parse");
    T::from_arg_matches(&matches).expect("the defaults are valid")
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
    #[arg(long, env = "TERMINUS_CUSTOMER_NOTICE", default_value = "14d", value_parser = parse_period, conflicts_with = "policy", help_heading = "Policy")]
    pub customer_notice: Period,
    /// Notice for an enterprise termination decision.
    #[arg(long, env = "TERMINUS_ENTERPRISE_NOTICE", default_value = "30d", value_parser = parse_period, conflicts_with = "policy", help_heading = "Policy")]
    pub enterprise_notice: Period,
    /// Delay before a death, dissolution or confirmed fraud takes effect.
    #[arg(long, env = "TERMINUS_IMMEDIATE_NOTICE", default_value = "0s", value_parser = parse_period, conflicts_with = "policy", help_heading = "Policy")]
    pub immediate_notice: Period,
    /// Time the verticals have to confirm dismantling before TerminationStalled.
    #[arg(long, env = "TERMINUS_DISMANTLE_DEADLINE", default_value = "72h", value_parser = parse_period, conflicts_with = "policy", help_heading = "Policy")]
    pub dismantle_deadline: Period,
    /// Dismantle instructions per vertical, the first included.
    #[arg(long, env = "TERMINUS_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100), conflicts_with = "policy", help_heading = "Policy")]
    pub max_attempts: u32,
    /// Retention of a terminated relationship's records (7 calendar years).
    #[arg(long, env = "TERMINUS_RETENTION", default_value = "P7Y", value_parser = parse_period, conflicts_with = "policy", help_heading = "Policy")]
    pub retention: Period,
    /// Retention when the customer asked for erasure (never applied to fraud).
    #[arg(long, env = "TERMINUS_ERASURE_RETENTION", default_value = "180d", value_parser = parse_period, conflicts_with = "policy", help_heading = "Policy")]
    pub erasure_retention: Period,
    /// How long an anonymised customer's id-only marker is kept before it is forgotten.
    #[arg(long, env = "TERMINUS_FORGET_AFTER", default_value = "30d", value_parser = parse_period, conflicts_with = "policy", help_heading = "Policy")]
    pub forget_after: Period,
    /// Require evidence/case/approval references on service-provider terminations.
    #[arg(long, env = "TERMINUS_REQUIRE_EVIDENCE", default_value_t = true, action = clap::ArgAction::Set, conflicts_with = "policy", help_heading = "Policy")]
    pub require_evidence: bool,
    /// Recent event ids remembered per customer for deduplication.
    #[arg(long, env = "TERMINUS_DEDUP_WINDOW", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024), help_heading = "Policy")]
    pub dedup_window: u32,
    /// The `source` field of every output envelope.
    #[arg(
        long,
        env = "TERMINUS_SOURCE",
        default_value = "terminus",
        help_heading = "Policy"
    )]
    pub source: String,
}

impl PolicyArgs {
    /// The policy flags' defaults, the environment ignored.
    pub fn defaults() -> PolicyArgs {
        defaults_of(PolicyArgs::augment_args(clap::Command::new("policy")))
    }

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
        let policy = Policy::default();
        let rule = policy.default_rule();
        assert_eq!(rule.customer_notice, Period::days(14));
        assert_eq!(rule.enterprise_notice, Period::days(30));
        assert_eq!(rule.immediate_notice, Period::ZERO);
        assert_eq!(
            rule.dismantle_deadline,
            Period::exact(Duration::from_secs(72 * 3600))
        );
        assert_eq!(rule.max_attempts, 5);
        assert_eq!(rule.retention, Period::years(7));
        assert_eq!(rule.erasure_retention, Period::days(180));
        assert_eq!(rule.forget_after, Period::days(30));
        assert!(rule.require_evidence);
        assert_eq!(policy.dedup_window, 32);
        assert_eq!(policy.source, "terminus");
        // The domain's defaults and the flags' defaults are the same values
        // (the domain keeps its own so that it depends on no CLI).
        assert_eq!(PolicyArgs::defaults().to_policy(), Policy::default());
        let cli = Cli::try_parse_from(["terminus", "simulate"]).unwrap();
        let Command::Simulate(args) = cli.command else {
            panic!("simulate expected");
        };
        assert_eq!(args.policy.to_policy(), Policy::default());
    }

    #[test]
    fn worker_options_come_from_the_flags_defaults() {
        let (options, ignored) = RunArgs::defaults().worker_options(Vec::new()).unwrap();
        assert!(ignored.is_empty());
        assert_eq!(options.topics, TopicNames::default());
        assert_eq!(options.topics.changelog, DEFAULT_CHANGELOG);
        assert_eq!(options.topics.lifecycle, Topic::Lifecycle.default_name());
        assert_eq!(options.group_id, "terminus");
        assert_eq!(options.commit_interval, Duration::from_millis(100));
        assert_eq!(options.min_commit_interval, Duration::from_millis(30));
        assert_eq!(options.batch_size, 5000);
        assert_eq!(options.max_transaction_records, 20_000);
        assert_eq!(options.max_transaction_bytes, 32 * 1024 * 1024);
        assert_eq!(options.timers_per_transaction, 1000);
        assert_eq!(options.max_record_bytes, 1_048_576);
        assert_eq!(options.future_tolerance, Duration::from_secs(300));
        assert_eq!(options.timer_interval, Duration::from_secs(1));
        assert_eq!(options.transaction_timeout, Duration::from_secs(10));
        assert_eq!(options.session_timeout, Duration::from_secs(45));
        assert!(!options.static_membership);
        assert_eq!(options.restore_timeout, Duration::from_secs(300));
        assert_eq!(options.policy, Policy::default());
        assert_eq!(options.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert!(options.schema_registry.is_none());
        assert_eq!(options.tasks, 1);
        let new = WorkerOptions::new(options.kafka.clone());
        assert_eq!(format!("{new:?}"), format!("{options:?}"));
    }

    fn run_args(flags: &[&str]) -> RunArgs {
        let mut argv = vec!["terminus", "run"];
        argv.extend_from_slice(flags);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(args) => *args,
            _ => panic!("run expected"),
        }
    }

    #[test]
    fn every_option_has_a_flag() {
        let args = run_args(&["--restore-timeout", "90s", "--batch-size", "7"]);
        let (options, _) = args.worker_options(Vec::new()).unwrap();
        assert_eq!(options.restore_timeout, Duration::from_secs(90));
        assert_eq!(options.batch_size, 7);
    }

    #[test]
    fn tasks_get_their_own_ids_and_zero_tasks_are_refused() {
        let args = run_args(&["--tasks", "3", "--instance-id", "pod-1"]);
        let (options, _) = args.worker_options(Vec::new()).unwrap();
        assert_eq!(options.tasks, 3);
        // One task keeps the ids of releases without tasks.
        assert_eq!(options.transactional_id(), "terminus-pod-1");
        let t2 = options.for_task(2);
        assert_eq!(t2.instance_id, "pod-1-t2");
        assert_eq!(t2.transactional_id(), "terminus-pod-1-t2");
        assert_eq!(t2.state_dir, options.state_dir, "one store per instance");
        let refused = Cli::try_parse_from(["terminus", "run", "--tasks", "0"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("--tasks"), "{refused}");
    }

    #[test]
    fn a_registry_user_without_a_password_is_refused_at_start() {
        let args = run_args(&[
            "--schema-registry-url",
            "http://127.0.0.1:1",
            "--schema-registry-user",
            "svc",
        ]);
        let err = args.worker_options(Vec::new()).unwrap_err().to_string();
        assert!(err.contains(REGISTRY_PASSWORD_VAR), "{err}");
        let env = vec![(REGISTRY_PASSWORD_VAR.to_owned(), "pw".to_owned())];
        let (options, _) = args.worker_options(env).unwrap();
        let registry = options.schema_registry.unwrap();
        assert_eq!(registry.user.as_deref(), Some("svc"));
        assert_eq!(registry.password.as_deref(), Some("pw"));
        let no_url = run_args(&["--schema-registry-user", "svc"]);
        assert!(no_url.worker_options(Vec::new()).is_err());
    }

    #[test]
    fn run_help_groups_its_flags() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("run")
            .unwrap()
            .render_long_help()
            .to_string();
        for heading in [
            "Kafka:",
            "Topics:",
            "Records and wire format:",
            "Policy:",
            "Operations:",
        ] {
            assert!(help.contains(heading), "{heading} missing in\n{help}");
        }
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
