//! The disk store against the real broker: a restart reads only the
//! changelog after the store's checkpoint, another instance's writes meanwhile
//! are read as that tail, and a store that cannot be trusted (torn files, a
//! changelog recreated under it) is rebuilt from the changelog. Outputs
//! always equal the simulator's.

mod common;

use common::rig::{PARTITIONS, Rig, assert_same_outputs, envelope, journeys, simulate, stop};
use common::{delete_topics, free_port, http, wait_for};
use std::collections::BTreeSet;
use std::time::Duration;

/// One "partitions restored" line of an instance's log: one restore round.
#[derive(Debug, Clone, PartialEq)]
struct Round {
    partitions: BTreeSet<i32>,
    /// The partitions of the round that were read from their checkpoint.
    from_checkpoint: BTreeSet<i32>,
    /// Changelog records read.
    records: u64,
}

/// The partitions of a logged list such as "[2, 0, 1]".
fn numbers(list: &str) -> BTreeSet<i32> {
    list.trim_matches(['[', ']'])
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// Every restore round of `instance` so far, oldest first.
fn restores(rig: &Rig, instance: &str) -> Vec<Round> {
    restores_since(rig, instance, 0)
}

/// Where the next incarnation of `instance` starts in its log. A run may be
/// assigned its partitions more than once (CI saw a second round in a first
/// run), so each run's rounds are told apart by where its log began.
fn log_mark(rig: &Rig, instance: &str) -> usize {
    log_of(rig, instance).len()
}

/// The restore rounds `instance` logged after `mark`, oldest first.
fn restores_since(rig: &Rig, instance: &str, mark: usize) -> Vec<Round> {
    let log = log_of(rig, instance);
    log.get(mark..)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "partitions restored from the changelog")
        .map(|v| Round {
            partitions: numbers(v["partitions"].as_str().unwrap_or_default()),
            from_checkpoint: numbers(v["from_checkpoint"].as_str().unwrap_or_default()),
            records: v["records"].as_u64().unwrap_or(0),
        })
        .collect()
}

fn all_partitions() -> BTreeSet<i32> {
    (0..PARTITIONS).collect()
}

