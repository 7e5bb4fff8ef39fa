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
/// always does for ids within the contract's length limits: 128 characters
/// each, at most 4 bytes a character).
fn v5(name: fmt::Arguments<'_>) -> Uuid {
    let mut buf = [0u8; 1100];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    if cursor.write_fmt(name).is_ok() {
        let len = usize::try_from(cursor.position()).unwrap_or(0);
        return Uuid::new_v5(&NAMESPACE, &buf[..len]);
    }
    Uuid::new_v5(&NAMESPACE, fmt::format(name).as_bytes())
}

/// The id of the termination of `customer_id` accepted by input event
/// `event_id`. The customer is part of the name: two upstream systems that
/// reuse one eventId for two customers must not give them one terminationId.
/// The customer id's length in bytes comes first, so that no pair of ids can
/// produce the name of another pair (ids may contain `:`).
pub fn termination_id(customer_id: &str, event_id: &str) -> Uuid {
    v5(format_args!(
        "termination:{}:{customer_id}:{event_id}",
        customer_id.len()
    ))
}

/// What caused a batch of outputs: an input event of a customer, or a timer
/// of a termination (whose id already names the customer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    Event {
        customer_id: String,
        event_id: String,
    },
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
            Cause::Event {
                customer_id,
                event_id,
            } => v5(format_args!(
                "event:{}:{customer_id}:{event_id}#{ordinal}",
                customer_id.len()
            )),
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
            termination_id("C-1001", "care-7f3a91"),
            Uuid::new_v5(&namespace(), b"termination:6:C-1001:care-7f3a91")
        );
        assert_eq!(termination_id("C", "e1"), termination_id("C", "e1"));
        assert_ne!(termination_id("C", "e1"), termination_id("C", "e2"));
        assert_eq!(termination_id("C", "e1").get_version_num(), 5);
        let c = event("C", "e1");
        assert_ne!(c.output_id(0), c.output_id(1));
    }

    fn event(customer: &str, id: &str) -> Cause {
        Cause::Event {
            customer_id: customer.into(),
            event_id: id.into(),
        }
    }

    #[test]
    fn two_customers_sharing_an_event_id_get_different_ids() {
        assert_ne!(termination_id("C-1", "e1"), termination_id("C-2", "e1"));
        assert_ne!(
            event("C-1", "e1").output_id(0),
            event("C-2", "e1").output_id(0)
        );
        // The length prefix keeps `:` inside ids from colliding.
        assert_ne!(termination_id("a:b", "c"), termination_id("a", "b:c"));
        assert_ne!(
            event("a:b", "c").output_id(0),
            event("a", "b:c").output_id(0)
        );
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
            termination_id("C", &long),
            Uuid::new_v5(&namespace(), format!("termination:1:C:{long}").as_bytes())
        );
        let short = "e".repeat(128);
        let widest = "\u{10348}".repeat(128);
        assert_eq!(
            event(&widest, &short).output_id(3),
            Uuid::new_v5(
                &namespace(),
                format!("event:512:{widest}:{short}#3").as_bytes()
            )
        );
    }
}
