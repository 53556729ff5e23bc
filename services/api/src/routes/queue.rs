//! `/queue`: the reference's print queue (list, add, remove, reorder) with Printyard's targets
//! (model, site), print options and waiting reasons. The `scheduler` owns the queue; `api`
//! resolves the printer a job asks for (it owns the registry) and passes the rest on.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use printyard_contracts::ErrorBody;
use printyard_contracts::queue::{
    self as contract, AddJob, JobId, JobRemoved, JobStatus, ListJobs, NewJob, QueueJob, Reorder,
    TargetPrinter,
};
use serde::Deserialize;

use crate::auth::access::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

/// Jobs per answer when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 1000;
pub const MAX_LIMIT: i64 = 10_000;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// Jobs asked for this printer or sent to it.
    pub printer_id: Option<i64>,
    /// `pending`, `printing`, `completed` (the reference's), `dispatching`, `failed`,
    /// `cancelled`.
    #[param(value_type = Option<JobStatus>)]
    pub status: Option<String>,
    /// 1 to 10000, default 1000 (in queue order).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(printyard_contracts::ErrorCode::ValidationError, detail)
}

#[utoipa::path(get, path = "/queue", tag = "queue", operation_id = "listQueue",
    params(QueueQuery),
    responses((status = 200, description = "The jobs in queue order", body = Vec<QueueJob>), (status = 401, description = "No or invalid API key", body = ErrorBody), (status = 403, description = "The key lacks the read permission", body = ErrorBody), (status = 422, description = "A bad filter", body = ErrorBody), (status = 429, description = "Rate limited", body = ErrorBody), (status = 503, description = "The scheduler is unavailable", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<QueueQuery>,
) -> Result<Json<Vec<QueueJob>>, ApiError> {
    let status = query
        .status
        .as_deref()
        .map(|s| {
            JobStatus::parse(s).ok_or_else(|| {
                invalid(
                    "Invalid query `status`: one of pending, dispatching, printing, completed, \
                     failed, cancelled",
                )
            })
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid(format!("Invalid query `limit`: 1 to {MAX_LIMIT}")));
    }
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(invalid("Invalid query `offset`: must not be negative"));
    }
    if !caller.reach.is_unlimited() {
        // The queue is at most MAX_LIMIT jobs: read it whole, keep what is within reach, page.
        let jobs = reachable_jobs(&state, &caller, query.printer_id, status).await?;
        return Ok(Json(
            jobs.into_iter()
                .skip(offset as usize)
                .take(limit as usize)
                .collect(),
        ));
    }
    let request = ListJobs {
        printer_id: query.printer_id,
        status,
        limit,
        offset,
    };
    let list = state.rpc.call(contract::LIST, &request).await?;
    Ok(Json(list.jobs))
}

/// Whether a job is within a caller's reach: the printer it asked for or went to, else the
/// whole site it asked for; a job for any printer anywhere only for a caller not limited.
fn job_within_reach(state: &AppState, caller: &Caller, job: &QueueJob) -> bool {
    if caller.reach.is_unlimited() {
        return true;
    }
    match (job.printer_id.or(job.printer_assigned), job.site.as_deref()) {
        (Some(printer), _) => caller.reach.allows_printer(state, printer),
        (None, Some(site)) => caller.reach.allows_whole_site(site),
        (None, None) => false,
    }
}

async fn reachable_jobs(
    state: &AppState,
    caller: &Caller,
    printer_id: Option<i64>,
    status: Option<JobStatus>,
) -> Result<Vec<QueueJob>, ApiError> {
    let request = ListJobs {
        printer_id,
        status,
        limit: MAX_LIMIT,
        offset: 0,
    };
    let list = state.rpc.call(contract::LIST, &request).await?;
    Ok(list
        .jobs
        .into_iter()
        .filter(|job| job_within_reach(state, caller, job))
        .collect())
}

