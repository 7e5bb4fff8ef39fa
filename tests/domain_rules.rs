//! One test per rule of the brief's state machine, through the public API:
//! events are JSON decoded by `decode_envelope`, steps are `domain::decide`
//! (and `engine::Engine` where many customers or the timer index matter).

mod core_support;

use core_support::{
    Customer, DAY, HOUR, days, default_body, envelope, rejection, t0, ts, types, value, with_rule,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use terminus::contract::{Category, RejectionCode, Topic};
use terminus::domain::ids::{self, Cause};
use terminus::domain::{
    CustomerState, Effect, IgnoreReason, Input, Phase, Policy, TimerKind, decide,
};
use terminus::engine::Engine;
use terminus::time::{Period, Timestamp};

const VERTICALS: [&str; 3] = ["billing", "fulfillment", "assurance"];

fn text(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn rfc(t: Timestamp) -> String {
    t.to_rfc3339()
}

/// Asserts a decision was a rejection with `code` and one TerminationRejected
/// output carrying that code and nothing but ids.
fn assert_rejected(d: &terminus::domain::Decision, code: RejectionCode) {
    assert_eq!(
        d.effect,
        Effect::Rejected(code),
        "effect of {:?}",
        types(&d.outputs)
    );
    assert_eq!(types(&d.outputs), ["TerminationRejected"]);
    let v = value(&d.outputs[0]);
    assert_eq!(v["event"]["reasonCode"], code.as_str());
    assert!(
        !text(&v["event"]["detail"]).is_empty(),
        "a detail says what happened"
    );
    let keys: Vec<&String> = v["event"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["customerId", "detail", "reasonCode"]);
    assert_eq!(d.outputs[0].topic, Topic::Status);
}

// ---- effective time ---------------------------------------------------------

#[test]
fn customer_request_takes_effect_after_the_minimum_notice() {
    let mut c = Customer::new("C-1");
    let d = c.send_as("req-1", "CustomerTerminationRequested", t0(), json!({}));
    assert_eq!(d.effect, Effect::Applied);
    assert_eq!(types(&d.outputs), ["TerminationAccepted"]);
    let v = value(&d.outputs[0]);
    assert_eq!(v["event"]["category"], "customerRequest");
    assert_eq!(v["event"]["effectiveAt"], rfc(t0().plus(days(14))));
    assert_eq!(v["event"]["notifyCustomer"], true);
    assert_eq!(
        v["event"]["terminationId"],
        ids::termination_id("C-1", "req-1").to_string()
    );
    assert_eq!(v["eventTime"], rfc(t0()));
    assert_eq!(v["causationId"], "req-1");
    assert_eq!(v["correlationId"], "corr-req-1");
    assert_eq!(d.outputs[0].key, "C-1");
    assert_eq!(c.phase(), "Pending");
    let next = c.state.as_ref().unwrap().next_timer();
    assert_eq!(next, Some((t0().plus(days(14)), TimerKind::Effective)));
}

#[test]
fn a_requested_date_later_than_the_notice_is_honoured() {
    let mut c = Customer::new("C-1");
    let d = c.send(
        "CustomerTerminationRequested",
        t0(),
        json!({"requestedEffectiveDate": "2027-01-31", "reason": "moving abroad"}),
    );
    assert_eq!(
        value(&d.outputs[0])["event"]["effectiveAt"],
        "2027-01-31T00:00:00.000Z"
    );
}

#[test]
fn a_requested_date_exactly_at_the_notice_is_honoured() {
    let mut c = Customer::new("C-1");
    let at = t0().plus(days(14));
    let d = c.send(
        "CustomerTerminationRequested",
        t0(),
        json!({"requestedEffectiveDate": rfc(at)}),
    );
    assert_eq!(value(&d.outputs[0])["event"]["effectiveAt"], rfc(at));
}

#[test]
fn a_requested_date_earlier_than_the_notice_moves_to_event_time_plus_notice() {
    let mut c = Customer::new("C-1");
    let d = c.send(
        "CustomerTerminationRequested",
        t0(),
        json!({"requestedEffectiveDate": "2026-11-30"}),
    );
    assert_eq!(
        value(&d.outputs[0])["event"]["effectiveAt"],
        rfc(t0().plus(days(14)))
    );
}

#[test]
fn the_notice_is_configurable() {
    let policy = with_rule(|r| r.customer_notice = days(30).into());
    let mut c = Customer::with_policy("C-1", policy);
    let d = c.send("CustomerTerminationRequested", t0(), json!({}));
    assert_eq!(
        value(&d.outputs[0])["event"]["effectiveAt"],
        rfc(t0().plus(days(30)))
    );
}

#[test]
fn an_enterprise_decision_takes_effect_after_thirty_days() {
    let mut c = Customer::new("C-1");
    let d = c.send_default("EnterpriseTerminationDecided", t0());
    assert_eq!(types(&d.outputs), ["TerminationAccepted"]);
    let v = value(&d.outputs[0]);
    assert_eq!(v["event"]["category"], "enterpriseDecision");
    assert_eq!(v["event"]["effectiveAt"], rfc(t0().plus(days(30))));
    assert_eq!(v["event"]["notifyCustomer"], true);
    assert_eq!(c.phase(), "Pending");
}

#[test]
fn deceased_dissolved_and_fraud_dismantle_at_once_in_the_same_step() {
    for (trigger, category, notify) in [
        ("CustomerDeceased", "customerDeceased", true),
        ("OrganizationDissolved", "organizationDissolved", true),
        ("FraudConfirmed", "fraud", false),
    ] {
        let mut c = Customer::new("C-1");
        let d = c.send_as("x-1", trigger, t0(), default_body(trigger));
        assert_eq!(d.effect, Effect::Applied, "{trigger}");
        assert_eq!(
            types(&d.outputs),
            [
                "TerminationAccepted",
                "DismantleSolution",
                "DismantleSolution",
                "DismantleSolution"
            ],
            "{trigger}"
        );
        let accepted = value(&d.outputs[0]);
        assert_eq!(accepted["event"]["category"], category);
        assert_eq!(accepted["event"]["effectiveAt"], rfc(t0()));
        assert_eq!(accepted["event"]["notifyCustomer"], notify, "{trigger}");
        let tid = ids::termination_id("C-1", "x-1").to_string();
        for (record, vertical) in d.outputs[1..].iter().zip(VERTICALS) {
            assert_eq!(record.topic, Topic::Dismantle);
            let v = value(record);
            assert_eq!(v["event"]["vertical"], vertical);
            assert_eq!(v["event"]["terminationId"], tid);
            assert_eq!(v["event"]["category"], category);
            assert_eq!(v["event"]["attempt"], 1);
            assert_eq!(v["event"]["effectiveAt"], rfc(t0()));
            assert_eq!(v["eventTime"], rfc(t0()));
            assert_eq!(v["causationId"], "x-1");
        }
        assert_eq!(c.phase(), "Dismantling");
        assert_eq!(
            c.state.as_ref().unwrap().next_timer(),
            Some((t0().plus(HOUR * 72), TimerKind::DismantleDeadline))
        );
    }
}

#[test]
fn a_configured_immediate_notice_delays_strong_triggers() {
    let policy = with_rule(|r| r.immediate_notice = HOUR.into());
    let mut c = Customer::with_policy("C-1", policy);
    let d = c.send_default("FraudConfirmed", t0());
    assert_eq!(types(&d.outputs), ["TerminationAccepted"]);
    assert_eq!(
        value(&d.outputs[0])["event"]["effectiveAt"],
        rfc(t0().plus(HOUR))
    );
    assert_eq!(c.phase(), "Pending");
}

#[test]
fn the_effective_timer_sends_three_instructions_stamped_with_its_due_time() {
    let mut c = Customer::pending_request("C-1");
    let due = t0().plus(days(14));
    // Not yet due one millisecond before.
    let d = c.tick(Timestamp::from_millis(due.millis() - 1));
    assert!(d.outputs.is_empty());
    assert_eq!(c.phase(), "Pending");
    // Noticed five days late: outputs still carry the due time.
    let mut late = Customer::pending_request("C-3");
    let d = late.tick(due.plus(days(5)));
    assert_eq!(d.effect, Effect::Timers);
    assert_eq!(
        types(&d.outputs),
        [
            "DismantleSolution",
            "DismantleSolution",
            "DismantleSolution",
            "TerminationStalled"
        ],
        "five days late, the 72 h deadline has passed too"
    );
    for r in &d.outputs[..3] {
        assert_eq!(value(r)["eventTime"], rfc(due));
        assert_eq!(value(r)["event"]["effectiveAt"], rfc(due));
    }
    assert_eq!(value(&d.outputs[3])["eventTime"], rfc(due.plus(HOUR * 72)));
    // Exactly at the due time.
    let d = c.fire_next_timer();
    assert_eq!(types(&d.outputs), ["DismantleSolution"; 3]);
    assert_eq!(c.phase(), "Dismantling");
    let Phase::Dismantling { dismantle, .. } = c.phase_ref() else {
        unreachable!()
    };
    assert_eq!(dismantle.started_at, due);
    assert_eq!(dismantle.deadline, due.plus(HOUR * 72));
}

#[test]
fn a_late_event_is_handled_at_the_customers_clock() {
    let mut c = Customer::new("C-1");
    let later = t0().plus(DAY);
    c.send("AllServicesTerminated", later, json!({}));
    // Stamped a day before the customer's clock: handled at the clock.
    let d = c.send("CustomerTerminationRequested", t0(), json!({}));
    let v = value(&d.outputs[0]);
    assert_eq!(v["eventTime"], rfc(later));
    assert_eq!(v["event"]["effectiveAt"], rfc(later.plus(days(14))));
}

#[test]
fn timers_due_before_an_event_fire_first() {
    let mut c = Customer::pending_request("C-1");
    let due = t0().plus(days(14));
    // The withdrawal comes after the effective time, without a tick in between.
    let d = c.send("CustomerTerminationWithdrawn", due.plus(HOUR), json!({}));
    assert_eq!(
        types(&d.outputs),
        [
            "DismantleSolution",
            "DismantleSolution",
            "DismantleSolution",
            "TerminationRejected"
        ]
    );
    assert_eq!(d.effect, Effect::Rejected(RejectionCode::TooLateToWithdraw));
    assert_eq!(value(&d.outputs[0])["eventTime"], rfc(due));
}

// ---- rejections -------------------------------------------------------------

#[test]
fn missing_evidence_rejects_deceased_dissolved_and_fraud() {
    for trigger in [
        "CustomerDeceased",
        "OrganizationDissolved",
        "FraudConfirmed",
    ] {
        let mut c = Customer::new("C-1");
        let d = c.send(trigger, t0(), json!({}));
        assert_rejected(&d, RejectionCode::MissingEvidence);
        assert_eq!(c.phase(), "Active", "{trigger}");
        assert_eq!(c.state.as_ref().unwrap().next_timer(), None);
    }
    // The wrong reference does not count either: fraud needs caseRef.
    let mut c = Customer::new("C-1");
    let d = c.send("FraudConfirmed", t0(), json!({"evidenceRef": "EV-1"}));
    assert_rejected(&d, RejectionCode::MissingEvidence);
}

#[test]
fn missing_approval_rejects_an_enterprise_decision() {
    let mut c = Customer::new("C-1");
    let d = c.send(
        "EnterpriseTerminationDecided",
        t0(),
        json!({"reason": "credit risk"}),
    );
    assert_rejected(&d, RejectionCode::MissingApproval);
    assert_eq!(c.phase(), "Active");
}

#[test]
fn references_are_optional_when_the_policy_says_so() {
    let policy = with_rule(|r| r.require_evidence = false);
    let mut c = Customer::with_policy("C-1", policy.clone());
    assert_eq!(
        c.send("FraudConfirmed", t0(), json!({})).effect,
        Effect::Applied
    );
    let mut c = Customer::with_policy("C-2", policy);
    let d = c.send("EnterpriseTerminationDecided", t0(), json!({"reason": "x"}));
    assert_eq!(d.effect, Effect::Applied);
}

#[test]
fn a_trigger_that_is_not_stronger_is_already_pending() {
    for (pending, trigger) in [
        ("request", "CustomerTerminationRequested"),
        ("request", "EnterpriseTerminationDecided"),
        ("enterprise", "CustomerTerminationRequested"),
        ("enterprise", "EnterpriseTerminationDecided"),
    ] {
        let mut c = if pending == "request" {
            Customer::pending_request("C-1")
        } else {
            Customer::pending_enterprise("C-1")
        };
        let before = c.state.clone().unwrap().phase;
        let d = c.send_default(trigger, t0().plus(HOUR));
        assert_rejected(&d, RejectionCode::AlreadyPending);
        assert_eq!(
            c.state.as_ref().unwrap().phase,
            before,
            "{pending} + {trigger}"
        );
    }
}

#[test]
fn a_strong_trigger_is_already_pending_behind_another_strong_one() {
    let policy = with_rule(|r| r.immediate_notice = HOUR.into());
    let mut c = Customer::with_policy("C-1", policy);
    c.send_default("CustomerDeceased", t0());
    let d = c.send_default("FraudConfirmed", t0().plus(Duration::from_secs(60)));
    assert_rejected(&d, RejectionCode::AlreadyPending);
}

#[test]
fn any_trigger_while_dismantling_or_terminated_is_already_terminated() {
    for trigger in [
        "CustomerTerminationRequested",
        "CustomerDeceased",
        "OrganizationDissolved",
        "FraudConfirmed",
        "EnterpriseTerminationDecided",
    ] {
        let mut c = Customer::dismantling("C-1");
        let at = c.now.plus(HOUR);
        assert_rejected(
            &c.send_default(trigger, at),
            RejectionCode::AlreadyTerminated,
        );
        assert_eq!(c.phase(), "Dismantling");
        let mut c = Customer::terminated_by("C-2", "CustomerTerminationRequested");
        let at = c.now.plus(HOUR);
        assert_rejected(
            &c.send_default(trigger, at),
            RejectionCode::AlreadyTerminated,
        );
        assert_eq!(c.phase(), "Terminated");
    }
}

#[test]
fn withdrawing_or_revoking_nothing_is_nothing_to_withdraw() {
    for event in ["CustomerTerminationWithdrawn", "TerminationDecisionRevoked"] {
        let mut c = Customer::new("C-1");
        assert_rejected(
            &c.send(event, t0(), json!({})),
            RejectionCode::NothingToWithdraw,
        );
        assert_eq!(c.phase(), "Active");
    }
}

#[test]
fn withdrawing_after_dismantling_started_is_too_late() {
    for event in ["CustomerTerminationWithdrawn", "TerminationDecisionRevoked"] {
        let mut c = Customer::dismantling("C-1");
        let at = c.now.plus(HOUR);
        assert_rejected(
            &c.send(event, at, json!({})),
            RejectionCode::TooLateToWithdraw,
        );
        assert_eq!(c.phase(), "Dismantling");
        let mut c = Customer::terminated_by("C-2", "CustomerTerminationRequested");
        let at = c.now.plus(HOUR);
        assert_rejected(
            &c.send(event, at, json!({})),
            RejectionCode::TooLateToWithdraw,
        );
        assert_eq!(c.phase(), "Terminated");
    }
}

#[test]
fn one_party_cannot_withdraw_the_others_termination() {
    let mut c = Customer::pending_enterprise("C-1");
    let d = c.send("CustomerTerminationWithdrawn", t0().plus(HOUR), json!({}));
    assert_rejected(&d, RejectionCode::NotWithdrawable);
    assert_eq!(c.phase(), "Pending");
    let mut c = Customer::pending_request("C-2");
    let d = c.send("TerminationDecisionRevoked", t0().plus(HOUR), json!({}));
    assert_rejected(&d, RejectionCode::NotWithdrawable);
    assert_eq!(c.phase(), "Pending");
    // A death cannot be revoked nor withdrawn (only pending with a notice).
    let policy = with_rule(|r| r.immediate_notice = HOUR.into());
    for event in ["CustomerTerminationWithdrawn", "TerminationDecisionRevoked"] {
        let mut c = Customer::with_policy("C-3", policy.clone());
        c.send_default("CustomerDeceased", t0());
        let d = c.send(event, t0().plus(Duration::from_secs(60)), json!({}));
        assert_rejected(&d, RejectionCode::NotWithdrawable);
    }
}

#[test]
fn reestablishment_is_not_allowed_after_fraud_enterprise_decision_or_death() {
    for trigger in [
        "FraudConfirmed",
        "EnterpriseTerminationDecided",
        "CustomerDeceased",
    ] {
        let mut c = Customer::terminated_by("C-1", trigger);
        let Phase::Terminated {
            reestablishable, ..
        } = c.phase_ref()
        else {
            unreachable!()
        };
        assert!(!reestablishable, "{trigger}");
        let at = c.now.plus(DAY);
        let d = c.send("RelationshipReestablishmentRequested", at, json!({}));
        assert_rejected(&d, RejectionCode::ReestablishmentNotAllowed);
        assert_eq!(c.phase(), "Terminated");
    }
}

#[test]
fn reestablishment_is_not_allowed_unless_terminated() {
    let mut active = Customer::new("C-1");
    let mut pending = Customer::pending_request("C-2");
    let mut dismantling = Customer::dismantling("C-3");
    for c in [&mut active, &mut pending, &mut dismantling] {
        let at = c.now.max(t0()).plus(HOUR);
        // A customer never seen before is Active (its state now remembers the id).
        let before = c.phase().replace("none", "Active");
        let d = c.send("RelationshipReestablishmentRequested", at, json!({}));
        assert_rejected(&d, RejectionCode::ReestablishmentNotAllowed);
        assert_eq!(c.phase(), before);
    }
}

#[test]
fn everything_after_anonymisation_is_refused_as_records_anonymized() {
    let asks: [(&str, Value); 10] = [
        ("CustomerTerminationRequested", json!({})),
        ("CustomerDeceased", json!({"evidenceRef": "EV-1"})),
        ("CustomerDeceased", json!({})),
        ("OrganizationDissolved", json!({"evidenceRef": "EV-1"})),
        ("FraudConfirmed", json!({})),
        ("EnterpriseTerminationDecided", json!({"reason": "x"})),
        ("CustomerTerminationWithdrawn", json!({})),
        ("TerminationDecisionRevoked", json!({})),
        ("RelationshipReestablishmentRequested", json!({})),
        ("LegalHoldPlaced", json!({"holdRef": "LH-9"})),
    ];
    for (event, body) in asks
        .into_iter()
        .chain([("LegalHoldReleased", json!({"holdRef": "LH-9"}))])
    {
        let mut c = Customer::anonymized("C-1");
        let at = c.now.plus(HOUR);
        let d = c.send(event, at, body.clone());
        assert_rejected(&d, RejectionCode::RecordsAnonymized);
        assert_eq!(c.phase(), "Anonymized", "{event} {body}");
    }
}

#[test]
fn releasing_a_hold_that_is_not_in_place_is_an_unknown_legal_hold() {
    let mut c = Customer::new("C-1");
    let d = c.send("LegalHoldReleased", t0(), json!({"holdRef": "LH-1"}));
    assert_rejected(&d, RejectionCode::UnknownLegalHold);
    let mut c = Customer::terminated_by("C-2", "CustomerTerminationRequested");
    let at = c.now.plus(HOUR);
    c.send("LegalHoldPlaced", at, json!({"holdRef": "LH-1"}));
    let d = c.send("LegalHoldReleased", at, json!({"holdRef": "LH-2"}));
    assert_rejected(&d, RejectionCode::UnknownLegalHold);
    assert_eq!(c.state.as_ref().unwrap().holds, ["LH-1"]);
}

#[test]
fn every_rejection_code_is_reachable() {
    // The tests above cover each code; this one keeps the list honest.
    let mut seen = std::collections::BTreeSet::new();
    let mut record = |d: terminus::domain::Decision| {
        if let Effect::Rejected(code) = d.effect {
            seen.insert(code);
        }
    };
    record(Customer::new("a").send("CustomerDeceased", t0(), json!({})));
    record(Customer::new("b").send("EnterpriseTerminationDecided", t0(), json!({"reason": "x"})));
    record(Customer::pending_request("c").send_default("CustomerTerminationRequested", t0()));
    record(Customer::dismantling("d").send_default("FraudConfirmed", t0()));
    record(Customer::new("e").send("CustomerTerminationWithdrawn", t0(), json!({})));
    record(Customer::dismantling("f").send("CustomerTerminationWithdrawn", t0(), json!({})));
    record(Customer::pending_request("g").send("TerminationDecisionRevoked", t0(), json!({})));
    record(Customer::new("h").send("RelationshipReestablishmentRequested", t0(), json!({})));
    record(Customer::anonymized("i").send_default("CustomerTerminationRequested", t0()));
    record(Customer::new("j").send_default("LegalHoldReleased", t0()));
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), RejectionCode::ALL);
}

