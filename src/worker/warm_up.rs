//! A newcomer warms its disk store before it joins a running group.
//!
//! A new instance (a scale-out, a replaced pod) has no local store, and the
//! partitions a rebalance hands it must be read from the changelog in full
//! before they resume: at 10,000,000 customers that held the moved
//! partitions' output for half a minute. So when the group already has
//! members — someone is processing every partition meanwhile — the instance
//! first reads the whole changelog into its disk store, outside the group,
//! and joins only then: the partitions it is given are read from their
//! checkpoints, only the few seconds' tail written since. This is Kafka
//! Streams' warm-up replica (KIP-441) without a custom assignor: the store
//! is warm before the assignment, not after.
//!
//! The first member of an empty group joins at once: nobody else would
//! process meanwhile. This instance's own previous incarnation (after a
//! kill -9 its member stays until the session times out) does not count. The warm-up is best effort: if it fails or outlasts
//! `--restore-timeout`, the instance joins anyway and restores as before.

use super::WorkerError;
use super::options::{StoreKind, WarmUp, WorkerOptions};
use super::restore::{Progress, Restorer, Stores};
use crate::kafka::preflight::{self, GroupMember};
use crate::telemetry::{Metrics, Status};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::RDKafkaErrorCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long the group's membership may take to read.
const MEMBERS_TIMEOUT: Duration = Duration::from_secs(5);
/// A pass that read fewer records than this is close enough to the head:
/// the rest is read after the join, as the tail.
const CLOSE_ENOUGH: u64 = 50_000;
/// Passes over the changelog at most: each reads what the group wrote
/// during the one before.
const MAX_PASSES: usize = 3;
/// How long each call reads before stop and progress are looked at.
const SLICE: Duration = Duration::from_millis(200);

/// What a warm-up read, for its log line.
#[derive(Default)]
struct Warmed {
    passes: usize,
    records: u64,
}

/// Warms the disk store of every changelog partition when the group has
/// other members (see the module's comment).
///
/// # Errors
/// Only [`WorkerError::Fatal`] (a state record of a newer release, which
/// the restore after the join would stop on too); other failures are
/// logged and the instance joins without a warm store.
pub fn warm_up(
    opts: &Arc<WorkerOptions>,
    stores: &Stores,
    partitions: i32,
    stop: &AtomicBool,
    status: &Status,
    metrics: &Metrics,
) -> Result<(), WorkerError> {
    if opts.warm_up == WarmUp::Off || opts.state_store != StoreKind::Disk {
        return Ok(());
    }
    let members = match other_members(opts) {
        Ok(0) => {
            info!(group_id = %opts.group_id, "no other member in the group; joining without a warm-up");
            return Ok(());
        }
        Ok(n) => n,
        Err(reason) => {
            warn!(group_id = %opts.group_id, reason = %reason, "group membership unknown; joining without a warm-up");
            return Ok(());
        }
    };
    info!(
        group_id = %opts.group_id,
        members,
        partitions,
        "the group is running; warming the state store from the changelog before joining"
    );
    let started = Instant::now();
    status.set_warming(true);
    let mut progress = |left: &[(i32, i64)]| {
        status.set_restore_left(left.to_vec());
        metrics.set_restore_remaining(left);
    };
    let result = read_passes(opts, stores, partitions, stop, &mut progress);
    status.set_warming(false);
    status.set_restore_left(Vec::new());
    metrics.set_restore_remaining(&[]);
    match result {
        Ok(_) if stop.load(Ordering::Relaxed) => {
            info!("warm-up ended by the shutdown");
            Ok(())
        }
        Ok(warmed) => {
            info!(
                passes = warmed.passes,
                records = warmed.records,
                millis = started.elapsed().as_millis() as u64,
                "state store warmed; joining the group"
            );
            Ok(())
        }
        Err(e @ WorkerError::Fatal(_)) => Err(e),
        Err(e) => {
            warn!(error = %e, millis = started.elapsed().as_millis() as u64, "warm-up given up; joining the group, assigned partitions restore after the join");
            Ok(())
        }
    }
}

