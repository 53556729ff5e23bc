//! `GET /system/info`: version, uptime, and the database figures (archive count asked of the
//! `archive` service, database size from Postgres).

use axum::Json;
use axum::extract::State;
use printyard_contracts::ErrorBody;
use printyard_contracts::rpc::Empty;
use printyard_contracts::system::ARCHIVE_SUMMARY;
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SystemInfo {
    pub version: &'static str,
    /// Seconds since this api instance started.
    pub uptime: u64,
    pub database: DatabaseInfo,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DatabaseInfo {
    pub archives: i64,
    /// Size of the Postgres database in MiB, one decimal.
    pub size_mb: f64,
}

/// Version, uptime and database figures.
#[utoipa::path(
    get, path = "/system/info", operation_id = "getSystemInfo", tag = "system",
    responses(
        (status = 200, body = SystemInfo),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, description = "The archive service or the database is unavailable", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn info(State(state): State<AppState>) -> Result<Json<SystemInfo>, ApiError> {
    let (summary, size) = tokio::join!(
        state.rpc.call(ARCHIVE_SUMMARY, &Empty {}),
        sqlx::query_scalar::<_, i64>("SELECT pg_database_size(current_database())")
            .fetch_one(&state.db),
    );
    let summary = summary?;
    let size = size?;
    Ok(Json(SystemInfo {
        version: env!("CARGO_PKG_VERSION"),
        uptime: state.started.elapsed().as_secs(),
        database: DatabaseInfo {
            archives: summary.archives,
            size_mb: (size as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0,
        },
    }))
}
