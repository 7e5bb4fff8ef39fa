//! Traces for real: a Jaeger v1.76.0 (OTLP/HTTP receiver, in-memory storage,
//! its HTTP query API) receives the spans of a running worker. A journey
//! whose input carries a `traceparent` is run, then the backend is asked:
//!
//! - the worker's spans arrive under the incoming trace id;
//! - the `decide` span is a child of the incoming span;
//! - `commit` spans are there;
//! - `service.name` is `terminus`, and the resource attributes are set (the
//!   SDK's, `service.version`, and `OTEL_RESOURCE_ATTRIBUTES`').
//!
//! Jaeger is built once from the Go module proxy and cached by
//! `tests/tracing/jaeger` (`.ci/run` builds it in its own, timed phase). Outside
//! CI a machine without Go skips the test with a message; in CI it fails.

mod common;

use common::free_port;

use common::rig::{Rig, stop};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const INCOMING_SPAN: &str = "a0f067aa0ba902b7";

fn get(url: &str) -> (u16, String) {
    match ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
    {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(_) => (0, String::new()),
    }
}

struct Jaeger(Child);

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn jaeger_bin() -> Option<String> {
    if let Ok(bin) = std::env::var("JAEGER_BIN") {
        return Some(bin);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tracing/jaeger");
    let out = Command::new(script)
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Jaeger's tag list as `key → value`.
fn tags(list: &Value) -> Vec<(String, Value)> {
    list.as_array()
        .map(|tags| {
            tags.iter()
                .map(|t| {
                    (
                        t["key"].as_str().unwrap_or("").to_owned(),
                        t["value"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn tag<'a>(list: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    list.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_real_trace_backend_under_the_incoming_trace() {
    let Some(bin) = jaeger_bin() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: no Jaeger binary (tests/tracing/jaeger builds it with go)"
        );
        eprintln!("SKIPPED: no Jaeger binary (tests/tracing/jaeger needs go)");
        return;
    };
    let mut rig = Rig::new("traces").await;
    let (otlp, query, grpc) = (free_port(), free_port(), free_port());
    let dir = rig.log_dir.join("jaeger");
    std::fs::create_dir_all(&dir).expect("jaeger dir");
    let config = format!(
        r#"service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{grpc}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"#
    );
    std::fs::write(dir.join("config.yaml"), config).expect("config");
    let log = std::fs::File::create(dir.join("jaeger.log")).expect("log");
    let _jaeger = Jaeger(
        Command::new(&bin)
            .arg("--config")
            .arg(dir.join("config.yaml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start jaeger"),
    );
    let base = format!("http://127.0.0.1:{query}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&format!("{base}/api/services")).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "Jaeger not answering; log in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    rig.extra_env = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            format!("http://127.0.0.1:{otlp}"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into()),
        (
            "OTEL_RESOURCE_ATTRIBUTES".into(),
            "deployment.environment=test,service.namespace=bss".into(),
        ),
    ];
    let mut worker = rig.spawn("a");
    let now = terminus::time::Timestamp::now().to_rfc3339();
    let fraud = common::rig::envelope(
        "t-1",
        "FraudConfirmed",
        &now,
        json!({"customerId": "T-1", "caseRef": "case-1"}),
    );
    let traceparent = format!("00-{TRACE_ID}-{INCOMING_SPAN}-01");
    common::produce_with_headers(
        &rig.topic("decisions"),
        &[("T-1", fraud.as_bytes())],
        &[("traceparent", &traceparent)],
    )
    .await;
    rig.wait_caught_up(Duration::from_secs(60)).await;
    stop(&mut worker); // flushes the exporter

    let deadline = Instant::now() + Duration::from_secs(30);
    let trace = loop {
        let (code, body) = get(&format!("{base}/api/traces/{TRACE_ID}"));
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if code == 200
            && v["data"][0]["spans"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
        {
            break v["data"][0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "trace {TRACE_ID} not in Jaeger ({code}: {body}); worker log in {}",
            rig.log_dir.display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let spans = trace["spans"].as_array().expect("spans");
    let decide: Vec<&Value> = spans
        .iter()
        .filter(|s| s["operationName"] == "decide")
        .collect();
    assert!(!decide.is_empty(), "no decide span in {trace:#}");
    for span in &decide {
        assert_eq!(span["traceID"], TRACE_ID);
        let parents: Vec<&str> = span["references"]
            .as_array()
            .expect("references")
            .iter()
            .filter(|r| r["refType"] == "CHILD_OF")
            .filter_map(|r| r["spanID"].as_str())
            .collect();
        assert_eq!(parents, [INCOMING_SPAN], "decide's parent: {span:#}");
        let span_tags = tags(&span["tags"]);
        assert_eq!(
            tag(&span_tags, "event_type"),
            Some(&json!("FraudConfirmed"))
        );
    }
    let process = &trace["processes"][decide[0]["processID"].as_str().expect("process id")];
    assert_eq!(process["serviceName"], "terminus");
    let resource = tags(&process["tags"]);
    assert_eq!(
        tag(&resource, "service.version"),
        Some(&json!(env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(
        tag(&resource, "deployment.environment"),
        Some(&json!("test"))
    );
    assert_eq!(tag(&resource, "service.namespace"), Some(&json!("bss")));
    assert_eq!(
        tag(&resource, "telemetry.sdk.language"),
        Some(&json!("rust"))
    );

    // The commit spans (one trace per transaction).
    let (code, body) = get(&format!(
        "{base}/api/traces?service=terminus&operation=commit&limit=50&lookback=1h"
    ));
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let commits = v["data"].as_array().map(Vec::len).unwrap_or(0);
    assert!(
        code == 200 && commits > 0,
        "no commit spans ({code}): {body}"
    );
}
