//! The notifier service (Webhook subscriptions, deliveries and retries). It alone owns the `notifier` schema.
//!
//! Today it starts, migrates its schema and answers NATS discovery; it offers no endpoint
//! until its issue gives it one.

use std::net::SocketAddr;

use printyard_contracts::ServiceName;
use printyard_service::config::ServiceConfig;
use printyard_service::{Runtime, RuntimeOptions, shutdown};
use tokio_util::sync::CancellationToken;

/// The notifier service's configuration.
pub type Config = ServiceConfig;

/// A started notifier service.
pub struct Notifier {
    runtime: Runtime,
}

impl Notifier {
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let runtime = Runtime::start(
            RuntimeOptions {
                service: ServiceName::Notifier,
                description: "Webhook subscriptions, deliveries and retries",
                nats: &config.nats,
                database: Some((
                    &config.database,
                    sqlx::migrate!("../../migrations/notifier"),
                )),
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

/// Runs the notifier service until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    Notifier::start(config, shutdown::on_signal())
        .await?
        .run_until_stopped()
        .await
}
