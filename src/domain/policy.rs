//! Every duration and limit of the rules: a default rule, and rules for a
//! market, a segment, or both, chosen when a termination is accepted.
//!
//! The set is plain data built once at start (from flags, or from a policy file
//! by `crate::policy_file`); the core only looks rules up in it.

use crate::contract::{Category, is_market_code, is_segment_name};
use crate::time::Period;
use std::time::Duration;

/// The name of the rule that applies when no other matches.
pub const DEFAULT_RULE: &str = "default";

/// The segments a policy knows when it declares none.
pub const DEFAULT_SEGMENTS: [&str; 3] = ["consumer", "business", "wholesale"];

/// One complete set of durations and limits, under a name that terminations
/// record, so that their later steps use the same rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Recorded in the termination's state and published as `policyRule`.
    pub name: String,
    /// Minimum notice for a customer's own request (default 14 days).
    pub customer_notice: Period,
    /// Notice for an enterprise decision (default 30 days).
    pub enterprise_notice: Period,
    /// Delay before a death, dissolution or fraud takes effect (default 0: at once).
    pub immediate_notice: Period,
    /// How long the verticals have to confirm dismantling (default 72 hours).
    pub dismantle_deadline: Period,
    /// Instructions per vertical including the first (default 5).
    pub max_attempts: u32,
    /// Retention of a terminated relationship's record (default P7Y, on the
    /// calendar).
    pub retention: Period,
    /// Retention when the customer asked for erasure (default 180 days; never
    /// applied to fraud).
    pub erasure_retention: Period,
    /// How long the id-only marker of an anonymised customer is kept, so late
    /// events are refused as `RecordsAnonymized`, before it is forgotten
    /// (default 30 days).
    pub forget_after: Period,
    /// Whether deceased/dissolved/fraud triggers need their evidence reference and
    /// enterprise decisions their approval reference (default true).
    pub require_evidence: bool,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            name: DEFAULT_RULE.to_owned(),
            customer_notice: Period::days(14),
            enterprise_notice: Period::days(30),
            immediate_notice: Period::ZERO,
            dismantle_deadline: Period::exact(Duration::from_secs(72 * 60 * 60)),
            max_attempts: 5,
            retention: Period::years(7),
            erasure_retention: Period::days(180),
            forget_after: Period::days(30),
            require_evidence: true,
        }
    }
}

impl Rule {
    pub fn notice(&self, category: Category) -> Period {
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
    pub fn retention_for(&self, category: Category, erasure_requested: bool) -> Period {
        if erasure_requested && category != Category::Fraud {
            self.erasure_retention
        } else {
            self.retention
        }
    }
}

/// A rule with what selects it: a market, a segment, or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopedRule {
    pub market: Option<String>,
    pub segment: Option<String>,
    pub rule: Rule,
}

/// Why a set of rules cannot be used. `index` is the position of the offending
/// rule (or declared segment) so that a file loader can name its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "a rule needs a market, a segment or both; what applies to everyone else is the default rule"
    )]
    NoSelector { index: usize },
    #[error("market must be an ISO 3166-1 alpha-2 code: two capital letters such as DE or GB")]
    InvalidMarket { index: usize },
    #[error("segment `{segment}` is not one of the segments the policy declares ({declared})")]
    UnknownSegment {
        index: usize,
        segment: String,
        declared: String,
    },
    #[error(
        "segment names are 1 to 32 lowercase letters, digits or hyphens, starting with a letter (consumer, business)"
    )]
    InvalidSegment { index: usize },
    #[error("segment `{segment}` is declared twice")]
    DuplicateSegment { index: usize, segment: String },
    #[error(
        "rule names are 1 to 64 letters, digits, `.`, `_`, `-` or `/`; `default` is the default rule's"
    )]
    InvalidName { index: usize },
    #[error("rule `{name}` selects the same market and segment as rule `{other}`")]
    Overlap {
        index: usize,
        name: String,
        other: String,
    },
    #[error("two rules are named `{name}`")]
    DuplicateName { index: usize, name: String },
    #[error("max-attempts must be between 1 and 100")]
    InvalidMaxAttempts { index: usize },
}

impl PolicyError {
    pub fn index(&self) -> usize {
        match self {
            PolicyError::NoSelector { index }
            | PolicyError::InvalidMarket { index }
            | PolicyError::UnknownSegment { index, .. }
            | PolicyError::InvalidSegment { index }
            | PolicyError::DuplicateSegment { index, .. }
            | PolicyError::InvalidName { index }
            | PolicyError::Overlap { index, .. }
            | PolicyError::DuplicateName { index, .. }
            | PolicyError::InvalidMaxAttempts { index } => *index,
        }
    }

    /// Whether `index` counts declared segments rather than rules.
    pub fn is_about_segments(&self) -> bool {
        matches!(
            self,
            PolicyError::InvalidSegment { .. } | PolicyError::DuplicateSegment { .. }
        )
    }
}

/// The policy the core runs on: the default rule, the rules per market and
/// segment, and the settings that are not per customer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySet {
    default: Rule,
    rules: Vec<ScopedRule>,
    segments: Vec<String>,
    /// How many recent event ids each customer remembers for deduplication
    /// (default 32).
    pub dedup_window: usize,
    /// The `source` of every output envelope (default `terminus`).
    pub source: String,
}

