//! Bytes → validated input envelope.

use super::json::{self, Json, Object};
use super::{
    Category, DeadLetterReason, MAX_ID_LEN, MAX_TEXT_LEN, Topic, Vertical, is_market_code,
    is_segment_name,
};
use crate::time::Timestamp;
use uuid::Uuid;

/// A decoded input event: the envelope fields plus the typed event body.
#[derive(Clone, Debug, PartialEq)]
pub struct InputEnvelope {
    pub event_id: String,
    pub event_time: Timestamp,
    pub correlation_id: Option<String>,
    pub source: Option<String>,
    pub customer_id: String,
    /// `event.market` of a termination trigger: the ISO 3166-1 alpha-2 code of
    /// the customer's market, which selects the policy rule. Always `None` for
    /// other event types.
    pub market: Option<String>,
    /// `event.segment` of a termination trigger (`consumer`, `business`, …),
    /// which selects the policy rule with the market. `None` for other types.
    pub segment: Option<String>,
    pub event: InputEvent,
}

/// The input events of contract v1. Free text and personal details that no rule
/// needs (a customer's reason, a date of death) are validated and then dropped,
/// so they never reach the state or the logs.
#[derive(Clone, Debug, PartialEq)]
pub enum InputEvent {
    CustomerTerminationRequested {
        requested_effective_date: Option<Timestamp>,
        erasure_requested: bool,
    },
    CustomerTerminationWithdrawn,
    CustomerDeceased {
        evidence_ref: Option<String>,
    },
    OrganizationDissolved {
        evidence_ref: Option<String>,
    },
    AllServicesTerminated,
    RelationshipReestablishmentRequested,
    FraudConfirmed {
        case_ref: Option<String>,
    },
    EnterpriseTerminationDecided {
        approval_ref: Option<String>,
    },
    TerminationDecisionRevoked,
    LegalHoldPlaced {
        hold_ref: String,
    },
    LegalHoldReleased {
        hold_ref: String,
    },
    DismantleCompleted {
        termination_id: Uuid,
        vertical: Vertical,
    },
    DismantleFailed {
        termination_id: Uuid,
        vertical: Vertical,
        retryable: bool,
    },
}

/// Every input `eventType` with the topic it belongs on.
pub const INPUT_EVENT_TYPES: [(&str, Topic); 13] = [
    ("CustomerTerminationRequested", Topic::Lifecycle),
    ("CustomerTerminationWithdrawn", Topic::Lifecycle),
    ("CustomerDeceased", Topic::Lifecycle),
    ("OrganizationDissolved", Topic::Lifecycle),
    ("AllServicesTerminated", Topic::Lifecycle),
    ("RelationshipReestablishmentRequested", Topic::Lifecycle),
    ("FraudConfirmed", Topic::Decisions),
    ("EnterpriseTerminationDecided", Topic::Decisions),
    ("TerminationDecisionRevoked", Topic::Decisions),
    ("LegalHoldPlaced", Topic::Decisions),
    ("LegalHoldReleased", Topic::Decisions),
    ("DismantleCompleted", Topic::Outcomes),
    ("DismantleFailed", Topic::Outcomes),
];

