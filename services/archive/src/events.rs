//! Auto-archiving: a durable consumer of `FARM_EVENTS`.
//!
//! Every replica pulls from the one durable consumer `archive`, so each event is handled by one
//! of them, and after a restart the consumer resumes where it was acknowledged. An event's id is
//! recorded in `applied_events` in the same transaction as its effect, so a redelivery (a crash
//! between commit and ack) changes nothing. Events of one print may be handled out of order
//! (several at once, several replicas): every step is written so that order does not matter —
//! the start fills only what is empty, the end only ends a print still `printing`, the file
//! fills the file fields whenever it arrives.
//!
//! Ends no gateway saw are closed too: `printer_removed` ends a deleted printer's open prints
//! as `unknown`; `printer_state` (what a printer shows when a gateway holds it again) ends an
//! open print from what the printer reports (the same job finished or failed), or as `unknown`
//! when it shows something else. A capture a gateway resumed after a takeover (`resumed`)
//! fills the open print's file if it has none.
//!
//! Prints the queue sent carry their job's tag in their name: their archive records the job,
//! takes its name without the tag, and reuses the library file the gateway reports it sent
//! (`source_archive` in `print_file`). Once an archive of a print exists, `archive_created` goes
//! on `FARM_EVENTS` (the scheduler links its job to it, webhooks announce it).

use std::time::Duration;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use printyard_contracts::farm::{EventKind, FarmEvent, event_id};
use printyard_contracts::queue;
use printyard_service::farm_events::ConsumerOptions;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db::{self, FILAMENT_TYPE_SQL};
use crate::intake::{Intake, IntakeError, Stored};
use crate::plan::Plans;

/// What handling an event needs.
#[derive(Clone)]
pub struct Context {
    pub jetstream: jetstream::Context,
    pub pool: PgPool,
    pub intake: Intake,
    pub plans: Plans,
}

/// The durable consumer's name.
pub const CONSUMER: &str = "archive";

/// What became of an event.
#[derive(Debug)]
pub enum Handled {
    Done,
    /// Try again later (database or storage down).
    Retry(String),
}

pub async fn run(context: Context, concurrency: usize, shutdown: CancellationToken) {
    let options = ConsumerOptions {
        name: CONSUMER,
        // A 1 GiB file may take a while to store.
        ack_wait: Duration::from_secs(300),
        concurrency,
    };
    let jetstream = context.jetstream.clone();
    printyard_service::farm_events::consume(jetstream, options, shutdown, |event| {
        let context = context.clone();
        async move {
            match apply(&context, &event).await {
                Handled::Done => Ok(()),
                Handled::Retry(reason) => Err(reason),
            }
        }
    })
    .await
}

/// What the gateway puts in a print event's `data`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct PrintData {
    /// The gateway's key for the print (same in all its events).
    print: Option<String>,
    printer_name: Option<String>,
    job_name: Option<String>,
    gcode_file: Option<String>,
    progress: Option<f64>,
    print_error: Option<String>,
    /// `print_file`: the transfer-bucket object (in the site's `bucket`; `archive_transfer`
    /// when none is named), and the file's name on the printer.
    object: Option<String>,
    bucket: Option<String>,
    /// The JetStream domain of the bucket: the site's, when it keeps its files at its leaf node.
    domain: Option<String>,
    filename: Option<String>,
    /// `print_file`: why the file could not be fetched.
    error: Option<String>,
    /// The plate printed, when known.
    plate: Option<u32>,
    /// `print_file` of a print the queue sent: the library archive whose file it is.
    source_archive: Option<i64>,
    /// The queue job of the print (also read from the job name's tag).
    queue_job: Option<i64>,
    /// `printer_state`: the printer's state (`idle`, `printing`, `finished`, …).
    state: Option<String>,
    /// `print_file` of a capture a gateway resumed after a takeover.
    resumed: bool,
}

impl PrintData {
    fn queue_job(&self) -> Option<i64> {
        self.queue_job
            .or_else(|| self.job_name.as_deref().and_then(queue::job_of))
            .or_else(|| self.filename.as_deref().and_then(queue::job_of))
    }
}

/// An archive a print event created.
struct Created {
    archive_id: i64,
}

