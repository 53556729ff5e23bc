//! Who may call what: the permission and rate-limit class of every route, in one table, and
//! the middleware that enforces them (API key, rate limit, permission, in that order).
//!
//! A route that is missing from [`ROUTES`] is refused (fail closed) and a test fails, so no
//! endpoint can ship unprotected by accident.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use printyard_contracts::{ErrorBody, ErrorCode};

pub use super::keys::Permission;
use super::keys::{self, ApiKeySecret};
use super::rate_limit::Decision;
pub use super::rate_limit::RateClass;
use crate::error::error_response;
use crate::state::AppState;

/// The header that carries the API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// How a route is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No key needed: health, the API description and its docs page.
    Public,
    /// A key holding `permission`; the request counts against `class`.
    Key(Permission, RateClass),
}

use Access::{Key, Public};
use Permission as P;
use RateClass as C;

/// Every route of `/api/v1` with its protection. The permission table of docs/api.md mirrors it.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/api/v1/health", Public),
    ("GET", "/api/v1/openapi.json", Public),
    ("GET", "/api/v1/system/info", Key(P::Read, C::Read)),
    ("GET", "/api/v1/api-keys", Key(P::Admin, C::Read)),
    ("POST", "/api/v1/api-keys", Key(P::Admin, C::Write)),
    ("GET", "/api/v1/api-keys/current", Key(P::Read, C::Read)),
    ("DELETE", "/api/v1/api-keys/{id}", Key(P::Admin, C::Write)),
    ("GET", "/api/v1/printers", Key(P::Read, C::Read)),
    ("POST", "/api/v1/printers", Key(P::Write, C::Write)),
    ("GET", "/api/v1/printers/{id}", Key(P::Read, C::Read)),
    ("PATCH", "/api/v1/printers/{id}", Key(P::Write, C::Write)),
    ("DELETE", "/api/v1/printers/{id}", Key(P::Write, C::Write)),
    ("GET", "/api/v1/printers/{id}/status", Key(P::Read, C::Read)),
    (
        "POST",
        "/api/v1/printers/{id}/refresh-status",
        Key(P::Control, C::Control),
    ),
    (
        "POST",
        "/api/v1/printers/{id}/pause",
        Key(P::Control, C::Control),
    ),
    (
        "POST",
        "/api/v1/printers/{id}/resume",
        Key(P::Control, C::Control),
    ),
    (
        "POST",
        "/api/v1/printers/{id}/stop",
        Key(P::Control, C::Control),
    ),
    (
        "GET",
        "/api/v1/printers/{id}/camera/stream",
        Key(P::Read, C::Read),
    ),
    (
        "GET",
        "/api/v1/printers/{id}/camera/snapshot",
        Key(P::Read, C::Read),
    ),
    (
        "POST",
        "/api/v1/printers/{id}/camera/stop",
        Key(P::Control, C::Control),
    ),
    ("GET", "/api/v1/archives", Key(P::Read, C::Read)),
    ("POST", "/api/v1/archives", Key(P::Write, C::Write)),
    ("GET", "/api/v1/archives/export", Key(P::Read, C::Read)),
    ("GET", "/api/v1/archives/{id}", Key(P::Read, C::Read)),
    ("PATCH", "/api/v1/archives/{id}", Key(P::Write, C::Write)),
    ("DELETE", "/api/v1/archives/{id}", Key(P::Write, C::Write)),
    ("GET", "/api/v1/archives/{id}/3mf", Key(P::Read, C::Read)),
    (
        "GET",
        "/api/v1/archives/{id}/thumbnail",
        Key(P::Read, C::Read),
    ),
    ("GET", "/api/v1/projects", Key(P::Read, C::Read)),
    ("POST", "/api/v1/projects", Key(P::Write, C::Write)),
    ("GET", "/api/v1/projects/{id}", Key(P::Read, C::Read)),
    ("PATCH", "/api/v1/projects/{id}", Key(P::Write, C::Write)),
    ("DELETE", "/api/v1/projects/{id}", Key(P::Write, C::Write)),
    (
        "POST",
        "/api/v1/printers/{id}/clear-plate",
        Key(P::Control, C::Control),
    ),
    ("GET", "/api/v1/queue", Key(P::Read, C::Read)),
    ("POST", "/api/v1/queue", Key(P::Write, C::Write)),
    ("DELETE", "/api/v1/queue/{id}", Key(P::Write, C::Write)),
    ("POST", "/api/v1/queue/reorder", Key(P::Write, C::Write)),
    ("GET", "/api/v1/statistics", Key(P::Read, C::Read)),
    ("GET", "/api/v1/statistics/export", Key(P::Read, C::Read)),
    ("GET", "/api/v1/settings/costs", Key(P::Read, C::Read)),
    ("PUT", "/api/v1/settings/costs", Key(P::Admin, C::Write)),
    ("GET", "/api/v1/webhooks", Key(P::Admin, C::Read)),
    ("POST", "/api/v1/webhooks", Key(P::Admin, C::Write)),
    ("GET", "/api/v1/webhooks/{id}", Key(P::Admin, C::Read)),
    ("PATCH", "/api/v1/webhooks/{id}", Key(P::Admin, C::Write)),
    ("DELETE", "/api/v1/webhooks/{id}", Key(P::Admin, C::Write)),
    (
        "POST",
        "/api/v1/webhooks/{id}/test",
        Key(P::Admin, C::Write),
    ),
    (
        "GET",
        "/api/v1/webhooks/{id}/deliveries",
        Key(P::Admin, C::Read),
    ),
    ("GET", "/api/v1/events", Key(P::Read, C::Read)),
    ("GET", "/api/v1/spools", Key(P::Read, C::Read)),
    ("POST", "/api/v1/spools", Key(P::Write, C::Write)),
    ("GET", "/api/v1/spools/summary", Key(P::Read, C::Read)),
    ("GET", "/api/v1/spools/usage", Key(P::Read, C::Read)),
    ("GET", "/api/v1/spools/{id}", Key(P::Read, C::Read)),
    ("PATCH", "/api/v1/spools/{id}", Key(P::Write, C::Write)),
    ("DELETE", "/api/v1/spools/{id}", Key(P::Write, C::Write)),
];

