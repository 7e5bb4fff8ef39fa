//! Integration tests of the Kafka plumbing the worker relies on, against a real
//! broker (`scripts/kafka start`, or `scripts/test` for the whole suite):
//! topic administration, keyed produce/consume, transactions as seen by
//! `read_committed` and `read_uncommitted` readers, and consumed offsets
//! committed inside a transaction (KIP-447 `send_offsets_to_transaction`).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(30);
const IDLE: Duration = Duration::from_millis(500);

/// Kafka's `Utils.murmur2` (the Java clients' key hash), for checking that
/// librdkafka's `murmur2_random` partitioner agrees with it.
fn java_murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ len as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

fn java_partition(key: &str, partitions: i32) -> i32 {
    (java_murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions
}

#[test]
fn murmur2_matches_the_java_clients() {
    // Vectors from Kafka's UtilsTest, checked against kafka-clients 4.4.0.
    assert_eq!(java_murmur2(b"21"), -973_932_308);
    assert_eq!(java_murmur2(b"foobar"), -790_332_482);
    assert_eq!(java_murmur2(b"a-little-bit-long-string"), -985_981_536);
    assert_eq!(java_murmur2(b"abc"), 479_470_107);
    assert_eq!(java_partition("C-1001", 6), 0);
    assert_eq!(java_partition("customer-42", 6), 3);
}

#[tokio::test]
async fn admin_creates_topics_with_partitions_and_configs() {
    let plain = unique("plumbing.admin.plain");
    let compacted = unique("plumbing.admin.compacted");
    create_topics(&[&plain], 6, &[]).await;
    create_topics(&[&compacted], 3, &[("cleanup.policy", "compact")]).await;
    // Creating again is accepted (idempotent helper).
    create_topics(&[&plain], 6, &[]).await;

    assert_eq!(partitions_of(&plain).await, (0..6).collect::<Vec<_>>());
    assert_eq!(partitions_of(&compacted).await, vec![0, 1, 2]);

    let admin: AdminClient<DefaultClientContext> = client_config().create().unwrap();
    let described = admin
        .describe_configs(
            [
                &ResourceSpecifier::Topic(&compacted),
                &ResourceSpecifier::Topic(&plain),
            ],
            &AdminOptions::new().request_timeout(Some(WAIT)),
        )
        .await
        .expect("describe_configs");
    let policy = |i: usize| {
        let resource = described[i].as_ref().expect("topic config");
        resource
            .get("cleanup.policy")
            .and_then(|e| e.value.clone())
            .expect("cleanup.policy")
    };
    assert_eq!(policy(0), "compact");
    assert_eq!(policy(1), "delete");

    delete_topics(&[&plain, &compacted]).await;
}

#[tokio::test]
async fn keyed_records_keep_keys_headers_and_per_key_order() {
    let topic = unique("plumbing.keyed");
    create_topics(&[&topic], 6, &[]).await;

    let keys: Vec<String> = (0..12).map(|i| format!("C-{}", 1000 + i)).collect();
    let values: Vec<(String, Vec<u8>)> = (0..25)
        .flat_map(|seq| {
            keys.iter()
                .map(move |k| (k.clone(), format!("{k}#{seq:03}").into_bytes()))
        })
        .collect();
    let records: Vec<(&str, &[u8])> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    produce_with_headers(
        &topic,
        &records,
        &[
            ("ce_specversion", "1.0"),
            ("content-type", "application/json"),
        ],
    )
    .await;

    let got = consume_n(&topic, records.len(), WAIT).await;
    assert_eq!(got.len(), records.len(), "records read back");

    let mut by_key: BTreeMap<String, Vec<(i32, String)>> = BTreeMap::new();
    for r in &got {
        let key = r.key.clone().expect("every record keeps its key");
        let value = r.value_str();
        assert!(value.starts_with(&format!("{key}#")), "{key} -> {value}");
        assert_eq!(r.header("ce_specversion"), Some("1.0"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        by_key.entry(key).or_default().push((r.partition, value));
    }
    assert_eq!(by_key.len(), keys.len());
    for (key, seen) in &by_key {
        // One partition per key, the one the Java clients would pick...
        let partitions: HashSet<i32> = seen.iter().map(|(p, _)| *p).collect();
        assert_eq!(partitions.len(), 1, "{key} spread over {partitions:?}");
        assert_eq!(
            seen[0].0,
            java_partition(key, 6),
            "{key}: murmur2 partition"
        );
        // ...and its records in the order they were produced.
        let expected: Vec<String> = (0..25).map(|s| format!("{key}#{s:03}")).collect();
        let actual: Vec<String> = seen.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(actual, expected, "{key}: per-key order");
    }

    delete_topics(&[&topic]).await;
}

async fn send_all(producer: &FutureProducer, topic: &str, key: &str, values: &[String]) {
    for v in values {
        producer
            .send(FutureRecord::to(topic).key(key).payload(v), WAIT)
            .await
            .unwrap_or_else(|(e, _)| panic!("send {v}: {e}"));
    }
}

fn batch(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn values(recs: &[Rec]) -> Vec<String> {
    recs.iter().map(Rec::value_str).collect()
}

#[tokio::test]
async fn read_committed_sees_committed_never_aborted_or_open_transactions() {
    let topic = unique("plumbing.txn");
    create_topics(&[&topic], 3, &[]).await;

    let producer: FutureProducer = transactional_config(&unique("plumbing-txn"))
        .create()
        .expect("transactional producer");
    producer.init_transactions(WAIT).expect("init_transactions");

    producer.begin_transaction().unwrap();
    send_all(&producer, &topic, "C-1", &batch("committed1", 5)).await;
    producer.commit_transaction(WAIT).expect("commit 1");

    producer.begin_transaction().unwrap();
    send_all(&producer, &topic, "C-2", &batch("aborted", 5)).await;
    producer.flush(WAIT).unwrap();
    producer.abort_transaction(WAIT).expect("abort");

    producer.begin_transaction().unwrap();
    send_all(&producer, &topic, "C-3", &batch("committed2", 5)).await;
    producer.commit_transaction(WAIT).expect("commit 2");

    let committed = consume_until_idle(&topic, IDLE, WAIT).await;
    let mut seen = values(&committed);
    seen.sort();
    let mut expected = [batch("committed1", 5), batch("committed2", 5)].concat();
    expected.sort();
    assert_eq!(
        seen, expected,
        "read_committed sees both committed batches only"
    );

    let uncommitted = consume_until_idle_as(Isolation::ReadUncommitted, &topic, IDLE, WAIT).await;
    let seen: Vec<String> = values(&uncommitted);
    assert_eq!(
        seen.len(),
        15,
        "read_uncommitted sees all data records: {seen:?}"
    );
    assert_eq!(seen.iter().filter(|v| v.starts_with("aborted")).count(), 5);

    // An open transaction is invisible to read_committed until it commits.
    producer.begin_transaction().unwrap();
    send_all(&producer, &topic, "C-4", &batch("open", 3)).await;
    producer.flush(WAIT).unwrap();
    let during = consume_until_idle(&topic, IDLE, WAIT).await;
    assert_eq!(
        during.len(),
        10,
        "open transaction hidden: {:?}",
        values(&during)
    );
    let dirty = consume_until_idle_as(Isolation::ReadUncommitted, &topic, IDLE, WAIT).await;
    assert_eq!(
        dirty.len(),
        18,
        "read_uncommitted sees the open transaction"
    );
    producer.commit_transaction(WAIT).expect("commit 3");
    let after = consume_n(&topic, 13, WAIT).await;
    assert_eq!(after.len(), 13);
    assert_eq!(
        values(&after)
            .iter()
            .filter(|v| v.starts_with("open"))
            .count(),
        3
    );

    delete_topics(&[&topic]).await;
}

/// Polls a subscribed consumer until it has handed out `n` records.
fn poll_n(consumer: &BaseConsumer, n: usize) -> Vec<Rec> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records consumed",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            out.push(Rec::from_message(&m));
        }
    }
    out
}

/// The offsets to commit after `recs`: last offset + 1 per partition.
fn next_offsets(recs: &[Rec], into: &mut HashMap<i32, i64>) {
    for r in recs {
        let next = into.entry(r.partition).or_insert(0);
        *next = (*next).max(r.offset + 1);
    }
}

fn offsets_tpl(topic: &str, offsets: &HashMap<i32, i64>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .unwrap();
    }
    tpl
}

