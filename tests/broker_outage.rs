//! A broker outage longer than the transaction timeout: the broker aborts the
//! worker's open transaction, librdkafka reports that as fencing, and the
//! worker must recognise its own timeout (rebuild, restore, go on) instead of
//! exiting as if another instance had taken its transactional id.

mod common;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_transaction_timeout_loses_and_duplicates_nothing() {
    // A 3 s commit interval keeps a transaction open when the broker goes
    // away; it stays away for three times the transaction timeout.
    common::broker::journeys_through_an_outage(
        "19496",
        Duration::from_secs(15),
        &["--transaction-timeout", "5s", "--commit-interval", "3s"],
    )
    .await;
}
