//! What each print used, from the archive's `archive_updated` facts (the durable consumer
//! `filament`, shared by the replicas). A print that ended uses its plate's grams per filament
//! (a failed or stopped print its share of the progress reached); each filament is taken from
//! the tray the queue's AMS mapping names, or, for prints the farm did not send, the one tray
//! of the printer holding that material (and colour, when several do). A newer revision of an
//! archive replaces its usage and moves the spools by the difference, in one transaction; an
//! older or repeated one changes nothing.
//!
//! Which number wins for a Bambu spool: while its AMS reports `remain`, the spool's weight
//! follows the printer (it measures what it fed, purges and prints Printyard never saw
//! included); the print's usage is still recorded, and not also subtracted. Any other spool
//! goes down by the usage.

use std::time::Duration;

use chrono::Utc;
use printyard_contracts::archive::{ArchiveFacts, ArchiveStatus, FilamentUse};
use printyard_contracts::farm::{EventKind, FarmEvent};
use printyard_service::farm_events::ConsumerOptions;

use crate::db::{self, SpoolRow, Tx};
use crate::trays::Trays;
use crate::{Context, config::FilamentConfig};

/// The durable consumer's name.
pub const CONSUMER: &str = "filament";

/// Advisory-lock namespace of one archive's usage.
const ARCHIVE_LOCK: i32 = 0x4655;

pub fn consumer() -> ConsumerOptions {
    ConsumerOptions {
        name: CONSUMER,
        ack_wait: Duration::from_secs(30),
        concurrency: 4,
    }
}

/// Handles one event for the consumer: `Err` asks for it again.
pub async fn handle(context: Context, event: FarmEvent) -> Result<(), String> {
    if event.kind != EventKind::ArchiveUpdated {
        return Ok(());
    }
    let Ok(facts) = serde_json::from_value::<ArchiveFacts>(event.data) else {
        tracing::warn!(event = %event.id, "unreadable archive facts skipped");
        return Ok(());
    };
    let printer = record(&context.pool, &context.config, &facts)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(printer) = printer {
        refresh(&context.trays, printer).await;
    }
    context.low.wake();
    Ok(())
}

async fn refresh(trays: &Trays, printer: i64) {
    if let Err(err) = trays.refresh(printer).await {
        tracing::warn!(printer, error = %err, "trays not republished after a print");
    }
}

/// One filament's usage as recorded.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
struct Used {
    slot: i32,
    grams: f64,
    tray: Option<i32>,
    spool_id: Option<i64>,
    deducted: f64,
    charged: bool,
}

/// The share of a plate's planned grams a print used.
pub fn share(facts: &ArchiveFacts) -> Option<f64> {
    match facts.status {
        ArchiveStatus::Success => Some(1.0),
        ArchiveStatus::Failed | ArchiveStatus::Stopped => {
            Some(f64::from(facts.progress.unwrap_or(0).clamp(0, 100)) / 100.0)
        }
        // Still printing, a library upload, or an end nothing tells of: no usage.
        _ => None,
    }
}