/// Restores every partition, pass after pass, until a pass comes close
/// enough to the head (or `stop` is set).
fn read_passes(
    opts: &Arc<WorkerOptions>,
    stores: &Stores,
    partitions: i32,
    stop: &AtomicBool,
    progress: &mut Progress<'_>,
) -> Result<Warmed, WorkerError> {
    let all: Vec<i32> = (0..partitions).collect();
    let mut restorer = Restorer::for_warm_up(opts.clone(), stores.clone(), partitions)?;
    let mut warmed = Warmed::default();
    while warmed.passes < MAX_PASSES && !stop.load(Ordering::Relaxed) {
        warmed.passes += 1;
        restorer.add(&all)?;
        let mut read = 0;
        while !restorer.is_idle() {
            if stop.load(Ordering::Relaxed) {
                return Ok(warmed);
            }
            // The restored partitions' stores close as their engines drop:
            // the tasks open them again once they are assigned.
            let restored = restorer.advance(SLICE, progress)?;
            read += restored.records;
        }
        warmed.records += read;
        if read < CLOSE_ENOUGH {
            break;
        }
    }
    Ok(warmed)
}

/// How many members other than this instance's own (a previous incarnation
/// not yet timed out, under either membership) the group has now: 0 when it
/// is empty or does not exist yet. By librdkafka's `DescribeConsumerGroups`,
/// which asks the broker's `ConsumerGroupDescribe` for a KIP-848 group: the
/// classic `DescribeGroups` reports a running KIP-848 group as Dead, with no
/// members.
fn other_members(opts: &WorkerOptions) -> Result<usize, String> {
    let consumer: BaseConsumer = opts
        .kafka
        .client_config()
        .create()
        .map_err(|e| format!("cannot create a client: {e}"))?;
    let groups = preflight::group_access(&consumer, &[opts.group_id.as_str()], MEMBERS_TIMEOUT)?;
    let group = groups
        .into_iter()
        .find(|g| g.name == opts.group_id)
        .ok_or_else(|| "the broker did not describe the group".to_owned())?;
    match group.error {
        None | Some(RDKafkaErrorCode::GroupIdNotFound) => {
            Ok(group.members.iter().filter(|m| !is_own(opts, m)).count())
        }
        Some(code) => Err(code.to_string()),
    }
}

/// Whether `member` is this instance (or one of its tasks), by the client id
/// the worker gives its consumers or by its static member id.
fn is_own(opts: &WorkerOptions, member: &GroupMember) -> bool {
    let ours = |id: &str, base: &str| {
        id == base
            || id
                .strip_prefix(base)
                .and_then(|rest| rest.strip_prefix("-t"))
                .is_some_and(|task| !task.is_empty() && task.bytes().all(|b| b.is_ascii_digit()))
    };
    ours(&member.client_id, &opts.member_client_id())
        || member
            .instance_id
            .as_deref()
            .is_some_and(|id| ours(id, &opts.instance_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::KafkaSettings;

    #[test]
    fn its_own_members_are_told_from_the_others() {
        let mut opts = WorkerOptions::new(KafkaSettings::default());
        opts.instance_id = "pod-1".into();
        let member = |client: &str, instance: Option<&str>| GroupMember {
            client_id: client.into(),
            instance_id: instance.map(str::to_owned),
        };
        assert!(is_own(&opts, &member("terminus-pod-1", None)));
        assert!(is_own(&opts, &member("terminus-pod-1-t3", None)));
        assert!(is_own(&opts, &member("rdkafka", Some("pod-1"))));
        assert!(is_own(&opts, &member("rdkafka", Some("pod-1-t0"))));
        assert!(!is_own(&opts, &member("terminus-pod-10", None)));
        assert!(!is_own(&opts, &member("terminus-pod-1-tx", None)));
        assert!(!is_own(&opts, &member("terminus-pod-2", Some("pod-2"))));
        assert!(!is_own(&opts, &member("rdkafka", None)));
    }
}
