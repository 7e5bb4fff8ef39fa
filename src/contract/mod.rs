//! Event contract v1: the TMF688-shaped envelopes Terminus reads and writes.
//!
//! Decoding is strict where a mistake would silently change a customer's fate
//! (times, event types, ids, enum values) and lenient where forward
//! compatibility matters (unknown fields are ignored). Every refusal carries a
//! [`DeadLetterReason`] that upstream teams can act on.

mod input;
pub mod json;
mod output;

pub use input::{DecodeError, INPUT_EVENT_TYPES, InputEnvelope, InputEvent, decode_envelope};

/// An ISO 3166-1 alpha-2 code in shape: two capital ASCII letters (`DE`, `GB`).
/// Whether the code is assigned is the policy's business, not the contract's.
pub fn is_market_code(text: &str) -> bool {
    text.len() == 2 && text.bytes().all(|b| b.is_ascii_uppercase())
}

/// A customer segment name: 1 to 32 lowercase ASCII letters, digits or
/// hyphens, starting with a letter (`consumer`, `business`, `wholesale`).
pub fn is_segment_name(text: &str) -> bool {
    (1..=32).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
pub use output::{OutputEnvelope, OutputEvent, OutputRecord};

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest accepted `customerId`, `eventId` and reference: long enough for any
/// real identifier, short enough that a runaway upstream cannot bloat the state.
pub const MAX_ID_LEN: usize = 128;
/// Longest accepted free-text field (`reason`).
pub const MAX_TEXT_LEN: usize = 2048;

/// The topics of contract v1, by role. Names are configurable in the worker;
/// these are the defaults and the names the simulator prints.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    Lifecycle,
    Decisions,
    Outcomes,
    Status,
    Dismantle,
    Terminated,
    DeadLetter,
}

impl Topic {
    pub const INPUTS: [Topic; 3] = [Topic::Lifecycle, Topic::Decisions, Topic::Outcomes];
    pub const OUTPUTS: [Topic; 3] = [Topic::Status, Topic::Dismantle, Topic::Terminated];

    pub const fn default_name(self) -> &'static str {
        match self {
            Topic::Lifecycle => "crm.customer.lifecycle.v1",
            Topic::Decisions => "crm.business.decisions.v1",
            Topic::Outcomes => "crm.dismantle.outcomes.v1",
            Topic::Status => "crm.termination.status.v1",
            Topic::Dismantle => "crm.solution.dismantle.v1",
            Topic::Terminated => "crm.relationship.terminated.v1",
            Topic::DeadLetter => "crm.termination.dlq.v1",
        }
    }
}

/// Why the core ended a relationship: the seed's three principles plus the
/// customer's own request.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Category {
    CustomerRequest,
    CustomerDeceased,
    OrganizationDissolved,
    Fraud,
    EnterpriseDecision,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::CustomerRequest,
        Category::CustomerDeceased,
        Category::OrganizationDissolved,
        Category::Fraud,
        Category::EnterpriseDecision,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Category::CustomerRequest => "customerRequest",
            Category::CustomerDeceased => "customerDeceased",
            Category::OrganizationDissolved => "organizationDissolved",
            Category::Fraud => "fraud",
            Category::EnterpriseDecision => "enterpriseDecision",
        }
    }

    /// Strong triggers (the customer ceased to exist, fraud) supersede a pending
    /// weak one and take effect at once by default.
    pub const fn is_strong(self) -> bool {
        matches!(
            self,
            Category::CustomerDeceased | Category::OrganizationDissolved | Category::Fraud
        )
    }

    /// Fraud is never announced to the customer.
    pub const fn notifies_customer(self) -> bool {
        !matches!(self, Category::Fraud)
    }

    /// The brief forbids re-establishing after fraud, an enterprise decision or death.
    pub const fn allows_reestablishment(self) -> bool {
        matches!(
            self,
            Category::CustomerRequest | Category::OrganizationDissolved
        )
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three eTOM verticals that dismantle a customer's solution.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Vertical {
    Billing,
    Fulfillment,
    Assurance,
}

impl Vertical {
    /// Instruction order; also the index into per-vertical progress arrays.
    pub const ALL: [Vertical; 3] = [
        Vertical::Billing,
        Vertical::Fulfillment,
        Vertical::Assurance,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Vertical::Billing => "billing",
            Vertical::Fulfillment => "fulfillment",
            Vertical::Assurance => "assurance",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn parse(text: &str) -> Option<Vertical> {
        Vertical::ALL.into_iter().find(|v| v.as_str() == text)
    }
}

/// Why a record went to the dead-letter topic. The code is stable (it is put in
/// the `terminus.dlq.reason` header and counted in metrics); the message that goes
/// with it says what to fix.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadLetterReason {
    /// The value is not UTF-8 JSON.
    InvalidJson,
    /// The value is JSON but not an envelope object.
    InvalidEnvelope,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type, is empty, or is too long.
    InvalidField,
    /// `eventType` names no event of contract v1.
    UnknownEventType,
    /// `eventTime` (or another time field) is not RFC 3339.
    InvalidTime,
    /// `event.customerId` is empty, too long or holds control characters.
    InvalidCustomerId,
    /// An enum field (for example `vertical`) has a value outside its set.
    InvalidEnumValue,
    /// The event type does not belong on the topic it arrived on.
    WrongTopic,
    /// The Kafka key differs from `event.customerId`.
    KeyMismatch,
    /// The record exceeds the configured maximum size.
    RecordTooLarge,
    /// `eventTime` is further ahead of the worker's clock than the tolerance.
    EventTimeInFuture,
    /// An Avro value in the Confluent wire format names a schema id the schema
    /// registry does not have (or no registry is configured).
    UnknownSchemaId,
    /// An Avro single-object value names a schema fingerprint that is neither a
    /// contract schema nor one fetched from the registry.
    UnknownFingerprint,
    /// The Avro writer schema cannot be resolved against the contract's reader
    /// schema (a field without default is missing, a type changed, …).
    IncompatibleSchema,
    /// The Avro payload does not decode with its writer schema (truncated,
    /// corrupt, trailing bytes), or is announced as Avro without a known header.
    InvalidAvro,
    /// The schema registry could not be reached to resolve a schema id. Not the
    /// record's fault: the worker retries instead of dead-lettering it.
    SchemaRegistryUnavailable,
}

