//! Throughput of the domain core, without Kafka or JSON decoding: how many
//! state transitions per second one core performs.
//!
//! A *transition* is one step that changes a customer's state: an event applied
//! or a timer fired. The journey of one customer is five of them: the request,
//! its effective timer (three `DismantleSolution`s), and three completions (the
//! last one publishing `RelationshipTerminated`).
//!
//! Run with `cargo bench --bench core`. Besides criterion's report, the bench
//! prints a plain `transitions/s` figure per scenario, per CPU-second of the
//! benchmark thread (so a busy machine does not halve it) and per wall-clock
//! second; the target is at least 1,000,000 per second on one core.
//! `cargo bench --bench core -- --quick` for a fast look, `-- nomatch` for the
//! figures alone. Decoding and encoding JSON are measured separately
//! (`contract/*`): they are not part of the core.

use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use terminus::contract::{InputEnvelope, decode_envelope};
use terminus::domain::{CustomerState, Input, Policy, decide, ids};
use terminus::engine::{Engine, StateStore};
use terminus::store::DiskDb;
use terminus::time::Timestamp;

const CUSTOMERS: usize = 10_000;
const TRANSITIONS_PER_JOURNEY: u64 = 5;
const VERTICALS: [&str; 3] = ["billing", "fulfillment", "assurance"];

fn t0() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-27T10:15:00Z").expect("time")
}

fn envelope(
    event_id: &str,
    event_type: &str,
    at: Timestamp,
    customer: &str,
    body: serde_json::Value,
) -> InputEnvelope {
    let mut event = json!({ "customerId": customer });
    if let serde_json::Value::Object(fields) = body {
        event.as_object_mut().expect("object").extend(fields);
    }
    let text = json!({
        "eventId": event_id,
        "eventType": event_type,
        "eventTime": at.to_rfc3339(),
        "correlationId": format!("corr-{event_id}"),
        "event": event,
    })
    .to_string();
    decode_envelope(text.as_bytes()).expect("bench events decode")
}

/// Decoded events for `n` customers' journeys: the requests (all at t0), and
/// the completions (after the effective time).
struct Journeys {
    requests: Vec<InputEnvelope>,
    completions: Vec<InputEnvelope>,
    effective: Timestamp,
    done_at: Timestamp,
}

fn journeys(n: usize) -> Journeys {
    let effective = t0().plus(Duration::from_secs(14 * 86_400));
    let done_at = effective.plus(Duration::from_secs(3600));
    let mut requests = Vec::with_capacity(n);
    let mut completions = Vec::with_capacity(3 * n);
    for i in 0..n {
        let customer = format!("C-{i:07}");
        let request_id = format!("req-{i}");
        let tid = ids::termination_id(&customer, &request_id).to_string();
        requests.push(envelope(
            &request_id,
            "CustomerTerminationRequested",
            t0(),
            &customer,
            json!({}),
        ));
        for v in VERTICALS {
            completions.push(envelope(
                &format!("{v}-{i}"),
                "DismantleCompleted",
                done_at,
                &customer,
                json!({"terminationId": tid, "vertical": v}),
            ));
        }
    }
    Journeys {
        requests,
        completions,
        effective,
        done_at,
    }
}

/// One full run of every journey through an engine; returns the outputs count.
fn run_engine(j: &Journeys, policy: &Arc<Policy>) -> usize {
    run_journeys(j, &mut Engine::new(Arc::clone(policy)), false)
}

/// Every journey through `engine`, committed batch by batch; with
/// `encode`, each batch's states are encoded for the changelog first, as the
/// worker does.
fn run_journeys<S: StateStore>(j: &Journeys, engine: &mut Engine<S>, encode: bool) -> usize {
    let mut outputs = 0;
    let commit = |engine: &mut Engine<S>| {
        if encode {
            black_box(engine.encoded_changes().len());
        }
        engine.commit();
    };
    for env in &j.requests {
        outputs += engine.handle(env, t0()).outputs.len();
    }
    commit(engine);
    outputs += engine.fire_due(j.effective).len();
    commit(engine);
    for env in &j.completions {
        outputs += engine.handle(env, j.done_at).outputs.len();
    }
    commit(engine);
    outputs
}

/// One journey through `decide` alone, state passed from step to step.
fn run_decide(j: &Journeys, i: usize, policy: &Policy) -> usize {
    let req = &j.requests[i];
    let key = req.customer_id.as_str();
    let d = decide(key, None, Input::Event(req), t0(), policy);
    let mut outputs = d.outputs.len();
    let d = decide(key, d.state, Input::Timers, j.effective, policy);
    outputs += d.outputs.len();
    let mut state = d.state;
    for env in &j.completions[3 * i..3 * i + 3] {
        let d = decide(key, state, Input::Event(env), j.done_at, policy);
        outputs += d.outputs.len();
        state = d.state;
    }
    outputs
}

fn dismantling_state(j: &Journeys, policy: &Policy) -> CustomerState {
    let req = &j.requests[0];
    let d = decide(&req.customer_id, None, Input::Event(req), t0(), policy);
    let d = decide(
        &req.customer_id,
        d.state,
        Input::Timers,
        j.effective,
        policy,
    );
    d.state.expect("dismantling")
}

