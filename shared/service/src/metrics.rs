//! Prometheus metrics: one recorder per process, rendered by the admin listener's `/metrics`.
//!
//! HTTP requests (in `api`) and served NATS requests (in every service) are counted and
//! timed here; label values are bounded (route templates, endpoint names, status classes),
//! never raw paths or ids.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
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
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let (requests, duration) = http_series(method, route, response.status().as_u16());
    requests.increment(1);
    duration.record(started.elapsed().as_secs_f64());
    response
}

/// A method as a label: the standard ones by name, any other as `OTHER` (clients may send
/// any token as a method, and each would otherwise be a series kept forever).
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("OTHER")
}

/// The request counter and duration histogram of one method, route and status.
struct HttpSeries {
    method: &'static str,
    status: u16,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

/// Route template → its series, so that a request finds its handles without building and
/// hashing label sets (which cost a few allocations per request on the hottest routes).
static HTTP_SERIES: LazyLock<RwLock<HashMap<String, Vec<HttpSeries>>>> =
    LazyLock::new(Default::default);

fn http_series(
    method: &'static str,
    route: &str,
    status: u16,
) -> (metrics::Counter, metrics::Histogram) {
    let find = |series: &HashMap<String, Vec<HttpSeries>>| {
        series
            .get(route)?
            .iter()
            .find(|s| s.status == status && s.method == method)
            .map(|s| (s.requests.clone(), s.duration.clone()))
    };
    if let Ok(series) = HTTP_SERIES.read()
        && let Some(found) = find(&series)
    {
        return found;
    }
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    let requests = metrics::counter!("printyard_http_requests_total", &labels);
    let duration = metrics::histogram!("printyard_http_request_duration_seconds", &labels);
    // Kept only once this process's recorder exists (before, the handles record nothing).
    if HANDLE.get().is_some()
        && let Ok(mut series) = HTTP_SERIES.write()
        && find(&series).is_none()
    {
        series
            .entry(route.to_owned())
            .or_default()
            .push(HttpSeries {
                method,
                status,
                requests: requests.clone(),
                duration: duration.clone(),
            });
    }
    (requests, duration)
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
