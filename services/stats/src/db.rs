//! The `stats` schema's plumbing shared by its modules.

use printyard_contracts::ErrorBody;

/// A database failure as callers see it (the detail stays in the log).
pub fn unavailable(err: sqlx::Error) -> ErrorBody {
    printyard_service::db::error_body(&err, "statistics")
}
