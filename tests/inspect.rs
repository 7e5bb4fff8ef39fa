//! `terminus inspect CUSTOMER_ID`, the support staff's question about one
//! customer: against the admin servers of a running group (the first address
//! given is not the owner, or not even up), and offline from the changelog
//! topic once the worker has stopped; human text and `--json`.

mod common;

use common::free_port;

use common::bootstrap;
use common::rig::{Rig, envelope, stop};
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

fn inspect(rig: &Rig, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_terminus"))
        .arg("inspect")
        .args(args)
        .args(["--bootstrap-servers", &bootstrap()])
        .args(["--changelog-topic", &rig.topic("changelog")])
        .env_remove("KAFKA_BOOTSTRAP")
        .output()
        .expect("run terminus inspect");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn inspect_json(rig: &Rig, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (ok, out, err) = inspect(rig, &all);
    assert!(ok, "terminus inspect {all:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_staff_ask_about_one_customer_online_and_offline() {
    let rig = Rig::new("inspect").await;
    let port = free_port();
    let mut worker = rig.spawn_with("a", &["--admin-addr".into(), format!("127.0.0.1:{port}")]);
    let now = terminus::time::Timestamp::now().to_rfc3339();
    rig.produce(&[
        envelope(
            "x-1",
            "CustomerTerminationRequested",
            &now,
            json!({"customerId": "X-PENDING", "erasureRequested": true}),
        ),
        envelope(
            "x-2",
            "FraudConfirmed",
            &now,
            json!({"customerId": "X-FRAUD", "caseRef": "case-9"}),
        ),
        envelope(
            "x-3",
            "LegalHoldPlaced",
            &now,
            json!({"customerId": "X-FRAUD", "holdRef": "hold-7"}),
        ),
    ])
    .await;
    rig.wait_caught_up(Duration::from_secs(60)).await;

    // Online: a dead address first, then the owner.
    let addrs = format!("127.0.0.1:{},127.0.0.1:{port}", free_port());
    let deadline = Instant::now() + Duration::from_secs(30);
    let fraud = loop {
        let v = inspect_json(&rig, &["X-FRAUD", "--admin-addrs", &addrs]);
        if v["phase"] == "Dismantling" && v["legalHolds"] == json!(["hold-7"]) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "X-FRAUD never showed dismantling with its hold: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(fraud["source"], format!("instance at 127.0.0.1:{port}"));
    assert_eq!(fraud["termination"]["category"], "fraud");
    let verticals: Vec<&str> = fraud["pendingVerticals"]
        .as_array()
        .expect("pending verticals")
        .iter()
        .filter_map(|v| v["vertical"].as_str())
        .collect();
    assert_eq!(verticals, ["billing", "fulfillment", "assurance"]);
    assert_eq!(fraud["nextTimer"]["kind"], "dismantleDeadline");

    let pending = inspect_json(&rig, &["X-PENDING", "--admin-addrs", &addrs]);
    assert_eq!(pending["phase"], "Pending");
    assert_eq!(pending["termination"]["erasureRequested"], true);
    assert_eq!(pending["nextTimer"]["kind"], "effective");
    let due = pending["nextTimer"]["dueInSeconds"]
        .as_i64()
        .expect("due in");
    assert!((13 * 86_400..=14 * 86_400).contains(&due), "{due}");

    let (ok, text, err) = inspect(&rig, &["X-FRAUD", "--admin-addrs", &addrs]);
    assert!(ok, "{err}");
    for part in [
        "phase         Dismantling",
        "waiting for   billing (attempt 1, awaiting)",
        "legal holds   hold-7",
        "next timer    dismantleDeadline at",
    ] {
        assert!(text.contains(part), "{part:?} missing in:\n{text}");
    }
    let unknown = inspect_json(&rig, &["X-NOBODY", "--admin-addrs", &addrs]);
    assert_eq!(unknown["phase"], "Unknown");
    let (ok, _, err) = inspect(
        &rig,
        &[
            "X-FRAUD",
            "--admin-addrs",
            &format!("127.0.0.1:{}", free_port()),
        ],
    );
    assert!(
        !ok && err.contains("no admin server owns customer X-FRAUD"),
        "{err}"
    );

    // Offline: the worker stopped, the changelog tells the same.
    stop(&mut worker);
    let offline = inspect_json(&rig, &["X-FRAUD", "--from-changelog"]);
    assert!(
        offline["source"]
            .as_str()
            .unwrap_or("")
            .starts_with("changelog "),
        "{offline:#}"
    );
    for field in [
        "phase",
        "termination",
        "pendingVerticals",
        "legalHolds",
        "dismantleDeadline",
    ] {
        assert_eq!(offline[field], fraud[field], "{field}");
    }
    assert_eq!(offline["nextTimer"]["dueAt"], fraud["nextTimer"]["dueAt"]);
    let offline_pending = inspect_json(&rig, &["X-PENDING", "--from-changelog"]);
    assert_eq!(offline_pending["termination"], pending["termination"]);
    let nobody = inspect_json(&rig, &["X-NOBODY", "--from-changelog"]);
    assert_eq!(nobody["phase"], "Unknown");
}
