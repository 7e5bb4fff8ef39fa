//! Every duration and limit of the rules, with the brief's defaults.

use crate::contract::Category;
use std::time::Duration;

/// The rules' knobs. The worker fills it from flags and environment variables;
/// the simulator takes the same flags, so both run one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Minimum notice for a customer's own request (default 14 days).
    pub customer_notice: Duration,
    /// Notice for an enterprise decision (default 30 days).
    pub enterprise_notice: Duration,
    /// Delay before a death, dissolution or fraud takes effect (default 0: at once).
    pub immediate_notice: Duration,
    /// How long the verticals have to confirm dismantling (default 72 hours).
    pub dismantle_deadline: Duration,
    /// Instructions per vertical including the first (default 5).
    pub max_attempts: u32,
    /// Retention of a terminated relationship's record (default 7 years).
    pub retention: Duration,
    /// Retention when the customer asked for erasure (default 180 days; never
    /// applied to fraud).
    pub erasure_retention: Duration,
    /// How long the id-only marker of an anonymised customer is kept, so late
    /// events are refused as `RecordsAnonymized`, before it is forgotten
    /// (default 30 days).
    pub forget_after: Duration,
    /// Whether deceased/dissolved/fraud triggers need their evidence reference and
    /// enterprise decisions their approval reference (default true).
    pub require_evidence: bool,
    /// How many recent event ids each customer remembers for deduplication
    /// (default 32).
    pub dedup_window: usize,
    /// The `source` of every output envelope (default `terminus`).
    pub source: String,
}

/// The defaults of the policy flags (`terminus run --help`, Policy), which
/// are defined once, in `crate::cli::PolicyArgs`.
impl Default for Policy {
    fn default() -> Self {
        crate::cli::PolicyArgs::defaults().to_policy()
    }
}

impl Policy {
    pub fn notice(&self, category: Category) -> Duration {
        match category {
            Category::CustomerRequest => self.customer_notice,
            Category::EnterpriseDecision => self.enterprise_notice,
            Category::CustomerDeceased | Category::OrganizationDissolved | Category::Fraud => {
                self.immediate_notice
            }
        }
    }

    /// Erasure shortens retention to the legal minimum, except for fraud, whose
    /// records must be kept in full.
    pub fn retention_for(&self, category: Category, erasure_requested: bool) -> Duration {
        if erasure_requested && category != Category::Fraud {
            self.erasure_retention
        } else {
            self.retention
        }
    }
}
