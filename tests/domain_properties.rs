//! Properties of the core over random event sequences for a few customers,
//! driven like the simulator drives it (an `Engine`, a logical clock that fires
//! due timers before each event), plus a decoder fuzz.

mod core_support;

use core_support::{envelope_json, t0};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use terminus::contract::{OutputEvent, OutputRecord, RejectionCode, Vertical, decode_envelope};
use terminus::domain::{CustomerState, Effect, Input, Phase, Policy, Rule, ScopedRule, decide};
use terminus::engine::Engine;
use terminus::time::{Period, Timestamp};
use uuid::Uuid;

const CUSTOMERS: [&str; 3] = ["C-1", "C-2", "C-3"];
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// The markets and segments events name; `vip` is outside every declared list,
/// so it must count as no segment.
const MARKETS: [&str; 3] = ["DE", "GB", "FR"];
const SEGMENTS: [&str; 4] = ["consumer", "business", "wholesale", "vip"];

// ---- the generated operations ----------------------------------------------

#[derive(Clone, Debug)]
enum Target {
    /// The customer's current termination (the common case).
    Current,
    /// Some other termination id.
    Stranger(u8),
}

#[derive(Clone, Debug)]
enum Kind {
    Request {
        erasure: bool,
        requested_in_days: Option<u8>,
    },
    Withdraw,
    Deceased {
        evidence: bool,
    },
    Dissolved {
        evidence: bool,
    },
    Fraud {
        case: bool,
    },
    Enterprise {
        approval: bool,
    },
    Revoke,
    AllServices,
    Reestablish,
    HoldPlaced(u8),
    HoldReleased(u8),
    Completed {
        vertical: usize,
        target: Target,
    },
    Failed {
        vertical: usize,
        retryable: bool,
        target: Target,
    },
    /// All three completions for the current termination, in a row.
    CompleteAll,
}

#[derive(Clone, Debug)]
enum Op {
    /// A new event for a customer, `step` ms after the previous one (or
    /// `late` ms before the latest time, a late event).
    Event {
        customer: usize,
        step: i64,
        late: bool,
        kind: Kind,
        /// Indexes into MARKETS and SEGMENTS, for the policy rule.
        market: Option<usize>,
        segment: Option<usize>,
    },
    /// An earlier event again, byte for byte (`back` counts from the latest).
    Repeat { back: usize },
    /// Time passes with no event.
    Tick { step: i64 },
}

fn step() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => Just(0i64),
        4 => 1..HOUR,
        4 => HOUR..(100 * HOUR),
        3 => DAY..(40 * DAY),
        1 => (100 * DAY)..(600 * DAY),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![6 => Just(Target::Current), 1 => any::<u8>().prop_map(Target::Stranger)]
}

fn kind() -> impl Strategy<Value = Kind> {
    let present = || proptest::bool::weighted(0.85);
    prop_oneof![
        3 => (any::<bool>(), proptest::option::of(0u8..40)).prop_map(|(erasure, requested_in_days)| Kind::Request { erasure, requested_in_days }),
        2 => Just(Kind::Withdraw),
        1 => present().prop_map(|evidence| Kind::Deceased { evidence }),
        1 => present().prop_map(|evidence| Kind::Dissolved { evidence }),
        1 => present().prop_map(|case| Kind::Fraud { case }),
        1 => present().prop_map(|approval| Kind::Enterprise { approval }),
        2 => Just(Kind::Revoke),
        1 => Just(Kind::AllServices),
        1 => Just(Kind::Reestablish),
        1 => (0u8..2).prop_map(Kind::HoldPlaced),
        2 => (0u8..3).prop_map(Kind::HoldReleased),
        8 => (0usize..3, target()).prop_map(|(vertical, target)| Kind::Completed { vertical, target }),
        3 => (0usize..3, any::<bool>(), target()).prop_map(|(vertical, retryable, target)| Kind::Failed { vertical, retryable, target }),
        3 => Just(Kind::CompleteAll),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0..CUSTOMERS.len(), step(), proptest::bool::weighted(0.1), kind(), proptest::option::of(0..MARKETS.len()), proptest::option::of(0..SEGMENTS.len()))
            .prop_map(|(customer, step, late, kind, market, segment)| Op::Event { customer, step, late, kind, market, segment }),
        2 => (0usize..6).prop_map(|back| Op::Repeat { back }),
        1 => step().prop_map(|step| Op::Tick { step }),
    ]
}