impl DeadLetterReason {
    pub const ALL: [DeadLetterReason; 17] = [
        DeadLetterReason::InvalidJson,
        DeadLetterReason::InvalidEnvelope,
        DeadLetterReason::MissingField,
        DeadLetterReason::InvalidField,
        DeadLetterReason::UnknownEventType,
        DeadLetterReason::InvalidTime,
        DeadLetterReason::InvalidCustomerId,
        DeadLetterReason::InvalidEnumValue,
        DeadLetterReason::WrongTopic,
        DeadLetterReason::KeyMismatch,
        DeadLetterReason::RecordTooLarge,
        DeadLetterReason::EventTimeInFuture,
        DeadLetterReason::UnknownSchemaId,
        DeadLetterReason::UnknownFingerprint,
        DeadLetterReason::IncompatibleSchema,
        DeadLetterReason::InvalidAvro,
        DeadLetterReason::SchemaRegistryUnavailable,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::InvalidJson => "InvalidJson",
            DeadLetterReason::InvalidEnvelope => "InvalidEnvelope",
            DeadLetterReason::MissingField => "MissingField",
            DeadLetterReason::InvalidField => "InvalidField",
            DeadLetterReason::UnknownEventType => "UnknownEventType",
            DeadLetterReason::InvalidTime => "InvalidTime",
            DeadLetterReason::InvalidCustomerId => "InvalidCustomerId",
            DeadLetterReason::InvalidEnumValue => "InvalidEnumValue",
            DeadLetterReason::WrongTopic => "WrongTopic",
            DeadLetterReason::KeyMismatch => "KeyMismatch",
            DeadLetterReason::RecordTooLarge => "RecordTooLarge",
            DeadLetterReason::EventTimeInFuture => "EventTimeInFuture",
            DeadLetterReason::UnknownSchemaId => "UnknownSchemaId",
            DeadLetterReason::UnknownFingerprint => "UnknownFingerprint",
            DeadLetterReason::IncompatibleSchema => "IncompatibleSchema",
            DeadLetterReason::InvalidAvro => "InvalidAvro",
            DeadLetterReason::SchemaRegistryUnavailable => "SchemaRegistryUnavailable",
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the core refused a well-formed request: the `reasonCode` of
/// `TerminationRejected`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum RejectionCode {
    /// A deceased/dissolved/fraud trigger without its evidence or case reference.
    MissingEvidence,
    /// An enterprise decision without its approval reference.
    MissingApproval,
    /// A termination is already pending and the new trigger is not stronger.
    AlreadyPending,
    /// The relationship is already being dismantled or is terminated.
    AlreadyTerminated,
    /// A withdrawal or revocation with no pending termination.
    NothingToWithdraw,
    /// A withdrawal or revocation after dismantling started.
    TooLateToWithdraw,
    /// The pending termination belongs to another party (the customer cannot
    /// withdraw an enterprise decision; a revocation cannot cancel a customer's
    /// own request or a death).
    NotWithdrawable,
    /// Re-establishment asked of a relationship that is not terminated, or whose
    /// category forbids it.
    ReestablishmentNotAllowed,
    /// The customer's records were anonymised; nothing can change any more.
    RecordsAnonymized,
    /// `LegalHoldReleased` names a hold that is not in place.
    UnknownLegalHold,
}

impl RejectionCode {
    pub const ALL: [RejectionCode; 10] = [
        RejectionCode::MissingEvidence,
        RejectionCode::MissingApproval,
        RejectionCode::AlreadyPending,
        RejectionCode::AlreadyTerminated,
        RejectionCode::NothingToWithdraw,
        RejectionCode::TooLateToWithdraw,
        RejectionCode::NotWithdrawable,
        RejectionCode::ReestablishmentNotAllowed,
        RejectionCode::RecordsAnonymized,
        RejectionCode::UnknownLegalHold,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RejectionCode::MissingEvidence => "MissingEvidence",
            RejectionCode::MissingApproval => "MissingApproval",
            RejectionCode::AlreadyPending => "AlreadyPending",
            RejectionCode::AlreadyTerminated => "AlreadyTerminated",
            RejectionCode::NothingToWithdraw => "NothingToWithdraw",
            RejectionCode::TooLateToWithdraw => "TooLateToWithdraw",
            RejectionCode::NotWithdrawable => "NotWithdrawable",
            RejectionCode::ReestablishmentNotAllowed => "ReestablishmentNotAllowed",
            RejectionCode::RecordsAnonymized => "RecordsAnonymized",
            RejectionCode::UnknownLegalHold => "UnknownLegalHold",
        }
    }
}

impl fmt::Display for RejectionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
