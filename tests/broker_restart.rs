//! The worker rides out a broker restart: a dedicated broker (its own port, so
//! other tests keep theirs) is stopped and started mid-stream while one worker
//! runs, and the committed outputs still equal the simulator's.

mod common;

use common::rig::{Rig, assert_same_outputs, journeys, simulate, stop};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

// Below the ephemeral port range (32768+), so no client socket can hold it.
const PORT: &str = "19492";

fn kafka(action: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka");
    let status = Command::new(script)
        .arg(action)
        .env("KAFKA_PORT", PORT)
        .env("KAFKA_CONTROLLER_PORT", "19493")
        .status()
        .expect("run scripts/kafka");
    assert!(status.success(), "scripts/kafka {action} failed");
}

struct Broker;

impl Drop for Broker {
    fn drop(&mut self) {
        kafka("stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_carries_on_through_a_broker_restart() {
    kafka("start");
    let _broker = Broker;
    // This test binary talks only to its own broker.
    unsafe { std::env::set_var("KAFKA_BOOTSTRAP", format!("127.0.0.1:{PORT}")) };
    let rig = Rig::new("restart").await;
    let phases = journeys(4, 100, 10);
    let mut worker = rig.spawn("a");
    for (i, phase) in phases.iter().enumerate() {
        rig.produce(phase).await;
        if i == 4 {
            // Stop the broker while the worker may hold an open transaction,
            // for longer than the session timeout (6 s): the worker loses its
            // assignment and must rejoin on its own.
            kafka("stop");
            tokio::time::sleep(Duration::from_secs(8)).await;
            kafka("start");
        }
        rig.wait_caught_up(Duration::from_secs(180)).await;
    }
    let actual = rig.outputs().await;
    let exited = worker.try_wait().expect("worker status");
    assert!(
        exited.is_none(),
        "the worker exited during the restart: {exited:?}"
    );
    stop(&mut worker);
    let events: Vec<String> = phases.concat();
    assert_same_outputs(&actual, &simulate(&events));
}
