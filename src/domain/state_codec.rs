//! The compact binary changelog record of a [`CustomerState`].
//!
//! JSON states cost a restore about 7 µs each to parse; this layout reads in
//! well under one. Every record starts with a marker byte that JSON can never
//! start with, so readers tell the two apart and old JSON changelogs stay
//! readable. `terminus inspect --from-changelog --json` prints any record as
//! JSON; docs/design.md ("State record") describes the layout.
//!
//! ```text
//! 0x00                     marker: binary (a JSON record starts with '{')
//! u8       layout          BINARY_LAYOUT (1)
//! varint   v               the state version (as in the JSON record)
//! zigzag   clock           milliseconds since the epoch
//! u8       phase           0 Active, 1 Pending, 2 Dismantling, 3 Terminated, 4 Anonymized
//!          …phase fields   see `write_phase`
//! varint n, n × str        legal holds
//! opt zigzag               services_terminated_at
//! varint n, n × u64 LE     dedup fingerprints, oldest first
//! ```
//! `str` is a varint length and UTF-8 bytes; `opt` is a byte 0 or 1 and the
//! value; a timestamp is a zigzag varint of milliseconds; a UUID is 16 bytes.
//! Anything after the last field is refused, as is an unknown tag.

use super::state::{
    CustomerState, Dismantle, Phase, StateDecodeError, Termination, VerticalProgress,
    VerticalStatus,
};
use crate::contract::Category;
use crate::time::Timestamp;
use std::collections::VecDeque;
use uuid::Uuid;

/// The first byte of a binary record.
pub const BINARY_MARKER: u8 = 0x00;

/// Whether a changelog value is a binary state record (else JSON).
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes.first() == Some(&BINARY_MARKER)
}
/// The byte layout this release writes and reads.
pub const BINARY_LAYOUT: u8 = 1;

pub fn encode(state: &CustomerState) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(96 + state.seen.len() * 8));
    w.byte(BINARY_MARKER);
    w.byte(BINARY_LAYOUT);
    w.varint(u64::from(state.v));
    w.ts(state.clock);
    write_phase(&mut w, &state.phase);
    w.varint(state.holds.len() as u64);
    for h in &state.holds {
        w.str(h);
    }
    w.opt_ts(state.services_terminated_at);
    w.varint(state.seen.len() as u64);
    for f in &state.seen {
        w.0.extend_from_slice(&f.to_le_bytes());
    }
    w.0
}

/// Reads a binary record (the caller checked the marker).
///
/// # Errors
/// [`StateDecodeError::Malformed`] for a truncated or unknown layout, tag or
/// trailing bytes.
pub fn decode(bytes: &[u8]) -> Result<CustomerState, StateDecodeError> {
    let mut r = Reader { bytes, at: 0 };
    if r.byte()? != BINARY_MARKER {
        return Err(malformed("not a binary state record"));
    }
    let layout = r.byte()?;
    if layout != BINARY_LAYOUT {
        return Err(StateDecodeError::Malformed(format!(
            "binary state layout {layout} is unknown to this release (it reads {BINARY_LAYOUT}); upgrade Terminus"
        )));
    }
    let v = u32::try_from(r.varint()?).map_err(|_| malformed("state version out of range"))?;
    let clock = r.ts()?;
    let phase = read_phase(&mut r)?;
    let holds = (0..r.count()?)
        .map(|_| r.str())
        .collect::<Result<Vec<_>, _>>()?;
    let services_terminated_at = r.opt_ts()?;
    let seen = (0..r.count()?)
        .map(|_| r.u64_le())
        .collect::<Result<VecDeque<_>, _>>()?;
    if r.at != bytes.len() {
        return Err(malformed("trailing bytes after the state"));
    }
    Ok(CustomerState {
        v,
        clock,
        phase,
        holds,
        services_terminated_at,
        seen,
    })
}

fn write_phase(w: &mut Writer, phase: &Phase) {
    match phase {
        Phase::Active => w.byte(0),
        Phase::Pending { termination } => {
            w.byte(1);
            write_termination(w, termination);
        }
        Phase::Dismantling {
            termination,
            dismantle,
        } => {
            w.byte(2);
            write_termination(w, termination);
            w.ts(dismantle.started_at);
            w.ts(dismantle.deadline);
            for v in &dismantle.verticals {
                w.varint(u64::from(v.attempt));
                w.byte(match v.status {
                    VerticalStatus::Awaiting => 0,
                    VerticalStatus::Completed => 1,
                    VerticalStatus::Failed => 2,
                });
            }
            w.byte(u8::from(dismantle.stalled));
        }
        Phase::Terminated {
            termination,
            terminated_at,
            retain_until,
            anonymize_at,
            reestablishable,
        } => {
            w.byte(3);
            write_termination(w, termination);
            w.ts(*terminated_at);
            w.ts(*retain_until);
            w.ts(*anonymize_at);
            w.byte(u8::from(*reestablishable));
        }
        Phase::Anonymized {
            termination_id,
            anonymized_at,
            forget_at,
        } => {
            w.byte(4);
            w.0.extend_from_slice(termination_id.as_bytes());
            w.ts(*anonymized_at);
            w.ts(*forget_at);
        }
    }
}

