//! The termination state machine: (state, input, now, policy) → (state, outputs).
//!
//! Pure and deterministic: no clock, no I/O, no randomness. The worker and the
//! simulator call [`decide`] and nothing else decides.

use super::ids::{Cause, fingerprint, termination_id};
use super::policy::{PolicySet, Rule};
use super::state::{
    CustomerState, Dismantle, Phase, Termination, TimerKind, VerticalProgress, VerticalStatus,
};
use crate::contract::{
    Category, InputEnvelope, InputEvent, OutputEnvelope, OutputEvent, OutputRecord, RejectionCode,
    Vertical,
};
use crate::time::{Rfc3339, Timestamp};
use uuid::Uuid;

/// What to decide on: an input event, or just the timers due by `now`.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    Event(&'a InputEnvelope),
    Timers,
}

/// The result of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The state after the step; `None` when there is nothing to keep (a
    /// changelog tombstone) or the customer never had state.
    pub state: Option<CustomerState>,
    /// Whether the state differs from the one passed in (a changelog write).
    pub changed: bool,
    pub outputs: Vec<OutputRecord>,
    pub effect: Effect,
}

/// What the input did, for metrics and logs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The event was applied (accepted, recorded, ticked off…).
    Applied,
    /// The event was refused with `TerminationRejected`.
    Rejected(RejectionCode),
    /// An outcome that names no current dismantling: counted, nothing changes.
    Ignored(IgnoreReason),
    /// The event id was seen before: nothing changes, nothing is emitted.
    Duplicate,
    /// Only timers were considered.
    Timers,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum IgnoreReason {
    /// No dismantling is under way for this customer.
    NotDismantling,
    /// The outcome names another termination than the one being dismantled.
    UnknownTermination,
    /// The vertical already completed (or already failed for good).
    VerticalSettled,
}

impl IgnoreReason {
    pub const ALL: [IgnoreReason; 3] = [
        IgnoreReason::NotDismantling,
        IgnoreReason::UnknownTermination,
        IgnoreReason::VerticalSettled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::NotDismantling => "NotDismantling",
            IgnoreReason::UnknownTermination => "UnknownTermination",
            IgnoreReason::VerticalSettled => "VerticalSettled",
        }
    }
}

/// Upper bound of timers fired in one step; each firing moves the phase on, so
/// the real number is at most four. The bound only guards against a bug looping.
const MAX_TIMERS_PER_STEP: usize = 8;

/// Runs one step of the state machine for `customer_id`.
///
/// For an event: the customer's timers due by `now` fire first; then an
/// already-seen `eventId` changes nothing more; otherwise the event is handled
/// at business time `max(customer clock, eventTime)`, and timers that became
/// due by then (an immediate termination) fire at once. For [`Input::Timers`],
/// the timers due by `now` fire. Timer outputs carry their due time.
pub fn decide(
    customer_id: &str,
    state: Option<CustomerState>,
    input: Input<'_>,
    now: Timestamp,
    policy: &PolicySet,
) -> Decision {
    let existed = state.is_some();
    let mut ctx = Ctx {
        customer_id,
        policy,
        st: state.unwrap_or_default(),
        outputs: Vec::new(),
        changed: false,
        forget: false,
    };
    let effect = match input {
        Input::Timers => {
            ctx.fire_due(now);
            Effect::Timers
        }
        Input::Event(env) => {
            // Timers due by `now` fire first, even for a duplicate: the worker
            // calls this without a separate timer pass, and must then reach the
            // same state as the simulator, which fires timers before each event.
            ctx.fire_due(now);
            let print = fingerprint(&env.event_id);
            if ctx.st.seen.contains(&print) {
                Effect::Duplicate
            } else {
                let at = ctx.st.clock.max(env.event_time);
                let effect = ctx.on_event(env, at);
                if matches!(effect, Effect::Ignored(_)) {
                    // Remember an ignored outcome's id too: redelivered after
                    // the dismantling started, it must not count as a
                    // completion. Only for a customer with a record: an
                    // outcome for an unknown customer must not create one.
                    if existed && !ctx.forget {
                        ctx.remember(print);
                        ctx.changed = true;
                    }
                } else {
                    // A customer forgotten by a timer just now starts afresh with
                    // this event, as if the timer had fired in an earlier step.
                    ctx.forget = false;
                    ctx.st.clock = at;
                    ctx.remember(print);
                    ctx.changed = true;
                    ctx.fire_due(now.max(at));
                }
                effect
            }
        }
    };
    let state = if ctx.forget || (!existed && !ctx.changed) {
        None
    } else {
        Some(ctx.st)
    };
    Decision {
        state,
        changed: ctx.changed,
        outputs: ctx.outputs,
        effect,
    }
}

