//! What is loaded where, from the printers' live status (the `printer_status` bucket): a Bambu
//! spool is registered the first time an AMS reports its tag and followed by it from tray to
//! tray and printer to printer; a spool without a tag stays in the tray it was assigned to
//! (through the API) until the tray shows another material or nothing.
//!
//! The spool in each tray is published in the `tray_spools` bucket for the scheduler.
//!
//! Status changes arrive far more often than trays change: the follower keeps each printer's
//! latest filaments and marks it dirty; one worker handles dirty printers with the newest
//! state only, so nothing queues up behind a slow database and the last state always wins.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use printyard_contracts::farm::{PrinterRecord, Site, StatusRecord, printer_of_key};
use printyard_contracts::filament::{TraySpool, parse_tray_key, tray_key};
use printyard_contracts::printer::LoadedFilament;
use printyard_service::backoff::Backoff;
use printyard_service::kv_watch::follow;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::FilamentConfig;
use crate::db::{self, SPOOL_COLUMNS, SpoolRow, Tx};

/// The printers' latest filaments, and which of them still need handling.
#[derive(Default)]
struct Pending {
    /// Each printer's filaments, and when its status was last heard.
    latest: HashMap<i64, Observed>,
    dirty: HashSet<i64>,
    /// Printers deleted from the registry: their spools are unloaded.
    removed: HashSet<i64>,
}

/// What a printer's status showed loaded, and when the printer last reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub filaments: Vec<LoadedFilament>,
    pub seen: Option<DateTime<Utc>>,
}

/// The trays of the farm, as the inventory follows them.
#[derive(Clone)]
pub struct Trays {
    pool: PgPool,
    config: Arc<FilamentConfig>,
    pending: Arc<Mutex<Pending>>,
    wake: Arc<Notify>,
    board: Board,
    sites: Arc<RwLock<HashMap<i64, Site>>>,
}

impl Trays {
    pub fn new(pool: PgPool, config: Arc<FilamentConfig>, bucket: kv::Store) -> Self {
        Self {
            pool,
            config,
            pending: Arc::default(),
            wake: Arc::default(),
            board: Board {
                bucket,
                published: Arc::default(),
            },
            sites: Arc::default(),
        }
    }

    /// Follows the printers' statuses until `stop`.
    pub async fn follow_status(self, bucket: kv::Store, stop: CancellationToken) {
        follow(bucket, stop, move |entry| {
            if entry.operation != Operation::Put {
                return;
            }
            let Ok(record) = serde_json::from_slice::<StatusRecord>(&entry.value) else {
                return;
            };
            // A printer that is not connected shows nothing new about its trays.
            let Some(status) = record.status.filter(|_| record.connected) else {
                return;
            };
            self.observed(
                record.printer_id,
                Observed {
                    filaments: status.filaments,
                    seen: record.last_seen,
                },
            );
        })
        .await
    }

    /// The site of a printer of the registry; `None` for a printer that does not exist.
    pub fn site_of(&self, printer_id: i64) -> Option<Site> {
        self.sites.read().ok()?.get(&printer_id).cloned()
    }

    /// Follows the registry until `stop`: a deleted printer's spools are unloaded.
    pub async fn follow_registry(self, bucket: kv::Store, stop: CancellationToken) {
        follow(bucket, stop, move |entry| {
            let Some(id) = printer_of_key(&entry.key) else {
                return;
            };
            let record = (entry.operation == Operation::Put)
                .then(|| serde_json::from_slice::<PrinterRecord>(&entry.value).ok())
                .flatten();
            if let Ok(mut sites) = self.sites.write() {
                match &record {
                    Some(record) => sites.insert(id, record.site.clone()),
                    None => sites.remove(&id),
                };
            }
            if record.is_none() {
                if let Ok(mut pending) = self.pending.lock() {
                    pending.latest.remove(&id);
                    pending.removed.insert(id);
                    pending.dirty.insert(id);
                }
                self.wake.notify_one();
            }
        })
        .await
    }

