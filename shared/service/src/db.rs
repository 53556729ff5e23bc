//! Postgres: a pool with deadlines, and migrations of one service's own schema.
//!
//! Each central service owns one schema (`api`, `archive`, `queue`, `stats`, `notifier`) and
//! its migrations live in `migrations/<service>/`. The migration history of a service is kept
//! in its own schema, and sqlx holds a database-wide advisory lock while migrating, so
//! replicas that start together apply each migration exactly once.

use std::time::{Duration, Instant};

use printyard_contracts::ServiceName;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::backoff::Backoff;
use crate::config::DatabaseConfig;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL is invalid: {0}")]
    BadUrl(sqlx::Error),
    #[error("Postgres not reachable after {secs} s: {last}")]
    Unreachable { secs: u64, last: String },
    #[error("the {service} service has no database schema")]
    NoSchema { service: ServiceName },
    #[error("migrating schema {schema} failed: {source}")]
    Migrate {
        schema: &'static str,
        source: sqlx::migrate::MigrateError,
    },
}

/// Opens a pool, retrying with backoff until `startup_timeout_secs` have passed.
pub async fn connect(config: &DatabaseConfig, service: ServiceName) -> Result<PgPool, DbError> {
    let options: PgConnectOptions = config.url.expose().parse().map_err(DbError::BadUrl)?;
    let options = options.application_name(&format!("printyard-{service}"));
    let deadline = Instant::now() + Duration::from_secs(config.startup_timeout_secs);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
            .connect_with(options.clone())
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(err) => {
                let delay = backoff.next_delay();
                // The error text names host and port but never the password.
                if Instant::now() + delay >= deadline {
                    return Err(DbError::Unreachable {
                        secs: config.startup_timeout_secs,
                        last: err.to_string(),
                    });
                }
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "Postgres not reachable yet");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Applies `migrator` inside `service`'s own schema, creating the schema if needed.
pub async fn migrate(
    pool: &PgPool,
    service: ServiceName,
    mut migrator: Migrator,
) -> Result<(), DbError> {
    let schema = service.schema().ok_or(DbError::NoSchema { service })?;
    migrator.create_schema(schema);
    migrator.dangerous_set_table_name(format!("{schema}._sqlx_migrations"));
    migrator
        .run(pool)
        .await
        .map_err(|source| DbError::Migrate { schema, source })?;
    tracing::info!(schema, "database schema up to date");
    Ok(())
}

/// Whether Postgres answers a trivial query within `deadline`.
pub async fn ping(pool: &PgPool, deadline: Duration) -> Result<(), String> {
    match tokio::time::timeout(deadline, sqlx::query("SELECT 1").execute(pool)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {} ms", deadline.as_millis())),
    }
}

/// A failed query as the caller of a service sees it; the detail stays in the log. Postgres
/// class 22 (data exception: a NUL byte in text, a value out of range) is input that got past
/// validation, the client's error (422); anything else is the database being unavailable (503).
/// `what` names the database to the caller ("the queue database is unavailable").
pub fn error_body(err: &sqlx::Error, what: &str) -> printyard_contracts::ErrorBody {
    use printyard_contracts::{ErrorBody, ErrorCode};
    if is_data_exception(err) {
        tracing::warn!(error = %err, "input refused by the {what} database");
        return ErrorBody::new(
            ErrorCode::ValidationError,
            "A value in the request cannot be stored",
        );
    }
    tracing::error!(error = %err, "{what} database query failed");
    ErrorBody::new(
        ErrorCode::ServiceUnavailable,
        format!("The {what} database is unavailable"),
    )
}

/// Postgres class 22, data exception: a value the database cannot store (a NUL byte in text, a
/// number out of range), so the request's fault.
pub fn is_data_exception(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")))
}