fn duration() -> impl Strategy<Value = Period> {
    prop_oneof![
        2 => (0u32..40).prop_map(Period::days),
        1 => (1u32..4).prop_map(Period::months),
        1 => (1u32..3).prop_map(Period::years),
        1 => (0u64..100).prop_map(|h| Period::exact(Duration::from_secs(h * 3600))),
    ]
}

/// A random rule: random notices, deadlines and attempts; retention mostly
/// short so that anonymisation and forgetting happen within a sequence.
fn rule() -> impl Strategy<Value = Rule> {
    let retention = prop_oneof![
        3 => (1u32..60).prop_map(Period::days),
        1 => (1u32..3).prop_map(Period::months),
        1 => Just(Period::years(7)),
    ];
    (
        (duration(), duration(), duration(), duration()),
        (retention, (0u32..30).prop_map(Period::days), duration()),
        (1u32..5, proptest::bool::weighted(0.8)),
    )
        .prop_map(
            |(
                (customer_notice, enterprise_notice, immediate, deadline),
                (retention, erasure_retention, forget_after),
                (max_attempts, require_evidence),
            )| Rule {
                name: String::new(),
                customer_notice,
                enterprise_notice,
                // Mostly at once, as by default.
                immediate_notice: if immediate.total_months() == 0
                    && immediate.exact_part() < Duration::from_secs(86_400)
                {
                    immediate
                } else {
                    Period::ZERO
                },
                dismantle_deadline: if deadline.is_zero() {
                    Period::days(1)
                } else {
                    deadline
                },
                max_attempts,
                retention,
                erasure_retention,
                forget_after,
                require_evidence,
            },
        )
}

/// The brief's defaults, short durations so that retention, forgetting and the
/// attempt limit are reached within a short sequence, or a random policy set:
/// a random default rule and up to five rules for some markets, segments and
/// pairs of them.
fn policy() -> impl Strategy<Value = Policy> {
    let short = |forget_days: u32| {
        let mut policy = Policy::with_default(Rule {
            retention: Period::days(30),
            erasure_retention: Period::days(5),
            forget_after: Period::days(forget_days),
            max_attempts: 2,
            ..Rule::default()
        });
        policy.dedup_window = 4;
        policy
    };
    let scoped = (
        proptest::option::of(0..MARKETS.len()),
        proptest::option::of(0..3usize),
        rule(),
    );
    let random = (rule(), proptest::collection::vec(scoped, 0..6), 2usize..40).prop_map(
        |(default, scoped, dedup_window)| {
            let mut rules: Vec<ScopedRule> = Vec::new();
            for (market, segment, mut rule) in scoped {
                let (market, segment) = (market.map(|m| MARKETS[m]), segment.map(|s| SEGMENTS[s]));
                let taken = rules
                    .iter()
                    .any(|r| r.market.as_deref() == market && r.segment.as_deref() == segment);
                if taken || (market.is_none() && segment.is_none()) {
                    continue;
                }
                rule.name = format!("{}-{}", market.unwrap_or("any"), segment.unwrap_or("any"));
                rules.push(ScopedRule {
                    market: market.map(str::to_owned),
                    segment: segment.map(str::to_owned),
                    rule,
                });
            }
            let mut policy = Policy::new(default, rules, None).expect("a valid random policy");
            policy.dedup_window = dedup_window;
            policy
        },
    );
    prop_oneof![
        1 => Just(Policy::default()),
        1 => Just(short(1000)),
        1 => Just(short(20)),
        3 => random,
    ]
}