// ---- supersession -----------------------------------------------------------

#[test]
fn a_stronger_trigger_supersedes_a_pending_request_and_dismantles_at_once() {
    for (trigger, category, notify) in [
        ("CustomerDeceased", "customerDeceased", true),
        ("OrganizationDissolved", "organizationDissolved", true),
        ("FraudConfirmed", "fraud", false),
    ] {
        let mut c = Customer::new("C-1");
        c.send_as("req-1", "CustomerTerminationRequested", t0(), json!({}));
        let at = t0().plus(days(2));
        let d = c.send_as("strong-1", trigger, at, default_body(trigger));
        assert_eq!(d.effect, Effect::Applied);
        assert_eq!(
            types(&d.outputs),
            [
                "TerminationAccepted",
                "DismantleSolution",
                "DismantleSolution",
                "DismantleSolution"
            ]
        );
        let tid = ids::termination_id("C-1", "req-1").to_string();
        let accepted = value(&d.outputs[0]);
        assert_eq!(
            accepted["event"]["terminationId"], tid,
            "downstream keeps one id"
        );
        assert_eq!(accepted["event"]["category"], category);
        assert_eq!(accepted["event"]["effectiveAt"], rfc(at));
        assert_eq!(accepted["event"]["notifyCustomer"], notify);
        assert_eq!(accepted["causationId"], "strong-1");
        for r in &d.outputs[1..] {
            let v = value(r);
            assert_eq!(v["event"]["terminationId"], tid);
            assert_eq!(v["event"]["category"], category);
            assert_eq!(v["eventTime"], rfc(at));
            assert_eq!(v["causationId"], "strong-1");
        }
        assert_eq!(c.phase(), "Dismantling");
    }
}

