//! Deterministic ids: UUIDv5 of their cause, so a replay yields the same ids.

use crate::domain::TimerKind;
use crate::time::Timestamp;
use std::fmt;
use std::io::Write;
use uuid::Uuid;

/// UUIDv5 of the URL `urn:terminus:v1` in the URL namespace, precomputed (the
/// test below pins it): every id is derived on the hot path.
const NAMESPACE: Uuid = Uuid::from_u128(0x1580_ea54_7ac1_589d_81aa_9686_20f0_2e89);

/// The namespace of every id Terminus derives (UUIDv5 of the URL
/// `urn:terminus:v1` in the URL namespace).
pub fn namespace() -> Uuid {
    NAMESPACE
}

/// UUIDv5 of the formatted name, formatted on the stack when it fits (it
/// always does for ids within the contract's length limits).
fn v5(name: fmt::Arguments<'_>) -> Uuid {
    let mut buf = [0u8; 320];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    if cursor.write_fmt(name).is_ok() {
        let len = usize::try_from(cursor.position()).unwrap_or(0);
        return Uuid::new_v5(&NAMESPACE, &buf[..len]);
    }
    Uuid::new_v5(&NAMESPACE, fmt::format(name).as_bytes())
}

/// The id of the termination accepted by input event `event_id`.
pub fn termination_id(event_id: &str) -> Uuid {
    v5(format_args!("termination:{event_id}"))
}

/// What caused a batch of outputs: an input event, or a timer of a termination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    Event(String),
    Timer {
        termination: Uuid,
        kind: TimerKind,
        due: Timestamp,
    },
}

impl Cause {
    /// The id of the `ordinal`-th output of this cause.
    pub fn output_id(&self, ordinal: usize) -> Uuid {
        match self {
            Cause::Event(id) => v5(format_args!("event:{id}#{ordinal}")),
            Cause::Timer {
                termination,
                kind,
                due,
            } => v5(format_args!(
                "timer:{termination}:{}:{}#{ordinal}",
                kind.as_str(),
                due.millis()
            )),
        }
    }
}

/// A stable 64-bit fingerprint (FNV-1a) of an event id for the dedup memory:
/// eight bytes instead of the id, so a million customers' memories fit in RAM.
pub fn fingerprint(event_id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in event_id.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_across_releases() {
        // Pinned values: changing the derivation would change every id downstream
        // services have stored.
        assert_eq!(fingerprint(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            termination_id("care-7f3a91").to_string(),
            "5a93143e-b7ce-5eda-81e5-4acf3520c15e"
        );
        assert_eq!(termination_id("e1"), termination_id("e1"));
        assert_ne!(termination_id("e1"), termination_id("e2"));
        assert_eq!(termination_id("e1").get_version_num(), 5);
        let c = Cause::Event("e1".into());
        assert_ne!(c.output_id(0), c.output_id(1));
    }

    #[test]
    fn the_precomputed_namespace_is_the_derived_one() {
        assert_eq!(
            namespace(),
            Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:terminus:v1")
        );
    }

    #[test]
    fn names_too_long_for_the_stack_buffer_hash_the_same() {
        let long = "é".repeat(300);
        assert_eq!(
            termination_id(&long),
            Uuid::new_v5(&namespace(), format!("termination:{long}").as_bytes())
        );
        let short = "e".repeat(128);
        assert_eq!(
            Cause::Event(short.clone()).output_id(3),
            Uuid::new_v5(&namespace(), format!("event:{short}#3").as_bytes())
        );
    }
}