struct Ctx<'a> {
    customer_id: &'a str,
    policy: &'a PolicySet,
    st: CustomerState,
    outputs: Vec<OutputRecord>,
    changed: bool,
    forget: bool,
}

/// Stamps the outputs of one cause: their time, ids and causation.
struct Emitter {
    cause: Cause,
    causation_id: String,
    correlation_id: Option<String>,
    at: Timestamp,
    count: usize,
}

impl Emitter {
    fn for_event(env: &InputEnvelope, at: Timestamp) -> Self {
        Emitter {
            cause: Cause::Event {
                customer_id: env.customer_id.clone(),
                event_id: env.event_id.clone(),
            },
            causation_id: env.event_id.clone(),
            correlation_id: env.correlation_id.clone(),
            at,
            count: 0,
        }
    }

    fn for_timer(termination: &Termination, kind: TimerKind, due: Timestamp) -> Self {
        Emitter {
            cause: Cause::Timer {
                termination: termination.id,
                kind,
                due,
            },
            causation_id: termination.cause.clone(),
            correlation_id: termination.correlation_id.clone(),
            at: due,
            count: 0,
        }
    }
}

impl<'a> Ctx<'a> {
    fn emit(&mut self, em: &mut Emitter, event: OutputEvent) {
        let envelope = OutputEnvelope {
            event_id: em.cause.output_id(em.count),
            event_type: event.event_type(),
            event_time: Rfc3339(em.at),
            correlation_id: em.correlation_id.clone(),
            source: self.policy.source.clone(),
            causation_id: em.causation_id.clone(),
            event,
        };
        em.count += 1;
        self.outputs.push(OutputRecord {
            topic: envelope.event.topic(),
            key: self.customer_id.to_owned(),
            envelope,
        });
    }

    fn reject(&mut self, em: &mut Emitter, code: RejectionCode, detail: String) -> Effect {
        let customer_id = self.customer_id.to_owned();
        self.emit(
            em,
            OutputEvent::TerminationRejected {
                customer_id,
                reason_code: code,
                detail,
            },
        );
        Effect::Rejected(code)
    }

    /// After anonymisation nothing can change any more, whatever is asked.
    fn reject_anonymized(&mut self, em: &mut Emitter) -> Effect {
        self.reject(
            em,
            RejectionCode::RecordsAnonymized,
            "the customer's records were anonymised".into(),
        )
    }

    fn remember(&mut self, print: u64) {
        let window = self.policy.dedup_window.max(1);
        while self.st.seen.len() >= window {
            self.st.seen.pop_front();
        }
        self.st.seen.push_back(print);
    }

    // ---- timers -----------------------------------------------------------

    fn fire_due(&mut self, limit: Timestamp) {
        for _ in 0..MAX_TIMERS_PER_STEP {
            if self.forget {
                return;
            }
            match self.st.next_timer() {
                Some((due, kind)) if due <= limit => {
                    self.st.clock = self.st.clock.max(due);
                    self.changed = true;
                    self.fire(kind, due);
                }
                _ => return,
            }
        }
    }

