//! Helpers shared by the domain-core tests: events built as JSON and decoded
//! with `decode_envelope` (the worker's own path), and a one-customer driver
//! over `terminus::domain::decide`.
#![allow(dead_code)]

use serde_json::{Map, Value, json};
use std::time::Duration;
use terminus::contract::{InputEnvelope, OutputRecord, decode_envelope};
use terminus::domain::{CustomerState, Decision, Effect, Input, Phase, Policy, Rule, decide};
use terminus::time::Timestamp;

pub const DAY: Duration = Duration::from_secs(24 * 60 * 60);
pub const HOUR: Duration = Duration::from_secs(60 * 60);

/// 2026-11-27T10:15:00Z, the start of every journey.
pub fn t0() -> Timestamp {
    ts("2026-11-27T10:15:00Z")
}

pub fn ts(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).expect("test timestamp")
}

pub fn days(n: u64) -> Duration {
    DAY * u32::try_from(n).expect("small")
}

/// The default policy with its one rule changed by `change`.
pub fn with_rule(change: impl FnOnce(&mut Rule)) -> Policy {
    let mut rule = Rule::default();
    change(&mut rule);
    Policy::with_default(rule)
}

/// The JSON text of an input envelope.
pub fn envelope_json(
    event_id: &str,
    event_type: &str,
    at: Timestamp,
    customer_id: &str,
    body: Value,
) -> String {
    let mut event = Map::new();
    event.insert("customerId".into(), json!(customer_id));
    if let Value::Object(fields) = body {
        event.extend(fields);
    }
    json!({
        "eventId": event_id,
        "eventType": event_type,
        "eventTime": at.to_rfc3339(),
        "correlationId": format!("corr-{event_id}"),
        "source": "test",
        "event": event,
    })
    .to_string()
}

/// An input envelope, through the contract's decoder.
pub fn envelope(
    event_id: &str,
    event_type: &str,
    at: Timestamp,
    customer_id: &str,
    body: Value,
) -> InputEnvelope {
    let text = envelope_json(event_id, event_type, at, customer_id, body);
    decode_envelope(text.as_bytes())
        .unwrap_or_else(|e| panic!("test event must decode: {e}\n{text}"))
}

/// The typical body of each input event type, with its references present.
pub fn default_body(event_type: &str) -> Value {
    match event_type {
        "CustomerDeceased" | "OrganizationDissolved" => json!({"evidenceRef": "EV-1"}),
        "FraudConfirmed" => json!({"caseRef": "FR-1"}),
        "EnterpriseTerminationDecided" => json!({"approvalRef": "AP-1", "reason": "credit risk"}),
        "LegalHoldPlaced" | "LegalHoldReleased" => json!({"holdRef": "LH-1"}),
        _ => json!({}),
    }
}

/// The output envelope as JSON, for field-level assertions.
pub fn value(record: &OutputRecord) -> Value {
    serde_json::to_value(&record.envelope).expect("output serialises")
}

pub fn types(outputs: &[OutputRecord]) -> Vec<&'static str> {
    outputs.iter().map(|r| r.envelope.event_type).collect()
}

/// One customer driven through `decide`, with the business clock of a
/// simulator: `now` is the latest time seen, never going backwards.
pub struct Customer {
    pub id: String,
    pub state: Option<CustomerState>,
    pub policy: Policy,
    pub now: Timestamp,
    next_id: u32,
    /// Every output so far, in order.
    pub log: Vec<OutputRecord>,
}

impl Customer {
    pub fn new(id: &str) -> Self {
        Customer::with_policy(id, Policy::default())
    }

    pub fn with_policy(id: &str, policy: Policy) -> Self {
        Customer {
            id: id.to_owned(),
            state: None,
            policy,
            now: Timestamp::MIN,
            next_id: 0,
            log: Vec::new(),
        }
    }

