//! The `stats` schema's plumbing shared by its modules.

use printyard_contracts::{ErrorBody, ErrorCode};

/// A database failure as callers see it (the detail stays in the log).
pub fn unavailable(err: sqlx::Error) -> ErrorBody {
    tracing::error!(error = %err, "stats database query failed");
    ErrorBody::new(
        ErrorCode::ServiceUnavailable,
        "The statistics database is unavailable",
    )
}