fn log_of(rig: &Rig, instance: &str) -> String {
    std::fs::read_to_string(rig.log_dir.join(format!("{instance}.log"))).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reads_only_what_came_after_the_checkpoint() {
    let rig = Rig::new("store-tail").await;
    let phases = journeys(31, 60, 9);
    let (first, rest) = phases.split_at(3);
    let (middle, last) = rest.split_at(3);
    let mut a = rig.spawn("a");
    rig.feed(first).await;
    stop(&mut a);
    assert!(!restores(&rig, "a").is_empty(), "the first run restored");

    // A clean restart: everything is in the store already. Every round of
    // this run, a rebalance's included, starts from the checkpoint.
    let mark = log_mark(&rig, "a");
    let mut a = rig.spawn("a");
    rig.wait_caught_up(Duration::from_secs(120)).await;
    rig.feed(middle).await;
    stop(&mut a);
    let restart = restores_since(&rig, "a", mark);
    assert!(!restart.is_empty(), "the restart restored");
    assert_eq!(
        (&restart[0].from_checkpoint, restart[0].records),
        (&all_partitions(), 0),
        "a clean restart reads nothing but the checkpoint records: {restart:?}"
    );
    assert!(
        restart.iter().all(|r| r.from_checkpoint == r.partitions),
        "a store is kept across a revocation: {restart:?}"
    );

    // Another instance works while `a` is away; `a` then reads its writes
    // as the tail after its own checkpoint.
    let mut b = rig.spawn("b");
    let (during, after) = last.split_at(last.len() / 2);
    rig.feed(during).await;
    stop(&mut b);
    let by_b = restores(&rig, "b");
    assert!(!by_b.is_empty(), "b restored");
    assert_eq!(
        (&by_b[0].partitions, by_b[0].from_checkpoint.len()),
        (&all_partitions(), 0),
        "b has no store and reads the whole changelog: {by_b:?}"
    );
    let whole_changelog = by_b[0].records;
    let mark = log_mark(&rig, "a");
    let mut a = rig.spawn("a");
    rig.feed(after).await;
    let actual = rig.outputs().await;
    stop(&mut a);
    let back = restores_since(&rig, "a", mark);
    assert!(!back.is_empty(), "a restored on its return");
    assert_eq!(
        back[0].from_checkpoint,
        all_partitions(),
        "restored from the checkpoint: {back:?}"
    );
    assert!(
        back[0].records > 0,
        "b's changelog records are read: {back:?}"
    );
    assert!(
        back[0].records < whole_changelog,
        "only the tail is read ({} records), not the whole changelog ({whole_changelog} when b started)",
        back[0].records,
    );
    assert_same_outputs(&actual, &simulate(&phases.concat()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_store_directory_is_rebuilt_from_the_changelog() {
    let rig = Rig::new("store-torn").await;
    let phases = journeys(32, 50, 6);
    let (first, rest) = phases.split_at(3);
    let mut a = rig.spawn("a");
    rig.feed(first).await;
    stop(&mut a);
    // Tear every file of the store: truncate each to half, garbage after.
    let dir = rig.state_dir("a");
    let mut torn = 0;
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("state dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "lock") {
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let mut bytes = std::fs::read(&path).unwrap_or_default();
                bytes.truncate((len / 2) as usize);
                bytes.extend_from_slice(&[0xa5; 64]);
                std::fs::write(&path, bytes).expect("tear");
                torn += 1;
            }
        }
    }
    assert!(torn > 0, "the store wrote files under {}", dir.display());
    let mark = log_mark(&rig, "a");
    let mut a = rig.spawn("a");
    rig.feed(rest).await;
    let actual = rig.outputs().await;
    stop(&mut a);
    let log = log_of(&rig, "a");
    assert!(
        log.contains("state directory wiped") || log.contains("partition store cleared"),
        "the torn store is noticed and rebuilt: {:?}",
        restores(&rig, "a")
    );
    let rebuilt = restores_since(&rig, "a", mark);
    assert_eq!(
        rebuilt.first().map(|r| r.from_checkpoint.len()),
        Some(0),
        "read in full, not from a checkpoint: {rebuilt:?}"
    );
    assert_same_outputs(&actual, &simulate(&phases.concat()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outlives_its_changelog_and_is_not_trusted() {
    let rig = Rig::new("store-recreated").await;
    let phases = journeys(33, 40, 4);
    let events = phases.concat();
    let mut a = rig.spawn("a");
    rig.feed(&phases).await;
    stop(&mut a);
    // The operator deletes and recreates every topic under the same names
    // (a new environment, a reset): the old store describes nothing of it.
    let (inputs, outputs) = rig.topic_roles();
    let changelog = rig.topic("changelog");
    let mut all: Vec<&str> = inputs.iter().chain(&outputs).map(String::as_str).collect();
    all.push(&changelog);
    delete_topics(&all).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    common::create_topics(&inputs, PARTITIONS, &[]).await;
    common::create_topics(
        &[changelog.as_str()],
        PARTITIONS,
        &[("cleanup.policy", "compact")],
    )
    .await;
    let outputs: Vec<&str> = outputs.iter().map(String::as_str).collect();
    common::create_topics(&outputs, PARTITIONS, &[]).await;
    // The same events again: with the old store trusted they would all be
    // duplicates, and nothing would come out.
    let mut a = rig.spawn("a");
    rig.feed(&phases).await;
    let actual = rig.outputs().await;
    stop(&mut a);
    let log = log_of(&rig, "a");
    assert!(
        log.contains("partition store cleared"),
        "the stale store is cleared: {:?}",
        restores(&rig, "a")
    );
    let expected = simulate(&events);
    assert!(!expected.is_empty());
    assert_same_outputs(&actual, &expected);
}

/// SIGKILL the moment a transaction of due timers commits, when the worker
/// is writing that batch to its store: each restart finds the store at some
/// earlier committed checkpoint, reads the rest from the changelog, and the
/// outputs equal the simulator's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_the_store_is_written_loses_and_duplicates_nothing() {
    use terminus::domain::{Policy, Rule};
    use terminus::time::{Period, Timestamp};
    let mut rig = Rig::new("store-kill").await;
    rig.extra_args = vec![
        "--customer-notice".into(),
        "4s".into(),
        "--timers-per-transaction".into(),
        "300".into(),
        "--static-membership".into(),
        "true".into(),
    ];
    let now = Timestamp::now().millis();
    let customers = 3000;
    let events: Vec<String> = (0..customers)
        .map(|c| {
            common::rig::envelope(
                &format!("sk-{c}"),
                "CustomerTerminationRequested",
                &common::rig::at(now, 0),
                serde_json::json!({"customerId": format!("SK-{c}")}),
            )
        })
        .collect();
    let killer = {
        let rig = rig.clone();
        tokio::task::spawn_blocking(move || {
            let timer_commits = |rig: &Rig| {
                log_of(rig, "a")
                    .lines()
                    .filter(|l| l.contains("transaction committed"))
                    .filter(|l| !l.contains("\"timer_customers\":0"))
                    .count()
            };
            let mut worker = rig.spawn("a");
            let mut first_run_ends = None;
            let mut kills = 0;
            let deadline = std::time::Instant::now() + Duration::from_secs(90);
            while kills < 6 && std::time::Instant::now() < deadline {
                let seen = timer_commits(&rig);
                while timer_commits(&rig) == seen && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                worker.kill().expect("SIGKILL");
                let _ = worker.wait();
                kills += 1;
                first_run_ends.get_or_insert_with(|| log_mark(&rig, "a"));
                worker = rig.spawn("a");
            }
            (worker, kills, first_run_ends.unwrap_or(0))
        })
    };
    rig.produce(&events).await;
    let (mut worker, kills, first_run_ends) = killer.await.expect("killer");
    assert_eq!(kills, 6, "six transactions of timers were seen and killed");
    // Every customer dismantled: three instructions each.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        let d = common::consume_until_idle(
            &rig.topic("dismantle"),
            Duration::from_millis(300),
            Duration::from_secs(20),
        )
        .await;
        if d.len() >= customers * 3 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    rig.wait_caught_up(Duration::from_secs(60)).await;
    let actual = rig.outputs().await;
    stop(&mut worker);
    let restarts = restores_since(&rig, "a", first_run_ends);
    assert!(
        restarts.len() >= kills,
        "each restart restored: {restarts:?}"
    );
    assert!(
        restarts
            .iter()
            .all(|r| r.from_checkpoint == all_partitions()),
        "every restart used its store: {restarts:?}"
    );
    assert!(
        restarts.iter().any(|r| r.records > 0),
        "some kill landed between the Kafka commit and the store write (the restart read the difference): {restarts:?}"
    );
    let policy = Policy::with_default(Rule {
        customer_notice: Period::exact(Duration::from_secs(4)),
        ..Rule::default()
    });
    let until = Timestamp::from_millis(now + 120_000);
    assert_same_outputs(
        &actual,
        &common::rig::simulate_with(&events, policy, Some(until)),
    );
}

/// Changelog records written straight to one partition, as a previous owner
/// with many customers would have left them.
fn preload_changelog(topic: &str, partition: i32, records: usize) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = common::client_config()
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .create()
        .expect("changelog producer");
    let state = terminus::domain::CustomerState::default().to_bytes();
    for i in 0..records {
        let key = format!("R-{i}");
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .partition(partition)
            .key(key.as_bytes())
            .payload(state.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("changelog preloaded");
}

/// A restore is read between polls of the input, with the restoring
/// partition paused: the partitions whose state is ready are processed and
/// committed while a long restore of another partition is still under way
/// (a restore inside the rebalance callback would hold them all until it
/// ended, and could outlast `max.poll.interval.ms`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_partitions_flow_while_another_partition_restores() {
    let rig = Rig::new("store-slow-restore").await;
    let slow = 2;
    preload_changelog(&rig.topic("changelog"), slow, 300_000);
    // Journeys of customers whose input goes to the other partitions; the
    // first phase arrives while the slow partition restores.
    let phases: Vec<Vec<String>> = journeys(34, 60, 4)
        .into_iter()
        .map(|phase| {
            phase
                .into_iter()
                .filter(|line| {
                    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
                    let key = v["event"]["customerId"].as_str().unwrap_or_default();
                    terminus::kafka::partition_for_key(key.as_bytes(), PARTITIONS) != slow
                })
                .collect()
        })
        .collect();
    assert!(!phases[0].is_empty());
    rig.produce(&phases[0]).await;
    let port = common::free_port();
    let mut a = rig.spawn_with("a", &["--admin-addr".into(), format!("127.0.0.1:{port}")]);
    let lifecycle = rig.topic("lifecycle");
    let ends = common::rig::high_watermarks(&lifecycle).expect("lifecycle watermarks");
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let mut seen_restoring = false;
    let overlapped = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "neither processed nor ready within 180 s"
        );
        let committed = common::rig::try_committed(&rig.group, &lifecycle).unwrap_or_default();
        let processed = ends
            .iter()
            .filter(|(p, end)| *p != slow && *end > 0)
            .all(|(p, end)| committed.get(p).copied().unwrap_or(0) >= *end);
        let (status, body) = common::http(port, "GET", "/readyz");
        if status == 503 && body.contains("restoring") {
            seen_restoring = true;
        }
        if processed {
            break status == 503 && body.contains("restoring");
        }
        if status == 200 {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(seen_restoring, "/readyz reported the restore under way");
    assert!(
        overlapped,
        "partitions {:?} were committed only after partition {slow}'s restore ended",
        ends.iter()
            .map(|(p, _)| *p)
            .filter(|p| *p != slow)
            .collect::<Vec<_>>()
    );
    common::wait_for(
        "the slow partition restored",
        Duration::from_secs(180),
        || common::http(port, "GET", "/readyz").0 == 200,
    )
    .await;
    rig.wait_caught_up(Duration::from_secs(180)).await;
    rig.feed(&phases[1..]).await;
    let actual = rig.outputs().await;
    stop(&mut a);
    let all = restores(&rig, "a");
    assert_eq!(
        all.first()
            .map(|r| (r.partitions.clone(), r.from_checkpoint.len())),
        Some((all_partitions(), 0)),
        "one round for the whole assignment, logged once: {all:?}"
    );
    assert!(
        all[0].records >= 300_000,
        "the slow partition read in full: {all:?}"
    );
    assert_same_outputs(&actual, &simulate(&phases.concat()));
}

/// The "state store warmed" line of an instance's log: (passes, records).
fn warm_ups(rig: &Rig, instance: &str) -> Vec<(u64, u64)> {
    log_of(rig, instance)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "state store warmed; joining the group")
        .map(|v| {
            (
                v["passes"].as_u64().unwrap_or(0),
                v["records"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// A newcomer to a running group reads the changelog into its store before
/// it joins, while the running member goes on alone: the partitions the
/// join hands it are read only from their checkpoints, not from the
/// beginning (without the warm-up they were read in full after the join,
/// and their output stopped for as long). The first member of an empty
/// group does not warm up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_warms_its_store_before_it_joins_a_running_group() {
    let rig = Rig::new("store-warm-up").await;
    let big = 1;
    let preloaded = 100_000;
    preload_changelog(&rig.topic("changelog"), big, preloaded);
    let phases = journeys(38, 60, 6);
    let (first, rest) = phases.split_at(2);
    let (during, after) = rest.split_at(2);
    let mut a = rig.spawn("a");
    rig.feed(first).await;
    assert!(
        log_of(&rig, "a").contains("no other member in the group; joining without a warm-up"),
        "the first member joins at once"
    );
    assert!(warm_ups(&rig, "a").is_empty());
    let port = common::free_port();
    let mut b = rig.spawn_with("b", &["--admin-addr".into(), format!("127.0.0.1:{port}")]);
    // a keeps every partition, and processes, while b warms up.
    let mut seen_warming = false;
    for phase in during {
        rig.produce(phase).await;
        let (status, body) = common::http(port, "GET", "/readyz");
        seen_warming |= status == 503 && body.contains("warming the state store");
        rig.wait_caught_up(Duration::from_secs(120)).await;
    }
    common::wait_for("b warmed up and joined", Duration::from_secs(120), || {
        !warm_ups(&rig, "b").is_empty() && !restores(&rig, "b").is_empty()
    })
    .await;
    rig.feed(after).await;
    let actual = rig.outputs().await;
    stop(&mut b);
    stop(&mut a);
    let warmed = warm_ups(&rig, "b");
    assert!(
        warmed[0].1 >= preloaded as u64,
        "the warm-up read the whole changelog, the preloaded partition included: {warmed:?}"
    );
    let rounds = restores(&rig, "b");
    assert!(
        rounds
            .iter()
            .all(|r| r.from_checkpoint == r.partitions && r.records < preloaded as u64 / 10),
        "after the join b read only tails from its checkpoints: {rounds:?}"
    );
    eprintln!("b: warm-up {warmed:?}, restores {rounds:?}, /readyz said warming: {seen_warming}");
    assert_same_outputs(&actual, &simulate(&phases.concat()));
}

/// SIGTERM during a warm-up stops the newcomer at once, with exit status 0
/// and without it ever joining: nothing is taken from the running member.
/// (A rollout that is called off must not wait for a read of the whole
/// changelog.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_warm_up_stops_the_newcomer_at_once() {
    let rig = Rig::new("store-warm-up-stop").await;
    preload_changelog(&rig.topic("changelog"), 0, 600_000);
    let phases = journeys(39, 20, 1);
    let mut a = rig.spawn("a");
    rig.feed(&phases).await;
    let port = common::free_port();
    let mut b = rig.spawn_with("b", &["--admin-addr".into(), format!("127.0.0.1:{port}")]);
    common::wait_for("b warming up", Duration::from_secs(60), || {
        let (status, body) = common::http(port, "GET", "/readyz");
        status == 503 && body.contains("warming the state store") && body.contains("records left")
    })
    .await;
    let asked = std::time::Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &b.id().to_string()])
        .status();
    let exit = loop {
        if let Ok(Some(status)) = b.try_wait() {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "b still warming up 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("b stopped {:?} after SIGTERM", asked.elapsed());
    assert!(exit.success(), "b exited with {exit:?}");
    let log = log_of(&rig, "b");
    assert!(
        log.contains("warm-up ended by the shutdown"),
        "b logged why it stopped"
    );
    assert!(
        !log.contains("partitions assigned"),
        "b never joined the group"
    );
    stop(&mut a);
}

/// The value of the unlabelled metric `name` in a `/metrics` text.
fn metric(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok())?
    })
}

/// The dismantling gauges: (customers in dismantling, stalled, age in
/// seconds of the oldest dismantling).
fn dismantling_gauges(port: u16) -> Option<(f64, f64, f64)> {
    let (code, text) = http(port, "GET", "/metrics");
    if code != 200 {
        return None;
    }
    Some((
        metric(&text, "terminus_relationships{state=\"Dismantling\"}")?,
        metric(&text, "terminus_stalled_terminations")?,
        metric(&text, "terminus_oldest_pending_dismantle_age_seconds")?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dismantling_gauges_come_back_from_the_store_after_a_restart() {
    // The stalled count and the oldest dismantling live in the store (its
    // meta record and an index on disk), not in a map rebuilt from every
    // state: a restart that reads nothing from the changelog still shows them.
    let rig = Rig::new("store-gauges").await;
    let flags = |port: u16| -> Vec<String> {
        [
            "--admin-addr",
            &format!("127.0.0.1:{port}"),
            "--customer-notice",
            "0s",
            "--dismantle-deadline",
            "1s",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let port = free_port();
    let mut a = rig.spawn_with("a", &flags(port));
    wait_for("/readyz 200", Duration::from_secs(60), || {
        http(port, "GET", "/readyz").0 == 200
    })
    .await;
    let now = terminus::time::Timestamp::now();
    let n = 4;
    let events: Vec<String> = (0..n)
        .map(|i| {
            envelope(
                &format!("gauge-{i}"),
                "CustomerTerminationRequested",
                &now.to_rfc3339(),
                serde_json::json!({"customerId": format!("G-{i}"), "reason": "moving"}),
            )
        })
        .collect();
    rig.produce(&events).await;
    let stalled = |g: Option<(f64, f64, f64)>| {
        g.is_some_and(|(dismantling, stalled, age)| {
            dismantling == f64::from(n) && stalled == f64::from(n) && age > 0.0
        })
    };
    wait_for(
        "every customer stalled in dismantling",
        Duration::from_secs(40),
        || stalled(dismantling_gauges(port)),
    )
    .await;
    stop(&mut a);

    let mark = log_mark(&rig, "a");
    let port = free_port();
    let mut a = rig.spawn_with("a", &flags(port));
    wait_for(
        "the gauges after the restart",
        Duration::from_secs(40),
        || stalled(dismantling_gauges(port)),
    )
    .await;
    stop(&mut a);
    let restart = restores_since(&rig, "a", mark);
    assert!(
        restart.first().is_some_and(|r| r.records == 0),
        "the restart read nothing from the changelog: {restart:?}"
    );
}