// ---- running them ------------------------------------------------------------

/// One handled input (or tick) and what came out of it.
#[derive(Clone, Debug, PartialEq)]
struct Step {
    /// The customer and event, for events.
    input: Option<(usize, Value)>,
    /// Outputs of the timers fired before the event.
    timer_outputs: Vec<OutputRecord>,
    /// Outputs of the event itself (including timers it made due at once).
    outputs: Vec<OutputRecord>,
    effect: Option<Effect>,
    /// Every customer's state after the step.
    states: Vec<Option<CustomerState>>,
    /// The states after the pre-event timers, before the event.
    states_before_event: Vec<Option<CustomerState>>,
}

struct Run {
    steps: Vec<Step>,
    /// The JSON lines sent, in order, for the simulator.
    lines: Vec<String>,
}

fn states(engine: &Engine) -> Vec<Option<CustomerState>> {
    CUSTOMERS.iter().map(|c| engine.get(c)).collect()
}

/// A clone of every stored state through its changelog bytes.
fn round_trip_all(engine: &mut Engine) {
    for c in CUSTOMERS {
        if let Some(state) = engine.get(c) {
            let copy = CustomerState::from_bytes(&state.to_bytes()).expect("state reads back");
            assert_eq!(copy, state, "state survives to_bytes/from_bytes");
            engine.restore(c, Some(copy));
        }
    }
}

fn run(ops: &[Op], policy: &Policy, round_trip: bool) -> Run {
    let mut engine = Engine::new(Arc::new(policy.clone()));
    let mut clock = t0();
    let mut cursor = t0();
    let mut sent: Vec<(usize, String)> = Vec::new();
    let mut steps = Vec::new();
    let mut lines = Vec::new();
    let mut next = 0u32;
    for op in ops {
        let batch: Vec<(usize, String)> = match op {
            Op::Tick { step } => {
                if round_trip {
                    round_trip_all(&mut engine);
                }
                clock = clock.max(cursor.plus(ms(*step)));
                cursor = clock;
                let timer_outputs = engine.fire_due(clock);
                engine.commit();
                let states = states(&engine);
                steps.push(Step {
                    input: None,
                    timer_outputs,
                    outputs: Vec::new(),
                    effect: None,
                    states_before_event: states.clone(),
                    states,
                });
                continue;
            }
            Op::Repeat { back } => {
                let Some(earlier) = sent.len().checked_sub(back + 1).and_then(|i| sent.get(i))
                else {
                    continue;
                };
                vec![earlier.clone()]
            }
            Op::Event {
                customer,
                step,
                late,
                kind,
                market,
                segment,
            } => {
                let at = if *late {
                    Timestamp::from_millis((cursor.millis() - step).max(t0().millis()))
                } else {
                    cursor = cursor.plus(ms(*step));
                    cursor
                };
                let current = engine
                    .get(CUSTOMERS[*customer])
                    .and_then(|s| s.phase.termination_id());
                event_bodies(kind, current, at)
                    .into_iter()
                    .map(|(event_type, mut body)| {
                        // Every event may name them; only triggers read them.
                        if let Some(m) = market {
                            body["market"] = json!(MARKETS[*m]);
                        }
                        if let Some(s) = segment {
                            body["segment"] = json!(SEGMENTS[*s]);
                        }
                        next += 1;
                        let id = format!("ev-{next}");
                        (
                            *customer,
                            envelope_json(&id, event_type, at, CUSTOMERS[*customer], body),
                        )
                    })
                    .collect()
            }
        };
        for (customer, text) in batch {
            if round_trip {
                round_trip_all(&mut engine);
            }
            handle(
                &mut engine,
                &mut clock,
                customer,
                text,
                &mut sent,
                &mut lines,
                &mut steps,
            );
        }
    }

    // Let every remaining timer fire.
    if round_trip {
        round_trip_all(&mut engine);
    }
    let end = clock.plus(ms(20_000 * DAY));
    let timer_outputs = engine.fire_due(end);
    let states = states(&engine);
    steps.push(Step {
        input: None,
        timer_outputs,
        outputs: Vec::new(),
        effect: None,
        states_before_event: states.clone(),
        states,
    });
    Run { steps, lines }
}

