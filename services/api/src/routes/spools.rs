//! `/spools`: the filament inventory. The `filament` service owns it; `api` passes requests on.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use printyard_contracts::filament::{
    self as contract, ListSpools, ListUsage, MaterialSummary, NewSpool, Spool, SpoolId, SpoolList,
    SpoolPatch, SpoolUsage, UpdateSpool,
};
use printyard_contracts::rpc::Empty;
use printyard_contracts::{ErrorBody, ErrorCode};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

fn invalid(detail: &str) -> ApiError {
    ApiError::new(ErrorCode::ValidationError, detail)
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SpoolsQuery {
    /// Only this material (`PLA`, `PETG`, any case).
    pub material: Option<String>,
    /// Only spools loaded in this printer.
    pub printer_id: Option<i64>,
    /// Loaded in a printer (`true`) or not (`false`).
    pub loaded: Option<bool>,
    /// Under their material's low-stock threshold (`true`) or not.
    pub low: Option<bool>,
    /// Archived spools instead of the others.
    pub archived: Option<bool>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

#[utoipa::path(get, path = "/spools", tag = "filament", operation_id = "listSpools",
    params(SpoolsQuery),
    responses((status = 200, description = "Spools by id, with the total matching", body = SpoolList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, description = "The filament service is unavailable", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SpoolsQuery>,
) -> Result<Json<SpoolList>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(invalid("Invalid query `limit`: 1 to 1000"));
    }
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(invalid("Invalid query `offset`: 0 or more"));
    }
    let filter = ListSpools {
        material: query.material.filter(|m| !m.trim().is_empty()),
        printer_id: query.printer_id,
        loaded: query.loaded,
        low: query.low,
        archived: query.archived,
        limit,
        offset,
    };
    Ok(Json(state.rpc.call(contract::LIST, &filter).await?))
}

#[utoipa::path(post, path = "/spools", tag = "filament", operation_id = "createSpool",
    request_body = NewSpool,
    responses((status = 201, description = "Created (loaded in the tray named, whose spool is unloaded)", body = Spool), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, description = "A spool with this tag exists", body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewSpool>,
) -> Result<(StatusCode, Json<Spool>), ApiError> {
    let spool = state.rpc.call(contract::CREATE, &new).await?;
    Ok((StatusCode::CREATED, Json(spool)))
}

#[utoipa::path(get, path = "/spools/summary", tag = "filament", operation_id = "spoolSummary",
    responses((status = 200, description = "Grams on hand per material and colour, spools in use and low, the last 30 days' use and the days it lasts at that rate", body = MaterialSummary), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn summary(State(state): State<AppState>) -> Result<Json<MaterialSummary>, ApiError> {
    Ok(Json(state.rpc.call(contract::SUMMARY, &Empty {}).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// What this print used.
    pub archive_id: Option<i64>,
    /// What was taken from this spool, newest first.
    pub spool_id: Option<i64>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/spools/usage", tag = "filament", operation_id = "listSpoolUsage",
    params(UsageQuery),
    responses((status = 200, description = "What prints used, per filament: grams, tray, spool", body = Vec<SpoolUsage>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, description = "Neither `archive_id` nor `spool_id`", body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn usage(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Json<Vec<SpoolUsage>>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(invalid("Invalid query `limit`: 1 to 1000"));
    }
    if query.archive_id.is_none() && query.spool_id.is_none() {
        return Err(invalid("Give `archive_id` or `spool_id`"));
    }
    let request = ListUsage {
        archive_id: query.archive_id,
        spool_id: query.spool_id,
        limit,
    };
    Ok(Json(state.rpc.call(contract::USAGE, &request).await?.usage))
}

#[utoipa::path(get, path = "/spools/{id}", tag = "filament", operation_id = "getSpool",
    params(("id" = i64, Path, description = "The spool")),
    responses((status = 200, description = "The spool", body = Spool), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Spool>, ApiError> {
    Ok(Json(state.rpc.call(contract::GET, &SpoolId { id }).await?))
}

#[utoipa::path(patch, path = "/spools/{id}", tag = "filament", operation_id = "updateSpool",
    params(("id" = i64, Path, description = "The spool")),
    request_body = SpoolPatch,
    responses((status = 200, description = "The spool as changed", body = Spool), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<SpoolPatch>,
) -> Result<Json<Spool>, ApiError> {
    let request = UpdateSpool { id, patch };
    Ok(Json(state.rpc.call(contract::UPDATE, &request).await?))
}

#[utoipa::path(delete, path = "/spools/{id}", tag = "filament", operation_id = "archiveSpool",
    params(("id" = i64, Path, description = "The spool")),
    responses((status = 200, description = "Archived (unloaded; its usage stays)", body = Spool), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn archive(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Spool>, ApiError> {
    Ok(Json(
        state.rpc.call(contract::ARCHIVE, &SpoolId { id }).await?,
    ))
}
