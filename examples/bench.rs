//! The benchmarks of docs/performance.md, against real baselines on a real
//! broker. Run them with `scripts/bench` (it starts a broker, builds in release
//! and the Kafka Streams peer under bench/streams, then calls this program).
//!
//! What it measures, each `--runs` times (median reported):
//! 1. **pass-through**: a plain rdkafka consume→produce loop over the input
//!    (same batching as Terminus: 1000 records or 100 ms, then flush and commit
//!    offsets; no state, at-least-once): the ceiling of this machine, and
//!    its CPU per event the baseline of Terminus's;
//! 2. **Terminus**: the release `terminus run` (default commit interval and
//!    batch) over the same pre-loaded input, exactly once, from its first
//!    consumed record (its /metrics) to its committed offsets reaching the end;
//! 3. **Kafka Streams**: bench/streams (exactly_once_v2, RocksDB store, same
//!    per-customer work), from its first record to its committed offsets
//!    reaching the end;
//! 4. **latency**: input produced at a fixed rate; produce → output readable by
//!    a read_committed consumer, matched by causationId;
//! 5. **restore**: a million customers' states in the changelog; time until
//!    /readyz answers 200 and peak RSS (VmHWM); the baseline is a plain
//!    read_committed consumer reading the changelog and doing nothing else.
//!
//! Nothing counts unless it is right: every Terminus run's committed outputs
//! are compared, customer by customer, with `terminus::simulate::run` over the
//! same input; the pass-through and the peer must emit one output per input
//! (the peer: per distinct event id).
//!
//! The workload: four events per customer, each customer's events on one
//! input topic (Kafka orders records per partition only, so this is what makes
//! the per-customer order, and so the expected outputs, deterministic). Mix:
//! customer requests with a repeat, a withdrawal and a re-request; deaths
//! (dismantling at once) with a late withdrawal and an upstream duplicate;
//! confirmed fraud (dismantling at once) with a legal hold, a revocation and
//! one without its case reference; enterprise decisions revoked and repeated
//! without approval; and dismantle outcomes — completions, a retryable failure
//! and its retry, a duplicate — for terminations accepted a minute earlier,
//! whose states are written to the changelog before the worker starts (as if
//! an earlier run had accepted them).

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use terminus::contract::decode_envelope;
use terminus::domain::Policy;
use terminus::domain::ids::termination_id;
use terminus::engine::Engine;
use terminus::kafka::partition_for_key;
use terminus::time::Timestamp;

/// Partitions of every topic (`--partitions`, default 6), set once at start.
static PARTITIONS_SET: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

fn partition_count() -> i32 {
    *PARTITIONS_SET.get().unwrap_or(&6)
}
const EVENTS_PER_CUSTOMER: usize = 4;
const INPUTS: [&str; 3] = ["lifecycle", "decisions", "outcomes"];
const OUTPUTS: [&str; 3] = ["status", "dismantle", "terminated"];

#[derive(Parser, Debug)]
#[command(about = "Terminus benchmarks against real baselines (see docs/performance.md)")]
struct Args {
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:59092"
    )]
    bootstrap: String,
    /// The release `terminus` binary.
    #[arg(long, default_value = "target/release/terminus")]
    terminus: PathBuf,
    /// bench/streams/target/classpath.txt; without it the Kafka Streams peer is skipped.
    #[arg(long)]
    streams_classpath: Option<PathBuf>,
    /// Runs of each measurement; the table shows the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Customers of the throughput workload (four events each).
    #[arg(long, default_value_t = 50_000)]
    customers: usize,
    /// Input events per second of the latency run.
    #[arg(long, default_value_t = 5_000)]
    rate: usize,
    /// Seconds at the start of the latency run left out of the percentiles
    /// (also reported with them).
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 30)]
    latency_secs: usize,
    /// Customers' states in the changelog of the restore run.
    #[arg(long, default_value_t = 1_000_000)]
    restore_customers: usize,
    /// Partitions of every topic the benchmark creates (the changelog's too).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=1024))]
    partitions: i32,
    /// Which measurements: throughput, latency, restore, rebalance (an
    /// instance joining and leaving the restore run's group; needs restore).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "throughput,latency,restore,rebalance"
    )]
    only: Vec<String>,
    /// Longest a throughput run may take before the benchmark fails.
    #[arg(long, default_value_t = 600)]
    deadline_secs: u64,
    /// Extra flag for every `terminus run` (repeatable), e.g.
    /// `--terminus-arg=--batch-size=5000`.
    #[arg(long, allow_hyphen_values = true)]
    terminus_arg: Vec<String>,
    /// Record a CPU profile (perf record -g) of the first Terminus throughput run here.
    #[arg(long)]
    perf_out: Option<PathBuf>,
    /// Keep the benchmark's topics (they are deleted at the end by default).
    #[arg(long)]
    keep_topics: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let _ = PARTITIONS_SET.set(args.partitions);
    let prefix = format!("bench{}", epoch_ms() / 1000);
    let bench = Bench {
        args,
        prefix: prefix.clone(),
    };
    println!("bench: topics {prefix}.*, broker {}", bench.args.bootstrap);
    println!("bench: load average at start: {}", loadavg());
    let mut rows = Vec::new();
    let result = (|| -> Result<()> {
        if bench.wants("throughput") {
            rows.extend(bench.throughput()?);
        }
        if bench.wants("latency") {
            rows.extend(bench.latency()?);
        }
        if bench.wants("restore") {
            rows.extend(bench.restore()?);
        }
        Ok(())
    })();
    if !bench.args.keep_topics {
        delete_topics_with_prefix(&bench.args.bootstrap, &prefix);
    }
    println!("bench: load average at end: {}", loadavg());
    println!();
    println!("| measure | median | runs | baseline | ratio | target |");
    println!("|---|---|---|---|---|---|");
    for row in &rows {
        println!("{row}");
    }
    result
}

struct Bench {
    args: Args,
    prefix: String,
}

/// One line of the result table.
struct Row {
    measure: String,
    median: String,
    runs: String,
    baseline: String,
    ratio: String,
    target: String,
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "| {} | {} | {} | {} | {} | {} |",
            self.measure, self.median, self.runs, self.baseline, self.ratio, self.target
        )
    }
}

fn row(measure: &str, median: String, runs: String) -> Row {
    Row {
        measure: measure.into(),
        median,
        runs,
        baseline: String::new(),
        ratio: String::new(),
        target: String::new(),
    }
}

// ---------------------------------------------------------------- workload

/// One input record.
struct Event {
    role: &'static str,
    key: String,
    id: String,
    line: String,
}

