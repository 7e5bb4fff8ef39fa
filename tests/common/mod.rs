//! Shared helpers for integration tests that talk to a real Kafka broker.
//!
//! Start one with `scripts/kafka start` (or run everything with `scripts/test`,
//! which starts and stops it for you). The broker address comes from
//! `KAFKA_BOOTSTRAP` (default `127.0.0.1:9092`).
//!
//! Every test should name its topics, groups and transactional ids with
//! [`unique`], so tests run in parallel and repeat on one long-lived broker.
//!
//! The helpers are `async` and never block the calling runtime: blocking
//! librdkafka calls run on `spawn_blocking`, so a worker under test can run on
//! the same runtime while the test reads its outputs.
//!
//! Each test file includes this module separately (`mod common;`), so helpers a
//! file does not use would warn: hence the `allow(dead_code)`.
#![allow(dead_code)]

pub mod broker;
pub mod rig;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

/// How long any single broker round trip in these helpers may take.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// The broker to test against: `KAFKA_BOOTSTRAP`, default `127.0.0.1:9092`.
pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1:9092".to_string())
}

/// `prefix` plus a suffix unique to this call, e.g. `orders-5f3a9c01e2-3`:
/// random per process, counted within it. Valid as a topic, group or
/// transactional id when `prefix` is (letters, digits, `.`, `_`, `-`).
pub fn unique(prefix: &str) -> String {
    static PROCESS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let process = *PROCESS.get_or_init(|| rand::random::<u64>() & 0xff_ffff_ffff);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{process:010x}-{n}")
}

/// A client config with `bootstrap.servers` set and nothing else.
pub fn client_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap());
    config
}

/// The isolation level a consumer reads with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Sees only committed transactional records (what downstream services see).
    ReadCommitted,
    /// Also sees records of open and aborted transactions.
    ReadUncommitted,
}

impl Isolation {
    fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// A consumer config for `group` at the given isolation level: no auto-commit,
/// starts at the earliest offset when the group has none, short session timeout.
/// Add settings with `.set(...)` and build with `.create::<BaseConsumer>()` (or
/// `StreamConsumer`).
pub fn consumer_config(group: &str, isolation: Isolation) -> ClientConfig {
    let mut config = client_config();
    config
        .set("group.id", group)
        .set("isolation.level", isolation.as_str())
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("enable.partition.eof", "false");
    config
}

/// A plain (idempotent, acks=all) producer whose partitioner is murmur2, like
/// the Java clients' default for keyed records.
pub fn producer() -> FutureProducer {
    client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("message.max.bytes", "16777216")
        .create()
        .expect("create producer")
}

/// A transactional producer config (murmur2 partitioner), not yet created:
/// `.create::<FutureProducer>()` then `init_transactions`.
pub fn transactional_config(transactional_id: &str) -> ClientConfig {
    let mut config = client_config();
    config
        .set("transactional.id", transactional_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("transaction.timeout.ms", "30000")
        .set("message.timeout.ms", "30000");
    config
}

/// Creates `topics` with `partitions` partitions, replication factor 1 and the
/// topic `configs` (e.g. `[("cleanup.policy", "compact")]`), then waits until
/// every partition has a leader. A topic that already exists is accepted
/// (check its partition count yourself if that matters). Panics on any other
/// error.
pub async fn create_topics(topics: &[&str], partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> =
        client_config().create().expect("create admin client");
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            configs.iter().fold(
                NewTopic::new(t, partitions, TopicReplication::Fixed(1)),
                |nt, (k, v)| nt.set(k, v),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT));
    let results = admin
        .create_topics(new_topics.iter(), &opts)
        .await
        .expect("create_topics request");
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => panic!("creating topic {topic}: {code:?}"),
        }
    }
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        for topic in &topics {
            wait_for_leaders(topic, partitions);
        }
    })
    .await
    .expect("wait for topics");
}

