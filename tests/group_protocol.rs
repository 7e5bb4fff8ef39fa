//! KIP-848's consumer group protocol (`--group-protocol consumer`) against
//! the real broker: instances join and leave, the broker's range assignor
//! keeps each partition number's three input topics with one member (the
//! worker refuses any other assignment), partitions that stay are neither
//! revoked nor restored again and their fetch restarts at once, and the
//! outputs equal the simulator's.

mod common;

use common::rig::{Rig, assert_same_outputs, journeys, simulate, stop};
use std::time::Duration;

/// (message, partitions) of one instance's rebalance log lines.
fn rebalances(rig: &Rig, instance: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(rig.log_dir.join(format!("{instance}.log")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["message"] == "partitions assigned; restoring state"
                || v["message"] == "partitions revoked"
        })
        .map(|v| {
            (
                v["message"].as_str().unwrap_or_default().to_owned(),
                v["partitions"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_join_and_leave_and_partitions_that_stay_keep_going() {
    let mut rig = Rig::new("kip848").await;
    rig.extra_args = vec!["--group-protocol".into(), "consumer".into()];
    let phases = journeys(41, 90, 10);
    let mut a = rig.spawn("a");
    rig.produce(&phases[0]).await;
    rig.wait_caught_up(Duration::from_secs(120)).await;
    let mut b = rig.spawn("b");
    rig.feed(&phases[1..4]).await;
    let mut c = rig.spawn("c");
    rig.feed(&phases[4..7]).await;
    stop(&mut b);
    rig.feed(&phases[7..9]).await;
    stop(&mut c);
    rig.feed(&phases[9..]).await;
    let actual = rig.outputs().await;
    stop(&mut a);
    let log = rig.log();
    assert!(
        !log.contains("without their co-partitioned siblings"),
        "the broker split a partition number's input topics across members"
    );
    let a_log = rebalances(&rig, "a");
    eprintln!("a's rebalances: {a_log:?}");
    // a starts with everything; when b joins, a gives up only some
    // partitions (an eager protocol would revoke all three).
    assert_eq!(
        a_log.first().map(|r| r.1.as_str()),
        Some("[0, 1, 2]"),
        "{a_log:?}"
    );
    // (The last revocation is a's own shutdown, which leaves the group.)
    let revoked_all = a_log[..a_log.len() - 1]
        .iter()
        .filter(|(m, p)| m == "partitions revoked" && p == "{0, 1, 2}")
        .count();
    assert_eq!(
        revoked_all, 0,
        "a never lost every partition at once: {a_log:?}"
    );
    assert!(
        a_log.iter().any(|(m, _)| m == "partitions revoked"),
        "a gave partitions to the newcomers: {a_log:?}"
    );
    // A rebalance that only took partitions away leaves the kept ones'
    // fetchers idle until librdkafka's broker thread wakes on its own, up
    // to a second later (Processor::wake_fetchers): the worker restarts them.
    let a_text = std::fs::read_to_string(rig.log_dir.join("a.log")).unwrap_or_default();
    assert!(
        a_text.contains("fetch of the kept partitions restarted after an incremental rebalance"),
        "a restarted the fetch of the partitions it kept when b joined"
    );
    // The broker describes a KIP-848 group's members to the newcomers, so
    // they warm their stores before joining (tests/state_store.rs).
    for newcomer in ["b", "c"] {
        let log = std::fs::read_to_string(rig.log_dir.join(format!("{newcomer}.log")))
            .unwrap_or_default();
        assert!(
            log.contains("state store warmed; joining the group"),
            "{newcomer} found the group running and warmed up first"
        );
    }
    assert_same_outputs(&actual, &simulate(&phases.concat()));
}
