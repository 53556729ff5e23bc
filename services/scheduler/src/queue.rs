//! The queue's service endpoints, as `api` calls them for `/queue` and clear-plate: list (with
//! each pending job's waiting reason), add (checked against the library file and the printer),
//! remove, reorder.

use chrono::Utc;
use printyard_bambu::models;
use printyard_contracts::archive::{self, PlanRequest};
use printyard_contracts::farm::{EventKind, FarmEvent, Site, event_id};
use printyard_contracts::queue::{
    AddJob, ClearPlate, JobId, JobList, JobRemoved, JobStatus, ListJobs, NewJob, PlateCleared,
    QueueJob, Reorder, RetryPrint, TargetPrinter, queue_changed_subject,
};
use printyard_contracts::{ErrorBody, ErrorCode};
use printyard_service::rpc::RpcClient;
use sqlx::PgPool;

use crate::db::{self, JobRow, job_columns, not_found, select_jobs, unavailable};
use crate::farm::FarmView;
use crate::matching::{Need, Occupancy, waiting_reason};

/// The most jobs one list answers.
pub const MAX_LIST: i64 = 10_000;
/// The highest plate number a 3MF has (Bambu Studio's limit is far lower).
const MAX_PLATE: i32 = 64;

#[derive(Clone)]
pub struct Queue {
    pub pool: PgPool,
    pub rpc: RpcClient,
    pub farm: FarmView,
    /// See `SchedulerConfig::filament_margin_g`.
    pub filament_margin_g: f64,
}

fn invalid(detail: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::ValidationError, detail)
}

impl Queue {
    pub async fn list(&self, request: ListJobs) -> Result<JobList, ErrorBody> {
        if !(1..=MAX_LIST).contains(&request.limit) || request.offset < 0 {
            return Err(invalid(format!(
                "limit must be 1 to {MAX_LIST} and offset not negative"
            )));
        }
        let rows: Vec<JobRow> = sqlx::query_as(select_jobs!(
            "WHERE ($1::bigint IS NULL OR printer_id = $1 OR printer_assigned = $1) \
               AND ($2::text IS NULL OR status = $2) \
             ORDER BY position, id LIMIT $3 OFFSET $4"
        ))
        .bind(request.printer_id)
        .bind(request.status.map(JobStatus::as_str))
        .bind(request.limit)
        .bind(request.offset)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(JobList {
            jobs: self.views(rows).await?,
        })
    }

    /// Jobs as the API shows them, pending ones with their waiting reason.
    async fn views(&self, rows: Vec<JobRow>) -> Result<Vec<QueueJob>, ErrorBody> {
        let pending = rows.iter().any(|r| r.status() == JobStatus::Pending);
        let (plates, taken) = if pending {
            (
                db::plates_to_clear(&self.pool).await.map_err(unavailable)?,
                db::taken_printers(&self.pool).await.map_err(unavailable)?,
            )
        } else {
            Default::default()
        };
        let occupancy = Occupancy {
            plates_to_clear: &plates,
            taken: &taken,
            filament_margin_g: self.filament_margin_g,
        };
        let printers = self.farm.printers();
        let now = Utc::now();
        Ok(rows
            .into_iter()
            .map(|row| {
                let reason = (row.status() == JobStatus::Pending).then(|| {
                    waiting_reason(
                        &row.wants(),
                        row.scheduled_time,
                        row.not_before,
                        row.error.as_deref(),
                        now,
                        &printers,
                        &occupancy,
                    )
                });
                let printer_name = row
                    .printer_assigned
                    .or(row.printer_id)
                    .and_then(|id| printers.iter().find(|p| p.id() == id))
                    .map(|p| p.record.name.clone());
                row.into_view(reason, printer_name)
            })
            .collect())
    }

