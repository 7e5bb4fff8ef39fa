//! Business time as milliseconds since the Unix epoch, UTC.
//!
//! One integer keeps the changelog state small and makes comparisons and
//! arithmetic exact; RFC 3339 strings exist only at the contract's edge.

use chrono::{DateTime, Months, NaiveDate, SecondsFormat, Utc};
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

    /// `self` plus a calendar period, in UTC: the months (years count twelve)
    /// first, on the calendar, clamped to the end of a shorter month (31 January
    /// plus P1M is 28 or 29 February; 29 February plus P1Y is 28 February),
    /// then the days as 24 hours each (UTC has no daylight saving), then the
    /// exact time. The simulator and the worker both compute timers here.
    pub fn plus_period(self, p: Period) -> Self {
        let base = if p.months == 0 {
            self
        } else {
            DateTime::<Utc>::from_timestamp_millis(self.0)
                .and_then(|t| t.checked_add_months(Months::new(p.months)))
                .map_or_else(
                    // Only far outside years 1..=9999 (never a business time):
                    // the mean Gregorian month keeps the arithmetic total.
                    || Timestamp(self.0.saturating_add(i64::from(p.months) * MEAN_MONTH_MS)),
                    |t| Timestamp(t.timestamp_millis()),
                )
        };
        base.plus(p.exact_part())
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

const DAY_MS: u64 = 86_400_000;
const MEAN_MONTH_MS: i64 = 2_629_746_000;
/// The longest period accepted anywhere: a century, far beyond any legal
/// retention, and short enough that every timer stays a printable date.
const MAX_YEARS: u32 = 100;

/// A duration as operators write them: calendar months (and years, twelve
/// months each) plus days plus exact time. `P7Y` ends on the same calendar date
/// seven years later, whatever the leap days in between; `2557d` is an exact
/// count of 24-hour days. Added to a time by [`Timestamp::plus_period`].
#[derive(Copy, Clone, Debug, Default)]
pub struct Period {
    months: u32,
    days: u32,
    millis: u64,
}

/// Why a duration text was refused; the message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a duration: {why}")]
pub struct PeriodError {
    pub text: String,
    pub why: String,
}

impl Period {
    pub const ZERO: Period = Period {
        months: 0,
        days: 0,
        millis: 0,
    };

    pub const fn years(n: u32) -> Self {
        Period {
            months: n.saturating_mul(12),
            days: 0,
            millis: 0,
        }
    }

    pub const fn months(n: u32) -> Self {
        Period {
            months: n,
            days: 0,
            millis: 0,
        }
    }

    pub const fn days(n: u32) -> Self {
        Period {
            months: 0,
            days: n,
            millis: 0,
        }
    }

    /// An exact duration (whole milliseconds; finer digits are dropped, as
    /// business times keep milliseconds).
    pub fn exact(d: Duration) -> Self {
        Period {
            months: 0,
            days: 0,
            millis: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Calendar months, years included (P1Y2M = 14).
    pub const fn total_months(self) -> u32 {
        self.months
    }

    /// Days and exact time together, as a fixed duration.
    pub fn exact_part(self) -> Duration {
        Duration::from_millis(
            u64::from(self.days)
                .saturating_mul(DAY_MS)
                .saturating_add(self.millis),
        )
    }

    pub const fn is_zero(self) -> bool {
        self.months == 0 && self.days == 0 && self.millis == 0
    }

    /// Whether the period has a calendar part (months or years), whose length
    /// in days depends on the date it is added to.
    pub const fn is_calendar(self) -> bool {
        self.months != 0
    }

    /// Parses an ISO 8601 period (`P7Y`, `P1M`, `P14D`, `P2W`, `PT72H`,
    /// `P1Y6M`, `PT0.5S`) or an exact duration with units (`14d`, `72h`,
    /// `1h 30m`, `500ms`, `0s`). Exact units of years and months (`7y`, `6M`,
    /// `1month`) are refused: humantime reads them as 365.25 and 30.44 days,
    /// which is never what a policy means; write `P7Y` or `P6M` instead.
    ///
    /// # Errors
    /// [`PeriodError`] saying what is accepted, for text of neither form or a
    /// period longer than a hundred years.
    pub fn parse(text: &str) -> Result<Self, PeriodError> {
        let trimmed = text.trim();
        let fail = |why: &str| PeriodError {
            text: truncate_for_message(text),
            why: why.to_owned(),
        };
        let period = if let Some(iso) = trimmed.strip_prefix('P') {
            parse_iso(iso).map_err(|why| fail(&why))?
        } else {
            if let Some(unit) = calendar_unit_in(trimmed) {
                return Err(fail(&format!(
                    "the unit `{unit}` is a calendar unit; write an ISO 8601 period such as P7Y or P6M, which ends on the calendar date"
                )));
            }
            let d = humantime::parse_duration(trimmed).map_err(|e| {
                fail(&format!(
                    "expected an ISO 8601 period (P14D, P1M, P7Y, PT72H) or units (30s, 72h, 14d): {e}"
                ))
            })?;
            Period::exact(d)
        };
        let century = Period::years(MAX_YEARS);
        let too_long = period.months > century.months
            || u64::from(period.days) > u64::from(MAX_YEARS) * 366
            || period.millis > u64::from(MAX_YEARS) * 366 * DAY_MS;
        if too_long {
            return Err(fail(&format!("longer than {MAX_YEARS} years")));
        }
        Ok(period)
    }
}

/// Equal when they add the same: `14d` and `P14D` (a UTC day is always 24
/// hours), but not `P1M` and `P30D`.
impl PartialEq for Period {
    fn eq(&self, other: &Self) -> bool {
        self.months == other.months && self.exact_part() == other.exact_part()
    }
}

impl Eq for Period {}

impl std::hash::Hash for Period {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.months.hash(state);
        self.exact_part().hash(state);
    }
}

impl From<Duration> for Period {
    fn from(d: Duration) -> Self {
        Period::exact(d)
    }
}

/// The ISO 8601 form: `P7Y`, `P1Y6M`, `P14D`, `PT72H`, `PT0S`. Days are not
/// folded into hours (the same length in UTC, but a day reads as a day).
impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("PT0S");
        }
        f.write_str("P")?;
        let (years, months) = (self.months / 12, self.months % 12);
        for (n, unit) in [(years, 'Y'), (months, 'M'), (self.days, 'D')] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        if self.millis > 0 {
            f.write_str("T")?;
            let hours = self.millis / 3_600_000;
            let minutes = self.millis / 60_000 % 60;
            let seconds = self.millis / 1000 % 60;
            let ms = self.millis % 1000;
            if hours > 0 {
                write!(f, "{hours}H")?;
            }
            if minutes > 0 {
                write!(f, "{minutes}M")?;
            }
            match (seconds, ms) {
                (0, 0) => {}
                (s, 0) => write!(f, "{s}S")?,
                (s, ms) => write!(f, "{s}.{ms:03}S")?,
            }
        }
        Ok(())
    }
}

