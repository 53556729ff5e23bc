//! Print facts from the archive's events: a durable consumer (`stats`, shared by every
//! replica) of `archive_updated` and `archive_deleted`. A newer revision of an archive replaces
//! its facts, an older or repeated one changes nothing, so redeliveries and reordering are
//! harmless; the summaries move by the difference, in the same transaction.
//!
//! A print counts once it has ended (`success`, `failed`, `stopped`, `unknown`); one still
//! printing, a library upload or a deleted archive counts nowhere. It is priced with the cost
//! settings in force when it first counts, and keeps that version (priced at print time): a
//! change of prices applies to prints from then on, and a print's later corrections (a file
//! arriving late with its weight) are priced with its own version.
//!
//! The grams a print took from spools with a price (`filament_used`, from the filament service)
//! are priced at those spools' prices, the rest per kg; whichever of the two events comes first,
//! the fact is priced again when the other arrives.

use std::time::Duration;

use chrono::{DateTime, Utc};
use printyard_bambu::models;
use printyard_contracts::archive::{ArchiveFacts, ArchiveGone, ArchiveStatus};
use printyard_contracts::farm::{EventKind, FarmEvent};
use printyard_contracts::filament::FilamentUsed;
use printyard_contracts::stats::CostSettings;
use printyard_service::farm_events::ConsumerOptions;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, Transaction};

use crate::costs;

/// The durable consumer's name.
pub const CONSUMER: &str = "stats";

/// Advisory-lock namespace of one archive's facts.
const ARCHIVE_LOCK: i32 = 0x5354;

/// The stats service's durable consumer, `concurrency` lanes per replica.
pub fn consumer(concurrency: usize) -> ConsumerOptions {
    ConsumerOptions {
        name: CONSUMER,
        ack_wait: Duration::from_secs(30),
        concurrency,
    }
}

/// Handles one event for the consumer: `Err` asks for it again.
pub async fn handle(pool: PgPool, event: FarmEvent) -> Result<(), String> {
    apply(&pool, &event).await.map_err(|e| e.to_string())
}

/// The prices of one print.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Priced {
    pub filament_per_kg: f64,
    pub watts: f64,
    pub per_kwh: f64,
}

/// One print as the summaries count it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Fact {
    pub revision: i64,
    pub counted: bool,
    pub status: String,
    pub printer_id: i64,
    pub site: String,
    pub project_id: i64,
    pub filament_type: String,
    pub model: Option<String>,
    pub created_at: DateTime<Utc>,
    pub duration: i64,
    pub filament_g: f64,
    pub filament_cost: f64,
    pub energy_kwh: f64,
    pub energy_cost: f64,
    /// The cost settings version it is priced with, once it counts.
    pub priced_with: Option<i64>,
}

/// The grams of a print its spools priced, and what they cost (`filament_used`).
#[derive(Debug, Clone, Copy, PartialEq, sqlx::FromRow)]
pub struct SpoolPriced {
    pub priced_g: f64,
    pub cost: f64,
}

/// What `filament_g` grams of filament cost: the spool-priced part at its spools' prices, the
/// rest per kg.
pub fn filament_cost(filament_g: f64, per_kg: f64, spools: Option<SpoolPriced>) -> f64 {
    match spools {
        Some(s) => s.cost + (filament_g - s.priced_g).max(0.0) / 1000.0 * per_kg,
        None => filament_g / 1000.0 * per_kg,
    }
}

/// What an archive's facts count as, priced with `priced` (from settings version `version`)
/// and, for the grams its spools priced, with those (`spools`).
pub fn fact(
    facts: &ArchiveFacts,
    priced: Priced,
    version: i64,
    spools: Option<SpoolPriced>,
) -> Fact {
    let counted = matches!(
        facts.status,
        ArchiveStatus::Success
            | ArchiveStatus::Failed
            | ArchiveStatus::Stopped
            | ArchiveStatus::Unknown
    );
    let duration = facts.duration.unwrap_or(0).max(0);
    let filament_g = facts.filament_used.unwrap_or(0.0).max(0.0);
    let energy_kwh = duration as f64 / 3600.0 * priced.watts / 1000.0;
    Fact {
        revision: facts.revision,
        counted,
        status: facts.status.as_str().to_owned(),
        printer_id: facts.printer_id.unwrap_or(0),
        site: facts.site.clone().unwrap_or_default(),
        project_id: facts.project_id.unwrap_or(0),
        filament_type: facts.filament_type.clone().unwrap_or_default(),
        model: facts
            .printer_model_id
            .as_deref()
            .and_then(models::name_of_model_id)
            .map(str::to_owned),
        created_at: facts.created_at,
        duration,
        filament_g,
        filament_cost: filament_cost(filament_g, priced.filament_per_kg, spools),
        energy_kwh,
        energy_cost: energy_kwh * priced.per_kwh,
        priced_with: counted.then_some(version),
    }
}

