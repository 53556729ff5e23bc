//! The printer registry: rows in `api.printers`, mirrored into the KV bucket `printer_registry`
//! that gateways watch, so that adding, changing and deleting a printer takes effect without a
//! restart. A write is committed only once the mirror has it.

use async_nats::jetstream::kv;
use printyard_contracts::ErrorBody;
use printyard_contracts::farm::{
    PinLearned, PinsLearned, PinsStored, PrinterRecord, Site, registry_key,
};
use sqlx::{PgPool, Postgres, Transaction};

use crate::error::ApiError;

/// A row of `api.printers`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PrinterRow {
    pub id: i64,
    pub name: String,
    pub host: String,
    pub serial: String,
    pub access_code: String,
    pub site: String,
    pub model: Option<String>,
    pub tls_pin: Option<String>,
    pub tls_insecure: bool,
    pub auto_clear_plate: bool,
    pub maintenance: bool,
}

impl PrinterRow {
    /// The marketing name: as given, else as the printer said (`detected`), else by serial.
    pub fn model_name(&self, detected: Option<&str>) -> Option<String> {
        self.model
            .clone()
            .or_else(|| detected.map(str::to_owned))
            .or_else(|| printyard_bambu::models::from_serial(&self.serial).map(str::to_owned))
    }

    pub fn record(&self) -> PrinterRecord {
        PrinterRecord {
            id: self.id,
            name: self.name.clone(),
            site: Site::parse(&self.site).unwrap_or_default(),
            host: self.host.clone(),
            serial: self.serial.clone(),
            access_code: self.access_code.clone(),
            model: self.model.clone(),
            tls_pin: self.tls_pin.clone(),
            tls_insecure: self.tls_insecure,
            auto_clear_plate: self.auto_clear_plate,
            maintenance: self.maintenance,
        }
    }
}

const COLUMNS: &str = "id, name, host, serial, access_code, site, model, tls_pin, tls_insecure, auto_clear_plate, \
     maintenance";

#[derive(Clone)]
pub struct Registry {
    pub db: PgPool,
    pub kv: kv::Store,
    /// For `printer_removed`.
    pub jetstream: async_nats::jetstream::Context,
}

fn mirror_failed(err: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %err, "printer registry mirror write failed");
    ApiError::new(
        printyard_contracts::ErrorCode::ServiceUnavailable,
        "The printer registry is unavailable, try again shortly",
    )
}