/// Years and months written with humantime's units, which would be read as an
/// average length rather than on the calendar.
fn calendar_unit_in(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|unit| !unit.is_empty())
        .find(|unit| matches!(*unit, "y" | "year" | "years" | "M" | "month" | "months"))
        .map(str::to_owned)
}

/// `nYnMnWnD` then optionally `T nH nM n[.fff]S`, each at most once, in order.
fn parse_iso(rest: &str) -> Result<Period, String> {
    const FORM: &str = "an ISO 8601 period is P[nY][nM][nW][nD][T[nH][nM][nS]], for example P7Y, P1M, P14D or PT72H";
    let (date, time) = match rest.split_once('T') {
        Some((_, "")) => return Err(format!("nothing after T; {FORM}")),
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    if date.is_empty() && time.is_none() {
        return Err(format!("nothing after P; {FORM}"));
    }
    let mut p = Period::ZERO;
    let mut last = 0usize;
    for (number, unit) in components(date).map_err(|e| format!("{e}; {FORM}"))? {
        let order = match unit {
            'Y' => 1,
            'M' => 2,
            'W' => 3,
            'D' => 4,
            other => return Err(format!("`{other}` is no date unit; {FORM}")),
        };
        if order <= last {
            return Err(format!("units out of order or repeated; {FORM}"));
        }
        last = order;
        let n = whole(&number).ok_or_else(|| format!("a whole number is needed before {unit}"))?;
        match unit {
            'Y' => p.months = p.months.saturating_add(n.saturating_mul(12)),
            'M' => p.months = p.months.saturating_add(n),
            'W' => p.days = p.days.saturating_add(n.saturating_mul(7)),
            _ => p.days = p.days.saturating_add(n),
        }
    }
    if let Some(time) = time {
        let mut last = 0usize;
        for (number, unit) in components(time).map_err(|e| format!("{e}; {FORM}"))? {
            let (order, unit_ms) = match unit {
                'H' => (1, 3_600_000u64),
                'M' => (2, 60_000),
                'S' => (3, 1000),
                other => return Err(format!("`{other}` is no time unit; {FORM}")),
            };
            if order <= last {
                return Err(format!("units out of order or repeated; {FORM}"));
            }
            last = order;
            let ms = if unit == 'S' {
                seconds_ms(&number).ok_or("seconds must be a number with at most 3 decimals")?
            } else {
                u64::from(
                    whole(&number)
                        .ok_or_else(|| format!("a whole number is needed before {unit}"))?,
                )
                .saturating_mul(unit_ms)
            };
            p.millis = p.millis.saturating_add(ms);
        }
    }
    Ok(p)
}

/// Splits `7Y6M` into `[("7", 'Y'), ("6", 'M')]`.
fn components(text: &str) -> Result<Vec<(String, char)>, String> {
    let mut out = Vec::new();
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' || c == ',' {
            number.push(if c == ',' { '.' } else { c });
        } else if number.is_empty() {
            return Err(format!("`{c}` without a number before it"));
        } else {
            out.push((std::mem::take(&mut number), c));
        }
    }
    if !number.is_empty() {
        return Err("a number without a unit after it".to_owned());
    }
    Ok(out)
}