pub async fn apply(context: &Context, event: &FarmEvent) -> Handled {
    let (pool, intake) = (&context.pool, &context.intake);
    let kind = event.kind;
    if !matches!(
        kind,
        EventKind::PrintStarted
            | EventKind::PrintComplete
            | EventKind::PrintFailed
            | EventKind::PrintStopped
            | EventKind::PrintFile
            | EventKind::PrinterState
            | EventKind::PrinterRemoved
    ) {
        return Handled::Done;
    }
    let data: PrintData = serde_json::from_value(event.data.clone()).unwrap_or_default();
    match already_applied(pool, &event.id).await {
        Ok(true) => {
            if let Some(object) = &data.object {
                intake
                    .discard(data.domain.as_deref(), data.bucket.as_deref(), object)
                    .await;
            }
            // A crash between the commit and `archive_created` leaves it unsent: send it again
            // (its id makes a repeat within the stream's window harmless).
            if kind == EventKind::PrintStarted
                && let Some(key) = print_key(event, &data)
                && let Ok(Some(archive_id)) = sqlx::query_scalar::<_, i64>(
                    "SELECT id FROM archive.archives WHERE print_key = $1",
                )
                .bind(&key)
                .fetch_optional(pool)
                .await
            {
                announce(context, event, &data, Created { archive_id }).await;
            }
            return Handled::Done;
        }
        Ok(false) => {}
        Err(err) => return Handled::Retry(err.to_string()),
    }
    // The file is stored before the transaction (it can take long); it is content-addressed,
    // so doing it twice after a crash stores nothing twice.
    let file = match (&data.object, kind) {
        (Some(object), EventKind::PrintFile) => match intake
            .take(
                data.domain.as_deref(),
                data.bucket.as_deref(),
                object,
                data.plate,
            )
            .await
        {
            Ok(stored) => Some(Ok(stored)),
            Err(err) if err.is_transient() => return Handled::Retry(err.to_string()),
            Err(err) => Some(Err(err)),
        },
        _ => None,
    };
    let result = write(context, event, &data, file.as_ref()).await;
    match result {
        Ok(created) => {
            if let Some(object) = &data.object {
                intake
                    .discard(data.domain.as_deref(), data.bucket.as_deref(), object)
                    .await;
            }
            if let Some(created) = created {
                announce(context, event, &data, created).await;
            }
            metrics::counter!("printyard_archive_events_applied_total", "kind" => kind.as_str())
                .increment(1);
            Handled::Done
        }
        Err(err) => Handled::Retry(err.to_string()),
    }
}

async fn already_applied(pool: &PgPool, id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM archive.applied_events WHERE event_id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await
}

fn print_key(event: &FarmEvent, data: &PrintData) -> Option<String> {
    data.print
        .as_deref()
        .filter(|k| !k.is_empty())
        .map(|k| format!("{}/{k}", event.printer_id))
}

/// The file name a print shows before (or without) its 3MF.
fn job_filename(data: &PrintData) -> String {
    let from_file = data
        .filename
        .as_deref()
        .or(data.gcode_file.as_deref())
        .map(|f| f.rsplit('/').next().unwrap_or(f).to_owned())
        .filter(|f| !f.is_empty() && !f.starts_with("plate_") && f.contains('.'));
    from_file
        .or_else(|| data.job_name.as_ref().map(|j| format!("{j}.3mf")))
        .unwrap_or_else(|| "unknown.3mf".to_owned())
}

fn job_name(data: &PrintData) -> String {
    let name = data
        .job_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| file_stem(&job_filename(data)));
    queue::untagged(&name).to_owned()
}

/// Publishes `archive_created` for a print's new archive (retried by the stream client; an
/// archive that misses it is still listed, only the scheduler's link waits for a redelivery).
async fn announce(context: &Context, event: &FarmEvent, data: &PrintData, created: Created) {
    let announced = FarmEvent {
        id: event_id(
            &event.serial,
            EventKind::ArchiveCreated,
            &created.archive_id.to_string(),
        ),
        kind: EventKind::ArchiveCreated,
        site: event.site.clone(),
        printer_id: event.printer_id,
        serial: event.serial.clone(),
        at: chrono::Utc::now(),
        data: serde_json::json!({
            "archive_id": created.archive_id,
            "print": data.print,
            "printer_name": data.printer_name,
            "queue_job": data.queue_job(),
            "filename": job_filename(data),
            "status": "printing",
        }),
    };
    if printyard_service::farm_events::publish(&context.jetstream, &announced)
        .await
        .is_err()
    {
        tracing::warn!(
            archive = created.archive_id,
            "archive_created not published"
        );
    }
}

