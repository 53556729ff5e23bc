//! The archive service: every print with its 3MF file, and projects. It alone reads and writes
//! the `archive` schema; others ask it over NATS.
//!
//! Today it answers the archive summary behind `/system/info`; auto-archiving and the
//! archive endpoints arrive with their issue.

use std::net::SocketAddr;

use printyard_contracts::system::{ARCHIVE_SUMMARY, ArchiveSummary};
use printyard_contracts::{ErrorBody, ErrorCode, ServiceName};
use printyard_service::config::ServiceConfig;
use printyard_service::{Runtime, RuntimeOptions, shutdown};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The archive service's configuration.
pub type Config = ServiceConfig;

/// A started archive service.
pub struct Archive {
    runtime: Runtime,
}

impl Archive {
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let runtime = Runtime::start(
            RuntimeOptions {
                service: ServiceName::Archive,
                description: "Print archives, 3MF files and projects",
                nats: &config.nats,
                database: Some((&config.database, sqlx::migrate!("../../migrations/archive"))),
                admin: &config.admin,
            },
            shutdown,
        )
        .await?;
        let pool = runtime
            .db()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("archive needs a database"))?;
        runtime
            .serve(ARCHIVE_SUMMARY, move |_| {
                let pool = pool.clone();
                async move { summary(&pool).await }
            })
            .await?;
        Ok(Self { runtime })
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.runtime.admin_addr()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.runtime.run_until_stopped().await
    }
}

async fn summary(pool: &PgPool) -> Result<ArchiveSummary, ErrorBody> {
    let archives: i64 = sqlx::query_scalar("SELECT count(*) FROM archive.archives")
        .fetch_one(pool)
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "counting archives failed");
            ErrorBody::new(
                ErrorCode::ServiceUnavailable,
                "The archive database is unavailable",
            )
        })?;
    Ok(ArchiveSummary { archives })
}

/// Runs the archive service until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    Archive::start(config, shutdown::on_signal())
        .await?
        .run_until_stopped()
        .await
}
