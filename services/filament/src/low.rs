//! What the inventory announces on `FARM_EVENTS`, each recorded in the transaction of the change
//! that makes it and published afterwards under an id of its own (so a publish repeated after a
//! crash is stored once), then marked announced. The announcer runs when woken by a change and
//! every few seconds, so nothing is lost when the replica that recorded it died before publishing.
//!
//! - `spool_low`: a spool's fall under its material's threshold (`low_falls`, counted in
//!   [`crate::db`]).
//! - `filament_used`: the spool-priced part of a print's filament, after each revision of the
//!   archive that changed its usage (`filament.archives_applied.announced`), for statistics.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use printyard_contracts::farm::Site;
use printyard_contracts::farm::{EventKind, FarmEvent};
use printyard_contracts::filament::{FilamentUsed, SpoolLow, filament_used_id, spool_low_id};
use printyard_service::backoff::Backoff;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::FilamentConfig;
use crate::trays::Trays;

/// How often unannounced falls are looked for without a wake.
const SWEEP: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Announcer {
    pub pool: PgPool,
    pub jetstream: async_nats::jetstream::Context,
    pub config: Arc<FilamentConfig>,
    pub trays: Trays,
    pub wake: Arc<Notify>,
}

#[derive(sqlx::FromRow)]
struct Fall {
    id: i64,
    material: String,
    color: Option<String>,
    brand: Option<String>,
    remaining_g: f64,
    printer_id: Option<i64>,
    tray: Option<i32>,
    low_falls: i64,
}

impl Announcer {
    /// Asks for a look at once.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(SWEEP) => {}
            }
            let announced = match self.announce().await {
                Ok(()) => self.announce_usage().await,
                Err(err) => Err(err),
            };
            match announced {
                Ok(()) => backoff.reset(),
                Err(err) => {
                    tracing::warn!(error = %err, "low spools not announced; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }

    /// Publishes every fall not yet announced.
    pub async fn announce(&self) -> Result<(), String> {
        let falls: Vec<Fall> = sqlx::query_as(
            "SELECT id, material, color, brand, remaining_g, printer_id, tray, low_falls \
             FROM filament.spools WHERE low_falls > announced_falls ORDER BY id LIMIT 500",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        for fall in falls {
            let event = self.event(&fall, Utc::now());
            printyard_service::farm_events::publish(&self.jetstream, &event).await?;
            sqlx::query(
                "UPDATE filament.spools SET announced_falls = greatest(announced_falls, $2) \
                 WHERE id = $1",
            )
            .bind(fall.id)
            .bind(fall.low_falls)
            .execute(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Publishes the spool-priced cost of every print whose usage changed and was not announced.
    pub async fn announce_usage(&self) -> Result<(), String> {
        let changed: Vec<(i64, i64, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT archive_id, revision, printer_id, site FROM filament.archives_applied \
             WHERE announced < revision ORDER BY archive_id LIMIT 500",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        for (archive_id, revision, printer_id, site) in changed {
            let (priced_g, cost): (f64, f64) = sqlx::query_as(
                "SELECT coalesce(sum(u.grams), 0)::float8, \
                   coalesce(sum(u.grams * s.price / s.nominal_g), 0)::float8 \
                 FROM filament.usage u JOIN filament.spools s ON s.id = u.spool_id \
                 WHERE u.archive_id = $1 AND s.price IS NOT NULL AND s.nominal_g > 0",
            )
            .bind(archive_id)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
            let used = FilamentUsed {
                archive_id,
                revision,
                priced_g: crate::db::round(priced_g, 3),
                cost: crate::db::round(cost, 6),
            };
            let event = FarmEvent {
                id: filament_used_id(archive_id, revision),
                kind: EventKind::FilamentUsed,
                site: site
                    .as_deref()
                    .and_then(|s| Site::parse(s).ok())
                    .unwrap_or_default(),
                printer_id: printer_id.unwrap_or(0),
                serial: String::new(),
                at: Utc::now(),
                data: serde_json::to_value(used).unwrap_or_default(),
            };
            printyard_service::farm_events::publish(&self.jetstream, &event).await?;
            sqlx::query(
                "UPDATE filament.archives_applied SET announced = greatest(announced, $2) \
                 WHERE archive_id = $1",
            )
            .bind(archive_id)
            .bind(revision)
            .execute(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn event(&self, fall: &Fall, at: DateTime<Utc>) -> FarmEvent {
        let site = fall
            .printer_id
            .and_then(|p| self.trays.site_of(p))
            .unwrap_or_default();
        let low = SpoolLow {
            spool_id: fall.id,
            material: fall.material.clone(),
            color: fall.color.clone(),
            brand: fall.brand.clone(),
            remaining_g: crate::db::round(fall.remaining_g, 2),
            threshold_g: self.config.threshold(&fall.material),
            printer_id: fall.printer_id,
            tray: fall.tray,
        };
        FarmEvent {
            id: spool_low_id(fall.id, fall.low_falls),
            kind: EventKind::SpoolLow,
            site,
            printer_id: fall.printer_id.unwrap_or(0),
            serial: String::new(),
            at,
            data: serde_json::to_value(low).unwrap_or_default(),
        }
    }
}
