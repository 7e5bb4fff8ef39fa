//! Keeps `docs/state-machine.md` and the code from drifting apart: every row of
//! the doc's rule table is set up and run through the public API, and every
//! reason code, timer, phase, dead-letter reason, policy flag and id format the
//! code knows must be in the doc.

mod core_support;

use clap::CommandFactory;
use core_support::{Customer, DAY, HOUR, default_body, t0, types, value};
use serde_json::json;
use terminus::contract::{DeadLetterReason, RejectionCode};
use terminus::domain::ids::{self, Cause};
use terminus::domain::{Decision, Effect, IgnoreReason, Phase, TimerKind};
use terminus::time::Timestamp;

const DOC: &str = include_str!("../docs/state-machine.md");

const INPUT_EVENT_TYPES: [&str; 13] = [
    "CustomerTerminationRequested",
    "CustomerTerminationWithdrawn",
    "CustomerDeceased",
    "OrganizationDissolved",
    "AllServicesTerminated",
    "RelationshipReestablishmentRequested",
    "FraudConfirmed",
    "EnterpriseTerminationDecided",
    "TerminationDecisionRevoked",
    "LegalHoldPlaced",
    "LegalHoldReleased",
    "DismantleCompleted",
    "DismantleFailed",
];

const IGNORE_REASONS: [IgnoreReason; 3] = [
    IgnoreReason::NotDismantling,
    IgnoreReason::UnknownTermination,
    IgnoreReason::VerticalSettled,
];

// ---- reading the doc ---------------------------------------------------------