/// `Ok` when every job of `ids` is within the caller's reach; an unknown job's answer
/// otherwise.
async fn check_jobs(state: &AppState, caller: &Caller, ids: &[i64]) -> Result<(), ApiError> {
    if caller.reach.is_unlimited() {
        return Ok(());
    }
    let reachable: std::collections::HashSet<i64> = reachable_jobs(state, caller, None, None)
        .await?
        .into_iter()
        .map(|job| job.id)
        .collect();
    match ids.iter().find(|id| !reachable.contains(id)) {
        Some(id) => Err(ApiError::not_found(format!("Job {id} not found"))),
        None => Ok(()),
    }
}

#[utoipa::path(post, path = "/queue", tag = "queue", operation_id = "addToQueue",
    request_body = NewJob,
    responses((status = 201, description = "The job, queued", body = QueueJob), (status = 400, description = "Malformed JSON", body = ErrorBody), (status = 401, description = "No or invalid API key", body = ErrorBody), (status = 403, description = "The key lacks the write permission", body = ErrorBody), (status = 404, description = "No such archive or printer", body = ErrorBody), (status = 413, description = "Body too large", body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, description = "The archive has no file or no such plate, the printer or model is not the one the file was sliced for, or a bad field", body = ErrorBody), (status = 429, description = "Rate limited", body = ErrorBody), (status = 503, description = "The scheduler or the archive is unavailable", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn add(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(job): ApiJson<NewJob>,
) -> Result<(StatusCode, Json<QueueJob>), ApiError> {
    // A limited caller's job goes only to printers within reach: one of them, or any printer
    // of a site wholly within reach.
    if !caller.reach.is_unlimited() && job.printer_id.is_none() {
        match job.site.as_deref() {
            Some(site) => caller.reach.check_whole_site(site)?,
            None => {
                return Err(ApiError::new(
                    printyard_contracts::ErrorCode::Forbidden,
                    "You are limited to some printers: give `printer_id`, or a `site` wholly \
                     within your reach",
                ));
            }
        }
    }
    let printer = match job.printer_id {
        Some(id) => {
            caller.reach.check_printer(&state, id).await?;
            let row = state.registry.get(id).await?;
            let detected = state.statuses.get(id).and_then(|s| s.model);
            let model = row.model_name(detected.as_deref());
            Some(TargetPrinter {
                id,
                name: row.name,
                model,
                site: row.site,
            })
        }
        None => None,
    };
    let created = state
        .rpc
        .call(contract::ADD, &AddJob { job, printer })
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(delete, path = "/queue/{id}", tag = "queue", operation_id = "removeFromQueue",
    params(("id" = i64, Path, description = "The job")),
    responses((status = 200, description = "The job was removed", body = JobRemoved), (status = 400, description = "The id is not a number", body = ErrorBody), (status = 401, description = "No or invalid API key", body = ErrorBody), (status = 403, description = "The key lacks the write permission", body = ErrorBody), (status = 404, description = "No such job", body = ErrorBody), (status = 409, description = "The job is dispatching or printing (JOB_PRINTING): stop the print instead", body = ErrorBody), (status = 429, description = "Rate limited", body = ErrorBody), (status = 503, description = "The scheduler is unavailable", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<JobRemoved>, ApiError> {
    check_jobs(&state, &caller, &[id]).await?;
    Ok(Json(state.rpc.call(contract::REMOVE, &JobId { id }).await?))
}

#[utoipa::path(post, path = "/queue/reorder", tag = "queue", operation_id = "reorderQueue",
    request_body = Reorder,
    responses((status = 200, description = "The reordered jobs, in their new order", body = Vec<QueueJob>), (status = 400, description = "Malformed JSON", body = ErrorBody), (status = 401, description = "No or invalid API key", body = ErrorBody), (status = 403, description = "The key lacks the write permission", body = ErrorBody), (status = 413, description = "Body too large", body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, description = "An unknown or repeated job id: nothing changed", body = ErrorBody), (status = 429, description = "Rate limited", body = ErrorBody), (status = 503, description = "The scheduler is unavailable", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn reorder(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(order): ApiJson<Reorder>,
) -> Result<Json<Vec<QueueJob>>, ApiError> {
    check_jobs(&state, &caller, &order.order).await?;
    Ok(Json(state.rpc.call(contract::REORDER, &order).await?.jobs))
}
