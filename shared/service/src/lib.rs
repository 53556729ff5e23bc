//! Plumbing every Printyard service shares: layered config, logs and traces, NATS with trace
//! context in headers, typed service calls, Postgres with per-service schema migrations, the
//! admin listener (`/healthz`, `/readyz`, `/metrics`) and graceful shutdown.
//!
//! A service is a [`runtime::Runtime`] plus its own endpoints and tasks; nothing here knows
//! about printers, archives or queues.

pub mod admin;
pub mod backoff;
pub mod boot;
pub mod config;
pub mod db;
pub mod farm_events;
pub mod files;
pub mod frames;
pub mod http;
pub mod kv_watch;
pub mod metrics;
pub mod nats;
pub mod rpc;
pub mod runtime;
pub mod secret;
pub mod shutdown;
pub mod telemetry;

pub use runtime::{Runtime, RuntimeOptions};

/// Runs a service until SIGTERM or SIGINT, then stops it in order: every service binary's
/// `run`, given the service's `start`.
pub async fn run_until_signal<Start, Fut>(start: Start) -> anyhow::Result<()>
where
    Start: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Runtime>>,
{
    start(shutdown::on_signal())
        .await?
        .run_until_stopped()
        .await
}
pub use secret::Secret;
