//! The exactly-once worker against the real broker: its committed outputs must
//! equal the offline simulator's, through crashes, restarts and bad input.
//!
//! Every test gets its own topics, group and instance ids, and runs the real
//! `terminus` binary as a child process.

mod common;

use common::consume_until_idle;
use common::rig::{PARTITIONS, Rig, assert_same_outputs, at, envelope, journeys, simulate, stop};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journeys_through_kafka_equal_the_simulator() {
    let rig = Rig::new("e2e").await;
    let phases = journeys(1, 40, 12);
    let mut worker = rig.spawn("a");
    for phase in &phases {
        rig.produce(phase).await;
        rig.wait_caught_up(Duration::from_secs(120)).await;
    }
    let events: Vec<String> = phases.concat();
    let actual = rig.outputs().await;
    stop(&mut worker);
    let expected = simulate(&events);
    assert!(expected.len() > 50, "journeys should produce outputs");
    assert_same_outputs(&actual, &expected);
    // Output headers: CloudEvents binary mode.
    let status = consume_until_idle(
        &rig.topic("status"),
        Duration::from_millis(300),
        Duration::from_secs(30),
    )
    .await;
    let first = status.first().expect("a status event");
    assert_eq!(first.header("ce_specversion"), Some("1.0"));
    assert_eq!(first.header("ce_id"), first.json()["eventId"].as_str());
    assert_eq!(first.header("ce_type"), first.json()["eventType"].as_str());
    assert_eq!(first.header("content-type"), Some("application/json"));
    // Outputs are placed by murmur2 of the key, as Java producers place them.
    for r in &status {
        let key = r.key.clone().unwrap_or_default();
        assert_eq!(
            r.partition,
            terminus::kafka::partition_for_key(key.as_bytes(), PARTITIONS)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let mut rig = Rig::new("crash").await;
    // Static membership: each restart takes the partitions back at once.
    rig.extra_args = vec!["--static-membership".into(), "true".into()];
    let phases = journeys(2, 600, 34);
    let events: Vec<String> = phases.concat();
    assert!(events.len() >= 20_000, "{} events", events.len());
    let killer = {
        let rig = rig.clone();
        tokio::task::spawn_blocking(move || {
            let mut rng = StdRng::seed_from_u64(7);
            let mut worker = rig.spawn("a");
            for kill in 0..5 {
                // Kill while it works: after this incarnation restored its state.
                let deadline = Instant::now() + Duration::from_secs(60);
                while rig
                    .log()
                    .matches("partitions restored from the changelog")
                    .count()
                    <= kill
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::thread::sleep(Duration::from_millis(rng.random_range(200..2500)));
                worker.kill().expect("SIGKILL");
                let _ = worker.wait();
                worker = rig.spawn("a");
            }
            worker
        })
    };
    for phase in &phases {
        rig.produce(phase).await;
        rig.wait_caught_up(Duration::from_secs(120)).await;
    }
    let mut worker = killer.await.expect("killer task");
    rig.wait_caught_up(Duration::from_secs(120)).await;
    let actual = rig.outputs().await;
    stop(&mut worker);
    let expected = simulate(&events);
    assert_same_outputs(&actual, &expected);
    let log = rig.log();
    let restores = log
        .matches("partitions restored from the changelog")
        .count();
    assert!(
        restores >= 5,
        "every killed incarnation restored first; saw {restores} restores"
    );
    eprintln!(
        "crash test: {} events, 5 SIGKILLs, {} outputs, {restores} restores",
        events.len(),
        actual.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_go_to_the_dead_letter_topic_and_valid_ones_are_kept() {
    let mut rig = Rig::new("dlq").await;
    rig.extra_args = vec!["--max-record-bytes".into(), "200000".into()];
    let now = terminus::time::Timestamp::now().millis();
    let good = envelope(
        "g1",
        "FraudConfirmed",
        &at(now, -1000),
        serde_json::json!({"customerId": "K-1", "caseRef": "c"}),
    );
    let future = envelope(
        "f1",
        "CustomerTerminationRequested",
        &at(now, 3_600_000),
        serde_json::json!({"customerId": "K-2"}),
    );
    let wrong_topic = envelope(
        "w1",
        "FraudConfirmed",
        &at(now, -1000),
        serde_json::json!({"customerId": "K-3", "caseRef": "c"}),
    );
    let lifecycle = rig.topic("lifecycle");
    let decisions = rig.topic("decisions");
    let big = "x".repeat(300_000);
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (&decisions, "K-1", good.clone().into_bytes(), ""),
        (&lifecycle, "K-9", b"{not json".to_vec(), "InvalidJson"),
        (&lifecycle, "K-9", br#"{"eventId":"t","eventType":"CustomerTerminationRequested","eventTime":"2026-11-27T10:00:00Z","event":{"customerId":"K-9""#.to_vec(), "InvalidJson"),
        (&lifecycle, "K-9", br#"{"eventId":"u","eventType":"CustomerPromoted","eventTime":"2026-11-27T10:00:00Z","event":{"customerId":"K-9"}}"#.to_vec(), "UnknownEventType"),
        (&lifecycle, "K-9", br#"{"eventType":"AllServicesTerminated","eventTime":"2026-11-27T10:00:00Z","event":{"customerId":"K-9"}}"#.to_vec(), "MissingField"),
        (&lifecycle, "K-9", br#"{"eventId":"b","eventType":"AllServicesTerminated","eventTime":"yesterday","event":{"customerId":"K-9"}}"#.to_vec(), "InvalidTime"),
        (&lifecycle, "K-other", br#"{"eventId":"k","eventType":"AllServicesTerminated","eventTime":"2026-11-27T10:00:00Z","event":{"customerId":"K-9"}}"#.to_vec(), "KeyMismatch"),
        (&lifecycle, "K-3", wrong_topic.into_bytes(), "WrongTopic"),
        (&lifecycle, "K-2", future.into_bytes(), "EventTimeInFuture"),
        (&lifecycle, "K-9", big.into_bytes(), "RecordTooLarge"),
    ];
    let mut worker = rig.spawn("a");
    for (topic, key, value, _) in &cases {
        common::produce(topic, &[(key, value.as_slice())]).await;
    }
    rig.wait_caught_up(Duration::from_secs(60)).await;
    let dead = rig.dead_letters().await;
    let outputs = rig.outputs().await;
    stop(&mut worker);
    let expected: Vec<&str> = cases
        .iter()
        .map(|c| c.3)
        .filter(|r| !r.is_empty())
        .collect();
    let mut reasons: Vec<String> = dead
        .iter()
        .map(|r| r.header("terminus.dlq.reason").unwrap_or("").to_owned())
        .collect();
    reasons.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(reasons, want);
    for r in &dead {
        assert!(r.header("__connect.errors.topic").is_some());
        assert!(r.header("__connect.errors.offset").is_some());
        assert!(r.header("__connect.errors.exception.message").is_some());
    }
    let original = dead
        .iter()
        .find(|r| r.header("terminus.dlq.reason") == Some("KeyMismatch"))
        .expect("key mismatch");
    assert_eq!(
        original.key.as_deref(),
        Some("K-other"),
        "the original key is kept"
    );
    assert!(outputs.iter().any(|(role, key, v)| role == "status"
        && key == "K-1"
        && v["eventType"] == "TerminationAccepted"));
    assert_eq!(
        outputs
            .iter()
            .filter(|(role, _, _)| role == "dismantle")
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_notice_dismantles_after_it_and_not_before_even_across_a_restart() {
    let mut rig = Rig::new("timer").await;
    rig.extra_args = vec!["--customer-notice".into(), "6s".into()];
    let now = terminus::time::Timestamp::now().millis();
    let request = envelope(
        "r1",
        "CustomerTerminationRequested",
        &at(now, 0),
        serde_json::json!({"customerId": "T-1"}),
    );
    let mut worker = rig.spawn("a");
    rig.produce(&[request]).await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    let early = consume_until_idle(
        &rig.topic("dismantle"),
        Duration::from_millis(300),
        Duration::from_secs(5),
    )
    .await;
    assert!(early.is_empty(), "dismantled before the notice ended");
    stop(&mut worker);
    let mut worker = rig.spawn("a");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut dismantle = Vec::new();
    while Instant::now() < deadline && dismantle.len() < 3 {
        dismantle = consume_until_idle(
            &rig.topic("dismantle"),
            Duration::from_millis(300),
            Duration::from_secs(5),
        )
        .await;
    }
    stop(&mut worker);
    assert_eq!(dismantle.len(), 3, "one instruction per vertical, once");
    let effective = now + 6000;
    for r in &dismantle {
        assert_eq!(
            r.json()["eventTime"],
            at(effective, 0),
            "timer outputs carry the due time"
        );
    }
    assert!(terminus::time::Timestamp::now().millis() >= effective);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_partitions_and_one_takes_over_when_the_other_dies() {
    let rig = Rig::new("scale").await;
    let phases = journeys(3, 120, 14);
    let mut a = rig.spawn("a");
    let mut b = Some(rig.spawn("b"));
    for (i, phase) in phases.iter().enumerate() {
        rig.produce(phase).await;
        rig.wait_caught_up(Duration::from_secs(120)).await;
        if i == 5 {
            let log_b = std::fs::read_to_string(rig.log_dir.join("b.log")).unwrap_or_default();
            let log_a = std::fs::read_to_string(rig.log_dir.join("a.log")).unwrap_or_default();
            assert!(
                log_a.contains("partitions restored") && log_b.contains("partitions restored"),
                "both instances own partitions before the kill"
            );
            if let Some(mut b) = b.take() {
                b.kill().expect("SIGKILL b");
                let _ = b.wait();
            }
        }
    }
    let events: Vec<String> = phases.concat();
    let actual = rig.outputs().await;
    stop(&mut a);
    if let Some(mut b) = b.take() {
        stop(&mut b);
    }
    assert_same_outputs(&actual, &simulate(&events));
    let log_a = std::fs::read_to_string(rig.log_dir.join("a.log")).unwrap_or_default();
    assert!(
        log_a.matches("partitions restored").count() >= 2,
        "a restored again when it took over b's partitions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_input_commits_before_the_commit_interval() {
    // Light load: once nothing more is waiting, the batch commits at
    // --min-commit-interval instead of holding its outputs for the whole
    // --commit-interval.
    let rig = Rig::new("drained").await;
    let interval = Duration::from_secs(8);
    let mut worker = rig.spawn_with(
        "a",
        &[
            "--commit-interval".into(),
            "8s".into(),
            "--min-commit-interval".into(),
            "50ms".into(),
        ],
    );
    let now = terminus::time::Timestamp::now().millis();
    let request = |c: usize| {
        envelope(
            &format!("dr-{c}"),
            "CustomerTerminationRequested",
            &at(now, 0),
            serde_json::json!({"customerId": format!("DR-{c}")}),
        )
    };
    rig.produce(&[request(0)]).await;
    rig.wait_caught_up(Duration::from_secs(120)).await; // started and joined
    let sent = Instant::now();
    rig.produce(&(1..=5).map(request).collect::<Vec<_>>()).await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    let took = sent.elapsed();
    stop(&mut worker);
    assert!(
        took < interval / 2,
        "committed {took:?} after the input arrived; the commit interval is {interval:?}"
    );
    let outputs = rig.outputs().await;
    let events: Vec<String> = (0..=5).map(request).collect();
    assert_same_outputs(&outputs, &simulate(&events));
}