#[test]
fn a_stronger_trigger_supersedes_a_pending_enterprise_decision() {
    let mut c = Customer::pending_enterprise("C-1");
    let tid = c.termination_id();
    let d = c.send_default("OrganizationDissolved", t0().plus(DAY));
    assert_eq!(types(&d.outputs)[0], "TerminationAccepted");
    assert_eq!(value(&d.outputs[0])["event"]["terminationId"], tid);
    assert_eq!(
        value(&d.outputs[0])["event"]["category"],
        "organizationDissolved"
    );
    assert_eq!(c.phase(), "Dismantling");
}

#[test]
fn a_strong_trigger_without_evidence_does_not_supersede() {
    let mut c = Customer::pending_request("C-1");
    let d = c.send("FraudConfirmed", t0().plus(DAY), json!({}));
    assert_rejected(&d, RejectionCode::MissingEvidence);
    let Phase::Pending { termination } = c.phase_ref() else {
        unreachable!()
    };
    assert_eq!(termination.category, Category::CustomerRequest);
}

#[test]
fn fraud_superseding_an_erasure_request_keeps_full_retention_and_forbids_reestablishment() {
    let mut c = Customer::new("C-1");
    c.send(
        "CustomerTerminationRequested",
        t0(),
        json!({"erasureRequested": true}),
    );
    c.send_default("FraudConfirmed", t0().plus(DAY));
    let done = t0().plus(days(2));
    let d = c.complete_all(done);
    let v = value(&d.outputs[0]);
    assert_eq!(v["event"]["category"], "fraud");
    assert_eq!(
        v["event"]["retainRecordsUntil"],
        rfc(done.plus_period(Period::years(7)))
    );
    assert_eq!(v["event"]["reestablishable"], false);
}

