//! A job following its print: `printing` when the printer shows it, `completed`, `failed` or
//! `cancelled` when it ends, linked to the archive it produced, with the queue's events on
//! `FARM_EVENTS`. The dispatcher (the gateway's answer), the event consumer (the print's events)
//! and the status backstop (the printer's own state) all move jobs through these functions, and
//! each transition happens once, whichever arrives first.

use chrono::{DateTime, Utc};
use printyard_contracts::farm::{EventKind, FarmEvent, Site, event_id};
use sqlx::{Postgres, Transaction};

use crate::db::{JobRow, job_columns};
use crate::farm::FarmView;

/// How a print ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Completed,
    Failed(String),
    Cancelled(String),
}

impl End {
    fn status(&self) -> &'static str {
        match self {
            End::Completed => "completed",
            End::Failed(_) => "failed",
            End::Cancelled(_) => "cancelled",
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            End::Completed => None,
            End::Failed(why) | End::Cancelled(why) => Some(why),
        }
    }

    pub fn event(&self) -> EventKind {
        match self {
            End::Completed => EventKind::QueueJobCompleted,
            _ => EventKind::QueueJobFailed,
        }
    }
}

/// Job `job` is printing on `printer`. Returns the job if this changed it, and any other job
/// the database thought was on that printer (the printer can print one thing: they are failed).
pub async fn mark_printing(
    tx: &mut Transaction<'_, Postgres>,
    job: i64,
    printer: i64,
    at: DateTime<Utc>,
) -> Result<(Option<JobRow>, Vec<JobRow>), sqlx::Error> {
    let displaced: Vec<JobRow> = sqlx::query_as(concat!(
        "UPDATE queue.jobs SET status = 'failed', completed_at = $3, claimed_by = NULL, \
           claim_expires = NULL, \
           error = 'the printer started job ' || $2::bigint || ' instead' \
         WHERE printer_assigned = $1 AND id <> $2 AND status IN ('dispatching', 'printing') \
         RETURNING ",
        job_columns!()
    ))
    .bind(printer)
    .bind(job)
    .bind(at)
    .fetch_all(&mut **tx)
    .await?;
    let started: Option<JobRow> = sqlx::query_as(concat!(
        "UPDATE queue.jobs SET status = 'printing', printer_assigned = $2, \
           started_at = coalesce(started_at, $3), claimed_by = NULL, claim_expires = NULL, \
           not_before = NULL, error = NULL \
         WHERE id = $1 AND status IN ('pending', 'dispatching') RETURNING ",
        job_columns!()
    ))
    .bind(job)
    .bind(printer)
    .bind(at)
    .fetch_optional(&mut **tx)
    .await?;
    Ok((started, displaced))
}

/// Job `job`'s print ended. Returns the job if this changed it.
pub async fn mark_ended(
    tx: &mut Transaction<'_, Postgres>,
    job: i64,
    end: &End,
    at: DateTime<Utc>,
) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE queue.jobs SET status = $2, completed_at = $3, error = $4, claimed_by = NULL, \
           claim_expires = NULL \
         WHERE id = $1 AND status IN ('dispatching', 'printing') RETURNING ",
        job_columns!()
    ))
    .bind(job)
    .bind(end.status())
    .bind(at)
    .bind(end.error())
    .fetch_optional(&mut **tx)
    .await
}

/// Publishes a queue event for `job` (its id makes a repeat harmless).
pub async fn publish(
    jetstream: &async_nats::jetstream::Context,
    farm: &FarmView,
    job: &JobRow,
    kind: EventKind,
) {
    let printer = job.printer_assigned.or(job.printer_id);
    let view = printer.and_then(|id| farm.printer(id));
    let site = view
        .as_ref()
        .map(|p| p.record.site.clone())
        .or_else(|| job.site.as_deref().and_then(|s| Site::parse(s).ok()))
        .unwrap_or_default();
    let printer_id = printer.unwrap_or(0);
    let event = FarmEvent {
        id: event_id("queue", kind, &job.id.to_string()),
        kind,
        site: site.clone(),
        printer_id,
        serial: view
            .as_ref()
            .map(|p| p.record.serial.clone())
            .unwrap_or_default(),
        at: Utc::now(),
        data: serde_json::json!({
            "job_id": job.id,
            "archive_id": job.archive_id,
            "result_archive_id": job.result_archive_id,
            "printer_id": printer,
            "printer_name": view.as_ref().map(|p| p.record.name.clone()),
            "name": job.name,
            "filename": job.filename,
            "status": job.status,
            "error": job.error,
            "attempts": job.attempts,
            "created_at": job.created_at,
            "started_at": job.started_at,
        }),
    };
    // Failures are logged by `publish`; the job itself is in the database.
    let _ = printyard_service::farm_events::publish(jetstream, &event).await;
}