    fn fire(&mut self, kind: TimerKind, due: Timestamp) {
        let phase = std::mem::replace(&mut self.st.phase, Phase::Active);
        self.st.phase = match (kind, phase) {
            (TimerKind::Effective, Phase::Pending { termination }) => {
                let mut em = Emitter::for_timer(&termination, kind, due);
                self.start_dismantling(&mut em, termination, due)
            }
            (
                TimerKind::DismantleDeadline,
                Phase::Dismantling {
                    termination,
                    mut dismantle,
                },
            ) => {
                let mut em = Emitter::for_timer(&termination, kind, due);
                dismantle.stalled = true;
                self.emit(
                    &mut em,
                    OutputEvent::TerminationStalled {
                        customer_id: self.customer_id.to_owned(),
                        termination_id: termination.id,
                        awaiting: dismantle.awaiting(),
                    },
                );
                Phase::Dismantling {
                    termination,
                    dismantle,
                }
            }
            (TimerKind::Retention, Phase::Terminated { termination, .. }) => {
                let rule = self.rule_of(&termination);
                let mut em = Emitter::for_timer(&termination, kind, due);
                self.emit(
                    &mut em,
                    OutputEvent::CustomerRecordsAnonymized {
                        customer_id: self.customer_id.to_owned(),
                        termination_id: termination.id,
                    },
                );
                self.st.services_terminated_at = None;
                Phase::Anonymized {
                    termination_id: termination.id,
                    anonymized_at: due,
                    forget_at: due.plus_period(rule.forget_after),
                }
            }
            (TimerKind::Forget, Phase::Anonymized { .. }) => {
                // Nothing is kept: a later event in this same step meets a
                // customer never seen before (see `decide`).
                self.forget = true;
                self.st = CustomerState::new();
                Phase::Active
            }
            // next_timer() derives the kind from the phase, so no other pair occurs.
            (_, phase) => phase,
        };
    }

    fn start_dismantling(
        &mut self,
        em: &mut Emitter,
        termination: Termination,
        at: Timestamp,
    ) -> Phase {
        for vertical in Vertical::ALL {
            self.emit(
                em,
                OutputEvent::DismantleSolution {
                    customer_id: self.customer_id.to_owned(),
                    termination_id: termination.id,
                    vertical,
                    category: termination.category,
                    effective_at: Rfc3339(termination.effective_at),
                    attempt: 1,
                },
            );
        }
        let fresh = VerticalProgress {
            attempt: 1,
            status: VerticalStatus::Awaiting,
        };
        Phase::Dismantling {
            dismantle: Dismantle {
                started_at: at,
                deadline: at.plus_period(self.rule_of(&termination).dismantle_deadline),
                verticals: [fresh.clone(), fresh.clone(), fresh],
                stalled: false,
            },
            termination,
        }
    }

    // ---- events -----------------------------------------------------------

    fn on_event(&mut self, env: &InputEnvelope, at: Timestamp) -> Effect {
        let mut em = Emitter::for_event(env, at);
        match &env.event {
            InputEvent::CustomerTerminationRequested {
                requested_effective_date,
                erasure_requested,
            } => self.on_trigger(
                &mut em,
                env,
                Category::CustomerRequest,
                None,
                *erasure_requested,
                *requested_effective_date,
            ),
            InputEvent::CustomerDeceased { evidence_ref } => self.on_trigger(
                &mut em,
                env,
                Category::CustomerDeceased,
                Some(evidence_ref),
                false,
                None,
            ),
            InputEvent::OrganizationDissolved { evidence_ref } => self.on_trigger(
                &mut em,
                env,
                Category::OrganizationDissolved,
                Some(evidence_ref),
                false,
                None,
            ),
            InputEvent::FraudConfirmed { case_ref } => {
                self.on_trigger(&mut em, env, Category::Fraud, Some(case_ref), false, None)
            }
            InputEvent::EnterpriseTerminationDecided { approval_ref } => self.on_trigger(
                &mut em,
                env,
                Category::EnterpriseDecision,
                Some(approval_ref),
                false,
                None,
            ),
            InputEvent::CustomerTerminationWithdrawn => self.on_withdrawal(&mut em, true),
            InputEvent::TerminationDecisionRevoked => self.on_withdrawal(&mut em, false),
            InputEvent::AllServicesTerminated => {
                if !matches!(self.st.phase, Phase::Anonymized { .. }) {
                    self.st.services_terminated_at = Some(at);
                }
                Effect::Applied
            }
            InputEvent::RelationshipReestablishmentRequested => self.on_reestablishment(&mut em),
            InputEvent::LegalHoldPlaced { hold_ref } => self.on_hold_placed(&mut em, hold_ref),
            InputEvent::LegalHoldReleased { hold_ref } => {
                self.on_hold_released(&mut em, hold_ref, at)
            }
            InputEvent::DismantleCompleted {
                termination_id,
                vertical,
            } => self.on_outcome(&mut em, *termination_id, *vertical, None),
            InputEvent::DismantleFailed {
                termination_id,
                vertical,
                retryable,
            } => self.on_outcome(&mut em, *termination_id, *vertical, Some(*retryable)),
        }
    }