// ---- withdrawal and revocation --------------------------------------------

#[test]
fn a_customer_withdraws_a_pending_request() {
    let mut c = Customer::pending_request("C-1");
    let tid = c.termination_id();
    let d = c.send(
        "CustomerTerminationWithdrawn",
        t0().plus(days(3)),
        json!({}),
    );
    assert_eq!(d.effect, Effect::Applied);
    assert_eq!(types(&d.outputs), ["TerminationWithdrawn"]);
    assert_eq!(value(&d.outputs[0])["event"]["terminationId"], tid);
    assert_eq!(c.phase(), "Active");
    assert_eq!(c.state.as_ref().unwrap().next_timer(), None);
    // The old effective time passes quietly.
    assert!(c.tick(t0().plus(days(60))).outputs.is_empty());
    // A new request is a new termination.
    c.send(
        "CustomerTerminationRequested",
        t0().plus(days(61)),
        json!({}),
    );
    assert_ne!(c.termination_id(), tid);
}

#[test]
fn an_enterprise_decision_or_fraud_is_revoked_while_pending() {
    let mut c = Customer::pending_enterprise("C-1");
    let d = c.send("TerminationDecisionRevoked", t0().plus(DAY), json!({}));
    assert_eq!(types(&d.outputs), ["TerminationWithdrawn"]);
    assert_eq!(c.phase(), "Active");
    let policy = with_rule(|r| r.immediate_notice = HOUR.into());
    let mut c = Customer::with_policy("C-2", policy);
    c.send_default("FraudConfirmed", t0());
    let d = c.send(
        "TerminationDecisionRevoked",
        t0().plus(Duration::from_secs(60)),
        json!({}),
    );
    assert_eq!(types(&d.outputs), ["TerminationWithdrawn"]);
    assert_eq!(c.phase(), "Active");
}

// ---- dismantling outcomes ---------------------------------------------------

#[test]
fn three_completions_terminate_at_the_last_one() {
    let mut c = Customer::dismantling("C-1");
    let tid = c.termination_id();
    let start = c.now;
    let d1 = c.complete("fulfillment", start.plus(HOUR));
    let d2 = c.complete("billing", start.plus(HOUR * 5));
    assert!(d1.outputs.is_empty() && d2.outputs.is_empty());
    assert_eq!((d1.effect, d2.effect), (Effect::Applied, Effect::Applied));
    assert_eq!(c.phase(), "Dismantling");
    let last = start.plus(HOUR * 30);
    let d = c.complete("assurance", last);
    assert_eq!(types(&d.outputs), ["RelationshipTerminated"]);
    assert_eq!(d.outputs[0].topic, Topic::Terminated);
    let v = value(&d.outputs[0]);
    assert_eq!(v["eventTime"], rfc(last));
    assert_eq!(v["event"]["terminationId"], tid);
    assert_eq!(v["event"]["category"], "customerRequest");
    assert_eq!(v["event"]["terminatedAt"], rfc(last));
    assert_eq!(
        v["event"]["retainRecordsUntil"],
        rfc(last.plus_period(Period::years(7)))
    );
    assert_eq!(v["event"]["reestablishable"], true);
    assert_eq!(v["event"]["erasureRequested"], false);
    assert_eq!(c.phase(), "Terminated");
    assert_eq!(
        c.state.as_ref().unwrap().next_timer(),
        Some((last.plus_period(Period::years(7)), TimerKind::Retention))
    );
}

