//! The scheduler service: the print queue and its dispatch to printers. It alone reads and
//! writes the `queue` schema; `api` asks it over NATS, the gateway holding a printer prints for
//! it, and it learns how prints go from `FARM_EVENTS` and the printers' status.
//!
//! - [`queue`]: the endpoints `api` calls for `/queue` and clear-plate.
//! - [`dispatch`]: free printers get the first job that fits, in parallel, each job once.
//! - [`matching`]: which printer fits which job, and why a job waits.
//! - [`events`], [`jobs`]: a job follows its print to its end and its archive.
//! - [`farm`]: the watched registry and status buckets.
//! - [`activity`]: each printer's activity for utilisation (`printer_activity` facts).

pub mod activity;
pub mod config;
pub mod db;
pub mod dispatch;
pub mod events;
pub mod farm;
pub mod jobs;
pub mod matching;
pub mod queue;

use std::sync::Arc;
use std::time::Duration;

use printyard_contracts::ServiceName;
use printyard_contracts::farm::{PRINTER_REGISTRY_BUCKET, PRINTER_STATUS_BUCKET};
use printyard_contracts::filament::TRAY_SPOOLS_BUCKET;
use printyard_contracts::queue as contract;
use printyard_service::{Runtime, RuntimeOptions};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::{Config, SchedulerConfig};

/// The scheduler service.
pub struct Scheduler;

impl Scheduler {
    /// Starts the service; `shutdown` stops it.
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Runtime> {
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
        let pool = runtime.database()?;
        let jetstream = async_nats::jetstream::new(runtime.nats().clone());
        let kv = |name| printyard_service::nats::kv_bucket(&jetstream, name, Duration::ZERO);
        let registry = kv(PRINTER_REGISTRY_BUCKET).await?;
        let status = kv(PRINTER_STATUS_BUCKET).await?;
        let spools = kv(TRAY_SPOOLS_BUCKET).await?;
        let farm = farm::FarmView::default();
        runtime
            .tasks()
            .spawn(farm.clone().follow_spools(spools, shutdown.clone()));
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
            filament_margin_g: config.scheduler.filament_margin_g,
        };
        serve(&runtime, &queue).await?;

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

        let activities = activity::Activities::new(pool.clone(), farm.clone(), jetstream.clone());
        runtime.every(activity::SWEEP, "printer activity not told", move || {
            let activities = activities.clone();
            async move { activities.sweep().await }
        });

        let events = events::Context {
            jetstream,
            pool,
            farm,
        };
        let handled = events.clone();
        runtime.consume_events(
            events::consumer(config.scheduler.event_concurrency),
            move |event, _| events::handle(handled.clone(), event),
        );
        runtime.every(
            Duration::from_secs(5),
            "printing jobs not reconciled with their printers",
            move || {
                let events = events.clone();
                async move { events::reconcile_printing(&events).await }
            },
        );
        Ok(runtime)
    }
}

/// Serves the queue's endpoints: list, add, remove, reorder, and plate cleared.
async fn serve(runtime: &Runtime, queue: &queue::Queue) -> anyhow::Result<()> {
    runtime
        .serve_with(contract::LIST, queue, |q, r| async move { q.list(r).await })
        .await?;
    runtime
        .serve_with(contract::ADD, queue, |q, r| async move { q.add(r).await })
        .await?;
    runtime
        .serve_with(
            contract::REMOVE,
            queue,
            |q, r| async move { q.remove(r).await },
        )
        .await?;
    runtime
        .serve_with(contract::REORDER, queue, |q, r| async move {
            q.reorder(r).await
        })
        .await?;
    runtime
        .serve_with(contract::CLEAR_PLATE, queue, |q, r| async move {
            q.clear_plate(r).await
        })
        .await?;
    runtime
        .serve_with(
            contract::RETRY,
            queue,
            |q, r| async move { q.retry(r).await },
        )
        .await
}

/// Runs the scheduler service until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    printyard_service::run_until_signal(|shutdown| Scheduler::start(config, shutdown)).await
}
