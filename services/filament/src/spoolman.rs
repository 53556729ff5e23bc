//! Spoolman as the one inventory (optional, `filament.spoolman.url`): a farm that keeps its
//! spools in Spoolman keeps doing so. Every `poll_secs` the sync
//!
//! 1. writes back what prints took from Spoolman's spools (`PUT /api/v1/spool/{id}/use` with
//!    `use_weight`, the grams not yet reported; a revision that lowered a print's grams reports
//!    the difference, negative), one usage row at a time, each marked reported in the
//!    transaction that holds it, so replicas never report the same row at once;
//! 2. reads Spoolman's spools (`GET /api/v1/spool`) and makes each one a spool here (by
//!    `spoolman_id`): material, colour, vendor, filament name, diameter, weights, price,
//!    location, comment and archived as Spoolman has them; its remaining weight wins.
//!
//! A report sent whose mark was lost (the replica died between Spoolman's answer and the
//! commit) is sent again: at least once. Every call has a deadline; a failed round is retried
//! at the next poll, after a backoff.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::{FilamentConfig, SpoolmanConfig};
use crate::db;
use crate::trays::Trays;

/// A spool as Spoolman's API gives it (the fields used here).
#[derive(Debug, Clone, Deserialize)]
pub struct SpoolmanSpool {
    pub id: i64,
    pub filament: SpoolmanFilament,
    pub price: Option<f64>,
    pub remaining_weight: Option<f64>,
    pub initial_weight: Option<f64>,
    pub location: Option<String>,
    pub comment: Option<String>,
    #[serde(default)]
    pub archived: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SpoolmanFilament {
    pub name: Option<String>,
    pub vendor: Option<SpoolmanVendor>,
    pub material: Option<String>,
    pub price: Option<f64>,
    pub diameter: Option<f64>,
    pub weight: Option<f64>,
    pub color_hex: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SpoolmanVendor {
    pub name: Option<String>,
}

/// The sync with one Spoolman server.
#[derive(Clone)]
pub struct Sync {
    pool: PgPool,
    config: Arc<FilamentConfig>,
    spoolman: SpoolmanConfig,
    /// Spoolman's address, without a trailing `/`.
    base: String,
    client: reqwest::Client,
    trays: Trays,
}

impl Sync {
    pub fn new(
        pool: PgPool,
        config: Arc<FilamentConfig>,
        spoolman: SpoolmanConfig,
        trays: Trays,
    ) -> anyhow::Result<Self> {
        let base = spoolman
            .url
            .as_deref()
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .ok_or_else(|| anyhow::anyhow!("filament.spoolman.url must be an http(s) address"))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(spoolman.timeout_ms))
            .connect_timeout(Duration::from_millis(spoolman.timeout_ms))
            .user_agent(concat!("Printyard/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            pool,
            config,
            spoolman,
            base,
            client,
            trays,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Syncs every `poll_secs` until `stop`; a failed round waits longer before the next.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = printyard_service::backoff::Backoff::new(
            Duration::from_secs(self.spoolman.poll_secs.max(1)),
            Duration::from_secs(600),
        );
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            match self.round().await {
                Ok(()) => {
                    backoff.reset();
                    wait = Duration::from_secs(self.spoolman.poll_secs.max(1));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Spoolman sync failed; retrying");
                    wait = backoff.next_delay();
                }
            }
        }
    }

    /// One round: usage written back, then Spoolman's spools read.
    pub async fn round(&self) -> anyhow::Result<()> {
        self.report_usage().await?;
        self.read_spools().await
    }

    /// Writes back the usage not yet reported, one row at a time.
    async fn report_usage(&self) -> anyhow::Result<()> {
        loop {
            let mut tx = self.pool.begin().await?;
            let row: Option<(i64, i32, i64, f64)> = sqlx::query_as(
                "SELECT u.archive_id, u.slot, s.spoolman_id, u.grams - u.reported \
                 FROM filament.usage u JOIN filament.spools s ON s.id = u.spool_id \
                 WHERE s.spoolman_id IS NOT NULL AND abs(u.grams - u.reported) > 0.0005 \
                 ORDER BY u.at LIMIT 1 FOR UPDATE OF u SKIP LOCKED",
            )
            .fetch_optional(&mut *tx)
            .await?;
            let Some((archive_id, slot, spoolman_id, grams)) = row else {
                return Ok(());
            };
            let answer = self
                .client
                .put(self.url(&format!("/api/v1/spool/{spoolman_id}/use")))
                .json(&serde_json::json!({ "use_weight": db::round(grams, 3) }))
                .send()
                .await?;
            if !answer.status().is_success() {
                anyhow::bail!(
                    "Spoolman answered {} to the use of spool {spoolman_id}",
                    answer.status()
                );
            }
            sqlx::query(
                "UPDATE filament.usage SET reported = grams WHERE archive_id = $1 AND slot = $2",
            )
            .bind(archive_id)
            .bind(slot)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::debug!(spoolman_id, grams, "usage written back to Spoolman");
        }
    }

    /// Reads Spoolman's spools (archived ones too, so an archive there is one here).
    async fn read_spools(&self) -> anyhow::Result<()> {
        let answer = self
            .client
            .get(self.url("/api/v1/spool"))
            .query(&[("allow_archived", "true")])
            .send()
            .await?;
        if !answer.status().is_success() {
            anyhow::bail!("Spoolman answered {} to the spool list", answer.status());
        }
        // A deadline bounds the read; a list of thousands of spools is a few MB.
        let spools: Vec<SpoolmanSpool> = answer.json().await?;
        let mut printers = Vec::new();
        for spool in &spools {
            if let Some(printer) = self.upsert(spool).await? {
                printers.push(printer);
            }
        }
        printers.sort_unstable();
        printers.dedup();
        for printer in printers {
            if let Err(err) = self.trays.refresh(printer).await {
                tracing::warn!(printer, error = %err, "trays not republished after a sync");
            }
        }
        Ok(())
    }

    /// Makes `spool` a spool here; answers its printer when it is loaded (its weight may have
    /// changed).
    async fn upsert(&self, spool: &SpoolmanSpool) -> Result<Option<i64>, sqlx::Error> {
        let filament = &spool.filament;
        let material = filament
            .material
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .unwrap_or("UNKNOWN")
            .to_ascii_uppercase();
        let nominal = spool
            .initial_weight
            .or(filament.weight)
            .filter(|w| w.is_finite() && *w > 0.0)
            .unwrap_or(1000.0);
        let remaining = spool
            .remaining_weight
            .filter(|w| w.is_finite())
            .unwrap_or(nominal)
            .max(0.0);
        let low_falls = i64::from(remaining < self.config.threshold(&material));
        let mut tx = self.pool.begin().await?;
        let (id, printer): (i64, Option<i64>) = sqlx::query_as(
            "INSERT INTO filament.spools (spoolman_id, material, color, brand, sub_brand, \
               diameter, nominal_g, remaining_g, price, location, notes, archived, low_falls) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (spoolman_id) DO UPDATE SET material = EXCLUDED.material, \
               color = EXCLUDED.color, brand = EXCLUDED.brand, sub_brand = EXCLUDED.sub_brand, \
               diameter = EXCLUDED.diameter, nominal_g = EXCLUDED.nominal_g, \
               price = EXCLUDED.price, location = EXCLUDED.location, notes = EXCLUDED.notes, \
               archived = EXCLUDED.archived \
             RETURNING id, printer_id",
        )
        .bind(spool.id)
        .bind(&material)
        .bind(filament.color_hex.as_deref().and_then(db::normalize_color))
        .bind(filament.vendor.as_ref().and_then(|v| v.name.clone()))
        .bind(&filament.name)
        .bind(
            filament
                .diameter
                .filter(|d| d.is_finite() && *d > 0.0)
                .unwrap_or(1.75),
        )
        .bind(nominal)
        .bind(remaining)
        .bind(spool.price.or(filament.price).filter(|p| p.is_finite()))
        .bind(&spool.location)
        .bind(&spool.comment)
        .bind(spool.archived)
        .bind(low_falls)
        .fetch_one(&mut *tx)
        .await?;
        // Spoolman's weight wins (an update of an existing spool counts a fall here).
        db::set_remaining(&mut tx, &self.config, id, remaining).await?;
        if spool.archived {
            db::place(&mut tx, id, None).await?;
        }
        tx.commit().await?;
        Ok(printer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_as_spoolman_publishes_it_is_read() {
        // Shaped from Spoolman's published `Spool` model (fields it omits when unset).
        let json = r##"[{"id": 3, "registered": "2026-01-01T00:00:00Z",
            "filament": {"id": 1, "registered": "2026-01-01T00:00:00Z", "name": "PLA Basic",
              "vendor": {"id": 1, "registered": "2026-01-01T00:00:00Z", "name": "Bambu Lab"},
              "material": "PLA", "price": 19.99, "density": 1.24, "diameter": 1.75,
              "weight": 1000, "spool_weight": 250, "color_hex": "FF0000"},
            "remaining_weight": 640.5, "used_weight": 359.5, "location": "Shelf A",
            "archived": false, "extra": {}},
           {"id": 4, "registered": "2026-01-01T00:00:00Z",
            "filament": {"id": 2, "registered": "2026-01-01T00:00:00Z", "density": 1.27,
              "diameter": 1.75},
            "used_weight": 0, "archived": true, "extra": {}}]"##;
        let spools: Vec<SpoolmanSpool> = serde_json::from_str(json).unwrap();
        assert_eq!(spools[0].filament.material.as_deref(), Some("PLA"));
        assert_eq!(spools[0].remaining_weight, Some(640.5));
        assert_eq!(
            spools[0]
                .filament
                .vendor
                .as_ref()
                .and_then(|v| v.name.as_deref()),
            Some("Bambu Lab")
        );
        assert!(spools[1].archived && spools[1].filament.material.is_none());
    }
}