/// `cube.gcode.3mf` → `cube`.
pub fn file_stem(filename: &str) -> String {
    let base = filename.rsplit('/').next().unwrap_or(filename);
    let stem = base
        .strip_suffix(".3mf")
        .map(|s| s.strip_suffix(".gcode").unwrap_or(s))
        .unwrap_or(base);
    if stem.is_empty() {
        base.to_owned()
    } else {
        stem.to_owned()
    }
}

async fn write(
    context: &Context,
    event: &FarmEvent,
    data: &PrintData,
    file: Option<&Result<Stored, IntakeError>>,
) -> Result<Option<Created>, sqlx::Error> {
    let mut tx = context.pool.begin().await?;
    let fresh = sqlx::query(
        "INSERT INTO archive.applied_events (event_id) VALUES ($1) ON CONFLICT DO NOTHING",
    )
    .bind(&event.id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !fresh {
        tx.commit().await?;
        return Ok(None);
    }
    let key = print_key(event, data);
    let mut created = None;
    match event.kind {
        EventKind::PrintStarted => {
            let (id, inserted): (i64, bool) = sqlx::query_as(
                "INSERT INTO archive.archives \
                   (print_key, name, filename, printer_id, printer_name, status, created_at, \
                    started_at, queue_job_id, job_name, site) \
                 VALUES ($1, $2, $3, $4, $5, 'printing', $6, $6, $7, $8, $9) \
                 ON CONFLICT (print_key) DO UPDATE SET \
                   started_at = coalesce(archive.archives.started_at, EXCLUDED.started_at), \
                   created_at = least(archive.archives.created_at, EXCLUDED.created_at), \
                   printer_name = coalesce(archive.archives.printer_name, EXCLUDED.printer_name), \
                   queue_job_id = coalesce(archive.archives.queue_job_id, EXCLUDED.queue_job_id) \
                 RETURNING id, (xmax = 0)",
            )
            .bind(&key)
            .bind(job_name(data))
            .bind(job_filename(data))
            .bind(event.printer_id)
            .bind(&data.printer_name)
            .bind(event.at)
            .bind(data.queue_job())
            .bind(&data.job_name)
            .bind(event.site.as_str())
            .fetch_one(&mut *tx)
            .await?;
            if inserted {
                created = Some(Created { archive_id: id });
            }
        }
        EventKind::PrintComplete | EventKind::PrintFailed | EventKind::PrintStopped => {
            let (status, progress) = match event.kind {
                EventKind::PrintComplete => ("success", Some(100.0)),
                EventKind::PrintFailed => ("failed", data.progress),
                _ => ("stopped", data.progress),
            };
            let job = data.job_name.as_deref();
            let id = match find_print(&mut tx, event, key.as_deref(), job, false).await? {
                Some(id) => id,
                None => {
                    let id = insert_print(&mut tx, event, data, key.as_deref()).await?;
                    created = Some(Created { archive_id: id });
                    id
                }
            };
            let fraction = progress.map(|p| (p / 100.0).clamp(0.0, 1.0));
            let reason = data
                .print_error
                .as_ref()
                .filter(|_| status == "failed")
                .map(|e| format!("print error {e}"));
            let end = End {
                status,
                at: event.at,
                fraction,
                reason,
                end_reason: None,
            };
            end_print(&mut tx, id, &end).await?;
        }
        EventKind::PrinterRemoved => {
            let open: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM archive.archives WHERE printer_id = $1 AND status = 'printing' \
                 FOR UPDATE",
            )
            .bind(event.printer_id)
            .fetch_all(&mut *tx)
            .await?;
            for id in open {
                let end = End {
                    status: "unknown",
                    at: event.at,
                    fraction: None,
                    reason: None,
                    end_reason: Some("the printer was deleted while it printed".into()),
                };
                end_print(&mut tx, id, &end).await?;
            }
        }
        EventKind::PrinterState => {
            if let Some(archive_id) = close_unseen_ends(&mut tx, event, data).await? {
                created = Some(Created { archive_id });
            }
        }
        EventKind::PrintFile => {
            let job = data.job_name.as_deref();
            let found = find_print(&mut tx, event, key.as_deref(), job, data.resumed).await?;
            if data.resumed {
                // A capture resumed after a takeover: only for the open print of that job, and
                // only if it has no file yet.
                let row: Option<(bool, Option<String>, Option<String>)> = match found {
                    Some(id) => {
                        sqlx::query_as(
                            "SELECT file_key IS NOT NULL, job_name, print_key \
                             FROM archive.archives WHERE id = $1",
                        )
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?
                    }
                    None => None,
                };
                let wanted = row.is_some_and(|(has_file, job, key)| {
                    !has_file
                        && same_job(
                            event.printer_id,
                            job.as_deref(),
                            key.as_deref(),
                            data.job_name.as_deref(),
                        )
                });
                if !wanted {
                    tx.commit().await?;
                    return Ok(None);
                }
            }
            let id = match found {
                Some(id) => id,
                None => {
                    let id = insert_print(&mut tx, event, data, key.as_deref()).await?;
                    created = Some(Created { archive_id: id });
                    id
                }
            };
            match file {
                Some(Ok(stored)) => {
                    db::lock_object(&mut tx, &stored.file_key).await?;
                    db::set_file(&mut tx, id, stored).await?;
                    let name = stored
                        .meta
                        .title
                        .clone()
                        .unwrap_or_else(|| file_stem(&job_filename(data)));
                    sqlx::query(
                        "UPDATE archive.archives SET name = $2, filename = $3, \
                           filament_used = CASE status WHEN 'printing' THEN NULL \
                               WHEN 'success' THEN weight \
                               ELSE weight * coalesce(progress, 0) / 100.0 END \
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(name)
                    .bind(job_filename(data))
                    .execute(&mut *tx)
                    .await?;
                }
                Some(Err(err)) => set_file_error(&mut tx, id, &err.to_string()).await?,
                None if data.source_archive.is_some() => {
                    let source = data.source_archive.unwrap_or_default();
                    if let Err(reason) = context
                        .plans
                        .reuse_library_file(&mut tx, id, source, data.plate)
                        .await?
                    {
                        set_file_error(&mut tx, id, &reason).await?;
                    }
                }
                None => {
                    let reason = data
                        .error
                        .clone()
                        .unwrap_or_else(|| "the gateway sent no file".to_owned());
                    set_file_error(&mut tx, id, &reason).await?;
                }
            }
        }
        _ => {}
    }
    tx.commit().await?;
    Ok(created)
}

async fn set_file_error(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: i64,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE archive.archives SET file_error = $2 WHERE id = $1 AND file_key IS NULL")
        .bind(id)
        .bind(reason)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The archive of the print an event belongs to: by the gateway's print key, else the latest
/// print of the same job still `printing` on that printer that started before the event (a
/// gateway that took over mid-print has its own key for it). The job must match when both are
/// known: an end handled before its own start (events are handled side by side, and a backlog
/// replayed after an outage brings a short print's start and end together) must not end the
/// printer's previous print. A file is matched by key only, unless it is a capture resumed
/// after a takeover (`fallback`): a file arriving before its print's start must not land on an
/// older print.
async fn find_print(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    event: &FarmEvent,
    key: Option<&str>,
    job_name: Option<&str>,
    fallback: bool,
) -> Result<Option<i64>, sqlx::Error> {
    if let Some(key) = key {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM archive.archives WHERE print_key = $1 FOR UPDATE")
                .bind(key)
                .fetch_optional(&mut **tx)
                .await?;
        if found.is_some() || (event.kind == EventKind::PrintFile && !fallback) {
            return Ok(found);
        }
    }
    // The printer's open print of that job. One known only from its file (no job name yet)
    // under another key is another print's: events are handled side by side, and the end of
    // a print whose start was not applied yet once ended the print whose file came first.
    sqlx::query_scalar(
        "SELECT id FROM archive.archives \
         WHERE printer_id = $1 AND status = 'printing' AND coalesce(started_at, created_at) <= $2 \
           AND ($3::text IS NULL OR job_name IS NULL OR job_name = $3) \
           AND ($4::text IS NULL OR job_name IS NOT NULL OR print_key IS NULL OR print_key = $4) \
         ORDER BY coalesce(started_at, created_at) DESC LIMIT 1 FOR UPDATE",
    )
    .bind(event.printer_id)
    .bind(event.at)
    .bind(job_name.filter(|j| !j.is_empty()))
    .bind(key)
    .fetch_optional(&mut **tx)
    .await
}

/// A print first heard of by its end or its file: archived from what the event says.
async fn insert_print(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    event: &FarmEvent,
    data: &PrintData,
    key: Option<&str>,
) -> Result<i64, sqlx::Error> {
    let at: DateTime<Utc> = event.at;
    sqlx::query_scalar(
        "INSERT INTO archive.archives \
           (print_key, name, filename, printer_id, printer_name, status, created_at, queue_job_id, \
            job_name, site) \
         VALUES ($1, $2, $3, $4, $5, 'printing', $6, $7, $8, $9) \
         ON CONFLICT (print_key) DO UPDATE SET print_key = EXCLUDED.print_key \
         RETURNING id",
    )
    .bind(key)
    .bind(job_name(data))
    .bind(job_filename(data))
    .bind(event.printer_id)
    .bind(&data.printer_name)
    .bind(at)
    .bind(data.queue_job())
    .bind(&data.job_name)
    .bind(event.site.as_str())
    .fetch_one(&mut **tx)
    .await
}

/// How an open print ends.
struct End {
    status: &'static str,
    at: DateTime<Utc>,
    /// Progress reached, 0 to 1, when known.
    fraction: Option<f64>,
    /// A failure's reason, into the notes.
    reason: Option<String>,
    /// How an end no gateway saw was learned.
    end_reason: Option<String>,
}

/// Ends archive `id` if it is still `printing`. A print that ends without its 3MF says why,
/// unless a capture still arrives (it fills the file and clears the reason).
async fn end_print(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: i64,
    end: &End,
) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE archive.archives SET status = $2, completed_at = $3, \
           progress = round($4 * 100)::int, \
           duration = CASE WHEN started_at IS NULL THEN NULL \
                           ELSE greatest(0, extract(epoch FROM ($3 - started_at)))::bigint END, \
           filament_used = CASE WHEN $2 = 'unknown' THEN NULL ELSE weight * coalesce($4, 0) END, \
           filament_type = {FILAMENT_TYPE_SQL}, \
           notes = coalesce(notes, $5), \
           end_reason = coalesce($6, end_reason), \
           file_error = CASE WHEN file_key IS NULL THEN coalesce(file_error, \
               'no 3MF was captured: the gateway holding the printer stopped or handed it over \
                before it could fetch the file') ELSE file_error END \
         WHERE id = $1 AND status = 'printing'"
    )))
    .bind(id)
    .bind(end.status)
    .bind(end.at)
    .bind(end.fraction)
    .bind(&end.reason)
    .bind(&end.end_reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether an open archive is the print a printer shows: by the job name recorded at its
/// start, or (archives from before job names were recorded) by its print key.
fn same_job(
    printer_id: i64,
    job_name: Option<&str>,
    print_key: Option<&str>,
    shown: Option<&str>,
) -> bool {
    let Some(shown) = shown.filter(|s| !s.is_empty()) else {
        return false;
    };
    match job_name {
        Some(job) => job == shown,
        None => print_key.is_some_and(|key| {
            key.starts_with(&format!(
                "{printer_id}/{}@",
                printyard_contracts::farm::key_token(shown)
            ))
        }),
    }
}

/// A printer seen again (a gateway's first report): its open prints that it no longer shows
/// running ended while nobody watched. The same job finished or failed ends as such; anything
/// else (idle, another print) ends `unknown`. A print running that no archive follows started
/// unseen: it is archived (its id is returned).
async fn close_unseen_ends(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    event: &FarmEvent,
    data: &PrintData,
) -> Result<Option<i64>, sqlx::Error> {
    let open: Vec<(i64, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT id, job_name, print_key FROM archive.archives \
         WHERE printer_id = $1 AND status = 'printing' \
           AND coalesce(started_at, created_at) <= $2 FOR UPDATE",
    )
    .bind(event.printer_id)
    .bind(event.at)
    .fetch_all(&mut **tx)
    .await?;
    let state = data.state.as_deref().unwrap_or("unknown");
    let shown = data.job_name.as_deref();
    let busy = matches!(state, "preparing" | "printing" | "paused");
    let mut followed = false;
    for (id, job_name, key) in open {
        let same = same_job(event.printer_id, job_name.as_deref(), key.as_deref(), shown);
        followed |= same && busy;
        let seen =
            "it ended while no gateway watched the printer; the end is when it was seen again";
        let end = match (state, same) {
            ("preparing" | "printing" | "paused", true) => continue,
            ("finished", true) => End {
                status: "success",
                at: event.at,
                fraction: Some(1.0),
                reason: None,
                end_reason: Some(format!("{seen} (finished)")),
            },
            ("failed", true) => {
                let stopped = data.print_error.as_deref() == Some("0300_400C");
                End {
                    status: if stopped { "stopped" } else { "failed" },
                    at: event.at,
                    fraction: data.progress.map(|p| (p / 100.0).clamp(0.0, 1.0)),
                    reason: data
                        .print_error
                        .as_ref()
                        .filter(|_| !stopped)
                        .map(|e| format!("print error {e}")),
                    end_reason: Some(format!(
                        "{seen} ({})",
                        if stopped { "stopped" } else { "failed" }
                    )),
                }
            }
            _ => End {
                status: "unknown",
                at: event.at,
                fraction: None,
                reason: None,
                end_reason: Some(match shown.filter(|s| !s.is_empty()) {
                    Some(job) if !same => format!(
                        "the print ended while no gateway watched the printer; when it was seen \
                         again it showed another job ({job}, {state})"
                    ),
                    _ => format!(
                        "the print ended while no gateway watched the printer; when it was seen \
                         again it was {state}"
                    ),
                }),
            },
        };
        end_print(tx, id, &end).await?;
    }
    // A print that started while no gateway watched: archived from now on (its start is when
    // it was seen; its end and file come as for any print, under the gateway's key).
    if busy && !followed && shown.is_some_and(|s| !s.is_empty()) {
        let key = print_key(event, data);
        return sqlx::query_scalar(
            "INSERT INTO archive.archives (print_key, name, filename, printer_id, printer_name, \
               status, created_at, started_at, queue_job_id, job_name, site, end_reason) \
             VALUES ($1, $2, $3, $4, $5, 'printing', $6, $6, $7, $8, $9, \
               'it started while no gateway watched the printer; the start is when it was seen') \
             ON CONFLICT (print_key) DO NOTHING RETURNING id",
        )
        .bind(&key)
        .bind(job_name(data))
        .bind(job_filename(data))
        .bind(event.printer_id)
        .bind(&data.printer_name)
        .bind(event.at)
        .bind(data.queue_job())
        .bind(&data.job_name)
        .bind(event.site.as_str())
        .fetch_optional(&mut **tx)
        .await;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_file() {
        assert_eq!(file_stem("demo-cube.gcode.3mf"), "demo-cube");
        assert_eq!(file_stem("/cache/benchy.3mf"), "benchy");
        assert_eq!(file_stem("notes.txt"), "notes.txt");
        let data = PrintData {
            gcode_file: Some("/data/Metadata/plate_1.gcode".into()),
            job_name: Some("gear".into()),
            ..Default::default()
        };
        assert_eq!(
            job_filename(&data),
            "gear.3mf",
            "X1 internal paths are not file names"
        );
        let data = PrintData {
            gcode_file: Some("cube.gcode.3mf".into()),
            ..Default::default()
        };
        assert_eq!(job_name(&data), "cube");
    }

    #[test]
    fn a_printer_seen_again_is_matched_by_job_name_or_old_print_key() {
        assert!(same_job(3, Some("cube"), None, Some("cube")));
        assert!(!same_job(3, Some("cube"), None, Some("gear")));
        assert!(!same_job(3, Some("cube"), None, None));
        assert!(same_job(3, None, Some("3/my_cube@x.1"), Some("my cube")));
        assert!(!same_job(3, None, Some("3/my_cube@x.1"), Some("my")));
    }
}