/// consume -> transform -> produce, with the consumed offsets committed in the
/// producer's transaction: a committed transaction commits them, an aborted one
/// does not, and a restarted member of the group resumes from the last commit,
/// so every input ends up in the output exactly once.
#[tokio::test]
async fn offsets_sent_to_transaction_commit_atomically() {
    let input = unique("plumbing.eos.in");
    let output = unique("plumbing.eos.out");
    let group = unique("plumbing-eos-group");
    create_topics(&[&input, &output], 3, &[]).await;

    let inputs: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| (format!("C-{i}"), format!("in-{i}").into_bytes()))
        .collect();
    let records: Vec<(&str, &[u8])> = inputs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    produce(&input, &records).await;

    let producer: FutureProducer = transactional_config(&unique("plumbing-eos"))
        .create()
        .expect("transactional producer");
    producer.init_transactions(WAIT).expect("init_transactions");

    let process = |recs: &[Rec]| -> Vec<(String, String)> {
        recs.iter()
            .map(|r| (r.key.clone().unwrap(), format!("out({})", r.value_str())))
            .collect()
    };
    async fn transact(
        producer: &FutureProducer,
        consumer: &BaseConsumer,
        output: &str,
        input: &str,
        outs: &[(String, String)],
        offsets: &HashMap<i32, i64>,
        commit: bool,
    ) {
        producer.begin_transaction().unwrap();
        for (k, v) in outs {
            producer
                .send(FutureRecord::to(output).key(k).payload(v), WAIT)
                .await
                .unwrap_or_else(|(e, _)| panic!("send: {e}"));
        }
        let gm = consumer.group_metadata().expect("group metadata");
        producer
            .send_offsets_to_transaction(&offsets_tpl(input, offsets), &gm, WAIT)
            .expect("send_offsets_to_transaction");
        if commit {
            producer.commit_transaction(WAIT).expect("commit");
        } else {
            producer.abort_transaction(WAIT).expect("abort");
        }
    }

    // Batch 1: 10 inputs, committed with their offsets.
    let consumer: BaseConsumer = consumer_config(&group, Isolation::ReadCommitted)
        .create()
        .unwrap();
    consumer.subscribe(&[&input]).unwrap();
    let first = poll_n(&consumer, 10);
    let mut after_first = HashMap::new();
    next_offsets(&first, &mut after_first);
    transact(
        &producer,
        &consumer,
        &output,
        &input,
        &process(&first),
        &after_first,
        true,
    )
    .await;
    assert_eq!(
        committed_offsets(&group, &input).await,
        after_first,
        "committed transaction committed the consumed offsets"
    );

    // Batch 2: the other 20 inputs, aborted with their offsets.
    let second = poll_n(&consumer, 20);
    let mut after_all = after_first.clone();
    next_offsets(&second, &mut after_all);
    transact(
        &producer,
        &consumer,
        &output,
        &input,
        &process(&second),
        &after_all,
        false,
    )
    .await;
    assert_eq!(
        committed_offsets(&group, &input).await,
        after_first,
        "aborted transaction left the group's offsets alone"
    );
    let visible = consume_until_idle(&output, IDLE, WAIT).await;
    assert_eq!(
        visible.len(),
        10,
        "only batch 1 visible: {:?}",
        values(&visible)
    );

    // A new member of the group resumes from the committed offsets, redoes
    // batch 2 and commits it.
    drop(consumer);
    let consumer: BaseConsumer = consumer_config(&group, Isolation::ReadCommitted)
        .create()
        .unwrap();
    consumer.subscribe(&[&input]).unwrap();
    let redo = poll_n(&consumer, 20);
    let mut redo_values: Vec<String> = values(&redo);
    let mut second_values: Vec<String> = values(&second);
    redo_values.sort();
    second_values.sort();
    assert_eq!(redo_values, second_values, "resumed exactly after batch 1");
    transact(
        &producer,
        &consumer,
        &output,
        &input,
        &process(&redo),
        &after_all,
        true,
    )
    .await;
    assert_eq!(committed_offsets(&group, &input).await, after_all);
    let total: i64 = after_all.values().sum();
    assert_eq!(total, 30, "offsets cover every input: {after_all:?}");

    // Every input is in the output exactly once, for a read_committed reader.
    let out = consume_until_idle(&output, IDLE, WAIT).await;
    let mut got: Vec<String> = values(&out);
    got.sort();
    let mut expected: Vec<String> = (0..30).map(|i| format!("out(in-{i})")).collect();
    expected.sort();
    assert_eq!(got, expected);
    for r in &out {
        let key = r.key.as_deref().unwrap();
        assert_eq!(r.value_str(), format!("out(in-{})", &key[2..]));
    }

    drop(consumer);
    delete_topics(&[&input, &output]).await;
}