/// Applies an archive's facts if newer than the ones applied; answers the printer whose spools
/// moved.
pub async fn record(
    pool: &sqlx::PgPool,
    config: &FilamentConfig,
    facts: &ArchiveFacts,
) -> Result<Option<i64>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(ARCHIVE_LOCK)
        .bind(facts.archive_id as i32 ^ (facts.archive_id >> 32) as i32)
        .execute(&mut *tx)
        .await?;
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT revision FROM filament.archives_applied WHERE archive_id = $1")
            .bind(facts.archive_id)
            .fetch_optional(&mut *tx)
            .await?;
    if applied.is_some_and(|r| r >= facts.revision) {
        tx.commit().await?;
        return Ok(None);
    }
    sqlx::query(
        "INSERT INTO filament.archives_applied (archive_id, revision, printer_id, site) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (archive_id) DO UPDATE SET revision = EXCLUDED.revision, \
           printer_id = EXCLUDED.printer_id, site = EXCLUDED.site",
    )
    .bind(facts.archive_id)
    .bind(facts.revision)
    .bind(facts.printer_id)
    .bind(&facts.site)
    .execute(&mut *tx)
    .await?;
    let printer = facts.printer_id;
    if let Some(printer) = printer {
        db::lock_printer(&mut tx, printer).await?;
    }
    let before: Vec<Used> = sqlx::query_as(
        "SELECT slot, grams, tray, spool_id, deducted, charged FROM filament.usage \
         WHERE archive_id = $1 FOR UPDATE",
    )
    .bind(facts.archive_id)
    .fetch_all(&mut *tx)
    .await?;
    let loaded = match printer {
        Some(printer) => db::on_printer(&mut tx, printer).await?,
        None => Vec::new(),
    };
    // What the print used by these facts: nothing while it prints, for an end nobody saw or
    // without a printer.
    let used: Vec<(i32, &FilamentUse, f64)> = match (share(facts), printer) {
        (Some(share), Some(_)) => facts
            .filaments
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let slot = f.slot.map_or(i as i32 + 1, |s| s as i32);
                (slot, f, db::round(f.grams.max(0.0) * share, 3))
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut moved = false;
    if before.is_empty() && used.is_empty() {
        // Nothing used, before or now: nothing to announce.
        sqlx::query(
            "UPDATE filament.archives_applied SET announced = revision WHERE archive_id = $1",
        )
        .bind(facts.archive_id)
        .execute(&mut *tx)
        .await?;
    }
    // Filaments an earlier revision counted and these facts do not: given back.
    for old in before
        .iter()
        .filter(|u| used.iter().all(|(slot, ..)| *slot != u.slot))
    {
        if let (Some(spool), true) = (old.spool_id, old.deducted.abs() > 1e-9) {
            db::adjust_remaining(&mut tx, config, spool, old.deducted).await?;
            moved = true;
        }
        sqlx::query("DELETE FROM filament.usage WHERE archive_id = $1 AND slot = $2")
            .bind(facts.archive_id)
            .bind(old.slot)
            .execute(&mut *tx)
            .await?;
    }
    let at = facts.completed_at.unwrap_or_else(Utc::now);
    for (slot, filament, grams) in used {
        let old = before.iter().find(|u| u.slot == slot);
        let tray = old
            .and_then(|u| u.tray)
            .or_else(|| tray_of(facts.ams_mapping.as_deref(), slot, filament, &loaded));
        // A spool once charged keeps the charge, and whether it is subtracted (a later
        // revision only changes the grams).
        let spool = match old.and_then(|u| u.spool_id) {
            Some(id) => db::locked(&mut tx, id).await?,
            None => tray.and_then(|t| loaded.iter().find(|s| s.tray == Some(t)).cloned()),
        };
        let charged = match old {
            Some(old) if old.spool_id.is_some() => old.charged,
            _ => spool.as_ref().is_some_and(|s| !s.measured),
        };
        let deducted = if charged && spool.is_some() {
            grams
        } else {
            0.0
        };
        if let Some(spool) = &spool {
            let change = deducted - old.map_or(0.0, |u| u.deducted);
            if change.abs() > 1e-9 {
                db::adjust_remaining(&mut tx, config, spool.id, -change).await?;
                moved = true;
            }
            touch(&mut tx, spool.id, at).await?;
        }
        let row = Row {
            archive_id: facts.archive_id,
            slot,
            filament,
            grams,
            tray,
            spool: spool.as_ref(),
            deducted,
            charged,
            at,
        };
        upsert(&mut tx, &row).await?;
    }
    tx.commit().await?;
    Ok(printer.filter(|_| moved))
}

/// The tray a filament came from: the queue's mapping, else the printer's only tray of its
/// material (preferring its colour).
fn tray_of(
    mapping: Option<&[i32]>,
    slot: i32,
    filament: &FilamentUse,
    loaded: &[SpoolRow],
) -> Option<i32> {
    if let Some(mapping) = mapping {
        return usize::try_from(slot - 1)
            .ok()
            .and_then(|i| mapping.get(i))
            .copied()
            .filter(|t| *t >= 0);
    }
    let material: Vec<&SpoolRow> = loaded
        .iter()
        .filter(|s| s.material.eq_ignore_ascii_case(filament.kind.trim()))
        .collect();
    let color = db::normalize_color(&filament.color);
    let same_color: Vec<&&SpoolRow> = material
        .iter()
        .filter(|s| {
            color.is_some()
                && s.color.as_deref().map(|c| &c[..6.min(c.len())])
                    == color.as_deref().map(|c| &c[..6])
        })
        .collect();
    match (same_color.as_slice(), material.as_slice()) {
        ([one], _) => one.tray,
        (_, [one]) => one.tray,
        _ => None,
    }
}

async fn touch(tx: &mut Tx<'_>, spool: i64, at: chrono::DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE filament.spools SET first_used = least(coalesce(first_used, $2), $2), \
           last_used = greatest(coalesce(last_used, $2), $2) WHERE id = $1",
    )
    .bind(spool)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One filament's usage, as written.
