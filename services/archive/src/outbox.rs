//! The relay of the archive's changes: a trigger records every insert, update and delete of an
//! archive in `archive.outbox`, in the transaction that makes it; this task publishes them as
//! `archive_updated` (the archive's facts after the change) and `archive_deleted` on
//! `FARM_EVENTS`, then clears them. Replicas share the work (`FOR UPDATE SKIP LOCKED`); a failed
//! publish leaves the change recorded and it is published again. Readers apply a revision only
//! if it is newer than theirs, so a repeat or a reordering changes nothing.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream;
use chrono::Utc;
use printyard_contracts::archive::ArchiveGone;
use printyard_contracts::farm::{EventKind, FarmEvent, Site, event_id};
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
        match drain(&pool, &jetstream).await {
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

fn site_of(site: Option<&str>) -> Site {
    site.and_then(|s| Site::parse(s).ok()).unwrap_or_default()
}