impl InputEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            InputEvent::CustomerTerminationRequested { .. } => "CustomerTerminationRequested",
            InputEvent::CustomerTerminationWithdrawn => "CustomerTerminationWithdrawn",
            InputEvent::CustomerDeceased { .. } => "CustomerDeceased",
            InputEvent::OrganizationDissolved { .. } => "OrganizationDissolved",
            InputEvent::AllServicesTerminated => "AllServicesTerminated",
            InputEvent::RelationshipReestablishmentRequested => {
                "RelationshipReestablishmentRequested"
            }
            InputEvent::FraudConfirmed { .. } => "FraudConfirmed",
            InputEvent::EnterpriseTerminationDecided { .. } => "EnterpriseTerminationDecided",
            InputEvent::TerminationDecisionRevoked => "TerminationDecisionRevoked",
            InputEvent::LegalHoldPlaced { .. } => "LegalHoldPlaced",
            InputEvent::LegalHoldReleased { .. } => "LegalHoldReleased",
            InputEvent::DismantleCompleted { .. } => "DismantleCompleted",
            InputEvent::DismantleFailed { .. } => "DismantleFailed",
        }
    }

    /// The input topic this event type is published on.
    pub fn topic(&self) -> Topic {
        let name = self.event_type();
        INPUT_EVENT_TYPES
            .iter()
            .find(|(t, _)| *t == name)
            .map_or(Topic::Lifecycle, |(_, topic)| *topic)
    }

    /// The category a termination trigger asks for, if this event is one.
    pub fn trigger_category(&self) -> Option<Category> {
        match self {
            InputEvent::CustomerTerminationRequested { .. } => Some(Category::CustomerRequest),
            InputEvent::CustomerDeceased { .. } => Some(Category::CustomerDeceased),
            InputEvent::OrganizationDissolved { .. } => Some(Category::OrganizationDissolved),
            InputEvent::FraudConfirmed { .. } => Some(Category::Fraud),
            InputEvent::EnterpriseTerminationDecided { .. } => Some(Category::EnterpriseDecision),
            _ => None,
        }
    }
}

/// A refused input: a stable reason code and a message telling the producing team
/// what to fix. Messages name fields, never echo their values (they may be
/// personal data), not even `eventType`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct DecodeError {
    pub reason: DeadLetterReason,
    pub message: String,
}

impl DecodeError {
    pub fn new(reason: DeadLetterReason, message: impl Into<String>) -> Self {
        DecodeError {
            reason,
            message: message.into(),
        }
    }
}

/// Decodes and validates one JSON envelope of contract v1.
///
/// # Errors
/// A [`DecodeError`] naming the first problem found.
pub fn decode_envelope(bytes: &[u8]) -> Result<InputEnvelope, DecodeError> {
    let value = json::parse(bytes).map_err(|e| {
        DecodeError::new(
            DeadLetterReason::InvalidJson,
            format!(
                "value is not valid UTF-8 JSON ({} at line {} column {})",
                json_error_class(&e),
                e.line(),
                e.column()
            ),
        )
    })?;
    let Json::Object(root) = value else {
        return Err(DecodeError::new(
            DeadLetterReason::InvalidEnvelope,
            "value must be a JSON object with eventId, eventType, eventTime and event",
        ));
    };
    let root = Fields::new(&root, "");
    let event_type = root.required_str("eventType")?;
    let event_id = root.required_id("eventId")?;
    let event_time = root.required_time("eventTime")?;
    let correlation_id = root.optional_id("correlationId")?;
    let source = root.optional_id("source")?;
    let body = match root.get("event") {
        Some(Json::Object(map)) => Fields::new(map, "event."),
        Some(Json::Null) | None => {
            return Err(DecodeError::new(
                DeadLetterReason::MissingField,
                "required field `event` is missing",
            ));
        }
        Some(_) => {
            return Err(DecodeError::new(
                DeadLetterReason::InvalidField,
                "field `event` must be a JSON object",
            ));
        }
    };
    let customer_id = body.customer_id()?;
    let event = decode_body(event_type, &body)?;
    let (market, segment) = if event.trigger_category().is_some() {
        (body.optional_market()?, body.optional_segment()?)
    } else {
        (None, None)
    };
    Ok(InputEnvelope {
        event_id,
        event_time,
        correlation_id,
        source,
        customer_id,
        market,
        segment,
        event,
    })
}