#[test]
fn erasure_shortens_retention_to_180_days() {
    let mut c = Customer::new("C-1");
    c.send(
        "CustomerTerminationRequested",
        t0(),
        json!({"erasureRequested": true}),
    );
    c.fire_next_timer();
    let done = c.now.plus(DAY);
    let d = c.complete_all(done);
    let v = value(&d.outputs[0]);
    assert_eq!(v["event"]["retainRecordsUntil"], rfc(done.plus(days(180))));
    assert_eq!(v["event"]["erasureRequested"], true);
}

#[test]
fn retention_is_never_shortened_for_fraud() {
    let policy = Policy::default();
    let rule = policy.default_rule();
    assert_eq!(rule.retention_for(Category::Fraud, true), Period::years(7));
    assert_eq!(
        rule.retention_for(Category::CustomerRequest, true),
        Period::days(180)
    );
    assert_eq!(
        rule.retention_for(Category::CustomerDeceased, false),
        Period::years(7)
    );
    let c = Customer::terminated_by("C-1", "FraudConfirmed");
    let Phase::Terminated {
        terminated_at,
        retain_until,
        ..
    } = c.phase_ref()
    else {
        unreachable!()
    };
    assert_eq!(*retain_until, terminated_at.plus_period(Period::years(7)));
}

#[test]
fn reestablishable_follows_the_category() {
    for (trigger, expected) in [
        ("CustomerTerminationRequested", true),
        ("OrganizationDissolved", true),
        ("CustomerDeceased", false),
        ("FraudConfirmed", false),
        ("EnterpriseTerminationDecided", false),
    ] {
        let c = Customer::terminated_by("C-1", trigger);
        let terminated = c.log.last().unwrap();
        assert_eq!(terminated.envelope.event_type, "RelationshipTerminated");
        assert_eq!(
            value(terminated)["event"]["reestablishable"],
            expected,
            "{trigger}"
        );
    }
}

#[test]
fn a_retryable_failure_reissues_the_instruction_up_to_the_limit_then_stalls_once() {
    let mut c = Customer::dismantling("C-1");
    let tid = c.termination_id();
    let effective = c.now;
    for attempt in 2..=5 {
        let at = c.now.plus(HOUR);
        let d = c.fail("billing", true, at);
        assert_eq!(d.effect, Effect::Applied);
        assert_eq!(
            types(&d.outputs),
            ["DismantleSolution"],
            "attempt {attempt}"
        );
        let v = value(&d.outputs[0]);
        assert_eq!(v["event"]["vertical"], "billing");
        assert_eq!(v["event"]["attempt"], attempt);
        assert_eq!(v["event"]["terminationId"], tid);
        assert_eq!(v["event"]["effectiveAt"], rfc(effective));
        assert_eq!(v["eventTime"], rfc(at));
    }
    // The fifth attempt fails too: out of attempts.
    let d = c.fail("billing", true, c.now.plus(HOUR));
    assert_eq!(types(&d.outputs), ["TerminationStalled"]);
    let v = value(&d.outputs[0]);
    assert_eq!(v["event"]["terminationId"], tid);
    assert_eq!(
        v["event"]["awaiting"],
        json!(["billing", "fulfillment", "assurance"])
    );
    // Once: a further failure of that vertical is settled, another vertical's
    // final failure raises nothing new, and the deadline is disarmed.
    let d = c.fail("billing", true, c.now.plus(HOUR));
    assert_eq!(d.effect, Effect::Ignored(IgnoreReason::VerticalSettled));
    assert!(d.outputs.is_empty());
    let d = c.fail("fulfillment", false, c.now.plus(HOUR));
    assert_eq!(d.effect, Effect::Applied);
    assert!(d.outputs.is_empty());
    assert_eq!(c.state.as_ref().unwrap().next_timer(), None);
    assert!(c.tick(c.now.plus(days(30))).outputs.is_empty());
}

#[test]
fn max_attempts_is_configurable() {
    let policy = with_rule(|r| r.max_attempts = 2);
    let mut c = Customer::with_policy("C-1", policy);
    c.send_default("FraudConfirmed", t0());
    assert_eq!(
        types(&c.fail("assurance", true, t0()).outputs),
        ["DismantleSolution"]
    );
    assert_eq!(
        types(&c.fail("assurance", true, t0()).outputs),
        ["TerminationStalled"]
    );
}

#[test]
fn a_non_retryable_failure_stalls_once() {
    let mut c = Customer::dismantling("C-1");
    let at = c.now.plus(HOUR);
    c.complete("billing", at);
    let d = c.fail("fulfillment", false, at);
    assert_eq!(types(&d.outputs), ["TerminationStalled"]);
    assert_eq!(
        value(&d.outputs[0])["event"]["awaiting"],
        json!(["fulfillment", "assurance"])
    );
    assert_eq!(value(&d.outputs[0])["eventTime"], rfc(at));
    let d = c.fail("assurance", false, at);
    assert!(d.outputs.is_empty());
    assert_eq!(c.phase(), "Dismantling");
}

#[test]
fn a_completion_after_a_final_failure_still_counts() {
    let mut c = Customer::dismantling("C-1");
    let at = c.now.plus(HOUR);
    c.fail("billing", false, at);
    c.complete("fulfillment", at);
    c.complete("assurance", at);
    let d = c.complete("billing", at.plus(days(5)));
    assert_eq!(types(&d.outputs), ["RelationshipTerminated"]);
    assert_eq!(c.phase(), "Terminated");
}

#[test]
fn no_outcome_by_the_deadline_stalls_once_and_not_twice() {
    let mut c = Customer::dismantling("C-1");
    let start = c.now;
    c.complete("assurance", start.plus(HOUR));
    let deadline = start.plus(HOUR * 72);
    assert!(
        c.tick(Timestamp::from_millis(deadline.millis() - 1))
            .outputs
            .is_empty()
    );
    let d = c.tick(deadline.plus(days(1)));
    assert_eq!(d.effect, Effect::Timers);
    assert_eq!(types(&d.outputs), ["TerminationStalled"]);
    let v = value(&d.outputs[0]);
    assert_eq!(
        v["eventTime"],
        rfc(deadline),
        "timer outputs carry the due time"
    );
    assert_eq!(v["event"]["awaiting"], json!(["billing", "fulfillment"]));
    assert_eq!(c.state.as_ref().unwrap().next_timer(), None);
    assert!(c.tick(deadline.plus(days(100))).outputs.is_empty());
    // A final failure after the deadline's stall does not stall again.
    let d = c.fail("billing", false, deadline.plus(days(101)));
    assert!(d.outputs.is_empty());
    // Late completions still finish the termination.
    c.complete("billing", deadline.plus(days(102)));
    let d = c.complete("fulfillment", deadline.plus(days(102)));
    assert_eq!(types(&d.outputs), ["RelationshipTerminated"]);
}