/// The rows of the first Markdown table whose header is `header`, as trimmed cells.
fn table(header: &str) -> Vec<Vec<String>> {
    let mut lines = DOC.lines().skip_while(|l| l.trim() != header);
    assert!(
        lines.next().is_some(),
        "docs/state-machine.md has no table `{header}`"
    );
    let separator = lines.next().unwrap_or_default();
    assert!(
        separator.starts_with("|---"),
        "`{header}` is not followed by a separator"
    );
    lines
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

fn plain(cell: &str) -> String {
    cell.replace('`', "")
}

/// The `code` spans of a cell.
fn codes(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

fn rule_rows() -> Vec<Vec<String>> {
    let rows = table("| state | input | outcome | outputs | reason code |");
    assert!(
        rows.len() > 40,
        "the rule table looks truncated ({} rows)",
        rows.len()
    );
    rows
}

// ---- running a row ---------------------------------------------------------------

/// The state a row starts from.
fn fixture(state: &str) -> Customer {
    match state {
        "Active" => Customer::new("C-doc"),
        "Pending (customerRequest)" => Customer::pending_request("C-doc"),
        "Pending (enterpriseDecision)" => Customer::pending_enterprise("C-doc"),
        "Dismantling" => Customer::dismantling("C-doc"),
        "Dismantling (stalled)" => {
            let mut c = Customer::dismantling("C-doc");
            let d = c.fire_next_timer();
            assert_eq!(types(&d.outputs), ["TerminationStalled"]);
            c
        }
        "Terminated (reestablishable)" => {
            Customer::terminated_by("C-doc", "CustomerTerminationRequested")
        }
        "Terminated (not reestablishable)" => Customer::terminated_by("C-doc", "FraudConfirmed"),
        "Terminated (on legal hold)" => {
            let mut c = Customer::terminated_by("C-doc", "CustomerTerminationRequested");
            let at = c.now.plus(HOUR);
            c.send("LegalHoldPlaced", at, json!({"holdRef": "LH-1"}));
            c
        }
        "Anonymized" => Customer::anonymized("C-doc"),
        other => panic!("docs/state-machine.md: unknown state `{other}` in the rule table"),
    }
}

fn termination_id_or_stranger(c: &Customer) -> String {
    c.state
        .as_ref()
        .and_then(|s| s.phase.termination_id())
        .unwrap_or_else(|| ids::termination_id("C-1", "someone-else"))
        .to_string()
}

fn completed(c: &Customer, vertical: &str) -> bool {
    match c.state.as_ref().map(|s| &s.phase) {
        Some(Phase::Dismantling { dismantle, .. }) => {
            !dismantle.awaiting().iter().any(|v| v.as_str() == vertical)
        }
        _ => false,
    }
}

/// Arranges and applies a row's input; returns the decision of the input itself.
fn apply(c: &mut Customer, input: &str) -> Decision {
    let at = c.now.max(t0()).plus(HOUR);
    let timer_due = |c: &Customer| -> Timestamp {
        match c.phase_ref() {
            Phase::Pending { termination } => termination.effective_at,
            Phase::Dismantling { dismantle, .. } => dismantle.deadline,
            Phase::Terminated { retain_until, .. } => *retain_until,
            Phase::Anonymized { forget_at, .. } => *forget_at,
            Phase::Active => panic!("no timer in Active"),
        }
    };
    if let Some(kind) = input.strip_suffix(" timer") {
        let due = timer_due(c);
        if let Some((armed, armed_kind)) = c.state.as_ref().and_then(|s| s.next_timer()) {
            assert_eq!((armed, armed_kind.as_str()), (due, kind), "the armed timer");
        }
        return c.tick(due);
    }
    let (event_type, detail) = input.split_once(' ').unwrap_or((input, ""));
    assert!(
        INPUT_EVENT_TYPES.contains(&event_type) || input == "a repeated eventId",
        "unknown input `{input}`"
    );
    let mut body = default_body(event_type);
    match (event_type, detail) {
        (_, "") => {}
        ("a", "repeated eventId") => {
            let first = format!("{}-e1", c.id);
            return c.send_as(&first, "CustomerTerminationRequested", at, json!({}));
        }
        (_, d) if d.starts_with("with ") && body.get(&d[5..]).is_some() => {}
        (_, d) if d.starts_with("without ") && body.get(&d[8..]).is_some() => {
            body.as_object_mut().unwrap().remove(&d[8..]);
        }
        ("LegalHoldReleased", "with unknown holdRef") => body = json!({"holdRef": "LH-unknown"}),
        ("LegalHoldReleased", "before the retention date") => {
            let Phase::Terminated { retain_until, .. } = c.phase_ref() else {
                panic!("{input} needs Terminated")
            };
            assert!(at < *retain_until);
        }
        ("LegalHoldReleased", "after the retention date") => {
            let due = timer_due(c);
            return c.send("LegalHoldReleased", due.plus(DAY), body);
        }
        ("DismantleCompleted", "for a vertical, others awaited") => {
            return c.complete("billing", at);
        }
        ("DismantleCompleted", "for the last vertical") => {
            for v in ["fulfillment", "assurance"] {
                if !completed(c, v) {
                    c.complete(v, at);
                }
            }
            return c.complete("billing", at);
        }
        ("DismantleCompleted", "for another terminationId") => {
            let body = json!({"terminationId": ids::termination_id("C-1", "someone-else"), "vertical": "billing"});
            return c.send("DismantleCompleted", at, body);
        }
        ("DismantleCompleted", "for a vertical already completed") => {
            c.complete("billing", at);
            return c.complete("billing", at);
        }
        ("DismantleFailed", "retryable, attempts left") => return c.fail("billing", true, at),
        ("DismantleFailed", "retryable, no attempts left") => {
            for _ in 1..c.policy.default_rule().max_attempts {
                assert_eq!(
                    types(&c.fail("billing", true, at).outputs),
                    ["DismantleSolution"]
                );
            }
            return c.fail("billing", true, at);
        }
        ("DismantleFailed", "not retryable") => return c.fail("billing", false, at),
        _ => panic!("docs/state-machine.md: unknown input `{input}` in the rule table"),
    }
    if event_type == "DismantleCompleted" {
        body = json!({"terminationId": termination_id_or_stranger(c), "vertical": "billing"});
    }
    c.send(event_type, at, body)
}

/// `TerminationAccepted, DismantleSolution ×3` → the list of types.
fn expected_outputs(cell: &str) -> Vec<String> {
    if cell == "—" {
        return Vec::new();
    }
    // Remarks in parentheses are for readers: `DismantleSolution` (same vertical, ...).
    let mut bare = String::new();
    let mut depth = 0;
    for ch in cell.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => bare.push(ch),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for part in bare.split(',') {
        let name = codes(part)
            .first()
            .copied()
            .unwrap_or_else(|| panic!("no output type in `{part}`"));
        let times = part
            .split('×')
            .nth(1)
            .map_or(1, |n| n.trim().parse::<usize>().expect("a count after ×"));
        out.extend(std::iter::repeat_n(name.to_owned(), times));
    }
    out
}

fn expected_phase(cell: &str) -> &str {
    if cell.contains("tombstone") {
        return "none";
    }
    codes(cell)
        .into_iter()
        .find(|c| Phase::NAMES.contains(c))
        .unwrap_or_else(|| panic!("no phase in outcome `{cell}`"))
}

fn check_effect(effect: Effect, cell: &str, row: &str) {
    let code = codes(cell).first().copied();
    match (cell, effect) {
        ("—", Effect::Applied | Effect::Timers) => {}
        ("duplicate", Effect::Duplicate) => {}
        (c, Effect::Ignored(reason)) if c.starts_with("ignored") => {
            assert_eq!(Some(reason.as_str()), code, "{row}");
        }
        (_, Effect::Rejected(rejection)) => assert_eq!(Some(rejection.as_str()), code, "{row}"),
        _ => panic!("{row}: effect {effect:?}, the doc says `{cell}`"),
    }
}

#[test]
fn every_rule_row_holds() {
    let mut checked = 0;
    for row in rule_rows() {
        let [state, input, outcome, outputs, reason] = <[String; 5]>::try_from(row.clone())
            .unwrap_or_else(|r| panic!("a rule row has {} cells: {r:?}", r.len()));
        let line = row.join(" | ");
        let mut c = fixture(&plain(&state));
        let before = c.state.as_ref().and_then(|s| s.phase.termination_id());
        let d = apply(&mut c, &plain(&input));
        // Outcome: a customer with no record is Active.
        let phase = match (c.phase(), expected_phase(&outcome)) {
            ("none", "Active") => "Active",
            (p, _) => p,
        };
        assert_eq!(phase, expected_phase(&outcome), "outcome of: {line}");
        assert_eq!(
            types(&d.outputs),
            expected_outputs(&outputs),
            "outputs of: {line}"
        );
        check_effect(d.effect, &reason, &line);
        // The details the outcome and outputs cells promise.
        if outcome.contains("`notifyCustomer` false") {
            assert_eq!(
                value(&d.outputs[0])["event"]["notifyCustomer"],
                false,
                "{line}"
            );
        }
        if outcome.contains("same `terminationId`") {
            let accepted = value(&d.outputs[0]);
            assert_eq!(
                accepted["event"]["terminationId"],
                before.unwrap().to_string(),
                "{line}"
            );
        }
        if outputs.contains("`attempt` + 1") {
            assert_eq!(value(&d.outputs[0])["event"]["attempt"], 2, "{line}");
        }
        if outcome.contains("at the release time") {
            assert_eq!(
                value(&d.outputs[0])["eventTime"],
                c.now.to_rfc3339(),
                "{line}"
            );
        }
        if outcome.contains("(stalled)") {
            let Some(Phase::Dismantling { dismantle, .. }) = c.state.as_ref().map(|s| &s.phase)
            else {
                panic!("{line}: not dismantling")
            };
            assert!(dismantle.stalled, "{line}");
        }
        checked += 1;
    }
    assert!(checked > 40);
}

#[test]
fn the_rule_table_covers_every_code_and_input() {
    let rows = rule_rows();
    let reasons: Vec<&String> = rows.iter().map(|r| &r[4]).collect();
    for code in RejectionCode::ALL {
        assert!(
            reasons.iter().any(|r| codes(r) == [code.as_str()]),
            "no rule row ends in rejection {code}"
        );
    }
    for reason in IGNORE_REASONS {
        assert!(
            reasons
                .iter()
                .any(|r| r.starts_with("ignored") && codes(r) == [reason.as_str()]),
            "no rule row ignores an outcome as {}",
            reason.as_str()
        );
    }
    let inputs: Vec<String> = rows.iter().map(|r| plain(&r[1])).collect();
    for event_type in INPUT_EVENT_TYPES {
        assert!(
            inputs
                .iter()
                .any(|i| i.split(' ').next() == Some(event_type)),
            "no rule row for {event_type}"
        );
    }
    for kind in TimerKind::ALL {
        assert!(
            inputs.contains(&format!("{} timer", kind.as_str())),
            "no rule row for the {} timer",
            kind.as_str()
        );
    }
    let states: Vec<String> = rows.iter().map(|r| plain(&r[0])).collect();
    for phase in Phase::NAMES {
        assert!(
            states.iter().any(|s| s.starts_with(phase)),
            "no rule row starts in {phase}"
        );
    }
}

#[test]
fn every_enum_the_code_has_is_documented() {
    for code in RejectionCode::ALL {
        assert!(
            DOC.contains(&format!("`{code}`")),
            "RejectionCode {code} missing"
        );
    }
    for reason in DeadLetterReason::ALL {
        assert!(
            DOC.contains(&format!("`{reason}`")),
            "DeadLetterReason {reason} missing"
        );
    }
    for kind in TimerKind::ALL {
        assert!(
            DOC.contains(&format!("`{}`", kind.as_str())),
            "TimerKind {} missing",
            kind.as_str()
        );
    }
    for phase in Phase::NAMES {
        assert!(DOC.contains(&format!("`{phase}`")), "Phase {phase} missing");
    }
    for category in terminus::contract::Category::ALL {
        assert!(
            DOC.contains(&format!("`{category}`")),
            "Category {category} missing"
        );
    }
}

#[test]
fn the_reference_tables_match_the_enums_exactly() {
    let first =
        |header: &str| -> Vec<String> { table(header).iter().map(|r| plain(&r[0])).collect() };
    let names = |v: Vec<&str>| -> Vec<String> { v.into_iter().map(str::to_owned).collect() };
    assert_eq!(
        first("| reason code | when |"),
        names(RejectionCode::ALL.iter().map(|c| c.as_str()).collect())
    );
    assert_eq!(
        first("| reason | cause |"),
        names(DeadLetterReason::ALL.iter().map(|c| c.as_str()).collect())
    );
    assert_eq!(
        first("| timer | armed while | due | when it fires | outputs |"),
        names(TimerKind::ALL.iter().map(|k| k.as_str()).collect())
    );
    assert_eq!(
        first("| phase | meaning | armed timer |"),
        names(Phase::NAMES.to_vec())
    );
    let categories = first(
        "| category | trigger | reference required | effective | `notifyCustomer` | retention | reestablishable |",
    );
    let mut expected: Vec<String> = terminus::contract::Category::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    let mut got = categories.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    for row in table(
        "| category | trigger | reference required | effective | `notifyCustomer` | retention | reestablishable |",
    ) {
        let category = terminus::contract::Category::ALL
            .into_iter()
            .find(|c| c.as_str() == plain(&row[0]))
            .expect("a category");
        assert_eq!(
            row[4] == "true",
            category.notifies_customer(),
            "notifyCustomer of {category}"
        );
        assert_eq!(
            row[6] == "yes",
            category.allows_reestablishment(),
            "reestablishable of {category}"
        );
    }
}

#[test]
fn the_state_diagram_names_every_phase() {
    let start = DOC.find("```mermaid").expect("a Mermaid diagram");
    let diagram = &DOC[start..start + DOC[start..].find("\n```\n").expect("closed")];
    assert!(diagram.contains("stateDiagram-v2"));
    for phase in Phase::NAMES {
        assert!(diagram.contains(phase), "{phase} missing from the diagram");
    }
}

#[test]
fn the_policy_table_matches_the_cli() {
    let rows = table("| flag | env | default | meaning |");
    let cli = terminus::cli::Cli::command();
    let simulate = cli
        .find_subcommand("simulate")
        .expect("simulate subcommand");
    let mut documented = 0;
    for arg in simulate.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "until" || long == "help" {
            continue;
        }
        let row = rows
            .iter()
            .find(|r| r[0] == format!("`--{long}`"))
            .unwrap_or_else(|| panic!("--{long} is not in the policy table"));
        let env = arg
            .get_env()
            .expect("every policy flag has an env variable");
        assert_eq!(
            row[1],
            format!("`{}`", env.to_string_lossy()),
            "env of --{long}"
        );
        let default: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let shown = if default.is_empty() {
            "—".to_owned()
        } else {
            format!("`{}`", default.join(","))
        };
        assert_eq!(row[2], shown, "default of --{long}");
        documented += 1;
    }
    assert_eq!(
        documented,
        rows.len(),
        "the policy table lists a flag the CLI does not have"
    );
}

#[test]
fn the_id_derivations_are_the_documented_ones() {
    let ns = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"urn:terminus:v1");
    assert!(DOC.contains("`urn:terminus:v1`"));
    assert_eq!(ids::namespace(), ns);
    let v5 = |name: &str| uuid::Uuid::new_v5(&ns, name.as_bytes());
    assert!(DOC.contains("`termination:<n>:<customerId>:<eventId>`"));
    assert_eq!(
        ids::termination_id("C-1", "req-1"),
        v5("termination:3:C-1:req-1")
    );
    assert!(DOC.contains("`event:<n>:<customerId>:<eventId>#<ordinal>`"));
    assert_eq!(
        Cause::Event {
            customer_id: "C-1".into(),
            event_id: "req-1".into()
        }
        .output_id(2),
        v5("event:3:C-1:req-1#2")
    );
    assert!(DOC.contains("`timer:<terminationId>:<timer>:<due in epoch milliseconds>#<ordinal>`"));
    let tid = ids::termination_id("C-1", "req-1");
    let due = t0();
    let timer = Cause::Timer {
        termination: tid,
        kind: TimerKind::Effective,
        due,
    };
    assert_eq!(
        timer.output_id(0),
        v5(&format!("timer:{tid}:effective:{}#0", due.millis()))
    );
    // And outputs use them.
    let mut c = Customer::new("C-1");
    let d = c.send_as("req-1", "CustomerTerminationRequested", t0(), json!({}));
    assert_eq!(d.outputs[0].envelope.event_id, v5("event:3:C-1:req-1#0"));
    let due = t0().plus(core_support::days(14));
    let d = c.tick(due);
    let expected = v5(&format!("timer:{tid}:effective:{}#1", due.millis()));
    assert_eq!(d.outputs[1].envelope.event_id, expected);
}
