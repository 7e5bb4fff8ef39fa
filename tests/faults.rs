//! Exactly once at the loads and faults an operator meets, against the real
//! broker: oversized records, bursts of due timers, zombies, handovers,
//! partitions added while running, redelivered outcomes and reused event ids.
//! Every test that involves outputs compares them with the simulator's.

mod common;

use common::rig::{
    PARTITIONS, Rig, assert_same_outputs, at, envelope, journeys, simulate, simulate_with, stop,
};
use common::{consume_until_idle, free_port, http, produce, wait_for};
use std::process::Command;
use std::time::{Duration, Instant};
use terminus::domain::{Policy, Rule};
use terminus::time::Period;
use terminus::time::Timestamp;

fn metric(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn signal(child: &std::process::Child, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status();
}

/// A record larger than the dead-letter topic allows, on an input topic that
/// allows it, with default worker flags: it is dead-lettered without its
/// value (headers give the size), the records around it are processed, and
/// no transaction aborts over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_a_megabyte_is_dead_lettered_without_its_value() {
    let rig = Rig::with_input_configs("big", &[("max.message.bytes", "4194304")]).await;
    let port = free_port();
    let mut worker = rig.spawn_with("a", &["--admin-addr".into(), format!("127.0.0.1:{port}")]);
    let now = Timestamp::now().millis();
    let before = envelope(
        "b1",
        "FraudConfirmed",
        &at(now, -2000),
        serde_json::json!({"customerId": "B-1", "caseRef": "c"}),
    );
    let after = envelope(
        "b2",
        "CustomerDeceased",
        &at(now, -1000),
        serde_json::json!({"customerId": "B-2", "evidenceRef": "e"}),
    );
    rig.produce(std::slice::from_ref(&before)).await;
    let big = vec![b'x'; 1536 * 1024];
    produce(&rig.topic("lifecycle"), &[("B-9", big.as_slice())]).await;
    rig.produce(std::slice::from_ref(&after)).await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    let dead = rig.dead_letters().await;
    let outputs = rig.outputs().await;
    let (_, metrics) = http(port, "GET", "/metrics");
    stop(&mut worker);
    assert_eq!(dead.len(), 1, "one dead letter");
    let d = &dead[0];
    assert_eq!(d.header("terminus.dlq.reason"), Some("RecordTooLarge"));
    assert_eq!(d.header("terminus.dlq.value.dropped"), Some("true"));
    assert_eq!(d.header("terminus.dlq.value.bytes"), Some("1572864"));
    assert!(d.value.is_empty(), "the value is dropped");
    assert_eq!(d.key.as_deref(), Some("B-9"));
    assert_same_outputs(&outputs, &simulate(&[before, after]));
    let aborted = metric(&metrics, "terminus_transactions_total{result=\"aborted\"}");
    assert_eq!(aborted, 0.0, "no transaction aborted over the big record");
}

/// An invalid record just under the input limit but over the producer's: the
/// dead letter would not fit with its value either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_record_near_the_limit_does_not_jam_its_partition() {
    let rig = Rig::with_input_configs("nearlimit", &[("max.message.bytes", "4194304")]).await;
    let mut worker = rig.spawn_with("a", &["--max-record-bytes".into(), "2000000".into()]);
    let now = Timestamp::now().millis();
    let good = envelope(
        "n1",
        "FraudConfirmed",
        &at(now, -1000),
        serde_json::json!({"customerId": "N-1", "caseRef": "c"}),
    );
    let mut invalid = vec![b'{'; 1_040_002];
    invalid[1] = b'x';
    produce(&rig.topic("lifecycle"), &[("N-9", invalid.as_slice())]).await;
    rig.produce(std::slice::from_ref(&good)).await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    let dead = rig.dead_letters().await;
    let outputs = rig.outputs().await;
    stop(&mut worker);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header("terminus.dlq.reason"), Some("InvalidJson"));
    assert_eq!(dead[0].header("terminus.dlq.value.bytes"), Some("1040002"));
    assert_same_outputs(&outputs, &simulate(&[good]));
}

