//! What SREs see: metrics, health, readiness, the admin server, logs, traces.

pub mod admin;
pub mod metrics;
pub mod status;
pub mod tracing_setup;

pub use metrics::{Metrics, StateGauges};
pub use status::Status;
