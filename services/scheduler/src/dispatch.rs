//! Dispatch: idle printers get jobs, all at once, each job exactly once.
//!
//! Every replica runs the same loop. A round looks at the farm view for printers that are free
//! (connected, idle, cleared, not holding a job) and, for each, claims the first pending job in
//! queue order that fits it, in one transaction: the printer's advisory lock keeps two replicas
//! from deciding for one printer, `FOR UPDATE SKIP LOCKED` keeps them from taking one job, and a
//! unique index keeps a printer to one job dispatching or printing. A claimed job is
//! `dispatching` under a lease (`claimed_by`, `claim_expires`) that its replica renews while it
//! waits for the gateway; a replica that dies stops renewing, and after the lease another takes
//! the dispatch over and asks the gateway again with the same job id, which the gateway answers
//! idempotently (see the gateway's dispatch module). So a job is never stuck in `dispatching`
//! and never printed twice.
//!
//! Sends run side by side, up to `scheduler.dispatch_concurrency` per site: a farm's uploads
//! (printers write 75–150 KB/s) overlap instead of queueing behind each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use printyard_contracts::archive::{self, PlanRequest};
use printyard_contracts::farm::EventKind;
use printyard_contracts::queue::{PRINT, PrintOutcome, PrintRequest, subtask_name};
use printyard_contracts::{ErrorCode, farm::Site};
use printyard_service::rpc::{PrinterCallError, RpcClient, RpcError};
use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::SchedulerConfig;
use crate::db::{self, JobRow, job_columns, select_jobs};
use crate::farm::{FarmView, PrinterView};
use crate::jobs::{self, End};
use crate::matching::{Mapping, Occupancy, fits};

/// Pending jobs looked at per printer and round: a printer whose first candidates all lack its
/// filaments waits for the next round (and their reasons say why).
const CANDIDATES: i64 = 20;
/// Advisory-lock namespace of the per-printer decision.
const PRINTER_LOCK: i32 = 0x5159;
/// The advisory lock space of a site's staggered starts (keyed by the site's hash).
const SITE_LOCK: i32 = 0x5153;

pub struct Dispatcher {
    pub pool: PgPool,
    pub rpc: RpcClient,
    pub jetstream: async_nats::jetstream::Context,
    pub farm: FarmView,
    pub config: SchedulerConfig,
    /// This replica's name in `claimed_by`.
    pub instance: String,
    pub wake: Arc<Notify>,
    sites: Mutex<HashMap<String, Arc<Semaphore>>>,
    tasks: TaskTracker,
}

/// A job this replica is sending.
pub struct Claimed {
    pub job: JobRow,
    pub printer: PrinterView,
    pub mapping: Mapping,
}

impl Dispatcher {
    pub fn new(
        pool: PgPool,
        rpc: RpcClient,
        farm: FarmView,
        config: SchedulerConfig,
        wake: Arc<Notify>,
    ) -> Arc<Self> {
        let jetstream = async_nats::jetstream::new(rpc.nats().clone());
        Arc::new(Self {
            pool,
            rpc,
            jetstream,
            farm,
            config,
            instance: format!("scheduler-{:016x}", rand::random::<u64>()),
            wake,
            sites: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
        })
    }

