//! The cost settings: read by anyone with the read permission, changed by an admin. Every
//! change is a new version; prints keep the version they were priced with, so a change applies
//! to prints from then on (priced at print time), never to history.

use printyard_contracts::stats::CostSettings;
use printyard_contracts::{ErrorBody, ErrorCode};
use sqlx::{PgPool, Postgres, Transaction};

/// The settings in force, and their version (0: the built-in defaults).
pub async fn current(
    tx: &mut Transaction<'_, Postgres>,
) -> Result<(i64, CostSettings), sqlx::Error> {
    let row: Option<(i64, sqlx::types::Json<CostSettings>)> = sqlx::query_as(
        "SELECT version, settings FROM stats.cost_versions ORDER BY version DESC LIMIT 1",
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map_or_else(|| (0, CostSettings::default()), |(v, s)| (v, s.0)))
}

/// The settings of `version` (0, or a version no longer stored: the built-in defaults).
pub async fn version(
    tx: &mut Transaction<'_, Postgres>,
    version: i64,
) -> Result<CostSettings, sqlx::Error> {
    let row: Option<sqlx::types::Json<CostSettings>> =
        sqlx::query_scalar("SELECT settings FROM stats.cost_versions WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.map(|s| s.0).unwrap_or_default())
}

fn invalid(detail: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::ValidationError, detail)
}

/// Checks settings as a person sends them.
pub fn check(settings: &CostSettings) -> Result<(), ErrorBody> {
    let currency = &settings.currency;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(invalid(
            "Invalid field `currency`: three capital letters (ISO 4217, `EUR`)",
        ));
    }
    let price = |field: &str, value: f64| {
        if value.is_finite() && (0.0..=1_000_000.0).contains(&value) {
            Ok(())
        } else {
            Err(invalid(format!(
                "Invalid field `{field}`: a number from 0 to 1000000"
            )))
        }
    };
    price("energy_cost_per_kwh", settings.energy_cost_per_kwh)?;
    for (field, map) in [
        ("filament_cost_per_kg", &settings.filament_cost_per_kg),
        ("printer_power_watts", &settings.printer_power_watts),
    ] {
        if map.len() > 200 {
            return Err(invalid(format!(
                "Invalid field `{field}`: at most 200 entries"
            )));
        }
        for (key, value) in map {
            if key.trim().is_empty() || key.chars().count() > 64 || key.contains('\0') {
                return Err(invalid(format!(
                    "Invalid field `{field}`: names are 1 to 64 characters"
                )));
            }
            price(&format!("{field}.{key}"), *value)?;
        }
    }
    Ok(())
}

pub async fn get(pool: &PgPool) -> Result<CostSettings, ErrorBody> {
    let mut tx = pool.begin().await.map_err(crate::db::unavailable)?;
    let (_, settings) = current(&mut tx).await.map_err(crate::db::unavailable)?;
    tx.commit().await.map_err(crate::db::unavailable)?;
    Ok(settings)
}

pub async fn put(pool: &PgPool, settings: CostSettings) -> Result<CostSettings, ErrorBody> {
    check(&settings)?;
    let unavailable = crate::db::unavailable;
    let mut tx = pool.begin().await.map_err(unavailable)?;
    sqlx::query("INSERT INTO stats.cost_versions (settings) VALUES ($1)")
        .bind(sqlx::types::Json(&settings))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    // Kept answers tell their currency: they are stale now.
    crate::cache::bump(&mut tx).await.map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)?;
    tracing::info!(currency = %settings.currency, "cost settings changed");
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert!(check(&CostSettings::default()).is_ok());
        let mut bad = CostSettings {
            currency: "euro".into(),
            ..Default::default()
        };
        assert!(check(&bad).is_err());
        bad.currency = "EUR".into();
        bad.energy_cost_per_kwh = f64::NAN;
        assert!(check(&bad).is_err());
        bad.energy_cost_per_kwh = 0.2;
        bad.filament_cost_per_kg.insert("PLA".into(), -1.0);
        assert!(check(&bad).is_err());
    }
}
