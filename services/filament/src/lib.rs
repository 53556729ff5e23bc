//! The filament service: the spool inventory. It alone owns the `filament` schema; `api` asks
//! it over NATS for `/spools`.
//!
//! - [`trays`]: what is loaded where, from the printers' live status; Bambu spools registered
//!   by their tag; the `tray_spools` bucket the scheduler reads for shortage-aware dispatch.
//! - [`usage`]: the durable consumer of the archive's facts: what each print used, from which
//!   spool, and the spools' weights moved by it.
//! - [`low`]: `spool_low` when a spool goes under its material's threshold.
//! - [`spools`]: the endpoints (list, get, create, update, archive, summary, usage).
//! - [`spoolman`]: Spoolman as the one inventory, when `filament.spoolman.url` is set.

pub mod config;
pub mod db;
pub mod low;
pub mod spoolman;
pub mod spools;
pub mod trays;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use printyard_contracts::ServiceName;
use printyard_contracts::farm::{PRINTER_REGISTRY_BUCKET, PRINTER_STATUS_BUCKET};
use printyard_contracts::filament::{self as contract, TRAY_SPOOLS_BUCKET};
use printyard_service::nats::kv_bucket;
use printyard_service::{Runtime, RuntimeOptions};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use config::{Config, FilamentConfig, SpoolmanConfig};

/// What the event handler needs.
#[derive(Clone)]
pub struct Context {
    pub pool: PgPool,
    pub config: Arc<FilamentConfig>,
    pub trays: trays::Trays,
    pub low: low::Announcer,
}

/// The filament service.
pub struct Filament;

impl Filament {
    /// Starts the service; `shutdown` stops it.
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Runtime> {
        let runtime = Runtime::start(
            RuntimeOptions {
                service: ServiceName::Filament,
                description: "Spool inventory and filament usage",
                nats: &config.nats,
                database: Some((
                    &config.database,
                    sqlx::migrate!("../../migrations/filament"),
                )),
                admin: &config.admin,
            },
            shutdown.clone(),
        )
        .await?;
        let pool = runtime.database()?;
        let settings = Arc::new(config.filament.clone());
        let jetstream = async_nats::jetstream::new(runtime.nats().clone());
        let tray_bucket = kv_bucket(&jetstream, TRAY_SPOOLS_BUCKET, Duration::ZERO).await?;
        let status = kv_bucket(&jetstream, PRINTER_STATUS_BUCKET, Duration::ZERO).await?;
        let registry = kv_bucket(&jetstream, PRINTER_REGISTRY_BUCKET, Duration::ZERO).await?;

        let trays = trays::Trays::new(pool.clone(), settings.clone(), tray_bucket);
        let tasks = runtime.tasks();
        tasks.spawn(trays.clone().follow_registry(registry, shutdown.clone()));
        tasks.spawn(trays.clone().follow_status(status, shutdown.clone()));
        tasks.spawn(trays.clone().run(shutdown.clone()));

        let low = low::Announcer {
            pool: pool.clone(),
            jetstream,
            config: settings.clone(),
            trays: trays.clone(),
            wake: Arc::default(),
        };
        tasks.spawn(low.clone().run(shutdown.clone()));

        let spools = spools::Spools {
            pool: pool.clone(),
            config: settings.clone(),
            trays: trays.clone(),
            low: low.clone(),
            summary: Arc::default(),
        };
        serve(&runtime, &spools).await?;

        if config.filament.spoolman.url.is_some() {
            let sync = spoolman::Sync::new(
                pool.clone(),
                settings.clone(),
                config.filament.spoolman.clone(),
                trays.clone(),
            )?;
            tasks.spawn(sync.run(shutdown.clone()));
        }

        let context = Context {
            pool,
            config: settings,
            trays,
            low,
        };
        runtime.consume_events(usage::consumer(), move |event, _| {
            usage::handle(context.clone(), event)
        });
        Ok(runtime)
    }
}

/// Serves the spools' endpoints.
async fn serve(runtime: &Runtime, spools: &spools::Spools) -> anyhow::Result<()> {
    runtime
        .serve_with(contract::LIST, spools, |s, filter| async move {
            s.list(filter).await
        })
        .await?;
    runtime
        .serve_with(
            contract::GET,
            spools,
            |s, id| async move { s.get(id).await },
        )
        .await?;
    runtime
        .serve_with(contract::CREATE, spools, |s, new| async move {
            s.create(new).await
        })
        .await?;
    runtime
        .serve_with(contract::UPDATE, spools, |s, update| async move {
            s.update(update).await
        })
        .await?;
    runtime
        .serve_with(contract::ARCHIVE, spools, |s, id| async move {
            s.archive(id).await
        })
        .await?;
    runtime
        .serve_with(contract::SUMMARY, spools, |s, _| async move {
            s.summary().await
        })
        .await?;
    runtime
        .serve_with(contract::USAGE, spools, |s, request| async move {
            s.usage(request).await
        })
        .await?;
    Ok(())
}

/// Runs the filament service until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    printyard_service::run_until_signal(|shutdown| Filament::start(config, shutdown)).await
}