/// Handles one event as the simulator does: the clock advances to its time
/// (never backwards), due timers fire, then the event is handled.
fn handle(
    engine: &mut Engine,
    clock: &mut Timestamp,
    customer: usize,
    text: String,
    sent: &mut Vec<(usize, String)>,
    lines: &mut Vec<String>,
    steps: &mut Vec<Step>,
) {
    let env = decode_envelope(text.as_bytes()).expect("generated events decode");
    *clock = (*clock).max(env.event_time);
    let timer_outputs = engine.fire_due(*clock);
    let states_before_event = states(engine);
    let handled = engine.handle(&env, *clock);
    engine.commit();
    steps.push(Step {
        input: Some((customer, serde_json::from_str(&text).expect("json"))),
        timer_outputs,
        outputs: handled.outputs,
        effect: Some(handled.effect),
        states: states(engine),
        states_before_event,
    });
    lines.push(text.clone());
    sent.push((customer, text));
}

fn ms(n: i64) -> Duration {
    Duration::from_millis(u64::try_from(n).expect("non-negative"))
}

fn event_bodies(kind: &Kind, current: Option<Uuid>, at: Timestamp) -> Vec<(&'static str, Value)> {
    if let Kind::CompleteAll = kind {
        return (0..3)
            .map(|vertical| {
                event_body(
                    &Kind::Completed {
                        vertical,
                        target: Target::Current,
                    },
                    current,
                    at,
                )
            })
            .collect();
    }
    vec![event_body(kind, current, at)]
}

fn event_body(kind: &Kind, current: Option<Uuid>, at: Timestamp) -> (&'static str, Value) {
    let reference = |present: bool, name: &str| {
        if present {
            json!({ name: "REF-1" })
        } else {
            json!({})
        }
    };
    let tid = |target: &Target| match target {
        Target::Current => current.unwrap_or_else(|| Uuid::from_u128(7)),
        Target::Stranger(n) => Uuid::from_u128(u128::from(*n) + 1000),
    };
    match kind {
        Kind::Request {
            erasure,
            requested_in_days,
        } => {
            let mut body = json!({"erasureRequested": erasure});
            if let Some(d) = requested_in_days {
                body["requestedEffectiveDate"] =
                    json!(at.plus(ms(i64::from(*d) * DAY)).to_rfc3339());
            }
            ("CustomerTerminationRequested", body)
        }
        Kind::Withdraw => ("CustomerTerminationWithdrawn", json!({})),
        Kind::Deceased { evidence } => ("CustomerDeceased", reference(*evidence, "evidenceRef")),
        Kind::Dissolved { evidence } => {
            ("OrganizationDissolved", reference(*evidence, "evidenceRef"))
        }
        Kind::Fraud { case } => ("FraudConfirmed", reference(*case, "caseRef")),
        Kind::Enterprise { approval } => {
            let mut body = reference(*approval, "approvalRef");
            body["reason"] = json!("risk");
            ("EnterpriseTerminationDecided", body)
        }
        Kind::Revoke => ("TerminationDecisionRevoked", json!({})),
        Kind::AllServices => ("AllServicesTerminated", json!({})),
        Kind::Reestablish => ("RelationshipReestablishmentRequested", json!({})),
        Kind::HoldPlaced(n) => ("LegalHoldPlaced", json!({"holdRef": format!("LH-{n}")})),
        Kind::HoldReleased(n) => ("LegalHoldReleased", json!({"holdRef": format!("LH-{n}")})),
        Kind::Completed { vertical, target } => (
            "DismantleCompleted",
            json!({"terminationId": tid(target), "vertical": Vertical::ALL[*vertical].as_str()}),
        ),
        Kind::CompleteAll => unreachable!("expanded by event_bodies"),
        Kind::Failed {
            vertical,
            retryable,
            target,
        } => (
            "DismantleFailed",
            json!({"terminationId": tid(target), "vertical": Vertical::ALL[*vertical].as_str(), "reason": "x", "retryable": retryable}),
        ),
    }
}

