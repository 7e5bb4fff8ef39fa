//! A private Terminus deployment for one integration test: its own topics,
//! consumer group and `terminus run` child processes, plus the random journeys
//! and the simulator oracle the worker tests compare against.

use super::{Rec, bootstrap, consume_until_idle, create_topics, unique};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use terminus::domain::Policy;
use terminus::domain::ids::termination_id;

pub const PARTITIONS: i32 = 3;

/// One test's private topic set, group, and worker processes.
#[derive(Clone)]
pub struct Rig {
    pub prefix: String,
    pub group: String,
    pub log_dir: PathBuf,
    pub extra_args: Vec<String>,
    /// Environment variables of every worker (for example `OTEL_*`).
    pub extra_env: Vec<(String, String)>,
}

impl Rig {
    pub async fn new(name: &str) -> Rig {
        Rig::with_input_configs(name, &[]).await
    }

    /// A rig whose input topics get the topic `configs` (for example a larger
    /// `max.message.bytes`).
    pub async fn with_input_configs(name: &str, configs: &[(&str, &str)]) -> Rig {
        let rig = Rig::existing(unique(name));
        std::fs::create_dir_all(&rig.log_dir).expect("log dir");
        let (inputs, others) = rig.topic_roles();
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        create_topics(&inputs, PARTITIONS, configs).await;
        let changelog = rig.topic("changelog");
        create_topics(
            &[changelog.as_str()],
            PARTITIONS,
            &[("cleanup.policy", "compact")],
        )
        .await;
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        create_topics(&others, PARTITIONS, &[]).await;
        rig
    }

    /// The rig of topics that exist already under `prefix` (a finished run's,
    /// for a post-mortem): creates nothing.
    pub fn existing(prefix: String) -> Rig {
        Rig {
            group: format!("{prefix}-group"),
            log_dir: std::env::temp_dir().join(format!("terminus-test-{prefix}")),
            prefix,
            extra_args: Vec::new(),
            extra_env: Vec::new(),
        }
    }

    /// Produces each phase and waits until the group has committed it: a
    /// phase's events may depend on the previous phase's, across topics.
    pub async fn feed(&self, phases: &[Vec<String>]) {
        for phase in phases {
            self.produce(phase).await;
            self.wait_caught_up(Duration::from_secs(120)).await;
        }
    }

    pub fn topic(&self, role: &str) -> String {
        format!("{}.{role}", self.prefix)
    }

    pub fn topic_roles(&self) -> (Vec<String>, Vec<String>) {
        (
            ["lifecycle", "decisions", "outcomes"]
                .map(|r| self.topic(r))
                .to_vec(),
            ["status", "dismantle", "terminated", "dlq"]
                .map(|r| self.topic(r))
                .to_vec(),
        )
    }

    /// The input topic an event of `event_type` belongs on.
    pub fn input_topic(&self, event_type: &str) -> String {
        let role = match event_type {
            "FraudConfirmed"
            | "EnterpriseTerminationDecided"
            | "TerminationDecisionRevoked"
            | "LegalHoldPlaced"
            | "LegalHoldReleased" => "decisions",
            "DismantleCompleted" | "DismantleFailed" => "outcomes",
            _ => "lifecycle",
        };
        self.topic(role)
    }

    /// Where `instance` keeps its disk store.
    pub fn state_dir(&self, instance: &str) -> PathBuf {
        self.log_dir.join(format!("state-{instance}"))
    }

    /// Starts a worker, which is killed if the test ends without stopping it.
    pub fn spawn(&self, instance: &str) -> Running {
        self.spawn_with(instance, &[])
    }

