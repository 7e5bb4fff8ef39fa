//! The policy file (`--policy FILE`, TOML): a default rule and rules per
//! market and segment, read once at start into a [`PolicySet`].
//!
//! Every mistake is a start-up error naming the file and the line: unknown
//! keys, values that cannot be durations or attempt counts, malformed markets,
//! segments outside the declared list, two rules for the same market and
//! segment, two rules with one name. A worker that started has a policy that
//! means what it says.
//!
//! A rule inherits every key it leaves out: a market-and-segment rule from the
//! market's rule, then the segment's rule, then `[default]`; a market or a
//! segment rule from `[default]`; `[default]` from the built-in defaults.

use crate::domain::{DEFAULT_RULE, PolicyError, PolicySet, Rule, ScopedRule};
use crate::time::Period;
use serde::Deserialize;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// Why a policy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policy file {path}, line {line}: {message}")]
    Invalid {
        path: String,
        line: usize,
        message: String,
    },
}

impl PolicyFileError {
    /// The line named, for an invalid file.
    pub fn line(&self) -> Option<usize> {
        match self {
            PolicyFileError::Invalid { line, .. } => Some(*line),
            PolicyFileError::Read { .. } => None,
        }
    }
}

/// Reads and validates a policy file.
///
/// # Errors
/// [`PolicyFileError`] when the file cannot be read, is not TOML, or is invalid.
pub fn load(path: &Path) -> Result<PolicySet, PolicyFileError> {
    let shown = path.display().to_string();
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
    {
        return Err(PolicyFileError::Invalid {
            path: shown,
            line: 1,
            message: "policy files are TOML (see docs/state-machine.md#policy-file)".into(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| PolicyFileError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&text, &shown)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    segments: Option<Vec<Spanned<String>>>,
    default: Option<Spanned<RawRule>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRule {
    name: Option<Spanned<String>>,
    market: Option<Spanned<String>>,
    segment: Option<Spanned<String>>,
    customer_notice: Option<Spanned<String>>,
    enterprise_notice: Option<Spanned<String>>,
    immediate_notice: Option<Spanned<String>>,
    dismantle_deadline: Option<Spanned<String>>,
    max_attempts: Option<Spanned<i64>>,
    retention: Option<Spanned<String>>,
    erasure_retention: Option<Spanned<String>>,
    forget_after: Option<Spanned<String>>,
    require_evidence: Option<Spanned<bool>>,
}

/// Byte offsets → line numbers, and errors that name them.
struct Source<'a> {
    text: &'a str,
    path: &'a str,
}

impl Source<'_> {
    fn line_of(&self, span: &Range<usize>) -> usize {
        let at = span.start.min(self.text.len());
        self.text[..at].bytes().filter(|b| *b == b'\n').count() + 1
    }

    fn error(&self, span: &Range<usize>, message: impl Into<String>) -> PolicyFileError {
        PolicyFileError::Invalid {
            path: self.path.to_owned(),
            line: self.line_of(span),
            message: message.into(),
        }
    }
}

/// Parses and validates a policy file's text; `path` only names it in errors.
///
/// # Errors
/// [`PolicyFileError::Invalid`] naming the line of the first problem.
pub fn parse(text: &str, path: &str) -> Result<PolicySet, PolicyFileError> {
    let src = Source { text, path };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        src.error(&span, e.message().trim().to_owned())
    })?;
    let segments: Option<Vec<String>> = raw
        .segments
        .as_ref()
        .map(|list| list.iter().map(|s| s.get_ref().clone()).collect());

    let default_raw = raw.default.as_ref().map(Spanned::get_ref);
    if let Some(d) = default_raw {
        for (key, value) in [("market", &d.market), ("segment", &d.segment)] {
            if let Some(v) = value {
                return Err(src.error(
                    &v.span(),
                    format!("the default rule applies to everyone and takes no {key}; write a [[rule]] for it"),
                ));
            }
        }
    }
    let mut default = overlay(&src, Rule::default(), default_raw)?;
    default.name = match default_raw.and_then(|d| d.name.as_ref()) {
        Some(name) => name.get_ref().clone(),
        None => DEFAULT_RULE.to_owned(),
    };
    if !crate::domain::is_rule_name(&default.name) {
        let span = default_raw
            .and_then(|d| d.name.as_ref())
            .map_or(0..0, Spanned::span);
        return Err(src.error(
            &span,
            "rule names are 1 to 64 letters, digits, `.`, `_`, `-` or `/`",
        ));
    }

    let raws: Vec<&RawRule> = raw.rule.iter().map(Spanned::get_ref).collect();
    let mut scoped = Vec::with_capacity(raws.len());
    for (index, r) in raws.iter().enumerate() {
        let market = r.market.as_ref().map(|m| m.get_ref().clone());
        let segment = r.segment.as_ref().map(|s| s.get_ref().clone());
        // The more general rules this one inherits from, most specific first.
        let mut parents: Vec<&RawRule> = Vec::new();
        if market.is_some() && segment.is_some() {
            let general = |m: Option<&String>, s: Option<&String>| {
                raws.iter().copied().find(|p| {
                    p.market.as_ref().map(Spanned::get_ref) == m
                        && p.segment.as_ref().map(Spanned::get_ref) == s
                })
            };
            parents.extend(general(market.as_ref(), None));
            parents.extend(general(None, segment.as_ref()));
        }
        let mut rule = default.clone();
        for parent in parents.iter().rev() {
            rule = overlay(&src, rule, Some(parent))?;
        }
        rule = overlay(&src, rule, Some(r))?;
        rule.name = match &r.name {
            Some(name) => name.get_ref().clone(),
            None => match (&market, &segment) {
                (Some(m), Some(s)) => format!("{m}/{s}"),
                (Some(m), None) => m.clone(),
                (None, Some(s)) => s.clone(),
                (None, None) => format!("rule-{}", index + 1),
            },
        };
        scoped.push(ScopedRule {
            market,
            segment,
            rule,
        });
    }

    PolicySet::new(default, scoped, segments).map_err(|e| {
        let span = error_span(&e, &raw);
        src.error(&span, e.to_string())
    })
}

