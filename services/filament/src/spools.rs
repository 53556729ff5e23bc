//! The endpoints `api` calls for `/spools`: list, get, create, update, archive, the material
//! summary and the usage of prints.

use std::sync::Arc;
use std::time::{Duration, Instant};

use printyard_contracts::filament::{
    ListSpools, ListUsage, MaterialStock, MaterialSummary, NewSpool, Spool, SpoolId, SpoolList,
    SpoolPatch, SpoolUsage, UpdateSpool, UsageList, valid_tray,
};
use printyard_contracts::{ErrorBody, ErrorCode};
use sqlx::{FromRow, PgPool, Row};

use crate::config::FilamentConfig;
use crate::db::{self, SPOOL_COLUMNS, SpoolRow, Tx, unavailable};
use crate::low::Announcer;
use crate::trays::Trays;

/// What the endpoints share.
#[derive(Clone)]
pub struct Spools {
    pub pool: PgPool,
    pub config: Arc<FilamentConfig>,
    pub trays: Trays,
    pub low: Announcer,
    /// The material summary as last computed, and when: a dashboard asks it every few seconds
    /// from every screen, and an answer a second old is as good.
    pub summary: Arc<std::sync::Mutex<Option<(Instant, MaterialSummary)>>>,
}

/// How long a computed material summary is answered again.
const SUMMARY_FRESH: Duration = Duration::from_secs(1);

fn invalid(detail: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::ValidationError, detail)
}

fn not_found(id: i64) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, format!("Spool {id} not found"))
}

/// A text field: trimmed, `None` when empty, refused when longer than `max` characters.
fn text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ErrorBody> {
    let value = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    match value {
        Some(v) if v.chars().count() > max => {
            Err(invalid(format!("{field} is longer than {max} characters")))
        }
        v => Ok(v),
    }
}

fn material(value: &str) -> Result<String, ErrorBody> {
    text("material", Some(value.to_owned()), 32)?
        .map(|m| m.to_ascii_uppercase())
        .ok_or_else(|| invalid("material is required"))
}

fn color(value: Option<String>) -> Result<Option<String>, ErrorBody> {
    match value.filter(|c| !c.trim().is_empty()) {
        None => Ok(None),
        Some(c) => db::normalize_color(&c)
            .map(Some)
            .ok_or_else(|| invalid("color must be RRGGBB or RRGGBBAA (hexadecimal)")),
    }
}

/// A weight or price: finite, not negative, at most `max`.
fn amount(field: &str, value: f64, max: f64) -> Result<f64, ErrorBody> {
    if value.is_finite() && (0.0..=max).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(format!("{field} must be between 0 and {max}")))
    }
}

fn diameter(value: f64) -> Result<f64, ErrorBody> {
    if value.is_finite() && value > 0.0 && value <= 5.0 {
        Ok(value)
    } else {
        Err(invalid("diameter must be between 0 and 5 mm"))
    }
}