/// Many more customers' timers due at one instant than one transaction may
/// fire: they go out over many small transactions, every one of them, and
/// the log has one line per transaction, not one per timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_due_timers_is_spread_over_bounded_transactions() {
    let mut rig = Rig::new("burst").await;
    let per_txn = 40;
    rig.extra_args = vec![
        "--customer-notice".into(),
        "6s".into(),
        "--timers-per-transaction".into(),
        per_txn.to_string(),
    ];
    let now = Timestamp::now().millis();
    let customers = 600;
    let events: Vec<String> = (0..customers)
        .map(|c| {
            envelope(
                &format!("burst-{c}"),
                "CustomerTerminationRequested",
                &at(now, 0),
                serde_json::json!({"customerId": format!("M-{c}")}),
            )
        })
        .collect();
    let mut worker = rig.spawn("a");
    rig.produce(&events).await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut dismantle = Vec::new();
    while Instant::now() < deadline && dismantle.len() < customers * 3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        dismantle = consume_until_idle(
            &rig.topic("dismantle"),
            Duration::from_millis(300),
            Duration::from_secs(20),
        )
        .await;
    }
    let outputs = rig.outputs().await;
    let exited = worker.try_wait().expect("status");
    stop(&mut worker);
    assert!(exited.is_none(), "the worker exited: {exited:?}");
    assert_eq!(
        dismantle.len(),
        customers * 3,
        "every customer dismantled once"
    );
    let policy = notice_policy(Duration::from_secs(6));
    let until = Timestamp::from_millis(now + 60_000);
    assert_same_outputs(&outputs, &simulate_with(&events, policy, Some(until)));
    let log = rig.log();
    let mut timer_transactions = 0;
    for line in log.lines().filter(|l| l.contains("transaction committed")) {
        let v: serde_json::Value = serde_json::from_str(line).expect("json log line");
        let fired = v["timer_customers"].as_u64().unwrap_or(0);
        assert!(
            fired <= per_txn,
            "{fired} customers' timers in one transaction"
        );
        if fired > 0 {
            timer_transactions += 1;
        }
    }
    assert!(
        timer_transactions >= customers as u64 / per_txn,
        "{timer_transactions} transactions fired the timers"
    );
    assert!(!log.contains("timer fired"), "no log line per timer");
    assert!(!log.contains("fenced"), "no fencing: {log}");
}

/// A worker frozen past its session timeout while it owns partitions with
/// due timers and input: the other instance takes over; when the frozen one
/// wakes up, its transactions (timer-only ones included) are fenced, and the
/// committed outputs equal the simulator's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_past_its_session_timeout_commits_nothing_when_it_wakes() {
    let mut rig = Rig::new("zombie").await;
    rig.extra_args = vec!["--customer-notice".into(), "8s".into()];
    let now = Timestamp::now().millis();
    // Requests whose notice ends while the first worker is frozen.
    let requests: Vec<String> = (0..60)
        .map(|c| {
            envelope(
                &format!("z-req-{c}"),
                "CustomerTerminationRequested",
                &at(now, 0),
                serde_json::json!({"customerId": format!("Z-{c}")}),
            )
        })
        .collect();
    let mut a = rig.spawn("a");
    rig.produce(&requests).await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    let phases = journeys(11, 60, 8);
    rig.produce(&phases[0]).await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    signal(&a, "-STOP");
    let mut b = rig.spawn("b");
    for phase in &phases[1..5] {
        rig.produce(phase).await;
        rig.wait_caught_up(Duration::from_secs(120)).await;
    }
    // Past the notice: b fires the timers it took over; a wakes up.
    tokio::time::sleep(Duration::from_secs(4)).await;
    signal(&a, "-CONT");
    for phase in &phases[5..] {
        rig.produce(phase).await;
        rig.wait_caught_up(Duration::from_secs(120)).await;
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    let actual = rig.outputs().await;
    stop(&mut a);
    stop(&mut b);
    let mut events = requests.clone();
    events.extend(phases.concat());
    let policy = notice_policy(Duration::from_secs(8));
    let until = Timestamp::from_millis(now + 20_000);
    let expected = simulate_with(&events, policy, Some(until));
    assert_same_outputs(&actual, &expected);
}