/// The prices of `settings` for a print of this type and model.
pub fn prices(settings: &CostSettings, filament_type: &str, model: Option<&str>) -> Priced {
    Priced {
        filament_per_kg: settings.filament_price(filament_type),
        watts: settings.power(model),
        per_kwh: settings.energy_cost_per_kwh,
    }
}

pub async fn apply(pool: &PgPool, event: &FarmEvent) -> Result<(), sqlx::Error> {
    match event.kind {
        EventKind::ArchiveUpdated => {
            let Ok(facts) = serde_json::from_value::<ArchiveFacts>(event.data.clone()) else {
                tracing::warn!(event = %event.id, "unreadable archive facts skipped");
                return Ok(());
            };
            record(pool, &facts).await
        }
        EventKind::FilamentUsed => {
            let Ok(used) = serde_json::from_value::<FilamentUsed>(event.data.clone()) else {
                tracing::warn!(event = %event.id, "unreadable filament use skipped");
                return Ok(());
            };
            price_by_spools(pool, &used).await
        }
        EventKind::ArchiveDeleted => {
            let Ok(gone) = serde_json::from_value::<ArchiveGone>(event.data.clone()) else {
                tracing::warn!(event = %event.id, "unreadable archive deletion skipped");
                return Ok(());
            };
            forget(pool, gone).await
        }
        EventKind::PrinterActivity
        | EventKind::PrinterRemoved
        | EventKind::QueueJobStarted
        | EventKind::PlateCleared => crate::utilisation::apply(pool, event).await,
        EventKind::PrinterError
        | EventKind::PrintError
        | EventKind::PrinterErrorCleared
        | EventKind::PrinterState => crate::errors::apply(pool, event).await,
        _ => Ok(()),
    }
}

/// Keeps an archive's facts if they are newer than the ones kept.
pub async fn record(pool: &PgPool, facts: &ArchiveFacts) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let old = locked(&mut tx, facts.archive_id).await?;
    if old.as_ref().is_some_and(|o| o.revision >= facts.revision) {
        return tx.commit().await;
    }
    let model = facts
        .printer_model_id
        .as_deref()
        .and_then(models::name_of_model_id);
    let (version, settings) = match old.as_ref().and_then(|o| o.priced_with) {
        Some(version) => (version, costs::version(&mut tx, version).await?),
        None => costs::current(&mut tx).await?,
    };
    let priced = prices(
        &settings,
        facts.filament_type.as_deref().unwrap_or(""),
        model,
    );
    let spools = spool_priced(&mut tx, facts.archive_id).await?;
    let new = fact(facts, priced, version, spools);
    if let Some(old) = old.as_ref().filter(|o| o.counted) {
        contribute(&mut tx, old, -1).await?;
    }
    if new.counted {
        contribute(&mut tx, &new, 1).await?;
    }
    sqlx::query(
        "INSERT INTO stats.prints (archive_id, revision, counted, status, printer_id, site, \
           project_id, filament_type, model, created_at, duration, filament_g, filament_cost, \
           energy_kwh, energy_cost, priced_with) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (archive_id) DO UPDATE SET revision = EXCLUDED.revision, \
           counted = EXCLUDED.counted, status = EXCLUDED.status, printer_id = EXCLUDED.printer_id, \
           site = EXCLUDED.site, project_id = EXCLUDED.project_id, \
           filament_type = EXCLUDED.filament_type, model = EXCLUDED.model, \
           created_at = EXCLUDED.created_at, duration = EXCLUDED.duration, \
           filament_g = EXCLUDED.filament_g, filament_cost = EXCLUDED.filament_cost, \
           energy_kwh = EXCLUDED.energy_kwh, energy_cost = EXCLUDED.energy_cost, \
           priced_with = coalesce(stats.prints.priced_with, EXCLUDED.priced_with)",
    )
    .bind(facts.archive_id)
    .bind(new.revision)
    .bind(new.counted)
    .bind(&new.status)
    .bind(new.printer_id)
    .bind(&new.site)
    .bind(new.project_id)
    .bind(&new.filament_type)
    .bind(&new.model)
    .bind(new.created_at)
    .bind(new.duration)
    .bind(new.filament_g)
    .bind(new.filament_cost)
    .bind(new.energy_kwh)
    .bind(new.energy_cost)
    .bind(new.priced_with)
    .execute(&mut *tx)
    .await?;
    crate::cache::bump(&mut tx).await?;
    tx.commit().await
}

