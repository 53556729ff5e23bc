//! The `/api/v1` router, with the reference's error format for unknown routes and methods.

mod health;
mod system;

use axum::Router;
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;
use printyard_contracts::{ErrorBody, ErrorCode};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::error::error_response;
use crate::state::AppState;

/// The base path of every endpoint.
pub const BASE: &str = "/api/v1";

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/health", get(health::health))
        .route("/system/info", get(system::info));
    Router::new()
        .nest(BASE, v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(
            printyard_service::metrics::track_http,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(
            |request: &axum::http::Request<axum::body::Body>| {
                let span = tracing::info_span!(
                    "http.request",
                    otel.kind = "server",
                    http.method = %request.method(),
                    http.path = %request.uri().path(),
                );
                printyard_service::telemetry::adopt_http_context(&span, request.headers());
                span
            },
        ))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            error_response(ErrorBody::new(
                ErrorCode::InternalError,
                "Internal server error",
            ))
        }))
        .with_state(state)
}

async fn not_found(uri: Uri) -> Response {
    error_response(ErrorBody::new(
        ErrorCode::NotFound,
        format!("No endpoint at {}", uri.path()),
    ))
}

async fn method_not_allowed() -> Response {
    error_response(ErrorBody::new(
        ErrorCode::MethodNotAllowed,
        "Method not allowed on this endpoint",
    ))
}
