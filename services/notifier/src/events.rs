//! From the farm's events to deliveries: the notifier's durable consumer on `FARM_EVENTS` stores
//! each event some webhook wants, with one pending delivery per such webhook, in one statement
//! (the event's id is unique, so a redelivered event adds nothing), and keeps what the payload
//! needs of a print (its archive, file and start) from the print and archive events.
//!
//! Events are taken one at a time, so the order they are stored in is the stream's: the sender
//! keeps that order per webhook and printer.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use printyard_contracts::farm::{EventKind, FarmEvent, PrinterRecord};
use printyard_contracts::webhooks::{WebhookEvent, deliveries_due_subject};
use printyard_service::farm_events::ConsumerOptions;
use printyard_service::kv_watch::follow;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Printer names by id, from the registry bucket: events that do not carry their printer's name
/// get it from here.
#[derive(Clone, Default)]
pub struct PrinterNames {
    names: Arc<RwLock<HashMap<i64, String>>>,
}

impl PrinterNames {
    pub fn get(&self, printer_id: i64) -> Option<String> {
        self.names.read().ok()?.get(&printer_id).cloned()
    }

    pub async fn follow(self, bucket: kv::Store, stop: CancellationToken) {
        follow(bucket, stop, move |entry| {
            let Some(id) = entry.key.rsplit('.').next().and_then(|i| i.parse().ok()) else {
                return;
            };
            let Ok(mut names) = self.names.write() else {
                return;
            };
            match entry.operation {
                Operation::Put => {
                    if let Ok(record) = serde_json::from_slice::<PrinterRecord>(&entry.value) {
                        names.insert(id, record.name);
                    }
                }
                Operation::Delete | Operation::Purge => {
                    names.remove(&id);
                }
            }
        })
        .await
    }
}

#[derive(Clone)]
pub struct Context {
    pub jetstream: async_nats::jetstream::Context,
    pub nats: async_nats::Client,
    pub pool: PgPool,
    pub names: PrinterNames,
    /// Wakes this replica's sender.
    pub wake: Arc<Notify>,
}

/// The durable consumer `notifier`: one lane, so events are stored in the stream's order.
pub fn consumer() -> ConsumerOptions {
    ConsumerOptions {
        name: "notifier",
        ack_wait: Duration::from_secs(30),
        concurrency: 1,
    }
}

/// Handles one event for the consumer: `Err` asks for it again.
pub async fn handle(context: Context, event: FarmEvent) -> Result<(), String> {
    apply(&context, event).await
}

fn text<'a>(data: &'a Value, key: &str) -> Option<&'a str> {
    data.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Stores `event` and its deliveries. `Err` (redelivered) only when Postgres failed.
pub async fn apply(context: &Context, event: FarmEvent) -> Result<(), String> {
    learn_print(&context.pool, &event)
        .await
        .map_err(|e| format!("print facts not stored: {e}"))?;
    let Some(public) = WebhookEvent::of(event.kind) else {
        return Ok(());
    };
    let mut data = event.data;
    if !data.is_object() {
        data = Value::Object(Default::default());
    }
    if text(&data, "printer_name").is_none()
        && let Some(name) = context.names.get(event.printer_id)
    {
        data["printer_name"] = name.into();
    }
    let created = sqlx::query(
        "WITH matching AS ( \
             SELECT id FROM notifier.webhooks \
             WHERE enabled AND $2 = ANY (events) \
               AND (printer_ids IS NULL OR $4 = ANY (printer_ids)) \
               AND (site IS NULL OR site = $3)), \
         stored AS ( \
             INSERT INTO notifier.events (event_id, kind, site, printer_id, at, data) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM matching) \
             ON CONFLICT (event_id) DO NOTHING \
             RETURNING id) \
         INSERT INTO notifier.deliveries (webhook_id, event, printer_id) \
         SELECT matching.id, stored.id, $4 FROM matching, stored",
    )
    .bind(&event.id)
    .bind(public.as_str())
    .bind(event.site.as_str())
    .bind(event.printer_id)
    .bind(event.at)
    .bind(&data)
    .execute(&context.pool)
    .await
    .map_err(|e| format!("deliveries not stored: {e}"))?
    .rows_affected();
    if created > 0 {
        metrics::counter!("notifier_deliveries_created_total").increment(created);
        context.wake.notify_one();
        // The other replicas' senders too (they would find it at their next poll).
        let _ = context
            .nats
            .publish(deliveries_due_subject(), Default::default())
            .await;
    }
    Ok(())
}

/// The key the notifier keeps a print under: its printer and the gateway's key.
pub fn print_key(printer_id: i64, gateway_key: &str) -> String {
    format!("{printer_id}/{gateway_key}")
}

/// Keeps a print's start and file (`print_started`) and its archive (`archive_created`), by the
/// gateway's print key.
async fn learn_print(pool: &PgPool, event: &FarmEvent) -> Result<(), sqlx::Error> {
    let Some(key) = text(&event.data, "print") else {
        return Ok(());
    };
    // A gateway's key names a job and a moment; two printers can start the same job in the
    // same millisecond, so the printer is part of the key (as in the archive).
    let key = print_key(event.printer_id, key);
    let file = text(&event.data, "gcode_file")
        .map(|f| f.rsplit('/').next().unwrap_or(f))
        .filter(|f| f.contains('.') && !f.starts_with("plate_"))
        .map(str::to_owned)
        .or_else(|| text(&event.data, "job_name").map(|j| format!("{j}.3mf")));
    match event.kind {
        EventKind::PrintStarted => {
            sqlx::query(
                "INSERT INTO notifier.prints (print_key, printer_id, filename, started_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (print_key) DO UPDATE \
                 SET started_at = coalesce(prints.started_at, excluded.started_at), \
                     filename = coalesce(prints.filename, excluded.filename)",
            )
            .bind(&key)
            .bind(event.printer_id)
            .bind(file)
            .bind(event.at)
            .execute(pool)
            .await?;
        }
        EventKind::ArchiveCreated => {
            let archive_id = event.data.get("archive_id").and_then(Value::as_i64);
            sqlx::query(
                "INSERT INTO notifier.prints (print_key, printer_id, archive_id, filename) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (print_key) DO UPDATE \
                 SET archive_id = excluded.archive_id, \
                     filename = coalesce(excluded.filename, prints.filename)",
            )
            .bind(&key)
            .bind(event.printer_id)
            .bind(archive_id)
            .bind(text(&event.data, "filename"))
            .execute(pool)
            .await?;
        }
        _ => {}
    }
    Ok(())
}

/// Drops what is no longer needed: finished deliveries older than `keep_days`, events no
/// delivery refers to, prints not heard of for 90 days.
pub async fn clean(pool: &PgPool, keep_days: u32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM notifier.deliveries WHERE state <> 'pending' \
           AND finished_at < now() - make_interval(days => $1)",
    )
    .bind(keep_days as i32)
    .execute(pool)
    .await?;
    sqlx::query(
        "DELETE FROM notifier.events ev WHERE ev.at < now() - interval '1 hour' \
           AND NOT EXISTS (SELECT 1 FROM notifier.deliveries d WHERE d.event = ev.id)",
    )
    .execute(pool)
    .await?;
    sqlx::query("DELETE FROM notifier.prints WHERE seen_at < now() - interval '90 days'")
        .execute(pool)
        .await?;
    Ok(())
}
