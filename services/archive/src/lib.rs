//! The archive service: every print with its 3MF file, and projects. It alone reads and writes
//! the `archive` schema and the archive's object storage; others ask it over NATS.
//!
//! - [`events`]: a durable consumer of `FARM_EVENTS` turns print events into archives and
//!   stores the 3MF the gateway fetched from the printer.
//! - [`intake`]: files arrive through the NATS transfer bucket, are checked as hostile input
//!   ([`printyard_bambu::threemf`]) and stored once per content hash ([`storage`]).
//! - [`library`]: the endpoints `api` calls for `/archives` and `/projects`.
//! - [`record`]: the print record's rules (one archive per print, a file only to its own
//!   print, every end announced), pure; [`steps`] writes them.
//! - [`plan`]: what the queue needs to print a library file, and the archives of those prints.
//! - [`outbox`]: every change to an archive announced on `FARM_EVENTS` (`archive_updated`,
//!   `archive_deleted`), from a trigger's record, so statistics follow the archive.

pub mod config;
pub mod db;
pub mod events;
pub mod intake;
pub mod library;
pub mod outbox;
pub mod plan;
pub mod print_data;
pub mod record;
pub mod steps;
pub mod storage;

use printyard_bambu::threemf::Limits;
use printyard_contracts::archive as contract;
use printyard_contracts::system::{ARCHIVE_SUMMARY, ArchiveSummary};
use printyard_contracts::{ErrorBody, ServiceName};
use printyard_service::{Runtime, RuntimeOptions};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use config::{ArchiveConfig, Config, S3Config};

use crate::intake::Intake;
use crate::library::Library;
use crate::storage::Storage;

/// The archive service.
pub struct Archive;

impl Archive {
    /// Starts the service; `shutdown` stops it.
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Runtime> {
        let runtime = Runtime::start(
            RuntimeOptions {
                service: ServiceName::Archive,
                description: "Print archives, 3MF files and projects",
                nats: &config.nats,
                database: Some((&config.database, sqlx::migrate!("../../migrations/archive"))),
                admin: &config.admin,
            },
            shutdown.clone(),
        )
        .await?;
        let pool = runtime.database()?;
        let storage = Storage::open(&config.archive)?;
        let jetstream = async_nats::jetstream::new(runtime.nats().clone());
        let intake = intake(&config.archive, storage.clone(), jetstream.clone()).await?;
        tracing::info!(store = %storage.description, "archive storage opened");
        let library = Library {
            pool: pool.clone(),
            intake: intake.clone(),
        };
        let plans = plan::Plans {
            pool: pool.clone(),
            storage: storage.clone(),
            work_dir: intake.work_dir.clone(),
            limits: intake.limits,
        };
        serve(&runtime, &pool, &library, &plans).await?;
        runtime.tasks().spawn(outbox::run(
            pool.clone(),
            jetstream.clone(),
            shutdown.clone(),
        ));
        let context = events::Context {
            jetstream,
            pool,
            intake,
            plans,
        };
        runtime.consume_events(
            events::consumer(config.archive.event_concurrency),
            move |event, delivery| events::handle(context.clone(), event, delivery),
        );
        Ok(runtime)
    }
}

/// Where files come in: the transfer buckets, the work directory, the storage and its limits.
async fn intake(
    config: &ArchiveConfig,
    storage: Storage,
    jetstream: async_nats::jetstream::Context,
) -> anyhow::Result<Intake> {
    let bucket = printyard_service::nats::transfer_bucket(
        &jetstream,
        printyard_contracts::archive::TRANSFER_BUCKET,
    )
    .await?;
    let work_dir = config.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&work_dir)?;
    Ok(Intake {
        bucket,
        jetstream,
        site_buckets: Default::default(),
        storage,
        work_dir,
        max_bytes: config.max_file_bytes,
        limits: Limits {
            max_entry_bytes: config.max_file_bytes.saturating_mul(8),
            ..Limits::default()
        },
    })
}

/// Serves the archive's endpoints: the library of archives and projects, their files, and
/// the print plans the queue asks for.
async fn serve(
    runtime: &Runtime,
    pool: &PgPool,
    library: &Library,
    plans: &plan::Plans,
) -> anyhow::Result<()> {
    runtime
        .serve_with(ARCHIVE_SUMMARY, pool, |pool, _| async move {
            summary(&pool).await
        })
        .await?;
    let served = library;
    runtime
        .serve_with(
            contract::LIST,
            served,
            |l, r| async move { l.list(r).await },
        )
        .await?;
    runtime
        .serve_with(contract::GET, served, |l, r| async move { l.get(r).await })
        .await?;
    runtime
        .serve_with(
            contract::UPDATE,
            served,
            |l, r| async move { l.update(r).await },
        )
        .await?;
    runtime
        .serve_with(
            contract::DELETE,
            served,
            |l, r| async move { l.delete(r).await },
        )
        .await?;
    runtime
        .serve_with(
            contract::IMPORT,
            served,
            |l, r| async move { l.import(r).await },
        )
        .await?;
    runtime
        .serve_with(
            contract::FILE,
            served,
            |l, r| async move { l.file(r).await },
        )
        .await?;
    runtime
        .serve_bytes_with(contract::FILE_CHUNK, served, |l, r| async move {
            l.chunk(r).await
        })
        .await?;
    runtime
        .serve_with(contract::PROJECT_LIST, served, |l, r| async move {
            l.projects(r).await
        })
        .await?;
    runtime
        .serve_with(contract::PROJECT_GET, served, |l, r| async move {
            l.project(r).await
        })
        .await?;
    runtime
        .serve_with(contract::PROJECT_CREATE, served, |l, r| async move {
            l.create_project(r).await
        })
        .await?;
    runtime
        .serve_with(contract::PROJECT_UPDATE, served, |l, r| async move {
            l.update_project(r).await
        })
        .await?;
    runtime
        .serve_with(contract::PROJECT_DELETE, served, |l, r| async move {
            l.delete_project(r).await
        })
        .await?;
    runtime
        .serve_with(contract::PRINT_PLAN, plans, |p, r| async move {
            p.print_plan(r).await
        })
        .await
}

async fn summary(pool: &PgPool) -> Result<ArchiveSummary, ErrorBody> {
    let archives: i64 = sqlx::query_scalar("SELECT count(*) FROM archive.archives")
        .fetch_one(pool)
        .await
        .map_err(db::unavailable)?;
    Ok(ArchiveSummary { archives })
}

/// Runs the archive service until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    printyard_service::run_until_signal(|shutdown| Archive::start(config, shutdown)).await
}
