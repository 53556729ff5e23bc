//! `/webhooks` (admin): subscriptions to the farm's events, their test and delivery log. The
//! `notifier` owns them; `api` passes requests on.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use printyard_contracts::ErrorBody;
use printyard_contracts::rpc::Empty;
use printyard_contracts::webhooks::{
    self as contract, CreatedWebhook, Delivery, DeliveryStatus, ListDeliveries, NewWebhook,
    UpdateWebhook, Webhook, WebhookDeleted, WebhookId, WebhookPatch,
};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

#[utoipa::path(get, path = "/webhooks", tag = "webhooks", operation_id = "listWebhooks",
    responses((status = 200, description = "Every webhook, without secrets", body = Vec<Webhook>), (status = 401, body = ErrorBody), (status = 403, description = "The key lacks the admin permission", body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, description = "The notifier is unavailable", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<Webhook>>, ApiError> {
    Ok(Json(
        state.rpc.call(contract::LIST, &Empty {}).await?.webhooks,
    ))
}

#[utoipa::path(post, path = "/webhooks", tag = "webhooks", operation_id = "createWebhook",
    request_body = NewWebhook,
    responses((status = 201, description = "Created; `secret` (the signing secret) is shown only here", body = CreatedWebhook), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, description = "The farm has the most webhooks it may have", body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, description = "A bad field, or a URL that is not http(s) or points at a refused address (loopback, link-local)", body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewWebhook>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let created = state.rpc.call(contract::CREATE, &new).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks", operation_id = "getWebhook",
    params(("id" = i64, Path, description = "The webhook")),
    responses((status = 200, description = "The webhook, without its secret", body = Webhook), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Webhook>, ApiError> {
    Ok(Json(
        state.rpc.call(contract::GET, &WebhookId { id }).await?,
    ))
}

#[utoipa::path(patch, path = "/webhooks/{id}", tag = "webhooks", operation_id = "updateWebhook",
    params(("id" = i64, Path, description = "The webhook")),
    request_body = WebhookPatch,
    responses((status = 200, description = "The webhook as changed", body = Webhook), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<WebhookPatch>,
) -> Result<Json<Webhook>, ApiError> {
    let request = UpdateWebhook { id, patch };
    Ok(Json(state.rpc.call(contract::UPDATE, &request).await?))
}

#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks", operation_id = "deleteWebhook",
    params(("id" = i64, Path, description = "The webhook")),
    responses((status = 200, description = "Deleted, with its pending deliveries", body = WebhookDeleted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<WebhookDeleted>, ApiError> {
    Ok(Json(
        state.rpc.call(contract::DELETE, &WebhookId { id }).await?,
    ))
}

#[utoipa::path(post, path = "/webhooks/{id}/test", tag = "webhooks", operation_id = "testWebhook",
    params(("id" = i64, Path, description = "The webhook")),
    responses((status = 200, description = "The test delivery, sent once: `delivered`, or `failed` with the answer's code or the reason", body = Delivery), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn test(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Delivery>, ApiError> {
    Ok(Json(
        state.rpc.call(contract::TEST, &WebhookId { id }).await?,
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// `pending`, `delivered` or `failed`.
    #[param(value_type = Option<DeliveryStatus>)]
    pub status: Option<String>,
    /// Deliveries older than this one (the last id of the previous page).
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks", operation_id = "listWebhookDeliveries",
    params(("id" = i64, Path, description = "The webhook"), DeliveriesQuery),
    responses((status = 200, description = "The delivery log, newest first: event, status, attempts, response code, latency, next retry", body = Vec<Delivery>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    let invalid =
        |detail: &str| ApiError::new(printyard_contracts::ErrorCode::ValidationError, detail);
    let status = query
        .status
        .as_deref()
        .map(|s| {
            DeliveryStatus::parse(s)
                .ok_or_else(|| invalid("Invalid query `status`: pending, delivered or failed"))
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(invalid("Invalid query `limit`: 1 to 1000"));
    }
    if query.before.is_some_and(|b| b < 1) {
        return Err(invalid("Invalid query `before`: a delivery id"));
    }
    let request = ListDeliveries {
        webhook_id: id,
        status,
        before: query.before,
        limit,
    };
    Ok(Json(
        state
            .rpc
            .call(contract::DELIVERIES, &request)
            .await?
            .deliveries,
    ))
}
