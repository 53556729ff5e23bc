//! `/api-keys`: create (the secret is shown in that response only), list, revoke.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use printyard_contracts::{ErrorBody, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::auth::access::{Caller, Permission};
use crate::auth::keys::{self, ApiKey};
use crate::auth::scope::Scope;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

/// A new key's name and permissions.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// 1 to 100 characters, not all blank.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000]*\\S[^\\u0000]*$"
    )]
    pub name: String,
    /// At least one of `read`, `write`, `control`, `admin` (admin implies all).
    #[schema(min_items = 1)]
    pub permissions: Vec<Permission>,
    /// Sites the key is limited to (absent or empty: not limited by site).
    #[serde(default)]
    pub sites: Vec<String>,
    /// Printers the key is limited to (absent or empty: not limited by printer).
    #[serde(default)]
    pub printer_ids: Vec<i64>,
}

/// A created key: the only response that ever shows `key`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub api_key: ApiKey,
    /// The secret: store it now, it cannot be shown again.
    pub key: String,
}

/// `DELETE` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Revoked {
    pub id: i64,
    pub revoked: bool,
}

#[utoipa::path(
    post, path = "/api-keys", operation_id = "createApiKey", tag = "api-keys",
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created; `key` is shown only here", body = CreatedApiKey),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<CreateApiKey>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    let length = request.name.chars().count();
    if !(1..=100).contains(&length)
        || request.name.chars().all(char::is_whitespace)
        || request.name.contains('\0')
    {
        return Err(ApiError::new(
            ErrorCode::ValidationError,
            "Invalid field `name`: must be 1 to 100 characters, not all blank, no NUL",
        ));
    }
    let name = request.name.trim();
    if request.permissions.is_empty() {
        return Err(ApiError::new(
            ErrorCode::ValidationError,
            "Invalid field `permissions`: at least one permission is required",
        ));
    }
    let scope = Scope {
        sites: request.sites,
        printer_ids: request.printer_ids,
    }
    .validated()?;
    // A caller limited to some printers gives no more than it has: a key of its own printers.
    if !caller.reach.is_unlimited() {
        let reach = caller.reach.printer_ids(&state).unwrap_or_default();
        if !scope.sites.is_empty()
            || scope.printer_ids.is_empty()
            || scope.printer_ids.iter().any(|id| !reach.contains(id))
        {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "You are limited to some printers: a key you create must list `printer_ids`, \
                 all within your reach, and no `sites`",
            ));
        }
    }
    let (api_key, secret) = keys::create(&state.db, name, &request.permissions, &scope).await?;
    tracing::info!(key_id = api_key.id, prefix = %api_key.prefix, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            api_key,
            key: secret.reveal().to_owned(),
        }),
    ))
}

#[utoipa::path(
    get, path = "/api-keys", operation_id = "listApiKeys", tag = "api-keys",
    responses(
        (status = 200, description = "Live keys, newest first, without secrets", body = Vec<ApiKey>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<ApiKey>>, ApiError> {
    Ok(Json(keys::list(&state.db).await?))
}

#[utoipa::path(
    get, path = "/api-keys/current", operation_id = "getCurrentApiKey", tag = "api-keys",
    responses(
        (status = 200, description = "The key this request was made with, without its secret: \
            what a client (the dashboard) may offer its user", body = ApiKey),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn current(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<ApiKey>, ApiError> {
    let Some(key_id) = caller.key_id() else {
        return Err(ApiError::not_found(
            "This request was made with a session, not a key: see /auth/me",
        ));
    };
    // Revoked between authentication and here: as unknown as any revoked key.
    keys::get(&state.db, key_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "Invalid API key"))
}

#[utoipa::path(
    delete, path = "/api-keys/{id}", operation_id = "revokeApiKey", tag = "api-keys",
    params(("id" = i64, Path, description = "The key's id")),
    responses(
        (status = 200, description = "Revoked on every replica at once", body = Revoked),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn revoke(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Revoked>, ApiError> {
    let Some(prefix) = keys::revoke(&state.db, id).await? else {
        return Err(ApiError::not_found(format!("API key {id} not found")));
    };
    // Forgotten here and on every other replica before the answer: revocation is immediate.
    crate::auth::key_cache::revoke_everywhere(&state, &prefix).await;
    tracing::info!(key_id = id, "API key revoked");
    Ok(Json(Revoked { id, revoked: true }))
}