    /// Like [`spawn`](Self::spawn), with extra flags for this instance only.
    pub fn spawn_with(&self, instance: &str, extra: &[String]) -> Running {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("{instance}.log")))
            .expect("worker log");
        Command::new(env!("CARGO_BIN_EXE_terminus"))
            .arg("run")
            .args(["--bootstrap-servers", &bootstrap()])
            .args(["--group-id", &self.group])
            .args(["--instance-id", instance])
            .args(["--lifecycle-topic", &self.topic("lifecycle")])
            .args(["--decisions-topic", &self.topic("decisions")])
            .args(["--outcomes-topic", &self.topic("outcomes")])
            .args(["--status-topic", &self.topic("status")])
            .args(["--dismantle-topic", &self.topic("dismantle")])
            .args(["--terminated-topic", &self.topic("terminated")])
            .args(["--dead-letter-topic", &self.topic("dlq")])
            .args(["--changelog-topic", &self.topic("changelog")])
            .args(["--session-timeout", "6s", "--log-format", "json"])
            .args(["--timer-interval", "200ms"])
            .args(&self.extra_args)
            .args(extra)
            .args(if extra.iter().any(|a| a == "--admin-addr") {
                &[][..]
            } else {
                &["--admin-addr", "127.0.0.1:0"][..]
            })
            // One store per instance name: a restarted instance finds its own.
            .arg("--state-dir")
            .arg(self.state_dir(instance))
            .env("RUST_LOG", "info")
            // scripts/test's own variables, not librdkafka properties: a
            // worker would (rightly) warn that it ignores them.
            .env_remove("KAFKA_SECURE_BOOTSTRAP")
            .env_remove("KAFKA_SECURE_CA")
            // The tests' own variable, not a librdkafka property: the worker
            // would warn about it (it has --bootstrap-servers).
            .env_remove("KAFKA_BOOTSTRAP")
            .envs(self.extra_env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map(Running)
            .expect("spawn terminus run")
    }

    /// Produces envelope lines to their topics, keyed by customer id.
    pub async fn produce(&self, events: &[String]) {
        let mut by_topic: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
        for line in events {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let event_type = v["eventType"].as_str().unwrap_or("");
            let key = v["event"]["customerId"].as_str().unwrap_or("").to_owned();
            by_topic
                .entry(self.input_topic(event_type))
                .or_default()
                .push((key, line.clone().into_bytes()));
        }
        // One producer keeps per-key order within each topic.
        for (topic, records) in by_topic {
            let refs: Vec<(&str, &[u8])> = records
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            super::produce(&topic, &refs).await;
        }
    }

    /// Waits until the group has committed every input record (a worker is done).
    pub async fn wait_caught_up(&self, max: Duration) {
        let started = Instant::now();
        let deadline = started + max;
        let mut dumped = false;
        loop {
            let mut behind = 0i64;
            for topic in self.topic_roles().0 {
                let Some(ends) = high_watermarks(&topic) else {
                    behind += 1;
                    continue;
                };
                let Some(committed) = try_committed(&self.group, &topic) else {
                    behind += 1;
                    continue;
                };
                for (p, end) in ends {
                    behind += end - committed.get(&p).copied().unwrap_or(0);
                }
            }
            if behind == 0 {
                return;
            }
            if !dumped && started.elapsed() > Duration::from_secs(120) {
                // A worker that makes no progress for minutes: keep its
                // threads' stacks for the post-mortem.
                dumped = true;
                self.dump_stacks();
            }
            assert!(
                Instant::now() < deadline,
                "worker still {behind} records behind after {max:?}; logs in {}",
                self.log_dir.display()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Writes every live worker's thread stacks (gdb, when installed) to
    /// `stacks-<pid>.txt` in the log directory.
    pub fn dump_stacks(&self) {
        let Ok(out) = Command::new("pgrep").args(["-f", &self.group]).output() else {
            return;
        };
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let Ok(trace) = Command::new("gdb")
                .args(["-p", pid, "-batch", "-ex", "thread apply all bt"])
                .output()
            else {
                return;
            };
            let _ = std::fs::write(self.log_dir.join(format!("stacks-{pid}.txt")), trace.stdout);
            eprintln!(
                "stacks of worker {pid} written to {}",
                self.log_dir.display()
            );
        }
    }

    /// Every committed output: (topic role, key, value JSON).
    pub async fn outputs(&self) -> Vec<(String, String, serde_json::Value)> {
        let mut all = Vec::new();
        for role in ["status", "dismantle", "terminated"] {
            let recs = consume_until_idle(
                &self.topic(role),
                Duration::from_millis(500),
                Duration::from_secs(60),
            )
            .await;
            for r in recs {
                all.push((role.to_owned(), r.key.clone().unwrap_or_default(), r.json()));
            }
        }
        all
    }

    pub async fn dead_letters(&self) -> Vec<Rec> {
        consume_until_idle(
            &self.topic("dlq"),
            Duration::from_millis(500),
            Duration::from_secs(60),
        )
        .await
    }

    pub fn log(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(&self.log_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
        text
    }
}

/// The group's committed offsets on `topic`, or `None` while the broker cannot
/// tell (for example while its group coordinator restarts).
pub fn try_committed(group: &str, topic: &str) -> Option<std::collections::HashMap<i32, i64>> {
    let consumer: BaseConsumer = super::consumer_config(group, super::Isolation::ReadCommitted)
        .create()
        .ok()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .ok()?;
    Some(
        committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                rdkafka::Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect(),
    )
}

/// High watermarks of `topic`, or `None` while the broker cannot tell (for
/// example right after it restarted).
pub fn high_watermarks(topic: &str) -> Option<Vec<(i32, i64)>> {
    let consumer: BaseConsumer = super::client_config().create().expect("consumer");
    (0..PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .ok()
                .map(|(_, high)| (p, high))
        })
        .collect()
}

/// A worker process that is killed when dropped, so that a failing test
/// leaves no worker behind (stop it with [`stop`] for a graceful end). A
/// worker left running after a panic once went on consuming and competing
/// for the two cores with the benchmarks run after it.
pub struct Running(pub Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("worker did not stop within 30 s of SIGTERM");
}

/// The simulator's outputs for the same input, in the same shape.
pub fn simulate(events: &[String]) -> Vec<(String, String, serde_json::Value)> {
    simulate_with(events, Policy::default(), None)
}

/// The simulator's outputs under `policy`, its clock advanced to `until` after
/// the last event (the worker's wall clock, for timers that fired meanwhile).
pub fn simulate_with(
    events: &[String],
    policy: Policy,
    until: Option<terminus::time::Timestamp>,
) -> Vec<(String, String, serde_json::Value)> {
    let input = events.join("\n");
    let mut out = Vec::new();
    terminus::simulate::run(input.as_bytes(), &mut out, until, policy).expect("simulate");
    String::from_utf8(out)
        .expect("utf8")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let role = match v["topic"].as_str()? {
                "crm.termination.status.v1" => "status",
                "crm.solution.dismantle.v1" => "dismantle",
                "crm.relationship.terminated.v1" => "terminated",
                _ => return None,
            };
            Some((
                role.to_owned(),
                v["key"].as_str()?.to_owned(),
                v["value"].clone(),
            ))
        })
        .collect()
}

