//! W3C trace context: an input's `traceparent` becomes the parent of the span
//! that decides on it, so exported traces run from upstream through Terminus.
//! The header itself is copied unchanged onto every output the input causes.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes the remote span named by `traceparent` the parent of `span`.
pub fn link_parent(span: &tracing::Span, traceparent: Option<&[u8]>) {
    let Some(value) = traceparent.and_then(|v| std::str::from_utf8(v).ok()) else {
        return;
    };
    if span.is_disabled() {
        return;
    }
    let carrier = HashMap::from([("traceparent".to_owned(), value.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(context);
}
