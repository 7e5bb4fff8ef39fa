//! Output envelopes: what the core emits and the worker publishes byte for byte.

use super::{Category, RejectionCode, Topic, Vertical};
use crate::time::Rfc3339;
use serde::Serialize;
use uuid::Uuid;

/// One output event with its destination: the topic role and the Kafka key
/// (always the customer id).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutputRecord {
    #[serde(skip)]
    pub topic: Topic,
    pub key: String,
    pub envelope: OutputEnvelope,
}

impl OutputRecord {
    /// The JSON value bytes, as published.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain structs of strings, numbers and booleans cannot fail.
        serde_json::to_vec(&self.envelope).unwrap_or_default()
    }
}

/// The TMF688-shaped output envelope. Field order is fixed so that the same
/// event always serialises to the same bytes.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputEnvelope {
    pub event_id: Uuid,
    pub event_type: &'static str,
    pub event_time: Rfc3339,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    pub source: String,
    pub causation_id: String,
    pub event: OutputEvent,
}

/// The output events of contract v1. Each carries only ids, categories and
/// times: no personal data beyond the customer id that is also the key.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum OutputEvent {
    TerminationAccepted {
        customer_id: String,
        termination_id: Uuid,
        category: Category,
        effective_at: Rfc3339,
        notify_customer: bool,
        /// The name of the policy rule that set the dates.
        policy_rule: String,
    },
    TerminationRejected {
        customer_id: String,
        reason_code: RejectionCode,
        detail: String,
    },
    TerminationWithdrawn {
        customer_id: String,
        termination_id: Uuid,
    },
    TerminationStalled {
        customer_id: String,
        termination_id: Uuid,
        awaiting: Vec<Vertical>,
    },
    RelationshipReestablished {
        customer_id: String,
        previous_termination_id: Uuid,
    },
    CustomerRecordsAnonymized {
        customer_id: String,
        termination_id: Uuid,
    },
    DismantleSolution {
        customer_id: String,
        termination_id: Uuid,
        vertical: Vertical,
        category: Category,
        effective_at: Rfc3339,
        attempt: u32,
    },
    RelationshipTerminated {
        customer_id: String,
        termination_id: Uuid,
        category: Category,
        terminated_at: Rfc3339,
        retain_records_until: Rfc3339,
        reestablishable: bool,
        erasure_requested: bool,
    },
}

impl OutputEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            OutputEvent::TerminationAccepted { .. } => "TerminationAccepted",
            OutputEvent::TerminationRejected { .. } => "TerminationRejected",
            OutputEvent::TerminationWithdrawn { .. } => "TerminationWithdrawn",
            OutputEvent::TerminationStalled { .. } => "TerminationStalled",
            OutputEvent::RelationshipReestablished { .. } => "RelationshipReestablished",
            OutputEvent::CustomerRecordsAnonymized { .. } => "CustomerRecordsAnonymized",
            OutputEvent::DismantleSolution { .. } => "DismantleSolution",
            OutputEvent::RelationshipTerminated { .. } => "RelationshipTerminated",
        }
    }

    pub fn topic(&self) -> Topic {
        match self {
            OutputEvent::DismantleSolution { .. } => Topic::Dismantle,
            OutputEvent::RelationshipTerminated { .. } => Topic::Terminated,
            _ => Topic::Status,
        }
    }

    /// The termination this output is about, for logs and traces.
    pub fn termination_id(&self) -> Option<Uuid> {
        match self {
            OutputEvent::TerminationAccepted { termination_id, .. }
            | OutputEvent::TerminationWithdrawn { termination_id, .. }
            | OutputEvent::TerminationStalled { termination_id, .. }
            | OutputEvent::CustomerRecordsAnonymized { termination_id, .. }
            | OutputEvent::DismantleSolution { termination_id, .. }
            | OutputEvent::RelationshipTerminated { termination_id, .. } => Some(*termination_id),
            OutputEvent::RelationshipReestablished {
                previous_termination_id,
                ..
            } => Some(*previous_termination_id),
            OutputEvent::TerminationRejected { .. } => None,
        }
    }
}
