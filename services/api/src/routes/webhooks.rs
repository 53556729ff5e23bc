//! `/webhooks` (admin): subscriptions to the farm's events, their test and delivery log. The
//! `notifier` owns them; `api` passes requests on.
//!
//! A caller limited to some printers sees and manages only webhooks limited to printers in its
//! reach, and every webhook it creates is limited so (to the printers it names, or to every
//! printer in its reach when it was created).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use printyard_contracts::rpc::Empty;
use printyard_contracts::webhooks::{
    self as contract, CreatedWebhook, Delivery, DeliveryStatus, ListDeliveries, NewWebhook,
    UpdateWebhook, Webhook, WebhookDeleted, WebhookId, WebhookPatch,
};
use printyard_contracts::{ErrorBody, ErrorCode};
use serde::Deserialize;

use crate::auth::access::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

#[utoipa::path(get, path = "/webhooks", tag = "webhooks", operation_id = "listWebhooks",
    responses((status = 200, description = "Every webhook, without secrets", body = Vec<Webhook>), (status = 401, body = ErrorBody), (status = 403, description = "The key lacks the admin permission", body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, description = "The notifier is unavailable", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<Webhook>>, ApiError> {
    let hooks = state.rpc.call(contract::LIST, &Empty {}).await?.webhooks;
    Ok(Json(
        hooks
            .into_iter()
            .filter(|hook| within_reach(&state, &caller, hook))
            .collect(),
    ))
}

/// Whether a limited caller may see `hook`: it is limited to printers, all in reach.
fn within_reach(state: &AppState, caller: &Caller, hook: &Webhook) -> bool {
    caller.reach.is_unlimited()
        || hook
            .printer_ids
            .as_ref()
            .is_some_and(|ids| ids.iter().all(|&id| caller.reach.allows_printer(state, id)))
}

/// `Ok` when webhook `id` is within the caller's reach; an unknown webhook's answer otherwise.
async fn check_hook(state: &AppState, caller: &Caller, id: i64) -> Result<(), ApiError> {
    if caller.reach.is_unlimited() {
        return Ok(());
    }
    let hook = state.rpc.call(contract::GET, &WebhookId { id }).await?;
    if within_reach(state, caller, &hook) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("Webhook {id} not found")))
    }
}

/// The printers a limited caller's webhook is limited to: those it names, all in reach, or
/// every printer in reach now.
async fn reachable_printers(
    state: &AppState,
    caller: &Caller,
    named: Option<Vec<i64>>,
) -> Result<Vec<i64>, ApiError> {
    match named {
        Some(ids) => {
            for &id in &ids {
                caller.reach.check_printer(state, id).await?;
            }
            Ok(ids)
        }
        None => Err(ApiError::new(
            ErrorCode::Forbidden,
            "You are limited to some printers: a webhook of yours lists `printer_ids`",
        )),
    }
}

#[utoipa::path(post, path = "/webhooks", tag = "webhooks", operation_id = "createWebhook",
    request_body = NewWebhook,
    responses((status = 201, description = "Created; `secret` (the signing secret) is shown only here", body = CreatedWebhook), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, description = "The farm has the most webhooks it may have", body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, description = "A bad field, or a URL that is not http(s) or points at a refused address (loopback, link-local)", body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(mut new): ApiJson<NewWebhook>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    if !caller.reach.is_unlimited() {
        let named = new
            .printer_ids
            .take()
            .or_else(|| caller.reach.printer_ids(&state));
        new.printer_ids = Some(reachable_printers(&state, &caller, named).await?);
    }
    let created = state.rpc.call(contract::CREATE, &new).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks", operation_id = "getWebhook",
    params(("id" = i64, Path, description = "The webhook")),
    responses((status = 200, description = "The webhook, without its secret", body = Webhook), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Webhook>, ApiError> {
    let hook = state.rpc.call(contract::GET, &WebhookId { id }).await?;
    if !within_reach(&state, &caller, &hook) {
        return Err(ApiError::not_found(format!("Webhook {id} not found")));
    }
    Ok(Json(hook))
}

#[utoipa::path(patch, path = "/webhooks/{id}", tag = "webhooks", operation_id = "updateWebhook",
    params(("id" = i64, Path, description = "The webhook")),
    request_body = WebhookPatch,
    responses((status = 200, description = "The webhook as changed", body = Webhook), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(mut patch): ApiJson<WebhookPatch>,
) -> Result<Json<Webhook>, ApiError> {
    check_hook(&state, &caller, id).await?;
    if !caller.reach.is_unlimited()
        && let Some(change) = patch.printer_ids.take()
    {
        patch.printer_ids = Some(Some(reachable_printers(&state, &caller, change).await?));
    }
    let request = UpdateWebhook { id, patch };
    Ok(Json(state.rpc.call(contract::UPDATE, &request).await?))
}

#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks", operation_id = "deleteWebhook",
    params(("id" = i64, Path, description = "The webhook")),
    responses((status = 200, description = "Deleted, with its pending deliveries", body = WebhookDeleted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<WebhookDeleted>, ApiError> {
    check_hook(&state, &caller, id).await?;
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
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Delivery>, ApiError> {
    check_hook(&state, &caller, id).await?;
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
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    check_hook(&state, &caller, id).await?;
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
