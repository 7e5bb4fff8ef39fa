//! `scripts/kafka start` waits for a broker as long as it makes progress and
//! gives up on one that stalls. A broker's start-up time grows with the
//! partitions its data directory holds (a day of test runs left 7,273 here,
//! which took 38–78 s to load, and a fixed 60 s deadline failed CI). So the
//! timeout counts seconds without progress, not seconds in all.
//!
//! Runs its own broker on port 19498, started and stopped here.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PORT: &str = "19498";

fn kafka(action: &str) -> Command {
    let mut command = common::broker::kafka_command(action, PORT);
    command.env("KAFKA_STOP_TIMEOUT", "2");
    command
}

/// Stops the broker when dropped, whatever the test did.
struct Stop;

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = kafka("stop").status();
    }
}

#[test]
fn a_start_outlasting_the_timeout_succeeds_while_the_broker_progresses_and_fails_when_it_stalls() {
    let _stop = Stop;
    let _ = kafka("stop").status();

    // A JVM broker needs several seconds to start on this machine, more than
    // the 2 s allowed here without progress: it passes because it keeps working.
    let started = Instant::now();
    let output = kafka("start")
        .env("KAFKA_FRESH", "1")
        .env("KAFKA_START_TIMEOUT", "2")
        .output()
        .expect("run scripts/kafka start");
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "a progressing broker was given up on after {elapsed:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(kafka("stop").status().expect("stop").success());

    // The same start with the broker frozen (SIGSTOP) right after launch:
    // no log line, no CPU, so it is given up on after the 2 s, not waited for.
    let mut start = kafka("start")
        .env("KAFKA_START_TIMEOUT", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scripts/kafka start");
    // Its output is read to the end: a closed pipe would kill the script.
    let mut lines = BufReader::new(start.stdout.take().expect("stdout")).lines();
    let pid = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            let rest = line.strip_prefix("kafka: starting the broker (pid ")?;
            Some(
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>(),
            )
        })
        .expect("scripts/kafka named the broker's pid");
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let frozen = Instant::now();
    let output = start
        .wait_with_output()
        .expect("wait for scripts/kafka start");
    let waited = frozen.elapsed();
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    let said = rest.join().expect("read scripts/kafka output").join("\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a frozen broker was reported ready"
    );
    assert!(
        stderr.contains("stalled: no progress for 2 s"),
        "the error names the stall: {said}\n{stderr}"
    );
    // 2 s of stall, then SIGTERM, 2 s, SIGKILL; far less than the old 60 s.
    assert!(
        waited < Duration::from_secs(30),
        "gave up only after {waited:?}"
    );
    assert!(!running(&pid), "the frozen broker {pid} was left running");
}

/// Whether `pid` still runs. An exited process stays in the table as a zombie
/// until its parent reaps it; the broker's parent is whatever init this
/// machine has, which here took 1–2 s to reap a killed broker. A zombie holds
/// no port, no file and no memory: it has stopped.
fn running(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn a_broker_that_ignores_sigterm_is_killed_and_the_stop_waits_until_it_is_gone() {
    // The port differs from the other test's: the two run in parallel.
    const PORT: &str = "19488";
    let kafka = |action: &str| {
        let mut command = common::broker::kafka_command(action, PORT);
        command.env("KAFKA_STOP_TIMEOUT", "1");
        command
    };
    struct StopOn(&'static str);
    impl Drop for StopOn {
        fn drop(&mut self) {
            let _ = common::broker::kafka_command("stop", self.0).status();
        }
    }
    let _stop = StopOn(PORT);
    let _ = kafka("stop").status();
    let output = kafka("start")
        .env("KAFKA_FRESH", "1")
        .output()
        .expect("run scripts/kafka start");
    assert!(
        output.status.success(),
        "the broker did not start: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let status = kafka("status").output().expect("scripts/kafka status");
    let said = String::from_utf8_lossy(&status.stdout);
    let pid: String = said
        .split_once("(pid ")
        .map(|(_, rest)| rest.chars().take_while(char::is_ascii_digit).collect())
        .unwrap_or_default();
    assert!(!pid.is_empty(), "scripts/kafka status named no pid: {said}");

    // Frozen, it cannot act on SIGTERM: the stop must go on to SIGKILL and
    // then wait for the kernel and the reaper, however long they take.
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let output = kafka("stop").output().expect("run scripts/kafka stop");
    assert!(
        output.status.success(),
        "stopping a broker that ignores SIGTERM failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!running(&pid), "the stop returned with {pid} running");
    let status = kafka("status").status().expect("scripts/kafka status");
    assert_eq!(status.code(), Some(3), "status after the stop");
}
