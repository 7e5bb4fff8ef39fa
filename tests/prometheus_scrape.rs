//! Prometheus for real: Debian's Prometheus server (package `prometheus`,
//! installed by `scripts/prereqs`) scrapes a running worker's `/metrics`.
//!
//! - the scrape of job `terminus` is `up`;
//! - every metric of README.md's metric table is known to Prometheus (target
//!   metadata) with the documented type, and has a series, before any event;
//! - the alert `TerminusConsumerLagGrowing` of `deploy/prometheus/alerts.yml`
//!   goes to `firing` on live data: the worker is paused through
//!   `/admin/pause` and input keeps arriving, so the lag passes 1000 and grows.
//!
//! The rules Prometheus loads are a copy of `deploy/prometheus/alerts.yml`
//! with every `for:` shortened to 2s, and scrape and evaluation intervals of
//! 1s, so the test takes seconds instead of the alert's 10 minutes; the
//! expressions are the file's own.
//!
//! The Prometheus binary is `PROMETHEUS_BIN`, else `prometheus` on the PATH.
//! Outside CI a machine without it skips the test with a message; in CI
//! (`CI` set) a missing binary fails it.

mod common;

use common::free_port;

use common::rig::{Rig, envelope, stop};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// GET `url`: (status, body); status 0 when nothing answered.
fn get(url: &str) -> (u16, String) {
    match ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
    {
        Ok(mut response) => (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(_) => (0, String::new()),
    }
}

fn post(url: &str) -> u16 {
    ureq::post(url)
        .config()
        .http_status_as_error(false)
        .build()
        .send_empty()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// The `data` of a Prometheus API answer (asserting `status: success`).
fn api(base: &str, path: &str) -> Value {
    let (code, body) = get(&format!("{base}{path}"));
    assert_eq!(code, 200, "{path}: {body}");
    let v: Value = serde_json::from_str(&body).expect("API answers JSON");
    assert_eq!(v["status"], "success", "{path}: {body}");
    v["data"].clone()
}

async fn wait_for<T>(what: &str, max: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + max;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {max:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn prometheus_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROMETHEUS_BIN") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|p| p.is_file())
    })
}

/// `(name, type)` of every row of README.md's metric table.
fn readme_metrics() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let table = readme
        .split_once("### Metrics")
        .expect("README has a Metrics section")
        .1;
    table
        .lines()
        .filter(|l| l.starts_with("| `terminus_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
        })
        .collect()
}

/// `alerts.yml` with every `for:` at 2s.
fn fast_rules() -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml"),
    )
    .expect("alerts.yml");
    text.lines()
        .map(|l| match l.split_once("for: ") {
            Some((indent, _)) if indent.trim().is_empty() => format!("{indent}for: 2s"),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_worker_and_an_alert_fires_on_live_data() {
    let Some(bin) = prometheus_bin() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: the prometheus binary is missing (scripts/prereqs installs Debian's prometheus)"
        );
        eprintln!("SKIPPED: no prometheus binary (scripts/prereqs installs it)");
        return;
    };
    let rig = Rig::new("prom").await;
    let admin = free_port();
    let mut worker = rig.spawn_with("a", &["--admin-addr".into(), format!("127.0.0.1:{admin}")]);
    let admin_url = format!("http://127.0.0.1:{admin}");
    wait_for("/readyz 200", Duration::from_secs(60), || {
        (get(&format!("{admin_url}/readyz")).0 == 200).then_some(())
    })
    .await;

    let dir = rig.log_dir.join("prometheus");
    std::fs::create_dir_all(&dir).expect("prometheus dir");
    std::fs::write(dir.join("alerts.yml"), fast_rules()).expect("rules");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - alerts.yml\n\
             scrape_configs:\n  - job_name: terminus\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: [\"127.0.0.1:{admin}\"]\n"
        ),
    )
    .expect("config");
    let web = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
    let _prometheus = Prometheus(
        Command::new(&bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start prometheus"),
    );
    let base = format!("http://127.0.0.1:{web}");

    // The scrape succeeds.
    wait_for("the terminus target up", Duration::from_secs(60), || {
        let (code, body) = get(&format!("{base}/api/v1/targets"));
        let v: Value = serde_json::from_str(&body).ok()?;
        let targets = v["data"]["activeTargets"].as_array()?.clone();
        (code == 200
            && targets
                .iter()
                .any(|t| t["labels"]["job"] == "terminus" && t["health"] == "up"))
        .then_some(())
    })
    .await;

    // Every metric of the README's table, with its documented type and a
    // series, from the start (before any event: known label values start at 0).
    let expected = readme_metrics();
    assert!(expected.len() >= 20, "README table parsed: {expected:?}");
    let metadata = wait_for(
        "the metadata of every metric",
        Duration::from_secs(30),
        || {
            let data = api(
                &base,
                "/api/v1/targets/metadata?match_target=%7Bjob%3D%22terminus%22%7D",
            );
            let rows = data.as_array()?.clone();
            let all = expected.iter().all(|(name, _)| {
                let family = name.strip_suffix("_total").unwrap_or(name);
                rows.iter()
                    .any(|m| m["metric"] == family || m["metric"] == name.as_str())
            });
            // Give up waiting after the deadline's last try with what there is.
            (all || rows.len() > 1000).then_some(rows)
        },
    )
    .await;
    let names = api(&base, "/api/v1/label/__name__/values");
    let names: Vec<&str> = names
        .as_array()
        .expect("names")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut problems = Vec::new();
    for (name, kind) in &expected {
        // OpenMetrics names a counter's family without its `_total` suffix.
        let family = name.strip_suffix("_total").unwrap_or(name);
        let found = metadata
            .iter()
            .find(|m| m["metric"] == family || m["metric"] == name.as_str());
        match found {
            None => problems.push(format!("{name}: not in the target metadata")),
            Some(m) if m["type"] != kind.as_str() => {
                problems.push(format!("{name}: type {} but README says {kind}", m["type"]))
            }
            Some(_) => {}
        }
        let series = match kind.as_str() {
            "histogram" => format!("{name}_count"),
            _ => name.clone(),
        };
        if !names.contains(&series.as_str()) {
            problems.push(format!("{name}: no series {series}"));
        }
    }
    assert!(
        problems.is_empty(),
        "metrics against README:\n{}",
        problems.join("\n")
    );

    // An alert of alerts.yml fires on live data: paused, input keeps coming.
    assert_eq!(post(&format!("{admin_url}/admin/pause")), 202);
    let now = terminus::time::Timestamp::now().to_rfc3339();
    let mut sent = 0;
    let alert = loop {
        let batch: Vec<String> = (sent..sent + 400)
            .map(|i| {
                envelope(
                    &format!("p-{i}"),
                    "AllServicesTerminated",
                    &now,
                    serde_json::json!({"customerId": format!("P-{i}")}),
                )
            })
            .collect();
        rig.produce(&batch).await;
        sent += 400;
        let alerts = api(&base, "/api/v1/alerts");
        if let Some(a) = alerts["alerts"].as_array().and_then(|all| {
            all.iter()
                .find(|a| {
                    a["labels"]["alertname"] == "TerminusConsumerLagGrowing"
                        && a["state"] == "firing"
                })
                .cloned()
        }) {
            break a;
        }
        assert!(
            sent < 20_000,
            "TerminusConsumerLagGrowing never fired after {sent} records"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert_eq!(alert["labels"]["topic"], rig.topic("lifecycle"));
    assert_eq!(alert["labels"]["severity"], "warning");
    stop(&mut worker);
}