/// Per (topic, key): the sequence of values. Order across keys and topics is
/// not a promise; order within one key on one topic is.
pub fn by_key(
    records: &[(String, String, serde_json::Value)],
) -> BTreeMap<(String, String), Vec<String>> {
    let mut map: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (role, key, value) in records {
        map.entry((role.clone(), key.clone()))
            .or_default()
            .push(value.to_string());
    }
    map
}

pub fn assert_same_outputs(
    actual: &[(String, String, serde_json::Value)],
    expected: &[(String, String, serde_json::Value)],
) {
    let (a, e) = (by_key(actual), by_key(expected));
    let missing: Vec<_> = e.keys().filter(|k| !a.contains_key(*k)).take(5).collect();
    let extra: Vec<_> = a.keys().filter(|k| !e.contains_key(*k)).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
    for (k, exp) in &e {
        assert_eq!(&a[k], exp, "outputs differ for {k:?}");
    }
    assert_eq!(actual.len(), expected.len());
}

/// A time `offset_ms` after `base`, RFC 3339.
pub fn at(base: i64, offset_ms: i64) -> String {
    terminus::time::Timestamp::from_millis(base + offset_ms).to_rfc3339()
}

pub fn envelope(id: &str, event_type: &str, time: &str, body: serde_json::Value) -> String {
    serde_json::json!({
        "eventId": id, "eventType": event_type, "eventTime": time,
        "correlationId": format!("corr-{id}"), "source": "test",
        "event": body,
    })
    .to_string()
}

