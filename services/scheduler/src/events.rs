//! The scheduler's durable consumer of `FARM_EVENTS` (`scheduler`, shared by every replica):
//! a queued job's print starting (the gateway's `print_started`) and ending (the archive's
//! announcement of the end, whichever witness saw it) moves the job; any print's end leaves the
//! plate to be cleared; `archive_created` and the end link a job to the archive its print
//! produced. Each event id is
//! recorded in `queue.applied_events` in the transaction of its effect, so a redelivery changes
//! nothing.
//!
//! A deleted printer (`printer_removed`) fails the jobs on it and those waiting for it alone.
//!
//! The printer's own status is a second witness ([`reconcile_printing`]): a job whose print
//! ended while no gateway published its events (or failed before it ever ran) is ended from
//! what the printer shows, by the same transitions.

use std::time::Duration;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use printyard_contracts::farm::{EventKind, FarmEvent};
use printyard_contracts::printer::PrinterState;
use printyard_contracts::queue::job_of;
use printyard_service::farm_events::ConsumerOptions;
use sqlx::PgPool;

use crate::db::{self, JobRow};
use crate::farm::FarmView;
use crate::jobs::{self, End};

/// The durable consumer's name.
pub const CONSUMER: &str = "scheduler";

/// `print_error` of a print stopped by a person (0300_400C).
const STOPPED: &str = "0300_400C";

#[derive(Clone)]
pub struct Context {
    pub jetstream: jetstream::Context,
    pub pool: PgPool,
    pub farm: FarmView,
}

/// The scheduler's durable consumer, `concurrency` lanes per replica.
pub fn consumer(concurrency: usize) -> ConsumerOptions {
    ConsumerOptions {
        name: CONSUMER,
        ack_wait: Duration::from_secs(30),
        concurrency,
    }
}