/// The protection of `method` on the route template `path`.
pub fn access_for(method: &Method, path: &str) -> Option<Access> {
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, access)| *access)
}

/// The caller a request was authenticated as, for handlers that need it.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub key_id: i64,
}

fn refuse(code: ErrorCode, detail: &str) -> Response {
    error_response(ErrorBody::new(code, detail))
}

/// Middleware on every matched route: authenticate, rate-limit, authorise.
pub async fn authorize(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = matched.as_ref().map(MatchedPath::as_str).unwrap_or("");
    let (permission, class) = match access_for(request.method(), path) {
        Some(Public) => return next.run(request).await,
        Some(Key(permission, class)) => (permission, class),
        None => {
            tracing::error!(method = %request.method(), route = path, "route has no access rule; refused");
            return refuse(ErrorCode::Forbidden, "This endpoint has no permission rule");
        }
    };

    let Some(presented) = request.headers().get(API_KEY_HEADER) else {
        return refuse(ErrorCode::Unauthorized, "Missing X-API-Key header");
    };
    let Some(secret) = presented.to_str().ok().and_then(ApiKeySecret::parse) else {
        return refuse(ErrorCode::Unauthorized, "Invalid API key");
    };
    let stored = match state.keys.find(&state.db, secret.prefix()).await {
        Ok(Some(stored)) if secret.matches(&stored.key_hash) => stored,
        Ok(_) => return refuse(ErrorCode::Unauthorized, "Invalid API key"),
        Err(err) => return crate::error::ApiError::from(err).into_response(),
    };
    if state
        .keys
        .due_for_touch(secret.prefix(), stored.last_used_at)
    {
        let pool = state.db.clone();
        let key_id = stored.id;
        tokio::spawn(async move {
            if let Err(err) = keys::touch(&pool, key_id).await {
                tracing::warn!(error = %err, "could not record key use");
            }
        });
    }

    let decision = state.limiter.check(stored.id, class);
    if !decision.allowed {
        let mut response = refuse(
            ErrorCode::RateLimited,
            &format!(
                "Rate limit of {} {} requests per window exceeded",
                decision.limit,
                class.as_str()
            ),
        );
        let retry = decision.retry_after.as_secs().max(1);
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(retry));
        set_rate_headers(response.headers_mut(), &decision);
        return response;
    }

    let granted = stored
        .permissions
        .iter()
        .filter_map(|p| Permission::parse(p))
        .any(|p| p.grants(permission));
    let mut response = if granted {
        request
            .extensions_mut()
            .insert(Caller { key_id: stored.id });
        next.run(request).await
    } else {
        refuse(
            ErrorCode::Forbidden,
            &format!("This API key lacks the {} permission", permission.as_str()),
        )
    };
    set_rate_headers(response.headers_mut(), &decision);
    response
}

fn set_rate_headers(headers: &mut HeaderMap, decision: &Decision) {
    const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
    const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
    const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
    headers.insert(LIMIT, HeaderValue::from(decision.limit));
    headers.insert(REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(RESET, HeaderValue::from(decision.reset_epoch));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_grants_everything_and_others_only_themselves() {
        for needed in Permission::ALL {
            assert!(Permission::Admin.grants(needed));
        }
        assert!(Permission::Read.grants(Permission::Read));
        assert!(!Permission::Read.grants(Permission::Write));
        assert!(!Permission::Write.grants(Permission::Control));
        assert!(!Permission::Control.grants(Permission::Admin));
    }

    #[test]
    fn every_route_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for (method, path, _) in ROUTES {
            assert!(seen.insert((method, path)), "{method} {path} twice");
            assert!(path.starts_with("/api/v1/"), "{path}");
        }
    }
}
