//! Terminus: TM Forum eTOM 1.3.4.4 "Terminate Customer Relationship" as an
//! exactly-once Kafka worker.
//!
//! The crate is layered: [`contract`] (bytes ↔ events) and [`domain`] (the pure
//! state machine) know nothing of Kafka; [`engine`] keeps many customers' states
//! and their timers; [`simulate`] and the worker drive the same engine.

pub mod cli;
pub mod codec;
pub mod contract;
pub mod domain;
pub mod engine;
pub mod inspect;
pub mod kafka;
pub mod policy_check;
pub mod policy_file;
pub mod simulate;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod worker;