/// An instance joins and leaves twenty times while input flows: nothing is
/// lost or doubled across the handovers (the restore reads to the captured
/// high watermark, revocations commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_graceful_handovers_under_load_lose_and_duplicate_nothing() {
    let rig = Rig::new("handover").await;
    let phases = journeys(12, 150, 20);
    let mut a = rig.spawn("a");
    let producer = {
        let rig = rig.clone();
        let phases = phases.clone();
        tokio::spawn(async move {
            for phase in &phases {
                rig.produce(phase).await;
                rig.wait_caught_up(Duration::from_secs(180)).await;
            }
        })
    };
    for round in 0..20 {
        let mut b = rig.spawn(&format!("b{round}"));
        let log = rig.log_dir.join(format!("b{round}.log"));
        wait_for("b's restore", Duration::from_secs(60), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("partitions restored")
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop(&mut b);
    }
    producer.await.expect("producer");
    rig.wait_caught_up(Duration::from_secs(120)).await;
    let actual = rig.outputs().await;
    stop(&mut a);
    assert_same_outputs(&actual, &simulate(&phases.concat()));
}

/// Partitions added to an input topic while the worker runs: it stops with a
/// non-zero exit and a message that names the counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_while_running_stop_the_worker() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    use rdkafka::client::DefaultClientContext;
    let rig = Rig::new("grow").await;
    let mut worker = rig.spawn("a");
    let now = Timestamp::now().millis();
    let e = envelope(
        "g1",
        "FraudConfirmed",
        &at(now, -1000),
        serde_json::json!({"customerId": "G-1", "caseRef": "c"}),
    );
    rig.produce(std::slice::from_ref(&e)).await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    let admin: AdminClient<DefaultClientContext> = common::client_config().create().expect("admin");
    let topic = rig.topic("lifecycle");
    let grow = NewPartitions::new(&topic, (PARTITIONS + 2) as usize);
    let results = admin
        .create_partitions([&grow], &AdminOptions::new())
        .await
        .expect("create partitions");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = worker.try_wait().expect("status") {
            break status;
        }
        assert!(Instant::now() < deadline, "the worker kept running");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!status.success(), "exit status {status:?}");
    let log = rig.log();
    assert!(
        log.contains("partition count changed") && log.contains(&format!("has {}", PARTITIONS + 2)),
        "{log}"
    );
}

/// A `DismantleCompleted` that arrives while the termination is still
/// pending is ignored; redelivered after the dismantling started, it is a
/// duplicate — not a completion that could end the relationship.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_early_outcome_is_a_duplicate() {
    let mut rig = Rig::new("early").await;
    rig.extra_args = vec!["--customer-notice".into(), "4s".into()];
    let now = Timestamp::now().millis();
    let customer = "E-1";
    let request = envelope(
        "e-req",
        "CustomerTerminationRequested",
        &at(now, 0),
        serde_json::json!({"customerId": customer}),
    );
    let tid = terminus::domain::ids::termination_id(customer, "e-req").to_string();
    let completed = |id: &str, vertical: &str, t: i64| {
        envelope(
            id,
            "DismantleCompleted",
            &at(now, t),
            serde_json::json!({"customerId": customer, "terminationId": tid, "vertical": vertical}),
        )
    };
    let early = completed("e-billing", "billing", 1000);
    let mut worker = rig.spawn("a");
    // One after the other: they are on different topics, and Kafka orders
    // records per partition only.
    rig.produce(std::slice::from_ref(&request)).await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    rig.produce(std::slice::from_ref(&early)).await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while consume_until_idle(
        &rig.topic("dismantle"),
        Duration::from_millis(200),
        Duration::from_secs(5),
    )
    .await
    .len()
        < 3
    {
        assert!(Instant::now() < deadline, "no dismantling");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let late = [
        early.clone(),
        completed("e-fulfillment", "fulfillment", 5000),
        completed("e-assurance", "assurance", 5000),
    ];
    rig.produce(&late).await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    let outputs = rig.outputs().await;
    stop(&mut worker);
    assert!(
        !outputs.iter().any(|(role, _, _)| role == "terminated"),
        "the redelivered outcome ended the relationship: {outputs:?}"
    );
    let mut events = vec![request, early];
    events.extend(late);
    let policy = notice_policy(Duration::from_secs(4));
    assert_same_outputs(&outputs, &simulate_with(&events, policy, None));
}

