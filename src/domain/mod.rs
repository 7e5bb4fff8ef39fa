//! The domain core: the termination state machine of eTOM 1.3.4.4.
//!
//! Nothing here knows about Kafka, tokio or the wall clock: it is called with
//! the current time and returns the new state and the outputs.

pub mod ids;
mod machine;
mod policy;
mod state;
pub mod state_codec;

pub use machine::{Decision, Effect, IgnoreReason, Input, decide};
pub use policy::{
    DEFAULT_RULE, DEFAULT_SEGMENTS, Policy, PolicyError, PolicySet, Rule, ScopedRule, is_rule_name,
};
pub use state::{
    CustomerState, Dismantle, Phase, STATE_VERSION, StateDecodeError, Termination, TimerKind,
    VerticalProgress, VerticalStatus,
};
