//! Printer care: maintenance tasks (per printer, per model, or for every printer) counted in
//! print hours, prints, filament and days since they were last done, owned by the `stats`
//! service (which keeps the facts they are counted from), and the `maintenance_due` event.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ServiceName;
use crate::rpc::{Empty, Endpoint};

/// An endpoint of the `stats` service, which owns maintenance.
const fn endpoint<Req, Resp>(name: &'static str) -> Endpoint<Req, Resp> {
    Endpoint::new(ServiceName::Stats, name)
}

/// A maintenance task: what to do, on which printers, how often (any interval reached makes it
/// due).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaintenanceTask {
    pub id: i64,
    /// "Lubricate the rods".
    pub name: String,
    /// One printer; `null` with `model` `null`: every printer.
    pub printer_id: Option<i64>,
    /// Every printer of this model ("P1S").
    pub model: Option<String>,
    pub every_print_hours: Option<f64>,
    pub every_prints: Option<i64>,
    pub every_days: Option<i64>,
    pub every_filament_g: Option<f64>,
    pub created_at: DateTime<Utc>,
}

/// `POST /maintenance/tasks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewMaintenanceTask {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub name: String,
    /// One printer (or give `model`, or neither for every printer).
    pub printer_id: Option<i64>,
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub model: Option<String>,
    /// At least one interval; each above zero.
    pub every_print_hours: Option<f64>,
    pub every_prints: Option<i64>,
    pub every_days: Option<i64>,
    pub every_filament_g: Option<f64>,
}

/// Where a printer stands with a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceState {
    /// More than 10 % past an interval.
    Overdue,
    /// An interval reached.
    Due,
    /// 90 % of an interval used.
    Soon,
    Ok,
}

/// A printer as the api tells the stats service about it (the api owns the registry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintainedPrinter {
    pub id: i64,
    pub name: String,
    pub site: String,
    /// Its model's marketing name, when known.
    pub model: Option<String>,
}

/// A task on one printer: how much of each interval is used since it was last done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaintenanceItem {
    pub task_id: i64,
    pub task: String,
    pub printer_id: i64,
    pub printer_name: String,
    pub state: MaintenanceState,
    /// The largest share of an interval used (1.0: due).
    pub progress: f64,
    /// Counted from: when it was last done, else when the task was made.
    pub since: DateTime<Utc>,
    pub prints: i64,
    pub print_hours: f64,
    pub filament_g: f64,
    pub days: f64,
    pub every_print_hours: Option<f64>,
    pub every_prints: Option<i64>,
    pub every_days: Option<i64>,
    pub every_filament_g: Option<f64>,
    /// Who did it last, and their notes.
    pub last_done_by: Option<String>,
    pub last_notes: Option<String>,
}

/// The api's question: the items of these printers (those the caller may reach).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListMaintenance {
    pub printers: Vec<MaintainedPrinter>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceItems {
    pub items: Vec<MaintenanceItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceTasks {
    pub tasks: Vec<MaintenanceTask>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskId {
    pub id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskDeleted {
    pub deleted: bool,
}

/// `POST /maintenance/{task_id}/done`: the api adds who.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkDone {
    pub task_id: i64,
    pub printer: MaintainedPrinter,
    pub by: String,
    pub notes: Option<String>,
}

/// The data of `maintenance_due`: a task fell due on a printer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceDue {
    pub task_id: i64,
    pub task: String,
    pub printer_id: i64,
    pub printer_name: String,
    pub progress: f64,
    /// Counted from (the cycle that fell due).
    pub since: DateTime<Utc>,
}

/// The event id of a task falling due on a printer in the cycle counted from `since`: one per
/// cycle, whichever replica sees it.
pub fn maintenance_due_id(task_id: i64, printer_id: i64, since: DateTime<Utc>) -> String {
    format!(
        "stats.maintenance_due.{task_id}.{printer_id}.{}",
        since.timestamp_millis()
    )
}

pub const TASKS: Endpoint<Empty, MaintenanceTasks> = endpoint("maintenance-tasks");
pub const CREATE_TASK: Endpoint<NewMaintenanceTask, MaintenanceTask> =
    endpoint("maintenance-task-create");
pub const DELETE_TASK: Endpoint<TaskId, TaskDeleted> = endpoint("maintenance-task-delete");
pub const LIST: Endpoint<ListMaintenance, MaintenanceItems> = endpoint("maintenance-list");
pub const DONE: Endpoint<MarkDone, MaintenanceItem> = endpoint("maintenance-done");