/// Deletes `topics` (best effort: for tidying up at the end of a test).
pub async fn delete_topics(topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> =
        client_config().create().expect("create admin client");
    let opts = AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT));
    let _ = admin.delete_topics(topics, &opts).await;
}

fn metadata_consumer() -> BaseConsumer {
    client_config().create().expect("create metadata client")
}

/// Blocks until `topic` has at least `partitions` partitions, all with a leader.
fn wait_for_leaders(topic: &str, partitions: i32) {
    let consumer = metadata_consumer();
    let deadline = Instant::now() + BROKER_TIMEOUT;
    loop {
        if let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))
            && let Some(t) = md.topics().iter().find(|t| t.name() == topic)
            && t.error().is_none()
            && t.partitions().len() >= partitions as usize
            && t.partitions().iter().all(|p| p.leader() >= 0)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "topic {topic} has no leader for all {partitions} partitions after {BROKER_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The partition numbers of `topic`, in order.
pub async fn partitions_of(topic: &str) -> Vec<i32> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let md = metadata_consumer()
            .fetch_metadata(Some(&topic), BROKER_TIMEOUT)
            .expect("fetch metadata");
        let mut ps: Vec<i32> = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        ps.sort_unstable();
        ps
    })
    .await
    .expect("partitions_of")
}

/// Produces `(key, value)` records to `topic` (plain producer, murmur2 on the
/// key), strictly in the given order, and waits until every one is
/// acknowledged. Panics if one is refused (the broker's and the topic's
/// `max.message.bytes` default to about 1 MiB: create a topic with a larger
/// `max.message.bytes` to send bigger records).
pub async fn produce(topic: &str, records: &[(&str, &[u8])]) {
    produce_with_headers(topic, records, &[]).await
}

/// Like [`produce`], with the same `headers` on every record.
pub async fn produce_with_headers(
    topic: &str,
    records: &[(&str, &[u8])],
    headers: &[(&str, &str)],
) {
    let producer = producer();
    let hs = headers.iter().fold(OwnedHeaders::new(), |hs, (k, v)| {
        hs.insert(Header {
            key: k,
            value: Some(*v),
        })
    });
    // Enqueue one by one (retrying a full queue before moving on), so the
    // order on each partition is the order given; then await the acks.
    let mut acks = Vec::with_capacity(records.len());
    for (key, value) in records {
        let mut record = FutureRecord::to(topic)
            .key(*key)
            .payload(*value)
            .headers(hs.clone());
        loop {
            match producer.send_result(record) {
                Ok(ack) => {
                    acks.push(ack);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
    }
    for ack in acks {
        match ack.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => panic!("producing to {topic}: {e}"),
            Err(_) => panic!("producing to {topic}: producer dropped"),
        }
    }
}

/// One consumed record. Keys and header values are read as UTF-8 (lossy); the
/// value stays bytes, since malformed input must survive byte for byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub partition: i32,
    pub offset: i64,
}

impl Rec {
    /// Copies a consumed message (for tests that poll their own consumer).
    pub fn from_message<M: Message>(m: &M) -> Rec {
        Rec {
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers: m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            let v = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                            (h.key.to_string(), v.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default(),
            partition: m.partition(),
            offset: m.offset(),
        }
    }

    /// The value as UTF-8 (lossy).
    pub fn value_str(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }

    /// The value parsed as JSON; panics with the value if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.value)
            .unwrap_or_else(|e| panic!("value is not JSON ({e}): {}", self.value_str()))
    }

    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `(key, value, headers)` with key `""` when absent and the value as UTF-8.
    pub fn kvh(&self) -> (String, String, Vec<(String, String)>) {
        (
            self.key.clone().unwrap_or_default(),
            self.value_str(),
            self.headers.clone(),
        )
    }
}

/// When a read stops.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// After `n` records, or at the deadline.
    Count(usize, Duration),
    /// When no record arrived for `idle`, or at the deadline.
    Idle(Duration, Duration),
}