/// Records over the ~1 MiB default (broker `message.max.bytes`, topic
/// `max.message.bytes`) go through once the topic allows them, byte for byte.
#[tokio::test]
async fn large_records_pass_on_a_topic_that_allows_them() {
    let topic = unique("plumbing.large");
    create_topics(&[&topic], 1, &[("max.message.bytes", "4194304")]).await;
    let big: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    produce(&topic, &[("K-big", big.as_slice()), ("K-small", b"{}")]).await;
    let got = consume_n(&topic, 2, WAIT).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].key.as_deref(), Some("K-big"));
    assert!(got[0].value == big, "large value changed in transit");
    assert_eq!(got[1].value, b"{}");
    delete_topics(&[&topic]).await;
}

/// librdkafka can drop an application's resume that races its own fetch
/// start for a new assignment, and the partition then stays paused with no
/// error (confluentinc/librdkafka #5591): once, a worker never fetched one
/// input partition after its restore. Here a real consumer is put in that
/// state (partition 1 paused and positioned, its resume never arriving) beside
/// a partition resumed properly. The records of the paused one do not come;
/// the worker's resume check tells the two apart by the absence of a fetch,
/// and resuming it again brings its records, each once, with nothing of the
/// healthy partition read twice.
#[tokio::test]
async fn a_partition_whose_resume_was_lost_is_found_by_the_resume_check_and_fetched() {
    use rdkafka::Message;
    use terminus::worker::resume_check::{self, ResumeChecks, Resumed};

    let topic = unique("resume-check");
    create_topics(&[&topic], 2, &[]).await;
    let keys: Vec<String> = (0..12).map(|i| format!("customer-{i}")).collect();
    let mut expected = [0usize; 2];
    for key in &keys {
        expected[terminus::kafka::partition_for_key(key.as_bytes(), 2) as usize] += 1;
    }
    assert!(
        expected.iter().all(|n| *n > 0),
        "both partitions get records: {expected:?}"
    );
    let records: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), k.as_bytes())).collect();
    produce(&topic, &records).await;

    let consumer: BaseConsumer =
        consumer_config(&unique("resume-check-group"), Isolation::ReadCommitted)
            .create()
            .expect("consumer");
    let mut both = TopicPartitionList::new();
    both.add_partition(&topic, 0);
    both.add_partition(&topic, 1);
    consumer.assign(&both).expect("assign");
    // As the worker does: pause right after the assignment (the restore
    // runs), then resume and seek each partition to the group's offset.
    consumer.pause(&both).expect("pause");
    let _ = consumer.poll(Duration::from_millis(300));
    let mut first = TopicPartitionList::new();
    first.add_partition(&topic, 0);
    consumer.resume(&first).expect("resume partition 0");
    let mut checks = ResumeChecks::default();
    let mut resumed = Vec::new();
    for p in [0, 1] {
        consumer
            .seek(&topic, p, Offset::Beginning, Duration::from_secs(10))
            .expect("seek");
        resumed.push(Resumed {
            topic: topic.clone(),
            partition: p,
            at: Offset::Beginning,
            seen: terminus::kafka::cached_watermarks(&consumer, &topic, p),
        });
    }
    let started = Instant::now();
    checks.expect(resumed, started);

    let mut got = [0usize; 2];
    let poll_until = |got: &mut [usize; 2], until: Instant| {
        while Instant::now() < until {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                got[m.partition() as usize] += 1;
            }
        }
    };
    poll_until(&mut got, started + resume_check::CHECK_AFTER);
    assert_eq!(
        got,
        [expected[0], 0],
        "partition 0 flows, the paused partition 1 does not"
    );

    let positions = consumer.position().expect("positions");
    let stale = checks.take_unfetched(Instant::now(), |r| {
        let position = positions
            .find_partition(&r.topic, r.partition)
            .map_or(Offset::Invalid, |e| e.offset());
        resume_check::unfetched(
            r,
            terminus::kafka::cached_watermarks(&consumer, &r.topic, r.partition),
            position,
        )
    });
    assert_eq!(
        stale.iter().map(|r| r.partition).collect::<Vec<_>>(),
        vec![1],
        "only the partition with no fetch since its resume is found"
    );
    resume_check::resume_again(&consumer, &stale).expect("resume again");
    let deadline = Instant::now() + WAIT;
    while got[1] < expected[1] && Instant::now() < deadline {
        poll_until(&mut got, Instant::now() + Duration::from_millis(200));
    }
    poll_until(&mut got, Instant::now() + IDLE);
    assert_eq!(got, expected, "each record once, the lost partition's too");
    delete_topics(&[&topic]).await;
}
