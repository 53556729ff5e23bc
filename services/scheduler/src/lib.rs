//! The scheduler service: the print queue and its dispatch to printers. It alone reads and
//! writes the `queue` schema; `api` asks it over NATS, the gateway holding a printer prints for
//! it, and it learns how prints go from `FARM_EVENTS` and the printers' status.
//!
//! - [`queue`]: the endpoints `api` calls for `/queue` and clear-plate.
//! - [`dispatch`]: free printers get the first job that fits, in parallel, each job once.
//! - [`matching`]: which printer fits which job, and why a job waits.
//! - [`events`], [`jobs`]: a job follows its print to its end and its archive.
//! - [`farm`]: the watched registry and status buckets.

pub mod config;
pub mod db;
pub mod dispatch;
pub mod events;
pub mod farm;
pub mod jobs;
pub mod matching;
pub mod queue;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use printyard_contracts::ServiceName;
use printyard_contracts::farm::{PRINTER_REGISTRY_BUCKET, PRINTER_STATUS_BUCKET};
use printyard_contracts::queue as contract;
use printyard_service::{Runtime, RuntimeOptions, shutdown};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::{Config, SchedulerConfig};

/// A started scheduler service.
pub struct Scheduler {
    runtime: Runtime,
}

/// Serves `endpoint` with the [`queue::Queue`] method of the same request type.
macro_rules! serve {
    ($runtime:ident, $queue:expr, $endpoint:expr, $method:ident) => {{
        let queue = $queue.clone();
        $runtime
            .serve($endpoint, move |request| {
                let queue = queue.clone();
                async move { queue.$method(request).await }
            })
            .await?;
    }};
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
            shutdown.clone(),
        )
        .await?;
        let pool = runtime
            .db()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the scheduler needs a database"))?;
        let jetstream = async_nats::jetstream::new(runtime.nats().clone());
        let kv = |name| printyard_service::nats::kv_bucket(&jetstream, name, Duration::ZERO);
        let registry = kv(PRINTER_REGISTRY_BUCKET).await?;
        let status = kv(PRINTER_STATUS_BUCKET).await?;
        let farm = farm::FarmView::default();
        runtime
            .tasks()
            .spawn(farm.clone().follow_registry(registry, shutdown.clone()));
        runtime
            .tasks()
            .spawn(farm.clone().follow_status(status, shutdown.clone()));

        let queue = queue::Queue {
            pool: pool.clone(),
            rpc: runtime.rpc().clone(),
            farm: farm.clone(),
        };
        serve!(runtime, queue, contract::LIST, list);
        serve!(runtime, queue, contract::ADD, add);
        serve!(runtime, queue, contract::REMOVE, remove);
        serve!(runtime, queue, contract::REORDER, reorder);
        serve!(runtime, queue, contract::CLEAR_PLATE, clear_plate);

        // A change anywhere (a job added, a plate cleared) wakes every replica's dispatcher.
        let wake = Arc::new(Notify::new());
        let woken = wake.clone();
        let changes = printyard_service::nats::on_each_message(
            runtime.nats(),
            contract::queue_changed_subject(),
            shutdown.clone(),
            move || woken.notify_waiters(),
        )
        .await?;
        runtime.tasks().spawn(changes);
        let dispatcher = dispatch::Dispatcher::new(
            pool.clone(),
            runtime.rpc().clone(),
            farm.clone(),
            config.scheduler.clone(),
            wake,
        );
        runtime.tasks().spawn(dispatcher.run(shutdown.clone()));

        let events = events::Context {
            jetstream,
            pool,
            farm,
        };
        runtime.tasks().spawn(events::run(
            events.clone(),
            config.scheduler.event_concurrency,
            shutdown.clone(),
        ));
        runtime.tasks().spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = every.tick() => {}
                }
                if let Err(err) = events::reconcile_printing(&events).await {
                    tracing::warn!(error = %err, "printing jobs not reconciled with their printers");
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

/// Runs the scheduler service until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    Scheduler::start(config, shutdown::on_signal())
        .await?
        .run_until_stopped()
        .await
}
