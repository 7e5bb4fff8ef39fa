//! Prometheus metrics: one struct, methods named after what happened.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

thread_local! {
    /// The processing task the current thread runs (0 with a single task).
    /// A few gauges are one task's view of its own partitions; the thread
    /// says which task is setting them, so that the code setting them (the
    /// pipeline, the processor, rebalance callbacks, all on the task's
    /// thread) need not carry the index.
    static TASK: Cell<usize> = const { Cell::new(0) };
}

/// Why the worker restarted an input partition's fetch itself.
pub const FETCH_RESTART_REASONS: [&str; 2] = ["kept_after_rebalance", "unfetched_after_resume"];

/// Marks the current thread as processing task `task`'s (see [`Metrics`]).
pub fn set_current_task(task: usize) {
    TASK.with(|t| t.set(task));
}

fn current_task() -> usize {
    TASK.with(Cell::get)
}

/// The gauges each task computes from its own partitions; what is exported
/// combines every task's.
#[derive(Default)]
struct PerTask {
    state: BTreeMap<usize, StateGauges>,
    abort_streak: BTreeMap<usize, u32>,
    restore_remaining: BTreeMap<usize, Vec<(i32, i64)>>,
    /// The lag series each task set, so that one task's revocation forgets
    /// its own series and not the other tasks'.
    lag: BTreeMap<usize, BTreeSet<(String, i32)>>,
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Events consumed and produced by topic and type, counted by the loop and
/// added to [`Metrics`] once per transaction: a labelled counter costs a map
/// lookup and two label strings per call, which the profile showed per record.
#[derive(Default, Debug)]
pub struct EventTally {
    consumed: Vec<(String, &'static str, u64)>,
    produced: Vec<(String, &'static str, u64)>,
}

impl EventTally {
    pub fn consumed(&mut self, topic: &str, event_type: &'static str) {
        count(&mut self.consumed, topic, event_type);
    }

    pub fn produced(&mut self, topic: &str, event_type: &'static str) {
        count(&mut self.produced, topic, event_type);
    }
}

fn count(entries: &mut Vec<(String, &'static str, u64)>, topic: &str, event_type: &'static str) {
    match entries
        .iter_mut()
        .find(|(t, e, _)| *e == event_type && t == topic)
    {
        Some(entry) => entry.2 += 1,
        None => entries.push((topic.to_owned(), event_type, 1)),
    }
}

/// Every metric Terminus exports, all prefixed `terminus_` (see README).
pub struct Metrics {
    registry: Registry,
    consumer_lag: Family<Labels, Gauge>,
    events_consumed: Family<Labels, Counter>,
    events_produced: Family<Labels, Counter>,
    dead_letters: Family<Labels, Counter>,
    outcomes_ignored: Family<Labels, Counter>,
    rejections: Family<Labels, Counter>,
    duplicates: Counter,
    end_to_end_latency: Histogram,
    commit_duration: Histogram,
    transactions: Family<Labels, Counter>,
    rebalances: Family<Labels, Counter>,
    fetch_restarts: Family<Labels, Counter>,
    restore_duration: Histogram,
    records_restored: Counter,
    restore_remaining: Family<Labels, Gauge>,
    relationships: Family<Labels, Gauge>,
    pending_timers: Gauge,
    stalled_terminations: Gauge,
    oldest_pending_dismantle_age: Gauge<f64, AtomicU64>,
    timers_fired: Counter,
    ready: Gauge,
    assigned_partitions: Gauge,
    batch_abort_streak: Gauge,
    per_task: Mutex<PerTask>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("terminus");
        let m = Metrics {
            consumer_lag: Family::default(),
            events_consumed: Family::default(),
            events_produced: Family::default(),
            dead_letters: Family::default(),
            outcomes_ignored: Family::default(),
            rejections: Family::default(),
            duplicates: Counter::default(),
            end_to_end_latency: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            commit_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            transactions: Family::default(),
            rebalances: Family::default(),
            fetch_restarts: Family::default(),
            restore_duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            records_restored: Counter::default(),
            restore_remaining: Family::default(),
            relationships: Family::default(),
            pending_timers: Gauge::default(),
            stalled_terminations: Gauge::default(),
            oldest_pending_dismantle_age: Gauge::default(),
            timers_fired: Counter::default(),
            ready: Gauge::default(),
            assigned_partitions: Gauge::default(),
            batch_abort_streak: Gauge::default(),
            per_task: Mutex::default(),
            registry: Registry::default(),
        };
        // Label values known in advance start at 0, so that rate() and
        // increase() see the first dead letter, abort or lost assignment.
        for reason in crate::contract::DeadLetterReason::ALL {
            let _ = m
                .dead_letters
                .get_or_create(&labels(&[("reason", reason.as_str())]));
        }
        for code in crate::contract::RejectionCode::ALL {
            let _ = m
                .rejections
                .get_or_create(&labels(&[("reason_code", code.as_str())]));
        }
        for reason in crate::domain::IgnoreReason::ALL {
            let _ = m
                .outcomes_ignored
                .get_or_create(&labels(&[("reason", reason.as_str())]));
        }
        for result in ["committed", "aborted"] {
            let _ = m.transactions.get_or_create(&labels(&[("result", result)]));
        }
        for kind in ["assign", "revoke", "lost"] {
            let _ = m.rebalances.get_or_create(&labels(&[("kind", kind)]));
        }
        for reason in FETCH_RESTART_REASONS {
            let _ = m
                .fetch_restarts
                .get_or_create(&labels(&[("reason", reason)]));
        }
        registry.register(
            "consumer_lag",
            "Input records not yet committed: high watermark minus the offset committed by the last transaction, per topic and partition",
            m.consumer_lag.clone(),
        );
        registry.register(
            "events_consumed",
            "Input records consumed, by topic and event type (`invalid` for dead letters)",
            m.events_consumed.clone(),
        );
        registry.register(
            "events_produced",
            "Output events produced (committed or about to be), by topic and event type",
            m.events_produced.clone(),
        );
        registry.register(
            "dead_letters",
            "Input records sent to the dead-letter topic, by reason code",
            m.dead_letters.clone(),
        );
        registry.register(
            "outcomes_ignored",
            "Dismantle outcomes that named no current dismantling, by reason",
            m.outcomes_ignored.clone(),
        );
        registry.register(
            "rejections",
            "TerminationRejected events, by reason code",
            m.rejections.clone(),
        );
        registry.register(
            "duplicate_events",
            "Input events ignored because their eventId was seen before",
            m.duplicates.clone(),
        );
        registry.register(
            "end_to_end_latency_seconds",
            "From an input record's Kafka timestamp to the commit of the transaction holding its outputs",
            m.end_to_end_latency.clone(),
        );
        registry.register(
            "transaction_commit_seconds",
            "Duration of send_offsets_to_transaction plus commit_transaction",
            m.commit_duration.clone(),
        );
        registry.register(
            "transactions",
            "Kafka transactions, by result (committed, aborted)",
            m.transactions.clone(),
        );
        registry.register(
            "rebalances",
            "Consumer group rebalance callbacks, by kind (assign, revoke, lost)",
            m.rebalances.clone(),
        );
        registry.register(
            "fetch_restarts",
            "Input partitions whose fetch the worker restarted itself, by reason: `kept_after_rebalance` (an incremental rebalance left them idle), `unfetched_after_resume` (no fetch followed their resume after a restore)",
            m.fetch_restarts.clone(),
        );
        registry.register(
            "restore_seconds",
            "Time to restore assigned partitions from the changelog",
            m.restore_duration.clone(),
        );
        registry.register(
            "records_restored",
            "Changelog records read while restoring",
            m.records_restored.clone(),
        );
        registry.register(
            "restore_remaining_records",
            "Changelog records (offsets) still to read by the restore under way, per changelog partition; absent when none runs",
            m.restore_remaining.clone(),
        );
        registry.register(
            "relationships",
            "Customers held by this instance, by state",
            m.relationships.clone(),
        );
        registry.register(
            "pending_timers",
            "Armed timers (effective time, dismantle deadline, retention, forget) of owned customers",
            m.pending_timers.clone(),
        );
        registry.register(
            "stalled_terminations",
            "Terminations in Dismantling that raised TerminationStalled",
            m.stalled_terminations.clone(),
        );
        registry.register(
            "oldest_pending_dismantle_age_seconds",
            "Age of the oldest dismantling still waiting for a vertical",
            m.oldest_pending_dismantle_age.clone(),
        );
        registry.register(
            "timers_fired",
            "Timers fired (outputs they caused are counted in events_produced)",
            m.timers_fired.clone(),
        );
        registry.register(
            "ready",
            "1 when GET /readyz would answer 200 (assigned partitions restored and consumed), else 0",
            m.ready.clone(),
        );
        registry.register(
            "assigned_partitions",
            "Input partitions (of each input topic) this instance owns",
            m.assigned_partitions.clone(),
        );
        registry.register(
            "batch_abort_streak",
            "How many times in a row the transaction starting at the same input offsets aborted (0 after a commit); 3 or more means a batch is stuck and /readyz names it",
            m.batch_abort_streak.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Readiness and assignment, as `/readyz` sees them at scrape time.
    pub fn set_readiness(&self, ready: bool, assigned_partitions: usize) {
        self.ready.set(i64::from(ready));
        self.assigned_partitions
            .set(i64::try_from(assigned_partitions).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Starts the events counters of every (topic, event type) the contract
    /// allows at 0, under the configured topic names, so that every metric has
    /// a series from the start (`invalid` counts dead-lettered input).
    pub fn start_topic_counters(&self, topics: &crate::kafka::topics::TopicNames) {
        use crate::contract::Topic;
        for topic in Topic::INPUTS {
            let name = topics.name(topic);
            for event_type in crate::codec::schemas::event_types_of(topic)
                .into_iter()
                .chain(["invalid"])
            {
                let _ = self
                    .events_consumed
                    .get_or_create(&labels(&[("topic", name), ("event_type", event_type)]));
            }
        }
        for topic in Topic::OUTPUTS {
            let name = topics.name(topic);
            for event_type in crate::codec::schemas::event_types_of(topic) {
                let _ = self
                    .events_produced
                    .get_or_create(&labels(&[("topic", name), ("event_type", event_type)]));
            }
        }
    }

    pub fn event_consumed(&self, topic: &str, event_type: &str) {
        self.events_consumed
            .get_or_create(&labels(&[("topic", topic), ("event_type", event_type)]))
            .inc();
    }

    /// Adds a tally's counts and zeroes it (its entries stay, so the next
    /// batch allocates nothing).
    pub fn add_tally(&self, tally: &mut EventTally) {
        for (family, entries) in [
            (&self.events_consumed, &mut tally.consumed),
            (&self.events_produced, &mut tally.produced),
        ] {
            for (topic, event_type, n) in entries.iter_mut() {
                if *n > 0 {
                    family
                        .get_or_create(&labels(&[("topic", topic), ("event_type", event_type)]))
                        .inc_by(*n);
                    *n = 0;
                }
            }
        }
    }

    pub fn event_produced(&self, topic: &str, event_type: &str) {
        self.events_produced
            .get_or_create(&labels(&[("topic", topic), ("event_type", event_type)]))
            .inc();
    }

    pub fn dead_lettered(&self, reason: &str) {
        self.dead_letters
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }

    pub fn outcome_ignored(&self, reason: &str) {
        self.outcomes_ignored
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }

    pub fn rejected(&self, code: &str) {
        self.rejections
            .get_or_create(&labels(&[("reason_code", code)]))
            .inc();
    }

    pub fn duplicate(&self) {
        self.duplicates.inc();
    }

    /// `customers` customers' timers fired, in one round.
    pub fn timers_fired(&self, customers: u64) {
        self.timers_fired.inc_by(customers);
    }

    /// The current task's abort streak; the gauge shows the longest.
    pub fn set_abort_streak(&self, streak: u32) {
        let mut per_task = self.per_task();
        per_task.abort_streak.insert(current_task(), streak);
        let longest = per_task.abort_streak.values().max().copied().unwrap_or(0);
        self.batch_abort_streak.set(i64::from(longest));
    }

    fn per_task(&self) -> std::sync::MutexGuard<'_, PerTask> {
        // Only plain maps inside: a panic elsewhere leaves them usable.
        self.per_task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn committed(&self, commit_seconds: f64, latencies_seconds: &[f64]) {
        self.commit_duration.observe(commit_seconds);
        for l in latencies_seconds {
            self.end_to_end_latency.observe(*l);
        }
        self.transactions
            .get_or_create(&labels(&[("result", "committed")]))
            .inc();
    }

    pub fn aborted(&self) {
        self.transactions
            .get_or_create(&labels(&[("result", "aborted")]))
            .inc();
    }

    pub fn rebalanced(&self, kind: &str) {
        self.rebalances
            .get_or_create(&labels(&[("kind", kind)]))
            .inc();
    }

    /// `reason`: one of [`FETCH_RESTART_REASONS`].
    pub fn fetch_restarted(&self, reason: &str, partitions: usize) {
        self.fetch_restarts
            .get_or_create(&labels(&[("reason", reason)]))
            .inc_by(partitions as u64);
    }

    pub fn restored(&self, seconds: f64, records: u64) {
        self.restore_duration.observe(seconds);
        self.records_restored.inc_by(records);
    }

    /// Restore progress: offsets left to read per changelog partition
    /// (an empty slice once the restore is over).
    pub fn set_restore_remaining(&self, remaining: &[(i32, i64)]) {
        let mut per_task = self.per_task();
        per_task
            .restore_remaining
            .insert(current_task(), remaining.to_vec());
        self.restore_remaining.clear();
        for (partition, left) in per_task.restore_remaining.values().flatten() {
            self.restore_remaining
                .get_or_create(&labels(&[("partition", &partition.to_string())]))
                .set(*left);
        }
    }

    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.per_task()
            .lag
            .entry(current_task())
            .or_default()
            .insert((topic.to_owned(), partition));
        self.consumer_lag
            .get_or_create(&labels(&[
                ("topic", topic),
                ("partition", &partition.to_string()),
            ]))
            .set(lag);
    }

    /// Forgets the current task's lag series (its partitions were revoked).
    pub fn clear_lag(&self) {
        let mine = self
            .per_task()
            .lag
            .remove(&current_task())
            .unwrap_or_default();
        for (topic, partition) in mine {
            self.consumer_lag.remove(&labels(&[
                ("topic", &topic),
                ("partition", &partition.to_string()),
            ]));
        }
    }

    /// The current task's state gauges; the exported ones sum every task's.
    pub fn set_state_gauges(&self, gauges: &StateGauges) {
        let mut per_task = self.per_task();
        per_task.state.insert(current_task(), gauges.clone());
        let gauges = StateGauges::combined(per_task.state.values());
        for (state, count) in &gauges.by_state {
            self.relationships
                .get_or_create(&labels(&[("state", state)]))
                .set(*count);
        }
        self.pending_timers.set(gauges.pending_timers);
        self.stalled_terminations.set(gauges.stalled);
        self.oldest_pending_dismantle_age
            .set(gauges.oldest_dismantle_age_seconds);
    }
}

/// Gauges computed from the owned customers' states.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StateGauges {
    pub by_state: Vec<(&'static str, i64)>,
    pub pending_timers: i64,
    pub stalled: i64,
    pub oldest_dismantle_age_seconds: f64,
}

impl StateGauges {
    /// Several tasks' gauges as one: counts add up, the oldest age is the
    /// oldest of all.
    fn combined<'a>(all: impl Iterator<Item = &'a StateGauges>) -> StateGauges {
        let mut by_state: BTreeMap<&'static str, i64> = BTreeMap::new();
        let mut out = StateGauges::default();
        for g in all {
            for (state, count) in &g.by_state {
                *by_state.entry(state).or_default() += count;
            }
            out.pending_timers += g.pending_timers;
            out.stalled += g.stalled;
            out.oldest_dismantle_age_seconds = out
                .oldest_dismantle_age_seconds
                .max(g.oldest_dismantle_age_seconds);
        }
        out.by_state = by_state.into_iter().collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_counters_with_labels() {
        let m = Metrics::new();
        m.event_consumed("crm.customer.lifecycle.v1", "CustomerDeceased");
        m.dead_lettered("InvalidJson");
        m.set_lag("crm.customer.lifecycle.v1", 2, 7);
        m.committed(0.01, &[0.2]);
        let text = m.render();
        assert!(text.contains(
            "terminus_events_consumed_total{topic=\"crm.customer.lifecycle.v1\",event_type=\"CustomerDeceased\"} 1"
        ), "{text}");
        assert!(text.contains("terminus_dead_letters_total{reason=\"InvalidJson\"} 1"));
        assert!(text.contains(
            "terminus_consumer_lag{topic=\"crm.customer.lifecycle.v1\",partition=\"2\"} 7"
        ));
        assert!(text.contains("terminus_transactions_total{result=\"committed\"} 1"));
        assert!(text.contains("terminus_end_to_end_latency_seconds_count 1"));
    }

    #[test]
    fn tasks_gauges_add_up_and_a_revocation_clears_only_its_task_s_lag() {
        let m = std::sync::Arc::new(Metrics::new());
        let task = |k: usize, timers: i64, streak: u32, partition: i32| {
            let m = m.clone();
            std::thread::spawn(move || {
                set_current_task(k);
                m.set_state_gauges(&StateGauges {
                    by_state: vec![("Active", timers * 10)],
                    pending_timers: timers,
                    stalled: 1,
                    oldest_dismantle_age_seconds: timers as f64,
                });
                m.set_abort_streak(streak);
                m.set_lag("in", partition, 5);
            })
            .join()
            .expect("task thread");
        };
        task(0, 3, 0, 0);
        task(1, 4, 2, 1);
        let text = m.render();
        assert!(text.contains("terminus_pending_timers 7"), "{text}");
        assert!(text.contains("terminus_stalled_terminations 2"), "{text}");
        assert!(
            text.contains("terminus_relationships{state=\"Active\"} 70"),
            "{text}"
        );
        assert!(
            text.contains("terminus_oldest_pending_dismantle_age_seconds 4"),
            "{text}"
        );
        assert!(text.contains("terminus_batch_abort_streak 2"), "{text}");
        std::thread::spawn({
            let m = m.clone();
            move || {
                set_current_task(1);
                m.clear_lag();
            }
        })
        .join()
        .expect("task thread");
        let text = m.render();
        assert!(text.contains("partition=\"0\"} 5"), "{text}");
        assert!(!text.contains("partition=\"1\"}"), "{text}");
    }

    #[test]
    fn known_label_values_start_at_zero_and_readiness_is_exported() {
        let m = Metrics::new();
        m.set_readiness(true, 3);
        let text = m.render();
        assert!(
            text.contains("terminus_dead_letters_total{reason=\"InvalidJson\"} 0"),
            "{text}"
        );
        assert!(text.contains("terminus_transactions_total{result=\"aborted\"} 0"));
        assert!(text.contains("terminus_rebalances_total{kind=\"lost\"} 0"));
        assert!(text.contains("terminus_ready 1"));
        assert!(text.contains("terminus_assigned_partitions 3"));
    }
}