impl Spools {
    async fn read(&self, id: i64) -> Result<Spool, ErrorBody> {
        let sql = format!("SELECT {SPOOL_COLUMNS} FROM filament.spools WHERE id = $1");
        let row: Option<SpoolRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|r| r.view(&self.config))
            .ok_or_else(|| not_found(id))
    }

    pub async fn get(&self, request: SpoolId) -> Result<Spool, ErrorBody> {
        self.read(request.id).await
    }

    pub async fn list(&self, filter: ListSpools) -> Result<SpoolList, ErrorBody> {
        // The page walks the primary key and stops at its end; the total is counted apart
        // (a count reads no row's columns), rather than both from one window over every match.
        let low = db::threshold_sql(&self.config, 6, 7);
        let matching = format!(
            "FROM filament.spools \
             WHERE ($1::text IS NULL OR material = upper($1)) \
               AND ($2::bigint IS NULL OR printer_id = $2) \
               AND ($3::bool IS NULL OR (printer_id IS NOT NULL) = $3) \
               AND ($4::bool IS NULL OR (NOT archived AND remaining_g < {low}) = $4) \
               AND archived = $5"
        );
        let page = format!("SELECT {SPOOL_COLUMNS} {matching} ORDER BY id LIMIT $8 OFFSET $9");
        // $6 to $9 are bound for both, so both statements take the same binds.
        let count = format!(
            "SELECT count(*) {matching} AND $8::bigint IS NOT NULL AND $9::bigint IS NOT NULL"
        );
        let bind = |sql: String| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(filter.material.clone())
                .bind(filter.printer_id)
                .bind(filter.loaded)
                .bind(filter.low)
                .bind(filter.archived.unwrap_or(false))
                .bind(self.config.thresholds_json())
                .bind(self.config.low_g)
                .bind(filter.limit.clamp(1, 1000))
                .bind(filter.offset.max(0))
        };
        let (rows, total) = tokio::join!(
            bind(page).fetch_all(&self.pool),
            bind(count).fetch_one(&self.pool)
        );
        let rows = rows.map_err(unavailable)?;
        let total: i64 = total.and_then(|r| r.try_get(0)).map_err(unavailable)?;
        let spools = rows
            .iter()
            .map(|r| SpoolRow::from_row(r).map(|row| row.view(&self.config)))
            .collect::<Result<Vec<Spool>, _>>()
            .map_err(unavailable)?;
        Ok(SpoolList { spools, total })
    }

    pub async fn create(&self, new: NewSpool) -> Result<Spool, ErrorBody> {
        let nominal = amount("nominal_g", new.nominal_g.unwrap_or(1000.0), 100_000.0)?;
        if nominal <= 0.0 {
            return Err(invalid("nominal_g must be more than 0"));
        }
        let remaining = amount("remaining_g", new.remaining_g.unwrap_or(nominal), 100_000.0)?;
        let place = self.place_of(new.printer_id, new.tray)?;
        let material = material(&new.material)?;
        let low_falls = i64::from(remaining < self.config.threshold(&material));
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        if let Some((printer, tray)) = place {
            db::lock_printer(&mut tx, printer)
                .await
                .map_err(unavailable)?;
            db::empty_tray(&mut tx, printer, tray)
                .await
                .map_err(unavailable)?;
        }
        let inserted: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO filament.spools (material, color, brand, sub_brand, diameter, \
               nominal_g, remaining_g, price, tag, location, notes, printer_id, tray, low_falls, \
               placed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
               CASE WHEN $12::bigint IS NULL THEN NULL ELSE now() END) RETURNING id",
        )
        .bind(&material)
        .bind(color(new.color)?)
        .bind(text("brand", new.brand, 64)?)
        .bind(text("sub_brand", new.sub_brand, 64)?)
        .bind(diameter(new.diameter.unwrap_or(1.75))?)
        .bind(nominal)
        .bind(remaining)
        .bind(new.price.map(|p| amount("price", p, 1e9)).transpose()?)
        .bind(text("tag", new.tag, 64)?)
        .bind(text("location", new.location, 128)?)
        .bind(text("notes", new.notes, 2000)?)
        .bind(place.map(|(p, _)| p))
        .bind(place.map(|(_, t)| t))
        .bind(low_falls)
        .fetch_one(&mut *tx)
        .await;
        let id = inserted.map_err(conflict_or_unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        self.changed(place.map(|(p, _)| p), None).await;
        self.read(id).await
    }

    pub async fn update(&self, request: UpdateSpool) -> Result<Spool, ErrorBody> {
        let UpdateSpool { id, patch } = request;
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let Some(before) = db::locked(&mut tx, id).await.map_err(unavailable)? else {
            return Err(not_found(id));
        };
        let place = match (&patch.printer_id, &patch.tray) {
            (None, None) => None,
            (Some(printer), Some(tray)) => Some(self.place_of(*printer, *tray)?),
            _ => return Err(invalid("printer_id and tray are set together")),
        };
        self.apply(&mut tx, &before, &patch).await?;
        let archived = patch.archived == Some(true);
        let target = if archived { Some(None) } else { place };
        if let Some(target) = target {
            if let Some((printer, _)) = target {
                db::lock_printer(&mut tx, printer)
                    .await
                    .map_err(unavailable)?;
            }
            db::place(&mut tx, id, target).await.map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        let new_printer = target.flatten().map(|(p, _)| p);
        self.changed(before.printer_id, new_printer).await;
        self.read(id).await
    }

    /// The plain fields of a patch.
    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        before: &SpoolRow,
        patch: &SpoolPatch,
    ) -> Result<(), ErrorBody> {
        let nominal = patch
            .nominal_g
            .map(|n| amount("nominal_g", n, 100_000.0))
            .transpose()?;
        if nominal == Some(0.0) {
            return Err(invalid("nominal_g must be more than 0"));
        }
        let keep = |field: &Option<Option<String>>, old: &Option<String>| match field {
            Some(v) => v.clone(),
            None => old.clone(),
        };
        let color = match &patch.color {
            Some(c) => color(c.clone())?,
            None => before.color.clone(),
        };
        let price = match patch.price {
            Some(p) => p.map(|p| amount("price", p, 1e9)).transpose()?,
            None => before.price,
        };
        let material = match &patch.material {
            Some(m) => material(m)?,
            None => before.material.clone(),
        };
        sqlx::query(
            "UPDATE filament.spools SET material = $2, color = $3, brand = $4, sub_brand = $5, \
               diameter = $6, nominal_g = $7, price = $8, location = $9, notes = $10, \
               archived = $11 WHERE id = $1",
        )
        .bind(before.id)
        .bind(material)
        .bind(color)
        .bind(text("brand", keep(&patch.brand, &before.brand), 64)?)
        .bind(text(
            "sub_brand",
            keep(&patch.sub_brand, &before.sub_brand),
            64,
        )?)
        .bind(
            patch
                .diameter
                .map(diameter)
                .transpose()?
                .unwrap_or(before.diameter),
        )
        .bind(nominal.unwrap_or(before.nominal_g))
        .bind(price)
        .bind(text(
            "location",
            keep(&patch.location, &before.location),
            128,
        )?)
        .bind(text("notes", keep(&patch.notes, &before.notes), 2000)?)
        .bind(patch.archived.unwrap_or(before.archived))
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
        if let Some(grams) = patch.remaining_g {
            let grams = amount("remaining_g", grams, 100_000.0)?;
            db::set_remaining(tx, &self.config, before.id, grams)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    pub async fn archive(&self, request: SpoolId) -> Result<Spool, ErrorBody> {
        self.update(UpdateSpool {
            id: request.id,
            patch: SpoolPatch {
                archived: Some(true),
                ..SpoolPatch::default()
            },
        })
        .await
    }

    /// A place to load a spool: a printer of the farm and a tray id printers use.
    fn place_of(
        &self,
        printer: Option<i64>,
        tray: Option<i32>,
    ) -> Result<Option<(i64, i32)>, ErrorBody> {
        match (printer, tray) {
            (None, None) => Ok(None),
            (Some(printer), Some(tray)) => {
                if self.trays.site_of(printer).is_none() {
                    return Err(invalid(format!("printer {printer} does not exist")));
                }
                if !valid_tray(tray) {
                    return Err(invalid(
                        "tray must be an AMS tray (0-15), an AMS HT (128-135) or the external \
                         spool (254, 255)",
                    ));
                }
                Ok(Some((printer, tray)))
            }
            _ => Err(invalid("printer_id and tray are set together")),
        }
    }

    /// After a change: the trays of the printers involved are published again, and a fall
    /// under the threshold is announced.
    async fn changed(&self, before: Option<i64>, after: Option<i64>) {
        if let Ok(mut kept) = self.summary.lock() {
            *kept = None;
        }
        for printer in [before, after].into_iter().flatten() {
            if let Err(err) = self.trays.refresh(printer).await {
                tracing::warn!(printer, error = %err, "trays not republished");
            }
        }
        self.low.wake();
    }

    /// The material summary, computed at most once a second by this replica (and again at once
    /// after a change made through it).
    pub async fn summary(&self) -> Result<MaterialSummary, ErrorBody> {
        if let Ok(kept) = self.summary.lock()
            && let Some((at, summary)) = kept.as_ref()
            && at.elapsed() < SUMMARY_FRESH
        {
            return Ok(summary.clone());
        }
        let summary = self.compute_summary().await?;
        if let Ok(mut kept) = self.summary.lock() {
            *kept = Some((Instant::now(), summary.clone()));
        }
        Ok(summary)
    }

    async fn compute_summary(&self) -> Result<MaterialSummary, ErrorBody> {
        let low = db::threshold_sql(&self.config, 1, 2);
        let sql = format!(
            "WITH stock AS ( \
               SELECT material, color, count(*) AS spools, count(printer_id) AS in_use, \
                 sum(remaining_g) AS remaining_g, \
                 count(*) FILTER (WHERE remaining_g < {low}) AS low \
               FROM filament.spools WHERE NOT archived GROUP BY material, color), \
             used AS ( \
               SELECT material, color, sum(grams) AS grams FROM filament.usage_days \
               WHERE day > (now() AT TIME ZONE 'UTC')::date - 30 GROUP BY material, color) \
             SELECT s.material, s.color, s.spools, s.in_use, s.remaining_g, s.low, \
               coalesce(u.grams, 0) AS used_30d_g \
             FROM stock s LEFT JOIN used u \
               ON u.material = s.material AND u.color = coalesce(s.color, '') \
             ORDER BY s.material, s.color"
        );
        let rows: Vec<StockRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(self.config.thresholds_json())
            .bind(self.config.low_g)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let materials = rows
            .into_iter()
            .map(
                |(material, color, spools, in_use, remaining_g, low, used)| MaterialStock {
                    material,
                    color,
                    spools,
                    in_use,
                    remaining_g: db::round(remaining_g, 2),
                    used_30d_g: db::round(used, 2),
                    days_left: (used > 0.0).then(|| db::round(remaining_g / (used / 30.0), 1)),
                    low,
                },
            )
            .collect();
        Ok(MaterialSummary { materials })
    }

    pub async fn usage(&self, request: ListUsage) -> Result<UsageList, ErrorBody> {
        if request.archive_id.is_none() && request.spool_id.is_none() {
            return Err(invalid("archive_id or spool_id is required"));
        }
        let usage: Vec<SpoolUsage> = sqlx::query_as::<_, UsageRow>(
            "SELECT archive_id, slot, material, color, grams, tray, spool_id, at \
             FROM filament.usage \
             WHERE ($1::bigint IS NULL OR archive_id = $1) \
               AND ($2::bigint IS NULL OR spool_id = $2) \
             ORDER BY at DESC, archive_id DESC, slot LIMIT $3",
        )
        .bind(request.archive_id)
        .bind(request.spool_id)
        .bind(request.limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(UsageRow::view)
        .collect();
        Ok(UsageList { usage })
    }
}

/// One material and colour on hand: material, colour, spools, in use, grams, low, used.
type StockRow = (String, Option<String>, i64, i64, f64, i64, f64);

#[derive(sqlx::FromRow)]
struct UsageRow {
    archive_id: i64,
    slot: i32,
    material: String,
    color: Option<String>,
    grams: f64,
    tray: Option<i32>,
    spool_id: Option<i64>,
    at: chrono::DateTime<chrono::Utc>,
}

impl UsageRow {
    fn view(self) -> SpoolUsage {
        SpoolUsage {
            archive_id: self.archive_id,
            slot: self.slot,
            material: self.material,
            color: self.color,
            grams: db::round(self.grams, 2),
            tray: self.tray,
            spool_id: self.spool_id,
            at: self.at,
        }
    }
}

/// A second spool with the same tag is a conflict; anything else the database's failure.
fn conflict_or_unavailable(err: sqlx::Error) -> ErrorBody {
    match &err {
        sqlx::Error::Database(e) if e.is_unique_violation() => {
            ErrorBody::new(ErrorCode::Conflict, "A spool with this tag already exists")
        }
        _ => unavailable(err),
    }
}
