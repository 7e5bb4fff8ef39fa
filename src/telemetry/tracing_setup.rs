//! Logs (JSON lines or text, levels by `RUST_LOG`) and, when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, OpenTelemetry span export over OTLP/HTTP.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the span exporter alive; flushes it on drop.
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber. JSON when `json`, human text otherwise.
/// OTLP export is on only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces
/// variant) is set; the exporter reads the other `OTEL_*` variables itself.
pub fn init(json: bool) -> TracingGuard {
    // The embedded store's own INFO lines (one per memtable flush and per
    // keyspace recovered) are its business, not an operator's: WARN and up,
    // unless RUST_LOG names its targets itself.
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let quiet = if spec.contains("fjall") || spec.contains("lsm_tree") {
        spec
    } else {
        format!("{spec},fjall=warn,lsm_tree=warn")
    };
    let filter = EnvFilter::try_new(&quiet).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json()
            .flatten_event(true)
            .with_current_span(false)
            .boxed()
    } else {
        fmt.boxed()
    };
    let otlp_wanted = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()));
    let mut provider = None;
    let otel = if otlp_wanted {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => {
                let p = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        // Also OTEL_RESOURCE_ATTRIBUTES and the SDK's own
                        // attributes (the builder's default detectors).
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name("terminus")
                            .with_attribute(opentelemetry::KeyValue::new(
                                "service.version",
                                env!("CARGO_PKG_VERSION"),
                            ))
                            .build(),
                    )
                    .build();
                let tracer = p.tracer("terminus");
                provider = Some(p);
                // Its own filter: the per-event `decide` spans are at debug
                // level, and RUST_LOG (info by default) is for the logs only.
                Some(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                            // Not the processing task's span: it lasts the
                            // process's life and would gather every commit.
                            meta.is_span()
                                && meta.target().starts_with("terminus")
                                && meta.name() != crate::worker::tasks::TASK_SPAN
                        })),
                )
            }
            Err(e) => {
                eprintln!("OpenTelemetry export disabled: {e}");
                None
            }
        }
    } else {
        None
    };
    // RUST_LOG filters the logs; the exporter, when there is one, has its own
    // filter (a layer that is absent must not enable every callsite).
    let _ = match otel {
        Some(otel) => tracing_subscriber::registry()
            .with(fmt.with_filter(filter))
            .with(otel)
            .try_init(),
        None => tracing_subscriber::registry()
            .with(fmt.with_filter(filter))
            .try_init(),
    };
    TracingGuard { provider }
}
