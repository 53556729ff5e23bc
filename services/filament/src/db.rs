//! The `filament` schema: spools and what each print used. Every change of a spool's remaining
//! weight goes through [`set_remaining`], which records a fall under the material's threshold
//! in the same statement (announced afterwards by [`crate::low`]).

use chrono::{DateTime, Utc};
use printyard_contracts::ErrorBody;
use printyard_contracts::filament::Spool;
use sqlx::{Postgres, Transaction};

use crate::config::FilamentConfig;

pub type Tx<'a> = Transaction<'a, Postgres>;

/// The columns of [`SpoolRow`], in order.
pub const SPOOL_COLUMNS: &str = "id, material, color, brand, sub_brand, diameter, nominal_g, \
     remaining_g, price, tag, printer_id, tray, location, measured, archived, first_used, \
     last_used, notes, created_at, placed_at, spoolman_id";

/// The low-stock threshold of the row's material, from the binds `$thresholds` (JSON object of
/// per-material grams) and `$default`. Without per-material thresholds (`config`'s are empty)
/// no row's material is looked up in the JSON: the default alone, a constant of the statement.
pub fn threshold_sql(config: &FilamentConfig, thresholds: usize, default: usize) -> String {
    if config.low_g_by_material.is_empty() {
        format!("coalesce((${thresholds}::jsonb ->> '')::float8, ${default}::float8)")
    } else {
        format!("coalesce((${thresholds}::jsonb ->> upper(material))::float8, ${default}::float8)")
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SpoolRow {
    pub id: i64,
    pub material: String,
    pub color: Option<String>,
    pub brand: Option<String>,
    pub sub_brand: Option<String>,
    pub diameter: f64,
    pub nominal_g: f64,
    pub remaining_g: f64,
    pub price: Option<f64>,
    pub tag: Option<String>,
    pub printer_id: Option<i64>,
    pub tray: Option<i32>,
    pub location: Option<String>,
    pub measured: bool,
    pub archived: bool,
    pub first_used: Option<DateTime<Utc>>,
    pub last_used: Option<DateTime<Utc>>,
    pub notes: Option<String>,
    pub created_at: DateTime<Utc>,
    pub placed_at: Option<DateTime<Utc>>,
    pub spoolman_id: Option<i64>,
}

impl SpoolRow {
    /// Put in its tray through the API after `seen` (a status from before then knows nothing
    /// of it).
    pub fn placed_after(&self, seen: Option<DateTime<Utc>>) -> bool {
        matches!((self.placed_at, seen), (Some(placed), Some(seen)) if placed > seen)
    }

    pub fn view(self, config: &FilamentConfig) -> Spool {
        let low = !self.archived && self.remaining_g < config.threshold(&self.material);
        Spool {
            id: self.id,
            price_per_g: self
                .price
                .filter(|_| self.nominal_g > 0.0)
                .map(|p| round(p / self.nominal_g, 6)),
            material: self.material,
            color: self.color,
            brand: self.brand,
            sub_brand: self.sub_brand,
            diameter: self.diameter,
            nominal_g: round(self.nominal_g, 2),
            remaining_g: round(self.remaining_g, 2),
            price: self.price,
            tag: self.tag,
            printer_id: self.printer_id,
            tray: self.tray,
            location: self.location,
            measured: self.measured,
            low,
            archived: self.archived,
            first_used: self.first_used,
            last_used: self.last_used,
            notes: self.notes,
            created_at: self.created_at,
            spoolman_id: self.spoolman_id,
        }
    }
}

pub fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// One spool, locked for the transaction.
pub async fn locked(tx: &mut Tx<'_>, id: i64) -> Result<Option<SpoolRow>, sqlx::Error> {
    let sql = format!("SELECT {SPOOL_COLUMNS} FROM filament.spools WHERE id = $1 FOR UPDATE");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

/// The spool loaded in a printer's tray.
pub async fn in_tray(
    tx: &mut Tx<'_>,
    printer_id: i64,
    tray: i32,
) -> Result<Option<SpoolRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {SPOOL_COLUMNS} FROM filament.spools WHERE printer_id = $1 AND tray = $2 \
         FOR UPDATE"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(printer_id)
        .bind(tray)
        .fetch_optional(&mut **tx)
        .await
}

/// Every spool loaded on a printer.
pub async fn on_printer(tx: &mut Tx<'_>, printer_id: i64) -> Result<Vec<SpoolRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {SPOOL_COLUMNS} FROM filament.spools WHERE printer_id = $1 ORDER BY tray \
         FOR UPDATE"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(printer_id)
        .fetch_all(&mut **tx)
        .await
}

/// Serialises the changes to one printer's trays across replicas (status, API, usage).
pub async fn lock_printer(tx: &mut Tx<'_>, printer_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(0x4649_i32)
        .bind(printer_id as i32 ^ (printer_id >> 32) as i32)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Takes whatever spool is in `printer_id`'s `tray` out of it (the spool stays in the
/// inventory, not loaded).
pub async fn empty_tray(tx: &mut Tx<'_>, printer_id: i64, tray: i32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE filament.spools SET printer_id = NULL, tray = NULL, measured = false \
         WHERE printer_id = $1 AND tray = $2",
    )
    .bind(printer_id)
    .bind(tray)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Loads spool `id` into a tray (emptied first), or unloads it (`None`).
pub async fn place(tx: &mut Tx<'_>, id: i64, at: Option<(i64, i32)>) -> Result<(), sqlx::Error> {
    if let Some((printer, tray)) = at {
        sqlx::query(
            "UPDATE filament.spools SET printer_id = NULL, tray = NULL, measured = false \
             WHERE printer_id = $1 AND tray = $2 AND id <> $3",
        )
        .bind(printer)
        .bind(tray)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query(
        "UPDATE filament.spools SET printer_id = $2, tray = $3, placed_at = now(), \
           measured = measured AND printer_id IS NOT DISTINCT FROM $2 \
             AND tray IS NOT DISTINCT FROM $3 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(at.map(|(p, _)| p))
    .bind(at.map(|(_, t)| t))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Sets a spool's remaining grams (never below 0), counting a fall under its threshold.
pub async fn set_remaining(
    tx: &mut Tx<'_>,
    config: &FilamentConfig,
    id: i64,
    grams: f64,
) -> Result<(), sqlx::Error> {
    change_remaining(tx, config, id, "$2::float8", grams).await
}

/// Adds `delta` grams to a spool's remaining weight (never below 0), counting a fall under its
/// threshold.
pub async fn adjust_remaining(
    tx: &mut Tx<'_>,
    config: &FilamentConfig,
    id: i64,
    delta: f64,
) -> Result<(), sqlx::Error> {
    change_remaining(tx, config, id, "remaining_g + $2::float8", delta).await
}

async fn change_remaining(
    tx: &mut Tx<'_>,
    config: &FilamentConfig,
    id: i64,
    new: &str,
    grams: f64,
) -> Result<(), sqlx::Error> {
    let threshold = threshold_sql(config, 3, 4);
    let sql = format!(
        "UPDATE filament.spools SET remaining_g = greatest(0, {new}), \
           low_falls = low_falls + CASE WHEN NOT archived AND remaining_g >= {threshold} \
             AND greatest(0, {new}) < {threshold} THEN 1 ELSE 0 END \
         WHERE id = $1"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(grams)
        .bind(config.thresholds_json())
        .bind(config.low_g)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A database failure as callers see it (the detail stays in the log).
pub fn unavailable(err: sqlx::Error) -> ErrorBody {
    printyard_service::db::error_body(&err, "filament")
}

/// `RRGGBB` / `RRGGBBAA`, with or without `#`, as `RRGGBBAA` upper case.
pub fn normalize_color(color: &str) -> Option<String> {
    let hex = color.trim().trim_start_matches('#');
    if !(hex.len() == 6 || hex.len() == 8) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = hex.to_ascii_uppercase();
    if out.len() == 6 {
        out.push_str("FF");
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_rrggbbaa_upper_case() {
        assert_eq!(normalize_color("#ff6a13").as_deref(), Some("FF6A13FF"));
        assert_eq!(normalize_color("000000FF").as_deref(), Some("000000FF"));
        assert_eq!(normalize_color("#12345"), None);
        assert_eq!(normalize_color("GG0000"), None);
    }
}
