//! Printer care: maintenance tasks counted from the prints this service keeps (print hours,
//! prints, filament) and from the clock (days), each since it was last done on the printer.
//! A sweep announces each cycle that falls due once, as `maintenance_due` on `FARM_EVENTS`
//! (webhooks, `/events`); `done` starts the next cycle.
//!
//! The printers come from the registry bucket the api mirrors (for the sweep) or from the api's
//! question (for a listing, the printers the caller may reach).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use chrono::{DateTime, Utc};
use printyard_contracts::farm::{EventKind, FarmEvent, PrinterRecord, Site};
use printyard_contracts::maintenance::{
    ListMaintenance, MaintainedPrinter, MaintenanceDue, MaintenanceItem, MaintenanceItems,
    MaintenanceState, MaintenanceTask, MaintenanceTasks, MarkDone, NewMaintenanceTask, TaskDeleted,
    TaskId, maintenance_due_id,
};
use printyard_contracts::{ErrorBody, ErrorCode};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db::unavailable;

/// How often due tasks are looked for.
pub const SWEEP: Duration = Duration::from_secs(5);

fn invalid(detail: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::ValidationError, detail)
}

const TASK_COLUMNS: &str = "id, name, printer_id, model, every_print_hours, every_prints, \
    every_days, every_filament_g, created_at";

#[derive(sqlx::FromRow)]
struct TaskRow {
    id: i64,
    name: String,
    printer_id: Option<i64>,
    model: Option<String>,
    every_print_hours: Option<f64>,
    every_prints: Option<i64>,
    every_days: Option<i64>,
    every_filament_g: Option<f64>,
    created_at: DateTime<Utc>,
}

impl From<TaskRow> for MaintenanceTask {
    fn from(t: TaskRow) -> Self {
        MaintenanceTask {
            id: t.id,
            name: t.name,
            printer_id: t.printer_id,
            model: t.model,
            every_print_hours: t.every_print_hours,
            every_prints: t.every_prints,
            every_days: t.every_days,
            every_filament_g: t.every_filament_g,
            created_at: t.created_at,
        }
    }
}

pub async fn tasks(pool: &PgPool) -> Result<MaintenanceTasks, ErrorBody> {
    let rows: Vec<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM stats.maintenance_tasks ORDER BY id"
    )))
    .fetch_all(pool)
    .await
    .map_err(unavailable)?;
    Ok(MaintenanceTasks {
        tasks: rows.into_iter().map(Into::into).collect(),
    })
}

pub async fn create_task(
    pool: &PgPool,
    new: NewMaintenanceTask,
) -> Result<MaintenanceTask, ErrorBody> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.contains('\0') {
        return Err(invalid(
            "Invalid field `name`: 1 to 200 characters, not all blank",
        ));
    }
    if new.printer_id.is_some() && new.model.is_some() {
        return Err(invalid(
            "Give `printer_id` or `model` (or neither, for every printer), not both",
        ));
    }
    if new.printer_id.is_some_and(|id| id <= 0) {
        return Err(invalid("Invalid field `printer_id`: a printer id"));
    }
    let model = new
        .model
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    if model.is_some_and(|m| m.chars().count() > 64) {
        return Err(invalid("Invalid field `model`: at most 64 characters"));
    }
    let positive = |v: Option<f64>| v.is_none_or(|v| v.is_finite() && v > 0.0);
    if !positive(new.every_print_hours)
        || !positive(new.every_filament_g)
        || new.every_prints.is_some_and(|v| v <= 0)
        || new.every_days.is_some_and(|v| v <= 0)
    {
        return Err(invalid("Every interval is above zero"));
    }
    if new.every_print_hours.is_none()
        && new.every_prints.is_none()
        && new.every_days.is_none()
        && new.every_filament_g.is_none()
    {
        return Err(invalid(
            "At least one interval: every_print_hours, every_prints, every_days or every_filament_g",
        ));
    }
    let row: TaskRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO stats.maintenance_tasks
            (name, printer_id, model, every_print_hours, every_prints, every_days, every_filament_g)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {TASK_COLUMNS}"
    )))
    .bind(name)
    .bind(new.printer_id)
    .bind(model)
    .bind(new.every_print_hours)
    .bind(new.every_prints)
    .bind(new.every_days)
    .bind(new.every_filament_g)
    .fetch_one(pool)
    .await
    .map_err(unavailable)?;
    Ok(row.into())
}