/// The name the worker, the simulator and the tests have always used.
pub type Policy = PolicySet;

impl Default for PolicySet {
    fn default() -> Self {
        PolicySet::with_default(Rule::default())
    }
}

impl PolicySet {
    /// One rule for everyone: what the flags configure.
    pub fn with_default(mut default: Rule) -> Self {
        default.name = DEFAULT_RULE.to_owned();
        PolicySet {
            default,
            rules: Vec::new(),
            segments: DEFAULT_SEGMENTS.map(str::to_owned).to_vec(),
            dedup_window: 32,
            source: String::from("terminus"),
        }
    }

    /// A default rule plus rules per market and segment. `segments` is the
    /// closed list of segments (the three of [`DEFAULT_SEGMENTS`] when `None`).
    ///
    /// # Errors
    /// [`PolicyError`] for a rule without market and segment, a malformed market,
    /// segment or name, a segment outside the list, two rules with the same
    /// market and segment, or two rules with the same name.
    pub fn new(
        mut default: Rule,
        rules: Vec<ScopedRule>,
        segments: Option<Vec<String>>,
    ) -> Result<Self, PolicyError> {
        let segments = segments.unwrap_or_else(|| DEFAULT_SEGMENTS.map(str::to_owned).to_vec());
        for (index, segment) in segments.iter().enumerate() {
            if !is_segment_name(segment) {
                return Err(PolicyError::InvalidSegment { index });
            }
            if segments[..index].contains(segment) {
                return Err(PolicyError::DuplicateSegment {
                    index,
                    segment: segment.clone(),
                });
            }
        }
        if !is_rule_name(&default.name) {
            default.name = DEFAULT_RULE.to_owned();
        }
        for (index, scoped) in rules.iter().enumerate() {
            let name = &scoped.rule.name;
            if !is_rule_name(name) || name == DEFAULT_RULE || name == &default.name {
                return Err(PolicyError::InvalidName { index });
            }
            if scoped.market.is_none() && scoped.segment.is_none() {
                return Err(PolicyError::NoSelector { index });
            }
            if scoped.market.as_deref().is_some_and(|m| !is_market_code(m)) {
                return Err(PolicyError::InvalidMarket { index });
            }
            if let Some(segment) = &scoped.segment
                && !segments.contains(segment)
            {
                return Err(PolicyError::UnknownSegment {
                    index,
                    segment: segment.clone(),
                    declared: segments.join(", "),
                });
            }
            if !(1..=100).contains(&scoped.rule.max_attempts) {
                return Err(PolicyError::InvalidMaxAttempts { index });
            }
            for earlier in &rules[..index] {
                if earlier.market == scoped.market && earlier.segment == scoped.segment {
                    return Err(PolicyError::Overlap {
                        index,
                        name: name.clone(),
                        other: earlier.rule.name.clone(),
                    });
                }
                if &earlier.rule.name == name {
                    return Err(PolicyError::DuplicateName {
                        index,
                        name: name.clone(),
                    });
                }
            }
        }
        Ok(PolicySet {
            default,
            rules,
            segments,
            dedup_window: 32,
            source: String::from("terminus"),
        })
    }

    pub fn default_rule(&self) -> &Rule {
        &self.default
    }

    /// The rules per market and segment, in the order they were given.
    pub fn rules(&self) -> &[ScopedRule] {
        &self.rules
    }

    /// The closed list of segments an event may name.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The markets some rule names, sorted.
    pub fn markets(&self) -> Vec<&str> {
        let mut markets: Vec<&str> = self
            .rules
            .iter()
            .filter_map(|r| r.market.as_deref())
            .collect();
        markets.sort_unstable();
        markets.dedup();
        markets
    }

    /// The rule for a customer of `market` and `segment`: the most specific
    /// match wins — market and segment, then market, then segment, then the
    /// default. A segment outside the declared list counts as none.
    pub fn select(&self, market: Option<&str>, segment: Option<&str>) -> &Rule {
        let segment = segment.filter(|s| self.segments.iter().any(|d| d == s));
        let find = |m: Option<&str>, s: Option<&str>| {
            self.rules
                .iter()
                .find(|r| r.market.as_deref() == m && r.segment.as_deref() == s)
                .map(|r| &r.rule)
        };
        let candidates = [
            market.zip(segment).map(|(m, s)| (Some(m), Some(s))),
            market.map(|m| (Some(m), None)),
            segment.map(|s| (None, Some(s))),
        ];
        candidates
            .into_iter()
            .flatten()
            .find_map(|(m, s)| find(m, s))
            .unwrap_or(&self.default)
    }

    /// The rule a termination recorded, looked up in this policy; the default
    /// rule when the name is unknown (the file changed) or absent (a state
    /// written before rules had names).
    pub fn rule_named(&self, name: Option<&str>) -> &Rule {
        name.and_then(|name| {
            self.rules
                .iter()
                .map(|r| &r.rule)
                .find(|rule| rule.name == name)
        })
        .unwrap_or(&self.default)
    }
}

/// Rule names go into state and output events: short, printable, no spaces.
pub fn is_rule_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
}
