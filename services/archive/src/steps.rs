//! The print record's steps ([`crate::record::Step`]) written to Postgres, inside the event's
//! transaction and under its printer's lock: a printer's archives change one event at a time,
//! whichever replica handles it.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use crate::db::{self, FILAMENT_TYPE_SQL};
use crate::intake::{IntakeError, Stored};
use crate::plan::Plans;
use crate::print_data::{PrintData, file_stem, job_filename, job_name};
use crate::record::{Ending, Known};

type Tx<'a> = Transaction<'a, Postgres>;

/// Takes printer `printer_id`'s lock for the rest of the transaction.
pub async fn lock_printer(tx: &mut Tx<'_>, printer_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('archive.printer.' || $1::text))")
        .bind(printer_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// One archive as [`known`] reads it.
type KnownRow = (
    i64,
    Option<String>,
    Vec<String>,
    Option<String>,
    Option<String>,
    bool,
    DateTime<Utc>,
    bool,
    bool,
);

/// The printer's open archives, and those with `keys` (their own or an alias; open or not),
/// locked.
pub async fn known(
    tx: &mut Tx<'_>,
    printer_id: i64,
    keys: &[String],
) -> Result<Vec<Known>, sqlx::Error> {
    let rows: Vec<KnownRow> = sqlx::query_as(
        "SELECT a.id, a.print_key, \
           coalesce((SELECT array_agg(al.print_key ORDER BY al.print_key) \
                     FROM archive.print_aliases al WHERE al.archive_id = a.id), '{}'), \
           a.job_name, a.task_id, a.status = 'printing', coalesce(a.started_at, a.created_at), \
           a.file_key IS NOT NULL, \
           a.end_witness IN ('next_print', 'printer_seen_again') \
             AND EXISTS (SELECT 1 FROM archive.print_ends e WHERE e.archive_id = a.id) \
         FROM archive.archives a \
         WHERE (a.printer_id = $1 AND a.status = 'printing') OR a.print_key = ANY($2) \
            OR a.id IN (SELECT archive_id FROM archive.print_aliases WHERE print_key = ANY($2)) \
         ORDER BY a.id FOR UPDATE OF a",
    )
    .bind(printer_id)
    .bind(keys)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, key, aliases, job_name, task_id, open, since, has_file, provisional)| Known {
                id,
                key,
                aliases,
                job_name,
                task_id,
                open,
                since,
                has_file,
                provisional,
            },
        )
        .collect())
}

/// Records `key` as another name of archive `id`'s print.
pub async fn alias(tx: &mut Tx<'_>, id: i64, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO archive.print_aliases (print_key, archive_id) VALUES ($1, $2) \
         ON CONFLICT (print_key) DO NOTHING",
    )
    .bind(key)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What a new archive of a print is made from.
pub struct NewPrint<'a> {
    pub key: Option<&'a str>,
    pub data: &'a PrintData,
    pub printer_id: i64,
    pub site: &'a str,
    pub at: DateTime<Utc>,
    /// Whether `at` is its start (else only when it was first heard of).
    pub started: bool,
    /// Found running: its start was not seen.
    pub unseen_start: bool,
}

/// Archives a print; returns its id and whether it is new (an archive of the key may exist:
/// then it is that one).
pub async fn create(tx: &mut Tx<'_>, print: &NewPrint<'_>) -> Result<(i64, bool), sqlx::Error> {
    let data = print.data;
    sqlx::query_as(
        "INSERT INTO archive.archives \
           (print_key, name, filename, printer_id, printer_name, status, created_at, started_at, \
            queue_job_id, job_name, site, end_reason, task_id, ams_mapping) \
         VALUES ($1, $2, $3, $4, $5, 'printing', $6, CASE WHEN $7 THEN $6 END, $8, $9, $10, \
           CASE WHEN $11 THEN 'it started while no gateway watched the printer; the start is \
             when it was seen' END, $12, $13) \
         ON CONFLICT (print_key) DO UPDATE SET print_key = EXCLUDED.print_key \
         RETURNING id, (xmax = 0)",
    )
    .bind(print.key)
    .bind(job_name(data))
    .bind(job_filename(data))
    .bind(print.printer_id)
    .bind(&data.printer_name)
    .bind(print.at)
    .bind(print.started)
    .bind(data.queue_job())
    .bind(&data.job_name)
    .bind(print.site)
    .bind(print.unseen_start)
    .bind(&data.task_id)
    .bind(data.ams_mapping.clone().map(sqlx::types::Json))
    .fetch_one(&mut **tx)
    .await
}

/// The start's fields onto an archive an earlier-handled event of the print made.
pub async fn fill_start(
    tx: &mut Tx<'_>,
    id: i64,
    data: &PrintData,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE archive.archives SET \
           started_at = coalesce(started_at, $2), created_at = least(created_at, $2), \
           printer_name = coalesce(printer_name, $3), queue_job_id = coalesce(queue_job_id, $4), \
           job_name = coalesce(job_name, $5), task_id = coalesce(task_id, $6), \
           ams_mapping = coalesce(ams_mapping, $7) \
         WHERE id = $1",
    )
    .bind(id)
    .bind(at)
    .bind(&data.printer_name)
    .bind(data.queue_job())
    .bind(&data.job_name)
    .bind(&data.task_id)
    .bind(data.ams_mapping.clone().map(sqlx::types::Json))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The columns an end sets, from the binds `$2` status, `$3` time, `$4` progress (0 to 1), `$6`