pub async fn delete_task(pool: &PgPool, id: TaskId) -> Result<TaskDeleted, ErrorBody> {
    let deleted = sqlx::query("DELETE FROM stats.maintenance_tasks WHERE id = $1")
        .bind(id.id)
        .execute(pool)
        .await
        .map_err(unavailable)?
        .rows_affected()
        > 0;
    if !deleted {
        return Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!("Maintenance task {} not found", id.id),
        ));
    }
    Ok(TaskDeleted { deleted })
}

/// Whether `task` applies to `printer`.
fn applies(task: &MaintenanceTask, printer: &MaintainedPrinter) -> bool {
    match (task.printer_id, task.model.as_deref()) {
        (Some(id), _) => id == printer.id,
        (None, Some(model)) => printer
            .model
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case(model)),
        (None, None) => true,
    }
}

#[derive(sqlx::FromRow)]
struct Usage {
    task_id: i64,
    printer_id: i64,
    since: DateTime<Utc>,
    done_by: Option<String>,
    notes: Option<String>,
    prints: i64,
    seconds: i64,
    grams: f64,
}

/// The share of each interval used, and the state the largest puts the printer in.
fn progress(task: &MaintenanceTask, prints: i64, hours: f64, grams: f64, days: f64) -> f64 {
    [
        task.every_print_hours.map(|every| hours / every),
        task.every_prints.map(|every| prints as f64 / every as f64),
        task.every_days.map(|every| days / every as f64),
        task.every_filament_g.map(|every| grams / every),
    ]
    .into_iter()
    .flatten()
    .fold(0.0, f64::max)
}

fn state_of(progress: f64) -> MaintenanceState {
    if progress >= 1.1 {
        MaintenanceState::Overdue
    } else if progress >= 1.0 {
        MaintenanceState::Due
    } else if progress >= 0.9 {
        MaintenanceState::Soon
    } else {
        MaintenanceState::Ok
    }
}

/// Every task on every printer of `printers` it applies to, most urgent first.
pub async fn items(
    pool: &PgPool,
    printers: &[MaintainedPrinter],
    now: DateTime<Utc>,
) -> Result<Vec<MaintenanceItem>, sqlx::Error> {
    let all: Vec<MaintenanceTask> = sqlx::query_as::<_, TaskRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM stats.maintenance_tasks ORDER BY id"
    )))
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(Into::into)
    .collect();
    let mut pairs: (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
    for task in &all {
        for printer in printers.iter().filter(|p| applies(task, p)) {
            pairs.0.push(task.id);
            pairs.1.push(printer.id);
        }
    }
    if pairs.0.is_empty() {
        return Ok(Vec::new());
    }
    let usage: Vec<Usage> = sqlx::query_as(
        "SELECT p.task_id, p.printer_id, coalesce(d.done_at, t.created_at) AS since,
                d.done_by, d.notes, u.prints, u.seconds, u.grams
           FROM unnest($1::bigint[], $2::bigint[]) AS p (task_id, printer_id)
           JOIN stats.maintenance_tasks t ON t.id = p.task_id
           LEFT JOIN LATERAL (
                SELECT done_at, done_by, notes FROM stats.maintenance_done
                 WHERE task_id = p.task_id AND printer_id = p.printer_id
                 ORDER BY done_at DESC LIMIT 1) d ON true
           CROSS JOIN LATERAL (
                SELECT count(*) AS prints, coalesce(sum(duration), 0)::bigint AS seconds,
                       coalesce(sum(filament_g), 0)::float8 AS grams
                  FROM stats.prints
                 WHERE counted AND printer_id = p.printer_id
                   AND created_at >= coalesce(d.done_at, t.created_at)) u",
    )
    .bind(&pairs.0)
    .bind(&pairs.1)
    .fetch_all(pool)
    .await?;
    let tasks: HashMap<i64, &MaintenanceTask> = all.iter().map(|t| (t.id, t)).collect();
    let names: HashMap<i64, &MaintainedPrinter> = printers.iter().map(|p| (p.id, p)).collect();
    let mut items: Vec<MaintenanceItem> = usage
        .into_iter()
        .filter_map(|u| {
            let task = tasks.get(&u.task_id)?;
            let printer = names.get(&u.printer_id)?;
            let hours = u.seconds as f64 / 3600.0;
            let days = (now - u.since).num_seconds().max(0) as f64 / 86_400.0;
            let progress = progress(task, u.prints, hours, u.grams, days);
            Some(MaintenanceItem {
                task_id: task.id,
                task: task.name.clone(),
                printer_id: printer.id,
                printer_name: printer.name.clone(),
                state: state_of(progress),
                progress: (progress * 1000.0).round() / 1000.0,
                since: u.since,
                prints: u.prints,
                print_hours: (hours * 10_000.0).round() / 10_000.0,
                filament_g: (u.grams * 10.0).round() / 10.0,
                days: (days * 100.0).round() / 100.0,
                every_print_hours: task.every_print_hours,
                every_prints: task.every_prints,
                every_days: task.every_days,
                every_filament_g: task.every_filament_g,
                last_done_by: u.done_by,
                last_notes: u.notes,
            })
        })
        .collect();
    items.sort_by(|a, b| {
        a.state
            .cmp(&b.state)
            .then(b.progress.total_cmp(&a.progress))
            .then(a.printer_id.cmp(&b.printer_id))
            .then(a.task_id.cmp(&b.task_id))
    });
    Ok(items)
}