/// What the spools priced of an archive's filament, when the filament service said.
async fn spool_priced(
    tx: &mut Transaction<'_, Postgres>,
    archive_id: i64,
) -> Result<Option<SpoolPriced>, sqlx::Error> {
    sqlx::query_as("SELECT priced_g, cost FROM stats.spool_prices WHERE archive_id = $1")
        .bind(archive_id)
        .fetch_optional(&mut **tx)
        .await
}

/// Keeps what the spools priced of a print (if newer than what is kept) and prices its fact
/// again with it: the summaries move by the difference, in the same transaction.
pub async fn price_by_spools(pool: &PgPool, used: &FilamentUsed) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let old = locked(&mut tx, used.archive_id).await?;
    let kept: Option<i64> =
        sqlx::query_scalar("SELECT revision FROM stats.spool_prices WHERE archive_id = $1")
            .bind(used.archive_id)
            .fetch_optional(&mut *tx)
            .await?;
    if kept.is_some_and(|r| r >= used.revision) {
        return tx.commit().await;
    }
    sqlx::query(
        "INSERT INTO stats.spool_prices (archive_id, revision, priced_g, cost) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (archive_id) DO UPDATE SET revision = EXCLUDED.revision, \
           priced_g = EXCLUDED.priced_g, cost = EXCLUDED.cost",
    )
    .bind(used.archive_id)
    .bind(used.revision)
    .bind(used.priced_g)
    .bind(used.cost)
    .execute(&mut *tx)
    .await?;
    let Some(old) = old.filter(|o| o.counted) else {
        // Not counted (yet): its fact is priced with this when it is.
        return tx.commit().await;
    };
    let settings = match old.priced_with {
        Some(version) => costs::version(&mut tx, version).await?,
        None => costs::current(&mut tx).await?.1,
    };
    let per_kg = prices(&settings, &old.filament_type, old.model.as_deref()).filament_per_kg;
    let spools = SpoolPriced {
        priced_g: used.priced_g,
        cost: used.cost,
    };
    let new = Fact {
        filament_cost: filament_cost(old.filament_g, per_kg, Some(spools)),
        ..old.clone()
    };
    if (new.filament_cost - old.filament_cost).abs() < 1e-12 {
        return tx.commit().await;
    }
    contribute(&mut tx, &old, -1).await?;
    contribute(&mut tx, &new, 1).await?;
    sqlx::query("UPDATE stats.prints SET filament_cost = $2 WHERE archive_id = $1")
        .bind(used.archive_id)
        .bind(new.filament_cost)
        .execute(&mut *tx)
        .await?;
    crate::cache::bump(&mut tx).await?;
    tx.commit().await
}

/// An archive was deleted: its print counts no more. A tombstone keeps the revision, so an
/// older update arriving late does not bring it back.
pub async fn forget(pool: &PgPool, gone: ArchiveGone) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let old = locked(&mut tx, gone.archive_id).await?;
    if old.as_ref().is_some_and(|o| o.revision >= gone.revision) {
        return tx.commit().await;
    }
    if let Some(old) = old.as_ref().filter(|o| o.counted) {
        contribute(&mut tx, old, -1).await?;
    }
    sqlx::query(
        "INSERT INTO stats.prints (archive_id, revision, counted, status, created_at) \
         VALUES ($1, $2, false, 'deleted', now()) \
         ON CONFLICT (archive_id) DO UPDATE SET revision = EXCLUDED.revision, counted = false, \
           status = 'deleted'",
    )
    .bind(gone.archive_id)
    .bind(gone.revision)
    .execute(&mut *tx)
    .await?;
    crate::cache::bump(&mut tx).await?;
    tx.commit().await
}

