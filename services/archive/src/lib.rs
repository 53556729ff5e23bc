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

use std::net::SocketAddr;

use printyard_bambu::threemf::Limits;
use printyard_contracts::archive as contract;
use printyard_contracts::system::{ARCHIVE_SUMMARY, ArchiveSummary};
use printyard_contracts::{ErrorBody, ServiceName};
use printyard_service::{Runtime, RuntimeOptions, shutdown};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use config::{ArchiveConfig, Config, S3Config};

use crate::intake::Intake;
use crate::library::Library;
use crate::storage::Storage;

/// A started archive service.
pub struct Archive {
    runtime: Runtime,
}

/// Serves `endpoint` with the [`Library`] method of the same request type.
macro_rules! serve {
    ($runtime:ident . $serve:ident, $library:expr, $endpoint:expr, $method:ident) => {{
        let library = $library.clone();
        $runtime
            .$serve($endpoint, move |request| {
                let library = library.clone();
                async move { library.$method(request).await }
            })
            .await?;
    }};
}

impl Archive {
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
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
        let pool = runtime
            .db()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("archive needs a database"))?;
        let storage = Storage::open(&config.archive)?;
        let jetstream = async_nats::jetstream::new(runtime.nats().clone());
        let bucket = printyard_service::nats::transfer_bucket(
            &jetstream,
            printyard_contracts::archive::TRANSFER_BUCKET,
        )
        .await?;
        let work_dir = config
            .archive
            .work_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&work_dir)?;
        let intake = Intake {
            bucket,
            jetstream: jetstream.clone(),
            site_buckets: Default::default(),
            storage: storage.clone(),
            work_dir,
            max_bytes: config.archive.max_file_bytes,
            limits: Limits {
                max_entry_bytes: config.archive.max_file_bytes.saturating_mul(8),
                ..Limits::default()
            },
        };
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

        runtime
            .serve(ARCHIVE_SUMMARY, {
                let pool = pool.clone();
                move |_| {
                    let pool = pool.clone();
                    async move { summary(&pool).await }
                }
            })
            .await?;
        serve!(runtime.serve, library, contract::LIST, list);
        serve!(runtime.serve, library, contract::GET, get);
        serve!(runtime.serve, library, contract::UPDATE, update);
        serve!(runtime.serve, library, contract::DELETE, delete);
        serve!(runtime.serve, library, contract::IMPORT, import);
        serve!(runtime.serve, library, contract::FILE, file);
        serve!(runtime.serve_bytes, library, contract::FILE_CHUNK, chunk);
        serve!(runtime.serve, library, contract::PROJECT_LIST, projects);
        serve!(runtime.serve, library, contract::PROJECT_GET, project);
        serve!(
            runtime.serve,
            library,
            contract::PROJECT_CREATE,
            create_project
        );
        serve!(
            runtime.serve,
            library,
            contract::PROJECT_UPDATE,
            update_project
        );
        serve!(
            runtime.serve,
            library,
            contract::PROJECT_DELETE,
            delete_project
        );

        serve!(runtime.serve, plans, contract::PRINT_PLAN, print_plan);

        runtime.tasks().spawn(outbox::run(
            pool.clone(),
            jetstream.clone(),
            shutdown.clone(),
        ));
        runtime.tasks().spawn(events::run(
            events::Context {
                jetstream,
                pool,
                intake,
                plans,
            },
            config.archive.event_concurrency,
            shutdown,
        ));
        Ok(Self { runtime })
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.runtime.admin_addr()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.runtime.run_until_stopped().await
    }
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
    Archive::start(config, shutdown::on_signal())
        .await?
        .run_until_stopped()
        .await
}
