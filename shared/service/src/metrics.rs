//! Prometheus metrics: one recorder per process, rendered by the admin listener's `/metrics`.
//!
//! HTTP requests (in `api`) and served NATS requests (in every service) are counted and
//! timed here; label values are bounded (route templates, endpoint names, status classes),
//! never raw paths or ids.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .expect("bucket list is not empty")
            // Fetching a 3MF from a printer takes seconds to minutes.
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("capture_duration_seconds".into()),
                &[1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0],
            )
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (a test harness); ours then only renders.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// axum middleware: counts and times every HTTP request by method, route template and status.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("printyard_http_requests_total", &labels).increment(1);
    metrics::histogram!("printyard_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Records one served NATS request.
pub fn record_rpc(endpoint: &str, outcome: &'static str, started: Instant) {
    let labels = [
        ("endpoint", endpoint.to_owned()),
        ("outcome", outcome.to_owned()),
    ];
    metrics::counter!("printyard_rpc_requests_total", &labels).increment(1);
    metrics::histogram!("printyard_rpc_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
}
