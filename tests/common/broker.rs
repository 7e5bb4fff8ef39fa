//! A dedicated broker for tests that stop and start it: its own port (below
//! the ephemeral range, so no client socket can hold it), started by
//! `scripts/kafka` and stopped when the guard drops. A test binary that uses
//! one talks only to it (`KAFKA_BOOTSTRAP` is set for the whole process), so
//! each such test lives in a file of its own.

use super::rig::{Rig, assert_same_outputs, journeys, simulate, stop};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `scripts/kafka <action>` for the plaintext broker on `port` (its
/// controller on the next port), to add settings to or run.
pub fn kafka_command(action: &str, port: &str) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka");
    let controller = (port.parse::<u32>().expect("port") + 1).to_string();
    let mut command = Command::new(script);
    command
        .arg(action)
        .env("KAFKA_SECURITY", "plaintext")
        .env("KAFKA_PORT", port)
        .env("KAFKA_CONTROLLER_PORT", controller);
    command
}

/// Runs `scripts/kafka <action>` for the broker on `port`; it must succeed.
pub fn kafka(action: &str, port: &str) {
    let status = kafka_command(action, port)
        .status()
        .expect("run scripts/kafka");
    assert!(status.success(), "scripts/kafka {action} failed");
}

/// Stops the dedicated broker when dropped.
pub struct Broker(pub &'static str);

impl Drop for Broker {
    fn drop(&mut self) {
        kafka("stop", self.0);
    }
}

/// Journeys through one worker on a dedicated broker at `port`, stopped for
/// `outage` after the fifth phase while the worker may hold an open
/// transaction; the committed outputs must equal the simulator's and the
/// worker must still run.
pub async fn journeys_through_an_outage(port: &'static str, outage: Duration, extra: &[&str]) {
    kafka("start", port);
    let _broker = Broker(port);
    // SAFETY (of the environment): set before any client of this test binary
    // exists; every helper reads it when it creates a client.
    unsafe { std::env::set_var("KAFKA_BOOTSTRAP", format!("127.0.0.1:{port}")) };
    let mut rig = Rig::new("restart").await;
    rig.extra_args = extra.iter().map(|s| (*s).to_owned()).collect();
    let phases = journeys(4, 100, 10);
    let mut worker = rig.spawn("a");
    for (i, phase) in phases.iter().enumerate() {
        rig.produce(phase).await;
        if i == 4 {
            kafka("stop", port);
            tokio::time::sleep(outage).await;
            kafka("start", port);
        }
        rig.wait_caught_up(Duration::from_secs(180)).await;
    }
    let actual = rig.outputs().await;
    let exited = worker.try_wait().expect("worker status");
    assert!(
        exited.is_none(),
        "the worker exited during the outage: {exited:?}; logs in {}",
        rig.log_dir.display()
    );
    stop(&mut worker);
    let events: Vec<String> = phases.concat();
    assert_same_outputs(&actual, &simulate(&events));
}
