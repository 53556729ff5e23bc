//! Sign-in and who is signed in: `POST /auth/login` (username and password), `POST
//! /auth/logout`, `GET /auth/me`, and single sign-on (`GET /auth/sso`, `/auth/sso/login`, the
//! provider's `/auth/sso/callback`).
//!
//! A sign-in answers with two cookies: `printyard_session` (the session token: `HttpOnly`,
//! `SameSite=Strict`, `Secure` behind TLS) and `printyard_csrf` (readable by the page, which
//! sends it back as `X-CSRF-Token` on every change; see [`crate::people::sessions`]).

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use printyard_contracts::{ErrorBody, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::auth::access::{AuditActor, Caller, Permission};
use crate::auth::credential::Actor;
use crate::auth::key_cache::revoke_everywhere;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::people::passwords::{self, Password};
use crate::people::sessions::{self, NewSession};
use crate::people::sso::SsoError;
use crate::people::users::{self, User};
use crate::state::AppState;

/// The cookie the page reads its CSRF token from.
pub const CSRF_COOKIE: &str = "printyard_csrf";

/// A password sign-in.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    #[schema(min_length = 1, max_length = 100)]
    pub username: String,
    #[schema(value_type = String, format = Password, min_length = 1, max_length = 1000)]
    pub password: Password,
}

/// A session begun.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignedIn {
    pub user: User,
    /// Send it as `X-CSRF-Token` with every state-changing request made with the session
    /// cookie (the `printyard_csrf` cookie carries it too).
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// Who a request speaks for, and what it may do and reach.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    /// `user` or `key`.
    pub kind: String,
    /// The user's or the key's id.
    pub id: i64,
    /// The username, or the key's name.
    pub name: String,
    /// A user's role.
    pub role: Option<String>,
    pub permissions: Vec<Permission>,
    /// The printers within reach when limited by sites or printers; absent: every printer.
    pub printer_ids: Option<Vec<i64>>,
}

/// Whether single sign-on is offered, for the sign-in page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SsoInfo {
    pub enabled: bool,
    /// The button's label.
    pub display_name: Option<String>,
    /// Where the button leads (`/api/v1/auth/sso/login`).
    pub login_url: Option<String>,
}

fn with_actor(
    mut response: Response,
    label: &str,
    id: Option<i64>,
    kind: &'static str,
) -> Response {
    response.extensions_mut().insert(AuditActor {
        kind,
        id,
        label: label.to_owned(),
    });
    response
}

fn session_cookies(
    session: &NewSession,
    headers: &HeaderMap,
) -> AppendHeaders<[(header::HeaderName, HeaderValue); 2]> {
    let secure = sessions::over_tls(headers);
    let max_age = (session.expires_at - Utc::now()).num_seconds().max(0);
    let session_cookie = sessions::set_cookie(session.token.reveal(), max_age, secure);
    let csrf_cookie = format!(
        "{CSRF_COOKIE}={}; Path=/; Max-Age={max_age}; SameSite=Strict{}",
        session.csrf.reveal(),
        if secure { "; Secure" } else { "" }
    );
    let value = |v: String| HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""));
    AppendHeaders([
        (header::SET_COOKIE, value(session_cookie)),
        (header::SET_COOKIE, value(csrf_cookie)),
    ])
}

#[utoipa::path(
    post, path = "/auth/login", operation_id = "login", tag = "people",
    request_body = Login,
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = SignedIn),
        (status = 400, body = ErrorBody),
        (status = 401, description = "Wrong username or password", body = ErrorBody),
        (status = 403, description = "The account is disabled", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, description = "Locked after repeated failures; `Retry-After` says how long", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
)]
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<Login>,
) -> Result<Response, ApiError> {
    let username = request.username.trim().to_owned();
    let tried: String = username.chars().take(100).collect();
    let response = match sign_in(&state, &headers, &username, request.password).await {
        Ok((user, response)) => with_actor(response, &user.username, Some(user.id), "user"),
        Err((err, retry)) => {
            let mut response = err.into_response();
            if let Some(retry) = retry {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(retry.as_secs().max(1)));
            }
            with_actor(
                response,
                &format!("sign-in as {tried:?}"),
                None,
                "anonymous",
            )
        }
    };
    Ok(response)
}