/// Random journeys for `customers` customers, as phases: phase i holds the
/// i-th event of every customer, shuffled. Kafka orders records per partition
/// only, so a customer's events on different input topics have no order across
/// topics; the tests publish a phase only once the previous one is committed,
/// which gives the worker and the simulator the same per-customer order.
/// Event times rise through the last ten minutes so no notice period (14 or 30
/// days) ends during the test, while deaths and fraud dismantle at once and
/// their outcomes complete, fail and retry.
pub fn journeys(seed: u64, customers: usize, per_customer: usize) -> Vec<Vec<String>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let base = terminus::time::Timestamp::now().millis() - 600_000;
    let mut queues: Vec<Vec<(String, serde_json::Value)>> = Vec::new();
    for c in 0..customers {
        let customer = format!("C-{seed}-{c}");
        let mut q = Vec::new();
        let mut current: Option<String> = None;
        for i in 0..per_customer {
            let id = format!("{customer}-e{i}");
            let body = |extra: serde_json::Value| {
                let mut b = serde_json::json!({"customerId": customer});
                if let (Some(b), Some(extra)) = (b.as_object_mut(), extra.as_object()) {
                    b.extend(extra.clone());
                }
                b
            };
            let roll = rng.random_range(0..100);
            let (event_type, b) = match roll {
                0..=9 => (
                    "CustomerTerminationRequested",
                    body(serde_json::json!({"erasureRequested": rng.random_bool(0.3)})),
                ),
                10..=14 => ("CustomerTerminationWithdrawn", body(serde_json::json!({}))),
                15..=19 => {
                    current = Some(id.clone());
                    (
                        "FraudConfirmed",
                        body(serde_json::json!({"caseRef": "case-1"})),
                    )
                }
                20..=24 => {
                    current = Some(id.clone());
                    (
                        "CustomerDeceased",
                        body(serde_json::json!({"evidenceRef": "cert-1"})),
                    )
                }
                25..=27 => (
                    "EnterpriseTerminationDecided",
                    body(serde_json::json!({"approvalRef": "ap-1", "reason": "policy"})),
                ),
                28..=30 => ("TerminationDecisionRevoked", body(serde_json::json!({}))),
                31..=33 => (
                    "RelationshipReestablishmentRequested",
                    body(serde_json::json!({})),
                ),
                34..=36 => (
                    "LegalHoldPlaced",
                    body(serde_json::json!({"holdRef": "h1"})),
                ),
                37..=38 => (
                    "LegalHoldReleased",
                    body(serde_json::json!({"holdRef": "h1"})),
                ),
                39..=40 => ("AllServicesTerminated", body(serde_json::json!({}))),
                41..=44 => ("FraudConfirmed", body(serde_json::json!({}))),
                _ => {
                    let vertical = ["billing", "fulfillment", "assurance"][rng.random_range(0..3)];
                    let tid = current
                        .as_deref()
                        .map(|e| termination_id(&customer, e).to_string())
                        .unwrap_or_else(|| termination_id(&customer, "nothing").to_string());
                    if rng.random_bool(0.25) {
                        (
                            "DismantleFailed",
                            body(
                                serde_json::json!({"terminationId": tid, "vertical": vertical, "reason": "busy", "retryable": rng.random_bool(0.8)}),
                            ),
                        )
                    } else {
                        (
                            "DismantleCompleted",
                            body(serde_json::json!({"terminationId": tid, "vertical": vertical})),
                        )
                    }
                }
            };
            q.push((event_type.to_owned(), serde_json::json!([id, b])));
        }
        queues.push(q);
    }
    let mut phases = Vec::new();
    let mut n = 0i64;
    #[allow(clippy::needless_range_loop)] // phase i takes the i-th event of each queue
    for i in 0..per_customer {
        let mut order: Vec<usize> = (0..customers).collect();
        for k in (1..order.len()).rev() {
            order.swap(k, rng.random_range(0..=k));
        }
        let mut phase = Vec::new();
        for c in order {
            let (event_type, pair) = &queues[c][i];
            let id = pair[0].as_str().unwrap_or_default();
            let line = envelope(id, event_type, &at(base, n * 10), pair[1].clone());
            n += 1;
            if rng.random_bool(0.02) {
                // Upstream redelivery: the same event twice.
                phase.push(line.clone());
            }
            phase.push(line);
        }
        phases.push(phase);
    }
    phases
}