#[test]
fn outcomes_for_unknown_or_finished_terminations_are_ignored() {
    let other = ids::termination_id("C-1", "someone-else").to_string();
    // Unknown termination while dismantling.
    let mut c = Customer::dismantling("C-1");
    let before = c.state.clone();
    let d = c.send(
        "DismantleCompleted",
        c.now.plus(HOUR),
        json!({"terminationId": other, "vertical": "billing"}),
    );
    assert_eq!(d.effect, Effect::Ignored(IgnoreReason::UnknownTermination));
    assert!(d.outputs.is_empty());
    assert_only_remembered(&before, &c.state);
    // Nothing being dismantled: never seen, active, pending, terminated, anonymised.
    let mut fresh = Customer::new("C-2");
    let d = fresh.send(
        "DismantleFailed",
        t0(),
        json!({"terminationId": other, "vertical": "billing", "reason": "x", "retryable": true}),
    );
    assert_eq!(d.effect, Effect::Ignored(IgnoreReason::NotDismantling));
    assert_eq!(d.state, None, "an ignored outcome creates no state");
    for mut c in [
        Customer::pending_request("C-3"),
        Customer::terminated_by("C-4", "FraudConfirmed"),
        Customer::anonymized("C-5"),
    ] {
        let tid = c.termination_id();
        let before = c.state.clone();
        let d = c.send(
            "DismantleCompleted",
            c.now.plus(HOUR),
            json!({"terminationId": tid, "vertical": "billing"}),
        );
        assert_eq!(d.effect, Effect::Ignored(IgnoreReason::NotDismantling));
        assert!(d.outputs.is_empty() && d.changed);
        assert_only_remembered(&before, &c.state);
    }
    // A vertical already completed.
    let mut c = Customer::dismantling("C-6");
    c.complete("billing", c.now.plus(HOUR));
    let d = c.complete("billing", c.now.plus(HOUR));
    assert_eq!(d.effect, Effect::Ignored(IgnoreReason::VerticalSettled));
    assert!(d.outputs.is_empty());
}

/// An ignored outcome changes nothing but the customer's memory of event ids:
/// its id is remembered, so a redelivery is a duplicate.
fn assert_only_remembered(before: &Option<CustomerState>, after: &Option<CustomerState>) {
    let (Some(before), Some(after)) = (before, after) else {
        panic!("a customer with a record keeps it: {before:?} → {after:?}");
    };
    assert_eq!(before.phase, after.phase);
    assert_eq!(before.clock, after.clock);
    assert_eq!(before.holds, after.holds);
    assert_eq!(after.seen.len(), (before.seen.len() + 1).min(32));
}

#[test]
fn an_outcome_ignored_while_pending_is_a_duplicate_once_dismantling_started() {
    let mut c = Customer::pending_request("C-7");
    let tid = c.termination_id();
    let effective = c.now.plus(days(14));
    let early = c.send_as(
        "out-1",
        "DismantleCompleted",
        c.now.plus(HOUR),
        json!({"terminationId": tid, "vertical": "billing"}),
    );
    assert_eq!(early.effect, Effect::Ignored(IgnoreReason::NotDismantling));
    c.tick(effective);
    let again = c.send_as(
        "out-1",
        "DismantleCompleted",
        effective.plus(HOUR),
        json!({"terminationId": tid, "vertical": "billing"}),
    );
    assert_eq!(again.effect, Effect::Duplicate, "not a completion");
}

// ---- retention, legal holds, re-establishment, forgetting --------------------

#[test]
fn the_retention_timer_anonymises_at_its_due_time() {
    let mut c = Customer::terminated_by("C-1", "CustomerTerminationRequested");
    let tid = c.termination_id();
    let Phase::Terminated { retain_until, .. } = c.phase_ref().clone() else {
        unreachable!()
    };
    // Noticed a week late.
    let d = c.tick(retain_until.plus(days(7)));
    assert_eq!(types(&d.outputs), ["CustomerRecordsAnonymized"]);
    let v = value(&d.outputs[0]);
    assert_eq!(v["eventTime"], rfc(retain_until));
    assert_eq!(v["event"]["terminationId"], tid);
    let keys: Vec<&String> = v["event"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["customerId", "terminationId"], "only ids");
    assert_eq!(c.phase(), "Anonymized");
    let state = c.state.as_ref().unwrap();
    assert_eq!(state.services_terminated_at, None);
    assert_eq!(
        state.next_timer(),
        Some((retain_until.plus(days(30)), TimerKind::Forget))
    );
}

#[test]
fn a_legal_hold_blocks_anonymisation_until_its_release() {
    let mut c = Customer::terminated_by("C-1", "CustomerTerminationRequested");
    let Phase::Terminated { retain_until, .. } = c.phase_ref().clone() else {
        unreachable!()
    };
    let d = c.send(
        "LegalHoldPlaced",
        c.now.plus(DAY),
        json!({"holdRef": "LH-1"}),
    );
    assert_eq!(d.effect, Effect::Applied);
    assert!(d.outputs.is_empty());
    c.send(
        "LegalHoldPlaced",
        c.now.plus(DAY),
        json!({"holdRef": "LH-2"}),
    );
    assert_eq!(c.state.as_ref().unwrap().next_timer(), None);
    assert!(c.tick(retain_until.plus(days(400))).outputs.is_empty());
    assert_eq!(c.phase(), "Terminated");
    let first = retain_until.plus(days(500));
    let d = c.send("LegalHoldReleased", first, json!({"holdRef": "LH-2"}));
    assert!(d.outputs.is_empty(), "one hold is still in place");
    let release = retain_until.plus(days(600));
    let d = c.send("LegalHoldReleased", release, json!({"holdRef": "LH-1"}));
    assert_eq!(d.effect, Effect::Applied);
    assert_eq!(types(&d.outputs), ["CustomerRecordsAnonymized"]);
    assert_eq!(
        value(&d.outputs[0])["eventTime"],
        rfc(release),
        "anonymised at release, not back-dated"
    );
    assert_eq!(c.phase(), "Anonymized");
}

#[test]
fn a_hold_placed_before_termination_also_blocks_and_an_early_release_changes_nothing() {
    let mut c = Customer::dismantling("C-1");
    c.send(
        "LegalHoldPlaced",
        c.now.plus(HOUR),
        json!({"holdRef": "LH-1"}),
    );
    let done = c.now.plus(HOUR);
    c.complete_all(done);
    assert_eq!(c.phase(), "Terminated");
    assert_eq!(c.state.as_ref().unwrap().next_timer(), None);
    // Released long before the retention date: anonymised at the retention date.
    c.send(
        "LegalHoldReleased",
        done.plus(DAY),
        json!({"holdRef": "LH-1"}),
    );
    let until = done.plus_period(Period::years(7));
    assert_eq!(
        c.state.as_ref().unwrap().next_timer(),
        Some((until, TimerKind::Retention))
    );
    let d = c.tick(until);
    assert_eq!(value(&d.outputs[0])["eventTime"], rfc(until));
}