impl Registry {
    pub async fn list(&self) -> Result<Vec<PrinterRow>, ApiError> {
        let query = format!("SELECT {COLUMNS} FROM api.printers ORDER BY id");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(query))
            .fetch_all(&self.db)
            .await?)
    }

    pub async fn get(&self, id: i64) -> Result<PrinterRow, ApiError> {
        let query = format!("SELECT {COLUMNS} FROM api.printers WHERE id = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(query))
            .bind(id)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("Printer {id} not found")))
    }

    async fn mirror(
        &self,
        tx: Transaction<'_, Postgres>,
        row: &PrinterRow,
    ) -> Result<(), ApiError> {
        let record = row.record();
        let value = serde_json::to_vec(&record).map_err(mirror_failed)?;
        self.kv
            .put(registry_key(&record.site, record.id), value.into())
            .await
            .map_err(mirror_failed)?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn create(&self, new: NewPrinter) -> Result<PrinterRow, ApiError> {
        let mut tx = self.db.begin().await?;
        let query = format!(
            "INSERT INTO api.printers
               (name, host, serial, access_code, site, model, tls_insecure, auto_clear_plate)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
        );
        let row: PrinterRow = sqlx::query_as(sqlx::AssertSqlSafe(query))
            .bind(&new.name)
            .bind(&new.host)
            .bind(&new.serial)
            .bind(&new.access_code)
            .bind(&new.site)
            .bind(&new.model)
            .bind(new.tls_insecure)
            .bind(new.auto_clear_plate)
            .fetch_one(&mut *tx)
            .await
            .map_err(|err| match &err {
                sqlx::Error::Database(db) if db.is_unique_violation() => ApiError::new(
                    printyard_contracts::ErrorCode::Conflict,
                    format!("A printer with serial number {} already exists", new.serial),
                ),
                _ => err.into(),
            })?;
        self.mirror(tx, &row).await?;
        Ok(row)
    }

    pub async fn update(&self, id: i64, change: PrinterChange) -> Result<PrinterRow, ApiError> {
        let mut tx = self.db.begin().await?;
        let mut row = locked(&mut tx, id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("Printer {id} not found")))?;
        let old_key = registry_key(&row.record().site, id);
        let site_changed = change.site.as_ref().is_some_and(|s| *s != row.site);
        if let Some(v) = change.name {
            row.name = v
        }
        if let Some(v) = change.host {
            // A new address means a new certificate may be presented: forget the pin.
            if v != row.host {
                row.tls_pin = None
            }
            row.host = v;
        }
        if let Some(v) = change.access_code {
            row.access_code = v
        }
        if let Some(v) = change.site {
            row.site = v
        }
        if let Some(v) = change.model {
            row.model = Some(v)
        }
        if let Some(v) = change.tls_insecure {
            row.tls_insecure = v
        }
        if change.clear_tls_pin {
            row.tls_pin = None
        }
        if let Some(v) = change.auto_clear_plate {
            row.auto_clear_plate = v
        }
        if let Some(v) = change.maintenance {
            row.maintenance = v
        }
        sqlx::query(
            "UPDATE api.printers SET name = $2, host = $3, access_code = $4, site = $5, model = $6,
                    tls_pin = $7, tls_insecure = $8, auto_clear_plate = $9, maintenance = $10
              WHERE id = $1",
        )
        .bind(id)
        .bind(&row.name)
        .bind(&row.host)
        .bind(&row.access_code)
        .bind(&row.site)
        .bind(&row.model)
        .bind(&row.tls_pin)
        .bind(row.tls_insecure)
        .bind(row.auto_clear_plate)
        .bind(row.maintenance)
        .execute(&mut *tx)
        .await?;
        if site_changed {
            self.kv.delete(&old_key).await.map_err(mirror_failed)?;
        }
        self.mirror(tx, &row).await?;
        Ok(row)
    }

    /// Stores the pins gateways learned on first use (of `site`'s printers only, when a
    /// site's gateway sent them).
    pub async fn pins_learned(
        &self,
        learned: PinsLearned,
        site: Option<Site>,
    ) -> Result<PinsStored, ErrorBody> {
        let stored = self
            .keep_pins(&learned.pins, site.as_ref())
            .await
            .map_err(|e| e.body())?;
        if !stored.is_empty() {
            tracing::info!(site = ?site, printers = stored.len(), "certificates pinned on first use");
        }
        Ok(PinsStored { stored })
    }

    /// Keeps certificate pins gateways learned on first use, for printers that still have
    /// none and are still at the address the certificate was seen at, in one transaction
    /// (the registry entries are put before it commits). Idempotent: a repeat stores nothing.
    /// Returns the printers whose pin was stored.
    /// Keeps the pins learned on first use of printers that have none yet (of `site` only,
    /// when the pins came from a site's gateway).
    pub async fn keep_pins(
        &self,
        learned: &[PinLearned],
        site: Option<&Site>,
    ) -> Result<Vec<i64>, ApiError> {
        use futures::{StreamExt as _, TryStreamExt as _};
        let valid = |pin: &str| pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit());
        let learned: Vec<&PinLearned> = learned.iter().filter(|l| valid(&l.pin)).collect();
        if learned.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = learned.iter().map(|l| l.printer_id).collect();
        let hosts: Vec<&str> = learned.iter().map(|l| l.host.as_str()).collect();
        let pins: Vec<String> = learned.iter().map(|l| l.pin.to_ascii_lowercase()).collect();
        let mut tx = self.db.begin().await?;
        // DISTINCT ON: one pin per printer when a batch holds two (the first wins).
        let query = format!(
            "UPDATE api.printers SET tls_pin = learned.pin
             FROM (SELECT DISTINCT ON (pid) pid, phost, pin
                   FROM unnest($1::bigint[], $2::text[], $3::text[]) AS l(pid, phost, pin)
                   ORDER BY pid) AS learned
             WHERE id = learned.pid AND host = learned.phost
               AND tls_pin IS NULL AND NOT tls_insecure
               AND ($4::text IS NULL OR site = $4)
             RETURNING {}",
            COLUMNS
                .split(", ")
                .map(|c| format!("api.printers.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows: Vec<PrinterRow> = sqlx::query_as(sqlx::AssertSqlSafe(query))
            .bind(&ids)
            .bind(&hosts)
            .bind(&pins)
            .bind(site.map(Site::as_str))
            .fetch_all(&mut *tx)
            .await?;
        let mut puts = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = row.record();
            let value = serde_json::to_vec(&record).map_err(mirror_failed)?;
            let (kv, key) = (self.kv.clone(), registry_key(&record.site, record.id));
            puts.push(async move { kv.put(key, value.into()).await.map_err(mirror_failed) });
        }
        futures::stream::iter(puts)
            .buffer_unordered(32)
            .try_collect::<Vec<_>>()
            .await?;
        tx.commit().await?;
        Ok(rows.iter().map(|row| row.id).collect())
    }

    /// Makes `printer_registry` match `api.printers`: puts rows whose entry is missing or
    /// differs, and deletes entries whose printer is gone (a mirror put whose commit then
    /// failed). Runs at start; safe beside other replicas' writes: each row is compared and put
    /// under its row lock, and only orphans older than `min_age` are deleted (a create puts
    /// before it commits). Returns (entries put, entries deleted).
    pub async fn reconcile(&self, min_age: std::time::Duration) -> anyhow::Result<(usize, usize)> {
        use futures::StreamExt as _;
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM api.printers ORDER BY id")
            .fetch_all(&self.db)
            .await?;
        let mut put = 0;
        let mut expected = std::collections::HashSet::new();
        for id in &ids {
            let mut tx = self.db.begin().await?;
            let Some(row) = locked(&mut tx, *id).await? else {
                continue;
            };
            let record = row.record();
            let key = registry_key(&record.site, record.id);
            let current = self.kv.get(&key).await?;
            let same = current
                .as_ref()
                .and_then(|v| serde_json::from_slice::<PrinterRecord>(v).ok())
                .is_some_and(|r| r == record);
            if !same {
                self.kv
                    .put(&key, serde_json::to_vec(&record)?.into())
                    .await?;
                put += 1;
            }
            tx.commit().await?;
            expected.insert(key);
        }
        // Entries no row accounts for (a printer deleted, moved to another site, or a create
        // whose commit failed), once old enough not to be a create still committing.
        let mut keys = self.kv.keys().await?;
        let mut orphans = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key?;
            if !expected.contains(&key) {
                orphans.push(key);
            }
        }
        let mut deleted = 0;
        for key in orphans {
            let Some(entry) = self.kv.entry(&key).await? else {
                continue;
            };
            let live = matches!(entry.operation, kv::Operation::Put);
            let age_secs = chrono::Utc::now().timestamp() - entry.created.unix_timestamp();
            if live && age_secs >= min_age.as_secs() as i64 {
                self.kv.delete(&key).await?;
                deleted += 1;
            }
        }
        Ok((put, deleted))
    }

    /// Deletes printer `id`, returning what it was.
    pub async fn delete(&self, id: i64) -> Result<PrinterRow, ApiError> {
        let mut tx = self.db.begin().await?;
        let query = format!("DELETE FROM api.printers WHERE id = $1 RETURNING {COLUMNS}");
        let row: Option<PrinterRow> = sqlx::query_as(sqlx::AssertSqlSafe(query))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let row = row.ok_or_else(|| ApiError::not_found(format!("Printer {id} not found")))?;
        let site = Site::parse(&row.site).unwrap_or_default();
        self.kv
            .delete(registry_key(&site, id))
            .await
            .map_err(mirror_failed)?;
        tx.commit().await?;
        Ok(row)
    }

    /// Tells the farm a printer is gone (`printer_removed` on `FARM_EVENTS`): its open prints
    /// end, its queued jobs fail. Retried with backoff; the printer is deleted either way.
    pub async fn announce_removed(&self, row: &PrinterRow) {
        use printyard_contracts::farm::{EventKind, FarmEvent, event_id};
        let site = Site::parse(&row.site).unwrap_or_default();
        let now = chrono::Utc::now();
        let kind = EventKind::PrinterRemoved;
        let event = FarmEvent {
            id: event_id(&row.serial, kind, &now.timestamp_millis().to_string()),
            kind,
            site: site.clone(),
            printer_id: row.id,
            serial: row.serial.clone(),
            at: now,
            data: serde_json::json!({"printer_name": row.name}),
        };
        // Failures are logged by `publish`; the printer is deleted either way.
        let _ = printyard_service::farm_events::publish(&self.jetstream, &event).await;
    }
}

/// Printer `id`, locked for the rest of `tx` (`None` when there is no such printer).
async fn locked(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
) -> Result<Option<PrinterRow>, sqlx::Error> {
    let query = format!("SELECT {COLUMNS} FROM api.printers WHERE id = $1 FOR UPDATE");
    sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

/// A validated new printer.
pub struct NewPrinter {
    pub name: String,
    pub host: String,
    pub serial: String,
    pub access_code: String,
    pub site: String,
    pub model: Option<String>,
    pub tls_insecure: bool,
    pub auto_clear_plate: bool,
}

/// Validated changes.
#[derive(Default)]
pub struct PrinterChange {
    pub name: Option<String>,
    pub host: Option<String>,
    pub access_code: Option<String>,
    pub site: Option<String>,
    pub model: Option<String>,
    pub tls_insecure: Option<bool>,
    pub clear_tls_pin: bool,
    pub auto_clear_plate: Option<bool>,
    pub maintenance: Option<bool>,
}