    pub async fn add(&self, request: AddJob) -> Result<QueueJob, ErrorBody> {
        let AddJob { job, printer } = request;
        let (plate, model, site) = checked_fields(&job)?;
        if job.printer_id.is_some() && printer.is_none() {
            // `api` resolves the printer; a missing one is a 404 there.
            return Err(ErrorBody::new(
                ErrorCode::NotFound,
                "The printer does not exist",
            ));
        }
        let plan = self
            .rpc
            .call(
                archive::PRINT_PLAN,
                &PlanRequest {
                    archive_id: job.archive_id,
                    plate: plate as u32,
                },
            )
            .await
            .map_err(|e| e.to_body())?;
        let model_id = plan.plate.printer_model_id.clone();
        fits(
            model_id.as_deref(),
            model,
            printer.as_ref(),
            site.as_deref(),
        )?;
        let needs: Vec<Need> = plan
            .plate
            .filaments
            .iter()
            .map(|f| Need {
                id: f.id,
                kind: f.kind.clone(),
                color: f.color.clone(),
                grams: f.grams,
            })
            .collect();
        let row: JobRow = sqlx::query_as(concat!(
            "INSERT INTO queue.jobs (archive_id, printer_id, model, site, plate, \
               scheduled_time, use_ams, bed_leveling, timelapse, name, filename, has_thumbnail, \
               model_id, filaments) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING ",
            job_columns!()
        ))
        .bind(job.archive_id)
        .bind(job.printer_id)
        .bind(model)
        .bind(site)
        .bind(plate)
        .bind(job.scheduled_time)
        .bind(job.use_ams)
        .bind(job.bed_leveling.unwrap_or(true))
        .bind(job.timelapse.unwrap_or(false))
        .bind(&plan.name)
        .bind(&plan.filename)
        .bind(plan.has_thumbnail)
        .bind(&model_id)
        .bind(sqlx::types::Json(&needs))
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        tracing::info!(job = row.id, archive = row.archive_id, "job queued");
        self.wake().await;
        let mut views = self.views(vec![row]).await?;
        views
            .pop()
            .ok_or_else(|| ErrorBody::new(ErrorCode::InternalError, "Internal server error"))
    }

