//! Policy rules per market and segment, and calendar durations:
//!
//! - the precedence order (market and segment, market, segment, default);
//! - calendar arithmetic at month ends and leap days, against a table computed
//!   here from first principles (days from the civil date), not with chrono;
//! - the effective date and retention end of every market × segment pair of
//!   `examples/policy-eu.toml`, through the core;
//! - bad policy files refused by `terminus policy check`, naming the line;
//! - a changed policy file never moves the times a termination already has.

mod core_support;

use core_support::{Customer, days, t0, ts, types, value};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use terminus::domain::{CustomerState, Phase, Policy, PolicySet, Rule, ScopedRule};
use terminus::time::{Period, Timestamp};

const BIN: &str = env!("CARGO_BIN_EXE_terminus");

fn example_policy() -> PolicySet {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policy-eu.toml");
    terminus::policy_file::load(&path).expect("examples/policy-eu.toml loads")
}

fn rule(name: &str, notice_days: u32) -> Rule {
    Rule {
        name: name.to_owned(),
        customer_notice: Period::days(notice_days),
        ..Rule::default()
    }
}

fn scoped(market: Option<&str>, segment: Option<&str>, rule: Rule) -> ScopedRule {
    ScopedRule {
        market: market.map(str::to_owned),
        segment: segment.map(str::to_owned),
        rule,
    }
}

// ---- an independent calendar ---------------------------------------------------

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date, by counting.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let mut days = 0;
    for year in 1970..y {
        days += if is_leap(year) { 366 } else { 365 };
    }
    for month in 1..m {
        days += days_in_month(y, month);
    }
    days + d - 1
}

/// The expected `start + months + days + ms`: the day of the month kept, or
/// the last day of a shorter month, then whole days and the exact time.
fn expected(
    (y, m, d): (i64, i64, i64),
    time_ms: i64,
    months: i64,
    extra_days: i64,
    extra_ms: i64,
) -> i64 {
    let total = y * 12 + (m - 1) + months;
    let (ny, nm) = (total / 12, total % 12 + 1);
    let nd = d.min(days_in_month(ny, nm));
    (days_from_civil(ny, nm, nd) + extra_days) * 86_400_000 + time_ms + extra_ms
}

// ---- precedence ------------------------------------------------------------------

#[test]
fn the_most_specific_rule_wins() {
    let policy = PolicySet::new(
        rule("default", 14),
        vec![
            scoped(None, Some("business"), rule("business", 30)),
            scoped(Some("DE"), None, rule("de", 20)),
            scoped(Some("DE"), Some("business"), rule("de-business", 90)),
        ],
        None,
    )
    .expect("valid");
    for (market, segment, name) in [
        (Some("DE"), Some("business"), "de-business"),
        (Some("DE"), Some("consumer"), "de"),
        (Some("DE"), None, "de"),
        (Some("GB"), Some("business"), "business"),
        (None, Some("business"), "business"),
        (Some("GB"), Some("consumer"), "default"),
        (Some("GB"), None, "default"),
        (None, None, "default"),
        // Not a declared segment: counts as none.
        (Some("DE"), Some("vip"), "de"),
        (None, Some("vip"), "default"),
    ] {
        assert_eq!(
            policy.select(market, segment).name,
            name,
            "{market:?} {segment:?}"
        );
    }
    // Market beats segment: a British business customer is not German, and a
    // German business rule is not a business rule for Britain.
    assert_eq!(policy.rule_named(Some("de-business")).name, "de-business");
    assert_eq!(policy.rule_named(Some("gone")).name, "default");
    assert_eq!(policy.rule_named(None).name, "default");
}

#[test]
fn overlapping_and_malformed_rules_are_refused() {
    let overlap = PolicySet::new(
        Rule::default(),
        vec![
            scoped(Some("DE"), None, rule("a", 1)),
            scoped(Some("DE"), None, rule("b", 2)),
        ],
        None,
    );
    assert_eq!(overlap.expect_err("overlap").index(), 1);
    let bad_market = PolicySet::new(
        Rule::default(),
        vec![scoped(Some("DEU"), None, rule("a", 1))],
        None,
    );
    assert!(bad_market.is_err());
    let undeclared = PolicySet::new(
        Rule::default(),
        vec![scoped(None, Some("wholesale"), rule("a", 1))],
        Some(vec!["consumer".into()]),
    );
    assert!(undeclared.is_err());
    let same_name = PolicySet::new(
        Rule::default(),
        vec![
            scoped(Some("DE"), None, rule("x", 1)),
            scoped(Some("GB"), None, rule("x", 2)),
        ],
        None,
    );
    assert!(same_name.is_err());
}

