//! The stats service: print facts and statistics. It alone owns the `stats` schema.
//!
//! - [`facts`]: a durable consumer of the archive's `archive_updated` / `archive_deleted`
//!   events keeps one fact per print and the summaries (by day and printer, by month, by day
//!   for the farm), never reading the archive's schema.
//! - [`query`]: `/statistics` and its export from the summaries.
//! - [`costs`]: the cost settings prints are priced with (priced at print time).
//! - [`maintenance`]: maintenance tasks counted from the prints and the clock, and the
//!   `maintenance_due` event.
//! - [`errors`]: each printer's HMS and print errors as history, and counts by code.
//! - [`utilisation`]: the printers' activity spells (from the scheduler's `printer_activity`
//!   facts) summed into hours by state, plate-clear and queue waits.

pub mod cache;
pub mod costs;
pub mod db;
pub mod errors;
pub mod facts;
pub mod maintenance;
pub mod query;
pub mod utilisation;

use bytes::Bytes;
use printyard_contracts::ServiceName;
use printyard_contracts::stats::{self as contract, CostSettings, ExportPage, StatsRequest};
use printyard_contracts::{ErrorBody, ErrorCode};
use printyard_service::config::ServiceConfig;
use printyard_service::{Runtime, RuntimeOptions};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The stats service's configuration.
pub type Config = ServiceConfig;

/// Farm events one replica handles at once.
const EVENT_CONCURRENCY: usize = 8;

/// The stats service.
pub struct Stats;

async fn currency(pool: &PgPool) -> Result<String, printyard_contracts::ErrorBody> {
    Ok(costs::get(pool).await?.currency)
}

impl Stats {
    /// Starts the service; `shutdown` stops it.
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Runtime> {
        let runtime = Runtime::start(
            RuntimeOptions {
                service: ServiceName::Stats,
                description: "Print facts and statistics",
                nats: &config.nats,
                database: Some((&config.database, sqlx::migrate!("../../migrations/stats"))),
                admin: &config.admin,
            },
            shutdown.clone(),
        )
        .await?;
        let pool = runtime.database()?;
        let answers = (pool.clone(), cache::AnswerCache::default());
        runtime
            .serve_bytes_with(
                contract::STATISTICS.raw(),
                &answers,
                |(pool, cache), request: StatsRequest| async move {
                    let generation = cache::generation(&pool).await.map_err(db::unavailable)?;
                    if request.unless == Some(generation) {
                        return Ok(cache::reply(generation, None));
                    }
                    let key = cache::key(&request.filter);
                    if let Some(answer) = cache.get(&key, generation) {
                        return Ok(cache::reply(generation, Some(&answer)));
                    }
                    let currency = currency(&pool).await?;
                    let answer = query::statistics(&pool, request.filter, currency).await?;
                    let answer = Bytes::from(serde_json::to_vec(&answer).map_err(|e| {
                        tracing::error!(error = %e, "statistics not encodable");
                        ErrorBody::new(ErrorCode::InternalError, "Internal server error")
                    })?);
                    cache.put(key, generation, answer.clone());
                    Ok(cache::reply(generation, Some(&answer)))
                },
            )
            .await?;
        runtime
            .serve_with(
                contract::EXPORT,
                &pool,
                |pool, page: ExportPage| async move {
                    let currency = currency(&pool).await?;
                    query::export(&pool, page, currency).await
                },
            )
            .await?;
        runtime
            .serve_with(contract::COSTS_GET, &pool, |pool, _| async move {
                costs::get(&pool).await
            })
            .await?;
        runtime
            .serve_with(
                contract::COSTS_PUT,
                &pool,
                |pool, settings: CostSettings| async move { costs::put(&pool, settings).await },
            )
            .await?;
        let jetstream = async_nats::jetstream::new(runtime.nats().clone());
        let registry = printyard_service::nats::kv_bucket(
            &jetstream,
            printyard_contracts::farm::PRINTER_REGISTRY_BUCKET,
            std::time::Duration::ZERO,
        )
        .await?;
        let printers = maintenance::Printers::default();
        runtime
            .tasks()
            .spawn(printers.clone().follow(registry, shutdown.clone()));
        runtime
            .serve_with(
                printyard_contracts::utilisation::UTILISATION,
                &(pool.clone(), printers.clone()),
                |(pool, printers), request| async move {
                    utilisation::utilisation(&pool, &printers, request).await
                },
            )
            .await?;
        serve_errors(&runtime, &pool).await?;
        serve_maintenance(&runtime, &pool, jetstream, printers).await?;
        runtime.consume_events(facts::consumer(EVENT_CONCURRENCY), move |event, _| {
            facts::handle(pool.clone(), event)
        });
        Ok(runtime)
    }
}

/// Printer errors: a printer's history, one error, counts by code.
async fn serve_errors(runtime: &Runtime, pool: &PgPool) -> anyhow::Result<()> {
    use printyard_contracts::printer_errors as contract;
    runtime
        .serve_with(contract::LIST, pool, |pool, request| async move {
            errors::list(&pool, request).await
        })
        .await?;
    runtime
        .serve_with(contract::GET, pool, |pool, request| async move {
            errors::get(&pool, request).await
        })
        .await?;
    runtime
        .serve_with(contract::COUNTS, pool, |pool, request| async move {
            errors::counts(&pool, request).await
        })
        .await?;
    Ok(())
}

/// Maintenance: its endpoints and the due sweep (over the registry's printers).
async fn serve_maintenance(
    runtime: &Runtime,
    pool: &PgPool,
    jetstream: async_nats::jetstream::Context,
    printers: maintenance::Printers,
) -> anyhow::Result<()> {
    use printyard_contracts::maintenance as care;
    runtime
        .serve_with(care::TASKS, pool, |pool, _| async move {
            maintenance::tasks(&pool).await
        })
        .await?;
    runtime
        .serve_with(care::CREATE_TASK, pool, |pool, new| async move {
            maintenance::create_task(&pool, new).await
        })
        .await?;
    runtime
        .serve_with(care::DELETE_TASK, pool, |pool, id| async move {
            maintenance::delete_task(&pool, id).await
        })
        .await?;
    runtime
        .serve_with(care::LIST, pool, |pool, request| async move {
            maintenance::list(&pool, request).await
        })
        .await?;
    runtime
        .serve_with(care::DONE, pool, |pool, request| async move {
            maintenance::done(&pool, request).await
        })
        .await?;
    let pool = pool.clone();
    runtime.every(
        maintenance::SWEEP,
        "maintenance due not announced",
        move || {
            let (pool, jetstream, printers) = (pool.clone(), jetstream.clone(), printers.clone());
            async move {
                maintenance::announce_due(&pool, &jetstream, &printers)
                    .await
                    .map(drop)
            }
        },
    );
    Ok(())
}

/// Runs the stats service until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    printyard_service::run_until_signal(|shutdown| Stats::start(config, shutdown)).await
}