    fn observed(&self, printer_id: i64, observed: Observed) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if pending.latest.get(&printer_id).map(|o| &o.filaments) == Some(&observed.filaments) {
            return;
        }
        pending.removed.remove(&printer_id);
        pending.latest.insert(printer_id, observed);
        pending.dirty.insert(printer_id);
        drop(pending);
        self.wake.notify_one();
    }

    /// Handles dirty printers until `stop`; a printer whose handling failed is tried again
    /// with backoff, with its newest state.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut resync = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = resync.tick() => {
                    if let Err(err) = self.board.resync(&self.pool).await {
                        tracing::warn!(error = %err, "tray bucket not resynchronised");
                    }
                }
            }
            let batch: Vec<(i64, Option<Observed>)> = {
                let Ok(mut pending) = self.pending.lock() else {
                    return;
                };
                let dirty: Vec<i64> = pending.dirty.drain().collect();
                dirty
                    .into_iter()
                    .map(|id| {
                        let loaded = (!pending.removed.contains(&id))
                            .then(|| pending.latest.get(&id).cloned())
                            .flatten();
                        (id, loaded)
                    })
                    .collect()
            };
            let mut failed = false;
            for (printer_id, observed) in batch {
                let result = match &observed {
                    Some(observed) => self.handle(printer_id, observed).await,
                    None => self.unload_printer(printer_id).await,
                };
                if let Err(err) = result {
                    tracing::warn!(printer = printer_id, error = %err, "trays not recorded; retrying");
                    if let Ok(mut pending) = self.pending.lock() {
                        pending.dirty.insert(printer_id);
                    }
                    failed = true;
                }
            }
            if failed {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
                self.wake.notify_one();
            } else {
                backoff.reset();
            }
        }
    }

    /// Records what `printer_id` shows loaded, then publishes its trays. A spool put in a tray
    /// through the API after the status was reported stays (the status does not know of it).
    pub async fn handle(&self, printer_id: i64, observed: &Observed) -> Result<(), sqlx::Error> {
        let filaments = &observed.filaments;
        let mut tx = self.pool.begin().await?;
        db::lock_printer(&mut tx, printer_id).await?;
        let loaded = db::on_printer(&mut tx, printer_id).await?;
        for filament in filaments {
            let tray = i32::from(filament.tray);
            let current = loaded.iter().find(|s| s.tray == Some(tray));
            match &filament.tag {
                Some(tag) => {
                    self.tagged(&mut tx, printer_id, filament, tag, current)
                        .await?
                }
                None => {
                    let same = current.is_some_and(|s| {
                        s.tag.is_none() && s.material.eq_ignore_ascii_case(&filament.kind)
                    });
                    let newer = current.is_some_and(|s| s.placed_after(observed.seen));
                    if current.is_some() && !same && !newer {
                        // Another filament is in the tray: that spool was taken out.
                        db::empty_tray(&mut tx, printer_id, tray).await?;
                    }
                }
            }
        }
        for spool in &loaded {
            let still = filaments
                .iter()
                .any(|f| Some(i32::from(f.tray)) == spool.tray);
            if let (false, false, Some(tray)) =
                (still, spool.placed_after(observed.seen), spool.tray)
            {
                db::empty_tray(&mut tx, printer_id, tray).await?;
            }
        }
        tx.commit().await?;
        self.board.refresh(&self.pool, printer_id).await
    }

    /// A tagged (Bambu) spool in a tray: the spool of that tag, registered the first time, moved
    /// here if it was elsewhere, its weight from the printer's measure when it gives one.
    async fn tagged(
        &self,
        tx: &mut Tx<'_>,
        printer_id: i64,
        filament: &LoadedFilament,
        tag: &str,
        current: Option<&SpoolRow>,
    ) -> Result<(), sqlx::Error> {
        let tray = i32::from(filament.tray);
        let measured = filament.measured_g();
        let id = match current.filter(|s| s.tag.as_deref() == Some(tag)) {
            Some(spool) => spool.id,
            None => {
                db::empty_tray(tx, printer_id, tray).await?;
                register(tx, &self.config, printer_id, filament, tag).await?
            }
        };
        sqlx::query("UPDATE filament.spools SET measured = $2, archived = false WHERE id = $1")
            .bind(id)
            .bind(measured.is_some())
            .execute(&mut **tx)
            .await?;
        if let Some(grams) = measured {
            db::set_remaining(tx, &self.config, id, grams).await?;
        }
        Ok(())
    }

    /// Unloads every spool of a deleted printer.
    async fn unload_printer(&self, printer_id: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE filament.spools SET printer_id = NULL, tray = NULL, measured = false \
             WHERE printer_id = $1",
        )
        .bind(printer_id)
        .execute(&self.pool)
        .await?;
        self.board.refresh(&self.pool, printer_id).await
    }

    /// Publishes a printer's trays after a change made elsewhere (API, usage).
    pub async fn refresh(&self, printer_id: i64) -> Result<(), sqlx::Error> {
        self.board.refresh(&self.pool, printer_id).await
    }
}