/// Reads `topic` from the beginning of every partition (assigned, no group
/// membership, no commits), in arrival order (ordered within a partition).
fn read(topic: &str, isolation: Isolation, stop: Stop) -> Vec<Rec> {
    let consumer: BaseConsumer = consumer_config(&unique("reader"), isolation)
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("create reader");
    let md = consumer
        .fetch_metadata(Some(topic), BROKER_TIMEOUT)
        .expect("fetch metadata");
    let mut tpl = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("add partition");
        }
    }
    assert!(tpl.count() > 0, "topic {topic} does not exist");
    consumer.assign(&tpl).expect("assign");

    // Partitions read up to their end (the last stable offset for
    // read_committed). The idle clock only counts once all of them are.
    let mut at_end: HashSet<i32> = HashSet::new();
    let start = Instant::now();
    let mut last = Instant::now();
    let mut out = Vec::new();
    loop {
        match stop {
            Stop::Count(n, max) if out.len() >= n || start.elapsed() >= max => break,
            Stop::Idle(idle, max)
                if (at_end.len() == tpl.count() && last.elapsed() >= idle)
                    || start.elapsed() >= max =>
            {
                break;
            }
            _ => {}
        }
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                out.push(Rec::from_message(&m));
                last = Instant::now();
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                let all_caught_up = at_end.insert(p) && at_end.len() == tpl.count();
                if all_caught_up {
                    last = Instant::now();
                }
            }
            None => {}
            Some(Err(e)) => panic!("reading {topic}: {e}"),
        }
    }
    out
}

/// Up to `n` records of `topic` read with `read_committed`, waiting at most
/// `timeout`. Returns what it got: assert on the length.
pub async fn consume_n(topic: &str, n: usize, timeout: Duration) -> Vec<Rec> {
    consume_n_as(Isolation::ReadCommitted, topic, n, timeout).await
}

/// [`consume_n`] at the given isolation level.
pub async fn consume_n_as(
    isolation: Isolation,
    topic: &str,
    n: usize,
    timeout: Duration,
) -> Vec<Rec> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || read(&topic, isolation, Stop::Count(n, timeout)))
        .await
        .expect("consume_n")
}

/// Every record of `topic` read with `read_committed`: reads every partition
/// to its end, then until no record arrived for `idle` (or `max` passed). For
/// "exactly these and nothing more" checks; `idle` is the grace for records
/// still on their way (a few hundred ms is plenty for already-committed ones).
pub async fn consume_until_idle(topic: &str, idle: Duration, max: Duration) -> Vec<Rec> {
    consume_until_idle_as(Isolation::ReadCommitted, topic, idle, max).await
}

/// [`consume_until_idle`] at the given isolation level.
pub async fn consume_until_idle_as(
    isolation: Isolation,
    topic: &str,
    idle: Duration,
    max: Duration,
) -> Vec<Rec> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || read(&topic, isolation, Stop::Idle(idle, max)))
        .await
        .expect("consume_until_idle")
}

/// The committed offsets of `group` on `topic`, by partition (partitions with
/// no committed offset are absent).
pub async fn committed_offsets(group: &str, topic: &str) -> HashMap<i32, i64> {
    let partitions = partitions_of(topic).await;
    let (group, topic) = (group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = consumer_config(&group, Isolation::ReadCommitted)
            .create()
            .expect("create offsets reader");
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(&topic, p);
        }
        let committed = consumer
            .committed_offsets(tpl, BROKER_TIMEOUT)
            .expect("committed offsets");
        committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    })
    .await
    .expect("committed_offsets")
}

/// A minimal HTTP/1.1 client for the admin server: (status, body); (0, "")
/// when nothing answers.
pub fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if std::io::Write::write_all(&mut stream, request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = std::io::Read::read_to_string(&mut stream, &mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits until `check` holds, polling every 200 ms; panics after `max`.
pub async fn wait_for(what: &str, max: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + max;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
