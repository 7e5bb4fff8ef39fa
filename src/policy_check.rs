//! `terminus policy check FILE`: validate a policy file and show what it does
//! before it is rolled out.
//!
//! For each sample trigger (every market the file names and none, × every
//! declared segment and none, × the five trigger types), or for the triggers
//! of a JSON-lines file of envelopes, it prints the rule the trigger gets, the
//! effective date and the retention end. The dates come from the domain core
//! itself: each trigger is run through `decide` as a fresh customer, the
//! dismantling completed at its effective time, so the dates are the ones the
//! worker and the simulator would compute.

use crate::contract::{OutputEvent, decode_envelope};
use crate::domain::{Input, PolicySet, decide};
use crate::time::Timestamp;
use serde_json::json;
use std::io::{self, BufRead, Write};

/// The five termination triggers, each with the body that makes it valid.
const TRIGGERS: [(&str, &str); 5] = [
    ("CustomerTerminationRequested", "{}"),
    ("CustomerDeceased", r#"{"evidenceRef":"EV-sample"}"#),
    ("OrganizationDissolved", r#"{"evidenceRef":"EV-sample"}"#),
    ("FraudConfirmed", r#"{"caseRef":"FR-sample"}"#),
    (
        "EnterpriseTerminationDecided",
        r#"{"approvalRef":"AP-sample","reason":"sample"}"#,
    ),
];

/// What one trigger gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub market: Option<String>,
    pub segment: Option<String>,
    pub event_type: String,
    /// The rule, the effective time and the end of retention; or why the
    /// trigger was refused (a rejection or dead-letter reason).
    pub outcome: Result<(String, Timestamp, Timestamp), String>,
}

/// The built-in sample at `at`: each market the policy names and none, each
/// declared segment and none, each trigger type.
pub fn sample(policy: &PolicySet, at: Timestamp) -> Vec<Checked> {
    let mut markets: Vec<Option<&str>> = policy.markets().into_iter().map(Some).collect();
    markets.push(None);
    let mut segments: Vec<Option<&str>> =
        policy.segments().iter().map(|s| Some(s.as_str())).collect();
    segments.push(None);
    let mut out = Vec::new();
    for market in &markets {
        for segment in &segments {
            for (event_type, body) in TRIGGERS {
                let mut event: serde_json::Value =
                    serde_json::from_str(body).unwrap_or_else(|_| json!({}));
                event["customerId"] = json!("C-sample");
                if let Some(m) = market {
                    event["market"] = json!(m);
                }
                if let Some(s) = segment {
                    event["segment"] = json!(s);
                }
                let envelope = json!({
                    "eventId": format!("sample-{}", out.len()),
                    "eventType": event_type,
                    "eventTime": at.to_rfc3339(),
                    "event": event,
                });
                out.push(check_line(policy, envelope.to_string().as_bytes()));
            }
        }
    }
    out.into_iter().flatten().collect()
}

/// The termination triggers among JSON-lines envelopes, each as a fresh
/// customer; other event types are skipped, refused lines are shown as such.
///
/// # Errors
/// Only I/O errors of `input`.
pub fn from_events(policy: &PolicySet, input: impl BufRead) -> io::Result<Vec<Checked>> {
    let mut out = Vec::new();
    for line in input.split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.extend(check_line(policy, &line));
    }
    Ok(out)
}

/// `None` for an event that is not a termination trigger.
fn check_line(policy: &PolicySet, bytes: &[u8]) -> Option<Checked> {
    let env = match decode_envelope(bytes) {
        Ok(env) => env,
        Err(e) => {
            return Some(Checked {
                market: None,
                segment: None,
                event_type: "(dead letter)".into(),
                outcome: Err(format!("{}: {}", e.reason, e.message)),
            });
        }
    };
    env.event.trigger_category()?;
    let outcome = follow(policy, &env);
    Some(Checked {
        market: env.market.clone(),
        segment: env.segment.clone(),
        event_type: env.event.event_type().to_owned(),
        outcome,
    })
}

/// Runs one trigger through the core: accepted, effective, every vertical
/// completed at the effective time, terminated.
fn follow(
    policy: &PolicySet,
    env: &crate::contract::InputEnvelope,
) -> Result<(String, Timestamp, Timestamp), String> {
    let customer = env.customer_id.as_str();
    let mut d = decide(customer, None, Input::Event(env), env.event_time, policy);
    let mut accepted = None;
    for record in &d.outputs {
        match &record.envelope.event {
            OutputEvent::TerminationAccepted {
                termination_id,
                effective_at,
                policy_rule,
                ..
            } => accepted = Some((*termination_id, effective_at.0, policy_rule.clone())),
            OutputEvent::TerminationRejected { reason_code, .. } => {
                return Err(format!("rejected: {reason_code}"));
            }
            _ => {}
        }
    }
    let (termination_id, effective_at, rule) = accepted.ok_or("not accepted")?;
    d = decide(customer, d.state, Input::Timers, effective_at, policy);
    for (n, vertical) in ["billing", "fulfillment", "assurance"].iter().enumerate() {
        let outcome = json!({
            "eventId": format!("{}-done-{n}", env.event_id),
            "eventType": "DismantleCompleted",
            "eventTime": effective_at.to_rfc3339(),
            "event": {"customerId": customer, "terminationId": termination_id, "vertical": vertical},
        });
        let outcome = decode_envelope(outcome.to_string().as_bytes()).map_err(|e| e.to_string())?;
        d = decide(
            customer,
            d.state,
            Input::Event(&outcome),
            effective_at,
            policy,
        );
        for record in &d.outputs {
            if let OutputEvent::RelationshipTerminated {
                retain_records_until,
                ..
            } = &record.envelope.event
            {
                return Ok((rule, effective_at, retain_records_until.0));
            }
        }
    }
    Err("not terminated".into())
}

/// Prints the rules of the policy and a table of the checked triggers.
///
/// # Errors
/// Only I/O errors of `out`.
pub fn print(policy: &PolicySet, checked: &[Checked], mut out: impl Write) -> io::Result<()> {
    let d = policy.default_rule();
    writeln!(out, "policy is valid: {} rules", policy.rules().len() + 1)?;
    writeln!(out, "segments: {}", policy.segments().join(", "))?;
    writeln!(
        out,
        "{:<16} {:<8} {:<12} {:<13} {:<13} {:<9} {:<10} {:<10} {:<8} evidence",
        "rule",
        "market",
        "segment",
        "customer",
        "enterprise",
        "deadline",
        "retention",
        "erasure",
        "attempts"
    )?;
    let scoped = policy
        .rules()
        .iter()
        .map(|r| (r.market.as_deref(), r.segment.as_deref(), &r.rule));
    for (market, segment, rule) in std::iter::once((None, None, d)).chain(scoped) {
        writeln!(
            out,
            "{:<16} {:<8} {:<12} {:<13} {:<13} {:<9} {:<10} {:<10} {:<8} {}",
            rule.name,
            market.unwrap_or("*"),
            segment.unwrap_or("*"),
            rule.customer_notice.to_string(),
            rule.enterprise_notice.to_string(),
            rule.dismantle_deadline.to_string(),
            rule.retention.to_string(),
            rule.erasure_retention.to_string(),
            rule.max_attempts,
            rule.require_evidence,
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<8} {:<12} {:<30} {:<16} {:<26} retainRecordsUntil",
        "market", "segment", "trigger", "rule", "effectiveAt"
    )?;
    for c in checked {
        let (market, segment) = (
            c.market.as_deref().unwrap_or("-"),
            c.segment.as_deref().unwrap_or("-"),
        );
        match &c.outcome {
            Ok((rule, effective, retain)) => writeln!(
                out,
                "{market:<8} {segment:<12} {:<30} {rule:<16} {:<26} {}",
                c.event_type,
                effective.to_rfc3339(),
                retain.to_rfc3339()
            )?,
            Err(why) => writeln!(out, "{market:<8} {segment:<12} {:<30} {why}", c.event_type)?,
        }
    }
    Ok(())
}