pub async fn list(pool: &PgPool, request: ListMaintenance) -> Result<MaintenanceItems, ErrorBody> {
    Ok(MaintenanceItems {
        items: items(pool, &request.printers, Utc::now())
            .await
            .map_err(unavailable)?,
    })
}

/// Records the task done on the printer (a new cycle starts now) and answers its item.
pub async fn done(pool: &PgPool, request: MarkDone) -> Result<MaintenanceItem, ErrorBody> {
    if request
        .notes
        .as_ref()
        .is_some_and(|n| n.chars().count() > 2000)
    {
        return Err(invalid("Invalid field `notes`: at most 2,000 characters"));
    }
    let task: Option<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM stats.maintenance_tasks WHERE id = $1"
    )))
    .bind(request.task_id)
    .fetch_optional(pool)
    .await
    .map_err(unavailable)?;
    let not_found = || {
        ErrorBody::new(
            ErrorCode::NotFound,
            format!(
                "Maintenance task {} does not apply to printer {}",
                request.task_id, request.printer.id
            ),
        )
    };
    let task: MaintenanceTask = task.ok_or_else(not_found)?.into();
    if !applies(&task, &request.printer) {
        return Err(not_found());
    }
    sqlx::query(
        "INSERT INTO stats.maintenance_done (task_id, printer_id, done_by, notes)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(request.task_id)
    .bind(request.printer.id)
    .bind(&request.by)
    .bind(&request.notes)
    .execute(pool)
    .await
    .map_err(unavailable)?;
    let printers = [request.printer.clone()];
    items(pool, &printers, Utc::now())
        .await
        .map_err(unavailable)?
        .into_iter()
        .find(|i| i.task_id == request.task_id)
        .ok_or_else(not_found)
}

/// The printers of the registry bucket, as maintenance sees them.
#[derive(Clone, Default)]
pub struct Printers(Arc<RwLock<HashMap<i64, MaintainedPrinter>>>);

