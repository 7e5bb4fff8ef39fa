//! The admin HTTP server: health, readiness, metrics, interactive queries and
//! pause/resume. Bind it to loopback or a private network only: the query
//! endpoint returns customers' termination state.

use super::metrics::Metrics;
use super::status::Status;
use crate::engine::Lookup;
use crate::kafka::partition_for_key;
use crate::time::Timestamp;
use crate::worker::TaskEngines;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// What the handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub status: Arc<Status>,
    /// The worker's owned partitions (in whichever task owns each), for
    /// queries of committed state.
    pub engines: TaskEngines,
    /// Partition count of the input topics (set at start-up).
    pub partitions: Arc<OnceLock<i32>>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/relationships/{customer_id}", get(relationship))
        .route("/admin/pause", post(pause))
        .route("/admin/resume", post(resume))
        .with_state(state)
}

async fn healthz(State(s): State<AdminState>) -> Response {
    match s
        .status
        .health(Timestamp::now().millis(), Duration::from_secs(30))
    {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    match s.status.readiness() {
        Ok(detail) => (StatusCode::OK, format!("ready: {detail}\n")).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    s.metrics
        .set_readiness(s.status.readiness().is_ok(), s.status.owned().len());
    (
        [(
            header::CONTENT_TYPE,
            // prometheus_client encodes OpenMetrics (`# TYPE x counter` with
            // `x_total` samples, `# EOF`): say so, or Prometheus reads the
            // counters as untyped with the classic text parser.
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn pause(State(s): State<AdminState>) -> Response {
    s.status.request_pause(true);
    (StatusCode::ACCEPTED, "pausing consumption\n").into_response()
}

async fn resume(State(s): State<AdminState>) -> Response {
    s.status.request_pause(false);
    (StatusCode::ACCEPTED, "resuming consumption\n").into_response()
}

async fn relationship(State(s): State<AdminState>, Path(customer_id): Path<String>) -> Response {
    let Some(partitions) = s.partitions.get() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "the worker has not started yet"})),
        )
            .into_response();
    };
    let partition = partition_for_key(customer_id.as_bytes(), *partitions);
    let engines = s.engines.clone();
    let id = customer_id.clone();
    // The lock is a std mutex that the worker holds for one record at a time
    // (never across a commit or a restore): wait for it off the runtime.
    let found = tokio::task::spawn_blocking(move || match engines.committed(partition, &id) {
        Lookup::NotOwned => None,
        Lookup::Unknown => Some(None),
        Lookup::Found(state) => Some(Some(serde_json::to_value(&*state).unwrap_or_default())),
    })
    .await
    .unwrap_or(None);
    match found {
        Some(Some(state)) => (
            StatusCode::OK,
            Json(json!({"customerId": customer_id, "partition": partition, "state": state})),
        )
            .into_response(),
        Some(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({
                "error": "unknown customer",
                "customerId": customer_id,
                "partition": partition,
                "detail": "this instance owns the customer's partition and holds no state for it",
            })),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({
                "error": "not owned by this instance",
                "customerId": customer_id,
                "partition": partition,
                "detail": format!("partition {partition} is held by another instance of the consumer group; ask that one"),
            })),
        )
            .into_response(),
    }
}
