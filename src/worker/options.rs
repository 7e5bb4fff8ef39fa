//! Everything `terminus run` is configured with, as one plain struct.

use crate::codec::WireFormat;
use crate::domain::Policy;
use crate::kafka::KafkaSettings;
use crate::kafka::topics::TopicNames;
use std::path::PathBuf;
use std::time::Duration;

/// Where committed state lives between restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// An embedded on-disk store, a cache of the changelog.
    Disk,
    /// Memory only: every restart reads the whole changelog.
    Memory,
}

/// The consumer group protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupProtocol {
    /// Eager range assignment (every rebalance revokes everything).
    Classic,
    /// KIP-848: incremental, assigned by the broker (range assignor).
    Consumer,
}

/// Whether a newcomer to a running group reads the changelog into its disk
/// store before it joins (see `worker::warm_up`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WarmUp {
    /// When the group has other members and the store is on disk.
    Auto,
    /// Join at once; assigned partitions restore after the join.
    Off,
}

/// How changelog records are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StateFormat {
    /// The compact binary record (see docs/design.md, "State record").
    Binary,
    /// JSON, as releases before the binary record wrote.
    Json,
}

#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub kafka: KafkaSettings,
    pub topics: TopicNames,
    /// Consumer group id (default `terminus`).
    pub group_id: String,
    /// Stable id of this instance; the transactional id is `<group>-<instance>`,
    /// so a restarted instance fences its previous incarnation at once.
    pub instance_id: String,
    /// Longest a transaction stays open (default 100 ms).
    pub commit_interval: Duration,
    /// Age at which a transaction commits once the input is drained
    /// (default 30 ms, at most `commit_interval`).
    pub min_commit_interval: Duration,
    /// Most input records in one transaction (default 5000).
    pub batch_size: usize,
    /// Most records one transaction writes: outputs, dead letters and
    /// changelog records together (default 20000).
    pub max_transaction_records: usize,
    /// Most bytes one transaction writes, keys, values and headers (default
    /// 32 MiB): well inside the producer's queue and the broker's limits.
    pub max_transaction_bytes: usize,
    /// Most customers whose due timers fire in one transaction (default
    /// 1000): a month-end burst is spread over many transactions, earliest
    /// first, interleaved with input records.
    pub timers_per_transaction: usize,
    /// Larger input records go to the dead-letter topic (default 1 MiB).
    pub max_record_bytes: usize,
    /// How far ahead of the wall clock an eventTime may be (default 5 min).
    pub future_tolerance: Duration,
    /// How often due timers are looked for (default 1 s).
    pub timer_interval: Duration,
    /// The producer's `transaction.timeout.ms`: how long a crashed instance's
    /// open transaction can hold back read_committed readers (default 10 s).
    pub transaction_timeout: Duration,
    /// Consumer session timeout: how long a vanished instance keeps its
    /// partitions before the group hands them to another (default 45 s).
    pub session_timeout: Duration,
    /// Static group membership (`group.instance.id` = instance id): a restarted
    /// instance gets its partitions back without a rebalance, but a stopped one
    /// does not leave the group; its partitions move after the session timeout.
    pub static_membership: bool,
    /// Classic eager rebalancing, or KIP-848's incremental protocol.
    pub group_protocol: GroupProtocol,
    /// Longest a partition restore may take before the worker gives up
    /// (default 5 min).
    pub restore_timeout: Duration,
    /// Where committed state lives between restarts (default disk).
    pub state_store: StoreKind,
    /// Whether a newcomer warms its disk store before joining (default auto).
    pub warm_up: WarmUp,
    /// The disk store's directory.
    pub state_dir: PathBuf,
    /// How changelog records are written (default binary; both are read).
    pub state_format: StateFormat,
    pub policy: Policy,
    /// Wire format of the outputs (inputs are detected per record).
    pub output_format: WireFormat,
    /// Confluent-compatible schema registry, for `avro-confluent`.
    pub schema_registry: Option<RegistrySettings>,
    /// Processing tasks in this process (default 1), each with its own
    /// consumer, transactional producer and share of the partitions.
    pub tasks: usize,
    /// What the process's consumers may prefetch in all (default 512 MiB).
    pub prefetch_bytes: u64,
}

/// Where the schema registry is and how to log in. The password comes from
/// the environment, never from a flag.
#[derive(Clone)]
pub struct RegistrySettings {
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for RegistrySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrySettings")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .finish()
    }
}

impl WorkerOptions {
    /// What one task's input consumer may prefetch: a quarter of the
    /// budget, shared by the tasks. Input is processed as it arrives, so a
    /// few MiB per partition keep it flowing.
    pub fn input_prefetch_budget(&self) -> u64 {
        self.prefetch_bytes / 4 / self.tasks.max(1) as u64
    }

    /// What one task's changelog restore may prefetch: the rest. A restore
    /// reads fastest with much of its changelog prefetched: with 6
    /// partitions, 16 MiB each read 4 M records about 15 % slower than
    /// 64 MiB each (docs/performance.md).
    pub fn restore_prefetch_budget(&self) -> u64 {
        (self.prefetch_bytes - self.prefetch_bytes / 4) / self.tasks.max(1) as u64
    }

    /// The defaults of `terminus run`'s flags (defined once, in `crate::cli`),
    /// with these Kafka settings.
    pub fn new(kafka: KafkaSettings) -> Self {
        let (mut options, _) = crate::cli::RunArgs::defaults()
            .worker_options(Vec::new())
            .expect("the defaults are valid");
        options.kafka = kafka;
        options
    }

    /// The largest record the producer writes: its `message.max.bytes`
    /// (librdkafka's default 1,000,000 is below the broker's default
    /// 1,048,588, so what the producer accepts the broker accepts too).
    pub fn max_produce_bytes(&self) -> usize {
        self.kafka
            .properties
            .iter()
            .find(|(k, _)| k == "message.max.bytes")
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(1_000_000)
    }

    pub fn transactional_id(&self) -> String {
        format!("{}-{}", self.group_id, self.instance_id)
    }

    /// The options of processing task `task` of several: the instance id
    /// gets a `-t<task>` suffix, so each task has its own transactional id
    /// (`<group>-<instance>-t<task>`) and static member id. Everything else,
    /// the state directory included, is the instance's.
    /// The group consumer's `client.id` (unless an operator set one): it
    /// names the instance in the group's member list, where a warm-up tells
    /// this instance's own previous incarnation from the other members.
    pub fn member_client_id(&self) -> String {
        format!("terminus-{}", self.instance_id)
    }

    pub fn for_task(&self, task: usize) -> WorkerOptions {
        WorkerOptions {
            instance_id: format!("{}-t{task}", self.instance_id),
            ..self.clone()
        }
    }
}
