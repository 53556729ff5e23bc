//! The printer gateway: the only service that talks to printers (MQTT over TLS, FTPS,
//! camera), bridging them onto NATS. It runs at a site next to its printers and needs
//! nothing but NATS: no database, no object storage.
//!
//! Today it starts and answers NATS discovery; printer connections arrive with their issue.

use std::net::SocketAddr;

use printyard_contracts::ServiceName;
use printyard_service::config::{AdminConfig, HasTelemetry, NatsConfig, TelemetryConfig};
use printyard_service::{Runtime, RuntimeOptions, shutdown};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The gateway's configuration: no `database` section, by design.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats: NatsConfig,
    pub admin: AdminConfig,
    pub telemetry: TelemetryConfig,
}

impl HasTelemetry for Config {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

/// A started gateway.
pub struct Gateway {
    runtime: Runtime,
}

impl Gateway {
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let runtime = Runtime::start(
            RuntimeOptions {
                service: ServiceName::Gateway,
                description: "Bridges printers' MQTT, FTPS and camera onto NATS",
                nats: &config.nats,
                database: None,
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

/// Runs the gateway until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    Gateway::start(config, shutdown::on_signal())
        .await?
        .run_until_stopped()
        .await
}