fn read_phase(r: &mut Reader<'_>) -> Result<Phase, StateDecodeError> {
    Ok(match r.byte()? {
        0 => Phase::Active,
        1 => Phase::Pending {
            termination: read_termination(r)?,
        },
        2 => {
            let termination = read_termination(r)?;
            let started_at = r.ts()?;
            let deadline = r.ts()?;
            let mut vertical = || -> Result<VerticalProgress, StateDecodeError> {
                let attempt =
                    u32::try_from(r.varint()?).map_err(|_| malformed("attempt out of range"))?;
                let status = match r.byte()? {
                    0 => VerticalStatus::Awaiting,
                    1 => VerticalStatus::Completed,
                    2 => VerticalStatus::Failed,
                    t => return Err(malformed(&format!("unknown vertical status {t}"))),
                };
                Ok(VerticalProgress { attempt, status })
            };
            let verticals = [vertical()?, vertical()?, vertical()?];
            Phase::Dismantling {
                termination,
                dismantle: Dismantle {
                    started_at,
                    deadline,
                    verticals,
                    stalled: r.bool()?,
                },
            }
        }
        3 => Phase::Terminated {
            termination: read_termination(r)?,
            terminated_at: r.ts()?,
            retain_until: r.ts()?,
            anonymize_at: r.ts()?,
            reestablishable: r.bool()?,
        },
        4 => Phase::Anonymized {
            termination_id: r.uuid()?,
            anonymized_at: r.ts()?,
            forget_at: r.ts()?,
        },
        t => return Err(malformed(&format!("unknown phase tag {t}"))),
    })
}

fn write_termination(w: &mut Writer, t: &Termination) {
    w.0.extend_from_slice(t.id.as_bytes());
    w.byte(category_tag(t.category));
    w.ts(t.effective_at);
    w.byte(u8::from(t.erasure_requested));
    w.str(&t.cause);
    w.opt_str(t.correlation_id.as_deref());
    w.opt_str(t.policy_rule.as_deref());
}

fn read_termination(r: &mut Reader<'_>) -> Result<Termination, StateDecodeError> {
    let id = r.uuid()?;
    let tag = r.byte()?;
    let category = Category::ALL
        .into_iter()
        .find(|c| category_tag(*c) == tag)
        .ok_or_else(|| malformed(&format!("unknown category tag {tag}")))?;
    Ok(Termination {
        id,
        category,
        effective_at: r.ts()?,
        erasure_requested: r.bool()?,
        cause: r.str()?,
        correlation_id: r.opt_str()?,
        policy_rule: r.opt_str()?,
    })
}

/// Fixed tags: the order of `Category::ALL` may change, the bytes may not.
const fn category_tag(c: Category) -> u8 {
    match c {
        Category::CustomerRequest => 0,
        Category::CustomerDeceased => 1,
        Category::OrganizationDissolved => 2,
        Category::Fraud => 3,
        Category::EnterpriseDecision => 4,
    }
}

fn malformed(what: &str) -> StateDecodeError {
    StateDecodeError::Malformed(format!("binary state record: {what}"))
}

struct Writer(Vec<u8>);

impl Writer {
    fn byte(&mut self, b: u8) {
        self.0.push(b);
    }

    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn ts(&mut self, t: Timestamp) {
        let m = t.millis();
        self.varint(((m << 1) ^ (m >> 63)) as u64);
    }

    fn opt_ts(&mut self, t: Option<Timestamp>) {
        match t {
            None => self.byte(0),
            Some(t) => {
                self.byte(1);
                self.ts(t);
            }
        }
    }

    fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.byte(0),
            Some(s) => {
                self.byte(1);
                self.str(s);
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], StateDecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| malformed("truncated"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, StateDecodeError> {
        Ok(self.take(1)?[0])
    }

    fn bool(&mut self) -> Result<bool, StateDecodeError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(malformed(&format!("flag byte {b}"))),
        }
    }

    fn varint(&mut self) -> Result<u64, StateDecodeError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(malformed("varint too long"))
    }

    /// A length or count: never more than the bytes left could hold.
    fn count(&mut self) -> Result<usize, StateDecodeError> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.bytes.len() - self.at)
            .ok_or_else(|| malformed("length past the end"))
    }

    fn ts(&mut self) -> Result<Timestamp, StateDecodeError> {
        let z = self.varint()?;
        Ok(Timestamp::from_millis(
            ((z >> 1) as i64) ^ -((z & 1) as i64),
        ))
    }

    fn opt_ts(&mut self) -> Result<Option<Timestamp>, StateDecodeError> {
        Ok(if self.bool()? { Some(self.ts()?) } else { None })
    }

    fn str(&mut self) -> Result<String, StateDecodeError> {
        let n = self.count()?;
        let raw = self.take(n)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| malformed("text is not UTF-8"))
    }

    fn opt_str(&mut self) -> Result<Option<String>, StateDecodeError> {
        Ok(if self.bool()? {
            Some(self.str()?)
        } else {
            None
        })
    }

    fn uuid(&mut self) -> Result<Uuid, StateDecodeError> {
        let raw = self.take(16)?;
        let mut b = [0u8; 16];
        b.copy_from_slice(raw);
        Ok(Uuid::from_bytes(b))
    }

    fn u64_le(&mut self) -> Result<u64, StateDecodeError> {
        let raw = self.take(8)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(raw);
        Ok(u64::from_le_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn termination() -> Termination {
        Termination {
            id: Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
            category: Category::OrganizationDissolved,
            effective_at: Timestamp::from_millis(1_790_000_000_000),
            erasure_requested: true,
            cause: "evt-17".into(),
            correlation_id: Some("corr-9".into()),
            policy_rule: None,
        }
    }

    fn samples() -> Vec<CustomerState> {
        let mut base = CustomerState::new();
        base.holds = vec!["LH-1".into(), "LH-2".into()];
        base.seen = [1u64, u64::MAX, 42].into_iter().collect();
        base.services_terminated_at = Some(Timestamp::from_millis(-5));
        let phases = vec![
            Phase::Active,
            Phase::Pending {
                termination: termination(),
            },
            Phase::Dismantling {
                termination: termination(),
                dismantle: Dismantle {
                    started_at: Timestamp::from_millis(1),
                    deadline: Timestamp::from_millis(2),
                    verticals: [
                        VerticalProgress {
                            attempt: 1,
                            status: VerticalStatus::Completed,
                        },
                        VerticalProgress {
                            attempt: 300,
                            status: VerticalStatus::Failed,
                        },
                        VerticalProgress {
                            attempt: 0,
                            status: VerticalStatus::Awaiting,
                        },
                    ],
                    stalled: true,
                },
            },
            Phase::Terminated {
                termination: termination(),
                terminated_at: Timestamp::from_millis(3),
                retain_until: Timestamp::from_millis(4),
                anonymize_at: Timestamp::from_millis(5),
                reestablishable: true,
            },
            Phase::Anonymized {
                termination_id: Uuid::from_u128(7),
                anonymized_at: Timestamp::MIN,
                forget_at: Timestamp::from_millis(i64::MAX / 4),
            },
        ];
        phases
            .into_iter()
            .map(|phase| CustomerState {
                phase,
                ..base.clone()
            })
            .chain([CustomerState::new()])
            .collect()
    }

    #[test]
    fn every_phase_round_trips() {
        for state in samples() {
            let bytes = encode(&state);
            assert_eq!(bytes[0], BINARY_MARKER);
            assert_eq!(decode(&bytes).expect("reads back"), state);
        }
    }

    #[test]
    fn smaller_than_json() {
        for state in samples() {
            let json = serde_json::to_vec(&state).expect("json");
            assert!(encode(&state).len() * 2 < json.len(), "{state:?}");
        }
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_refused() {
        for state in samples() {
            let bytes = encode(&state);
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} of {state:?}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode(&longer).is_err());
        }
    }

    #[test]
    fn unknown_layout_says_upgrade() {
        let mut bytes = encode(&CustomerState::new());
        bytes[1] = BINARY_LAYOUT + 1;
        let err = decode(&bytes).expect_err("refused").to_string();
        assert!(err.contains("upgrade"), "{err}");
    }

    #[test]
    fn a_huge_length_is_refused_without_allocating() {
        // marker, layout, v=1, clock 0, Active, then 2^62 holds.
        let bytes = [
            0, 1, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f,
        ];
        assert!(decode(&bytes).is_err());
    }
}
