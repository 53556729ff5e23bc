//! The `queue` schema: jobs, plates and applied events.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use printyard_bambu::models;
use printyard_contracts::archive::thumbnail_path;
use printyard_contracts::queue::{JobStatus, QueueJob};
use printyard_contracts::{ErrorBody, ErrorCode};
use sqlx::PgPool;

use crate::matching::{Need, Wants};

/// The columns of a [`JobRow`], as a literal.
macro_rules! job_columns {
    () => {
        "id, archive_id, printer_id, model, site, plate, position, status, \
         scheduled_time, created_at, started_at, completed_at, use_ams, bed_leveling, \
         timelapse, printer_assigned, result_archive_id, error, attempts, not_before, name, \
         filename, has_thumbnail, model_id, filaments, claimed_by, ams_mapping, sent_use_ams"
    };
}
pub(crate) use job_columns;

/// `SELECT <columns> FROM queue.jobs <tail>` as a `&'static str`.
macro_rules! select_jobs {
    ($tail:literal) => {
        concat!(
            "SELECT ",
            crate::db::job_columns!(),
            " FROM queue.jobs ",
            $tail
        )
    };
}
pub(crate) use select_jobs;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: i64,
    pub archive_id: i64,
    pub printer_id: Option<i64>,
    pub model: Option<String>,
    pub site: Option<String>,
    pub plate: i32,
    pub position: i64,
    pub status: String,
    pub scheduled_time: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub use_ams: Option<bool>,
    pub bed_leveling: bool,
    pub timelapse: bool,
    pub printer_assigned: Option<i64>,
    pub result_archive_id: Option<i64>,
    pub error: Option<String>,
    pub attempts: i32,
    pub not_before: Option<DateTime<Utc>>,
    pub name: String,
    pub filename: String,
    pub has_thumbnail: bool,
    pub model_id: Option<String>,
    pub filaments: sqlx::types::Json<Vec<Need>>,
    pub claimed_by: Option<String>,
    pub ams_mapping: Option<sqlx::types::Json<Vec<i32>>>,
    pub sent_use_ams: Option<bool>,
}

impl JobRow {
    pub fn status(&self) -> JobStatus {
        JobStatus::parse(&self.status).unwrap_or(JobStatus::Failed)
    }

    pub fn wants(&self) -> Wants<'_> {
        Wants {
            printer_id: self.printer_id,
            model: self.model.as_deref(),
            site: self.site.as_deref(),
            model_id: self.model_id.as_deref(),
            filaments: &self.filaments.0,
            use_ams: self.use_ams,
        }
    }

    pub fn into_view(
        self,
        waiting_reason: Option<String>,
        printer_name: Option<String>,
    ) -> QueueJob {
        QueueJob {
            id: self.id,
            archive_id: self.archive_id,
            printer_id: self.printer_id,
            position: self.position,
            status: self.status(),
            scheduled_time: self.scheduled_time,
            created_at: self.created_at,
            started_at: self.started_at,
            completed_at: self.completed_at,
            plate: self.plate,
            model: self.model,
            site: self.site,
            use_ams: self.use_ams,
            bed_leveling: self.bed_leveling,
            timelapse: self.timelapse,
            printer_assigned: self.printer_assigned,
            result_archive_id: self.result_archive_id,
            waiting_reason,
            error: self.error,
            attempts: self.attempts,
            name: self.name,
            filename: self.filename,
            thumbnail_url: self.has_thumbnail.then(|| thumbnail_path(self.archive_id)),
            printer_name,
            sliced_for: self
                .model_id
                .as_deref()
                .map(|id| models::name_of_model_id(id).unwrap_or(id).to_owned()),
            filament_types: self.filaments.0.iter().map(|f| f.kind.clone()).collect(),
        }
    }
}

/// A database failure as callers see it (the detail stays in the log).
pub fn unavailable(err: sqlx::Error) -> ErrorBody {
    printyard_service::db::error_body(&err, "queue")
}

pub fn not_found(id: i64) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, format!("Queue job {id} not found"))
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(select_jobs!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Printers whose plate holds a print that ended after the plate was last cleared.
pub async fn plates_to_clear(pool: &PgPool) -> Result<HashSet<i64>, sqlx::Error> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT printer_id FROM queue.plates \
         WHERE ended_at IS NOT NULL AND ended_at > coalesce(cleared_at, '-infinity')",
    )
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().collect())
}

/// Printers that have a job dispatching or printing.
pub async fn taken_printers(pool: &PgPool) -> Result<HashSet<i64>, sqlx::Error> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT printer_assigned FROM queue.jobs \
         WHERE status IN ('dispatching', 'printing') AND printer_assigned IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().collect())
}

/// Records that a print ended on `printer_id` at `at`: its plate needs clearing.
pub async fn print_ended(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    printer_id: i64,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO queue.plates (printer_id, ended_at) VALUES ($1, $2) \
         ON CONFLICT (printer_id) DO UPDATE SET \
           ended_at = greatest(queue.plates.ended_at, EXCLUDED.ended_at)",
    )
    .bind(printer_id)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