fn decode_body(event_type: &str, body: &Fields<'_>) -> Result<InputEvent, DecodeError> {
    Ok(match event_type {
        "CustomerTerminationRequested" => {
            body.optional_text("reason")?;
            InputEvent::CustomerTerminationRequested {
                requested_effective_date: body.optional_date("requestedEffectiveDate")?,
                erasure_requested: body.optional_bool("erasureRequested")?.unwrap_or(false),
            }
        }
        "CustomerTerminationWithdrawn" => InputEvent::CustomerTerminationWithdrawn,
        "CustomerDeceased" => {
            body.optional_date("dateOfDeath")?;
            InputEvent::CustomerDeceased {
                evidence_ref: body.optional_id("evidenceRef")?,
            }
        }
        "OrganizationDissolved" => {
            body.optional_date("dissolutionDate")?;
            InputEvent::OrganizationDissolved {
                evidence_ref: body.optional_id("evidenceRef")?,
            }
        }
        "AllServicesTerminated" => InputEvent::AllServicesTerminated,
        "RelationshipReestablishmentRequested" => InputEvent::RelationshipReestablishmentRequested,
        "FraudConfirmed" => InputEvent::FraudConfirmed {
            case_ref: body.optional_id("caseRef")?,
        },
        "EnterpriseTerminationDecided" => {
            body.required_text("reason")?;
            InputEvent::EnterpriseTerminationDecided {
                approval_ref: body.optional_id("approvalRef")?,
            }
        }
        "TerminationDecisionRevoked" => InputEvent::TerminationDecisionRevoked,
        "LegalHoldPlaced" => InputEvent::LegalHoldPlaced {
            hold_ref: body.required_id("holdRef")?,
        },
        "LegalHoldReleased" => InputEvent::LegalHoldReleased {
            hold_ref: body.required_id("holdRef")?,
        },
        "DismantleCompleted" => InputEvent::DismantleCompleted {
            termination_id: body.required_uuid("terminationId")?,
            vertical: body.required_vertical()?,
        },
        "DismantleFailed" => {
            body.required_text("reason")?;
            InputEvent::DismantleFailed {
                termination_id: body.required_uuid("terminationId")?,
                vertical: body.required_vertical()?,
                retryable: body.required_bool("retryable")?,
            }
        }
        _ => {
            // The value is not echoed: an unknown eventType may carry anything.
            return Err(DecodeError::new(
                DeadLetterReason::UnknownEventType,
                format!(
                    "eventType is not an input event of contract v1 (expected one of: {})",
                    INPUT_EVENT_TYPES
                        .iter()
                        .map(|(t, _)| *t)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    })
}

fn json_error_class(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "data error",
        serde_json::error::Category::Eof => "unexpected end of input",
    }
}

/// Field access with messages that name the full path (`event.vertical`).
struct Fields<'a> {
    map: &'a Object<'a>,
    prefix: &'static str,
}

impl<'a> Fields<'a> {
    fn new(map: &'a Object<'a>, prefix: &'static str) -> Self {
        Fields { map, prefix }
    }

    fn get(&self, name: &str) -> Option<&'a Json<'a>> {
        self.map.get(name)
    }

    fn missing(&self, name: &str) -> DecodeError {
        DecodeError::new(
            DeadLetterReason::MissingField,
            format!("required field `{}{name}` is missing", self.prefix),
        )
    }

    fn invalid(&self, name: &str, what: &str) -> DecodeError {
        DecodeError::new(
            DeadLetterReason::InvalidField,
            format!("field `{}{name}` must be {what}", self.prefix),
        )
    }

    fn optional_string(&self, name: &str, max: usize) -> Result<Option<&'a str>, DecodeError> {
        match self.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Str(s)) if s.trim().is_empty() => {
                Err(self.invalid(name, "a non-empty string"))
            }
            Some(Json::Str(s)) if s.chars().count() > max => {
                Err(self.invalid(name, &format!("a string of at most {max} characters")))
            }
            Some(Json::Str(s)) => Ok(Some(s.as_ref())),
            Some(_) => Err(self.invalid(name, "a string")),
        }
    }

    fn required_str(&self, name: &str) -> Result<&'a str, DecodeError> {
        self.optional_string(name, MAX_TEXT_LEN)?
            .ok_or_else(|| self.missing(name))
    }

    fn optional_id(&self, name: &str) -> Result<Option<String>, DecodeError> {
        let id = self.optional_string(name, MAX_ID_LEN)?;
        if let Some(id) = id
            && id.chars().any(char::is_control)
        {
            return Err(self.invalid(name, "free of control characters"));
        }
        Ok(id.map(str::to_owned))
    }

    fn required_id(&self, name: &str) -> Result<String, DecodeError> {
        self.optional_id(name)?.ok_or_else(|| self.missing(name))
    }

    fn optional_text(&self, name: &str) -> Result<Option<&'a str>, DecodeError> {
        self.optional_string(name, MAX_TEXT_LEN)
    }

    fn required_text(&self, name: &str) -> Result<&'a str, DecodeError> {
        self.optional_text(name)?.ok_or_else(|| self.missing(name))
    }

    fn required_time(&self, name: &str) -> Result<Timestamp, DecodeError> {
        let text = self
            .optional_string(name, 64)?
            .ok_or_else(|| self.missing(name))?;
        Timestamp::parse_rfc3339(text).map_err(|_| {
            DecodeError::new(
                DeadLetterReason::InvalidTime,
                format!(
                    "field `{}{name}` must be an RFC 3339 date-time with an offset, for example 2026-11-27T10:15:00Z",
                    self.prefix
                ),
            )
        })
    }

    fn optional_date(&self, name: &str) -> Result<Option<Timestamp>, DecodeError> {
        let Some(text) = self.optional_string(name, 64)? else {
            return Ok(None);
        };
        Timestamp::parse_date_or_datetime(text)
            .map(Some)
            .map_err(|_| {
                DecodeError::new(
                    DeadLetterReason::InvalidTime,
                    format!(
                        "field `{}{name}` must be a date (2026-12-31) or an RFC 3339 date-time",
                        self.prefix
                    ),
                )
            })
    }

    fn optional_bool(&self, name: &str) -> Result<Option<bool>, DecodeError> {
        match self.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.invalid(name, "true or false")),
        }
    }

    fn required_bool(&self, name: &str) -> Result<bool, DecodeError> {
        self.optional_bool(name)?.ok_or_else(|| self.missing(name))
    }

    fn required_uuid(&self, name: &str) -> Result<Uuid, DecodeError> {
        let text = self
            .optional_string(name, MAX_ID_LEN)?
            .ok_or_else(|| self.missing(name))?;
        Uuid::parse_str(text).map_err(|_| {
            self.invalid(
                name,
                "the terminationId of the DismantleSolution being answered (a UUID)",
            )
        })
    }

    fn required_vertical(&self) -> Result<Vertical, DecodeError> {
        let text = self
            .optional_string("vertical", 32)?
            .ok_or_else(|| self.missing("vertical"))?;
        Vertical::parse(text).ok_or_else(|| {
            DecodeError::new(
                DeadLetterReason::InvalidEnumValue,
                format!(
                    "field `{}vertical` must be one of billing, fulfillment, assurance",
                    self.prefix
                ),
            )
        })
    }

    fn optional_market(&self) -> Result<Option<String>, DecodeError> {
        match self.optional_string("market", 2) {
            Ok(Some(m)) if is_market_code(m) => Ok(Some(m.to_owned())),
            Ok(None) => Ok(None),
            _ => Err(self.invalid(
                "market",
                "an ISO 3166-1 alpha-2 country code: two capital letters such as DE or GB",
            )),
        }
    }

    fn optional_segment(&self) -> Result<Option<String>, DecodeError> {
        match self.optional_string("segment", 32) {
            Ok(Some(s)) if is_segment_name(s) => Ok(Some(s.to_owned())),
            Ok(None) => Ok(None),
            _ => Err(self.invalid(
                "segment",
                "a segment name: 1 to 32 lowercase letters, digits or hyphens starting with a letter, such as consumer or business",
            )),
        }
    }

    fn customer_id(&self) -> Result<String, DecodeError> {
        let bad = |what: &str| {
            DecodeError::new(
                DeadLetterReason::InvalidCustomerId,
                format!("field `{}customerId` {what}", self.prefix),
            )
        };
        match self.get("customerId") {
            None | Some(Json::Null) => Err(bad("is required")),
            Some(Json::Str(s)) if s.trim().is_empty() => Err(bad("must not be empty")),
            Some(Json::Str(s)) if s.chars().count() > MAX_ID_LEN => {
                Err(bad(&format!("must be at most {MAX_ID_LEN} characters")))
            }
            Some(Json::Str(s)) if s.chars().any(char::is_control) => {
                Err(bad("must not contain control characters"))
            }
            Some(Json::Str(s)) => Ok(s.as_ref().to_owned()),
            Some(_) => Err(bad("must be a string")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str) -> Result<InputEnvelope, DecodeError> {
        decode_envelope(json.as_bytes())
    }

    fn reason(json: &str) -> DeadLetterReason {
        decode(json).expect_err("must be refused").reason
    }

    const OK: &str = r#"{"eventId":"e1","eventType":"CustomerTerminationRequested","eventTime":"2026-11-27T10:15:00Z","correlationId":"req-1","source":"care","event":{"customerId":"C-1","requestedEffectiveDate":"2026-12-31","reason":"moving","erasureRequested":true}}"#;

    #[test]
    fn decodes_a_full_request() {
        let env = decode(OK).unwrap();
        assert_eq!(env.event_id, "e1");
        assert_eq!(env.customer_id, "C-1");
        assert_eq!(env.correlation_id.as_deref(), Some("req-1"));
        assert_eq!(
            env.event,
            InputEvent::CustomerTerminationRequested {
                requested_effective_date: Some(
                    Timestamp::parse_rfc3339("2026-12-31T00:00:00Z").unwrap()
                ),
                erasure_requested: true,
            }
        );
        assert_eq!(env.event.topic(), Topic::Lifecycle);
    }

    #[test]
    fn every_failure_has_its_reason() {
        assert_eq!(reason("{"), DeadLetterReason::InvalidJson);
        assert_eq!(reason("[1]"), DeadLetterReason::InvalidEnvelope);
        assert_eq!(
            reason(
                r#"{"eventType":"AllServicesTerminated","eventTime":"2026-11-27T10:15:00Z","event":{"customerId":"C"}}"#
            ),
            DeadLetterReason::MissingField
        );
        assert_eq!(
            reason(
                r#"{"eventId":7,"eventType":"AllServicesTerminated","eventTime":"2026-11-27T10:15:00Z","event":{"customerId":"C"}}"#
            ),
            DeadLetterReason::InvalidField
        );
        assert_eq!(
            reason(
                r#"{"eventId":"e","eventType":"Nope","eventTime":"2026-11-27T10:15:00Z","event":{"customerId":"C"}}"#
            ),
            DeadLetterReason::UnknownEventType
        );
        assert_eq!(
            reason(
                r#"{"eventId":"e","eventType":"AllServicesTerminated","eventTime":"27/11/2026","event":{"customerId":"C"}}"#
            ),
            DeadLetterReason::InvalidTime
        );
        assert_eq!(
            reason(
                r#"{"eventId":"e","eventType":"AllServicesTerminated","eventTime":"2026-11-27T10:15:00Z","event":{"customerId":""}}"#
            ),
            DeadLetterReason::InvalidCustomerId
        );
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert_eq!(
            reason(&format!(
                r#"{{"eventId":"e","eventType":"AllServicesTerminated","eventTime":"2026-11-27T10:15:00Z","event":{{"customerId":"{long}"}}}}"#
            )),
            DeadLetterReason::InvalidCustomerId
        );
        assert_eq!(
            reason(
                r#"{"eventId":"e","eventType":"DismantleCompleted","eventTime":"2026-11-27T10:15:00Z","event":{"customerId":"C","terminationId":"6f1c1b1e-8c2a-5d1e-9b1a-1a2b3c4d5e6f","vertical":"catering"}}"#
            ),
            DeadLetterReason::InvalidEnumValue
        );
        assert_eq!(
            reason(
                r#"{"eventId":"e","eventType":"DismantleFailed","eventTime":"2026-11-27T10:15:00Z","event":{"customerId":"C","terminationId":"6f1c1b1e-8c2a-5d1e-9b1a-1a2b3c4d5e6f","vertical":"billing","reason":"x"}}"#
            ),
            DeadLetterReason::MissingField
        );
        assert_eq!(
            reason(
                r#"{"eventId":"e","eventType":"AllServicesTerminated","eventTime":"2026-11-27T10:15:00Z","event":"C"}"#
            ),
            DeadLetterReason::InvalidField
        );
    }

    #[test]
    fn messages_never_echo_field_values() {
        let err = decode(r#"{"eventId":"e","eventType":"CustomerDeceased","eventTime":"2026-11-27T10:15:00Z","event":{"customerId":"C","dateOfDeath":"secret-date-value"}}"#).unwrap_err();
        assert_eq!(err.reason, DeadLetterReason::InvalidTime);
        assert!(!err.message.contains("secret-date-value"));
    }

    #[test]
    fn market_and_segment_select_rules_on_triggers_only() {
        let env = decode(r#"{"eventId":"e","eventType":"FraudConfirmed","eventTime":"2026-11-27T10:15:00Z","event":{"customerId":"C","caseRef":"F","market":"DE","segment":"business"}}"#).unwrap();
        assert_eq!(env.market.as_deref(), Some("DE"));
        assert_eq!(env.segment.as_deref(), Some("business"));
        let env = decode(r#"{"eventId":"e","eventType":"LegalHoldPlaced","eventTime":"2026-11-27T10:15:00Z","event":{"customerId":"C","holdRef":"H","market":"nonsense"}}"#).unwrap();
        assert_eq!((env.market, env.segment), (None, None));
        for (field, value) in [
            ("market", r#""xq""#),
            ("market", r#""DEU""#),
            ("market", "49"),
            ("market", r#""""#),
            ("segment", r#""Secret Segment""#),
            ("segment", r#""""#),
            ("segment", "true"),
        ] {
            let json = format!(
                r#"{{"eventId":"e","eventType":"CustomerTerminationRequested","eventTime":"2026-11-27T10:15:00Z","event":{{"customerId":"C","{field}":{value}}}}}"#
            );
            let err = decode(&json).unwrap_err();
            assert_eq!(err.reason, DeadLetterReason::InvalidField, "{json}");
            assert!(err.message.contains(&format!("`event.{field}`")), "{err}");
            let shown = value.trim_matches('"');
            if !shown.is_empty() {
                assert!(!err.message.contains(shown), "echoes the value: {err}");
            }
        }
    }

    #[test]
    fn unknown_fields_are_ignored_for_forward_compatibility() {
        let env = decode(r#"{"eventId":"e","eventType":"AllServicesTerminated","eventTime":"2026-11-27T10:15:00Z","extra":1,"event":{"customerId":"C","future":true}}"#).unwrap();
        assert_eq!(env.event, InputEvent::AllServicesTerminated);
    }

    #[test]
    fn every_event_type_maps_to_its_topic() {
        for (name, topic) in INPUT_EVENT_TYPES {
            assert!(
                matches!(topic, Topic::Lifecycle | Topic::Decisions | Topic::Outcomes),
                "{name}"
            );
        }
        let fraud = InputEvent::FraudConfirmed { case_ref: None };
        assert_eq!(fraud.topic(), Topic::Decisions);
        assert_eq!(fraud.trigger_category(), Some(Category::Fraud));
    }
}
