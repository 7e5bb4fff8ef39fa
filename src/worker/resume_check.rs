//! Confirms that an input partition resumed after its restore is fetched.
//!
//! librdkafka versions every control operation on a partition (fetch start,
//! pause, resume, seek) and drops one whose version is older than the last
//! served. An application's resume takes its version on the application
//! thread, and the library's own fetch start for a new assignment takes one
//! on its main thread: when the fetch start takes the later version but is
//! queued first, the resume is dropped as outdated, and the partition stays
//! paused for good with no error (confluentinc/librdkafka #5591; #2190 is
//! the same race with the assign's start offset). A two-task test saw it:
//! one input partition of six was never fetched for two minutes after its
//! restore, while the others flowed.
//!
//! So each resume is checked a little later. An input partition that has
//! had no fetch response (its cached watermarks are unchanged) and handed
//! the application no record since its resume is resumed again and seeked
//! to the same offset as before: nothing is skipped, and nothing read twice.
//! A partition that is merely idle and was assigned here before looks the
//! same; it is resumed again a few times, which costs a queued operation.

use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use std::time::{Duration, Instant};

/// How long after a resume a partition must have been fetched. Fetch
/// responses come at least every `fetch.wait.max.ms` (500 ms by default).
pub const CHECK_AFTER: Duration = Duration::from_secs(2);

/// Checks of one resume, each CHECK_AFTER after the last: a partition still
/// unfetched after the last is left as it is (an idle partition).
pub const CHECKS: u32 = 3;

/// An input partition as its resume left it.
#[derive(Clone, Debug, PartialEq)]
pub struct Resumed {
    pub topic: String,
    pub partition: i32,
    /// Where the resume positioned it: the group's committed offset, or the
    /// beginning when the group has none.
    pub at: Offset,
    /// The watermarks librdkafka had cached from fetch responses then.
    pub seen: Option<(i64, i64)>,
}

struct Check {
    due: Instant,
    done: u32,
    partitions: Vec<Resumed>,
}

/// Resumes waiting for their check.
#[derive(Default)]
pub struct ResumeChecks {
    pending: Vec<Check>,
}

impl ResumeChecks {
    /// Schedules the first check of partitions just resumed.
    pub fn expect(&mut self, partitions: Vec<Resumed>, now: Instant) {
        if !partitions.is_empty() {
            self.pending.push(Check {
                due: now + CHECK_AFTER,
                done: 0,
                partitions,
            });
        }
    }

    /// Whether a check is due.
    pub fn any_due(&self, now: Instant) -> bool {
        self.pending.iter().any(|c| c.due <= now)
    }

    /// Takes the due checks' partitions, and schedules the next check of
    /// those that are `unfetched` (a closure, so that the caller decides
    /// from the consumer) unless this was their last: returns those.
    pub fn take_unfetched(
        &mut self,
        now: Instant,
        mut unfetched: impl FnMut(&Resumed) -> bool,
    ) -> Vec<Resumed> {
        let mut again = Vec::new();
        let mut found = Vec::new();
        self.pending.retain_mut(|check| {
            if check.due > now {
                return true;
            }
            let stale: Vec<Resumed> = check
                .partitions
                .iter()
                .filter(|r| unfetched(r))
                .cloned()
                .collect();
            if !stale.is_empty() && check.done + 1 < CHECKS {
                again.push(Check {
                    due: now + CHECK_AFTER,
                    done: check.done + 1,
                    partitions: stale.clone(),
                });
            }
            found.extend(stale);
            false
        });
        self.pending.extend(again);
        found
    }

    /// Drops the checks of partitions no longer owned.
    pub fn forget(&mut self, partitions: &[i32]) {
        for check in &mut self.pending {
            check
                .partitions
                .retain(|r| !partitions.contains(&r.partition));
        }
        self.pending.retain(|c| !c.partitions.is_empty());
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

/// Whether `resumed` shows no sign of a fetch since its resume: its cached
/// watermarks are as they were, and the application got none of its records
/// (librdkafka's position is reset by the resume's seek and set by the
/// first record handed out).
pub fn unfetched(resumed: &Resumed, watermarks_now: Option<(i64, i64)>, position: Offset) -> bool {
    watermarks_now == resumed.seen && !matches!(position, Offset::Offset(_))
}

/// Resumes `stale` partitions again and puts each back where its resume had
/// positioned it: the seek starts the fetch, and a resume the library had
/// dropped takes effect now.
///
/// # Errors
/// The first resume or seek librdkafka refused, with the partition.
pub fn resume_again<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    stale: &[Resumed],
) -> Result<(), (String, i32, rdkafka::error::KafkaError)> {
    let mut tpl = rdkafka::TopicPartitionList::new();
    for r in stale {
        tpl.add_partition(&r.topic, r.partition);
    }
    if let Some(first) = stale.first() {
        consumer
            .resume(&tpl)
            .map_err(|e| (first.topic.clone(), first.partition, e))?;
    }
    for r in stale {
        consumer
            .seek(&r.topic, r.partition, r.at, Duration::from_secs(10))
            .map_err(|e| (r.topic.clone(), r.partition, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resumed(partition: i32, seen: Option<(i64, i64)>) -> Resumed {
        Resumed {
            topic: "t.lifecycle".into(),
            partition,
            at: Offset::Beginning,
            seen,
        }
    }

    #[test]
    fn a_partition_is_unfetched_until_a_fetch_response_or_a_record_shows() {
        let fresh = resumed(0, None);
        assert!(unfetched(&fresh, None, Offset::Invalid));
        // A fetch response cached watermarks.
        assert!(!unfetched(&fresh, Some((0, 0)), Offset::Invalid));
        // A record reached the application.
        assert!(!unfetched(&fresh, None, Offset::Offset(3)));
        // Assigned here before: a fetch response moved the watermarks.
        let again = resumed(0, Some((0, 10)));
        assert!(unfetched(&again, Some((0, 10)), Offset::Invalid));
        assert!(!unfetched(&again, Some((0, 12)), Offset::Invalid));
    }

    #[test]
    fn checks_come_when_due_repeat_for_unfetched_partitions_and_end() {
        let start = Instant::now();
        let mut checks = ResumeChecks::default();
        checks.expect(vec![resumed(0, None), resumed(1, None)], start);
        assert!(!checks.any_due(start));
        assert!(checks.take_unfetched(start, |_| true).is_empty());

        // First check: partition 1 was fetched, partition 0 was not.
        let first = start + CHECK_AFTER;
        assert!(checks.any_due(first));
        let stale = checks.take_unfetched(first, |r| r.partition == 0);
        assert_eq!(stale, vec![resumed(0, None)]);

        // Partition 0 is checked again, CHECK_AFTER later, up to CHECKS times.
        let mut at = first;
        for _ in 1..CHECKS {
            assert!(!checks.any_due(at));
            at += CHECK_AFTER;
            assert_eq!(checks.take_unfetched(at, |_| true), vec![resumed(0, None)]);
        }
        assert!(
            !checks.any_due(at + CHECK_AFTER * 10),
            "no check after the last"
        );
    }

    #[test]
    fn a_revoked_partition_is_not_checked() {
        let start = Instant::now();
        let mut checks = ResumeChecks::default();
        checks.expect(vec![resumed(0, None), resumed(1, None)], start);
        checks.forget(&[0]);
        assert_eq!(
            checks.take_unfetched(start + CHECK_AFTER, |_| true),
            vec![resumed(1, None)]
        );
        checks.expect(vec![resumed(2, None)], start);
        checks.forget(&[2]);
        assert!(!checks.any_due(start + CHECK_AFTER));
    }
}