    /// Runs rounds until `stop`: at every tick, and at once when the farm or the queue changes.
    /// Dispatches in flight are waited for (up to the runtime's grace period) on the way out.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.tick());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut recover = tokio::time::interval(self.config.claim_lease() / 2);
        recover.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let farm_changed = self.farm.changed.clone();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
                _ = farm_changed.notified() => {}
                _ = self.wake.notified() => {}
                _ = recover.tick() => {
                    self.recover().await;
                    continue;
                }
            }
            // Changes come in bursts (a report from every printer): let them settle a moment.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Err(err) = self.round().await {
                tracing::warn!(error = %err, "dispatch round failed");
            }
        }
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn site_slots(&self, site: &str) -> Arc<Semaphore> {
        let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        sites
            .entry(site.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.dispatch_concurrency.max(1))))
            .clone()
    }

    /// One look at the farm: every free printer gets the first job that fits it.
    async fn round(self: &Arc<Self>) -> Result<(), sqlx::Error> {
        let printers = self.farm.printers();
        // A printer first seen showing a finished print has it on its plate.
        let ended: Vec<i64> = printers
            .iter()
            .filter(|p| {
                p.connected()
                    && p.free()
                    && p.state() != printyard_contracts::printer::PrinterState::Idle
            })
            .map(PrinterView::id)
            .collect();
        if !ended.is_empty() {
            sqlx::query(
                "INSERT INTO queue.plates (printer_id, ended_at) \
                 SELECT unnest($1::bigint[]), now() ON CONFLICT (printer_id) DO NOTHING",
            )
            .bind(&ended)
            .execute(&self.pool)
            .await?;
        }
        let plates = db::plates_to_clear(&self.pool).await?;
        let taken = db::taken_printers(&self.pool).await?;
        let occupancy = Occupancy {
            plates_to_clear: &plates,
            taken: &taken,
            filament_margin_g: self.config.filament_margin_g,
        };
        let free: Vec<PrinterView> = printers
            .into_iter()
            .filter(|p| p.free() && !taken.contains(&p.id()))
            .filter(|p| !plates.contains(&p.id()) || p.record.auto_clear_plate)
            .collect();
        // Claims are short transactions; a few at a time keeps a large farm's round brief.
        let claims = futures::stream::iter(free)
            .map(|printer| {
                let this = self.clone();
                let occupancy = &occupancy;
                async move {
                    let slots = this.site_slots(printer.record.site.as_str());
                    let Ok(slot) = slots.try_acquire_owned() else {
                        return None;
                    };
                    match this.claim(&printer, occupancy).await {
                        Ok(Some(claimed)) => Some((claimed, slot)),
                        Ok(None) => None,
                        Err(err) => {
                            tracing::warn!(printer = printer.id(), error = %err, "claim failed");
                            None
                        }
                    }
                }
            })
            .buffer_unordered(8)
            .filter_map(|claim| async move { claim })
            .collect::<Vec<_>>()
            .await;
        for (claimed, slot) in claims {
            let this = self.clone();
            self.tasks.spawn(async move {
                this.send(claimed).await;
                drop(slot);
            });
        }
        Ok(())
    }

    /// Claims the first pending job that fits `printer`, if any (public for the benchmark).
    pub async fn claim(
        &self,
        printer: &PrinterView,
        occupancy: &Occupancy<'_>,
    ) -> Result<Option<Claimed>, sqlx::Error> {
        let started = std::time::Instant::now();
        let mut tx = self.pool.begin().await?;
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, $2)")
            .bind(PRINTER_LOCK)
            .bind(printer.id() as i32)
            .fetch_one(&mut *tx)
            .await?;
        if !ours {
            return Ok(None);
        }
        // Staggered starts: one claim per site per interval, whichever replica makes it.
        let site = printer.record.site.as_str();
        let stagger = self.config.stagger(site);
        if !stagger.is_zero() {
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .bind(SITE_LOCK)
                .bind(site)
                .execute(&mut *tx)
                .await?;
            let recent: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM queue.site_starts WHERE site = $1 \
                   AND last_claim > now() - make_interval(secs => $2))",
            )
            .bind(site)
            .bind(stagger.as_secs_f64())
            .fetch_one(&mut *tx)
            .await?;
            if recent {
                return Ok(None);
            }
        }
        // Three index range scans, each stopping after a few rows, merged in queue order: the
        // printer's own jobs, then jobs for any printer sliced for its model, and jobs for any
        // printer that name no model. (One scan with an OR would read past every pending job
        // that names another printer or model: 75 ms at 100,000 jobs, see the benchmark.)
        let candidates: Vec<JobRow> = sqlx::query_as(select_jobs!(
            "WHERE id IN ( \
               (SELECT id FROM queue.jobs WHERE status = 'pending' AND printer_id = $1 \
                  AND (scheduled_time IS NULL OR scheduled_time <= now()) \
                  AND (not_before IS NULL OR not_before <= now()) \
                ORDER BY position, id LIMIT $5) \
               UNION ALL \
               (SELECT id FROM queue.jobs WHERE status = 'pending' AND printer_id IS NULL \
                  AND (model_id = $4 OR ($4::text IS NULL AND model_id IS NOT NULL)) \
                  AND (site IS NULL OR site = $2) AND (model IS NULL OR lower(model) = lower($3)) \
                  AND (scheduled_time IS NULL OR scheduled_time <= now()) \
                  AND (not_before IS NULL OR not_before <= now()) \
                ORDER BY position, id LIMIT $5) \
               UNION ALL \
               (SELECT id FROM queue.jobs WHERE status = 'pending' AND printer_id IS NULL \
                  AND model_id IS NULL \
                  AND (site IS NULL OR site = $2) AND (model IS NULL OR lower(model) = lower($3)) \
                  AND (scheduled_time IS NULL OR scheduled_time <= now()) \
                  AND (not_before IS NULL OR not_before <= now()) \
                ORDER BY position, id LIMIT $5)) \
             AND status = 'pending' \
             ORDER BY position, id FOR UPDATE SKIP LOCKED"
        ))
        .bind(printer.id())
        .bind(printer.record.site.as_str())
        .bind(printer.model().unwrap_or(""))
        .bind(printer.model_id())
        .bind(CANDIDATES)
        .fetch_all(&mut *tx)
        .await?;
        let Some((job, mapping)) = candidates
            .into_iter()
            .find_map(|job| fits(&job.wants(), printer, occupancy).map(|m| (job, m)))
        else {
            return Ok(None);
        };
        let claimed: Result<JobRow, sqlx::Error> = sqlx::query_as(concat!(
            "UPDATE queue.jobs SET status = 'dispatching', printer_assigned = $2, \
               claimed_by = $3, claim_expires = now() + make_interval(secs => $4), \
               attempts = attempts + 1, ams_mapping = $5, sent_use_ams = $6 \
             WHERE id = $1 RETURNING ",
            job_columns!()
        ))
        .bind(job.id)
        .bind(printer.id())
        .bind(&self.instance)
        .bind(self.config.claim_lease().as_secs_f64())
        .bind(sqlx::types::Json(&mapping.ams_mapping))
        .bind(mapping.use_ams)
        .fetch_one(&mut *tx)
        .await;
        let job = match claimed {
            Ok(job) => job,
            // Another job holds the printer already (a print the view has not seen yet).
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => return Ok(None),
            Err(err) => return Err(err),
        };
        if !stagger.is_zero() {
            sqlx::query(
                "INSERT INTO queue.site_starts (site, last_claim) VALUES ($1, now()) \
                 ON CONFLICT (site) DO UPDATE SET last_claim = now()",
            )
            .bind(site)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        metrics::histogram!("printyard_scheduler_claim_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::info!(
            job = job.id,
            printer = printer.id(),
            attempt = job.attempts,
            "job claimed"
        );
        Ok(Some(Claimed {
            job,
            printer: printer.clone(),
            mapping,
        }))
    }

    /// Takes over dispatches whose replica stopped renewing its lease, and sends them again.
    async fn recover(self: &Arc<Self>) {
        let taken: Result<Vec<JobRow>, sqlx::Error> = sqlx::query_as(concat!(
            "UPDATE queue.jobs SET claimed_by = $1, \
               claim_expires = now() + make_interval(secs => $2) \
             WHERE id IN (SELECT id FROM queue.jobs \
                 WHERE status = 'dispatching' AND claim_expires < now() \
                 ORDER BY claim_expires LIMIT 100 FOR UPDATE SKIP LOCKED) \
             RETURNING ",
            job_columns!()
        ))
        .bind(&self.instance)
        .bind(self.config.claim_lease().as_secs_f64())
        .fetch_all(&self.pool)
        .await;
        let jobs = match taken {
            Ok(jobs) => jobs,
            Err(err) => {
                tracing::warn!(error = %err, "looking for abandoned dispatches failed");
                return;
            }
        };
        for job in jobs {
            let Some(printer) = job.printer_assigned.and_then(|id| self.farm.printer(id)) else {
                let this = self.clone();
                self.tasks.spawn(async move {
                    let outcome = PrintOutcome::NotConnected {
                        reason: Some("the printer is no longer registered".into()),
                    };
                    this.settle(&job, &outcome).await;
                });
                continue;
            };
            tracing::warn!(
                job = job.id,
                printer = printer.id(),
                "taking over an abandoned dispatch"
            );
            metrics::counter!("printyard_scheduler_dispatches_recovered_total").increment(1);
            let mapping = Mapping {
                use_ams: job.sent_use_ams.unwrap_or(false),
                ams_mapping: job
                    .ams_mapping
                    .as_ref()
                    .map(|m| m.0.clone())
                    .unwrap_or_default(),
            };
            let this = self.clone();
            self.tasks.spawn(async move {
                this.send(Claimed {
                    job,
                    printer,
                    mapping,
                })
                .await
            });
        }
    }

    /// Sends a claimed job to its printer's gateway and settles the job with the answer,
    /// renewing the claim meanwhile.
    async fn send(&self, claimed: Claimed) {
        let job = claimed.job;
        let renewing = CancellationToken::new();
        let renewal = tokio::spawn(renew(
            self.pool.clone(),
            job.id,
            self.instance.clone(),
            self.config.claim_lease(),
            renewing.clone(),
        ));
        let outcome = self
            .ask_gateway(&job, &claimed.printer, &claimed.mapping)
            .await;
        renewing.cancel();
        let _ = renewal.await;
        self.settle(&job, &outcome).await;
    }

    async fn ask_gateway(
        &self,
        job: &JobRow,
        printer: &PrinterView,
        mapping: &Mapping,
    ) -> PrintOutcome {
        let plan = self
            .rpc
            .call(
                archive::PRINT_PLAN,
                &PlanRequest {
                    archive_id: job.archive_id,
                    plate: job.plate as u32,
                },
            )
            .await;
        let plan = match plan {
            Ok(plan) => plan,
            Err(RpcError::Remote(body))
                if matches!(body.code, ErrorCode::NotFound | ErrorCode::ValidationError) =>
            {
                return PrintOutcome::FileUnavailable {
                    reason: body.detail,
                };
            }
            Err(err) => {
                return PrintOutcome::UploadFailed {
                    reason: format!("the archive could not be asked for the file: {err}"),
                };
            }
        };
        let request = PrintRequest {
            job_id: job.id,
            archive_id: job.archive_id,
            file: plan.file.clone(),
            sha256: Some(plan.sha256.clone()),
            plate: job.plate as u32,
            subtask_name: subtask_name(&job.name, job.id),
            use_ams: mapping.use_ams,
            ams_mapping: mapping.ams_mapping.clone(),
            bed_leveling: job.bed_leveling,
            timelapse: job.timelapse,
        };
        // The gateway's own deadlines (upload by size, then the start) come first; this one
        // only catches a gateway that vanished with the request.
        let deadline = Duration::from_secs(90 + plan.file.size / (32 * 1024))
            + Duration::from_secs(self.config.print_start_secs);
        let site = &printer.record.site;
        let asked = self
            .rpc
            .call_printer(PRINT, site, printer.id(), &request, deadline)
            .await;
        match asked {
            Ok(outcome) => outcome,
            Err(PrinterCallError::TimedOut(after)) => PrintOutcome::TimedOut {
                after_ms: after.as_millis() as u64,
            },
            Err(PrinterCallError::NoGateway { site }) => PrintOutcome::NotConnected {
                reason: Some(no_gateway(&site)),
            },
            Err(err @ PrinterCallError::Unreachable(_)) => PrintOutcome::NotConnected {
                reason: Some(err.to_string()),
            },
            Err(err @ PrinterCallError::Unreadable(_)) => PrintOutcome::UploadFailed {
                reason: err.to_string(),
            },
        }
    }

    /// Moves a dispatched job on with the gateway's answer: printing, back to pending (a
    /// failure that may pass, with backoff, while attempts remain), or failed.
    async fn settle(&self, job: &JobRow, outcome: &PrintOutcome) {
        let label = match outcome {
            PrintOutcome::Started => "started",
            o if o.is_transient() => "retry",
            _ => "failed",
        };
        metrics::counter!("printyard_scheduler_dispatches_total", "outcome" => label).increment(1);
        let result = match outcome {
            PrintOutcome::Started => self.started(job).await,
            o if o.is_transient() && job.attempts < self.config.max_attempts => {
                self.retry(job, o).await
            }
            o => self.failed(job, o).await,
        };
        if let Err(err) = result {
            // The lease runs out and another replica settles it.
            tracing::warn!(job = job.id, error = %err, "dispatch outcome not recorded");
        }
    }

    async fn started(&self, job: &JobRow) -> Result<(), sqlx::Error> {
        let printer = job.printer_assigned.unwrap_or_default();
        let mut tx = self.pool.begin().await?;
        let (started, displaced) =
            jobs::mark_printing(&mut tx, job.id, printer, Utc::now()).await?;
        tx.commit().await?;
        for other in &displaced {
            jobs::publish(
                &self.jetstream,
                &self.farm,
                other,
                EventKind::QueueJobFailed,
            )
            .await;
        }
        if let Some(row) = started {
            tracing::info!(job = job.id, printer, "job printing");
            jobs::publish(
                &self.jetstream,
                &self.farm,
                &row,
                EventKind::QueueJobStarted,
            )
            .await;
        }
        Ok(())
    }

    async fn retry(&self, job: &JobRow, outcome: &PrintOutcome) -> Result<(), sqlx::Error> {
        let backoff = self.config.retry_backoff(job.attempts);
        let reason = outcome.describe();
        tracing::warn!(
            job = job.id,
            attempt = job.attempts,
            reason,
            "dispatch failed; will retry"
        );
        sqlx::query(
            "UPDATE queue.jobs SET status = 'pending', printer_assigned = NULL, \
               claimed_by = NULL, claim_expires = NULL, error = $2, \
               not_before = now() + make_interval(secs => $3) \
             WHERE id = $1 AND status = 'dispatching'",
        )
        .bind(job.id)
        .bind(reason)
        .bind(backoff.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn failed(&self, job: &JobRow, outcome: &PrintOutcome) -> Result<(), sqlx::Error> {
        let reason = outcome.describe();
        tracing::warn!(job = job.id, reason, "job failed");
        let row: Option<JobRow> = sqlx::query_as(concat!(
            "UPDATE queue.jobs SET status = 'failed', completed_at = now(), error = $2, \
               claimed_by = NULL, claim_expires = NULL \
             WHERE id = $1 AND status = 'dispatching' RETURNING ",
            job_columns!()
        ))
        .bind(job.id)
        .bind(&reason)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            jobs::publish(
                &self.jetstream,
                &self.farm,
                &row,
                End::Failed(reason).event(),
            )
            .await;
        }
        Ok(())
    }
}

fn no_gateway(site: &Site) -> String {
    format!("no gateway of site `{site}` holds the printer")
}

/// Renews a dispatch's claim every third of the lease until `stop`.
async fn renew(pool: PgPool, job: i64, instance: String, lease: Duration, stop: CancellationToken) {
    let mut every = tokio::time::interval(lease / 3);
    every.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let renewed = sqlx::query(
            "UPDATE queue.jobs SET claim_expires = now() + make_interval(secs => $3) \
             WHERE id = $1 AND claimed_by = $2 AND status = 'dispatching'",
        )
        .bind(job)
        .bind(&instance)
        .bind(lease.as_secs_f64())
        .execute(&pool)
        .await;
        match renewed {
            Ok(done) if done.rows_affected() == 0 => return,
            Ok(_) => {}
            Err(err) => tracing::warn!(job, error = %err, "dispatch claim not renewed"),
        }
    }
}