struct Row<'a> {
    archive_id: i64,
    slot: i32,
    filament: &'a FilamentUse,
    grams: f64,
    tray: Option<i32>,
    spool: Option<&'a SpoolRow>,
    deducted: f64,
    charged: bool,
    at: chrono::DateTime<Utc>,
}

async fn upsert(tx: &mut Tx<'_>, row: &Row<'_>) -> Result<(), sqlx::Error> {
    let material = row.spool.map_or_else(
        || row.filament.kind.trim().to_ascii_uppercase(),
        |s| s.material.clone(),
    );
    let color = row
        .spool
        .and_then(|s| s.color.clone())
        .or_else(|| db::normalize_color(&row.filament.color));
    sqlx::query(
        "INSERT INTO filament.usage (archive_id, slot, material, color, grams, tray, spool_id, \
           deducted, charged, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (archive_id, slot) DO UPDATE SET grams = EXCLUDED.grams, \
           deducted = EXCLUDED.deducted, charged = EXCLUDED.charged, at = EXCLUDED.at, \
           material = EXCLUDED.material, color = EXCLUDED.color, \
           tray = EXCLUDED.tray, spool_id = EXCLUDED.spool_id",
    )
    .bind(row.archive_id)
    .bind(row.slot)
    .bind(material)
    .bind(color)
    .bind(row.grams)
    .bind(row.tray)
    .bind(row.spool.map(|s| s.id))
    .bind(row.deducted)
    .bind(row.charged)
    .bind(row.at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(id: i64, tray: i32, material: &str, color: &str) -> SpoolRow {
        SpoolRow {
            id,
            material: material.into(),
            color: Some(color.into()),
            brand: None,
            sub_brand: None,
            diameter: 1.75,
            nominal_g: 1000.0,
            remaining_g: 500.0,
            price: None,
            tag: None,
            printer_id: Some(1),
            tray: Some(tray),
            location: None,
            measured: false,
            archived: false,
            first_used: None,
            last_used: None,
            notes: None,
            created_at: Utc::now(),
            placed_at: None,
            spoolman_id: None,
        }
    }

    fn used(kind: &str, color: &str) -> FilamentUse {
        FilamentUse {
            slot: Some(1),
            kind: kind.into(),
            color: color.into(),
            grams: 10.0,
            tray: None,
            spool_id: None,
            used_g: None,
        }
    }

    #[test]
    fn the_queue_mapping_names_the_tray_else_the_one_tray_of_the_material() {
        let loaded = [
            spool(1, 0, "PLA", "000000FF"),
            spool(2, 1, "PLA", "FFFFFFFF"),
            spool(3, 4, "PETG", "FF0000FF"),
        ];
        let white = used("PLA", "#FFFFFF");
        assert_eq!(tray_of(Some(&[1]), 1, &white, &loaded), Some(1));
        assert_eq!(tray_of(Some(&[-1]), 1, &white, &loaded), None, "not mapped");
        assert_eq!(tray_of(Some(&[]), 1, &white, &loaded), None);
        assert_eq!(tray_of(None, 1, &white, &loaded), Some(1), "by colour");
        assert_eq!(
            tray_of(None, 1, &used("PLA", "#00FF00"), &loaded),
            None,
            "ambiguous"
        );
        assert_eq!(tray_of(None, 1, &used("petg", "#123456"), &loaded), Some(4));
        assert_eq!(tray_of(None, 1, &used("ABS", "#FFFFFF"), &loaded), None);
    }

    #[test]
    fn an_unfinished_print_uses_its_share_and_an_unknown_one_none() {
        let mut facts: ArchiveFacts = serde_json::from_value(serde_json::json!({
            "archive_id": 1, "revision": 1, "status": "failed", "name": "n",
            "printer_id": 1, "printer_name": null, "site": null, "project_id": null,
            "created_at": Utc::now(), "started_at": null, "completed_at": null,
            "duration": null, "filament_used": null, "filament_type": null,
            "printer_model_id": null, "queue_job_id": null, "progress": 40
        }))
        .unwrap();
        assert_eq!(share(&facts), Some(0.4));
        facts.status = ArchiveStatus::Success;
        assert_eq!(share(&facts), Some(1.0));
        facts.status = ArchiveStatus::Unknown;
        assert_eq!(share(&facts), None);
        facts.status = ArchiveStatus::Printing;
        assert_eq!(share(&facts), None);
    }
}
