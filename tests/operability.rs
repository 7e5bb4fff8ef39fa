//! What SREs rely on, checked against a worker on the real broker: health,
//! readiness, interactive queries across two instances, the consumer-lag gauge,
//! trace-context propagation, logs free of payload values, and a quiet start
//! (no WARN line on a healthy start).

mod common;

use common::rig::{Rig, envelope, stop};
use common::{free_port, http, wait_for};
use std::time::Duration;

/// Sum of `terminus_consumer_lag` series for `topic`.
fn lag_of(metrics: &str, topic: &str) -> Option<i64> {
    let series: Vec<i64> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("terminus_consumer_lag{") && l.contains(&format!("topic=\"{topic}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!series.is_empty()).then(|| series.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_lag_and_queries() {
    let rig = Rig::new("ops").await;
    let port = free_port();
    let mut worker = rig.spawn_with("a", &["--admin-addr".into(), format!("127.0.0.1:{port}")]);
    wait_for("/readyz 200", Duration::from_secs(60), || {
        http(port, "GET", "/readyz").0 == 200
    })
    .await;
    assert_eq!(http(port, "GET", "/healthz").0, 200);

    // Lag: pause, produce N, the gauge shows N; resume, it falls to 0.
    let (status, _) = http(port, "POST", "/admin/pause");
    assert_eq!(status, 202);
    wait_for("/readyz 503 while paused", Duration::from_secs(10), || {
        let (code, body) = http(port, "GET", "/readyz");
        code == 503 && body.contains("paused")
    })
    .await;
    let lifecycle = rig.topic("lifecycle");
    let now = terminus::time::Timestamp::now().millis();
    let n = 25;
    let events: Vec<String> = (0..n)
        .map(|i| {
            envelope(
                &format!("lag-{i}"),
                "CustomerTerminationRequested",
                &terminus::time::Timestamp::from_millis(now).to_rfc3339(),
                serde_json::json!({"customerId": format!("L-{i}"), "reason": "ZEBRA-PRIVATE-REASON-4711"}),
            )
        })
        .collect();
    rig.produce(&events).await;
    wait_for("lag == N while paused", Duration::from_secs(30), || {
        lag_of(&http(port, "GET", "/metrics").1, &lifecycle) == Some(n)
    })
    .await;
    assert_eq!(http(port, "POST", "/admin/resume").0, 202);
    wait_for("lag back to 0", Duration::from_secs(30), || {
        lag_of(&http(port, "GET", "/metrics").1, &lifecycle) == Some(0)
    })
    .await;
    let metrics = http(port, "GET", "/metrics").1;
    for name in [
        "terminus_events_consumed_total",
        "terminus_events_produced_total",
        "terminus_transactions_total",
        "terminus_end_to_end_latency_seconds_bucket",
        "terminus_transaction_commit_seconds_bucket",
        "terminus_rebalances_total",
        "terminus_fetch_restarts_total",
        "terminus_restore_seconds_count",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    wait_for("state gauges", Duration::from_secs(20), || {
        http(port, "GET", "/metrics")
            .1
            .contains("terminus_relationships{state=\"Pending\"} 25")
    })
    .await;

    // Interactive query of a customer this (only) instance owns.
    let (code, body) = http(port, "GET", "/relationships/L-3");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["state"]["phase"]["state"], "Pending");
    let (code, body) = http(port, "GET", "/relationships/NOBODY");
    assert_eq!(code, 404);
    assert!(body.contains("unknown customer"));

    stop(&mut worker);
    // Logs carry ids, never payload values.
    let log = rig.log();
    assert!(log.contains("L-3") || log.contains("lag-3") || log.contains("partitions restored"));
    assert!(
        !log.contains("ZEBRA-PRIVATE-REASON-4711"),
        "a payload value reached the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_for_a_customer_on_another_instance_says_who_owns_it() {
    let rig = Rig::new("query").await;
    let (pa, pb) = (free_port(), free_port());
    let mut a = rig.spawn_with("a", &["--admin-addr".into(), format!("127.0.0.1:{pa}")]);
    let mut b = rig.spawn_with("b", &["--admin-addr".into(), format!("127.0.0.1:{pb}")]);
    let now = terminus::time::Timestamp::now().to_rfc3339();
    let customers: Vec<String> = (0..12).map(|i| format!("Q-{i}")).collect();
    let events: Vec<String> = customers
        .iter()
        .map(|c| {
            envelope(
                &format!("{c}-e"),
                "FraudConfirmed",
                &now,
                serde_json::json!({"customerId": c, "caseRef": "case-SECRET-77"}),
            )
        })
        .collect();
    // Both instances must own partitions before the queries.
    wait_for("both ready", Duration::from_secs(60), || {
        http(pa, "GET", "/readyz").0 == 200 && http(pb, "GET", "/readyz").0 == 200
    })
    .await;
    rig.produce(&events).await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    let mut local = 0;
    let mut remote = 0;
    for c in &customers {
        let (ca, ba) = http(pa, "GET", &format!("/relationships/{c}"));
        let (cb, bb) = http(pb, "GET", &format!("/relationships/{c}"));
        let (owner, other) = if ca == 200 {
            ((ca, ba), (cb, bb))
        } else {
            ((cb, bb), (ca, ba))
        };
        assert_eq!(owner.0, 200, "{c}: one instance answers with the state");
        assert!(owner.1.contains("Dismantling"), "{}", owner.1);
        assert_eq!(other.0, 404);
        assert!(other.1.contains("another instance"), "{}", other.1);
        local += 1;
        remote += 1;
    }
    assert_eq!((local, remote), (12, 12));
    stop(&mut a);
    stop(&mut b);
    assert!(!rig.log().contains("case-SECRET-77"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_travels_from_input_to_every_output() {
    let rig = Rig::new("trace").await;
    let mut worker = rig.spawn("a");
    let now = terminus::time::Timestamp::now().to_rfc3339();
    let input = envelope(
        "t-1",
        "FraudConfirmed",
        &now,
        serde_json::json!({"customerId": "TR-1", "caseRef": "c"}),
    );
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    common::produce_with_headers(
        &rig.topic("decisions"),
        &[("TR-1", input.as_bytes())],
        &[("traceparent", traceparent)],
    )
    .await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    let mut outputs = Vec::new();
    for role in ["status", "dismantle"] {
        outputs.extend(
            common::consume_until_idle(
                &rig.topic(role),
                Duration::from_millis(300),
                Duration::from_secs(30),
            )
            .await,
        );
    }
    stop(&mut worker);
    assert_eq!(
        outputs.len(),
        4,
        "TerminationAccepted and three DismantleSolution"
    );
    for r in &outputs {
        assert_eq!(r.header("traceparent"), Some(traceparent));
    }
}

/// A healthy start logs no WARN (or ERROR) line, with the Avro codec and a
/// registry configured too: apache-avro used to warn "Union schema with just
/// one member" twice on every start (the one-event topics' schemas).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_start_logs_no_warning() {
    let registry = terminus_test_support::FakeRegistry::start().expect("registry");
    let mut rig = Rig::new("quiet").await;
    rig.extra_args = vec![
        "--output-format".into(),
        "avro-confluent".into(),
        "--schema-registry-url".into(),
        registry.url(),
    ];
    let port = free_port();
    let mut worker = rig.spawn_with("a", &["--admin-addr".into(), format!("127.0.0.1:{port}")]);
    wait_for("/readyz 200", Duration::from_secs(60), || {
        http(port, "GET", "/readyz").0 == 200
    })
    .await;
    let now = terminus::time::Timestamp::now().to_rfc3339();
    rig.produce(&[envelope(
        "q-1",
        "CustomerDeceased",
        &now,
        serde_json::json!({"customerId": "Q-1", "evidenceRef": "cert-1"}),
    )])
    .await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    stop(&mut worker);
    let log = rig.log();
    assert!(log.contains("starting terminus"), "{log}");
    let loud: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(r#""level":"WARN""#) || l.contains(r#""level":"ERROR""#))
        .collect();
    assert!(
        loud.is_empty(),
        "a healthy start logged:\n{}",
        loud.join("\n")
    );
}
