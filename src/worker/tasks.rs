//! Several processing tasks in one process (`--tasks N`).
//!
//! Each task is what a single-task worker is: its own consumer in the
//! group, its own transactional producer, processor and engines, on its own
//! thread. The group gives each task a disjoint share of the partitions, so
//! one task's commit (a broker round trip the loop waits for) overlaps the
//! others' processing, as Kafka Streams' stream threads do under
//! exactly_once_v2. What the tasks share: the metrics, the stop flag, and
//! the disk database, so that a partition moving from one task to another
//! reads only the changelog's tail.

use super::restore::Stores;
use super::{Telemetry, WorkerError, WorkerOptions};
use crate::engine::{Lookup, SharedEngines};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{error, info, info_span};

/// The span every log line of a task carries (`task=k`). Not exported as a
/// trace span: it lasts as long as the process, and every commit span would
/// become its child, all in one trace.
pub const TASK_SPAN: &str = "processing_task";

/// Every task's engines, for queries: a partition is found in the task that
/// owns it.
#[derive(Clone, Default)]
pub struct TaskEngines(Arc<RwLock<Vec<SharedEngines>>>);

impl TaskEngines {
    /// Task `task`'s engines (created on first use).
    pub fn task(&self, task: usize) -> SharedEngines {
        let mut all = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while all.len() <= task {
            all.push(SharedEngines::default());
        }
        all[task].clone()
    }

    fn all(&self) -> Vec<SharedEngines> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The committed state of `key` in `partition`, from the task owning it.
    pub fn committed(&self, partition: i32, key: &str) -> Lookup {
        for engines in self.all() {
            match engines.committed(partition, key) {
                Lookup::NotOwned => {}
                found => return found,
            }
        }
        Lookup::NotOwned
    }
}

/// Lets the tasks join the group together, once each has its producer and
/// restore consumer ready (creating them takes each task a different time).
/// Joining within milliseconds of each other, they are assigned in one
/// generation (within the broker's `group.initial.rebalance.delay.ms`)
/// instead of the first task getting every partition, restoring them, and
/// giving most back in a rebalance when the next one joins.
pub struct JoinGate {
    arrived: AtomicUsize,
    tasks: usize,
    halt: Arc<AtomicBool>,
}

/// Longest a task waits at the gate for the others.
const GATE_TIMEOUT: Duration = Duration::from_secs(30);

impl JoinGate {
    fn new(tasks: usize, halt: Arc<AtomicBool>) -> Self {
        JoinGate {
            arrived: AtomicUsize::new(0),
            tasks,
            halt,
        }
    }