    /// The rule a termination recorded, in the current policy.
    fn rule_of(&self, termination: &Termination) -> &'a Rule {
        let policy: &'a PolicySet = self.policy;
        policy.rule_named(termination.policy_rule.as_deref())
    }

    /// The rule for a trigger: chosen by its market and segment. A trigger that
    /// names neither, arriving while a termination is pending, keeps that
    /// termination's rule: a fraud or death notice rarely knows the market, and
    /// must not move a customer of one market to the default rule.
    fn rule_for_trigger(&self, env: &InputEnvelope) -> &'a Rule {
        let policy: &'a PolicySet = self.policy;
        match &self.st.phase {
            Phase::Pending { termination } if env.market.is_none() && env.segment.is_none() => {
                self.rule_of(termination)
            }
            _ => policy.select(env.market.as_deref(), env.segment.as_deref()),
        }
    }

    /// `reference` is `None` for a trigger that needs none (a customer's own
    /// request), else the evidence, case or approval reference it carried.
    fn on_trigger(
        &mut self,
        em: &mut Emitter,
        env: &InputEnvelope,
        category: Category,
        reference: Option<&Option<String>>,
        erasure_requested: bool,
        requested: Option<Timestamp>,
    ) -> Effect {
        if matches!(self.st.phase, Phase::Anonymized { .. }) {
            return self.reject_anonymized(em);
        }
        let rule = self.rule_for_trigger(env);
        let reference_ok = !rule.require_evidence || reference.is_none_or(Option::is_some);
        if !reference_ok {
            return if category == Category::EnterpriseDecision {
                self.reject(
                    em,
                    RejectionCode::MissingApproval,
                    "an enterprise termination decision needs its approvalRef".into(),
                )
            } else {
                self.reject(
                    em,
                    RejectionCode::MissingEvidence,
                    format!(
                        "a {category} termination needs its evidence reference (evidenceRef, or caseRef for fraud)"
                    ),
                )
            };
        }
        let earliest = em.at.plus_period(rule.notice(category));
        // The customer's requested date is honoured when it respects the notice.
        let effective_at = requested.map_or(earliest, |r| r.max(earliest));
        let phase = std::mem::replace(&mut self.st.phase, Phase::Active);
        let (phase, effect) = match phase {
            Phase::Active => {
                let termination = Termination {
                    id: termination_id(&env.customer_id, &env.event_id),
                    category,
                    effective_at,
                    erasure_requested,
                    cause: env.event_id.clone(),
                    correlation_id: env.correlation_id.clone(),
                    policy_rule: Some(rule.name.clone()),
                };
                self.announce(em, &termination);
                (Phase::Pending { termination }, Effect::Applied)
            }
            Phase::Pending { mut termination }
                if category.is_strong() && !termination.category.is_strong() =>
            {
                // Same termination, stronger grounds: downstream keeps one id.
                termination.category = category;
                termination.effective_at = termination.effective_at.min(effective_at);
                termination.cause = env.event_id.clone();
                termination.correlation_id = env.correlation_id.clone();
                termination.policy_rule = Some(rule.name.clone());
                self.announce(em, &termination);
                (Phase::Pending { termination }, Effect::Applied)
            }
            phase @ Phase::Pending { .. } => {
                let detail = pending_detail(&phase);
                let effect = self.reject(em, RejectionCode::AlreadyPending, detail);
                (phase, effect)
            }
            phase @ (Phase::Dismantling { .. } | Phase::Terminated { .. }) => {
                let detail = format!(
                    "the relationship is already {} (termination {})",
                    if matches!(phase, Phase::Dismantling { .. }) {
                        "being dismantled"
                    } else {
                        "terminated"
                    },
                    phase.termination_id().unwrap_or_default()
                );
                let effect = self.reject(em, RejectionCode::AlreadyTerminated, detail);
                (phase, effect)
            }
            phase @ Phase::Anonymized { .. } => {
                let effect = self.reject_anonymized(em);
                (phase, effect)
            }
        };
        self.st.phase = phase;
        effect
    }

    fn announce(&mut self, em: &mut Emitter, termination: &Termination) {
        self.emit(
            em,
            OutputEvent::TerminationAccepted {
                customer_id: self.customer_id.to_owned(),
                termination_id: termination.id,
                category: termination.category,
                effective_at: Rfc3339(termination.effective_at),
                notify_customer: termination.category.notifies_customer(),
                policy_rule: self.rule_of(termination).name.clone(),
            },
        );
    }

    fn on_withdrawal(&mut self, em: &mut Emitter, by_customer: bool) -> Effect {
        let who = if by_customer { "withdraw" } else { "revoke" };
        match &self.st.phase {
            Phase::Pending { termination } => {
                let allowed = if by_customer {
                    termination.category == Category::CustomerRequest
                } else {
                    matches!(
                        termination.category,
                        Category::EnterpriseDecision | Category::Fraud
                    )
                };
                if !allowed {
                    let detail = format!(
                        "the pending termination {} is a {} termination, which this event cannot {who}",
                        termination.id, termination.category
                    );
                    return self.reject(em, RejectionCode::NotWithdrawable, detail);
                }
                let termination_id = termination.id;
                self.emit(
                    em,
                    OutputEvent::TerminationWithdrawn {
                        customer_id: self.customer_id.to_owned(),
                        termination_id,
                    },
                );
                self.st.phase = Phase::Active;
                Effect::Applied
            }
            Phase::Active => self.reject(
                em,
                RejectionCode::NothingToWithdraw,
                format!("no termination is pending, nothing to {who}"),
            ),
            Phase::Anonymized { .. } => self.reject_anonymized(em),
            phase => {
                let detail = format!(
                    "termination {} is {}: too late to {who}",
                    phase.termination_id().unwrap_or_default(),
                    phase.name()
                );
                self.reject(em, RejectionCode::TooLateToWithdraw, detail)
            }
        }
    }

    fn on_reestablishment(&mut self, em: &mut Emitter) -> Effect {
        match &self.st.phase {
            Phase::Terminated {
                termination,
                reestablishable: true,
                ..
            } => {
                let previous_termination_id = termination.id;
                self.emit(
                    em,
                    OutputEvent::RelationshipReestablished {
                        customer_id: self.customer_id.to_owned(),
                        previous_termination_id,
                    },
                );
                self.st.phase = Phase::Active;
                Effect::Applied
            }
            Phase::Terminated { termination, .. } => {
                let detail = format!(
                    "a relationship ended by a {} termination cannot be re-established",
                    termination.category
                );
                self.reject(em, RejectionCode::ReestablishmentNotAllowed, detail)
            }
            Phase::Anonymized { .. } => self.reject(
                em,
                RejectionCode::RecordsAnonymized,
                "the customer's records were anonymised; nothing is left to re-establish".into(),
            ),
            phase => {
                let detail = format!(
                    "the relationship is not terminated (state {}); a pending termination is withdrawn instead",
                    phase.name()
                );
                self.reject(em, RejectionCode::ReestablishmentNotAllowed, detail)
            }
        }
    }

    fn on_hold_placed(&mut self, em: &mut Emitter, hold_ref: &str) -> Effect {
        if matches!(self.st.phase, Phase::Anonymized { .. }) {
            return self.reject(
                em,
                RejectionCode::RecordsAnonymized,
                "the customer's records were already anonymised; there is nothing to hold".into(),
            );
        }
        if let Err(slot) = self.st.holds.binary_search_by(|h| h.as_str().cmp(hold_ref)) {
            self.st.holds.insert(slot, hold_ref.to_owned());
        }
        Effect::Applied
    }

    fn on_hold_released(&mut self, em: &mut Emitter, hold_ref: &str, at: Timestamp) -> Effect {
        if matches!(self.st.phase, Phase::Anonymized { .. }) {
            return self.reject_anonymized(em);
        }
        let Ok(slot) = self.st.holds.binary_search_by(|h| h.as_str().cmp(hold_ref)) else {
            return self.reject(
                em,
                RejectionCode::UnknownLegalHold,
                "no legal hold with this holdRef is in place".into(),
            );
        };
        self.st.holds.remove(slot);
        if self.st.holds.is_empty()
            && let Phase::Terminated { anonymize_at, .. } = &mut self.st.phase
        {
            // Anonymisation that waited for the hold happens now, not back-dated.
            *anonymize_at = (*anonymize_at).max(at);
        }
        Effect::Applied
    }

    fn on_outcome(
        &mut self,
        em: &mut Emitter,
        outcome_for: Uuid,
        vertical: Vertical,
        failure: Option<bool>,
    ) -> Effect {
        let max_attempts = match &self.st.phase {
            Phase::Dismantling { termination, .. } => self.rule_of(termination).max_attempts.max(1),
            _ => 1,
        };
        let Phase::Dismantling {
            termination,
            dismantle,
        } = &mut self.st.phase
        else {
            return Effect::Ignored(IgnoreReason::NotDismantling);
        };
        if termination.id != outcome_for {
            return Effect::Ignored(IgnoreReason::UnknownTermination);
        }
        let progress = &mut dismantle.verticals[vertical.index()];
        let termination_id = termination.id;
        let category = termination.category;
        let effective_at = termination.effective_at;
        match (failure, progress.status) {
            (_, VerticalStatus::Completed) | (Some(_), VerticalStatus::Failed) => {
                Effect::Ignored(IgnoreReason::VerticalSettled)
            }
            (None, _) => {
                progress.status = VerticalStatus::Completed;
                if dismantle.awaiting().is_empty() {
                    self.complete(em);
                }
                Effect::Applied
            }
            (Some(true), VerticalStatus::Awaiting) if progress.attempt < max_attempts => {
                progress.attempt += 1;
                let attempt = progress.attempt;
                self.emit(
                    em,
                    OutputEvent::DismantleSolution {
                        customer_id: self.customer_id.to_owned(),
                        termination_id,
                        vertical,
                        category,
                        effective_at: Rfc3339(effective_at),
                        attempt,
                    },
                );
                Effect::Applied
            }
            (Some(_), VerticalStatus::Awaiting) => {
                progress.status = VerticalStatus::Failed;
                if !dismantle.stalled {
                    dismantle.stalled = true;
                    let awaiting = dismantle.awaiting();
                    self.emit(
                        em,
                        OutputEvent::TerminationStalled {
                            customer_id: self.customer_id.to_owned(),
                            termination_id,
                            awaiting,
                        },
                    );
                }
                Effect::Applied
            }
        }
    }

    /// All three verticals are done: the relationship is terminated now.
    fn complete(&mut self, em: &mut Emitter) {
        let phase = std::mem::replace(&mut self.st.phase, Phase::Active);
        let Phase::Dismantling { termination, .. } = phase else {
            self.st.phase = phase;
            return;
        };
        let terminated_at = em.at;
        let retain_until = terminated_at.plus_period(
            self.rule_of(&termination)
                .retention_for(termination.category, termination.erasure_requested),
        );
        let reestablishable = termination.category.allows_reestablishment();
        self.emit(
            em,
            OutputEvent::RelationshipTerminated {
                customer_id: self.customer_id.to_owned(),
                termination_id: termination.id,
                category: termination.category,
                terminated_at: Rfc3339(terminated_at),
                retain_records_until: Rfc3339(retain_until),
                reestablishable,
                erasure_requested: termination.erasure_requested,
            },
        );
        self.st.phase = Phase::Terminated {
            termination,
            terminated_at,
            retain_until,
            anonymize_at: retain_until,
            reestablishable,
        };
    }
}

fn pending_detail(phase: &Phase) -> String {
    match phase {
        Phase::Pending { termination } => format!(
            "termination {} ({}) is already pending, effective {}",
            termination.id, termination.category, termination.effective_at
        ),
        _ => String::new(),
    }
}
