//! The worker rides out a broker restart: a dedicated broker (its own port, so
//! other tests keep theirs) is stopped and started mid-stream while one worker
//! runs, and the committed outputs still equal the simulator's.

mod common;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_carries_on_through_a_broker_restart() {
    // Longer than the session timeout (6 s): the worker loses its assignment
    // and must rejoin on its own.
    common::broker::journeys_through_an_outage("19492", Duration::from_secs(8), &[]).await;
}
