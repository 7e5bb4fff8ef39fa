//! `terminus simulate` as users run it: the built binary over every journey in
//! `examples/`, checking the exit status, the event types per customer in
//! order, byte-for-byte repeatability, and standard input.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_terminus");

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A journey: its file, the extra flags its README command uses, and the
/// outputs expected per key (`dlq` for dead letters), in order. Rejections show
/// their reason code and dead letters theirs.
type Journey = (
    &'static str,
    Vec<&'static str>,
    Vec<(&'static str, Vec<&'static str>)>,
);

fn journeys() -> Vec<Journey> {
    vec![
        (
            "customer-request.jsonl",
            vec!["--until", "2027-02-01T00:00:00Z"],
            vec![(
                "C-1001",
                vec![
                    "TerminationAccepted",
                    "DismantleSolution",
                    "DismantleSolution",
                    "DismantleSolution",
                    "RelationshipTerminated",
                ],
            )],
        ),
        (
            "fraud-with-retry.jsonl",
            vec![],
            vec![(
                "C-2002",
                vec![
                    "TerminationAccepted",
                    "DismantleSolution",
                    "DismantleSolution",
                    "DismantleSolution",
                    "DismantleSolution",
                    "RelationshipTerminated",
                    "TerminationRejected(ReestablishmentNotAllowed)",
                ],
            )],
        ),
        (
            "withdrawal.jsonl",
            vec!["--until", "2027-02-01T00:00:00Z"],
            vec![
                (
                    "C-3003",
                    vec![
                        "TerminationAccepted",
                        "TerminationWithdrawn",
                        "TerminationRejected(NothingToWithdraw)",
                    ],
                ),
                (
                    "C-3004",
                    vec![
                        "TerminationAccepted",
                        "TerminationRejected(NotWithdrawable)",
                        "TerminationWithdrawn",
                    ],
                ),
            ],
        ),
        (
            "deceased-supersedes.jsonl",
            vec!["--until", "2027-07-01T00:00:00Z"],
            vec![(
                "C-4004",
                vec![
                    "TerminationAccepted",
                    "TerminationAccepted",
                    "DismantleSolution",
                    "DismantleSolution",
                    "DismantleSolution",
                    "TerminationRejected(AlreadyTerminated)",
                    "RelationshipTerminated",
                    "TerminationRejected(ReestablishmentNotAllowed)",
                    "CustomerRecordsAnonymized",
                ],
            )],
        ),
        (
            "legal-hold.jsonl",
            vec!["--retention", "30d", "--until", "2027-04-01T00:00:00Z"],
            vec![(
                "C-6006",
                vec![
                    "TerminationAccepted",
                    "DismantleSolution",
                    "DismantleSolution",
                    "DismantleSolution",
                    "RelationshipTerminated",
                    "CustomerRecordsAnonymized",
                ],
            )],
        ),
        (
            "multi-market.jsonl",
            vec![
                "--policy",
                "examples/policy-eu.toml",
                "--until",
                "2029-01-01T00:00:00Z",
            ],
            {
                let dismantled = || {
                    vec![
                        "TerminationAccepted",
                        "DismantleSolution",
                        "DismantleSolution",
                        "DismantleSolution",
                        "RelationshipTerminated",
                    ]
                };
                vec![
                    ("C-DE-1", dismantled()),
                    ("C-DE-2", dismantled()),
                    ("C-DE-3", dismantled()),
                    ("C-GB-1", dismantled()),
                    ("C-FR-1", dismantled()),
                    ("C-XX-1", dismantled()),
                    ("dlq", vec!["dlq(InvalidField)"]),
                ]
            },
        ),
        (
            "bad-input.jsonl",
            vec![],
            vec![
                (
                    "dlq",
                    vec![
                        "dlq(InvalidJson)",
                        "dlq(InvalidEnvelope)",
                        "dlq(MissingField)",
                        "dlq(UnknownEventType)",
                        "dlq(InvalidTime)",
                        "dlq(InvalidCustomerId)",
                        "dlq(InvalidEnumValue)",
                        "dlq(MissingField)",
                        "dlq(InvalidField)",
                    ],
                ),
                (
                    "C-5005",
                    vec![
                        "TerminationRejected(MissingEvidence)",
                        "TerminationAccepted",
                    ],
                ),
            ],
        ),
    ]
}

