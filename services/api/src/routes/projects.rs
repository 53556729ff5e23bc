//! `/projects`: archives grouped towards a target, with their progress. Owned by `archive`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use printyard_contracts::ErrorBody;
use printyard_contracts::archive::{
    self as contract, ArchiveId, NewProject, Project, ProjectPatch, UpdateProject,
};
use printyard_contracts::rpc::Empty;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

#[utoipa::path(get, path = "/projects", operation_id = "listProjects", tag = "projects",
    responses((status = 200, body = Vec<Project>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<Project>>, ApiError> {
    let list = state.rpc.call(contract::PROJECT_LIST, &Empty {}).await?;
    Ok(Json(list.projects))
}

#[utoipa::path(get, path = "/projects/{id}", operation_id = "getProject", tag = "projects",
    params(("id" = i64, Path)),
    responses((status = 200, body = Project), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Project>, ApiError> {
    Ok(Json(
        state
            .rpc
            .call(contract::PROJECT_GET, &ArchiveId { id })
            .await?,
    ))
}

#[utoipa::path(post, path = "/projects", operation_id = "createProject", tag = "projects",
    request_body = NewProject,
    responses((status = 201, body = Project), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewProject>,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    let project = state.rpc.call(contract::PROJECT_CREATE, &new).await?;
    Ok((StatusCode::CREATED, Json(project)))
}

#[utoipa::path(patch, path = "/projects/{id}", operation_id = "updateProject", tag = "projects",
    params(("id" = i64, Path)), request_body = ProjectPatch,
    responses((status = 200, body = Project), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<ProjectPatch>,
) -> Result<Json<Project>, ApiError> {
    let request = UpdateProject { id, patch };
    Ok(Json(
        state.rpc.call(contract::PROJECT_UPDATE, &request).await?,
    ))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeletedProject {
    pub id: i64,
    pub deleted: bool,
}

/// Deletes a project; its archives stay, unlinked.
#[utoipa::path(delete, path = "/projects/{id}", operation_id = "deleteProject", tag = "projects",
    params(("id" = i64, Path)),
    responses((status = 200, body = DeletedProject), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<DeletedProject>, ApiError> {
    let deleted = state
        .rpc
        .call(contract::PROJECT_DELETE, &ArchiveId { id })
        .await?;
    Ok(Json(DeletedProject {
        id,
        deleted: deleted.deleted,
    }))
}
