//! A customer's termination state: small, serialisable, versioned. It is the
//! changelog record, so every field here is a compatibility promise.

use crate::contract::{Category, Vertical};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use uuid::Uuid;

/// The version this release writes. Readers accept every version up to it.
pub const STATE_VERSION: u32 = 1;

/// One customer's state. Holds ids, categories and times only: no names,
/// reasons, evidence texts or dates of birth and death.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerState {
    /// Format version of this record.
    pub v: u32,
    /// The customer's business clock: the latest event time or timer due time
    /// applied. Never goes backwards.
    pub clock: Timestamp,
    pub phase: Phase,
    /// Legal holds in place, by reference, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<String>,
    /// When upstream reported all services terminated (recorded, never acted on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services_terminated_at: Option<Timestamp>,
    /// Fingerprints of the most recent event ids, oldest first.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub seen: VecDeque<u64>,
}

/// Where the relationship stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state")]
pub enum Phase {
    /// A relationship with no termination under way (new, withdrawn or re-established).
    Active,
    /// Accepted, waiting for its effective time.
    Pending { termination: Termination },
    /// Instructions out, waiting for the verticals.
    Dismantling {
        termination: Termination,
        dismantle: Dismantle,
    },
    /// Terminated; the record is retained until `retain_until`.
    Terminated {
        termination: Termination,
        terminated_at: Timestamp,
        retain_until: Timestamp,
        /// When anonymisation is due: `retain_until`, or the release of the last
        /// legal hold if that came later.
        anonymize_at: Timestamp,
        reestablishable: bool,
    },
    /// Records anonymised; only ids remain, until `forget_at`.
    Anonymized {
        termination_id: Uuid,
        anonymized_at: Timestamp,
        forget_at: Timestamp,
    },
}

impl Phase {
    pub const NAMES: [&'static str; 5] = [
        "Active",
        "Pending",
        "Dismantling",
        "Terminated",
        "Anonymized",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Phase::Active => "Active",
            Phase::Pending { .. } => "Pending",
            Phase::Dismantling { .. } => "Dismantling",
            Phase::Terminated { .. } => "Terminated",
            Phase::Anonymized { .. } => "Anonymized",
        }
    }

    pub fn termination_id(&self) -> Option<Uuid> {
        match self {
            Phase::Active => None,
            Phase::Pending { termination }
            | Phase::Dismantling { termination, .. }
            | Phase::Terminated { termination, .. } => Some(termination.id),
            Phase::Anonymized { termination_id, .. } => Some(*termination_id),
        }
    }
}

/// An accepted termination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Termination {
    pub id: Uuid,
    pub category: Category,
    pub effective_at: Timestamp,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub erasure_requested: bool,
    /// The eventId that accepted (or last superseded) it: the `causationId` of
    /// the outputs its timers cause.
    pub cause: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The name of the policy rule chosen when it was accepted (or last
    /// superseded). Its later steps (deadline, attempts, retention, forgetting)
    /// look the rule up by this name, so a changed policy file cannot make one
    /// termination mix two markets' rules; absent in states written before
    /// rules had names, which get the default rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_rule: Option<String>,
}

/// Dismantling progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dismantle {
    pub started_at: Timestamp,
    pub deadline: Timestamp,
    /// Indexed by [`Vertical::index`].
    pub verticals: [VerticalProgress; 3],
    /// `TerminationStalled` was raised (it is raised once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stalled: bool,
}

impl Dismantle {
    pub fn awaiting(&self) -> Vec<Vertical> {
        Vertical::ALL
            .into_iter()
            .filter(|v| self.verticals[v.index()].status != VerticalStatus::Completed)
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerticalProgress {
    pub attempt: u32,
    pub status: VerticalStatus,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerticalStatus {
    Awaiting,
    Completed,
    /// Failed for good (not retryable, or out of attempts); a later completion
    /// still counts, for when operations fix it by hand.
    Failed,
}

/// What a timer does when it fires.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// A pending termination reaches its effective time: dismantling starts.
    Effective,
    /// The verticals' deadline passes: `TerminationStalled`.
    DismantleDeadline,
    /// Retention ends: the records are anonymised.
    Retention,
    /// The anonymised marker is forgotten (a changelog tombstone).
    Forget,
}

impl TimerKind {
    pub const ALL: [TimerKind; 4] = [
        TimerKind::Effective,
        TimerKind::DismantleDeadline,
        TimerKind::Retention,
        TimerKind::Forget,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            TimerKind::Effective => "effective",
            TimerKind::DismantleDeadline => "dismantleDeadline",
            TimerKind::Retention => "retention",
            TimerKind::Forget => "forget",
        }
    }
}

impl CustomerState {
    pub fn new() -> Self {
        CustomerState {
            v: STATE_VERSION,
            clock: Timestamp::MIN,
            phase: Phase::Active,
            holds: Vec::new(),
            services_terminated_at: None,
            seen: VecDeque::new(),
        }
    }

    /// The one timer armed in this state, if any: timers are data, derived from
    /// the phase, so there is nothing to keep in sync.
    pub fn next_timer(&self) -> Option<(Timestamp, TimerKind)> {
        match &self.phase {
            Phase::Active => None,
            Phase::Pending { termination } => {
                Some((termination.effective_at, TimerKind::Effective))
            }
            Phase::Dismantling { dismantle, .. } if !dismantle.stalled => {
                Some((dismantle.deadline, TimerKind::DismantleDeadline))
            }
            Phase::Dismantling { .. } => None,
            Phase::Terminated { anonymize_at, .. } if self.holds.is_empty() => {
                Some((*anonymize_at, TimerKind::Retention))
            }
            Phase::Terminated { .. } => None,
            Phase::Anonymized { forget_at, .. } => Some((*forget_at, TimerKind::Forget)),
        }
    }

    /// Serialises for the changelog, in the compact binary layout
    /// (`state_codec`).
    pub fn to_bytes(&self) -> Vec<u8> {
        super::state_codec::encode(self)
    }

    /// Serialises as JSON: the record earlier releases wrote, still written
    /// with `--state-format json` (for a rolling upgrade from them) and what
    /// `terminus inspect --json` prints.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a changelog record written by this or an earlier release, binary
    /// or JSON.
    ///
    /// # Errors
    /// [`StateDecodeError`] when the bytes are not a state record or come from a
    /// newer release than this one.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateDecodeError> {
        let state: CustomerState = if bytes.first() == Some(&super::state_codec::BINARY_MARKER) {
            super::state_codec::decode(bytes)?
        } else {
            serde_json::from_slice(bytes).map_err(|e| StateDecodeError::Malformed(e.to_string()))?
        };
        if state.v > STATE_VERSION {
            return Err(StateDecodeError::TooNew(state.v));
        }
        Ok(state)
    }
}

impl Default for CustomerState {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateDecodeError {
    #[error("changelog record is not a Terminus state: {0}")]
    Malformed(String),
    #[error(
        "changelog record has state version {0}, newer than this release understands ({STATE_VERSION}); upgrade Terminus"
    )]
    TooNew(u32),
}