    /// A fresh event id (`<customer>-e<n>`).
    pub fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}-e{}", self.id, self.next_id)
    }

    /// Sends `event_type` with `body` at `at` under a fresh event id.
    pub fn send(&mut self, event_type: &str, at: Timestamp, body: Value) -> Decision {
        let id = self.fresh_id();
        self.send_as(&id, event_type, at, body)
    }

    /// Sends `event_type` with its default body (references present).
    pub fn send_default(&mut self, event_type: &str, at: Timestamp) -> Decision {
        self.send(event_type, at, default_body(event_type))
    }

    pub fn send_as(
        &mut self,
        event_id: &str,
        event_type: &str,
        at: Timestamp,
        body: Value,
    ) -> Decision {
        let env = envelope(event_id, event_type, at, &self.id, body);
        self.apply(&env)
    }

    /// Handles a decoded envelope at `now = max(now, eventTime)`.
    pub fn apply(&mut self, env: &InputEnvelope) -> Decision {
        self.now = self.now.max(env.event_time);
        let decision = decide(
            &self.id,
            self.state.clone(),
            Input::Event(env),
            self.now,
            &self.policy,
        );
        self.keep(&decision);
        decision
    }

    /// Advances the clock to `to` and fires the timers due by then.
    pub fn tick(&mut self, to: Timestamp) -> Decision {
        self.now = self.now.max(to);
        let decision = decide(
            &self.id,
            self.state.clone(),
            Input::Timers,
            self.now,
            &self.policy,
        );
        self.keep(&decision);
        decision
    }

    /// Fires the next armed timer at exactly its due time.
    pub fn fire_next_timer(&mut self) -> Decision {
        let (due, _) = self
            .state
            .as_ref()
            .and_then(CustomerState::next_timer)
            .expect("a timer must be armed");
        self.tick(due)
    }

    fn keep(&mut self, decision: &Decision) {
        self.state.clone_from(&decision.state);
        self.log.extend(decision.outputs.iter().cloned());
    }

    pub fn phase(&self) -> &'static str {
        self.state.as_ref().map_or("none", |s| s.phase.name())
    }

    pub fn termination_id(&self) -> String {
        self.state
            .as_ref()
            .and_then(|s| s.phase.termination_id())
            .expect("a termination")
            .to_string()
    }

    /// Completes `vertical` of the current termination at `at`.
    pub fn complete(&mut self, vertical: &str, at: Timestamp) -> Decision {
        let tid = self.termination_id();
        self.send(
            "DismantleCompleted",
            at,
            json!({"terminationId": tid, "vertical": vertical}),
        )
    }

    /// Fails `vertical` of the current termination at `at`.
    pub fn fail(&mut self, vertical: &str, retryable: bool, at: Timestamp) -> Decision {
        let tid = self.termination_id();
        self.send(
            "DismantleFailed",
            at,
            json!({"terminationId": tid, "vertical": vertical, "reason": "downstream error", "retryable": retryable}),
        )
    }

    /// Completes all three verticals at `at`.
    pub fn complete_all(&mut self, at: Timestamp) -> Decision {
        self.complete("billing", at);
        self.complete("fulfillment", at);
        self.complete("assurance", at)
    }

    // ---- canned states ------------------------------------------------------

    /// `Pending` with a customer request accepted at `t0()`.
    pub fn pending_request(id: &str) -> Self {
        let mut c = Customer::new(id);
        c.send("CustomerTerminationRequested", t0(), json!({}));
        assert_eq!(c.phase(), "Pending");
        c
    }

    /// `Pending` with an enterprise decision accepted at `t0()`.
    pub fn pending_enterprise(id: &str) -> Self {
        let mut c = Customer::new(id);
        c.send_default("EnterpriseTerminationDecided", t0());
        assert_eq!(c.phase(), "Pending");
        c
    }

    /// `Dismantling` a customer request (instructions out at t0 + 14 d).
    pub fn dismantling(id: &str) -> Self {
        let mut c = Customer::pending_request(id);
        c.fire_next_timer();
        assert_eq!(c.phase(), "Dismantling");
        c
    }

    /// `Terminated` by `trigger` (an event type with its default body), every
    /// vertical completed one hour after dismantling started.
    pub fn terminated_by(id: &str, trigger: &str) -> Self {
        let mut c = Customer::new(id);
        c.send_default(trigger, t0());
        if c.phase() == "Pending" {
            c.fire_next_timer();
        }
        assert_eq!(c.phase(), "Dismantling");
        let at = c.now.plus(HOUR);
        c.complete_all(at);
        assert_eq!(c.phase(), "Terminated");
        c
    }

    /// `Anonymized` after a customer request's full journey.
    pub fn anonymized(id: &str) -> Self {
        let mut c = Customer::terminated_by(id, "CustomerTerminationRequested");
        c.fire_next_timer();
        assert_eq!(c.phase(), "Anonymized");
        c
    }

    /// The phase of the state, for matching on its fields.
    pub fn phase_ref(&self) -> &Phase {
        &self.state.as_ref().expect("a state").phase
    }
}

/// The single rejection code of a decision, if it was a rejection.
pub fn rejection(decision: &Decision) -> Option<String> {
    match decision.effect {
        Effect::Rejected(code) => Some(code.as_str().to_owned()),
        _ => None,
    }
}
