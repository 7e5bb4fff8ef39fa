//! Business time as milliseconds since the Unix epoch, UTC.
//!
//! One integer keeps the changelog state small and makes comparisons and
//! arithmetic exact; RFC 3339 strings exist only at the contract's edge.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A point in business time, in whole milliseconds since 1970-01-01T00:00:00Z.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

/// Why a time string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an RFC 3339 date-time with an offset (for example 2026-11-27T10:15:00Z)")]
pub struct TimeError(pub String);

impl Timestamp {
    /// The earliest representable instant; the clock of a customer never seen before.
    pub const MIN: Timestamp = Timestamp(i64::MIN / 4);

    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    /// The wall clock. Only the worker's edge calls this; the core takes `now` as input.
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_millis())
    }

    /// Parses an RFC 3339 date-time (any offset, sub-millisecond digits truncated).
    ///
    /// # Errors
    /// [`TimeError`] when the text is not RFC 3339 or lies outside years 1..=9999.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimeError> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| Timestamp(t.timestamp_millis()))
            .map_err(|_| TimeError(truncate_for_message(text)))
    }

    /// Parses either an RFC 3339 date-time or a plain calendar date (`2026-12-31`,
    /// read as the start of that day in UTC), the two forms upstream systems send
    /// for dates such as a requested effective date.
    ///
    /// # Errors
    /// [`TimeError`] when the text is neither.
    pub fn parse_date_or_datetime(text: &str) -> Result<Self, TimeError> {
        if let Ok(t) = Self::parse_rfc3339(text) {
            return Ok(t);
        }
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|dt| Timestamp(dt.and_utc().timestamp_millis()))
            .ok_or_else(|| TimeError(truncate_for_message(text)))
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-27T10:15:00.000Z`: one fixed
    /// form so that the same instant always prints the same bytes.
    pub fn to_rfc3339(self) -> String {
        match DateTime::<Utc>::from_timestamp_millis(self.0) {
            Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
            None => String::from("invalid-time"),
        }
    }

    pub fn plus(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A timestamp that serialises as RFC 3339 text: the form every output event uses.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Rfc3339(pub Timestamp);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_rfc3339())
    }
}

fn truncate_for_message(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_prints_utc_millis() {
        let t = Timestamp::parse_rfc3339("2026-11-27T12:15:00+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-27T10:15:00.000Z");
        let z = Timestamp::parse_rfc3339("2026-11-27T10:15:00.123456Z").unwrap();
        assert_eq!(z.millis() - t.millis(), 123);
    }

    #[test]
    fn refuses_times_without_offset_and_garbage() {
        assert!(Timestamp::parse_rfc3339("2026-11-27T10:15:00").is_err());
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
        assert!(Timestamp::parse_rfc3339("").is_err());
    }

    #[test]
    fn dates_are_start_of_day_utc() {
        let d = Timestamp::parse_date_or_datetime("2026-12-31").unwrap();
        assert_eq!(d.to_rfc3339(), "2026-12-31T00:00:00.000Z");
        assert!(Timestamp::parse_date_or_datetime("2026-13-01").is_err());
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_millis(1000);
        assert_eq!(t.plus(Duration::from_secs(1)).millis(), 2000);
        assert_eq!(t.since(Timestamp::from_millis(5000)), Duration::ZERO);
        assert_eq!(
            Timestamp::from_millis(i64::MAX - 1).plus(Duration::from_secs(10)),
            Timestamp::from_millis(i64::MAX)
        );
    }
}