async fn sign_in(
    state: &AppState,
    headers: &HeaderMap,
    username: &str,
    password: Password,
) -> Result<(User, Response), (ApiError, Option<Duration>)> {
    let wrong = || ApiError::new(ErrorCode::Unauthorized, "Wrong username or password");
    if username.is_empty()
        || username.chars().count() > 100
        || password.expose().chars().count() > 1000
    {
        return Err((wrong(), None));
    }
    let people = &state.people;
    let row = users::for_sign_in(&state.db, username)
        .await
        .map_err(|e| (e.into(), None))?;
    if let Some(row) = &row
        && let Some(until) = row.locked_until
        && until > Utc::now()
    {
        let left = (until - Utc::now()).to_std().unwrap_or_default();
        return Err((
            ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "Too many failed sign-ins: this account is locked for {} more seconds",
                    left.as_secs().max(1)
                ),
            ),
            Some(left),
        ));
    }
    let stored = row.as_ref().and_then(|r| r.password_hash.clone());
    let matches = passwords::verify(password, stored).await;
    let Some(row) = row else {
        tokio::time::sleep(Duration::from_millis(people.failure_delay_ms)).await;
        return Err((wrong(), None));
    };
    if !matches {
        let (failures, locked) = users::sign_in_failed(
            &state.db,
            row.id,
            people.lockout_failures.max(1),
            people.lockout(),
        )
        .await
        .map_err(|e| (e.into(), None))?;
        let delay = Duration::from_millis(people.failure_delay_ms * failures.max(1) as u64)
            .min(Duration::from_secs(5));
        tokio::time::sleep(delay).await;
        if let Some(until) = locked
            && until > Utc::now()
        {
            tracing::warn!(
                user_id = row.id,
                "account locked after repeated failed sign-ins"
            );
            let left = (until - Utc::now()).to_std().unwrap_or_default();
            return Err((
                ApiError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "Too many failed sign-ins: this account is locked for {} seconds",
                        left.as_secs().max(1)
                    ),
                ),
                Some(left),
            ));
        }
        return Err((wrong(), None));
    }
    if !row.enabled {
        return Err((
            ApiError::new(ErrorCode::Forbidden, "This account is disabled"),
            None,
        ));
    }
    users::signed_in(&state.db, row.id)
        .await
        .map_err(|e| (e.into(), None))?;
    begin_session(state, headers, row.id, "password")
        .await
        .map_err(|e| (e, None))
}

/// A session for user `id`: the JSON answer with both cookies.
async fn begin_session(
    state: &AppState,
    headers: &HeaderMap,
    id: i64,
    method: &str,
) -> Result<(User, Response), ApiError> {
    let user = users::get(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "Wrong username or password"))?;
    let session = sessions::create(&state.db, id, method, state.people.session_lifetime()).await?;
    tracing::info!(user_id = id, session_id = session.id, method, "signed in");
    let cookies = session_cookies(&session, headers);
    let body = SignedIn {
        user: user.clone(),
        csrf_token: session.csrf.reveal().to_owned(),
        expires_at: session.expires_at,
    };
    Ok((user, (StatusCode::OK, cookies, Json(body)).into_response()))
}

#[utoipa::path(
    post, path = "/auth/logout", operation_id = "logout", tag = "people",
    responses(
        (status = 204, description = "The session ended on every replica; cookies cleared"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn logout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Actor::User { session_id, .. } = caller.actor
        && let Some(prefix) = sessions::revoke(&state.db, session_id).await?
    {
        revoke_everywhere(&state, &prefix).await;
        tracing::info!(session_id, "signed out");
    }
    let secure = sessions::over_tls(&headers);
    let clear = |v: String| HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""));
    Ok((
        StatusCode::NO_CONTENT,
        AppendHeaders([
            (header::SET_COOKIE, clear(sessions::clear_cookie(secure))),
            (
                header::SET_COOKIE,
                clear(format!(
                    "{CSRF_COOKIE}=; Path=/; Max-Age=0; SameSite=Strict"
                )),
            ),
        ]),
    )
        .into_response())
}