/// The facts kept for `archive_id`, with the archive held for the rest of `tx`: two events of
/// one archive (handled at once by two replicas or tasks) apply one after the other, even
/// before its first facts exist to lock.
async fn locked(
    tx: &mut Transaction<'_, Postgres>,
    archive_id: i64,
) -> Result<Option<Fact>, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(ARCHIVE_LOCK)
        .bind((archive_id & 0x7fff_ffff) as i32)
        .execute(&mut **tx)
        .await?;
    sqlx::query_as(
        "SELECT revision, counted, status, printer_id, site, project_id, filament_type, model, \
           created_at, duration, filament_g, filament_cost, energy_kwh, energy_cost, priced_with \
         FROM stats.prints WHERE archive_id = $1 FOR UPDATE",
    )
    .bind(archive_id)
    .fetch_optional(&mut **tx)
    .await
}

/// Adds (`sign` 1) or takes away (-1) a print's share of the summaries.
pub async fn contribute(
    tx: &mut Transaction<'_, Postgres>,
    fact: &Fact,
    sign: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT stats.contribute($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
        .bind(fact.created_at)
        .bind(fact.printer_id)
        .bind(&fact.site)
        .bind(&fact.filament_type)
        .bind(sign)
        .bind(&fact.status)
        .bind(fact.duration)
        .bind(fact.filament_g)
        .bind(fact.filament_cost)
        .bind(fact.energy_kwh)
        .bind(fact.energy_cost)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(status: ArchiveStatus) -> ArchiveFacts {
        ArchiveFacts {
            archive_id: 1,
            revision: 3,
            status,
            name: "cube".into(),
            printer_id: Some(2),
            printer_name: Some("P".into()),
            site: Some("lab".into()),
            project_id: None,
            created_at: Utc::now(),
            started_at: None,
            completed_at: None,
            duration: Some(7200),
            filament_used: Some(50.0),
            filament_type: Some("PETG".into()),
            printer_model_id: Some("C12".into()),
            queue_job_id: None,
            filaments: Vec::new(),
            progress: None,
            ams_mapping: None,
        }
    }

    #[test]
    fn an_ended_print_is_costed_by_weight_and_energy() {
        let settings = CostSettings::default();
        let priced = prices(&settings, "PETG", Some("P1S"));
        let fact = fact(&facts(ArchiveStatus::Success), priced, 0, None);
        assert!(fact.counted);
        assert_eq!(fact.model.as_deref(), Some("P1S"));
        // 50 g of PETG at 22/kg, and 2 h × 120 W = 0.24 kWh at 0.30.
        assert!((fact.filament_cost - 1.1).abs() < 1e-9);
        assert!((fact.energy_kwh - 0.24).abs() < 1e-9);
        assert!((fact.energy_cost - 0.072).abs() < 1e-9);
    }

    #[test]
    fn grams_from_priced_spools_cost_their_price_and_the_rest_the_per_kg_setting() {
        let settings = CostSettings::default();
        let priced = prices(&settings, "PETG", Some("P1S"));
        // 30 of the 50 g came from a spool at 0.05 a gram: 1.5, and 20 g at 22/kg: 0.44.
        let spools = SpoolPriced {
            priced_g: 30.0,
            cost: 1.5,
        };
        let fact = fact(&facts(ArchiveStatus::Success), priced, 0, Some(spools));
        assert!(
            (fact.filament_cost - 1.94).abs() < 1e-9,
            "{}",
            fact.filament_cost
        );
        // More priced than the archive says was used: the spools' price alone.
        let over = SpoolPriced {
            priced_g: 60.0,
            cost: 3.0,
        };
        assert!((filament_cost(50.0, 22.0, Some(over)) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn prints_under_way_and_uploads_do_not_count() {
        let priced = prices(&CostSettings::default(), "PLA", None);
        assert!(!fact(&facts(ArchiveStatus::Printing), priced, 0, None).counted);
        assert!(!fact(&facts(ArchiveStatus::Uploaded), priced, 0, None).counted);
        assert!(fact(&facts(ArchiveStatus::Unknown), priced, 0, None).counted);
    }
}
