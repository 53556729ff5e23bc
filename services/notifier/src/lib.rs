//! The notifier service: webhook subscriptions and their deliveries. It alone reads and writes
//! the `notifier` schema; `api` asks it over NATS for `/webhooks`, and it learns what to send
//! from `FARM_EVENTS`.
//!
//! - [`subscriptions`]: the endpoints `api` calls (create, list, update, delete, test, log).
//! - [`events`]: the durable consumer that turns events into deliveries.
//! - [`delivery`]: the sender: claims, signs, posts, retries, records.
//! - [`payload`], [`signing`], [`targets`]: what is sent, how it is signed, where it may go.

pub mod config;
pub mod delivery;
pub mod events;
pub mod payload;
pub mod signing;
pub mod subscriptions;
pub mod targets;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use printyard_contracts::ServiceName;
use printyard_contracts::farm::PRINTER_REGISTRY_BUCKET;
use printyard_contracts::webhooks::{self as contract, deliveries_due_subject};
use printyard_service::{Runtime, RuntimeOptions, shutdown};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::{Config, NotifierConfig};

/// A started notifier service.
pub struct Notifier {
    runtime: Runtime,
}

/// Serves `endpoint` with the [`subscriptions::Subscriptions`] method of the same request type.
macro_rules! serve {
    ($runtime:ident, $subscriptions:expr, $endpoint:expr, $method:ident) => {{
        let subscriptions = $subscriptions.clone();
        $runtime
            .serve($endpoint, move |request| {
                let subscriptions = subscriptions.clone();
                async move { subscriptions.$method(request).await }
            })
            .await?;
    }};
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
            shutdown.clone(),
        )
        .await?;
        let pool = runtime
            .db()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the notifier needs a database"))?;
        let settings = Arc::new(config.notifier.clone());
        let client = delivery::client(&settings)?;

        let subscriptions = subscriptions::Subscriptions {
            pool: pool.clone(),
            config: settings.clone(),
            client: client.clone(),
        };
        serve!(runtime, subscriptions, contract::LIST, list);
        serve!(runtime, subscriptions, contract::GET, get);
        serve!(runtime, subscriptions, contract::CREATE, create);
        serve!(runtime, subscriptions, contract::UPDATE, update);
        serve!(runtime, subscriptions, contract::DELETE, delete);
        serve!(runtime, subscriptions, contract::TEST, test);
        serve!(runtime, subscriptions, contract::DELIVERIES, deliveries);

        let jetstream = async_nats::jetstream::new(runtime.nats().clone());
        let registry =
            printyard_service::nats::kv_bucket(&jetstream, PRINTER_REGISTRY_BUCKET, Duration::ZERO)
                .await?;
        let names = events::PrinterNames::default();
        runtime
            .tasks()
            .spawn(names.clone().follow(registry, shutdown.clone()));

        // Deliveries stored by any replica wake every replica's sender.
        let wake = Arc::new(Notify::new());
        let woken = wake.clone();
        let due = printyard_service::nats::on_each_message(
            runtime.nats(),
            deliveries_due_subject(),
            shutdown.clone(),
            move || woken.notify_one(),
        )
        .await?;
        runtime.tasks().spawn(due);

        let sender = delivery::Sender {
            pool: pool.clone(),
            client,
            config: settings.clone(),
            wake: wake.clone(),
        };
        runtime.tasks().spawn(sender.run(shutdown.clone()));

        let context = events::Context {
            jetstream,
            nats: runtime.nats().clone(),
            pool: pool.clone(),
            names,
            wake,
        };
        runtime
            .tasks()
            .spawn(events::run(context, shutdown.clone()));

        let keep_days = settings.keep_log_days;
        runtime.tasks().spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(600));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = every.tick() => {}
                }
                if let Err(err) = events::clean(&pool, keep_days).await {
                    tracing::warn!(error = %err, "old deliveries not cleaned");
                }
            }
        });
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
