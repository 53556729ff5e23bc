//! The scheduler service (The print queue and dispatch decisions). It alone owns the `queue` schema.
//!
//! Today it starts, migrates its schema and answers NATS discovery; it offers no endpoint
//! until its issue gives it one.

use std::net::SocketAddr;

use printyard_contracts::ServiceName;
use printyard_service::config::ServiceConfig;
use printyard_service::{Runtime, RuntimeOptions, shutdown};
use tokio_util::sync::CancellationToken;

/// The scheduler service's configuration.
pub type Config = ServiceConfig;

/// A started scheduler service.
pub struct Scheduler {
    runtime: Runtime,
}

impl Scheduler {
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let runtime = Runtime::start(
            RuntimeOptions {
                service: ServiceName::Scheduler,
                description: "The print queue and dispatch decisions",
                nats: &config.nats,
                database: Some((&config.database, sqlx::migrate!("../../migrations/queue"))),
                admin: &config.admin,
            },
            shutdown,
        )
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

/// Runs the scheduler service until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    Scheduler::start(config, shutdown::on_signal())
        .await?
        .run_until_stopped()
        .await
}