#[test]
fn a_relationship_is_reestablished_inside_its_retention_window() {
    let mut c = Customer::terminated_by("C-1", "CustomerTerminationRequested");
    let tid = c.termination_id();
    let at = c.now.plus(days(365));
    let d = c.send("RelationshipReestablishmentRequested", at, json!({}));
    assert_eq!(d.effect, Effect::Applied);
    assert_eq!(types(&d.outputs), ["RelationshipReestablished"]);
    assert_eq!(value(&d.outputs[0])["event"]["previousTerminationId"], tid);
    assert_eq!(value(&d.outputs[0])["eventTime"], rfc(at));
    assert_eq!(c.phase(), "Active");
    assert_eq!(
        c.state.as_ref().unwrap().next_timer(),
        None,
        "no anonymisation any more"
    );
    // A later request starts a new termination.
    c.send("CustomerTerminationRequested", at.plus(DAY), json!({}));
    assert_ne!(c.termination_id(), tid);
    // Dissolved organisations may come back too.
    let mut c = Customer::terminated_by("C-2", "OrganizationDissolved");
    let at = c.now.plus(DAY);
    let d = c.send("RelationshipReestablishmentRequested", at, json!({}));
    assert_eq!(types(&d.outputs), ["RelationshipReestablished"]);
}

#[test]
fn the_forget_timer_leaves_no_state() {
    let mut c = Customer::anonymized("C-1");
    let Phase::Anonymized { forget_at, .. } = c.phase_ref().clone() else {
        unreachable!()
    };
    let d = c.tick(forget_at);
    assert_eq!(d.effect, Effect::Timers);
    assert!(d.outputs.is_empty());
    assert!(d.changed, "a tombstone must be written");
    assert_eq!(d.state, None);
}

#[test]
fn an_event_after_the_forget_time_meets_a_new_customer_with_or_without_a_tick() {
    let anonymized = Customer::anonymized("C-1");
    let Phase::Anonymized { forget_at, .. } = anonymized.phase_ref().clone() else {
        unreachable!()
    };
    let at = forget_at.plus(DAY);
    // The simulator ticks first, then handles the event.
    let mut ticked = Customer::anonymized("C-1");
    ticked.tick(at);
    let a = ticked.send_as("back-1", "CustomerTerminationRequested", at, json!({}));
    // The worker hands the event straight to decide.
    let mut direct = Customer::anonymized("C-1");
    let b = direct.send_as("back-1", "CustomerTerminationRequested", at, json!({}));
    assert_eq!(a.effect, Effect::Applied);
    assert_eq!(a.outputs, b.outputs);
    assert_eq!(a.state, b.state);
    assert_eq!(direct.phase(), "Pending");
    // An ignored outcome at that time leaves the tombstone.
    let mut ignored = Customer::anonymized("C-1");
    let tid = ignored.termination_id();
    let d = ignored.send(
        "DismantleCompleted",
        at,
        json!({"terminationId": tid, "vertical": "billing"}),
    );
    assert_eq!(d.effect, Effect::Ignored(IgnoreReason::NotDismantling));
    assert_eq!(d.state, None);
    assert!(d.changed);
}

// ---- duplicates, notification, services, ids -------------------------------

#[test]
fn a_duplicate_event_id_changes_nothing_and_emits_nothing() {
    for (event, body) in [
        ("CustomerTerminationRequested", json!({})),
        ("CustomerDeceased", json!({})),
        ("FraudConfirmed", json!({"caseRef": "FR-1"})),
        ("LegalHoldPlaced", json!({"holdRef": "LH-1"})),
    ] {
        let mut c = Customer::new("C-1");
        c.send_as("dup-1", event, t0(), body.clone());
        let before = c.state.clone();
        // Same id, even with another time or body.
        let d = c.send_as("dup-1", event, t0().plus(HOUR), json!({"holdRef": "LH-2"}));
        assert_eq!(d.effect, Effect::Duplicate, "{event}");
        assert!(d.outputs.is_empty());
        assert!(!d.changed);
        assert_eq!(c.state, before);
    }
    // Duplicates of completions do not tick twice, nor terminate twice.
    let mut c = Customer::dismantling("C-2");
    let tid = c.termination_id();
    for v in VERTICALS {
        let body = json!({"terminationId": tid, "vertical": v});
        c.send_as(&format!("done-{v}"), "DismantleCompleted", c.now, body);
    }
    assert_eq!(c.phase(), "Terminated");
    let d = c.send_as(
        "done-assurance",
        "DismantleCompleted",
        c.now,
        json!({"terminationId": tid, "vertical": "assurance"}),
    );
    assert_eq!(d.effect, Effect::Duplicate);
    assert!(d.outputs.is_empty());
}

#[test]
fn a_duplicate_still_lets_due_timers_fire_as_a_tick_would() {
    let mut direct = Customer::new("C-1");
    direct.send_as("req-1", "CustomerTerminationRequested", t0(), json!({}));
    let mut ticked = Customer::new("C-1");
    ticked.send_as("req-1", "CustomerTerminationRequested", t0(), json!({}));
    let later = t0().plus(days(15));
    let t = ticked.tick(later);
    let dup = ticked.send_as("req-1", "CustomerTerminationRequested", later, json!({}));
    assert!(dup.outputs.is_empty());
    let d = direct.send_as("req-1", "CustomerTerminationRequested", later, json!({}));
    assert_eq!(d.effect, Effect::Duplicate);
    assert_eq!(
        d.outputs, t.outputs,
        "the due effective timer fires either way"
    );
    assert_eq!(direct.state, ticked.state);
}

#[test]
fn the_dedup_memory_is_bounded_by_the_window() {
    let mut policy = Policy::default();
    policy.dedup_window = 2;
    let mut c = Customer::with_policy("C-1", policy);
    c.send_as("a", "AllServicesTerminated", t0(), json!({}));
    c.send_as("b", "AllServicesTerminated", t0(), json!({}));
    assert_eq!(
        c.send_as("a", "AllServicesTerminated", t0(), json!({}))
            .effect,
        Effect::Duplicate
    );
    c.send_as("c", "AllServicesTerminated", t0(), json!({}));
    assert_eq!(c.state.as_ref().unwrap().seen.len(), 2);
    assert_eq!(
        c.send_as("a", "AllServicesTerminated", t0(), json!({}))
            .effect,
        Effect::Applied
    );
}

#[test]
fn fraud_is_never_announced_to_the_customer() {
    for trigger in [
        "CustomerTerminationRequested",
        "CustomerDeceased",
        "OrganizationDissolved",
        "FraudConfirmed",
        "EnterpriseTerminationDecided",
    ] {
        let mut c = Customer::new("C-1");
        let d = c.send_default(trigger, t0());
        assert_eq!(
            value(&d.outputs[0])["event"]["notifyCustomer"],
            trigger != "FraudConfirmed",
            "{trigger}"
        );
    }
}