fn bench(c: &mut Criterion) {
    let policy = Arc::new(Policy::default());
    let j = journeys(CUSTOMERS);

    let mut group = c.benchmark_group("journeys");
    group.throughput(Throughput::Elements(
        CUSTOMERS as u64 * TRANSITIONS_PER_JOURNEY,
    ));
    group.sample_size(20);
    group.bench_function("engine_10k_customers", |b| {
        b.iter(|| black_box(run_engine(&j, &policy)));
    });
    group.bench_function("decide_10k_customers", |b| {
        b.iter(|| {
            let mut n = 0;
            for i in 0..CUSTOMERS {
                n += run_decide(&j, i, &policy);
            }
            black_box(n)
        });
    });
    group.finish();

    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(1));
    let req = &j.requests[0];
    group.bench_function("request_on_new_customer", |b| {
        b.iter(|| {
            black_box(decide(
                &req.customer_id,
                None,
                Input::Event(black_box(req)),
                t0(),
                &policy,
            ))
        });
    });
    let dismantling = dismantling_state(&j, &policy);
    let completion = &j.completions[0];
    group.bench_function("completion_while_dismantling", |b| {
        b.iter_batched(
            || Some(dismantling.clone()),
            |state| {
                black_box(decide(
                    &completion.customer_id,
                    state,
                    Input::Event(completion),
                    j.done_at,
                    &policy,
                ))
            },
            BatchSize::SmallInput,
        );
    });
    let pending = decide(&req.customer_id, None, Input::Event(req), t0(), &policy).state;
    group.bench_function("effective_timer", |b| {
        b.iter_batched(
            || pending.clone(),
            |state| {
                black_box(decide(
                    &req.customer_id,
                    state,
                    Input::Timers,
                    j.effective,
                    &policy,
                ))
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("duplicate", |b| {
        b.iter_batched(
            || pending.clone(),
            |state| {
                black_box(decide(
                    &req.customer_id,
                    state,
                    Input::Event(req),
                    t0(),
                    &policy,
                ))
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();

    let mut group = c.benchmark_group("contract");
    group.throughput(Throughput::Elements(1));
    let text = br#"{"eventId":"bill-1","eventType":"DismantleCompleted","eventTime":"2026-12-11T11:15:00Z","correlationId":"corr-1","event":{"customerId":"C-0000001","terminationId":"5a93143e-b7ce-5eda-81e5-4acf3520c15e","vertical":"billing"}}"#;
    group.bench_function("decode_envelope", |b| {
        b.iter(|| black_box(decode_envelope(black_box(text))))
    });
    let d = decide(&req.customer_id, None, Input::Event(req), t0(), &policy);
    group.bench_function("encode_output", |b| {
        b.iter(|| black_box(d.outputs[0].to_json()))
    });
    group.finish();
}

/// CPU time of this thread (Linux), so the figure means "on one core" even on
/// a machine busy with other work; wall time elsewhere.
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// The headline figures, measured plainly for about two seconds each.
fn print_rates() {
    let policy = Arc::new(Policy::default());
    let j = journeys(CUSTOMERS);
    let transitions = CUSTOMERS as u64 * TRANSITIONS_PER_JOURNEY;
    let rate = |name: &str, f: &mut dyn FnMut() -> usize| {
        black_box(f()); // warm up
        let wall = Instant::now();
        let cpu = thread_cpu_time();
        let mut rounds = 0u64;
        while wall.elapsed() < Duration::from_secs(2) {
            black_box(f());
            rounds += 1;
        }
        let done = (rounds * transitions) as f64;
        let wall_rate = done / wall.elapsed().as_secs_f64();
        match (cpu, thread_cpu_time()) {
            (Some(start), Some(end)) => {
                let cpu_rate = done / (end - start).as_secs_f64();
                println!(
                    "{name:<46} {cpu_rate:>10.0} transitions/s per CPU-second ({wall_rate:.0}/s wall)"
                );
            }
            _ => println!("{name:<46} {wall_rate:>10.0} transitions/s (wall)"),
        }
    };
    println!();
    println!(
        "core throughput, one thread, {CUSTOMERS} customers x {TRANSITIONS_PER_JOURNEY} transitions (request, effective timer, 3 completions):"
    );
    rate("engine (store, timer index, undo log)", &mut || {
        run_engine(&j, &policy)
    });
    // The stores behind the seam, as the worker uses them: states encoded
    // for the changelog at each commit. The disk store is wiped before each
    // round so that every journey starts anew, as a new engine does.
    rate("engine, memory store, changelog encoding", &mut || {
        run_journeys(&j, &mut Engine::new(Arc::clone(&policy)), true)
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let db = DiskDb::open(dir.path(), "bench").expect("disk store");
    let mut disk = Engine::with_store(Arc::clone(&policy), db.partition(0).expect("partition"));
    rate(
        "engine, disk store (fjall), changelog encoding",
        &mut || {
            disk.store_mut().wipe().expect("wipe");
            run_journeys(&j, &mut disk, true)
        },
    );
    rate("decide alone", &mut || {
        (0..CUSTOMERS).map(|i| run_decide(&j, i, &policy)).sum()
    });
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` runs each benchmark
    // once as a test and skips the figures.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list") {
        print_rates();
    }
}