/// Handles one event for the consumer: `Err` asks for it again.
pub async fn handle(context: Context, event: FarmEvent) -> Result<(), String> {
    apply(&context, &event).await.map_err(|e| e.to_string())
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct EventData {
    job_name: Option<String>,
    queue_job: Option<i64>,
    archive_id: Option<i64>,
    print_error: Option<String>,
    end_reason: Option<String>,
}

impl EventData {
    fn job(&self) -> Option<i64> {
        self.queue_job
            .or_else(|| self.job_name.as_deref().and_then(job_of))
    }
}

/// What a job's transitions leave to publish once committed.
#[derive(Default)]
struct Published(Vec<(JobRow, EventKind)>);

async fn apply(context: &Context, event: &FarmEvent) -> Result<(), sqlx::Error> {
    let relevant = matches!(
        event.kind,
        EventKind::PrintStarted
            | EventKind::PrintComplete
            | EventKind::PrintFailed
            | EventKind::PrintStopped
            | EventKind::PrintUnknown
            | EventKind::ArchiveCreated
            | EventKind::PrinterRemoved
    );
    if !relevant {
        return Ok(());
    }
    let data: EventData = serde_json::from_value(event.data.clone()).unwrap_or_default();
    let mut tx = context.pool.begin().await?;
    let fresh = sqlx::query(
        "INSERT INTO queue.applied_events (event_id) VALUES ($1) ON CONFLICT DO NOTHING",
    )
    .bind(&event.id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !fresh {
        return tx.commit().await;
    }
    let mut published = Published::default();
    match (event.kind, data.job()) {
        (EventKind::PrintStarted, Some(job)) => {
            let (started, displaced) =
                jobs::mark_printing(&mut tx, job, event.printer_id, event.at).await?;
            published.0.extend(
                displaced
                    .into_iter()
                    .map(|j| (j, EventKind::QueueJobFailed)),
            );
            published
                .0
                .extend(started.map(|j| (j, EventKind::QueueJobStarted)));
        }
        (
            EventKind::PrintComplete
            | EventKind::PrintFailed
            | EventKind::PrintStopped
            | EventKind::PrintUnknown,
            job,
        ) => {
            db::print_ended(&mut tx, event.printer_id, event.at).await?;
            if let Some(job) = job {
                let end = match event.kind {
                    EventKind::PrintComplete => End::Completed,
                    EventKind::PrintStopped => End::Cancelled("the print was stopped".into()),
                    EventKind::PrintUnknown => End::Failed(match &data.end_reason {
                        Some(reason) => format!("how the print ended was not seen: {reason}"),
                        None => "how the print ended was not seen".into(),
                    }),
                    _ => End::Failed(match &data.print_error {
                        Some(code) => format!("the print failed (print error {code})"),
                        None => "the print failed".into(),
                    }),
                };
                link_archive(&mut tx, job, data.archive_id).await?;
                if let Some(row) = jobs::mark_ended(&mut tx, job, &end, event.at).await? {
                    published.0.push((row, end.event()));
                }
            }
        }
        (EventKind::PrinterRemoved, _) => {
            // Its jobs cannot print: those on it, and those waiting for it alone.
            let failed: Vec<JobRow> = sqlx::query_as(concat!(
                "UPDATE queue.jobs SET status = 'failed', completed_at = $2, claimed_by = NULL, \
                   claim_expires = NULL, error = 'the printer was deleted' \
                 WHERE (printer_assigned = $1 AND status IN ('dispatching', 'printing')) \
                    OR (printer_id = $1 AND status = 'pending') \
                 RETURNING ",
                crate::db::job_columns!()
            ))
            .bind(event.printer_id)
            .bind(event.at)
            .fetch_all(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM queue.plates WHERE printer_id = $1")
                .bind(event.printer_id)
                .execute(&mut *tx)
                .await?;
            published
                .0
                .extend(failed.into_iter().map(|j| (j, EventKind::QueueJobFailed)));
        }
        (EventKind::ArchiveCreated, Some(job)) => {
            link_archive(&mut tx, job, data.archive_id).await?;
        }
        _ => {}
    }
    tx.commit().await?;
    for (row, kind) in published.0 {
        jobs::publish(&context.jetstream, &context.farm, &row, kind).await;
    }
    Ok(())
}

/// Links job `job` to the archive its print produced (the first one named).
async fn link_archive(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    job: i64,
    archive_id: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE queue.jobs SET result_archive_id = coalesce(result_archive_id, $2) WHERE id = $1",
    )
    .bind(job)
    .bind(archive_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Ends `printing` jobs from what their printer shows, for prints whose events never came
/// (they ended while no gateway held the printer, or failed before running). Only a printer
/// that is connected and shows the job's own tag in an ended state, or clearly another print,
/// is taken as a witness.
pub async fn reconcile_printing(context: &Context) -> Result<(), sqlx::Error> {
    let printing: Vec<(i64, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, printer_assigned, coalesce(started_at, created_at) FROM queue.jobs \
         WHERE status = 'printing' AND printer_assigned IS NOT NULL",
    )
    .fetch_all(&context.pool)
    .await?;
    for (job, printer_id, started) in printing {
        let Some(printer) = context.farm.printer(printer_id) else {
            continue;
        };
        if !printer.connected() {
            continue;
        }
        let Some(status) = printer.status.as_ref().and_then(|s| s.status.as_ref()) else {
            continue;
        };
        let ours = status.job_name.as_deref().and_then(job_of) == Some(job);
        // Give the events a moment: they come from the same observation.
        if Utc::now() - started < chrono::Duration::seconds(10) {
            continue;
        }
        let end = match (ours, status.state) {
            (true, PrinterState::Finished) => End::Completed,
            (true, PrinterState::Failed) if status.print_error.as_deref() == Some(STOPPED) => {
                End::Cancelled("the print was stopped".into())
            }
            (true, PrinterState::Failed) => End::Failed(match &status.print_error {
                Some(code) => format!("the print failed (print error {code})"),
                None => "the print failed".into(),
            }),
            (true, PrinterState::Idle) => End::Cancelled("the print was stopped".into()),
            (false, PrinterState::Preparing | PrinterState::Printing | PrinterState::Paused) => {
                End::Failed(
                    "the printer went on to another print; how this one ended was not seen".into(),
                )
            }
            _ => continue,
        };
        let mut tx = context.pool.begin().await?;
        let ended = jobs::mark_ended(&mut tx, job, &end, Utc::now()).await?;
        if ended.is_some() {
            db::print_ended(&mut tx, printer_id, Utc::now()).await?;
        }
        tx.commit().await?;
        if let Some(row) = ended {
            tracing::warn!(
                job,
                printer = printer_id,
                "job ended from the printer's status (its events were not seen)"
            );
            jobs::publish(&context.jetstream, &context.farm, &row, end.event()).await;
        }
    }
    Ok(())
}