impl Printers {
    pub fn all(&self) -> Vec<MaintainedPrinter> {
        self.0
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    pub async fn follow(self, bucket: kv::Store, stop: CancellationToken) {
        printyard_service::kv_watch::follow(bucket, stop, move |entry| {
            let Some(id) = entry.key.rsplit('.').next().and_then(|i| i.parse().ok()) else {
                return;
            };
            let Ok(mut printers) = self.0.write() else {
                return;
            };
            match entry.operation {
                Operation::Put => {
                    if let Ok(record) = serde_json::from_slice::<PrinterRecord>(&entry.value) {
                        let model = record
                            .model
                            .as_deref()
                            .and_then(printyard_bambu::models::canonical)
                            .or_else(|| printyard_bambu::models::from_serial(&record.serial))
                            .map(str::to_owned)
                            .or(record.model.clone());
                        printers.insert(
                            id,
                            MaintainedPrinter {
                                id,
                                name: record.name,
                                site: record.site.as_str().to_owned(),
                                model,
                            },
                        );
                    }
                }
                Operation::Delete | Operation::Purge => {
                    printers.remove(&id);
                }
            }
        })
        .await
    }
}

/// Announces every cycle that fell due and was not announced yet, once each (the id makes a
/// second replica's publish a duplicate JetStream drops).
pub async fn announce_due(
    pool: &PgPool,
    jetstream: &async_nats::jetstream::Context,
    printers: &Printers,
) -> Result<usize, String> {
    let printers = printers.all();
    let due: Vec<MaintenanceItem> = items(pool, &printers, Utc::now())
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|i| i.state <= MaintenanceState::Due)
        .collect();
    let mut announced = 0;
    for item in due {
        let seen: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM stats.maintenance_announced
                             WHERE task_id = $1 AND printer_id = $2 AND since = $3)",
        )
        .bind(item.task_id)
        .bind(item.printer_id)
        .bind(item.since)
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())?;
        if seen {
            continue;
        }
        let site = printers
            .iter()
            .find(|p| p.id == item.printer_id)
            .and_then(|p| Site::parse(&p.site).ok())
            .unwrap_or_default();
        let data = MaintenanceDue {
            task_id: item.task_id,
            task: item.task.clone(),
            printer_id: item.printer_id,
            printer_name: item.printer_name.clone(),
            progress: item.progress,
            since: item.since,
        };
        let event = FarmEvent {
            id: maintenance_due_id(item.task_id, item.printer_id, item.since),
            kind: EventKind::MaintenanceDue,
            site,
            printer_id: item.printer_id,
            serial: String::new(),
            at: Utc::now(),
            data: serde_json::to_value(data).unwrap_or_default(),
        };
        printyard_service::farm_events::publish(jetstream, &event).await?;
        sqlx::query(
            "INSERT INTO stats.maintenance_announced (task_id, printer_id, since)
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(item.task_id)
        .bind(item.printer_id)
        .bind(item.since)
        .execute(pool)
        .await
        .map_err(|e| e.to_string())?;
        announced += 1;
    }
    Ok(announced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> MaintenanceTask {
        MaintenanceTask {
            id: 1,
            name: "Lubricate the rods".into(),
            printer_id: None,
            model: Some("P1S".into()),
            every_print_hours: Some(200.0),
            every_prints: Some(50),
            every_days: None,
            every_filament_g: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn the_interval_most_used_decides_and_the_states_follow_it() {
        let t = task();
        assert_eq!(progress(&t, 10, 100.0, 0.0, 3.0), 0.5);
        assert_eq!(progress(&t, 50, 10.0, 0.0, 3.0), 1.0);
        assert_eq!(state_of(0.5), MaintenanceState::Ok);
        assert_eq!(state_of(0.95), MaintenanceState::Soon);
        assert_eq!(state_of(1.0), MaintenanceState::Due);
        assert_eq!(state_of(1.2), MaintenanceState::Overdue);
        assert!(MaintenanceState::Overdue < MaintenanceState::Due);
    }

    #[test]
    fn a_model_task_applies_to_that_models_printers_only() {
        let printer = |model: Option<&str>| MaintainedPrinter {
            id: 3,
            name: "P".into(),
            site: "default".into(),
            model: model.map(str::to_owned),
        };
        assert!(applies(&task(), &printer(Some("p1s"))));
        assert!(!applies(&task(), &printer(Some("X1 Carbon"))));
        assert!(!applies(&task(), &printer(None)));
        let one = MaintenanceTask {
            printer_id: Some(3),
            model: None,
            ..task()
        };
        assert!(applies(&one, &printer(None)));
        let every = MaintenanceTask {
            printer_id: None,
            model: None,
            ..task()
        };
        assert!(applies(&every, &printer(None)));
    }
}