/// One event of a customer's script: a new one (id, type, body), or a
/// repeat of its i-th event, byte for byte (an upstream redelivery).
enum Step {
    New(String, &'static str, Value),
    Repeat(usize),
}

/// The measured input, plus the earlier events whose states the changelog holds.
struct Workload {
    prior: Vec<String>,
    prior_ids: HashSet<String>,
    events: Vec<Event>,
}

/// Four events for each of `customers` customers (see the module comment),
/// interleaved in rounds (round r holds every customer's r-th event, shuffled),
/// stamped one millisecond apart from `base_ms`.
fn workload(seed: u64, tag: &str, customers: usize, base_ms: i64) -> Workload {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut prior = Vec::new();
    let mut prior_ids = HashSet::new();
    let mut scripts: Vec<(&'static str, String, Vec<Step>)> = Vec::new();
    for c in 0..customers {
        let key = format!("C-{tag}-{c}");
        let id = |i: usize| format!("{key}-e{i}");
        let body = |extra: Value| {
            let mut b = json!({ "customerId": key });
            if let (Some(b), Value::Object(extra)) = (b.as_object_mut(), extra) {
                b.extend(extra);
            }
            b
        };
        let dup = Step::Repeat;
        let roll = rng.random_range(0..100);
        let (role, events) = match roll {
            0..20 => (
                "lifecycle",
                vec![
                    Step::New(
                        id(0),
                        "CustomerTerminationRequested",
                        body(json!({"erasureRequested": rng.random_bool(0.3)})),
                    ),
                    Step::New(id(1), "CustomerTerminationRequested", body(json!({}))),
                    Step::New(id(2), "CustomerTerminationWithdrawn", body(json!({}))),
                    Step::New(
                        id(3),
                        "CustomerTerminationRequested",
                        body(json!({"requestedEffectiveDate": "2099-12-31"})),
                    ),
                ],
            ),
            20..35 => (
                "lifecycle",
                vec![
                    Step::New(
                        id(0),
                        "CustomerDeceased",
                        body(json!({"evidenceRef": "death-cert"})),
                    ),
                    Step::New(id(1), "AllServicesTerminated", body(json!({}))),
                    Step::New(id(2), "CustomerTerminationWithdrawn", body(json!({}))),
                    dup(0),
                ],
            ),
            35..50 => (
                "decisions",
                vec![
                    Step::New(id(0), "FraudConfirmed", body(json!({"caseRef": "FR-1"}))),
                    Step::New(id(1), "LegalHoldPlaced", body(json!({"holdRef": "LH-1"}))),
                    Step::New(id(2), "TerminationDecisionRevoked", body(json!({}))),
                    Step::New(id(3), "FraudConfirmed", body(json!({}))),
                ],
            ),
            50..60 => (
                "decisions",
                vec![
                    Step::New(
                        id(0),
                        "EnterpriseTerminationDecided",
                        body(json!({"approvalRef": "AP-1", "reason": "policy"})),
                    ),
                    Step::New(id(1), "TerminationDecisionRevoked", body(json!({}))),
                    Step::New(
                        id(2),
                        "EnterpriseTerminationDecided",
                        body(json!({"reason": "policy"})),
                    ),
                    dup(1),
                ],
            ),
            _ => {
                // Outcomes for a termination accepted a minute before the run.
                let cause = format!("{key}-p0");
                let (trigger, b) = if rng.random_bool(0.5) {
                    (
                        "FraudConfirmed",
                        json!({"customerId": key, "caseRef": "FR-0"}),
                    )
                } else {
                    (
                        "CustomerDeceased",
                        json!({"customerId": key, "evidenceRef": "death-cert"}),
                    )
                };
                prior.push(envelope(&cause, trigger, base_ms - 60_000, b));
                let tid = termination_id(&key, &cause).to_string();
                prior_ids.insert(cause);
                let done = |v: &str| body(json!({"terminationId": tid, "vertical": v}));
                let failed = body(json!({"terminationId": tid, "vertical": "billing",
                    "reason": "billing system timeout", "retryable": true}));
                let events = if roll < 85 {
                    vec![
                        Step::New(id(0), "DismantleCompleted", done("billing")),
                        Step::New(id(1), "DismantleCompleted", done("fulfillment")),
                        dup(1),
                        Step::New(id(3), "DismantleCompleted", done("assurance")),
                    ]
                } else {
                    vec![
                        Step::New(id(0), "DismantleFailed", failed),
                        Step::New(id(1), "DismantleCompleted", done("fulfillment")),
                        Step::New(id(2), "DismantleCompleted", done("assurance")),
                        Step::New(id(3), "DismantleCompleted", done("billing")),
                    ]
                };
                ("outcomes", events)
            }
        };
        scripts.push((role, key, events));
    }
    let mut events = Vec::with_capacity(customers * EVENTS_PER_CUSTOMER);
    let mut lines: Vec<Vec<String>> = vec![Vec::new(); customers];
    let mut order: Vec<usize> = (0..customers).collect();
    for round in 0..EVENTS_PER_CUSTOMER {
        for k in (1..order.len()).rev() {
            order.swap(k, rng.random_range(0..=k));
        }
        for &c in &order {
            let (role, key, script) = &scripts[c];
            let (id, line) = match &script[round] {
                Step::New(id, event_type, body) => {
                    let at = base_ms + events.len() as i64;
                    (id.clone(), envelope(id, event_type, at, body.clone()))
                }
                Step::Repeat(i) => (format!("{key}-e{i}"), lines[c][*i].clone()),
            };
            lines[c].push(line.clone());
            events.push(Event {
                role,
                key: key.clone(),
                id,
                line,
            });
        }
    }
    Workload {
        prior,
        prior_ids,
        events,
    }
}

fn envelope(id: &str, event_type: &str, at_ms: i64, body: Value) -> String {
    json!({
        "eventId": id, "eventType": event_type,
        "eventTime": Timestamp::from_millis(at_ms).to_rfc3339(),
        "correlationId": format!("corr-{id}"), "source": "bench", "event": body,
    })
    .to_string()
}

/// An output as the comparison sees it: (topic role, key, value).
type Output = (String, String, Value);

/// The simulator's outputs for the workload's events (the prior events' own
/// outputs left out: they belong to the "earlier run").
fn oracle(w: &Workload) -> Result<Vec<Output>> {
    let mut input = w.prior.join("\n");
    for e in &w.events {
        input.push('\n');
        input.push_str(&e.line);
    }
    let mut out = Vec::new();
    let summary = terminus::simulate::run(input.as_bytes(), &mut out, None, Policy::default())?;
    ensure!(summary.dead_letters == 0, "the workload has invalid events");
    let mut outputs = Vec::new();
    for line in String::from_utf8(out)?.lines() {
        let v: Value = serde_json::from_str(line)?;
        let role = match v["topic"].as_str().unwrap_or_default() {
            "crm.termination.status.v1" => "status",
            "crm.solution.dismantle.v1" => "dismantle",
            "crm.relationship.terminated.v1" => "terminated",
            other => bail!("unexpected simulator output topic {other}"),
        };
        let cause = v["value"]["causationId"].as_str().unwrap_or_default();
        if !w.prior_ids.contains(cause) {
            let key = v["key"].as_str().unwrap_or_default().to_owned();
            outputs.push((role.to_owned(), key, v["value"].clone()));
        }
    }
    Ok(outputs)
}

/// Changelog records (partition, key, state JSON) of the prior events' states.
fn prior_states(w: &Workload) -> Result<Vec<(i32, String, Vec<u8>)>> {
    let mut engine = Engine::new(Arc::new(Policy::default()));
    let mut keys = Vec::new();
    for line in &w.prior {
        let env = decode_envelope(line.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
        engine.handle(&env, env.event_time);
        keys.push(env.customer_id);
    }
    engine.commit();
    Ok(keys
        .into_iter()
        .filter_map(|k| {
            let state = engine.get(&k)?.to_bytes();
            Some((partition_for_key(k.as_bytes(), partition_count()), k, state))
        })
        .collect())
}

/// Per (topic role, key): the outputs in order. Order across keys is no promise.
fn by_key(outputs: &[Output]) -> BTreeMap<(&str, &str), Vec<&Value>> {
    let mut map: BTreeMap<(&str, &str), Vec<&Value>> = BTreeMap::new();
    for (role, key, value) in outputs {
        map.entry((role, key)).or_default().push(value);
    }
    map
}

/// Fails unless `actual` equals `expected`, customer by customer.
fn verify_same(actual: &[Output], expected: &[Output]) -> Result<()> {
    let (a, e) = (by_key(actual), by_key(expected));
    let mut differing = Vec::new();
    for k in e.keys().chain(a.keys()) {
        if a.get(k) != e.get(k) && differing.len() < 3 {
            differing.push(format!(
                "{k:?}: worker {:?}, simulator {:?}",
                a.get(k),
                e.get(k)
            ));
        }
    }
    ensure!(
        differing.is_empty() && actual.len() == expected.len(),
        "outputs differ from the simulator's ({} vs {} outputs): {}",
        actual.len(),
        expected.len(),
        differing.join("; ")
    );
    Ok(())
}

// ---------------------------------------------------------------- throughput

struct Names {
    inputs: [String; 3],
}

impl Bench {
    fn wants(&self, what: &str) -> bool {
        self.args.only.iter().any(|o| o == what)
    }

    fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    fn input_names(&self, set: &str) -> Names {
        Names {
            inputs: INPUTS.map(|r| self.topic(&format!("{set}.{r}"))),
        }
    }

    fn throughput(&self) -> Result<Vec<Row>> {
        let b = &self.args.bootstrap;
        let base = epoch_ms() as i64 - 30 * 60_000;
        let w = workload(7, "t", self.args.customers, base);
        let n = w.events.len();
        let expected = oracle(&w)?;
        let states = prior_states(&w)?;
        let distinct: HashSet<(&str, &str)> = w
            .events
            .iter()
            .map(|e| (e.key.as_str(), e.id.as_str()))
            .collect();
        println!(
            "throughput: {n} events ({} distinct) over {} customers ({} outcome customers' states in the changelog); {} expected outputs",
            distinct.len(),
            self.args.customers,
            states.len(),
            expected.len()
        );
        let names = self.input_names("in");
        create_topics(
            b,
            &names
                .inputs
                .iter()
                .map(|t| (t.as_str(), false))
                .collect::<Vec<_>>(),
        )?;
        let loaded = Instant::now();
        produce_events(b, &names, &w.events)?;
        println!(
            "throughput: input loaded in {:.1}s",
            loaded.elapsed().as_secs_f64()
        );
        let ends = end_offsets(b, &names.inputs)?;
        ensure!(
            ends.iter().map(|e| e.2).sum::<i64>() == n as i64,
            "input not fully loaded"
        );

        let (mut pass, mut term, mut peer) = (Vec::new(), Vec::new(), Vec::new());
        let (mut term_memory, mut term_tasks) = (Vec::new(), Vec::new());
        let (mut term_cpu, mut memory_cpu, mut pass_cpu) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..self.args.runs {
            let (secs, cpu) = self.passthrough(run, &names, n)?;
            pass_cpu.push(cpu);
            println!(
                "run {run}: pass-through {:.2}s = {:.0} events/s, {cpu:.1} CPU-s (load {})",
                secs,
                n as f64 / secs,
                loadavg()
            );
            pass.push(n as f64 / secs);

            let (secs, cpu) =
                self.terminus_throughput(run, &names, &ends, &states, &expected, Setup::disk(1))?;
            term_cpu.push(cpu);
            println!(
                "run {run}: terminus (disk store) {:.2}s = {:.0} events/s, outputs verified (load {})",
                secs,
                n as f64 / secs,
                loadavg()
            );
            term.push(n as f64 / secs);

            let (secs, cpu) =
                self.terminus_throughput(run, &names, &ends, &states, &expected, Setup::memory())?;
            memory_cpu.push(cpu);
            println!(
                "run {run}: terminus (memory store) {:.2}s = {:.0} events/s, outputs verified (load {})",
                secs,
                n as f64 / secs,
                loadavg()
            );
            term_memory.push(n as f64 / secs);

            // The same worker with two processing tasks (disk store, as the
            // 1-task row it is compared with).
            let (secs, _) =
                self.terminus_throughput(run, &names, &ends, &states, &expected, Setup::disk(2))?;
            println!(
                "run {run}: terminus (disk store, 2 tasks) {:.2}s = {:.0} events/s, outputs verified (load {})",
                secs,
                n as f64 / secs,
                loadavg()
            );
            term_tasks.push(n as f64 / secs);

            if let Some(cp) = &self.args.streams_classpath {
                let secs = self.streams_throughput(run, cp, &names, &ends, distinct.len())?;
                println!(
                    "run {run}: kafka streams {:.2}s = {:.0} events/s, outputs verified (load {})",
                    secs,
                    n as f64 / secs,
                    loadavg()
                );
                peer.push(n as f64 / secs);
            }
        }
        let (p, t) = (median(&pass), median(&term));
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        let fmt_runs = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut rows = vec![
            Row {
                baseline: "—".into(),
                ratio: "1.00".into(),
                target: "the ceiling".into(),
                ..row(
                    "pass-through: rdkafka consume→produce, at-least-once (events/s)",
                    format!("{p:.0}"),
                    fmt_runs(&pass),
                )
            },
            Row {
                baseline: "pass-through".into(),
                ratio: format!("{:.2}", t / p),
                target: format!(
                    "≥ 0.70 × pass-through (issue 14; the brief: ≥ 0.50 and ≥ 50,000): {}",
                    met(t / p >= 0.7)
                ),
                ..row(
                    "Terminus exactly-once, disk store (events/s)",
                    format!("{t:.0}"),
                    fmt_runs(&term),
                )
            },
        ];
        let tm = median(&term_memory);
        rows.push(Row {
            baseline: "pass-through".into(),
            ratio: format!("{:.2}", tm / p),
            target: "—".into(),
            ..row(
                "Terminus exactly-once, memory store (events/s)",
                format!("{tm:.0}"),
                fmt_runs(&term_memory),
            )
        });
        rows.push(Row {
            baseline: "memory store".into(),
            ratio: format!("{:.2}", t / tm),
            target: format!("≥ 0.90: {}", if t / tm >= 0.9 { "met" } else { "NOT met" }),
            ..row(
                "disk store ÷ memory store, exactly-once",
                String::new(),
                String::new(),
            )
        });
        // CPU per input event, from first record consumed to last offsets
        // committed: the pass-through's (librdkafka consuming one record and
        // producing one), the baseline of Terminus's own, which produces
        // its outputs and a changelog record per changed customer.
        let per_event =
            |cpu: &[f64]| -> Vec<f64> { cpu.iter().map(|c| c / n as f64 * 1e6).collect() };
        let pass_us = median(&per_event(&pass_cpu));
        rows.push(Row {
            baseline: "—".into(),
            ratio: "1.00".into(),
            target: "—".into(),
            ..row(
                &format!(
                    "pass-through CPU per event (µs; 1 record in, 1 out; CPU-s per {n} events: {})",
                    pass_cpu
                        .iter()
                        .map(|c| format!("{c:.1}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!("{pass_us:.1}"),
                per_event(&pass_cpu)
                    .iter()
                    .map(|x| format!("{x:.1}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        });
        let outputs_per_event = expected.len() as f64 / n as f64;
        for (label, cpu) in [("disk store", &term_cpu), ("memory store", &memory_cpu)] {
            let us = per_event(cpu);
            let m = median(&us);
            rows.push(Row {
                baseline: "pass-through CPU".into(),
                ratio: format!("{:.2}", m / pass_us),
                target: format!("≤ 6 µs: {}", met(m <= 6.0)),
                ..row(
                    &format!(
                        "Terminus CPU per event, {label} (µs; {outputs_per_event:.2} outputs per event, plus changelog; CPU-s per {n} events: {})",
                        cpu.iter()
                            .map(|c| format!("{c:.1}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    format!("{m:.1}"),
                    us.iter()
                        .map(|x| format!("{x:.1}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            });
        }
        let t2 = median(&term_tasks);
        rows.push(Row {
            baseline: "1 task".into(),
            ratio: format!("{:.2}", t2 / t),
            target: "—".into(),
            ..row(
                "Terminus, 2 tasks (--tasks 2, disk store; events/s)",
                format!("{t2:.0}"),
                fmt_runs(&term_tasks),
            )
        });
        if !peer.is_empty() {
            let s = median(&peer);
            rows.push(Row {
                baseline: "pass-through".into(),
                ratio: format!("{:.2}", s / p),
                target: "—".into(),
                ..row(
                    "Kafka Streams exactly_once_v2 + RocksDB (events/s)",
                    format!("{s:.0}"),
                    fmt_runs(&peer),
                )
            });
            rows.push(Row {
                baseline: "Kafka Streams".into(),
                ratio: format!("{:.2}", t / s),
                target: format!("≥ 3: {}", met(t / s >= 3.0)),
                ..row("Terminus ÷ Kafka Streams", String::new(), String::new())
            });
        }
        Ok(rows)
    }

    /// The ceiling: consume, produce the same record, every 1000 records or
    /// 100 ms flush and commit (at-least-once, no state). Seconds from the
    /// first record consumed to the last offsets committed.
    fn passthrough(&self, run: usize, names: &Names, n: usize) -> Result<(f64, f64)> {
        let b = &self.args.bootstrap;
        let output = self.topic(&format!("p{run}.out"));
        create_topics(b, &[(output.as_str(), false)])?;
        let consumer: BaseConsumer = config(b)
            .set("group.id", self.topic(&format!("p{run}")))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "range")
            .create()?;
        let inputs: Vec<&str> = names.inputs.iter().map(String::as_str).collect();
        consumer.subscribe(&inputs)?;
        // As Terminus's producer: a ThreadedProducer (its own thread serves
        // delivery reports), linger 5 ms, lz4; and at each batch's end a flush
        // that sends at once, as commit_transaction does inside librdkafka.
        let producer: ThreadedProducer<Counting> = config(b)
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set("queue.buffering.max.messages", "1000000")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .create_with_context(Counting::default())?;
        let (mut count, mut in_batch) = (0usize, 0usize);
        let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
        let mut first: Option<Instant> = None;
        // The harness runs nothing else meanwhile: its CPU is the loop's and
        // librdkafka's.
        let mut first_cpu = 0.0;
        let mut batch_started = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(300);
        while count < n || in_batch > 0 {
            ensure!(Instant::now() < deadline, "pass-through did not finish");
            if count < n
                && let Some(msg) = consumer.poll(Duration::from_millis(100))
            {
                let msg = msg?;
                if first.is_none() {
                    first = Some(Instant::now());
                    first_cpu = cpu_secs("self");
                    batch_started = Instant::now();
                }
                let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&output);
                if let Some(k) = msg.key() {
                    record = record.key(k);
                }
                if let Some(v) = msg.payload() {
                    record = record.payload(v);
                }
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err((e, _)) => return Err(e.into()),
                    }
                }
                offsets.insert((msg.topic().to_owned(), msg.partition()), msg.offset() + 1);
                count += 1;
                in_batch += 1;
            }
            if in_batch > 0
                && (in_batch >= 1000
                    || batch_started.elapsed() >= Duration::from_millis(100)
                    || count == n)
            {
                flush_now(&producer)?;
                let mut tpl = TopicPartitionList::new();
                for ((t, p), o) in &offsets {
                    tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
                }
                consumer.commit(&tpl, CommitMode::Sync)?;
                in_batch = 0;
                batch_started = Instant::now();
            }
        }
        let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
        let cpu = cpu_secs("self") - first_cpu;
        ensure!(
            producer.context().failed.load(Ordering::Relaxed) == 0,
            "pass-through deliveries failed"
        );
        let written: i64 = end_offsets(b, std::slice::from_ref(&output))?
            .iter()
            .map(|e| e.2)
            .sum();
        ensure!(
            written == n as i64,
            "pass-through wrote {written} records for {n} inputs"
        );
        Ok((secs, cpu))
    }

    /// Topics of one Terminus deployment (`set`), sharing `names`' inputs;
    /// the changelog pre-loaded with `states`.
    fn deployment(
        &self,
        set: &str,
        names: &Names,
        states: &[(i32, String, Vec<u8>)],
    ) -> Result<Deployment> {
        let b = &self.args.bootstrap;
        let d = Deployment {
            inputs: names.inputs.clone(),
            outputs: OUTPUTS.map(|r| self.topic(&format!("{set}.{r}"))),
            dlq: self.topic(&format!("{set}.dlq")),
            changelog: self.topic(&format!("{set}.changelog")),
            group: self.topic(set),
        };
        let mut topics: Vec<(&str, bool)> = d.outputs.iter().map(|t| (t.as_str(), false)).collect();
        topics.push((&d.dlq, false));
        topics.push((&d.changelog, true));
        create_topics(b, &topics)?;
        produce_states(
            b,
            &d.changelog,
            states
                .iter()
                .map(|(p, k, v)| (*p, k.as_str(), v.as_slice())),
        )?;
        Ok(d)
    }

    fn terminus_throughput(
        &self,
        run: usize,
        names: &Names,
        ends: &[(String, i32, i64)],
        states: &[(i32, String, Vec<u8>)],
        expected: &[Output],
        setup: Setup,
    ) -> Result<(f64, f64)> {
        let Setup { store, tasks } = setup;
        // The 1-task sets keep their names of earlier releases.
        let set = if tasks == 1 {
            format!("t{store}{run}")
        } else {
            format!("t{store}x{tasks}r{run}")
        };
        let d = self.deployment(&set, names, states)?;
        let dir = std::env::temp_dir().join(format!("{}-state", d.group));
        let _ = std::fs::remove_dir_all(&dir);
        let flags = [
            format!("--state-store={store}"),
            format!("--state-dir={}", dir.display()),
            format!("--tasks={tasks}"),
        ];
        let mut worker = Worker::start_with(&self.args, &d, &set, &flags)?;
        let profiler = match (&self.args.perf_out, run) {
            (Some(out), 0) if store == "disk" && tasks == 1 => Some(
                Command::new("perf")
                    .args(["record", "-e", "cpu-clock", "-F", "499"])
                    .args(["--call-graph", "dwarf,16384", "-o"])
                    .arg(out)
                    .args(["-p", &worker.child.id().to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("perf record")?,
            ),
            _ => None,
        };
        // First record consumed: the worker's own counter.
        let deadline = Instant::now() + Duration::from_secs(120);
        let first = loop {
            ensure!(
                Instant::now() < deadline,
                "terminus consumed nothing; log {}",
                worker.log.display()
            );
            if worker.consumed().unwrap_or(0) > 0 {
                break (epoch_ms(), worker.cpu_secs(), machine_busy_secs());
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let last = wait_committed(
            &self.args.bootstrap,
            &d.group,
            ends,
            Duration::from_secs(self.args.deadline_secs),
        )?;
        let (cpu, busy) = (worker.cpu_secs() - first.1, machine_busy_secs() - first.2);
        let secs = (last - first.0) as f64 / 1000.0;
        println!(
            "run {run}: terminus used {cpu:.1} CPU-s; the machine was busy {busy:.1} of {:.1} CPU-s; peak RSS {:.0} MiB (the input was a backlog from the start)",
            secs * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
            worker.peak_rss_mib()?
        );
        if let Some(mut p) = profiler {
            signal(&p, "-INT");
            let _ = p.wait();
        }
        worker.stop()?;
        let _ = std::fs::remove_dir_all(&dir);
        let actual = read_outputs(&self.args.bootstrap, &d)?;
        verify_same(&actual, expected)?;
        let dead = read_all(&self.args.bootstrap, &d.dlq, |_| ())?;
        ensure!(dead == 0, "{dead} dead letters");
        Ok((secs, cpu))
    }

    fn streams_throughput(
        &self,
        run: usize,
        classpath: &std::path::Path,
        names: &Names,
        ends: &[(String, i32, i64)],
        distinct: usize,
    ) -> Result<f64> {
        let b = &self.args.bootstrap;
        let app = self.topic(&format!("s{run}"));
        let output = self.topic(&format!("s{run}.out"));
        create_topics(b, &[(output.as_str(), false)])?;
        let dir = std::env::temp_dir().join(&app);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let cp = std::fs::read_to_string(classpath)?;
        let classes = classpath
            .parent()
            .map(|p| p.join("classes"))
            .unwrap_or_default();
        let stdout = dir.join("stdout.log");
        let mut java = Command::new("java")
            .args(["-Xms512m", "-Xmx2g", "-cp"])
            .arg(format!("{}:{}", classes.display(), cp.trim()))
            .arg("terminus.bench.StreamsPeer")
            .args([b.as_str(), app.as_str()])
            .arg(dir.join("state"))
            .arg(&output)
            .args(&names.inputs)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(dir.join("stderr.log"))?)
            .spawn()
            .context("java (the Kafka Streams peer)")?;
        let last = wait_committed(b, &app, ends, Duration::from_secs(self.args.deadline_secs));
        signal(&java, "-TERM");
        let _ = java.wait();
        let last = last?;
        let text = std::fs::read_to_string(&stdout)?;
        let first: u128 = text
            .lines()
            .find_map(|l| l.strip_prefix("first-record-ms "))
            .and_then(|v| v.trim().parse().ok())
            .context("the peer never reported its first record")?;
        let mut causes = HashSet::new();
        let outputs = read_all(b, &output, |v| {
            causes.insert(v["causationId"].as_str().unwrap_or_default().to_owned());
        })?;
        ensure!(
            outputs == distinct && causes.len() == distinct,
            "the peer emitted {outputs} outputs for {} causes; expected one per distinct event ({distinct})",
            causes.len()
        );
        let _ = std::fs::remove_dir_all(dir.join("state"));
        Ok((last - first) as f64 / 1000.0)
    }

    // ------------------------------------------------------------ latency

    fn latency(&self) -> Result<Vec<Row>> {
        let b = &self.args.bootstrap;
        let total = self.args.rate * self.args.latency_secs;
        let customers = total / EVENTS_PER_CUSTOMER;
        let (mut p50s, mut p99s, mut maxes, mut p99s_all) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 0..self.args.runs {
            let base = epoch_ms() as i64 - 30 * 60_000;
            let w = workload(100 + run as u64, &format!("l{run}"), customers, base);
            let expected = oracle(&w)?;
            // Inputs that cause outputs, and how many each.
            let mut per_cause: HashMap<&str, usize> = HashMap::new();
            for (_, _, v) in &expected {
                *per_cause
                    .entry(v["causationId"].as_str().unwrap_or_default())
                    .or_default() += 1;
            }
            let names = self.input_names(&format!("l{run}.in"));
            create_topics(
                b,
                &names
                    .inputs
                    .iter()
                    .map(|t| (t.as_str(), false))
                    .collect::<Vec<_>>(),
            )?;
            let d = self.deployment(&format!("l{run}"), &names, &prior_states(&w)?)?;
            let mut worker = Worker::start(&self.args, &d, &format!("l{run}"))?;
            worker.wait_ready(Duration::from_secs(120))?;

            let reader = {
                let (b, topics) = (b.clone(), d.outputs.clone());
                let wanted: HashSet<String> = per_cause.keys().map(|k| (*k).to_owned()).collect();
                std::thread::spawn(move || {
                    first_seen(
                        &b,
                        &topics,
                        wanted,
                        Duration::from_secs(reader_timeout(total)),
                    )
                })
            };
            std::thread::sleep(Duration::from_secs(2)); // the reader is assigned and at the end
            let sent = produce_paced(b, &names, &w.events, self.args.rate)?;
            let seen = reader
                .join()
                .map_err(|_| anyhow::anyhow!("reader panicked"))??;
            worker.stop()?;
            let actual = read_outputs(b, &d)?;
            verify_same(&actual, &expected)?;

            // Latencies of the inputs that cause outputs; `steady` leaves out
            // the first --warmup-secs (the worker's first transactions
            // register every output partition and fetch their metadata).
            let warmup = sent.first().map(|s| s.1).unwrap_or_else(Instant::now)
                + Duration::from_secs(self.args.warmup_secs);
            let (mut all, mut steady) = (Vec::new(), Vec::new());
            // Where the warm-up's latency lies: the first seconds, each apart.
            let first = sent.first().map(|s| s.1).unwrap_or_else(Instant::now);
            let mut by_second: Vec<Vec<f64>> = vec![Vec::new(); 5];
            for (id, at) in &sent {
                if per_cause.contains_key(id.as_str()) {
                    let out = seen
                        .get(id)
                        .with_context(|| format!("no output seen for {id}"))?;
                    let ms = out.saturating_duration_since(*at).as_secs_f64() * 1000.0;
                    all.push(ms);
                    if *at >= warmup {
                        steady.push(ms);
                    }
                    let second = at.saturating_duration_since(first).as_secs() as usize;
                    if let Some(bucket) = by_second.get_mut(second) {
                        bucket.push(ms);
                    }
                }
            }
            let early: Vec<String> = by_second
                .iter_mut()
                .enumerate()
                .filter(|(_, v)| !v.is_empty())
                .map(|(i, v)| {
                    let (_, p99, max) = percentiles(v);
                    format!("{i}–{} s: p99 {p99:.0} ms, max {max:.0} ms", i + 1)
                })
                .collect();
            println!(
                "run {run}: the first seconds of input: {}",
                early.join("; ")
            );
            let (p50, p99, max) = percentiles(&mut steady);
            let (_, p99_all, max_all) = percentiles(&mut all);
            println!(
                "run {run}: latency at {}/s over {} inputs with outputs: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms after {} s of warm-up; with it p99 {p99_all:.1} ms, max {max_all:.1} ms (load {})",
                self.args.rate,
                all.len(),
                self.args.warmup_secs,
                loadavg()
            );
            p50s.push(p50);
            p99s.push(p99);
            maxes.push(max);
            p99s_all.push(p99_all);
        }
        let fmt_runs = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let p99 = median(&p99s);
        let rate = self.args.rate;
        let warm = self.args.warmup_secs;
        Ok(vec![
            row(
                &format!(
                    "latency p50 at {rate}/s, produce → read_committed, after {warm} s warm-up (ms)"
                ),
                format!("{:.0}", median(&p50s)),
                fmt_runs(&p50s),
            ),
            Row {
                target: format!("≤ 100 ms: {}", if p99 <= 100.0 { "met" } else { "NOT met" }),
                ..row(
                    &format!("latency p99 at {rate}/s, after {warm} s warm-up (ms)"),
                    format!("{p99:.0}"),
                    fmt_runs(&p99s),
                )
            },
            row(
                &format!("latency max at {rate}/s, after {warm} s warm-up (ms)"),
                format!("{:.0}", median(&maxes)),
                fmt_runs(&maxes),
            ),
            Row {
                target: format!(
                    "≤ 250 ms: {}",
                    if median(&p99s_all) <= 250.0 {
                        "met"
                    } else {
                        "NOT met"
                    }
                ),
                ..row(
                    &format!("latency p99 at {rate}/s, warm-up included (ms)"),
                    format!("{:.0}", median(&p99s_all)),
                    fmt_runs(&p99s_all),
                )
            },
        ])
    }

    // ------------------------------------------------------------ restore

    /// State at scale: `--restore-customers` states in the changelog; per
    /// run, a cold start with the memory store, a cold start with the disk
    /// store (no local store, as for a new pod), and a restart of that disk
    /// worker with its store intact. Ready = start → /readyz 200.
    fn restore(&self) -> Result<Vec<Row>> {
        let b = &self.args.bootstrap;
        let n = self.args.restore_customers;
        let names = self.input_names("r.in");
        create_topics(
            b,
            &names
                .inputs
                .iter()
                .map(|t| (t.as_str(), false))
                .collect::<Vec<_>>(),
        )?;
        let d = self.deployment("r", &names, &[])?;
        let started = Instant::now();
        let bytes = write_many_states(b, &d.changelog, n)?;
        println!(
            "restore: {n} states ({:.0} MiB of binary state records) written to the changelog in {:.1}s",
            bytes as f64 / 1048576.0,
            started.elapsed().as_secs_f64()
        );
        #[derive(Default)]
        struct Series {
            ready: Vec<f64>,
            rate: Vec<f64>,
            rss: Vec<f64>,
            /// Changelog records read (a restart).
            read: Vec<f64>,
            disk_mib: Vec<f64>,
        }
        let (mut memory, mut cold, mut warm) =
            (Series::default(), Series::default(), Series::default());
        // The last disk store, kept for the rebalance scenario.
        let mut kept: Option<PathBuf> = None;
        let mut ceilings = Vec::new();
        for run in 0..self.args.runs {
            for (kind, series) in [("memory", &mut memory), ("disk", &mut cold)] {
                // The ceiling of a restore on this machine, right before it.
                let ceiling = read_changelog(b, &d.changelog, n)?;
                println!(
                    "run {run}: plain read of the changelog before the {kind} store's cold start: {ceiling:.0} records/s (load {})",
                    loadavg()
                );
                ceilings.push(ceiling);
                let d = Deployment {
                    group: self.topic(&format!("r{run}{kind}")),
                    ..d.clone()
                };
                let dir = std::env::temp_dir().join(format!("{}-state", d.group));
                let _ = std::fs::remove_dir_all(&dir);
                let flags = vec![
                    format!("--state-store={kind}"),
                    format!("--state-dir={}", dir.display()),
                ];
                let run_once = |name: &str| -> Result<(f64, f64, u64, u64, u64)> {
                    let started = Instant::now();
                    let mut worker = Worker::start_with(&self.args, &d, name, &flags)?;
                    worker.wait_ready(Duration::from_secs(600))?;
                    let secs = started.elapsed().as_secs_f64();
                    let hwm = worker.peak_rss_mib()?;
                    worker.stop()?;
                    let (customers, millis, records) = worker.restored_records()?;
                    ensure!(
                        customers == n as u64,
                        "the worker holds {customers} customers, not {n}"
                    );
                    Ok((secs, hwm, customers, millis, records))
                };
                let (secs, hwm, _, millis, records) = run_once(&format!("r{run}"))?;
                let rate = records as f64 / (millis.max(1) as f64 / 1000.0);
                println!(
                    "run {run}: {kind} store, cold: ready after {secs:.1}s, {records} changelog records read in {:.1}s = {rate:.0} records/s, peak RSS {hwm:.0} MiB (load {})",
                    millis as f64 / 1000.0,
                    loadavg()
                );
                series.ready.push(secs);
                series.rate.push(rate);
                series.rss.push(hwm);
                if kind == "disk" {
                    let mib = dir_size(&dir) as f64 / 1048576.0;
                    println!(
                        "run {run}: disk store after the cold start: {mib:.0} MiB on disk ({:.0} bytes per customer)",
                        mib * 1048576.0 / n as f64
                    );
                    series.disk_mib.push(mib);
                    let (secs, hwm, _, _, records) = run_once(&format!("r{run}"))?;
                    println!(
                        "run {run}: disk store, restart with the store intact: ready after {secs:.1}s, {records} changelog records read, peak RSS {hwm:.0} MiB (load {})",
                        loadavg()
                    );
                    warm.ready.push(secs);
                    warm.rss.push(hwm);
                    warm.read.push(records as f64);
                    if run + 1 == self.args.runs && self.wants("rebalance") {
                        kept = Some(dir.clone());
                        continue;
                    }
                }
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        let fmt = |v: &[f64], d: usize| {
            v.iter()
                .map(|x| format!("{x:.d$}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        // One row: the median of `v` with `d` decimals, and every run.
        let measured =
            |label: &str, v: &[f64], d: usize| row(label, format!("{:.d$}", median(v)), fmt(v, d));
        let (cr, mr) = (median(&cold.rate), median(&memory.rate));
        let mut rebalance_rows = Vec::new();
        if let Some(dir) = &kept {
            for protocol in ["classic", "consumer"] {
                rebalance_rows.extend(self.rebalance(&d, dir, n, protocol)?);
            }
            let _ = std::fs::remove_dir_all(dir);
        }
        let ceiling = median(&ceilings);
        let mut rows = vec![
            Row {
                baseline: "—".into(),
                ratio: "1.00".into(),
                target: "the ceiling".into(),
                ..measured(
                    "plain read_committed consumer reading the changelog, no processing (records/s)",
                    &ceilings,
                    0,
                )
            },
            measured(
                &format!("{n} customers, memory store, cold start → /readyz 200 (s)"),
                &memory.ready,
                1,
            ),
            Row {
                baseline: "plain read".into(),
                ratio: format!("{:.2}", mr / ceiling.max(1.0)),
                ..measured(
                    "… restore rate, memory store (changelog records/s)",
                    &memory.rate,
                    0,
                )
            },
            measured("… peak RSS, memory store (MiB)", &memory.rss, 0),
            measured(
                &format!(
                    "{n} customers, disk store, cold start (no local store) → /readyz 200 (s)"
                ),
                &cold.ready,
                1,
            ),
            Row {
                baseline: "plain read".into(),
                ratio: format!("{:.2}", cr / ceiling.max(1.0)),
                target: format!("≥ 500,000: {}", met(cr >= 500_000.0)),
                ..measured(
                    "… cold restore rate, disk store (changelog records/s)",
                    &cold.rate,
                    0,
                )
            },
            Row {
                target: format!("≤ 1024 MiB: {}", met(median(&cold.rss) <= 1024.0)),
                ..measured("… peak RSS, disk store, cold start (MiB)", &cold.rss, 0)
            },
            measured(
                "… disk store size after the cold start (MiB)",
                &cold.disk_mib,
                0,
            ),
            Row {
                target: format!("≤ 5 s: {}", met(median(&warm.ready) <= 5.0)),
                ..measured(
                    "disk store, restart with the store intact → /readyz 200 (s)",
                    &warm.ready,
                    1,
                )
            },
            measured("… changelog records read on that restart", &warm.read, 0),
            Row {
                target: format!("≤ 1024 MiB: {}", met(median(&warm.rss) <= 1024.0)),
                ..measured("… peak RSS, disk store, restart (MiB)", &warm.rss, 0)
            },
        ];
        rows.extend(rebalance_rows);
        Ok(rows)
    }

    /// A second instance joins a group whose first instance holds the
    /// restore run's `n` customers (its disk store in `store`, intact), then
    /// leaves again, while probe inputs arrive at a steady rate on every
    /// partition. For each input sent around a rebalance: how long until its
    /// output was readable, for the partitions that stayed with the first
    /// instance and for those that moved.
    fn rebalance(
        &self,
        d: &Deployment,
        store: &Path,
        n: usize,
        protocol: &str,
    ) -> Result<Vec<Row>> {
        const RATE: usize = 100;
        let b = self.args.bootstrap.clone();
        let d = Deployment {
            group: self.topic(&format!("rb-{protocol}")),
            ..d.clone()
        };
        let tag = format!("rb{}", &protocol[..2]);
        // Enough probe input for the slowest scenario: the joining instance
        // restores half of the customers from scratch.
        let max_secs = 120 + n / 20_000;
        let w = workload(
            23,
            &tag,
            RATE * max_secs / EVENTS_PER_CUSTOMER,
            epoch_ms() as i64 - 30 * 60_000,
        );
        // Customers whose events need a prior state are left out: the probe
        // customers are new to the changelog.
        let with_prior: HashSet<String> = w
            .prior
            .iter()
            .filter_map(|l| decode_envelope(l.as_bytes()).ok().map(|e| e.customer_id))
            .collect();
        let events: Vec<Event> = w
            .events
            .into_iter()
            .filter(|e| !with_prior.contains(&e.key))
            .collect();
        let flags = |dir: &Path| {
            vec![
                "--state-store=disk".to_owned(),
                format!("--state-dir={}", dir.display()),
                format!("--group-protocol={protocol}"),
            ]
        };
        let b_dir = std::env::temp_dir().join(format!("{}-b-state", d.group));
        let _ = std::fs::remove_dir_all(&b_dir);
        let mut a = Worker::start_with(&self.args, &d, "a", &flags(store))?;
        a.wait_ready(Duration::from_secs(600))?;
        let (stop, done) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let reader = {
            let (b, topics, done) = (b.clone(), d.outputs.clone(), done.clone());
            std::thread::spawn(move || observe_outputs(&b, &topics, &done))
        };
        std::thread::sleep(Duration::from_secs(2)); // the reader is at the end
        let prober = {
            let (b, inputs, stop) = (b.clone(), d.inputs.clone(), stop.clone());
            let events: Vec<Event> = events
                .iter()
                .map(|e| Event {
                    role: e.role,
                    key: e.key.clone(),
                    id: e.id.clone(),
                    line: e.line.clone(),
                })
                .collect();
            std::thread::spawn(move || produce_paced_until(&b, &inputs, &events, RATE, Some(&stop)))
        };
        let all: Vec<i32> = (0..partition_count()).collect();
        let settle = |workers: &[&Worker], what: &str| -> Result<()> {
            let deadline = Instant::now() + Duration::from_secs(900);
            loop {
                let owned: Option<Vec<Vec<i32>>> = workers.iter().map(|w| w.owned()).collect();
                if let Some(owned) = owned {
                    let mut union: Vec<i32> = owned.concat();
                    union.sort_unstable();
                    if union == all {
                        return Ok(());
                    }
                }
                ensure!(
                    Instant::now() < deadline,
                    "{what}: the group did not settle in 900 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        std::thread::sleep(Duration::from_secs(5));
        let join_at = Instant::now();
        let mut bw = Worker::start_with(&self.args, &d, "b", &flags(&b_dir))?;
        bw.wait_ready(Duration::from_secs(900))?;
        settle(&[&a, &bw], "join")?;
        let joined = Instant::now();
        let a_kept = a
            .owned()
            .context("instance a is not ready after the join")?;
        let moved: Vec<i32> = all
            .iter()
            .copied()
            .filter(|p| !a_kept.contains(p))
            .collect();
        println!(
            "rebalance ({protocol}): instance b joined; a kept {a_kept:?}, b took {moved:?}; settled after {:.1}s (load {})",
            joined.duration_since(join_at).as_secs_f64(),
            loadavg()
        );
        let warm_up = bw.warmed_up()?;
        let b_rss = bw.peak_rss_mib()?;
        match warm_up {
            Some((records, millis)) => println!(
                "rebalance ({protocol}): b warmed its store before joining: {records} changelog records in {:.1}s; b's peak RSS {b_rss:.0} MiB",
                millis as f64 / 1000.0
            ),
            None => println!(
                "rebalance ({protocol}): b joined without a warm-up; b's peak RSS {b_rss:.0} MiB"
            ),
        }
        std::thread::sleep(Duration::from_secs(5));
        let leave_at = Instant::now();
        bw.stop()?;
        settle(&[&a], "leave")?;
        let left = Instant::now();
        println!(
            "rebalance ({protocol}): instance b left; a holds every partition again after {:.1}s (load {})",
            left.duration_since(leave_at).as_secs_f64(),
            loadavg()
        );
        std::thread::sleep(Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
        let sent = prober
            .join()
            .map_err(|_| anyhow::anyhow!("prober panicked"))??;
        done.store(true, Ordering::Relaxed);
        let seen = reader
            .join()
            .map_err(|_| anyhow::anyhow!("reader panicked"))??;
        a.stop()?;
        let _ = std::fs::remove_dir_all(&b_dir);

        // What the sent inputs should give, and that they gave it.
        let sent_ids: HashSet<&str> = sent.iter().map(|(id, _)| id.as_str()).collect();
        let sent_events: Vec<Event> = events
            .into_iter()
            .filter(|e| sent_ids.contains(e.id.as_str()))
            .collect();
        let keys: HashMap<String, String> = sent_events
            .iter()
            .map(|e| (e.id.clone(), e.key.clone()))
            .collect();
        let probe = Workload {
            prior: Vec::new(),
            prior_ids: HashSet::new(),
            events: sent_events,
        };
        let expected = oracle(&probe)?;
        let prefix = format!("C-{tag}-");
        let actual: Vec<Output> = read_outputs(&b, &d)?
            .into_iter()
            .filter(|(_, key, _)| key.starts_with(&prefix))
            .collect();
        verify_same(&actual, &expected)?;
        let causes: HashSet<&str> = expected
            .iter()
            .filter_map(|(_, _, v)| v["causationId"].as_str())
            .collect();
        // The longest wait for an output of an input sent in the window, on
        // the given partitions.
        let longest = |from: Instant, to: Instant, partitions: &[i32]| -> Result<f64> {
            let mut worst: f64 = 0.0;
            for (id, at) in &sent {
                if *at < from || *at > to || !causes.contains(id.as_str()) {
                    continue;
                }
                let key = keys.get(id).context("a sent id without its event")?;
                if !partitions.contains(&partition_for_key(key.as_bytes(), partition_count())) {
                    continue;
                }
                let out = seen
                    .get(id)
                    .with_context(|| format!("no output seen for {id}"))?;
                worst = worst.max(out.saturating_duration_since(*at).as_secs_f64());
            }
            Ok(worst)
        };
        let grace = Duration::from_secs(5);
        let join = (
            longest(join_at, joined + grace, &a_kept)?,
            longest(join_at, joined + grace, &moved)?,
        );
        let leave = (
            longest(leave_at, left + grace, &a_kept)?,
            longest(leave_at, left + grace, &moved)?,
        );
        println!(
            "rebalance ({protocol}): longest output wait on staying / moved partitions: join {:.1} s / {:.1} s, leave {:.1} s / {:.1} s",
            join.0, join.1, leave.0, leave.1
        );
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        let row_of = |label: String, secs: f64, target: &str, ok: bool| Row {
            target: format!("{target}: {}", met(ok)),
            ..row(&label, format!("{secs:.1}"), format!("{secs:.1}"))
        };
        Ok(vec![
            row_of(
                format!(
                    "{n} customers, {protocol} protocol: an instance joins — longest output wait, staying partitions (s)"
                ),
                join.0,
                "never stop (≤ 1 s)",
                join.0 <= 1.0,
            ),
            row_of(
                "… moved partitions (s)".into(),
                join.1,
                "≤ 10 s",
                join.1 <= 10.0,
            ),
            Row {
                target: format!(
                    "≤ 1024 MiB: {}",
                    if b_rss <= 1024.0 { "met" } else { "NOT met" }
                ),
                ..row(
                    "… the joining instance's warm-up before it joins, outside the group (s; changelog records read; its peak RSS)",
                    warm_up.map_or("none".into(), |(r, ms)| {
                        format!("{:.1} s; {r}; {b_rss:.0} MiB", ms as f64 / 1000.0)
                    }),
                    String::new(),
                )
            },
            row_of(
                format!(
                    "{n} customers, {protocol} protocol: the instance leaves — longest output wait, staying partitions (s)"
                ),
                leave.0,
                "never stop (≤ 1 s)",
                leave.0 <= 1.0,
            ),
            row_of(
                "… moved partitions (s)".into(),
                leave.1,
                "≤ 10 s",
                leave.1 <= 10.0,
            ),
        ])
    }
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

/// The reader's give-up time: the run's length plus a minute.
fn reader_timeout(total_events: usize) -> u64 {
    total_events as u64 / 1000 + 60
}

/// A million customers' states built by the engine from realistic journeys:
/// half terminated (death or fraud, three completions), a fifth pending
/// (a customer's request), some dismantling, some active again after a
/// withdrawal. Written straight to the changelog. Returns the bytes written.
fn write_many_states(b: &str, changelog: &str, n: usize) -> Result<usize> {
    let mut rng = StdRng::seed_from_u64(11);
    let base = epoch_ms() as i64 - 86_400_000;
    let producer = counting_producer(
        b,
        &[
            ("linger.ms", "50"),
            ("compression.type", "lz4"),
            ("batch.size", "1000000"),
        ],
    )?;
    let mut bytes = 0;
    for start in (0..n).step_by(10_000) {
        let mut engine = Engine::new(Arc::new(Policy::default()));
        for c in start..(start + 10_000).min(n) {
            let key = format!("C-r-{c}");
            let id = |i: usize| format!("{key}-e{i}");
            let at = |i: usize| base + (c as i64 % 86_400_000) + i as i64 * 60_000;
            let body = |extra: Value| {
                let mut v = json!({"customerId": key});
                if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
                    m.extend(e);
                }
                v
            };
            let tid = termination_id(&key, &id(0)).to_string();
            let done = |v: &str| body(json!({"terminationId": tid, "vertical": v}));
            let roll = rng.random_range(0..100);
            let script: Vec<(&str, Value)> = match roll {
                0..50 => vec![
                    if roll < 25 {
                        (
                            "CustomerDeceased",
                            body(json!({"evidenceRef": "death-cert"})),
                        )
                    } else {
                        ("FraudConfirmed", body(json!({"caseRef": "FR-1"})))
                    },
                    ("DismantleCompleted", done("billing")),
                    ("DismantleCompleted", done("fulfillment")),
                    ("DismantleCompleted", done("assurance")),
                ],
                50..70 => vec![(
                    "CustomerTerminationRequested",
                    body(json!({"erasureRequested": roll < 55})),
                )],
                70..85 => vec![
                    ("FraudConfirmed", body(json!({"caseRef": "FR-2"}))),
                    ("DismantleCompleted", done("billing")),
                ],
                _ => vec![
                    ("CustomerTerminationRequested", body(json!({}))),
                    ("CustomerTerminationWithdrawn", body(json!({}))),
                ],
            };
            for (i, (event_type, body)) in script.into_iter().enumerate() {
                let line = envelope(&id(i), event_type, at(i), body);
                let env = decode_envelope(line.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
                engine.handle(&env, env.event_time);
            }
            let state = engine.get(&key).context("no state built")?.to_bytes();
            bytes += state.len();
            let p = partition_for_key(key.as_bytes(), partition_count());
            send(
                &producer,
                BaseRecord::to(changelog)
                    .partition(p)
                    .key(key.as_bytes())
                    .payload(state.as_slice()),
            )?;
        }
        engine.commit();
    }
    producer.flush(Duration::from_secs(120))?;
    ensure!(
        producer.context().failed.load(Ordering::Relaxed) == 0,
        "changelog writes failed"
    );
    Ok(bytes)
}

// ---------------------------------------------------------------- the worker

#[derive(Clone)]
struct Deployment {
    inputs: [String; 3],
    outputs: [String; 3],
    dlq: String,
    changelog: String,
    group: String,
}

struct Worker {
    child: Child,
    admin: String,
    log: PathBuf,
}

impl Worker {
    fn start(args: &Args, d: &Deployment, name: &str) -> Result<Worker> {
        Worker::start_with(args, d, name, &[])
    }

    /// Like `start`, with extra flags (the store, its directory).
    fn start_with(args: &Args, d: &Deployment, name: &str, extra: &[String]) -> Result<Worker> {
        let (bin, bootstrap) = (&args.terminus, &args.bootstrap);
        let admin = free_port()?;
        let log = std::env::temp_dir().join(format!("{}-{name}.log", d.group));
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .args(["--bootstrap-servers", bootstrap])
            .args(["--group-id", &d.group, "--instance-id", name])
            .args(["--lifecycle-topic", &d.inputs[0]])
            .args(["--decisions-topic", &d.inputs[1]])
            .args(["--outcomes-topic", &d.inputs[2]])
            .args(["--status-topic", &d.outputs[0]])
            .args(["--dismantle-topic", &d.outputs[1]])
            .args(["--terminated-topic", &d.outputs[2]])
            .args(["--dead-letter-topic", &d.dlq])
            .args(["--changelog-topic", &d.changelog])
            .args(["--admin-addr", &admin, "--log-format", "json"])
            .args(&args.terminus_arg)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        // scripts/kafka's KAFKA_PORT and friends are not client settings.
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("KAFKA_")) {
            cmd.env_remove(k);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Worker { child, admin, log })
    }

    /// The input partitions it consumes, once ready (from `/readyz`:
    /// "consuming partitions [0, 1, 2]").
    fn owned(&self) -> Option<Vec<i32>> {
        let (code, body) = http_get(&self.admin, "/readyz")?;
        if code != 200 {
            return None;
        }
        let list = body.split('[').nth(1)?.split(']').next()?;
        list.split(',')
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().ok())
            .collect()
    }

    fn consumed(&self) -> Option<u64> {
        let (_, body) = http_get(&self.admin, "/metrics")?;
        Some(
            body.lines()
                .filter(|l| l.starts_with("terminus_events_consumed_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64,
        )
    }

    fn wait_ready(&mut self, max: Duration) -> Result<()> {
        let deadline = Instant::now() + max;
        while http_get(&self.admin, "/readyz").map(|r| r.0) != Some(200) {
            ensure!(
                self.child.try_wait()?.is_none(),
                "terminus exited; log {}",
                self.log.display()
            );
            ensure!(
                Instant::now() < deadline,
                "terminus not ready after {max:?}; log {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// CPU seconds (user + system) the worker has used so far.
    fn cpu_secs(&self) -> f64 {
        cpu_secs(&self.child.id().to_string())
    }

    fn peak_rss_mib(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM")?;
        Ok(kb / 1024.0)
    }

    /// (records, millis) of the worker's warm-up before it joined its group
    /// (its "state store warmed" log line), if it warmed up.
    fn warmed_up(&self) -> Result<Option<(u64, u64)>> {
        for line in std::fs::read_to_string(&self.log)?.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let f = v.get("fields").unwrap_or(&v);
            if f["message"] == "state store warmed; joining the group" {
                return Ok(Some((
                    f["records"].as_u64().unwrap_or(0),
                    f["millis"].as_u64().unwrap_or(0),
                )));
            }
        }
        Ok(None)
    }

    /// (customers, millis, changelog records read) summed over the worker's
    /// "partitions restored" log lines.
    fn restored_records(&self) -> Result<(u64, u64, u64)> {
        let mut total = (0, 0, 0);
        for line in std::fs::read_to_string(&self.log)?.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            // tracing's JSON: fields at the top level, or under "fields".
            let f = v.get("fields").unwrap_or(&v);
            if f["message"] == "partitions restored from the changelog" {
                total.0 += f["customers"].as_u64().unwrap_or(0);
                total.1 += f["millis"].as_u64().unwrap_or(0);
                total.2 += f["records"].as_u64().unwrap_or(0);
            }
        }
        Ok(total)
    }

    fn stop(&mut self) -> Result<()> {
        signal(&self.child, "-TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("terminus did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status();
}

fn free_port() -> Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

/// A bare HTTP/1.1 GET: (status, body), or None when nothing answers.
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

// ---------------------------------------------------------------- kafka

fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

#[derive(Default)]
struct Counting {
    failed: AtomicU64,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn counting_producer(b: &str, extra: &[(&str, &str)]) -> Result<BaseProducer<Counting>> {
    let mut c = config(b);
    c.set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "1000000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    Ok(c.create_with_context(Counting::default())?)
}

/// librdkafka's own flush: sends what lingers at once and waits until every
/// record is acknowledged. (rdkafka's `Producer::flush` polls in steps that
/// each last their full 100 ms, so it takes at least 100 ms: far too slow to
/// stand for a transaction commit's flush.)
fn flush_now(p: &ThreadedProducer<Counting>) -> Result<()> {
    // SAFETY: the pointer is the live producer's; rd_kafka_flush is thread-safe.
    let err = unsafe { rdkafka::bindings::rd_kafka_flush(p.client().native_ptr(), 30_000) };
    ensure!(
        err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
        "flush: {err:?}"
    );
    Ok(())
}

/// Enqueues a record, waiting out a full local queue.
fn send(p: &BaseProducer<Counting>, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                p.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// Each event to its input topic, keyed by customer (murmur2, as Java clients).
fn produce_events(b: &str, names: &Names, events: &[Event]) -> Result<()> {
    let p = counting_producer(b, &[("linger.ms", "20"), ("compression.type", "lz4")])?;
    for e in events {
        let topic = &names.inputs[INPUTS.iter().position(|r| *r == e.role).unwrap_or(0)];
        send(
            &p,
            BaseRecord::to(topic)
                .key(e.key.as_bytes())
                .payload(e.line.as_bytes()),
        )?;
    }
    p.flush(Duration::from_secs(120))?;
    ensure!(
        p.context().failed.load(Ordering::Relaxed) == 0,
        "input deliveries failed"
    );
    Ok(())
}

fn produce_states<'a>(
    b: &str,
    topic: &str,
    states: impl Iterator<Item = (i32, &'a str, &'a [u8])>,
) -> Result<()> {
    let p = counting_producer(b, &[("linger.ms", "20"), ("compression.type", "lz4")])?;
    for (partition, key, value) in states {
        send(
            &p,
            BaseRecord::to(topic)
                .partition(partition)
                .key(key.as_bytes())
                .payload(value),
        )?;
    }
    p.flush(Duration::from_secs(120))?;
    ensure!(
        p.context().failed.load(Ordering::Relaxed) == 0,
        "changelog deliveries failed"
    );
    Ok(())
}

/// Produces the events at `rate` per second, evenly spaced; returns when
/// each was handed to the producer.
fn produce_paced(
    b: &str,
    names: &Names,
    events: &[Event],
    rate: usize,
) -> Result<Vec<(String, Instant)>> {
    produce_paced_until(b, &names.inputs, events, rate, None)
}

/// As [`produce_paced`], stopping early once `stop` is set.
fn produce_paced_until(
    b: &str,
    inputs: &[String; 3],
    events: &[Event],
    rate: usize,
    stop: Option<&AtomicBool>,
) -> Result<Vec<(String, Instant)>> {
    let p = counting_producer(b, &[])?;
    // The harness's own producer connects and learns the input topics before
    // the clock starts: its start-up is not Terminus's latency.
    for topic in inputs {
        p.client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("metadata of {topic}"))?;
    }
    let start = Instant::now();
    let mut sent = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            break;
        }
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let topic = &inputs[INPUTS.iter().position(|r| *r == e.role).unwrap_or(0)];
        sent.push((e.id.clone(), Instant::now()));
        send(
            &p,
            BaseRecord::to(topic)
                .key(e.key.as_bytes())
                .payload(e.line.as_bytes()),
        )?;
        p.poll(Duration::ZERO);
    }
    let secs = start.elapsed().as_secs_f64();
    p.flush(Duration::from_secs(60))?;
    ensure!(
        p.context().failed.load(Ordering::Relaxed) == 0,
        "input deliveries failed"
    );
    ensure!(
        secs < sent.len() as f64 / rate as f64 * 1.05 + 1.0,
        "the producer fell behind: {} events took {secs:.1}s",
        sent.len()
    );
    Ok(sent)
}

/// A read_committed consumer of every partition of `topics` from the
/// beginning, that hands records over as soon as they are committed.
fn output_reader(b: &str, topics: &[String], group: &str) -> Result<BaseConsumer> {
    let c: BaseConsumer = config(b)
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..partition_count() {
            tpl.add_partition_offset(t, p, Offset::Beginning)?;
        }
    }
    c.assign(&tpl)?;
    Ok(c)
}

/// Reads `topics` read_committed and notes when each causationId was first
/// seen, until `done` is set and nothing new came for two seconds.
fn observe_outputs(
    b: &str,
    topics: &[String],
    done: &AtomicBool,
) -> Result<HashMap<String, Instant>> {
    let c = output_reader(b, topics, "bench-rebalance-reader")?;
    let mut seen = HashMap::new();
    let mut last_new = Instant::now();
    while !(done.load(Ordering::Relaxed) && last_new.elapsed() > Duration::from_secs(2)) {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m?;
            let at = Instant::now();
            let v: Value = serde_json::from_slice(m.payload().unwrap_or_default())?;
            let cause = v["causationId"].as_str().unwrap_or_default();
            if !seen.contains_key(cause) {
                seen.insert(cause.to_owned(), at);
                last_new = at;
            }
        }
    }
    Ok(seen)
}

/// Reads `topics` read_committed as outputs appear; returns when each id in
/// `wanted` was first seen as a causationId.
fn first_seen(
    b: &str,
    topics: &[String],
    mut wanted: HashSet<String>,
    max: Duration,
) -> Result<HashMap<String, Instant>> {
    let c = output_reader(b, topics, "bench-latency-reader")?;
    let deadline = Instant::now() + max;
    let mut seen = HashMap::new();
    while !wanted.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "{} inputs never got their output",
            wanted.len()
        );
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m?;
            let at = Instant::now();
            let v: Value = serde_json::from_slice(m.payload().unwrap_or_default())?;
            let cause = v["causationId"].as_str().unwrap_or_default();
            if wanted.remove(cause) {
                seen.insert(cause.to_owned(), at);
            }
        }
    }
    Ok(seen)
}

/// Every committed record of `topic` from the beginning to its end, each
/// value parsed as JSON and handed to `f`; returns the count.
fn read_all(b: &str, topic: &str, mut f: impl FnMut(Value)) -> Result<usize> {
    let c: BaseConsumer = config(b)
        .set("group.id", "bench-reader")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partition_count() {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut at_end = HashSet::new();
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while at_end.len() < partition_count() as usize {
        ensure!(Instant::now() < deadline, "reading {topic} took too long");
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                f(serde_json::from_slice(m.payload().unwrap_or_default())?);
                count += 1;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Ok(count)
}

fn read_outputs(b: &str, d: &Deployment) -> Result<Vec<Output>> {
    let mut all = Vec::new();
    for (role, topic) in OUTPUTS.iter().zip(&d.outputs) {
        read_all(b, topic, |v| {
            let key = v["event"]["customerId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            all.push(((*role).to_owned(), key, v));
        })?;
    }
    Ok(all)
}

/// (topic, partition, end offset) of every partition of `topics`.
/// Reads every record of `changelog` (`n` expected at least) as the
/// worker's restore consumer does (read_committed, the same fetch sizes) and
/// does nothing with them: records/s from the first record to the end of
/// the last partition.
fn read_changelog(b: &str, changelog: &str, n: usize) -> Result<f64> {
    let c: BaseConsumer = config(b)
        .set("group.id", format!("{changelog}-plain-read"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "10")
        .set("max.partition.fetch.bytes", "8388608")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partition_count() {
        tpl.add_partition_offset(changelog, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let (mut records, mut bytes, mut ended) = (0usize, 0usize, HashSet::new());
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while ended.len() < partition_count() as usize {
        ensure!(
            Instant::now() < deadline,
            "the changelog was not read to its end"
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                records += 1;
                bytes += m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len);
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    ensure!(
        records >= n && bytes > 0,
        "the plain read found {records} changelog records, not {n}"
    );
    Ok(records as f64 / secs.max(1e-3))
}

fn end_offsets(b: &str, topics: &[String]) -> Result<Vec<(String, i32, i64)>> {
    let c: BaseConsumer = config(b).create()?;
    let mut ends = Vec::new();
    for t in topics {
        for p in 0..partition_count() {
            let (_, high) = c.fetch_watermarks(t, p, Duration::from_secs(10))?;
            ends.push((t.clone(), p, high));
        }
    }
    Ok(ends)
}

/// Polls `group`'s committed offsets until they reach `ends`; returns that
/// moment (ms since the epoch).
fn wait_committed(
    b: &str,
    group: &str,
    ends: &[(String, i32, i64)],
    max: Duration,
) -> Result<u128> {
    let c: BaseConsumer = config(b).set("group.id", group).create()?;
    let mut tpl = TopicPartitionList::new();
    for (t, p, _) in ends {
        tpl.add_partition(t, *p);
    }
    let deadline = Instant::now() + max;
    loop {
        if let Ok(committed) = c.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            let done = ends.iter().all(|(t, p, end)| {
                matches!(committed.find_partition(t, *p).map(|e| e.offset()), Some(Offset::Offset(o)) if o >= *end)
            });
            if done {
                return Ok(epoch_ms());
            }
        }
        ensure!(
            Instant::now() < deadline,
            "group {group} did not commit its input within {max:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How a throughput run's worker stores state and how many processing
/// tasks it runs.
#[derive(Clone, Copy)]
struct Setup {
    store: &'static str,
    tasks: usize,
}

impl Setup {
    fn disk(tasks: usize) -> Setup {
        Setup {
            store: "disk",
            tasks,
        }
    }

    fn memory() -> Setup {
        Setup {
            store: "memory",
            tasks: 1,
        }
    }
}

/// Creates (name, compacted) topics with six partitions and waits for their leaders.
fn create_topics(b: &str, topics: &[(&str, bool)]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config(b).create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(t, compact)| {
            let nt = NewTopic::new(t, partition_count(), TopicReplication::Fixed(1));
            if *compact {
                nt.set("cleanup.policy", "compact")
            } else {
                nt
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in futures::executor::block_on(admin.create_topics(&new, &opts))? {
        if let Err((t, code)) = r {
            ensure!(
                code == RDKafkaErrorCode::TopicAlreadyExists,
                "creating {t}: {code}"
            );
        }
    }
    let c: BaseConsumer = config(b).create()?;
    for (t, _) in topics {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let md = c.fetch_metadata(Some(t), Duration::from_secs(5))?;
            if md.topics().iter().any(|m| {
                m.partitions().len() == partition_count() as usize
                    && m.partitions().iter().all(|p| p.leader() >= 0)
            }) {
                break;
            }
            ensure!(Instant::now() < deadline, "topic {t} has no leaders");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// Deletes every topic named `prefix…` (including the peer's internal ones).
fn delete_topics_with_prefix(b: &str, prefix: &str) {
    let Ok(c) = config(b).create::<BaseConsumer>() else {
        return;
    };
    let Ok(md) = c.fetch_metadata(None, Duration::from_secs(10)) else {
        return;
    };
    let names: Vec<&str> = md
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|n| n.starts_with(prefix))
        .collect();
    if let Ok(admin) = config(b).create::<AdminClient<DefaultClientContext>>() {
        let _ = futures::executor::block_on(admin.delete_topics(&names, &AdminOptions::new()));
    }
}

// ---------------------------------------------------------------- small things

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// (p50, p99, max) by nearest rank; NaN when empty.
fn percentiles(v: &mut [f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let pct = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    (pct(0.50), pct(0.99), v[v.len() - 1])
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// CPU seconds the whole machine spent busy (not idle or waiting) since boot.
fn machine_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...; 100 ticks a second.
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    (ticks.iter().sum::<f64>() - idle) / 100.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU seconds (user + system) process `pid` (or `self`) has used so far.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised name: state is 3rd, utime 14th, stime 15th.
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or_default();
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}