    /// Removes a job that is not on a printer (pending, or finished: history).
    pub async fn remove(&self, JobId { id }: JobId) -> Result<JobRemoved, ErrorBody> {
        let status: Option<String> = sqlx::query_scalar(
            "DELETE FROM queue.jobs WHERE id = $1 \
               AND status NOT IN ('dispatching', 'printing') RETURNING status",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        if status.is_some() {
            return Ok(JobRemoved { id, deleted: true });
        }
        let current: Option<String> =
            sqlx::query_scalar("SELECT status FROM queue.jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        match current.as_deref() {
            None => Err(not_found(id)),
            Some("dispatching") => Err(ErrorBody::new(
                ErrorCode::JobPrinting,
                format!(
                    "Queue job {id} is being sent to its printer; once it prints, stop the print \
                     (POST /printers/{{id}}/stop) instead of removing the job"
                ),
            )),
            Some(_) => Err(ErrorBody::new(
                ErrorCode::JobPrinting,
                format!(
                    "Queue job {id} is printing: stop the print (POST /printers/{{id}}/stop) \
                     instead of removing the job"
                ),
            )),
        }
    }

    /// The given jobs take the positions they hold between them, in the given order; jobs not
    /// named keep theirs. Unknown ids or duplicates change nothing.
    pub async fn reorder(&self, Reorder { order }: Reorder) -> Result<JobList, ErrorBody> {
        if order.is_empty() {
            return Err(invalid("Invalid field `order`: at least one job id"));
        }
        if order.len() as i64 > MAX_LIST {
            return Err(invalid(format!(
                "Invalid field `order`: at most {MAX_LIST} job ids"
            )));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = order.iter().find(|id| !seen.insert(**id)) {
            return Err(invalid(format!(
                "Invalid field `order`: job {dup} is listed twice"
            )));
        }
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let held: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT id, position FROM queue.jobs WHERE id = ANY($1) ORDER BY position FOR UPDATE",
        )
        .bind(&order)
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        if held.len() != order.len() {
            let known: std::collections::HashSet<i64> = held.iter().map(|(id, _)| *id).collect();
            let unknown: Vec<String> = order
                .iter()
                .filter(|id| !known.contains(id))
                .map(i64::to_string)
                .collect();
            return Err(invalid(format!(
                "Invalid field `order`: no queue job {}",
                unknown.join(", ")
            )));
        }
        let positions: Vec<i64> = held.iter().map(|(_, p)| *p).collect();
        sqlx::query(
            "UPDATE queue.jobs j SET position = n.position \
             FROM unnest($1::bigint[], $2::bigint[]) AS n(id, position) WHERE j.id = n.id",
        )
        .bind(&order)
        .bind(&positions)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let rows: Vec<JobRow> =
            sqlx::query_as(select_jobs!("WHERE id = ANY($1) ORDER BY position, id"))
                .bind(&order)
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        self.wake().await;
        Ok(JobList {
            jobs: self.views(rows).await?,
        })
    }

    /// A person cleared the printer's plate: it may take its next job. When the plate held a
    /// print, `plate_cleared` tells utilisation how long it waited.
    pub async fn clear_plate(&self, request: ClearPlate) -> Result<PlateCleared, ErrorBody> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let waiting: Option<chrono::DateTime<Utc>> = sqlx::query_scalar(
            "SELECT ended_at FROM queue.plates WHERE printer_id = $1 \
               AND ended_at > coalesce(cleared_at, '-infinity') FOR UPDATE",
        )
        .bind(request.printer_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?
        .flatten();
        let cleared_at: chrono::DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO queue.plates (printer_id, cleared_at) VALUES ($1, now()) \
             ON CONFLICT (printer_id) DO UPDATE SET cleared_at = now() RETURNING cleared_at",
        )
        .bind(request.printer_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        tracing::info!(printer = request.printer_id, "plate cleared");
        if let Some(ended_at) = waiting {
            self.announce_cleared(request.printer_id, ended_at, cleared_at)
                .await;
        }
        self.wake().await;
        Ok(PlateCleared {
            status: "plate_cleared".into(),
            printer_id: request.printer_id,
            cleared_at,
        })
    }

    /// Queues the job whose print is `archive_id` again, first in line, as it was queued (its
    /// library file, target, plate and options). Only a job that ended failed or cancelled, and
    /// once: a second retry of the same job is refused with the job it made.
    pub async fn retry(&self, request: RetryPrint) -> Result<QueueJob, ErrorBody> {
        let conflict = |detail: String| ErrorBody::new(ErrorCode::Conflict, detail);
        let job: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM queue.jobs WHERE result_archive_id = $1 AND printer_assigned = $2 \
             ORDER BY id DESC LIMIT 1",
            job_columns!()
        )))
        .bind(request.archive_id)
        .bind(request.printer_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        let Some(job) = job else {
            return Err(conflict(
                "The print did not come from the queue: there is no job to retry".into(),
            ));
        };
        if !matches!(job.status(), JobStatus::Failed | JobStatus::Cancelled) {
            return Err(conflict(format!(
                "Job {} is {}: only a job that failed or was stopped is retried",
                job.id,
                job.status().as_str()
            )));
        }
        let again: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO queue.jobs (archive_id, printer_id, model, site, plate, position, \
               use_ams, bed_leveling, timelapse, name, filename, has_thumbnail, model_id, \
               filaments, retry_of) \
             SELECT archive_id, printer_id, model, site, plate, \
               (SELECT min(position) - 1 FROM queue.jobs), use_ams, bed_leveling, timelapse, \
               name, filename, has_thumbnail, model_id, filaments, id \
             FROM queue.jobs WHERE id = $1 \
             ON CONFLICT (retry_of) WHERE retry_of IS NOT NULL DO NOTHING RETURNING {}",
            job_columns!()
        )))
        .bind(job.id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        let Some(again) = again else {
            return Err(conflict(format!("Job {} was already queued again", job.id)));
        };
        tracing::info!(
            job = job.id,
            retry = again.id,
            "failed job queued again, first in line"
        );
        self.wake().await;
        self.views(vec![again])
            .await?
            .pop()
            .ok_or_else(|| ErrorBody::new(ErrorCode::InternalError, "Internal server error"))
    }

    /// `plate_cleared` on `FARM_EVENTS` (best effort: a lost one is one wait not counted).
    async fn announce_cleared(
        &self,
        printer_id: i64,
        ended_at: chrono::DateTime<Utc>,
        cleared_at: chrono::DateTime<Utc>,
    ) {
        let view = self.farm.printer(printer_id);
        let kind = EventKind::PlateCleared;
        let event = FarmEvent {
            id: event_id(
                "queue",
                kind,
                &format!("{printer_id}.{}", cleared_at.timestamp_micros()),
            ),
            kind,
            site: view
                .as_ref()
                .map(|p| p.record.site.clone())
                .unwrap_or_default(),
            printer_id,
            serial: view.map(|p| p.record.serial).unwrap_or_default(),
            at: cleared_at,
            data: serde_json::to_value(printyard_contracts::utilisation::PlateCleared { ended_at })
                .unwrap_or_default(),
        };
        let jetstream = async_nats::jetstream::new(self.rpc.nats().clone());
        let _ = printyard_service::farm_events::publish(&jetstream, &event).await;
    }

    /// Wakes every replica's dispatcher (best effort: they also look at every tick).
    async fn wake(&self) {
        let _ = self
            .rpc
            .nats()
            .publish(queue_changed_subject(), bytes::Bytes::new())
            .await;
    }
}