fn whole(number: &str) -> Option<u32> {
    if number.contains('.') {
        return None;
    }
    number.parse().ok()
}

fn seconds_ms(number: &str) -> Option<u64> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() || frac.len() > 3 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let int: u64 = int.parse().ok()?;
    let frac: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().ok()?
    };
    Some(int.saturating_mul(1000).saturating_add(frac))
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

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn periods_parse_in_both_forms_and_print_iso() {
        for (text, shown) in [
            ("P7Y", "P7Y"),
            ("P1M", "P1M"),
            ("P14D", "P14D"),
            ("P2W", "P14D"),
            ("PT72H", "PT72H"),
            ("P1Y6M", "P1Y6M"),
            ("P18M", "P1Y6M"),
            ("P1DT12H", "P1DT12H"),
            ("PT0.5S", "PT0.500S"),
            ("PT1H30M", "PT1H30M"),
            ("14d", "PT336H"),
            ("72h", "PT72H"),
            ("0s", "PT0S"),
            ("500ms", "PT0.500S"),
        ] {
            let p = Period::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(p.to_string(), shown, "{text}");
        }
        assert_eq!(Period::parse("P14D").unwrap(), Period::days(14));
        assert_eq!(Period::parse("P7Y").unwrap(), Period::years(7));
    }

    #[test]
    fn bad_periods_say_what_is_accepted() {
        for text in [
            "P",
            "PT",
            "P1",
            "PY",
            "P1.5Y",
            "P1D1Y",
            "P1Y1Y",
            "PT1D",
            "P1H",
            "7y",
            "6M",
            "1 month",
            "fortnight",
            "",
            "P101Y",
            "P40000D",
            "PT1.2345S",
        ] {
            let err = Period::parse(text).expect_err(text);
            assert!(!err.why.is_empty(), "{text}");
        }
        assert!(Period::parse("7y").unwrap_err().why.contains("P7Y"));
    }

    #[test]
    fn calendar_months_clamp_to_the_month_end() {
        let cases = [
            ("2028-02-29T10:00:00Z", "P1Y", "2029-02-28T10:00:00.000Z"),
            ("2028-02-29T10:00:00Z", "P4Y", "2032-02-29T10:00:00.000Z"),
            ("2027-01-31T00:00:00Z", "P1M", "2027-02-28T00:00:00.000Z"),
            ("2028-01-31T00:00:00Z", "P1M", "2028-02-29T00:00:00.000Z"),
            ("2028-02-29T00:00:00Z", "P1Y1M", "2029-03-29T00:00:00.000Z"),
            ("2027-03-01T00:00:00Z", "P7Y", "2034-03-01T00:00:00.000Z"),
            ("2027-12-31T23:59:59Z", "P2M", "2028-02-29T23:59:59.000Z"),
            ("2026-11-27T10:15:00Z", "P1MT1H", "2026-12-27T11:15:00.000Z"),
            ("2026-11-27T10:15:00Z", "P1M1D", "2026-12-28T10:15:00.000Z"),
        ];
        for (from, period, expected) in cases {
            let got = at(from).plus_period(Period::parse(period).unwrap());
            assert_eq!(got.to_rfc3339(), expected, "{from} + {period}");
        }
        // Exact units never move with the calendar: from March 2028 the seven
        // years hold one leap day, not two, and 2557 days overshoot by one.
        let t = at("2028-03-01T00:00:00Z");
        assert_eq!(
            t.plus_period(Period::parse("2557d").unwrap()).to_rfc3339(),
            "2035-03-02T00:00:00.000Z"
        );
        assert_eq!(
            t.plus_period(Period::years(7)).to_rfc3339(),
            "2035-03-01T00:00:00.000Z"
        );
        // Far outside chrono's range, the arithmetic still ends somewhere.
        assert!(Timestamp::MIN.plus_period(Period::years(7)) > Timestamp::MIN);
    }
}
