//! `/maintenance`: printer care. Tasks (per printer, per model, or for every printer) and where
//! each printer stands with them, due and overdue first; `done` starts a task's next cycle.
//! The `stats` service owns them (it keeps the prints they are counted from); `api` names the
//! printers the caller may reach.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use printyard_bambu::models;
use printyard_contracts::maintenance::{
    self as contract, ListMaintenance, MaintainedPrinter, MaintenanceItem, MaintenanceTask,
    MarkDone, NewMaintenanceTask, TaskDeleted, TaskId,
};
use printyard_contracts::rpc::Empty;
use printyard_contracts::{ErrorBody, ErrorCode};
use serde::Deserialize;

use crate::auth::access::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::registry::PrinterRow;
use crate::state::AppState;

fn maintained(state: &AppState, row: PrinterRow) -> MaintainedPrinter {
    let detected = state.statuses.get(row.id).and_then(|s| s.model);
    // Canonical ("X1C" given is "X1 Carbon"), so that a model's tasks find it.
    let model = row
        .model_name(detected.as_deref())
        .map(|m| models::canonical(&m).map_or(m.clone(), str::to_owned));
    MaintainedPrinter {
        id: row.id,
        name: row.name,
        site: row.site,
        model,
    }
}

#[utoipa::path(get, path = "/maintenance", tag = "maintenance", operation_id = "listMaintenance",
    responses((status = 200, description = "Every task on every printer (in reach) it applies to: overdue, due, soon, then ok; most used first", body = Vec<MaintenanceItem>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<MaintenanceItem>>, ApiError> {
    let printers = state
        .registry
        .list()
        .await?
        .into_iter()
        .filter(|row| caller.reach.allows(row.id, Some(&row.site)))
        .map(|row| maintained(&state, row))
        .collect();
    let items = state
        .rpc
        .call(contract::LIST, &ListMaintenance { printers })
        .await?;
    Ok(Json(items.items))
}

/// Whether a limited caller may see or change `task`: one of its printers, or a task of a
/// model or of every printer (which applies to its printers too; only changed by callers not
/// limited).
fn task_visible(state: &AppState, caller: &Caller, task: &MaintenanceTask) -> bool {
    task.printer_id
        .is_none_or(|id| caller.reach.allows_printer(state, id))
}

#[utoipa::path(get, path = "/maintenance/tasks", tag = "maintenance", operation_id = "listMaintenanceTasks",
    responses((status = 200, description = "The tasks", body = Vec<MaintenanceTask>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn tasks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<MaintenanceTask>>, ApiError> {
    let tasks = state.rpc.call(contract::TASKS, &Empty {}).await?.tasks;
    Ok(Json(
        tasks
            .into_iter()
            .filter(|t| task_visible(&state, &caller, t))
            .collect(),
    ))
}

#[utoipa::path(post, path = "/maintenance/tasks", tag = "maintenance", operation_id = "createMaintenanceTask",
    request_body = NewMaintenanceTask,
    responses((status = 201, description = "Created", body = MaintenanceTask), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(new): ApiJson<NewMaintenanceTask>,
) -> Result<(StatusCode, Json<MaintenanceTask>), ApiError> {
    match new.printer_id {
        Some(id) => {
            caller.reach.check_printer(&state, id).await?;
            state.registry.get(id).await?;
        }
        None if !caller.reach.is_unlimited() => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "You are limited to some printers: a task of yours names its `printer_id`",
            ));
        }
        None => {}
    }
    let task = state.rpc.call(contract::CREATE_TASK, &new).await?;
    Ok((StatusCode::CREATED, Json(task)))
}

#[utoipa::path(delete, path = "/maintenance/tasks/{id}", tag = "maintenance", operation_id = "deleteMaintenanceTask",
    params(("id" = i64, Path, description = "The task")),
    responses((status = 200, description = "Deleted, with its history", body = TaskDeleted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<TaskDeleted>, ApiError> {
    if !caller.reach.is_unlimited() {
        let tasks = state.rpc.call(contract::TASKS, &Empty {}).await?.tasks;
        let mine = tasks
            .iter()
            .find(|t| t.id == id)
            .is_some_and(|t| t.printer_id.is_some() && task_visible(&state, &caller, t));
        if !mine {
            return Err(ApiError::not_found(format!(
                "Maintenance task {id} not found"
            )));
        }
    }
    Ok(Json(
        state
            .rpc
            .call(contract::DELETE_TASK, &TaskId { id })
            .await?,
    ))
}

/// `POST /maintenance/{id}/done`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Done {
    /// The printer it was done on.
    pub printer_id: i64,
    /// What was done, found or replaced.
    #[schema(max_length = 2000)]
    pub notes: Option<String>,
}

#[utoipa::path(post, path = "/maintenance/{id}/done", tag = "maintenance", operation_id = "markMaintenanceDone",
    params(("id" = i64, Path, description = "The task")),
    request_body = Done,
    responses((status = 200, description = "Recorded with who did it and when; the next cycle counts from now", body = MaintenanceItem), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "No such task, or it does not apply to the printer", body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn done(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(done): ApiJson<Done>,
) -> Result<Json<MaintenanceItem>, ApiError> {
    caller.reach.check_printer(&state, done.printer_id).await?;
    let row = state.registry.get(done.printer_id).await?;
    let request = MarkDone {
        task_id: id,
        printer: maintained(&state, row),
        by: caller.actor.label(),
        notes: done.notes.filter(|n| !n.trim().is_empty()),
    };
    Ok(Json(state.rpc.call(contract::DONE, &request).await?))
}
