//! `spool_low`: a spool's fall under its material's threshold is counted with the change that
//! makes it (`low_falls`, in [`crate::db`]); this announcer publishes the falls not yet
//! announced, each under its own event id (so a publish repeated after a crash is stored once),
//! and then marks them announced. It runs when woken by a change and every few seconds, so a
//! fall is announced even when the replica that recorded it died before publishing.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use printyard_contracts::farm::{EventKind, FarmEvent};
use printyard_contracts::filament::{SpoolLow, spool_low_id};
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
            match self.announce().await {
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