/// The job's own fields checked: its plate, model (canonical) and site.
fn checked_fields(job: &NewJob) -> Result<(i32, Option<&'static str>, Option<String>), ErrorBody> {
    let plate = job.plate.unwrap_or(1);
    if !(1..=MAX_PLATE).contains(&plate) {
        return Err(invalid(format!("Invalid field `plate`: 1 to {MAX_PLATE}")));
    }
    let model = job
        .model
        .as_deref()
        .map(|m| {
            models::canonical(m).ok_or_else(|| {
                invalid(format!(
                    "Invalid field `model`: {m:?} is not a Bambu Lab printer model"
                ))
            })
        })
        .transpose()?;
    let site = job
        .site
        .as_deref()
        .map(|s| {
            Site::parse(s)
                .map(|s| s.as_str().to_owned())
                .map_err(|e| invalid(format!("Invalid field `site`: {e}")))
        })
        .transpose()?;
    Ok((plate, model, site))
}

/// Whether a file sliced for `model_id` may be queued for `model`, for `printer`, and in
/// `site` (the printer's site).
fn fits(
    model_id: Option<&str>,
    model: Option<&str>,
    printer: Option<&TargetPrinter>,
    site: Option<&str>,
) -> Result<(), ErrorBody> {
    let sliced_for = model_id.map(|id| models::name_of_model_id(id).unwrap_or(id).to_owned());
    let needs_other = |model: &str| {
        let wanted = models::model_id(model);
        matches!((wanted, model_id), (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b))
    };
    if let Some(model) = model
        && needs_other(model)
    {
        return Err(invalid(format!(
            "The file was sliced for the {} ({}), not for the {model}",
            sliced_for.as_deref().unwrap_or("another model"),
            model_id.unwrap_or("?")
        )));
    }
    if let Some(printer) = printer {
        let printer_model = printer.model.as_deref().and_then(models::canonical);
        if let Some(printer_model) = printer_model
            && needs_other(printer_model)
        {
            return Err(invalid(format!(
                "Printer {} ({}) is a {printer_model}; the file was sliced for the {} ({}): \
                 choose a {} printer or slice the file for the {printer_model}",
                printer.id,
                printer.name,
                sliced_for.as_deref().unwrap_or("another model"),
                model_id.unwrap_or("?"),
                sliced_for.as_deref().unwrap_or("matching"),
            )));
        }
        if let Some(site) = site
            && site != printer.site
        {
            return Err(invalid(format!(
                "Printer {} is in site {}, not {site}",
                printer.id, printer.site
            )));
        }
    }
    Ok(())
}