    /// Waits until every task arrived, one failed, or the wait is too long
    /// (a slow task then joins late, which costs a rebalance, nothing more).
    pub fn wait(&self) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + GATE_TIMEOUT;
        while self.arrived.load(Ordering::SeqCst) < self.tasks
            && !self.halt.load(Ordering::Relaxed)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Refuses task counts the topics cannot feed: a task without partitions
/// would only hold a producer and a group membership.
///
/// # Errors
/// [`WorkerError::Tasks`] naming the counts.
pub fn check_count(tasks: usize, partitions: i32) -> Result<(), WorkerError> {
    if tasks == 0 {
        return Err(WorkerError::Tasks("--tasks must be at least 1".to_owned()));
    }
    if i64::try_from(tasks).unwrap_or(i64::MAX) > i64::from(partitions) {
        return Err(WorkerError::Tasks(format!(
            "--tasks {tasks} is more than the {partitions} partitions of the input topics; each task needs a partition of its own (use at most {partitions})"
        )));
    }
    Ok(())
}

/// Runs `options.tasks` tasks until `stop` is set or one of them fails;
/// then stops the others, which commit and leave, and returns the first
/// failure.
///
/// # Errors
/// The first task's error; `Fatal` when a task thread cannot start or panics.
pub fn run_all(
    options: &WorkerOptions,
    stop: &AtomicBool,
    telemetry: &Telemetry,
    stores: &Stores,
    partitions: i32,
) -> Result<(), WorkerError> {
    // The tasks' own stop flag: set by the caller's, or by a failed task.
    let halt = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(JoinGate::new(options.tasks, halt.clone()));
    let mut running: Vec<(usize, JoinHandle<Result<(), WorkerError>>)> = Vec::new();
    let mut first_error: Option<WorkerError> = None;
    for task in 0..options.tasks {
        let opts = Arc::new(options.for_task(task));
        info!(
            task,
            transactional_id = %opts.transactional_id(),
            "starting processing task"
        );
        let status = telemetry.status.add_task();
        let engines = telemetry.engines.task(task);
        let metrics = telemetry.metrics.clone();
        let stores = stores.clone();
        let halt = halt.clone();
        let gate = gate.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("terminus-task-{task}"))
            .spawn(move || {
                crate::telemetry::metrics::set_current_task(task);
                let span = info_span!(TASK_SPAN, task);
                let _entered = span.enter();
                let parts = super::TaskParts {
                    task,
                    partitions,
                    stores,
                    metrics,
                    status,
                    engines,
                    join_gate: Some(gate),
                };
                super::run_task(opts, &halt, parts)
            });
        match spawned {
            Ok(handle) => running.push((task, handle)),
            Err(e) => {
                first_error = Some(WorkerError::Fatal(format!(
                    "cannot start processing task {task}: {e}"
                )));
                break;
            }
        }
    }
    if first_error.is_some() {
        halt.store(true, Ordering::SeqCst);
    }
    while !running.is_empty() {
        if stop.load(Ordering::Relaxed) && !halt.swap(true, Ordering::SeqCst) {
            info!("stopping every processing task");
        }
        let (finished, still): (Vec<_>, Vec<_>) =
            running.into_iter().partition(|(_, h)| h.is_finished());
        running = still;
        for (task, handle) in finished {
            let outcome = handle.join().unwrap_or_else(|_| {
                Err(WorkerError::Fatal(format!(
                    "processing task {task} panicked"
                )))
            });
            // A task ends on its own only when it failed: the process goes,
            // so that the orchestrator restarts it whole.
            if !halt.swap(true, Ordering::SeqCst) {
                match &outcome {
                    Err(e) => {
                        error!(task, error = %e, "processing task failed; stopping the other tasks")
                    }
                    Ok(()) => info!(task, "processing task ended; stopping the other tasks"),
                }
            }
            if let Err(e) = outcome {
                first_error.get_or_insert(e);
            }
        }
        if halt.load(Ordering::Relaxed) {
            telemetry.status.set_stopping();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_counts_beyond_the_partitions_are_refused() {
        assert!(check_count(1, 1).is_ok());
        assert!(check_count(3, 3).is_ok());
        let zero = check_count(0, 3).unwrap_err().to_string();
        assert!(zero.contains("at least 1"), "{zero}");
        let many = check_count(4, 3).unwrap_err().to_string();
        assert!(
            many.contains("--tasks 4") && many.contains("3 partitions"),
            "{many}"
        );
    }

    #[test]
    fn a_query_finds_the_task_owning_the_partition() {
        use crate::engine::Engine;
        use crate::store::{MemoryStore, PartitionStore};
        let all = TaskEngines::default();
        let policy = Arc::new(crate::domain::Policy::default());
        let mut engine = Engine::with_store(policy, PartitionStore::Memory(MemoryStore::new()));
        engine.restore("C-1", Some(crate::domain::CustomerState::default()));
        all.task(1).lock().insert(2, engine);
        assert_eq!(all.committed(0, "C-1"), Lookup::NotOwned);
        assert!(matches!(all.committed(2, "C-1"), Lookup::Found(_)));
        assert_eq!(all.committed(2, "C-2"), Lookup::Unknown);
    }
}