/// Two upstream systems reuse one eventId for two customers: each gets its
/// own terminationId and output eventIds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_customers_sharing_an_event_id_get_their_own_ids() {
    let rig = Rig::new("shared-id").await;
    let now = Timestamp::now().millis();
    let events: Vec<String> = ["S-1", "S-2"]
        .iter()
        .map(|c| {
            envelope(
                "same-event-id",
                "FraudConfirmed",
                &at(now, -1000),
                serde_json::json!({"customerId": c, "caseRef": "c"}),
            )
        })
        .collect();
    let mut worker = rig.spawn("a");
    rig.produce(&events).await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    let outputs = rig.outputs().await;
    stop(&mut worker);
    assert_same_outputs(&outputs, &simulate(&events));
    let ids: std::collections::BTreeSet<String> = outputs
        .iter()
        .map(|(_, _, v)| v["eventId"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids.len(), outputs.len(), "every output eventId is unique");
    let terminations: std::collections::BTreeSet<String> = outputs
        .iter()
        .filter(|(_, _, v)| v["eventType"] == "TerminationAccepted")
        .map(|(_, _, v)| {
            v["event"]["terminationId"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(terminations.len(), 2, "{terminations:?}");
}

/// The output registry refuses the worker's credentials (401) while a record
/// is half processed: the worker exits non-zero and commits nothing for it —
/// not its offset, not its state — so a fixed deployment processes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_registry_answering_401_commits_nothing() {
    use terminus_test_support::FakeRegistry;
    let registry = FakeRegistry::start().expect("registry");
    registry.require_basic_auth("terminus", "right-password");
    let mut rig = Rig::new("reg401").await;
    rig.extra_args = vec![
        "--output-format".into(),
        "avro-confluent".into(),
        "--schema-registry-url".into(),
        registry.url(),
    ];
    let now = Timestamp::now().millis();
    let e = envelope(
        "r401",
        "FraudConfirmed",
        &at(now, -1000),
        serde_json::json!({"customerId": "R-1", "caseRef": "c"}),
    );
    let mut worker = rig.spawn("a");
    rig.produce(std::slice::from_ref(&e)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = worker.try_wait().expect("status") {
            break status;
        }
        assert!(Instant::now() < deadline, "the worker kept running");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!status.success(), "exit status {status:?}");
    let committed = common::committed_offsets(&rig.group, &rig.topic("decisions")).await;
    assert!(
        committed.values().all(|o| *o == 0),
        "the half-processed record's offset was committed: {committed:?}"
    );
    let changelog = consume_until_idle(
        &rig.topic("changelog"),
        Duration::from_millis(300),
        Duration::from_secs(10),
    )
    .await;
    assert!(changelog.is_empty(), "state was committed: {changelog:?}");
    assert!(rig.outputs().await.is_empty());
    assert!(
        rig.log().contains("cannot encode an output"),
        "{}",
        rig.log()
    );
}

/// The default policy with another customer notice.
fn notice_policy(notice: Duration) -> Policy {
    Policy::with_default(Rule {
        customer_notice: Period::exact(notice),
        ..Rule::default()
    })
}
