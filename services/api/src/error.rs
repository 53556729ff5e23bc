//! The one place where failures become the reference's `{ "detail", "code" }` responses.
//! Internal errors are logged with their context and answered with a generic message: no
//! stack trace, SQL or secret ever reaches a client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use printyard_contracts::{ErrorBody, ErrorCode};
use printyard_service::rpc::RpcError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Known(ErrorBody),
    /// A body that is not JSON at all: 400 with `VALIDATION_ERROR` (shape errors are 422).
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error("service call failed: {0}")]
    Rpc(#[from] RpcError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError::Known(ErrorBody::new(code, detail))
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, detail)
    }

    /// The `{detail, code}` this error is answered with (logging what a client must not see).
    pub fn body(&self) -> ErrorBody {
        match self {
            ApiError::Known(body) => body.clone(),
            ApiError::Malformed(detail) => ErrorBody::new(
                ErrorCode::ValidationError,
                format!("Malformed JSON: {detail}"),
            ),
            ApiError::Rpc(err) => {
                if matches!(
                    err,
                    RpcError::Unavailable { .. } | RpcError::BadReply { .. }
                ) {
                    tracing::warn!(error = %err, "service call failed");
                }
                err.to_body()
            }
            ApiError::Database(err) => {
                // Postgres class 22 (data exception: a NUL byte in text, a value out of range)
                // is bad input that got past validation: the client's error, not ours.
                if printyard_service::db::is_data_exception(err) {
                    tracing::warn!(error = %err, "input refused by the database");
                    return ErrorBody::new(
                        ErrorCode::ValidationError,
                        "A value in the request cannot be stored",
                    );
                }
                tracing::error!(error = %err, "database error");
                // Postgres refusing or dropping the connection: class 08 (connection
                // exception), 53 (insufficient resources: too many connections), 57 (operator
                // intervention: shutting down, terminated), 55000 (a database that does not
                // accept connections now).
                let unreachable = matches!(err, sqlx::Error::Database(db) if db.code().is_some_and(|c| {
                    c.starts_with("08") || c.starts_with("53") || c.starts_with("57") || c == "55000"
                }));
                match err {
                    _ if unreachable => ErrorBody::new(
                        ErrorCode::ServiceUnavailable,
                        "The database is unavailable, try again shortly",
                    ),
                    sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                        ErrorBody::new(
                            ErrorCode::ServiceUnavailable,
                            "The database is unavailable, try again shortly",
                        )
                    }
                    _ => ErrorBody::new(ErrorCode::InternalError, "Internal server error"),
                }
            }
        }
    }
}

/// Renders an error body with the status its code maps to.
pub fn error_response(body: ErrorBody) -> Response {
    let status =
        StatusCode::from_u16(body.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Malformed(detail) = &self {
            let body = ErrorBody::new(
                ErrorCode::ValidationError,
                format!("Malformed JSON: {detail}"),
            );
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
        error_response(self.body())
    }
}