/// Where in the file a [`PolicyError`] is: the key at fault, else its table.
fn error_span(e: &PolicyError, raw: &RawFile) -> Range<usize> {
    if e.is_about_segments() {
        return raw
            .segments
            .as_ref()
            .and_then(|list| list.get(e.index()))
            .map_or(0..0, Spanned::span);
    }
    let Some(table) = raw.rule.get(e.index()) else {
        return 0..0;
    };
    let r = table.get_ref();
    let key = match e {
        PolicyError::InvalidMarket { .. } => r.market.as_ref().map(Spanned::span),
        PolicyError::UnknownSegment { .. } => r.segment.as_ref().map(Spanned::span),
        PolicyError::InvalidName { .. } | PolicyError::DuplicateName { .. } => {
            r.name.as_ref().map(Spanned::span)
        }
        PolicyError::Overlap { .. } => r.market.as_ref().or(r.segment.as_ref()).map(Spanned::span),
        PolicyError::InvalidMaxAttempts { .. } => r.max_attempts.as_ref().map(Spanned::span),
        _ => None,
    };
    key.unwrap_or_else(|| table.span())
}

/// `base` with the keys `raw` sets, each validated.
fn overlay(
    src: &Source<'_>,
    mut base: Rule,
    raw: Option<&RawRule>,
) -> Result<Rule, PolicyFileError> {
    let Some(raw) = raw else {
        return Ok(base);
    };
    let period = |value: &Option<Spanned<String>>, key: &str, current: Period| {
        let Some(value) = value else {
            return Ok(current);
        };
        Period::parse(value.get_ref())
            .map_err(|e| src.error(&value.span(), format!("{key}: {}", e.why)))
    };
    base.customer_notice = period(
        &raw.customer_notice,
        "customer-notice",
        base.customer_notice,
    )?;
    base.enterprise_notice = period(
        &raw.enterprise_notice,
        "enterprise-notice",
        base.enterprise_notice,
    )?;
    base.immediate_notice = period(
        &raw.immediate_notice,
        "immediate-notice",
        base.immediate_notice,
    )?;
    base.dismantle_deadline = period(
        &raw.dismantle_deadline,
        "dismantle-deadline",
        base.dismantle_deadline,
    )?;
    if let Some(deadline) = &raw.dismantle_deadline
        && base.dismantle_deadline.is_zero()
    {
        return Err(src.error(
            &deadline.span(),
            "dismantle-deadline: must be longer than zero (the verticals need time to answer)",
        ));
    }
    base.retention = period(&raw.retention, "retention", base.retention)?;
    base.erasure_retention = period(
        &raw.erasure_retention,
        "erasure-retention",
        base.erasure_retention,
    )?;
    base.forget_after = period(&raw.forget_after, "forget-after", base.forget_after)?;
    if let Some(attempts) = &raw.max_attempts {
        base.max_attempts = u32::try_from(*attempts.get_ref())
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                src.error(
                    &attempts.span(),
                    "max-attempts: must be a whole number from 1 to 100",
                )
            })?;
    }
    if let Some(required) = &raw.require_evidence {
        base.require_evidence = *required.get_ref();
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(text: &str) -> (usize, String) {
        match parse(text, "p.toml") {
            Err(PolicyFileError::Invalid { line, message, .. }) => (line, message),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted:\n{text}"),
        }
    }

    #[test]
    fn an_empty_file_is_the_built_in_policy() {
        assert_eq!(parse("", "p.toml").unwrap(), PolicySet::default());
    }

    #[test]
    fn rules_inherit_what_they_leave_out() {
        let policy = parse(
            r#"
[default]
customer-notice = "P1M"

[[rule]]
market = "DE"
retention = "P10Y"

[[rule]]
segment = "business"
customer-notice = "P3M"
max-attempts = 3

[[rule]]
name = "de-b2b"
market = "DE"
segment = "business"
require-evidence = false
"#,
            "p.toml",
        )
        .unwrap();
        let de = policy.select(Some("DE"), None);
        assert_eq!(de.name, "DE");
        assert_eq!(de.customer_notice, Period::months(1));
        assert_eq!(de.retention, Period::years(10));
        let b2b = policy.select(Some("DE"), Some("business"));
        assert_eq!(b2b.name, "de-b2b");
        assert_eq!(b2b.retention, Period::years(10), "from the market's rule");
        assert_eq!(b2b.customer_notice, Period::months(3), "from the segment's");
        assert_eq!(b2b.max_attempts, 3);
        assert!(!b2b.require_evidence);
        assert_eq!(policy.select(Some("FR"), Some("business")).name, "business");
        assert_eq!(policy.select(None, None).name, "default");
    }

    #[test]
    fn mistakes_name_their_line() {
        let cases: [(&str, usize, &str); 10] = [
            ("[default]\nnotice = \"P14D\"\n", 2, "unknown field"),
            (
                "[default]\ncustomer-notice = \"two weeks\"\n",
                2,
                "customer-notice",
            ),
            ("[default]\nretention = \"7y\"\n", 2, "P7Y"),
            (
                "[[rule]]\nmarket = \"DE\"\nmax-attempts = 0\n",
                3,
                "max-attempts",
            ),
            ("[[rule]]\nmarket = \"de\"\n", 2, "ISO 3166-1"),
            ("[[rule]]\nsegment = \"vip\"\n", 2, "vip"),
            (
                "[[rule]]\nmarket = \"DE\"\n\n[[rule]]\nname = \"again\"\nmarket = \"DE\"\n",
                6,
                "same market",
            ),
            (
                "segments = [\"consumer\",\n \"Bad Segment\"]\n",
                2,
                "segment names",
            ),
            (
                "[[rule]]\nname = \"x\"\ncustomer-notice = \"P1D\"\n",
                1,
                "a market, a segment",
            ),
            ("[default]\nmarket = \"DE\"\n", 2, "takes no market"),
        ];
        for (text, line, needle) in cases {
            let (got, message) = line_of(text);
            assert_eq!(got, line, "{text}: {message}");
            assert!(message.contains(needle), "{text}: {message}");
        }
    }

    #[test]
    fn a_closed_segment_list_replaces_the_built_in_one() {
        let policy = parse(
            "segments = [\"residential\", \"smb\"]\n[[rule]]\nsegment = \"smb\"\ncustomer-notice = \"P2M\"\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(policy.select(None, Some("smb")).name, "smb");
        assert_eq!(policy.select(None, Some("business")).name, "default");
        let (line, message) = line_of("segments = [\"smb\"]\n[[rule]]\nsegment = \"business\"\n");
        assert_eq!(line, 3);
        assert!(message.contains("smb"), "{message}");
    }
}
