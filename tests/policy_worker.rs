//! A policy file through the real worker and broker: customers of two markets
//! get their own notice periods, and the outputs equal the simulator's under
//! the same file.

mod common;

use common::consume_until_idle;
use common::rig::{Rig, assert_same_outputs, at, envelope, simulate_with, stop};
use std::time::{Duration, Instant};

/// Germany: 3 seconds' notice; the United Kingdom: 30 seconds; everyone else
/// the default 14 days, so the third customer is never dismantled here.
const POLICY: &str = r#"
[default]
customer-notice = "P14D"

[[rule]]
name = "de-fast"
market = "DE"
customer-notice = "PT3S"

[[rule]]
name = "gb-slow"
market = "GB"
customer-notice = "PT30S"
"#;

async fn dismantled(rig: &Rig) -> Vec<String> {
    consume_until_idle(
        &rig.topic("dismantle"),
        Duration::from_millis(300),
        Duration::from_secs(5),
    )
    .await
    .iter()
    .map(|r| r.key.clone().unwrap_or_default())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_of_two_markets_get_their_own_notice_periods() {
    let mut rig = Rig::new("policy").await;
    let file = rig.log_dir.join("policy.toml");
    std::fs::write(&file, POLICY).expect("policy file");
    rig.extra_args = vec!["--policy".into(), file.display().to_string()];
    let policy = terminus::policy_file::load(&file).expect("the test's policy loads");

    // The clock starts once the worker owns its partitions, so a slow start
    // cannot eat into the gap between the two notices.
    let mut worker = rig.spawn("a");
    let ready = Instant::now() + Duration::from_secs(60);
    while !rig.log().contains("partitions restored") && Instant::now() < ready {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = terminus::time::Timestamp::now().millis();
    let events = vec![
        envelope(
            "p-de",
            "CustomerTerminationRequested",
            &at(now, 0),
            serde_json::json!({"customerId": "P-DE", "market": "DE", "segment": "consumer"}),
        ),
        envelope(
            "p-gb",
            "CustomerTerminationRequested",
            &at(now, 0),
            serde_json::json!({"customerId": "P-GB", "market": "GB"}),
        ),
        envelope(
            "p-fr",
            "CustomerTerminationRequested",
            &at(now, 0),
            serde_json::json!({"customerId": "P-FR", "market": "FR"}),
        ),
    ];
    rig.produce(&events).await;
    rig.wait_caught_up(Duration::from_secs(60)).await;

    // The German notice ends first: its three instructions, and none for GB.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut keys = dismantled(&rig).await;
    while Instant::now() < deadline && !keys.iter().any(|k| k == "P-DE") {
        keys = dismantled(&rig).await;
    }
    let gb_due = now + 30_000;
    assert!(
        terminus::time::Timestamp::now().millis() < gb_due,
        "the test was too slow to see the order"
    );
    assert_eq!(
        keys,
        ["P-DE", "P-DE", "P-DE"],
        "only Germany dismantled yet"
    );

    // Then the British one, and never the French (14 days).
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && keys.iter().filter(|k| *k == "P-GB").count() < 3 {
        keys = dismantled(&rig).await;
    }
    let seen_at = terminus::time::Timestamp::now();
    let actual = rig.outputs().await;
    stop(&mut worker);
    assert_eq!(keys.iter().filter(|k| *k == "P-GB").count(), 3, "{keys:?}");
    assert!(!keys.iter().any(|k| k == "P-FR"), "{keys:?}");

    let accepted = |customer: &str| {
        actual
            .iter()
            .find(|(role, key, v)| {
                role == "status" && key == customer && v["eventType"] == "TerminationAccepted"
            })
            .map(|(_, _, v)| v["event"].clone())
            .unwrap_or_else(|| panic!("no TerminationAccepted for {customer}"))
    };
    for (customer, rule, notice_ms) in [
        ("P-DE", "de-fast", 3_000),
        ("P-GB", "gb-slow", 30_000),
        ("P-FR", "default", 14 * 86_400_000),
    ] {
        let event = accepted(customer);
        assert_eq!(event["policyRule"], rule, "{customer}");
        assert_eq!(event["effectiveAt"], at(now, notice_ms), "{customer}");
    }
    for (_, key, v) in actual.iter().filter(|(role, _, _)| role == "dismantle") {
        let due = if key == "P-DE" { 3_000 } else { 30_000 };
        assert_eq!(
            v["eventTime"],
            at(now, due),
            "timer outputs carry the due time"
        );
    }
    // The simulator, with the same file and its clock at the worker's, agrees.
    assert_same_outputs(&actual, &simulate_with(&events, policy, Some(seen_at)));
}
