//! What `/healthz` and `/readyz` report, updated by the worker loop.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Shared between the worker thread (writer) and the admin server (reader).
#[derive(Default)]
pub struct Status {
    heartbeat_ms: AtomicI64,
    started: AtomicBool,
    assignment_received: AtomicBool,
    restoring: AtomicBool,
    /// Reading the changelog into the disk store before joining the group.
    warming: AtomicBool,
    pause_requested: AtomicBool,
    stopping: AtomicBool,
    owned: Mutex<Vec<i32>>,
    /// The restore under way: (partition, offsets left to read).
    restore_left: Mutex<Vec<(i32, i64)>>,
    /// Set while the same batch keeps aborting: where it starts and why.
    stuck: Mutex<Option<String>>,
    /// With several processing tasks, each task's own status; this one then
    /// answers for the process: healthy and ready only when every task is.
    tasks: Mutex<Vec<Arc<Status>>>,
}

impl Status {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new processing task's status, part of this one's answers from now
    /// on. It starts with the operator's pause request, if there is one.
    pub fn add_task(&self) -> Arc<Status> {
        let task = Arc::new(Status::new());
        task.request_pause(self.pause_requested());
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(task.clone());
        }
        task
    }

    /// The tasks' statuses (empty with a single task: this status is its own).
    fn tasks(&self) -> Vec<Arc<Status>> {
        self.tasks.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// The loop is alive at `now_ms`.
    pub fn beat(&self, now_ms: i64) {
        self.heartbeat_ms.store(now_ms, Ordering::Relaxed);
        self.started.store(true, Ordering::Relaxed);
    }

    pub fn set_restoring(&self, restoring: bool) {
        self.restoring.store(restoring, Ordering::Relaxed);
    }

    /// A warm-up before joining the group is under way (its progress goes
    /// to [`set_restore_left`](Self::set_restore_left)).
    pub fn set_warming(&self, warming: bool) {
        self.warming.store(warming, Ordering::Relaxed);
    }

    /// Progress of the restore under way, per partition.
    pub fn set_restore_left(&self, left: Vec<(i32, i64)>) {
        if let Ok(mut l) = self.restore_left.lock() {
            *l = left;
        }
    }

    pub fn set_owned(&self, partitions: Vec<i32>) {
        self.assignment_received.store(true, Ordering::Relaxed);
        if let Ok(mut owned) = self.owned.lock() {
            *owned = partitions;
        }
    }

    /// The owned input partitions, of every task.
    pub fn owned(&self) -> Vec<i32> {
        let tasks = self.tasks();
        if tasks.is_empty() {
            return self.owned.lock().map(|o| o.clone()).unwrap_or_default();
        }
        let mut all: Vec<i32> = tasks.iter().flat_map(|t| t.owned()).collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Names a batch that keeps aborting (None once one commits again).
    pub fn set_stuck(&self, stuck: Option<String>) {
        if let Ok(mut s) = self.stuck.lock() {
            *s = stuck;
        }
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Pauses (or resumes) consumption, in every task.
    pub fn request_pause(&self, pause: bool) {
        self.pause_requested.store(pause, Ordering::Relaxed);
        for task in self.tasks() {
            task.request_pause(pause);
        }
    }

    pub fn pause_requested(&self) -> bool {
        self.pause_requested.load(Ordering::Relaxed)
    }

    /// Alive unless the loop has not turned for `stuck_after`.
    ///
    /// # Errors
    /// The reason the process is considered unhealthy.
    pub fn health(&self, now_ms: i64, stuck_after: Duration) -> Result<(), String> {
        // Every task's loop must turn: one stuck task holds its partitions
        // however busy the others are.
        for (k, task) in self.tasks().iter().enumerate() {
            task.health(now_ms, stuck_after)
                .map_err(|why| format!("task {k}: {why}"))?;
        }
        if !self.tasks().is_empty() {
            return Ok(());
        }
        if !self.started.load(Ordering::Relaxed) {
            return Ok(()); // still starting: readiness says so
        }
        if self.restoring.load(Ordering::Relaxed) {
            // A restore normally runs between polls and the loop turns, but the
            // paths that need every partition's state first (an unknown
            // transaction outcome) restore before going on; each restore is
            // bounded by the restore timeout, after which the worker exits.
            return Ok(());
        }
        let idle = now_ms - self.heartbeat_ms.load(Ordering::Relaxed);
        if idle > stuck_after.as_millis() as i64 {
            Err(format!("event loop has not turned for {idle} ms"))
        } else {
            Ok(())
        }
    }

    /// " (p: n records left, …)" for the restore or warm-up under way, or
    /// nothing before its first progress report.
    fn restore_progress(&self) -> String {
        let left = self
            .restore_left
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        if left.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = left
            .iter()
            .map(|(p, n)| format!("{p}: {n} records left"))
            .collect();
        format!(" ({})", parts.join(", "))
    }

    /// Ready when the partitions it owns are restored and being consumed.
    ///
    /// # Errors
    /// Why the instance is not ready.
    pub fn readiness(&self) -> Result<String, String> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err("shutting down".into());
        }
        if self.warming.load(Ordering::Relaxed) {
            return Err(format!(
                "warming the state store from the changelog before joining the group{}",
                self.restore_progress()
            ));
        }
        let tasks = self.tasks();
        if !tasks.is_empty() {
            // Ready when every task is: a task restoring or paused holds
            // back the customers of its partitions.
            let mut each = Vec::new();
            for (k, task) in tasks.iter().enumerate() {
                task.readiness().map_err(|why| format!("task {k}: {why}"))?;
                each.push(format!("task {k}: {:?}", task.owned()));
            }
            return Ok(format!(
                "consuming partitions {:?} ({})",
                self.owned(),
                each.join("; ")
            ));
        }
        if !self.started.load(Ordering::Relaxed) {
            return Err("starting: connecting to Kafka".into());
        }
        if !self.assignment_received.load(Ordering::Relaxed) {
            return Err("waiting for a partition assignment from the consumer group".into());
        }
        if self.restoring.load(Ordering::Relaxed) {
            return Err(format!(
                "restoring assigned partitions from the changelog{}",
                self.restore_progress()
            ));
        }
        if self.pause_requested() {
            return Err("consumption paused by an operator (POST /admin/resume)".into());
        }
        if let Some(stuck) = self.stuck.lock().ok().and_then(|s| s.clone()) {
            return Err(format!("stuck: {stuck}"));
        }
        Ok(format!("consuming partitions {:?}", self.owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_task(s: &Status, owned: Vec<i32>) -> Arc<Status> {
        let t = s.add_task();
        t.beat(1000);
        t.set_owned(owned);
        t
    }

    #[test]
    fn with_tasks_the_process_is_ready_only_when_every_task_is() {
        let s = Status::new();
        let t0 = ready_task(&s, vec![0, 1]);
        let t1 = s.add_task();
        let why = s.readiness().expect_err("task 1 has not started");
        assert!(why.starts_with("task 1: starting"), "{why}");
        t1.beat(1000);
        t1.set_owned(vec![2]);
        t1.set_restoring(true);
        t1.set_restore_left(vec![(2, 40)]);
        let why = s.readiness().expect_err("task 1 restores");
        assert!(
            why.contains("task 1: restoring") && why.contains("2: 40"),
            "{why}"
        );
        t1.set_restoring(false);
        assert_eq!(
            s.readiness(),
            Ok("consuming partitions [0, 1, 2] (task 0: [0, 1]; task 1: [2])".to_owned())
        );
        assert_eq!(s.owned(), vec![0, 1, 2]);
        t0.set_stuck(Some("the batch starting at in[0]@3 aborted 3 times".into()));
        let why = s.readiness().expect_err("task 0 is stuck");
        assert!(why.starts_with("task 0: stuck"), "{why}");
        t0.set_stuck(None);
        s.set_stopping();
        assert_eq!(s.readiness(), Err("shutting down".to_owned()));
    }

    #[test]
    fn with_tasks_one_task_s_stuck_loop_makes_the_process_unhealthy() {
        let s = Status::new();
        let t0 = ready_task(&s, vec![0]);
        let t1 = ready_task(&s, vec![1]);
        t0.beat(39_000);
        t1.beat(39_000);
        assert!(s.health(40_000, Duration::from_secs(30)).is_ok());
        // Task 1 stops turning; task 0 goes on.
        t0.beat(80_000);
        let why = s
            .health(80_000, Duration::from_secs(30))
            .expect_err("task 1 is stuck");
        assert!(
            why.starts_with("task 1: event loop has not turned"),
            "{why}"
        );
        // A restore blocks only its own task's loop, and is no failure.
        t1.set_restoring(true);
        assert!(s.health(80_000, Duration::from_secs(30)).is_ok());
    }

    #[test]
    fn a_pause_reaches_every_task_even_one_added_later() {
        let s = Status::new();
        let t0 = s.add_task();
        s.request_pause(true);
        let t1 = s.add_task();
        assert!(t0.pause_requested() && t1.pause_requested());
        s.request_pause(false);
        assert!(!t0.pause_requested() && !t1.pause_requested());
    }

    #[test]
    fn readiness_says_a_warm_up_is_under_way_and_how_far_it_is() {
        let s = Status::new();
        s.set_warming(true);
        assert!(
            s.readiness()
                .unwrap_err()
                .starts_with("warming the state store from the changelog before joining the group")
        );
        s.set_restore_left(vec![(0, 120), (3, 7)]);
        let why = s.readiness().expect_err("not ready while warming up");
        assert!(
            why.contains("0: 120 records left, 3: 7 records left"),
            "{why}"
        );
        assert_eq!(
            s.health(0, Duration::from_secs(1)),
            Ok(()),
            "alive meanwhile"
        );
        s.set_warming(false);
        s.set_restore_left(Vec::new());
        assert!(s.readiness().unwrap_err().starts_with("starting"));
    }

    #[test]
    fn readiness_names_each_partition_s_restore_progress() {
        let s = Status::new();
        s.beat(1);
        s.set_owned(vec![0, 2]);
        s.set_restoring(true);
        s.set_restore_left(vec![(0, 1500), (2, 7)]);
        let why = s.readiness().expect_err("not ready while restoring");
        assert!(why.contains("0: 1500 records left"), "{why}");
        assert!(why.contains("2: 7 records left"), "{why}");
        s.set_restore_left(Vec::new());
        s.set_restoring(false);
        assert!(s.readiness().is_ok());
    }

    #[test]
    fn readiness_walks_through_start_restore_and_pause() {
        let s = Status::new();
        assert!(s.readiness().unwrap_err().contains("starting"));
        s.beat(1000);
        assert!(s.readiness().unwrap_err().contains("assignment"));
        s.set_restoring(true);
        s.set_owned(vec![0, 1]);
        assert!(s.readiness().unwrap_err().contains("restoring"));
        s.set_restoring(false);
        assert_eq!(s.readiness().unwrap(), "consuming partitions [0, 1]");
        s.request_pause(true);
        assert!(s.readiness().unwrap_err().contains("paused"));
        s.request_pause(false);
        s.set_stuck(Some(
            "the batch starting at in[2]@41 aborted 3 times".into(),
        ));
        let reason = s.readiness().unwrap_err();
        assert!(reason.contains("in[2]@41"), "{reason}");
        s.set_stuck(None);
        assert!(s.readiness().is_ok());
    }

    #[test]
    fn health_fails_when_the_loop_stops_turning() {
        let s = Status::new();
        s.beat(1000);
        assert!(s.health(2000, Duration::from_secs(30)).is_ok());
        assert!(s.health(40_000, Duration::from_secs(30)).is_err());
    }

    #[test]
    fn a_restore_does_not_make_the_worker_unhealthy() {
        let s = Status::new();
        s.beat(1000);
        s.set_restoring(true);
        assert!(s.health(400_000, Duration::from_secs(30)).is_ok());
        s.set_restoring(false);
        assert!(s.health(400_000, Duration::from_secs(30)).is_err());
    }
}