/// The spool of `tag`, moved into the printer's tray; registered from what the tag says the
/// first time it is seen.
async fn register(
    tx: &mut Tx<'_>,
    config: &FilamentConfig,
    printer_id: i64,
    filament: &LoadedFilament,
    tag: &str,
) -> Result<i64, sqlx::Error> {
    let nominal = f64::from(filament.weight_g.unwrap_or(1000));
    let remaining = filament.measured_g().unwrap_or(nominal);
    let low_falls = i64::from(remaining < config.threshold(&filament.kind));
    sqlx::query_scalar(
        "INSERT INTO filament.spools (material, color, brand, sub_brand, diameter, nominal_g, \
           remaining_g, tag, printer_id, tray, low_falls) \
         VALUES (upper($1), $2, 'Bambu Lab', $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (tag) DO UPDATE SET printer_id = EXCLUDED.printer_id, tray = EXCLUDED.tray \
         RETURNING id",
    )
    .bind(&filament.kind)
    .bind(filament.color.as_deref().and_then(db::normalize_color))
    .bind(&filament.sub_brand)
    .bind(filament.diameter.unwrap_or(1.75))
    .bind(nominal)
    .bind(remaining)
    .bind(tag)
    .bind(printer_id)
    .bind(i32::from(filament.tray))
    .bind(low_falls)
    .fetch_one(&mut **tx)
    .await
}

/// The `tray_spools` bucket as this replica last wrote it.
#[derive(Clone)]
struct Board {
    bucket: kv::Store,
    published: Arc<tokio::sync::Mutex<HashMap<i64, BTreeMap<i32, TraySpool>>>>,
}

impl Board {
    async fn loaded(
        pool: &PgPool,
        printer_id: Option<i64>,
    ) -> Result<HashMap<i64, BTreeMap<i32, TraySpool>>, sqlx::Error> {
        let sql = format!(
            "SELECT {SPOOL_COLUMNS} FROM filament.spools \
             WHERE printer_id IS NOT NULL AND ($1::bigint IS NULL OR printer_id = $1)"
        );
        let rows: Vec<SpoolRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(printer_id)
            .fetch_all(pool)
            .await?;
        let mut trays: HashMap<i64, BTreeMap<i32, TraySpool>> = HashMap::new();
        for row in rows {
            let (Some(printer), Some(tray)) = (row.printer_id, row.tray) else {
                continue;
            };
            trays.entry(printer).or_default().insert(
                tray,
                TraySpool {
                    spool_id: row.id,
                    material: row.material,
                    remaining_g: db::round(row.remaining_g, 2),
                },
            );
        }
        Ok(trays)
    }

    /// Writes what changed in one printer's trays.
    async fn refresh(&self, pool: &PgPool, printer_id: i64) -> Result<(), sqlx::Error> {
        let mut now = Self::loaded(pool, Some(printer_id)).await?;
        let trays = now.remove(&printer_id).unwrap_or_default();
        let mut published = self.published.lock().await;
        let before = published.remove(&printer_id).unwrap_or_default();
        self.write(printer_id, &before, &trays).await;
        if !trays.is_empty() {
            published.insert(printer_id, trays);
        }
        Ok(())
    }

    /// Rewrites the bucket from the database: what another replica wrote, a write that failed
    /// or keys a stopped replica left are set right.
    async fn resync(&self, pool: &PgPool) -> Result<(), anyhow::Error> {
        let now = Self::loaded(pool, None).await?;
        let mut stored: HashMap<i64, BTreeMap<i32, TraySpool>> = HashMap::new();
        let mut keys = self.bucket.keys().await?;
        while let Some(key) = keys.next().await {
            let Some((printer, tray)) = key.ok().as_deref().and_then(parse_tray_key) else {
                continue;
            };
            if let Ok(Some(value)) = self.bucket.get(tray_key(printer, tray)).await
                && let Ok(spool) = serde_json::from_slice(&value)
            {
                stored.entry(printer).or_default().insert(tray, spool);
            }
        }
        let mut published = self.published.lock().await;
        let printers: HashSet<i64> = now.keys().chain(stored.keys()).copied().collect();
        for printer in printers {
            let empty = BTreeMap::new();
            let before = stored.get(&printer).unwrap_or(&empty);
            let trays = now.get(&printer).unwrap_or(&empty);
            self.write(printer, before, trays).await;
        }
        *published = now;
        Ok(())
    }

    async fn write(
        &self,
        printer_id: i64,
        before: &BTreeMap<i32, TraySpool>,
        now: &BTreeMap<i32, TraySpool>,
    ) {
        for (tray, spool) in now {
            if before.get(tray) == Some(spool) {
                continue;
            }
            let Ok(value) = serde_json::to_vec(spool) else {
                continue;
            };
            if let Err(err) = self
                .bucket
                .put(tray_key(printer_id, *tray), value.into())
                .await
            {
                tracing::warn!(printer = printer_id, tray, error = %err, "tray spool not published");
            }
        }
        for tray in before.keys().filter(|t| !now.contains_key(t)) {
            if let Err(err) = self.bucket.delete(tray_key(printer_id, *tray)).await {
                tracing::warn!(printer = printer_id, tray, error = %err, "tray spool not cleared");
            }
        }
    }
}
