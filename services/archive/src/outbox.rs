//! The relay of the archive's changes: triggers record, in the transaction that makes them,
//! every insert, update and delete of an archive (`archive.outbox`) and every print's end
//! (`archive.print_ends`); this task publishes them on `FARM_EVENTS`, as `archive_updated` (the
//! archive's facts after the change) and `archive_deleted`, and as the print's end
//! (`print_complete`, `print_failed`, `print_stopped`, `print_unknown`, with an id per
//! archive), then clears them. Replicas share the work (`FOR UPDATE SKIP LOCKED`); a failed
//! publish leaves the record and it is published again. Readers apply a revision only if it is
//! newer than theirs, and an end's id only once, so a repeat or a reordering changes nothing.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream;
use chrono::DateTime;
use chrono::Utc;
use printyard_contracts::archive::{ArchiveGone, ArchiveStatus};
use printyard_contracts::farm::{EventKind, FarmEvent, Site, event_id};
use printyard_contracts::prints::{EndWitness, PrintEnd, end_kind, print_end_id};
use printyard_service::backoff::Backoff;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

/// Changes published per transaction.
const BATCH: i64 = 500;
/// Publishes awaiting the stream's acknowledgement at once.
const IN_FLIGHT: usize = 32;

pub async fn run(pool: PgPool, jetstream: jetstream::Context, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut listener: Option<PgListener> = None;
    while !shutdown.is_cancelled() {
        if listener.is_none() {
            listener = match PgListener::connect_with(&pool).await {
                Ok(mut l) => l.listen("archive_outbox").await.ok().map(|()| l),
                Err(err) => {
                    tracing::debug!(error = %err, "outbox listener not connected; polling");
                    None
                }
            };
        }
        let drained = match drain(&pool, &jetstream).await {
            Ok(changes) => drain_ends(&pool, &jetstream)
                .await
                .map(|ends| changes + ends),
            Err(err) => Err(err),
        };
        match drained {
            Ok(_) => backoff.reset(),
            Err(err) => {
                tracing::warn!(error = %err, "archive changes not published yet; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
                continue;
            }
        }
        // A notification, or a look every second in case one was missed.
        let notified = async {
            match listener.as_mut() {
                Some(l) => l.recv().await.map(|_| ()).map_err(|e| e.to_string()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            result = notified => {
                if result.is_err() {
                    listener = None;
                }
            }
        }
    }
}

/// One recorded change.
#[derive(sqlx::FromRow)]
struct Entry {
    id: i64,
    archive_id: i64,
    deleted: bool,
    revision: i64,
    site: Option<String>,
    printer_id: Option<i64>,
}

/// Publishes every recorded change; returns how many.
pub async fn drain(pool: &PgPool, jetstream: &jetstream::Context) -> anyhow::Result<usize> {
    let mut published = 0;
    loop {
        let mut tx = pool.begin().await?;
        let entries: Vec<Entry> = sqlx::query_as(
            "SELECT id, archive_id, deleted, revision, site, printer_id FROM archive.outbox \
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if entries.is_empty() {
            tx.commit().await?;
            return Ok(published);
        }
        // The latest entry of each archive: the others are older states of it.
        let mut latest: HashMap<i64, &Entry> = HashMap::new();
        for entry in &entries {
            latest.insert(entry.archive_id, entry);
        }
        let live: Vec<i64> = latest
            .values()
            .filter(|e| !e.deleted)
            .map(|e| e.archive_id)
            .collect();
        let rows = crate::db::rows(&mut tx, &live).await?;
        let now = Utc::now();
        let mut events: Vec<FarmEvent> = rows
            .iter()
            .map(|row| {
                let facts = row.facts();
                FarmEvent {
                    id: event_id(
                        "archive",
                        EventKind::ArchiveUpdated,
                        &format!("{}.r{}", row.id, row.revision),
                    ),
                    kind: EventKind::ArchiveUpdated,
                    site: site_of(row.site.as_deref()),
                    printer_id: row.printer_id.unwrap_or(0),
                    serial: String::new(),
                    at: now,
                    data: serde_json::to_value(facts).unwrap_or_default(),
                }
            })
            .collect();
        events.extend(latest.values().filter(|e| e.deleted).map(|e| {
            let gone = ArchiveGone {
                archive_id: e.archive_id,
                revision: e.revision,
            };
            FarmEvent {
                id: event_id(
                    "archive",
                    EventKind::ArchiveDeleted,
                    &format!("{}.r{}", e.archive_id, e.revision),
                ),
                kind: EventKind::ArchiveDeleted,
                site: site_of(e.site.as_deref()),
                printer_id: e.printer_id.unwrap_or(0),
                serial: String::new(),
                at: now,
                data: serde_json::to_value(gone).unwrap_or_default(),
            }
        }));
        let mut failures = 0;
        for chunk in events.chunks(IN_FLIGHT) {
            let results = futures::future::join_all(
                chunk
                    .iter()
                    .map(|event| printyard_service::farm_events::publish(jetstream, event)),
            )
            .await;
            failures += results.iter().filter(|r| r.is_err()).count();
        }
        if failures > 0 {
            // Rolled back: the changes stay recorded and are published again.
            anyhow::bail!("{failures} archive events not published");
        }
        let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
        sqlx::query("DELETE FROM archive.outbox WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        published += events.len();
        metrics::counter!("printyard_archive_changes_published_total")
            .increment(events.len() as u64);
    }
}

/// An archive as it was when its print ended (the trigger's copy of the row).
#[derive(Debug, serde::Deserialize)]
struct Closed {
    id: i64,
    print_key: Option<String>,
    printer_id: Option<i64>,
    printer_name: Option<String>,
    name: String,
    filename: String,
    job_name: Option<String>,
    queue_job_id: Option<i64>,
    status: String,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    duration: Option<i64>,
    progress: Option<i32>,
    print_error: Option<String>,
    end_witness: Option<String>,
    end_reason: Option<String>,
    site: Option<String>,
}

impl Closed {
    fn announcement(self) -> FarmEvent {
        let status = ArchiveStatus::parse(&self.status).unwrap_or(ArchiveStatus::Unknown);
        let observed = self
            .end_witness
            .as_deref()
            .and_then(EndWitness::parse)
            .unwrap_or(EndWitness::Gateway);
        let ended_at = self.completed_at.unwrap_or_else(Utc::now);
        let printer_id = self.printer_id.unwrap_or(0);
        let end = PrintEnd {
            archive_id: self.id,
            print: self.print_key.as_deref().map(|key| {
                key.strip_prefix(&format!("{printer_id}/"))
                    .unwrap_or(key)
                    .to_owned()
            }),
            printer_name: self.printer_name,
            name: self.name,
            filename: self.filename,
            job_name: self.job_name,
            queue_job: self.queue_job_id,
            status,
            started_at: self.started_at,
            ended_at,
            end_time_known: observed == EndWitness::Gateway,
            duration: self.duration,
            progress: self.progress,
            print_error: self.print_error,
            observed,
            end_reason: self.end_reason,
        };
        FarmEvent {
            id: print_end_id(self.id),
            kind: end_kind(status),
            site: site_of(self.site.as_deref()),
            printer_id,
            serial: String::new(),
            at: ended_at,
            data: serde_json::to_value(end).unwrap_or_default(),
        }
    }
}

/// Publishes every recorded print end; returns how many.
pub async fn drain_ends(pool: &PgPool, jetstream: &jetstream::Context) -> anyhow::Result<usize> {
    let mut published = 0;
    loop {
        let mut tx = pool.begin().await?;
        let entries: Vec<(i64, sqlx::types::Json<serde_json::Value>)> = sqlx::query_as(
            "SELECT archive_id, closed FROM archive.print_ends WHERE publish_after <= now() \
             ORDER BY recorded, archive_id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if entries.is_empty() {
            tx.commit().await?;
            return Ok(published);
        }
        let events: Vec<FarmEvent> = entries
            .iter()
            .filter_map(|(id, closed)| {
                match serde_json::from_value::<Closed>(closed.0.clone()) {
                    Ok(closed) => Some(closed.announcement()),
                    Err(err) => {
                        // Not expected (the trigger copies the row): said, and not retried.
                        tracing::error!(archive = id, error = %err, "print end unreadable");
                        None
                    }
                }
            })
            .collect();
        // One at a time, in the order they were recorded: the ends of one printer in order.
        for event in &events {
            if printyard_service::farm_events::publish(jetstream, event)
                .await
                .is_err()
            {
                anyhow::bail!(
                    "the end of archive {} not published",
                    event.data["archive_id"]
                );
            }
        }
        let ids: Vec<i64> = entries.iter().map(|(id, _)| *id).collect();
        sqlx::query("DELETE FROM archive.print_ends WHERE archive_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        published += events.len();
        metrics::counter!("printyard_archive_print_ends_published_total")
            .increment(events.len() as u64);
    }
}

fn site_of(site: Option<&str>) -> Site {
    site.and_then(|s| Site::parse(s).ok()).unwrap_or_default()
}