fn simulate(args: &[&str], file: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("simulate").args(args);
    if let Some(file) = file {
        cmd.arg(examples_dir().join(file));
    }
    cmd.output().expect("the terminus binary runs")
}

fn simulate_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .arg("simulate")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the terminus binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("terminus finishes")
}

fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The outputs per key, each as its type (with the reason code of rejections
/// and dead letters).
fn by_key(lines: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines {
        let value = &line["value"];
        let (key, label) = if line["topic"] == "crm.termination.dlq.v1" {
            assert!(line["key"].is_null());
            (
                "dlq".to_owned(),
                format!("dlq({})", value["reasonCode"].as_str().unwrap()),
            )
        } else {
            let key = line["key"].as_str().expect("a key").to_owned();
            assert_eq!(
                value["event"]["customerId"],
                key.as_str(),
                "key = customerId"
            );
            let kind = value["eventType"].as_str().expect("eventType");
            let label = if kind == "TerminationRejected" {
                format!("{kind}({})", value["event"]["reasonCode"].as_str().unwrap())
            } else {
                kind.to_owned()
            };
            (key, label)
        };
        map.entry(key).or_default().push(label);
    }
    map
}

fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: exit {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_example_runs_with_the_expected_outputs_and_the_same_bytes_twice() {
    for (file, args, expected) in journeys() {
        let first = simulate(&args, Some(file));
        assert_ok(&first, file);
        let got = by_key(&lines(&first));
        let expected: BTreeMap<String, Vec<String>> = expected
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
            .collect();
        assert_eq!(got, expected, "{file}");
        let second = simulate(&args, Some(file));
        assert_ok(&second, file);
        assert_eq!(
            first.stdout, second.stdout,
            "{file}: same input, same bytes"
        );
        let summary = String::from_utf8_lossy(&first.stderr);
        assert!(
            summary.contains("simulated"),
            "{file}: summary on stderr: {summary}"
        );
    }
}

#[test]
fn every_example_file_is_tested_and_documented() {
    let readme =
        std::fs::read_to_string(examples_dir().join("README.md")).expect("examples/README.md");
    let tested: Vec<&str> = journeys().into_iter().map(|(f, _, _)| f).collect();
    let mut files: Vec<String> = std::fs::read_dir(examples_dir())
        .expect("examples/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| Path::new(name).extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in &files {
        assert!(
            tested.contains(&file.as_str()),
            "{file} has no expectations here"
        );
        assert!(
            readme.contains(&format!("examples/{file}")),
            "{file} has no command in examples/README.md"
        );
    }
    for (file, args, _) in journeys() {
        let command = format!(
            "terminus simulate {}examples/{file}",
            args.iter().map(|a| format!("{a} ")).collect::<String>()
        );
        assert!(
            readme.contains(&command),
            "examples/README.md should show `{command}`"
        );
    }
}

#[test]
fn the_journeys_show_what_they_say() {
    let out = lines(&simulate(&[], Some("fraud-with-retry.jsonl")));
    assert_eq!(out[0]["value"]["event"]["notifyCustomer"], false);
    let retry = &out[4]["value"];
    assert_eq!(retry["event"]["vertical"], "billing");
    assert_eq!(retry["event"]["attempt"], 2);
    assert_eq!(retry["causationId"], "bill-2002-1");
    assert_eq!(out[5]["value"]["event"]["reestablishable"], false);

    let out = lines(&simulate(
        &["--until", "2027-02-01T00:00:00Z"],
        Some("customer-request.jsonl"),
    ));
    assert_eq!(
        out[0]["value"]["event"]["effectiveAt"],
        "2026-12-31T00:00:00.000Z"
    );
    assert_eq!(out[1]["value"]["eventTime"], "2026-12-31T00:00:00.000Z");
    let terminated = &out[4]["value"]["event"];
    assert_eq!(terminated["terminatedAt"], "2027-01-02T18:00:00.000Z");
    assert_eq!(terminated["retainRecordsUntil"], "2034-01-02T18:00:00.000Z");
    assert_eq!(terminated["reestablishable"], true);

    let out = lines(&simulate(
        &["--until", "2027-07-01T00:00:00Z"],
        Some("deceased-supersedes.jsonl"),
    ));
    assert_eq!(
        out[0]["value"]["event"]["terminationId"],
        out[1]["value"]["event"]["terminationId"]
    );
    assert_eq!(out[1]["value"]["event"]["category"], "customerDeceased");
    assert_eq!(
        out[6]["value"]["event"]["retainRecordsUntil"],
        "2027-06-02T15:00:00.000Z"
    );
    assert_eq!(out[8]["value"]["eventTime"], "2027-06-02T15:00:00.000Z");

    let out = lines(&simulate(
        &["--retention", "30d", "--until", "2027-04-01T00:00:00Z"],
        Some("legal-hold.jsonl"),
    ));
    assert_eq!(
        out[5]["value"]["eventTime"], "2027-03-01T09:00:00.000Z",
        "anonymised at the release"
    );

    let out = lines(&simulate(&[], Some("bad-input.jsonl")));
    assert_eq!(out[0]["value"]["line"], 1);
    assert!(
        out[0]["value"]["message"]
            .as_str()
            .unwrap()
            .contains("JSON")
    );
}

/// Each customer of the multi-market journey gets its market's and segment's
/// rule, notice and retention, on the calendar.
#[test]
fn every_market_gets_its_own_rule() {
    let out = lines(&simulate(
        &[
            "--policy",
            "examples/policy-eu.toml",
            "--until",
            "2029-01-01T00:00:00Z",
        ],
        Some("multi-market.jsonl"),
    ));
    let of = |customer: &str, event_type: &str| -> Value {
        out.iter()
            .find(|l| l["key"] == customer && l["value"]["eventType"] == event_type)
            .map(|l| l["value"]["event"].clone())
            .unwrap_or_else(|| panic!("no {event_type} for {customer}"))
    };
    // (customer, rule, effectiveAt, retainRecordsUntil): all accepted on the
    // leap day 2028-02-29, so P1Y steps land on 28 February.
    for (customer, rule, effective, retain) in [
        (
            "C-DE-1",
            "de",
            "2028-03-14T09:00:00.000Z",
            "2038-03-15T10:00:00.000Z",
        ),
        (
            "C-DE-2",
            "de-business",
            "2028-05-29T09:05:00.000Z",
            "2038-05-30T10:00:00.000Z",
        ),
        (
            "C-DE-3",
            "de",
            "2028-02-29T10:00:00.000Z",
            "2038-02-28T12:00:00.000Z",
        ),
        (
            "C-GB-1",
            "gb",
            "2028-03-14T09:10:00.000Z",
            "2034-03-15T11:00:00.000Z",
        ),
        (
            "C-FR-1",
            "business",
            "2028-03-29T09:15:00.000Z",
            "2035-03-30T10:00:00.000Z",
        ),
        (
            "C-XX-1",
            "default",
            "2028-03-14T09:20:00.000Z",
            "2035-03-15T12:00:00.000Z",
        ),
    ] {
        let accepted = of(customer, "TerminationAccepted");
        assert_eq!(accepted["policyRule"], rule, "{customer}");
        assert_eq!(accepted["effectiveAt"], effective, "{customer}");
        let terminated = of(customer, "RelationshipTerminated");
        assert_eq!(terminated["retainRecordsUntil"], retain, "{customer}");
    }
    let dead = out
        .iter()
        .find(|l| l["topic"] == "crm.termination.dlq.v1")
        .expect("the malformed market is a dead letter");
    let message = dead["value"]["message"].as_str().unwrap();
    assert!(message.contains("`event.market`"), "{message}");
    assert!(
        !message.contains("Germany"),
        "never echoes the value: {message}"
    );
}

#[test]
fn a_policy_file_and_rule_flags_exclude_each_other() {
    let input = br#"{"eventId":"e1","eventType":"CustomerTerminationRequested","eventTime":"2026-11-27T10:15:00Z","event":{"customerId":"C-1","market":"DE"}}"#;
    let both = simulate_stdin(
        &["--policy", "examples/policy-eu.toml", "--retention", "P6Y"],
        input,
    );
    assert!(!both.status.success(), "--policy with --retention");
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(
        stderr.contains("--policy") && stderr.contains("--retention"),
        "{stderr}"
    );
    let from_env = Command::new(BIN)
        .args(["simulate", "--policy", "examples/policy-eu.toml"])
        .env("TERMINUS_CUSTOMER_NOTICE", "3d")
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert!(
        !from_env.status.success(),
        "--policy with TERMINUS_CUSTOMER_NOTICE"
    );
    // Settings that are not per rule go with a file.
    let ok = simulate_stdin(
        &[
            "--policy",
            "examples/policy-eu.toml",
            "--source",
            "terminus-eu",
        ],
        input,
    );
    assert_ok(&ok, "--policy with --source");
    let accepted = &lines(&ok)[0]["value"];
    assert_eq!(accepted["source"], "terminus-eu");
    assert_eq!(accepted["event"]["policyRule"], "de");
    // A broken file stops the simulator before it reads a line, naming the line.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[default]\nretention = \"P7Y\"\nretension = \"P6Y\"\n",
    )
    .expect("write");
    let out = simulate_stdin(&["--policy", bad.to_str().unwrap()], input);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 3") && stderr.contains("retension"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn standard_input_gives_the_same_output_as_a_file() {
    let args = ["--until", "2027-02-01T00:00:00Z"];
    let from_file = simulate(&args, Some("customer-request.jsonl"));
    assert_ok(&from_file, "file");
    let input = std::fs::read(examples_dir().join("customer-request.jsonl")).expect("example");
    let from_stdin = simulate_stdin(&args, &input);
    assert_ok(&from_stdin, "stdin");
    assert_eq!(from_stdin.stdout, from_file.stdout);
    let dash = simulate_stdin(&["--until", "2027-02-01T00:00:00Z", "-"], &input);
    assert_ok(&dash, "stdin as -");
    assert_eq!(dash.stdout, from_file.stdout);
}

#[test]
fn policy_flags_change_the_rules() {
    let input = br#"{"eventId":"e1","eventType":"CustomerTerminationRequested","eventTime":"2026-11-27T10:15:00Z","event":{"customerId":"C-1"}}"#;
    let out = simulate_stdin(&["--customer-notice", "30d"], input);
    assert_ok(&out, "--customer-notice");
    assert_eq!(
        lines(&out)[0]["value"]["event"]["effectiveAt"],
        "2026-12-27T10:15:00.000Z"
    );
    let out = simulate_stdin(&["--source", "terminus-test"], input);
    assert_eq!(lines(&out)[0]["value"]["source"], "terminus-test");
}

#[test]
fn empty_input_and_bad_flags() {
    let out = simulate_stdin(&[], b"");
    assert_ok(&out, "empty input");
    assert!(out.stdout.is_empty());
    let out = simulate_stdin(&["--until", "next tuesday"], b"");
    assert!(!out.status.success(), "a bad --until is refused");
    let out = simulate(&[], Some("no-such-file.jsonl"));
    assert!(!out.status.success(), "a missing file is an error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-file.jsonl"));
}

/// The binary turns transparent huge pages off for itself at start (see
/// `disable_transparent_huge_pages` in main.rs): checked in the kernel's view
/// of a running process, here `simulate` waiting on its standard input.
#[cfg(target_os = "linux")]
#[test]
fn the_process_runs_without_transparent_huge_pages() {
    let thp_line = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("proc status")
            .lines()
            .find(|l| l.starts_with("THP_enabled:"))
            .map(|l| l.split_whitespace().last().unwrap_or_default().to_owned())
    };
    if thp_line(std::process::id()).is_none() {
        eprintln!("this kernel reports no THP_enabled line; nothing to check");
        return;
    }
    let mut child = Command::new(BIN)
        .arg("simulate")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn terminus simulate");
    // The flag is set before the flags are parsed; give it a moment anyway.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = thp_line(child.id());
    while seen.as_deref() != Some("0") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        seen = thp_line(child.id());
    }
    drop(child.stdin.take());
    let _ = child.wait();
    assert_eq!(
        seen.as_deref(),
        Some("0"),
        "THP_enabled of the running terminus"
    );
}
