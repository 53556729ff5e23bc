//! The admin listener every service runs beside its work: `/healthz` (the process is alive),
//! `/readyz` (its dependencies answer and it is not shutting down) and `/metrics`
//! (Prometheus text). It carries no business endpoints and needs no API key; expose it to
//! the cluster's probes and scrapers only.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// The named dependency checks behind `/readyz`.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, CheckFn)>,
}

impl Readiness {
    pub fn with_check<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name, Arc::new(move || Box::pin(check()))));
        self
    }
}

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    shutdown: CancellationToken,
}

#[derive(Serialize)]
struct ReadyBody {
    status: &'static str,
    checks: BTreeMap<&'static str, String>,
}

/// The admin router.
pub fn router(readiness: Readiness, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(AdminState {
            readiness,
            shutdown,
        })
}

async fn ready(State(state): State<AdminState>) -> Response {
    const CHECK_DEADLINE: Duration = Duration::from_secs(2);
    let mut checks = BTreeMap::new();
    let mut ok = !state.shutdown.is_cancelled();
    if !ok {
        checks.insert("shutdown", "in progress".to_owned());
    }
    let results = futures::future::join_all(state.readiness.checks.iter().map(
        |(name, check)| async move {
            let outcome = match tokio::time::timeout(CHECK_DEADLINE, check()).await {
                Ok(outcome) => outcome,
                Err(_) => Err("no answer within 2 s".to_owned()),
            };
            (*name, outcome)
        },
    ))
    .await;
    for (name, outcome) in results {
        match outcome {
            Ok(()) => {
                checks.insert(name, "ok".to_owned());
            }
            Err(reason) => {
                ok = false;
                checks.insert(name, reason);
            }
        }
    }
    let (status, word) = if ok {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    (
        status,
        axum::Json(ReadyBody {
            status: word,
            checks,
        }),
    )
        .into_response()
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
        .into_response()
}
