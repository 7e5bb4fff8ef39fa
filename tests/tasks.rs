//! `--tasks N`: several processing tasks in one worker process, each with
//! its own consumer and transactional producer, against the real broker.
//! Outputs must equal the simulator's, as with one task, across crashes and
//! partitions moving between the tasks of one process.

mod common;

use common::rig::{Rig, assert_same_outputs, journeys, simulate, simulate_with, stop};
use common::{free_port, http, wait_for};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};
use terminus::domain::{Policy, Rule};
use terminus::time::{Period, Timestamp};

/// The "partitions restored" lines of `log` (one instance's, from `from`
/// bytes on): (task, partitions, partitions restored from their checkpoint).
fn restores(log: &str) -> Vec<(Option<u64>, String, String)> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "partitions restored from the changelog")
        .map(|v| {
            (
                task_of(&v),
                v["partitions"].as_str().unwrap_or_default().to_owned(),
                v["from_checkpoint"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The `task` field of a JSON log line's span list, if it has one.
fn task_of(line: &serde_json::Value) -> Option<u64> {
    line["spans"]
        .as_array()?
        .iter()
        .find_map(|s| s["task"].as_u64())
}

fn log_of(rig: &Rig, instance: &str) -> String {
    std::fs::read_to_string(rig.log_dir.join(format!("{instance}.log"))).unwrap_or_default()
}

/// Two tasks split the three partitions; journeys through them, some of
/// whose notices end (a timer fires) after the last event, give exactly the
/// simulator's outputs. `/readyz` names each task's partitions and the log
/// lines carry their task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tasks_share_the_partitions_and_equal_the_simulator() {
    let mut rig = Rig::new("tasks-e2e").await;
    // The journeys' events lie about ten minutes back (see `journeys`); a
    // notice of ten minutes and a margin ends after every event of the test,
    // so the timers fire while the worker runs, after each customer's last
    // event, as in the simulator.
    let margin = Duration::from_secs(25);
    let notice = Duration::from_secs(600) + margin;
    rig.extra_args = vec![
        "--tasks".into(),
        "2".into(),
        "--customer-notice".into(),
        format!("{}s", notice.as_secs()),
    ];
    let port = free_port();
    let mut worker = rig.spawn_with("a", &["--admin-addr".into(), format!("127.0.0.1:{port}")]);
    // Range assignment gives one task two partitions and the other one.
    wait_for(
        "both tasks ready with partitions",
        Duration::from_secs(40),
        || {
            let (code, body) = http(port, "GET", "/readyz");
            code == 200
                && body.contains("consuming partitions [0, 1, 2]")
                && body.contains("task 0: [")
                && body.contains("task 1: [")
                && !body.contains(": []")
        },
    )
    .await;
    let journeys_made = Timestamp::now().millis();
    let phases = journeys(20, 60, 6);
    rig.feed(&phases).await;
    let fed = Timestamp::now().millis();
    assert!(
        fed < journeys_made + margin.as_millis() as i64,
        "the events were fed before any notice ended (took {} ms)",
        fed - journeys_made
    );
    let events: Vec<String> = phases.concat();
    let policy = Policy::with_default(Rule {
        customer_notice: Period::exact(notice),
        ..Rule::default()
    });
    let until = Timestamp::from_millis(journeys_made + margin.as_millis() as i64 + 5_000);
    let expected = simulate_with(&events, policy, Some(until));
    let timer_outputs = expected.len() - simulate(&events).len();
    assert!(timer_outputs > 0, "some notices end during the test");
    // Wait out the notices, then for the timers' outputs.
    while Timestamp::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut actual = rig.outputs().await;
    while actual.len() < expected.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        actual = rig.outputs().await;
    }
    let (_, metrics) = http(port, "GET", "/metrics");
    stop(&mut worker);
    assert_same_outputs(&actual, &expected);
    assert!(
        metrics.contains("terminus_assigned_partitions 3"),
        "the process owns every partition"
    );
    let tasks: Vec<Option<u64>> = restores(&log_of(&rig, "a"))
        .into_iter()
        .map(|(task, _, _)| task)
        .collect();
    assert!(
        tasks.contains(&Some(0)) && tasks.contains(&Some(1)),
        "both tasks restored partitions, and say so in their logs: {tasks:?}"
    );
}

/// SIGKILL a two-task worker while it works, three times, and come back
/// with three tasks the last time, so that partitions move between the
/// tasks of one process: outputs still equal the simulator's (nothing lost,
/// nothing twice), and every restart restores from the shared disk store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_two_task_worker_loses_and_duplicates_nothing() {
    let mut rig = Rig::new("tasks-kill").await;
    rig.extra_args = vec!["--static-membership".into(), "true".into()];
    let tasks = |n: &str| ["--tasks".to_owned(), n.to_owned()];
    let phases = journeys(21, 300, 16);
    let events: Vec<String> = phases.concat();
    let killer = {
        let rig = rig.clone();
        tokio::task::spawn_blocking(move || {
            let mut rng = StdRng::seed_from_u64(21);
            let mut worker = rig.spawn_with("a", &tasks("2"));
            // Where each later incarnation's log starts.
            let mut starts: Vec<usize> = Vec::new();
            for _ in 0..3 {
                // Kill while it works: after both tasks of this incarnation
                // restored their partitions and it committed a transaction.
                let from = starts.last().copied().unwrap_or(0);
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let log = log_of(&rig, "a");
                    let mine = log.get(from..).unwrap_or_default();
                    let tasks: std::collections::BTreeSet<Option<u64>> =
                        restores(mine).into_iter().map(|(t, _, _)| t).collect();
                    if (tasks.len() >= 2 && mine.contains("transaction committed"))
                        || Instant::now() > deadline
                    {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
                worker.kill().expect("SIGKILL");
                let _ = worker.wait();
                starts.push(log_of(&rig, "a").len());
                let n = if starts.len() == 3 { "3" } else { "2" };
                worker = rig.spawn_with("a", &tasks(n));
            }
            (worker, starts)
        })
    };
    for phase in &phases {
        rig.produce(phase).await;
        rig.wait_caught_up(Duration::from_secs(60)).await;
    }
    let (mut worker, starts) = killer.await.expect("killer task");
    rig.wait_caught_up(Duration::from_secs(60)).await;
    let actual = rig.outputs().await;
    stop(&mut worker);
    assert_same_outputs(&actual, &simulate(&events));
    let log = log_of(&rig, "a");
    // From the second restart on, every partition had committed state.
    let later = restores(&log[starts[1]..]);
    assert!(later.len() >= 4, "each restart restored: {later:?}");
    for (task, partitions, from_checkpoint) in &later {
        assert_eq!(
            partitions, from_checkpoint,
            "task {task:?} restored from the kept store"
        );
    }
    let last: Vec<Option<u64>> = restores(&log[starts[2]..])
        .into_iter()
        .map(|(task, _, _)| task)
        .collect();
    assert!(
        last.contains(&Some(2)),
        "the third task took partitions over: {last:?}"
    );
}

/// Another process takes task 1's transactional id (an instance started
/// with `--instance-id a-t1` beside a two-task instance `a`): task 1 is
/// fenced, and the whole process exits non-zero with that error, task 0
/// having committed and left, so that the orchestrator restarts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_task_stops_the_process_and_the_other_task_leaves() {
    let rig = Rig::new("tasks-fenced").await;
    let tasks = ["--tasks".to_owned(), "2".to_owned()];
    let mut a = rig.spawn_with("a", &tasks);
    wait_for("both tasks restored", Duration::from_secs(40), || {
        let seen: std::collections::BTreeSet<Option<u64>> = restores(&log_of(&rig, "a"))
            .into_iter()
            .map(|(t, _, _)| t)
            .collect();
        seen.len() >= 2
    })
    .await;
    let mut intruder = rig.spawn("a-t1");
    let phases = journeys(22, 30, 3);
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut status = None;
    for phase in phases.iter().cycle() {
        rig.produce(phase).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        status = a.try_wait().expect("try_wait");
        if status.is_some() || Instant::now() > deadline {
            break;
        }
    }
    stop(&mut intruder);
    if status.is_none() {
        stop(&mut a);
    }
    let status = status.expect("the fenced instance exited by itself");
    assert!(!status.success(), "exited non-zero: {status:?}");
    let log = log_of(&rig, "a");
    let failed = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "processing task failed; stopping the other tasks")
        .expect("the failing task is named");
    assert_eq!(failed["task"], 1, "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("fenced"),
        "{failed}"
    );
    // The message names the transactional id that was taken, not only
    // librdkafka's error text.
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("transactional id {}-a-t1", rig.group)),
        "{failed}"
    );
    assert!(
        log.contains("worker stopped"),
        "the process shut down in order"
    );
}