// ---- calendar arithmetic -----------------------------------------------------------

#[test]
fn calendar_periods_match_an_independent_table() {
    // The notable cases, readable.
    for (from, period, to) in [
        ("2028-02-29T10:00:00Z", "P1Y", "2029-02-28T10:00:00.000Z"),
        ("2028-02-29T10:00:00Z", "P7Y", "2035-02-28T10:00:00.000Z"),
        ("2028-02-29T10:00:00Z", "P8Y", "2036-02-29T10:00:00.000Z"),
        ("2028-03-01T00:00:00Z", "P7Y", "2035-03-01T00:00:00.000Z"),
        ("2027-01-31T23:00:00Z", "P1M", "2027-02-28T23:00:00.000Z"),
        ("2028-01-31T23:00:00Z", "P1M", "2028-02-29T23:00:00.000Z"),
        ("2027-03-31T08:00:00Z", "P1M", "2027-04-30T08:00:00.000Z"),
        ("2027-08-31T08:00:00Z", "P6M", "2028-02-29T08:00:00.000Z"),
        ("2027-12-31T08:00:00Z", "P2M", "2028-02-29T08:00:00.000Z"),
        ("2028-02-29T00:00:00Z", "P1Y1M", "2029-03-29T00:00:00.000Z"),
        ("2027-01-31T00:00:00Z", "P1M1D", "2027-03-01T00:00:00.000Z"),
        (
            "2027-01-31T00:00:00Z",
            "P1MT25H",
            "2027-03-01T01:00:00.000Z",
        ),
    ] {
        let got = ts(from).plus_period(Period::parse(period).unwrap());
        assert_eq!(got.to_rfc3339(), to, "{from} + {period}");
    }
    // Every day of 2027..=2033 at 13:45:30.250, against the counted calendar.
    let periods: [(&str, i64, i64, i64); 10] = [
        ("P1M", 1, 0, 0),
        ("P2M", 2, 0, 0),
        ("P6M", 6, 0, 0),
        ("P1Y", 12, 0, 0),
        ("P13M", 13, 0, 0),
        ("P1Y1M", 13, 0, 0),
        ("P7Y", 84, 0, 0),
        ("P10Y", 120, 0, 0),
        ("P1M14D", 1, 14, 0),
        ("P1YT12H", 12, 0, 12 * 3_600_000),
    ];
    let time_ms = ((13 * 60 + 45) * 60 + 30) * 1000 + 250;
    let mut checked = 0;
    for y in 2027..=2033 {
        for m in 1..=12 {
            for d in 1..=days_in_month(y, m) {
                let start = Timestamp::from_millis(days_from_civil(y, m, d) * 86_400_000 + time_ms);
                for (text, months, extra_days, extra_ms) in periods {
                    let want = expected((y, m, d), time_ms, months, extra_days, extra_ms);
                    let got = start.plus_period(Period::parse(text).unwrap());
                    assert_eq!(
                        got.millis(),
                        want,
                        "{y}-{m:02}-{d:02} + {text}: got {got}, want {}",
                        Timestamp::from_millis(want)
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 2557 * periods.len());
    // Exact units do not follow the calendar: from March 2028 to February
    // 2029, seven years hold one leap day, so 2557 days overshoot by one.
    let fixed = Period::parse("2557d").unwrap();
    for (y, m) in [(2028, 3), (2028, 9), (2029, 2)] {
        let start = Timestamp::from_millis(days_from_civil(y, m, 1) * 86_400_000);
        let calendar = start.plus_period(Period::years(7));
        assert_eq!(
            start.plus_period(fixed).millis() - calendar.millis(),
            86_400_000
        );
    }
}

// ---- the example file --------------------------------------------------------------

/// (market, segment, rule, notice as (months, days), retention in months)
type Expected = (
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
    (i64, i64),
    i64,
);

#[test]
fn every_market_and_segment_of_the_example_gets_its_dates() {
    let policy = example_policy();
    // Accepted at a month end, so the calendar clamps: 30 November + P3M is
    // 28 February.
    let at = ts("2028-11-30T08:00:00Z");
    let (y, m, d, time_ms) = (2028, 11, 30, 8 * 3_600_000);
    let table: [Expected; 20] = [
        (Some("DE"), Some("consumer"), "de", (0, 14), 120),
        (Some("DE"), Some("business"), "de-business", (3, 0), 120),
        (Some("DE"), Some("wholesale"), "de", (0, 14), 120),
        (Some("DE"), Some("vip"), "de", (0, 14), 120),
        (Some("DE"), None, "de", (0, 14), 120),
        (Some("GB"), Some("consumer"), "gb", (0, 14), 72),
        (Some("GB"), Some("business"), "gb", (0, 14), 72),
        (Some("GB"), Some("wholesale"), "gb", (0, 14), 72),
        (Some("GB"), Some("vip"), "gb", (0, 14), 72),
        (Some("GB"), None, "gb", (0, 14), 72),
        (Some("FR"), Some("consumer"), "default", (0, 14), 84),
        (Some("FR"), Some("business"), "business", (1, 0), 84),
        (Some("FR"), Some("wholesale"), "wholesale", (0, 90), 84),
        (Some("FR"), Some("vip"), "default", (0, 14), 84),
        (Some("FR"), None, "default", (0, 14), 84),
        (None, Some("consumer"), "default", (0, 14), 84),
        (None, Some("business"), "business", (1, 0), 84),
        (None, Some("wholesale"), "wholesale", (0, 90), 84),
        (None, Some("vip"), "default", (0, 14), 84),
        (None, None, "default", (0, 14), 84),
    ];
    for (i, (market, segment, rule, (months, notice_days), retention_months)) in
        table.into_iter().enumerate()
    {
        let mut c = Customer::with_policy(&format!("C-{i}"), policy.clone());
        let mut body = json!({});
        if let Some(market) = market {
            body["market"] = json!(market);
        }
        if let Some(segment) = segment {
            body["segment"] = json!(segment);
        }
        let d0 = c.send("CustomerTerminationRequested", at, body);
        let accepted = value(&d0.outputs[0]);
        let what = format!("{market:?} {segment:?}");
        assert_eq!(accepted["event"]["policyRule"], rule, "{what}");
        let effective = expected((y, m, d), time_ms, months, notice_days, 0);
        assert_eq!(
            accepted["event"]["effectiveAt"],
            Timestamp::from_millis(effective).to_rfc3339(),
            "{what}"
        );
        // Dismantled at the effective time, every vertical done at once.
        let due = Timestamp::from_millis(effective);
        assert_eq!(types(&c.tick(due).outputs).len(), 3, "{what}");
        c.complete("billing", due);
        c.complete("fulfillment", due);
        let done = c.complete("assurance", due);
        let terminated = value(&done.outputs[0]);
        let civil = civil_of(effective);
        let retain = expected(
            civil,
            effective.rem_euclid(86_400_000),
            retention_months,
            0,
            0,
        );
        assert_eq!(
            terminated["event"]["retainRecordsUntil"],
            Timestamp::from_millis(retain).to_rfc3339(),
            "{what}"
        );
    }
}

/// The civil date of epoch milliseconds, by counting forward from 1970.
fn civil_of(ms: i64) -> (i64, i64, i64) {
    let mut days = ms.div_euclid(86_400_000);
    let mut y = 1970;
    loop {
        let len = if is_leap(y) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        y += 1;
    }
    let mut m = 1;
    while days >= days_in_month(y, m) {
        days -= days_in_month(y, m);
        m += 1;
    }
    (y, m, days + 1)
}

// ---- bad files -------------------------------------------------------------------

fn policy_check(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["policy", "check"])
        .args(args)
        .output()
        .expect("the terminus binary runs")
}

#[test]
fn bad_files_are_refused_naming_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &str, usize, &str); 8] = [
        (
            "unknown-key",
            "[default]\ncustomer-notice = \"P14D\"\nnotice = \"P1M\"\n",
            3,
            "unknown field",
        ),
        (
            "bad-duration",
            "\n[[rule]]\nmarket = \"DE\"\nretention = \"ten years\"\n",
            4,
            "retention",
        ),
        ("calendar-unit", "[default]\nretention = \"7y\"\n", 2, "P7Y"),
        (
            "zero-attempts",
            "[[rule]]\nsegment = \"business\"\nmax-attempts = 0\n",
            3,
            "max-attempts",
        ),
        (
            "bad-market",
            "[[rule]]\nname = \"germany\"\nmarket = \"Germany\"\n",
            3,
            "ISO 3166-1",
        ),
        (
            "overlap",
            "[[rule]]\nname = \"a\"\nmarket = \"DE\"\nsegment = \"business\"\n\n[[rule]]\nname = \"b\"\nmarket = \"DE\"\nsegment = \"business\"\n",
            8,
            "same market and segment",
        ),
        (
            "undeclared-segment",
            "segments = [\"consumer\"]\n\n[[rule]]\nsegment = \"business\"\n",
            4,
            "business",
        ),
        ("not-toml", "[default\n", 1, ""),
    ];
    for (name, text, line, needle) in cases {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write");
        let out = policy_check(&[path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} accepted");
        assert!(
            stderr.contains(&format!("line {line}:")),
            "{name}: line {line} not named: {stderr}"
        );
        assert!(stderr.contains(needle), "{name}: {stderr}");
        assert!(stderr.contains(&format!("{name}.toml")), "{name}: {stderr}");
    }
    let yaml = dir.path().join("policy.yaml");
    std::fs::write(&yaml, "default: {}\n").expect("write");
    let out = policy_check(&[yaml.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TOML"));
}

#[test]
fn policy_check_shows_the_rule_and_dates_of_each_sample() {
    let out = policy_check(&["examples/policy-eu.toml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("policy is valid: 6 rules"), "{text}");
    // Markets DE, GB and none × 3 segments and none × 5 triggers.
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("2028-") || l.contains("2029-"))
        .collect();
    assert_eq!(rows.len(), 3 * 4 * 5, "{text}");
    let row = rows
        .iter()
        .find(|l| {
            l.starts_with("DE")
                && l.contains("business")
                && l.contains("CustomerTerminationRequested")
        })
        .expect("a DE business request");
    // At 2028-02-29T12:00Z: three months' notice, then ten years.
    assert!(row.contains("de-business"), "{row}");
    assert!(row.contains("2028-05-29T12:00:00.000Z"), "{row}");
    assert!(row.contains("2038-05-29T12:00:00.000Z"), "{row}");
    // The same dates from a file of envelopes.
    let out = policy_check(&[
        "examples/policy-eu.toml",
        "--events",
        "examples/multi-market.jsonl",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let de2 = text
        .lines()
        .find(|l| l.contains("de-business") && l.contains("CustomerTerminationRequested"))
        .expect("C-DE-2's request");
    assert!(de2.contains("2028-05-29T09:05:00.000Z"), "{de2}");
    assert!(
        text.contains("InvalidField"),
        "the malformed market: {text}"
    );
}

// ---- a changed file --------------------------------------------------------------

fn two_market_policy(de_notice: u32, de_retention: Period, de_name: &str) -> Policy {
    PolicySet::new(
        Rule::default(),
        vec![scoped(
            Some("DE"),
            None,
            Rule {
                name: de_name.to_owned(),
                customer_notice: Period::days(de_notice),
                retention: de_retention,
                ..Rule::default()
            },
        )],
        None,
    )
    .expect("valid")
}

#[test]
fn a_changed_policy_keeps_the_times_already_set() {
    let before = two_market_policy(30, Period::years(10), "de");
    let mut c = Customer::with_policy("C-DE", before);
    let d = c.send(
        "CustomerTerminationRequested",
        t0(),
        json!({"market": "DE"}),
    );
    let effective = t0().plus(days(30));
    assert_eq!(
        value(&d.outputs[0])["event"]["effectiveAt"],
        effective.to_rfc3339()
    );
    let Phase::Pending { termination } = c.phase_ref() else {
        panic!("pending")
    };
    assert_eq!(termination.policy_rule.as_deref(), Some("de"));

    // The file changes: Germany's notice becomes 3 days and retention 6 years.
    c.policy = two_market_policy(3, Period::years(6), "de");
    assert!(
        c.tick(t0().plus(days(3))).outputs.is_empty(),
        "the pending effective time did not move"
    );
    assert_eq!(types(&c.tick(effective).outputs).len(), 3);
    c.complete("billing", effective);
    c.complete("fulfillment", effective);
    let done = c.complete("assurance", effective);
    // Later steps take the rule of the recorded name from the current file.
    assert_eq!(
        value(&done.outputs[0])["event"]["retainRecordsUntil"],
        effective.plus_period(Period::years(6)).to_rfc3339()
    );

    // A rule gone from the file: its terminations fall back to the default.
    let mut c = Customer::with_policy("C-DE2", two_market_policy(30, Period::years(10), "de"));
    c.send(
        "CustomerTerminationRequested",
        t0(),
        json!({"market": "DE"}),
    );
    c.policy = two_market_policy(30, Period::years(10), "de-renamed");
    c.tick(effective);
    c.complete("billing", effective);
    c.complete("fulfillment", effective);
    let done = c.complete("assurance", effective);
    assert_eq!(
        value(&done.outputs[0])["event"]["retainRecordsUntil"],
        effective.plus_period(Period::years(7)).to_rfc3339()
    );
}

#[test]
fn a_trigger_without_market_keeps_the_pending_rule() {
    let policy = two_market_policy(30, Period::years(10), "de");
    let mut c = Customer::with_policy("C-DE", policy);
    c.send(
        "CustomerTerminationRequested",
        t0(),
        json!({"market": "DE"}),
    );
    // Fraud management does not know the market: the German rule stays.
    let d = c.send(
        "FraudConfirmed",
        t0().plus(days(1)),
        json!({"caseRef": "F-1"}),
    );
    assert_eq!(value(&d.outputs[0])["event"]["policyRule"], "de");
    // One that names another market moves the termination to that rule.
    let mut c = Customer::with_policy("C-X", two_market_policy(30, Period::years(10), "de"));
    c.send(
        "CustomerTerminationRequested",
        t0(),
        json!({"market": "DE"}),
    );
    let d = c.send(
        "FraudConfirmed",
        t0().plus(days(1)),
        json!({"caseRef": "F-1", "market": "GB"}),
    );
    assert_eq!(value(&d.outputs[0])["event"]["policyRule"], "default");
}

#[test]
fn states_written_before_policy_rules_get_the_default_rule() {
    // A Pending record of the previous release: no policy_rule.
    let old = br#"{"v":1,"clock":1795774500000,"phase":{"state":"Pending","termination":{"id":"7c5994d9-af88-50a8-af0d-87cb7ec617bb","category":"customerRequest","effective_at":1798675200000,"cause":"a-1"}},"seen":[42]}"#;
    let state = CustomerState::from_bytes(old).expect("old records still decode");
    let Phase::Pending { termination } = &state.phase else {
        panic!("pending")
    };
    assert_eq!(termination.policy_rule, None);
    let policy = example_policy();
    assert_eq!(
        policy.rule_named(termination.policy_rule.as_deref()).name,
        "default"
    );
    // And it writes back without the field until a rule is chosen.
    assert!(
        !String::from_utf8(state.to_json_bytes())
            .unwrap()
            .contains("policy_rule")
    );
}

#[test]
fn every_example_policy_loads_and_inherits_as_documented() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("examples/README.md");
    for file in &files {
        terminus::policy_file::load(file).unwrap_or_else(|e| panic!("{e}"));
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(
            readme.contains(name.as_ref()),
            "{name} not in examples/README.md"
        );
    }
    let nordics = terminus::policy_file::load(&dir.join("policy-nordics.toml")).unwrap();
    let se_enterprise = nordics.select(Some("SE"), Some("enterprise"));
    assert_eq!(se_enterprise.name, "se-enterprise");
    assert_eq!(se_enterprise.retention, Period::years(7), "from se");
    assert_eq!(
        se_enterprise.customer_notice,
        Period::months(3),
        "from enterprise"
    );
    assert!(!se_enterprise.require_evidence);
    // `business` is not one of this operator's segments.
    assert_eq!(nordics.select(Some("NO"), Some("business")).name, "default");
    assert_eq!(nordics.select(Some("SE"), Some("business")).name, "se");
}