/// witness and `$7` print error (`$5` is the reason, which each caller sets in its own way).
fn end_columns() -> String {
    format!(
        "status = $2, completed_at = $3, progress = round($4 * 100)::int, \
         duration = CASE WHEN started_at IS NULL THEN NULL \
                         ELSE greatest(0, extract(epoch FROM ($3 - started_at)))::bigint END, \
         filament_used = CASE WHEN $2 = 'unknown' THEN NULL ELSE weight * coalesce($4, 0) END, \
         filament_type = {FILAMENT_TYPE_SQL}, end_witness = $6, print_error = $7"
    )
}

/// An end's statement with its binds `$1` to `$7` (see [`end_columns`]).
fn end_query(
    sql: String,
    id: i64,
    end: &Ending,
) -> sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(end.status.as_str())
        .bind(end.at)
        .bind(end.fraction)
        .bind(end.reason.clone())
        .bind(end.witness.as_str())
        .bind(end.print_error.clone())
}

/// Ends archive `id` if it is still `printing` (the trigger `archives_print_end` then records
/// the end for the relay to announce). A print that ends without its 3MF says why, unless a
/// capture still arrives (it fills the file and clears the reason).
pub async fn close(tx: &mut Tx<'_>, id: i64, end: &Ending) -> Result<(), sqlx::Error> {
    let failed_note = end
        .print_error
        .as_ref()
        .filter(|_| end.status == printyard_contracts::archive::ArchiveStatus::Failed)
        .map(|e| format!("print error {e}"));
    let sql = format!(
        "UPDATE archive.archives SET {}, notes = coalesce(notes, $8), \
           end_reason = coalesce($5, end_reason), \
           file_error = CASE WHEN file_key IS NULL THEN coalesce(file_error, \
               'no 3MF was captured: the gateway holding the printer stopped or handed it over \
                before it could fetch the file') ELSE file_error END \
         WHERE id = $1 AND status = 'printing'",
        end_columns()
    );
    end_query(sql, id, end)
        .bind(failed_note)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Replaces archive `id`'s inferred end (not announced yet) with the end its gateway saw, and
/// what its announcement will say.
pub async fn correct(tx: &mut Tx<'_>, id: i64, end: &Ending) -> Result<(), sqlx::Error> {
    // Locked first: the relay, publishing it now, holds it (then it is gone once we get it),
    // or skips it while we hold it.
    let pending: Option<i64> = sqlx::query_scalar(
        "SELECT archive_id FROM archive.print_ends WHERE archive_id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    if pending.is_none() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE archive.archives SET {}, end_reason = $5 \
         WHERE id = $1 AND end_witness IN ('next_print', 'printer_seen_again')",
        end_columns()
    );
    let corrected = end_query(sql, id, end)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if corrected == 1 {
        sqlx::query(
            "UPDATE archive.print_ends SET publish_after = now(), \
               closed = (SELECT to_jsonb(a) - 'search' FROM archive.archives a WHERE a.id = $1) \
             WHERE archive_id = $1",
        )
        .bind(id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Gives archive `id` the event's file: the stored capture, the library file a queued job was
/// sent from, or the reason there is none.
pub async fn attach_file(
    tx: &mut Tx<'_>,
    plans: &Plans,
    id: i64,
    data: &PrintData,
    file: Option<&Result<Stored, IntakeError>>,
) -> Result<(), sqlx::Error> {
    match file {
        Some(Ok(stored)) => {
            db::lock_object(tx, &stored.file_key).await?;
            db::set_file(tx, id, stored).await?;
            let name = stored
                .meta
                .title
                .clone()
                .unwrap_or_else(|| file_stem(&job_filename(data)));
            sqlx::query(
                "UPDATE archive.archives SET name = $2, filename = $3, \
                   filament_used = CASE status WHEN 'printing' THEN NULL \
                       WHEN 'success' THEN weight \
                       WHEN 'unknown' THEN NULL \
                       ELSE weight * coalesce(progress, 0) / 100.0 END \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(name)
            .bind(job_filename(data))
            .execute(&mut **tx)
            .await?;
        }
        Some(Err(err)) => set_file_error(tx, id, &err.to_string()).await?,
        None => match data.source_archive {
            Some(source) => {
                if let Err(reason) = plans.reuse_library_file(tx, id, source, data.plate).await? {
                    set_file_error(tx, id, &reason).await?;
                }
            }
            None => {
                let reason = data
                    .error
                    .clone()
                    .unwrap_or_else(|| "the gateway sent no file".to_owned());
                set_file_error(tx, id, &reason).await?;
                if let Some(plate) = data.plate {
                    // The printer said which plate it printed, even without the file.
                    sqlx::query(
                        "UPDATE archive.archives SET plate = coalesce(plate, $2) WHERE id = $1",
                    )
                    .bind(id)
                    .bind(plate as i32)
                    .execute(&mut **tx)
                    .await?;
                }
            }
        },
    }
    Ok(())
}

async fn set_file_error(tx: &mut Tx<'_>, id: i64, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE archive.archives SET file_error = $2 WHERE id = $1 AND file_key IS NULL")
        .bind(id)
        .bind(reason)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