#[test]
fn all_services_terminated_never_terminates() {
    let mut active = Customer::new("C-1");
    let d = active.send("AllServicesTerminated", t0(), json!({}));
    assert_eq!(d.effect, Effect::Applied);
    assert!(d.outputs.is_empty());
    assert_eq!(active.phase(), "Active");
    assert_eq!(
        active.state.as_ref().unwrap().services_terminated_at,
        Some(t0())
    );
    assert_eq!(active.state.as_ref().unwrap().next_timer(), None);
    let mut pending = Customer::pending_request("C-2");
    assert!(
        pending
            .send("AllServicesTerminated", t0().plus(HOUR), json!({}))
            .outputs
            .is_empty()
    );
    assert_eq!(pending.phase(), "Pending");
    let mut dismantling = Customer::dismantling("C-3");
    let at = dismantling.now.plus(HOUR);
    assert!(
        dismantling
            .send("AllServicesTerminated", at, json!({}))
            .outputs
            .is_empty()
    );
    assert_eq!(dismantling.phase(), "Dismantling");
    assert!(
        !dismantling
            .log
            .iter()
            .any(|r| r.envelope.event_type == "RelationshipTerminated")
    );
}

fn journey() -> Vec<terminus::contract::OutputRecord> {
    let mut c = Customer::new("C-1");
    c.send_as(
        "req-1",
        "CustomerTerminationRequested",
        t0(),
        json!({"erasureRequested": true}),
    );
    c.fire_next_timer();
    let at = c.now.plus(HOUR);
    c.fail("billing", true, at);
    c.complete_all(at.plus(HOUR));
    c.fire_next_timer();
    c.log
}

#[test]
fn ids_are_deterministic() {
    let a = journey();
    let b = journey();
    assert_eq!(a, b);
    let bytes = |log: &[terminus::contract::OutputRecord]| -> Vec<Vec<u8>> {
        log.iter()
            .map(terminus::contract::OutputRecord::to_json)
            .collect()
    };
    assert_eq!(bytes(&a), bytes(&b));
    // Every event id is unique, and they are the documented UUIDv5 derivations.
    let ids: std::collections::BTreeSet<_> = a.iter().map(|r| r.envelope.event_id).collect();
    assert_eq!(ids.len(), a.len());
    let tid = ids::termination_id("C-1", "req-1");
    assert_eq!(
        a[0].envelope.event_id,
        Cause::Event {
            customer_id: "C-1".into(),
            event_id: "req-1".into()
        }
        .output_id(0)
    );
    let due = t0().plus(days(14));
    let timer = Cause::Timer {
        termination: tid,
        kind: TimerKind::Effective,
        due,
    };
    for (i, r) in a[1..4].iter().enumerate() {
        assert_eq!(r.envelope.event_id, timer.output_id(i));
        assert_eq!(r.envelope.event.termination_id(), Some(tid));
    }
    assert_eq!(tid, uuid_v5_of("termination:3:C-1:req-1"));
    assert_ne!(ids::termination_id("C-1", "req-2"), tid);
}

fn uuid_v5_of(name: &str) -> uuid::Uuid {
    let ns = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"urn:terminus:v1");
    uuid::Uuid::new_v5(&ns, name.as_bytes())
}

#[test]
fn timer_outputs_carry_the_cause_of_their_termination() {
    // journey(): request, effective timer (3 instructions), a retryable billing
    // failure (1 re-issue), 3 completions (termination), retention timer.
    let log = journey();
    let summary: Vec<(&str, &str, Option<&str>)> = log
        .iter()
        .map(|r| {
            assert_eq!(r.key, "C-1");
            assert_eq!(r.envelope.source, "terminus");
            (
                r.envelope.event_type,
                r.envelope.causation_id.as_str(),
                r.envelope.correlation_id.as_deref(),
            )
        })
        .collect();
    let timer = ("req-1", Some("corr-req-1"));
    assert_eq!(
        summary,
        [
            ("TerminationAccepted", "req-1", Some("corr-req-1")),
            ("DismantleSolution", timer.0, timer.1),
            ("DismantleSolution", timer.0, timer.1),
            ("DismantleSolution", timer.0, timer.1),
            ("DismantleSolution", "C-1-e1", Some("corr-C-1-e1")),
            ("RelationshipTerminated", "C-1-e4", Some("corr-C-1-e4")),
            ("CustomerRecordsAnonymized", timer.0, timer.1),
        ]
    );
}

// ---- the engine --------------------------------------------------------------

#[test]
fn the_engine_fires_timers_across_customers_in_due_order() {
    let mut engine = Engine::new(Arc::new(Policy::default()));
    let late = envelope(
        "a",
        "CustomerTerminationRequested",
        t0().plus(HOUR),
        "C-late",
        json!({}),
    );
    let early = envelope(
        "b",
        "CustomerTerminationRequested",
        t0(),
        "C-early",
        json!({}),
    );
    engine.handle(&late, t0().plus(HOUR));
    engine.handle(&early, t0().plus(HOUR));
    assert_eq!(engine.timer_count(), 2);
    assert_eq!(engine.next_due(), Some(t0().plus(days(14))));
    let out = engine.fire_due(t0().plus(days(15)));
    let keys: Vec<&str> = out.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "C-early", "C-early", "C-early", "C-late", "C-late", "C-late"
        ]
    );
    assert_eq!(engine.next_due(), Some(t0().plus(days(14)).plus(HOUR * 72)));
    // Rollback puts the batch back; commit makes it stick.
    assert_eq!(engine.changes().len(), 2);
    engine.rollback();
    assert_eq!(engine.get("C-early"), None);
    assert_eq!(engine.timer_count(), 0);
    engine.handle(&early, t0());
    engine.commit();
    assert!(engine.changes().is_empty());
    assert_eq!(engine.get("C-early").unwrap().phase.name(), "Pending");
}

#[test]
fn the_engine_forgets_customers_with_a_tombstone() {
    let policy = Policy::default();
    let mut engine = Engine::new(Arc::new(policy));
    let tid = ids::termination_id("C-1", "f-1").to_string();
    engine.handle(
        &envelope(
            "f-1",
            "FraudConfirmed",
            t0(),
            "C-1",
            json!({"caseRef": "x"}),
        ),
        t0(),
    );
    for v in VERTICALS {
        let body = json!({"terminationId": tid, "vertical": v});
        engine.handle(
            &envelope(&format!("d-{v}"), "DismantleCompleted", t0(), "C-1", body),
            t0(),
        );
    }
    engine.commit();
    let far = t0().plus(days(2557 + 31));
    let out = engine.fire_due(far);
    assert_eq!(types(&out), ["CustomerRecordsAnonymized"]);
    assert_eq!(engine.get("C-1"), None);
    assert_eq!(engine.changes(), vec![("C-1", None)]);
    assert!(engine.is_empty());
    assert_eq!(engine.timer_count(), 0);
}

#[test]
fn decide_on_timers_alone_creates_no_state() {
    let d = decide(
        "C-1",
        None,
        Input::Timers,
        ts("2030-01-01T00:00:00Z"),
        &Policy::default(),
    );
    assert_eq!(d.state, None);
    assert!(!d.changed && d.outputs.is_empty());
    assert_eq!(rejection(&d), None);
}
