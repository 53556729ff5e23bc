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

use std::sync::Arc;
use std::time::Duration;

use printyard_contracts::ServiceName;
use printyard_contracts::farm::PRINTER_REGISTRY_BUCKET;
use printyard_contracts::webhooks::{self as contract, deliveries_due_subject};
use printyard_service::{Runtime, RuntimeOptions};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::{Config, NotifierConfig};

/// The notifier service.
pub struct Notifier;

impl Notifier {
    /// Starts the service; `shutdown` stops it.
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Runtime> {
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
        let pool = runtime.database()?;
        let settings = Arc::new(config.notifier.clone());
        let client = delivery::client(&settings)?;

        let subscriptions = subscriptions::Subscriptions {
            pool: pool.clone(),
            config: settings.clone(),
            client: client.clone(),
        };
        serve(&runtime, &subscriptions).await?;
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
        runtime.consume_events(events::consumer(), move |event, _| {
            events::handle(context.clone(), event)
        });
        let keep_days = settings.keep_log_days;
        runtime.every(
            Duration::from_secs(600),
            "old deliveries not cleaned",
            move || {
                let pool = pool.clone();
                async move { events::clean(&pool, keep_days).await }
            },
        );
        Ok(runtime)
    }
}

/// Serves the webhook subscriptions' endpoints: list, get, create, update, delete, test, and
/// their deliveries.
async fn serve(
    runtime: &Runtime,
    subscriptions: &subscriptions::Subscriptions,
) -> anyhow::Result<()> {
    let served = subscriptions;
    runtime
        .serve_with(
            contract::LIST,
            served,
            |s, r| async move { s.list(r).await },
        )
        .await?;
    runtime
        .serve_with(contract::GET, served, |s, r| async move { s.get(r).await })
        .await?;
    runtime
        .serve_with(
            contract::CREATE,
            served,
            |s, r| async move { s.create(r).await },
        )
        .await?;
    runtime
        .serve_with(
            contract::UPDATE,
            served,
            |s, r| async move { s.update(r).await },
        )
        .await?;
    runtime
        .serve_with(
            contract::DELETE,
            served,
            |s, r| async move { s.delete(r).await },
        )
        .await?;
    runtime
        .serve_with(
            contract::TEST,
            served,
            |s, r| async move { s.test(r).await },
        )
        .await?;
    runtime
        .serve_with(contract::DELIVERIES, served, |s, r| async move {
            s.deliveries(r).await
        })
        .await
}

/// Runs the notifier service until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    printyard_service::run_until_signal(|shutdown| Notifier::start(config, shutdown)).await
}