#[utoipa::path(
    get, path = "/auth/me", operation_id = "getMe", tag = "people",
    responses(
        (status = 200, description = "Who this request speaks for", body = Me),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn me(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Me>, ApiError> {
    let (name, role) = match &caller.actor {
        Actor::Key { name, .. } => (name.clone(), None),
        Actor::User { id, username, .. } => {
            let role = users::get(&state.db, *id).await?.map(|u| u.role);
            (username.clone(), role)
        }
    };
    Ok(Json(Me {
        kind: caller.actor.kind().to_owned(),
        id: caller.actor.id(),
        name,
        role,
        permissions: caller.permissions.clone(),
        printer_ids: caller.reach.printer_ids(&state),
    }))
}

#[utoipa::path(
    get, path = "/auth/sso", operation_id = "getSso", tag = "people",
    responses((status = 200, description = "Whether single sign-on is offered", body = SsoInfo)),
)]
pub async fn sso_info(State(state): State<AppState>) -> Json<SsoInfo> {
    let config = state.sso.config();
    let enabled = config.enabled();
    Json(SsoInfo {
        enabled,
        display_name: enabled.then(|| config.display_name.clone()),
        login_url: enabled.then(|| format!("{}/auth/sso/login", crate::routes::BASE)),
    })
}

#[utoipa::path(
    get, path = "/auth/sso/login", operation_id = "beginSso", tag = "people",
    responses(
        (status = 303, description = "To the identity provider"),
        (status = 404, description = "Single sign-on is not configured", body = ErrorBody),
        (status = 503, description = "The identity provider cannot be reached", body = ErrorBody),
    ),
)]
pub async fn sso_login(State(state): State<AppState>) -> Result<Response, ApiError> {
    match state.sso.begin(&state.db).await {
        Ok(url) => Ok(redirect(&url)),
        Err(SsoError::Off) => Err(ApiError::not_found("Single sign-on is not configured")),
        Err(err) => {
            tracing::warn!(error = %err, "single sign-on could not start");
            Err(ApiError::new(
                ErrorCode::ServiceUnavailable,
                err.to_string(),
            ))
        }
    }
}

/// What the provider sends back.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    /// The provider's refusal (`access_denied`, …).
    pub error: Option<String>,
    pub error_description: Option<String>,
}

#[utoipa::path(
    get, path = "/auth/sso/callback", operation_id = "finishSso", tag = "people",
    params(Callback),
    responses(
        (status = 303, description = "Signed in: to the dashboard with the session cookie set; \
            refused: to the sign-in page with the reason"),
    ),
)]
pub async fn sso_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let failed = |reason: String| {
        tracing::warn!(reason = %reason, "single sign-on refused");
        let reason: String = reason.chars().take(300).collect();
        let encoded = url::form_urlencoded::byte_serialize(reason.as_bytes()).collect::<String>();
        let mut answer = with_actor(
            redirect(&format!("/#/signin?error={encoded}")),
            "single sign-on",
            None,
            "anonymous",
        );
        answer
            .extensions_mut()
            .insert(crate::audit::AuditOutcome("denied"));
        answer
    };
    if let Some(error) = callback.error {
        let description = callback.error_description.unwrap_or_default();
        return failed(format!(
            "The identity provider refused the sign-in: {error} {description}"
        ));
    }
    let (Some(code), Some(login_state)) = (callback.code, callback.state) else {
        return failed("The identity provider's answer had no code".into());
    };
    let identity = match state.sso.finish(&state.db, &code, &login_state).await {
        Ok(identity) => identity,
        Err(err) => return failed(err.to_string()),
    };
    let Some(role) = state.sso.config().role_for(&identity.groups) else {
        return failed(SsoError::NoRole.to_string());
    };
    let user = match users::sso_upsert(
        &state.db,
        &identity.issuer,
        &identity.subject,
        &identity.username,
        identity.email.as_deref(),
        &role,
    )
    .await
    {
        Ok(Some(user)) => user,
        Ok(None) => return failed(SsoError::Disabled.to_string()),
        Err(err) => {
            tracing::error!(error = %err, "single sign-on user not stored (is the mapped role defined?)");
            return failed("The user could not be stored; ask an administrator".into());
        }
    };
    // The role may have changed at the provider: every replica reads it afresh.
    revoke_everywhere(&state, crate::auth::key_cache::EVERYTHING).await;
    match begin_session(&state, &headers, user.id, "sso").await {
        Ok((user, response)) => {
            let cookies: Vec<HeaderValue> = response
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .cloned()
                .collect();
            let mut answer = redirect("/#/");
            for cookie in cookies {
                answer.headers_mut().append(header::SET_COOKIE, cookie);
            }
            with_actor(answer, &user.username, Some(user.id), "user")
        }
        Err(err) => failed(err.to_string()),
    }
}

fn redirect(to: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
        )],
    )
        .into_response()
}