fn customer_of(record: &OutputRecord) -> usize {
    CUSTOMERS
        .iter()
        .position(|c| *c == record.key)
        .expect("outputs are keyed by a known customer")
}

// ---- the properties -----------------------------------------------------------

/// At most one RelationshipTerminated per termination, and only in the step of
/// a completion, once all three verticals' completions for it came in.
fn check_termination_once(run: &Run) -> Result<(), TestCaseError> {
    let mut completed: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut terminated: BTreeSet<Uuid> = BTreeSet::new();
    for step in &run.steps {
        if let Some((_, input)) = &step.input
            && input["eventType"] == "DismantleCompleted"
        {
            completed
                .entry(
                    input["event"]["terminationId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
                .or_default()
                .insert(
                    input["event"]["vertical"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
        }
        prop_assert!(
            !step
                .timer_outputs
                .iter()
                .any(|r| r.envelope.event_type == "RelationshipTerminated"),
            "a timer never terminates"
        );
        for record in &step.outputs {
            if let OutputEvent::RelationshipTerminated { termination_id, .. } =
                &record.envelope.event
            {
                prop_assert!(
                    terminated.insert(*termination_id),
                    "terminated twice: {termination_id}"
                );
                let input = &step.input.as_ref().expect("an event").1;
                prop_assert_eq!(&input["eventType"], "DismantleCompleted");
                prop_assert_eq!(
                    &input["event"]["terminationId"],
                    &json!(termination_id.to_string())
                );
                let done = completed
                    .get(&termination_id.to_string())
                    .cloned()
                    .unwrap_or_default();
                prop_assert_eq!(done.len(), 3, "all three verticals completed: {:?}", done);
            }
        }
    }
    Ok(())
}

fn all_outputs(step: &Step) -> impl Iterator<Item = &OutputRecord> {
    step.timer_outputs.iter().chain(&step.outputs)
}

/// No DismantleSolution is stamped before its effective time.
fn check_no_early_instruction(run: &Run) -> Result<(), TestCaseError> {
    for record in run.steps.iter().flat_map(all_outputs) {
        if let OutputEvent::DismantleSolution { effective_at, .. } = &record.envelope.event {
            prop_assert!(
                record.envelope.event_time.0 >= effective_at.0,
                "DismantleSolution at {} before its effectiveAt {}",
                record.envelope.event_time.0,
                effective_at.0
            );
        }
    }
    Ok(())
}

/// After CustomerRecordsAnonymized, and until the customer is forgotten, the
/// only output for that customer is a TerminationRejected(RecordsAnonymized)
/// carrying ids only.
fn check_silence_after_anonymisation(run: &Run) -> Result<(), TestCaseError> {
    let mut anonymised = [false; CUSTOMERS.len()];
    let check = |anonymised: &mut [bool; 3], record: &OutputRecord| -> Result<(), TestCaseError> {
        let c = customer_of(record);
        if anonymised[c] {
            let OutputEvent::TerminationRejected { reason_code, .. } = &record.envelope.event
            else {
                return Err(TestCaseError::fail(format!(
                    "{} for {} after anonymisation",
                    record.envelope.event_type, record.key
                )));
            };
            prop_assert_eq!(*reason_code, RejectionCode::RecordsAnonymized);
            let v = serde_json::to_value(&record.envelope).expect("json");
            let keys: Vec<&String> = v["event"].as_object().expect("object").keys().collect();
            prop_assert_eq!(keys, ["customerId", "detail", "reasonCode"]);
        }
        if record.envelope.event_type == "CustomerRecordsAnonymized" {
            anonymised[c] = true;
        }
        Ok(())
    };
    for step in &run.steps {
        for record in &step.timer_outputs {
            check(&mut anonymised, record)?;
        }
        // A forget timer before the event removes the customer: a new one may begin.
        for (c, state) in step.states_before_event.iter().enumerate() {
            if state.is_none() {
                anonymised[c] = false;
            }
        }
        for record in &step.outputs {
            check(&mut anonymised, record)?;
        }
        for (c, state) in step.states.iter().enumerate() {
            if state.is_none() {
                anonymised[c] = false;
            }
        }
    }
    Ok(())
}

/// Dedup, modelled: an event id is a duplicate exactly when the customer still
/// remembers it (not ignored by a customer without a record, within the
/// window, not forgotten since); a
/// duplicate emits nothing and changes nothing.
fn check_duplicates(run: &Run, policy: &Policy) -> Result<(), TestCaseError> {
    let mut remembered: Vec<VecDeque<String>> = vec![VecDeque::new(); CUSTOMERS.len()];
    for step in &run.steps {
        for (c, state) in step.states_before_event.iter().enumerate() {
            if state.is_none() {
                remembered[c].clear();
            }
        }
        let (Some((c, input)), Some(effect)) = (&step.input, step.effect) else {
            continue;
        };
        let id = input["eventId"].as_str().expect("id").to_owned();
        let expect_duplicate = remembered[*c].contains(&id);
        prop_assert_eq!(
            effect == Effect::Duplicate,
            expect_duplicate,
            "event {} ({:?})",
            id,
            effect
        );
        if effect == Effect::Duplicate {
            prop_assert!(step.outputs.is_empty(), "a duplicate emits nothing");
            prop_assert_eq!(
                &step.states,
                &step.states_before_event,
                "a duplicate changes nothing"
            );
        } else if !matches!(effect, Effect::Ignored(_)) || step.states_before_event[*c].is_some() {
            // Ignored outcomes are remembered too, by a customer with a record.
            let memory = &mut remembered[*c];
            memory.push_back(id);
            while memory.len() > policy.dedup_window {
                memory.pop_front();
            }
        }
        if step.states[*c].is_none() {
            remembered[*c].clear();
        }
    }
    Ok(())
}

/// Each customer's clock never goes backwards while it has a state.
fn check_clocks(run: &Run) -> Result<(), TestCaseError> {
    let mut last: Vec<Option<Timestamp>> = vec![None; CUSTOMERS.len()];
    for step in &run.steps {
        for stage in [&step.states_before_event, &step.states] {
            for (c, state) in stage.iter().enumerate() {
                match state {
                    Some(s) => {
                        if let Some(prev) = last[c] {
                            prop_assert!(s.clock >= prev, "clock of {} went back", CUSTOMERS[c]);
                        }
                        last[c] = Some(s.clock);
                    }
                    None => last[c] = None,
                }
            }
        }
    }
    Ok(())
}

/// The rule a first acceptance names is the one the trigger's market and
/// segment select, its effective time is the business time plus that rule's
/// notice (or the later requested date), and the retention end is the
/// termination time plus the retention of the rule the termination recorded.
fn check_rules(run: &Run, policy: &Policy) -> Result<(), TestCaseError> {
    let mut rule_of: HashMap<Uuid, String> = HashMap::new();
    for step in &run.steps {
        for record in all_outputs(step) {
            match &record.envelope.event {
                OutputEvent::TerminationAccepted {
                    termination_id,
                    category,
                    effective_at,
                    policy_rule,
                    ..
                } => {
                    let rule = policy.rule_named(Some(policy_rule));
                    prop_assert_eq!(&rule.name, policy_rule, "a rule of the policy");
                    let Some((c, input)) = &step.input else {
                        return Err(TestCaseError::fail("accepted by a timer"));
                    };
                    let before = step.states_before_event[*c].as_ref();
                    let fresh = before.is_none_or(|s| matches!(s.phase, Phase::Active));
                    if fresh {
                        let market = input["event"]["market"].as_str();
                        let segment = input["event"]["segment"].as_str();
                        prop_assert_eq!(&policy.select(market, segment).name, policy_rule);
                        let event_time = Timestamp::parse_rfc3339(
                            input["eventTime"].as_str().unwrap_or_default(),
                        )
                        .expect("eventTime");
                        let at = before.map_or(event_time, |s| s.clock.max(event_time));
                        let earliest = at.plus_period(rule.notice(*category));
                        let requested = input["event"]["requestedEffectiveDate"]
                            .as_str()
                            .and_then(|t| Timestamp::parse_rfc3339(t).ok());
                        let expected = requested.map_or(earliest, |r| r.max(earliest));
                        prop_assert_eq!(effective_at.0, expected, "effectiveAt of {}", policy_rule);
                    }
                    rule_of.insert(*termination_id, policy_rule.clone());
                }
                OutputEvent::RelationshipTerminated {
                    termination_id,
                    category,
                    terminated_at,
                    retain_records_until,
                    erasure_requested,
                    ..
                } => {
                    let rule = policy.rule_named(rule_of.get(termination_id).map(String::as_str));
                    let expected = terminated_at
                        .0
                        .plus_period(rule.retention_for(*category, *erasure_requested));
                    prop_assert_eq!(
                        retain_records_until.0,
                        expected,
                        "retention of {}",
                        &rule.name
                    );
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn simulate(lines: &[String], policy: &Policy) -> Vec<u8> {
    let input = lines.join("\n");
    let mut out = Vec::new();
    terminus::simulate::run(
        input.as_bytes(),
        &mut out,
        Some(t0().plus(ms(20_000 * DAY))),
        policy.clone(),
    )
    .expect("in-memory I/O");
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_journeys_keep_the_invariants(ops in proptest::collection::vec(op(), 1..60), policy in policy()) {
        let run = run(&ops, &policy, false);
        check_termination_once(&run)?;
        check_no_early_instruction(&run)?;
        check_silence_after_anonymisation(&run)?;
        check_duplicates(&run, &policy)?;
        check_clocks(&run)?;
        check_rules(&run, &policy)?;
    }

    #[test]
    fn the_same_input_gives_the_same_output(ops in proptest::collection::vec(op(), 1..40), policy in policy()) {
        let a = run(&ops, &policy, false);
        let b = run(&ops, &policy, false);
        prop_assert_eq!(&a.steps, &b.steps);
        prop_assert_eq!(simulate(&a.lines, &policy), simulate(&b.lines, &policy));
    }

    #[test]
    fn state_survives_the_changelog_at_every_step(ops in proptest::collection::vec(op(), 1..40), policy in policy()) {
        let direct = run(&ops, &policy, false);
        let restored = run(&ops, &policy, true);
        prop_assert_eq!(direct.steps.len(), restored.steps.len());
        for (a, b) in direct.steps.iter().zip(&restored.steps) {
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn a_repeated_event_changes_nothing(ops in proptest::collection::vec(op(), 1..30), policy in policy(), pick in any::<prop::sample::Index>()) {
        // Replay the journey, then hand every customer one of its own earlier
        // events again, at a time when no timer is due: nothing happens.
        let run = run(&ops, &policy, false);
        let Some(line) = (!run.lines.is_empty()).then(|| pick.get(&run.lines)) else {
            return Ok(());
        };
        let env = decode_envelope(line.as_bytes()).expect("decodes");
        let last = run.steps.iter().rev().find_map(|s| s.input.as_ref().map(|_| s)).expect("an event step");
        let index = CUSTOMERS.iter().position(|c| *c == env.customer_id).expect("known");
        let Some(state) = last.states[index].clone() else {
            return Ok(());
        };
        let remembered = state.seen.contains(&terminus::domain::ids::fingerprint(&env.event_id));
        let now = state.clock;
        let d = decide(&env.customer_id, Some(state.clone()), Input::Event(&env), now, &policy);
        if remembered {
            prop_assert_eq!(d.effect, Effect::Duplicate);
            prop_assert!(d.outputs.is_empty());
            prop_assert!(!d.changed);
            prop_assert_eq!(d.state, Some(state));
        }
    }
}

// ---- decoder fuzz -----------------------------------------------------------

const FIELD_NAMES: [&str; 18] = [
    "eventId",
    "eventType",
    "eventTime",
    "correlationId",
    "source",
    "event",
    "customerId",
    "terminationId",
    "vertical",
    "retryable",
    "reason",
    "requestedEffectiveDate",
    "erasureRequested",
    "evidenceRef",
    "caseRef",
    "approvalRef",
    "holdRef",
    "dateOfDeath",
];

const EVENT_TYPES: [&str; 14] = [
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
    "Nope",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        proptest::sample::select(EVENT_TYPES.to_vec()).prop_map(Value::from),
        proptest::sample::select(vec![
            "2026-11-27T10:15:00Z",
            "2026-12-31",
            "9999-12-31T23:59:59.999999999+14:00",
            "0001-01-01T00:00:00-23:59",
            "2026-02-30T00:00:00Z",
            "billing",
            "assurance",
            "6f1c1b1e-8c2a-5d1e-9b1a-1a2b3c4d5e6f",
            "",
            " ",
            "\u{0}",
        ])
        .prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 32, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(
                (proptest::sample::select(FIELD_NAMES.to_vec()), inner),
                0..8
            )
            .prop_map(|fields| Value::Object(
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

/// An envelope whose fields are mostly right and sometimes wrong.
fn envelope_ish() -> impl Strategy<Value = Value> {
    (
        proptest::sample::select(EVENT_TYPES.to_vec()),
        proptest::collection::vec(
            (proptest::sample::select(FIELD_NAMES.to_vec()), scalar()),
            0..6,
        ),
        proptest::collection::vec(
            (proptest::sample::select(FIELD_NAMES.to_vec()), json_value()),
            0..3,
        ),
    )
        .prop_map(|(event_type, body, top)| {
            let mut event = serde_json::Map::new();
            event.insert("customerId".into(), json!("C-1"));
            event.extend(body.into_iter().map(|(k, v)| (k.to_owned(), v)));
            let mut root = json!({
                "eventId": "e-1",
                "eventType": event_type,
                "eventTime": "2026-11-27T10:15:00Z",
                "event": Value::Object(event),
            });
            for (k, v) in top {
                root[k] = v;
            }
            root
        })
}

/// Feeds whatever decodes to the core too: no input may make it panic.
fn decode_and_decide(bytes: &[u8]) {
    if let Ok(env) = decode_envelope(bytes) {
        let policy = Policy::default();
        let now = env.event_time;
        let d = decide(&env.customer_id, None, Input::Event(&env), now, &policy);
        let _ = decide(&env.customer_id, d.state, Input::Event(&env), now, &policy);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_and_decide(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics_the_decoder(value in json_value()) {
        decode_and_decide(value.to_string().as_bytes());
    }

    #[test]
    fn near_miss_envelopes_never_panic_the_decoder(value in envelope_ish(), cut in any::<prop::sample::Index>()) {
        let text = value.to_string();
        decode_and_decide(text.as_bytes());
        // And truncated anywhere.
        let at = cut.index(text.len() + 1);
        decode_and_decide(&text.as_bytes()[..at]);
    }

    #[test]
    fn json_ish_strings_never_panic_the_decoder(text in r#"[{}\[\]",:a-zA-Z0-9 .\-+TZ\\]{0,120}"#) {
        decode_and_decide(text.as_bytes());
    }
}
