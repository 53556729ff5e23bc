//! Who may call what: the permission and rate-limit class of every route, in one table, and
//! the middleware that enforces them (API key or session, rate limit, permission, in that
//! order).
//!
//! A route that is missing from [`ROUTES`] is refused (fail closed) and a test fails, so no
//! endpoint can ship unprotected by accident.

use axum::extract::{MatchedPath, OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use printyard_contracts::{ErrorBody, ErrorCode};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::credential::{Actor, Credential};
pub use super::keys::Permission;
use super::keys::{self, ApiKeySecret};
use super::rate_limit::Decision;
pub use super::rate_limit::RateClass;
use super::scope::Reach;
use crate::error::error_response;
use crate::people::sessions;
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
    // Sign-in is public (guarded by the lockout); what follows needs a session or a key.
    ("POST", "/api/v1/auth/login", Public),
    ("GET", "/api/v1/auth/sso", Public),
    ("GET", "/api/v1/auth/sso/login", Public),
    ("GET", "/api/v1/auth/sso/callback", Public),
    ("POST", "/api/v1/auth/logout", Key(P::Read, C::Write)),
    ("GET", "/api/v1/auth/me", Key(P::Read, C::Read)),
    ("GET", "/api/v1/users", Key(P::Admin, C::Read)),
    ("POST", "/api/v1/users", Key(P::Admin, C::Write)),
    ("GET", "/api/v1/users/{id}", Key(P::Admin, C::Read)),
    ("PATCH", "/api/v1/users/{id}", Key(P::Admin, C::Write)),
    ("DELETE", "/api/v1/users/{id}", Key(P::Admin, C::Write)),
    (
        "DELETE",
        "/api/v1/users/{id}/sessions",
        Key(P::Admin, C::Write),
    ),
    ("GET", "/api/v1/roles", Key(P::Admin, C::Read)),
    ("POST", "/api/v1/roles", Key(P::Admin, C::Write)),
    ("PUT", "/api/v1/roles/{name}", Key(P::Admin, C::Write)),
    ("DELETE", "/api/v1/roles/{name}", Key(P::Admin, C::Write)),
    ("GET", "/api/v1/audit", Key(P::Admin, C::Read)),
    ("GET", "/api/v1/audit/export", Key(P::Admin, C::Read)),
    ("GET", "/api/v1/printers", Key(P::Read, C::Read)),
    ("POST", "/api/v1/printers", Key(P::Write, C::Write)),
    ("GET", "/api/v1/printers/firmware", Key(P::Read, C::Read)),
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
    (
        "GET",
        "/api/v1/statistics/utilisation",
        Key(P::Read, C::Read),
    ),
    (
        "GET",
        "/api/v1/statistics/utilisation/export",
        Key(P::Read, C::Read),
    ),
    ("GET", "/api/v1/statistics/errors", Key(P::Read, C::Read)),
    ("GET", "/api/v1/printers/{id}/errors", Key(P::Read, C::Read)),
    (
        "POST",
        "/api/v1/printers/{id}/errors/{error_id}/retry",
        Key(P::Control, C::Control),
    ),
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
    ("GET", "/api/v1/maintenance", Key(P::Read, C::Read)),
    ("GET", "/api/v1/maintenance/tasks", Key(P::Read, C::Read)),
    ("POST", "/api/v1/maintenance/tasks", Key(P::Write, C::Write)),
    (
        "DELETE",
        "/api/v1/maintenance/tasks/{id}",
        Key(P::Write, C::Write),
    ),
    (
        "POST",
        "/api/v1/maintenance/{id}/done",
        Key(P::Control, C::Control),
    ),
    ("GET", "/api/v1/spools", Key(P::Read, C::Read)),
    ("POST", "/api/v1/spools", Key(P::Write, C::Write)),
    ("GET", "/api/v1/spools/summary", Key(P::Read, C::Read)),
    ("GET", "/api/v1/spools/usage", Key(P::Read, C::Read)),
    ("GET", "/api/v1/spools/{id}", Key(P::Read, C::Read)),
    ("PATCH", "/api/v1/spools/{id}", Key(P::Write, C::Write)),
    ("DELETE", "/api/v1/spools/{id}", Key(P::Write, C::Write)),
];

/// Routes about the whole farm (people, keys, the audit log, costs): a caller limited to some
/// printers is refused them rather than shown what is beyond its reach.
fn farm_wide(method: &Method, path: &str) -> bool {
    const PREFIXES: [&str; 3] = ["/api/v1/users", "/api/v1/roles", "/api/v1/audit"];
    PREFIXES.iter().any(|p| path.starts_with(p))
        || (path == "/api/v1/api-keys" && method == Method::GET)
        || path == "/api/v1/api-keys/{id}"
        || (path == "/api/v1/settings/costs" && method != Method::GET)
}

/// The protection of `method` on the route template `path`.
pub fn access_for(method: &Method, path: &str) -> Option<Access> {
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, access)| *access)
}

/// The caller a request was authenticated as (an API key or a signed-in person), with what it
/// may reach, for handlers that need it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    pub permissions: Vec<Permission>,
    pub reach: Reach,
}

impl Caller {
    /// The key's id, when the request was made with a key.
    pub fn key_id(&self) -> Option<i64> {
        match self.actor {
            Actor::Key { id, .. } => Some(id),
            Actor::User { .. } => None,
        }
    }

    pub fn grants(&self, needed: Permission) -> bool {
        self.permissions.iter().any(|p| p.grants(needed))
    }
}

/// Who made a request, as the audit log names them: put on the response by [`authorize`] (and
/// by the sign-in handlers, for the person who tried).
#[derive(Debug, Clone)]
pub struct AuditActor {
    pub kind: &'static str,
    pub id: Option<i64>,
    pub label: String,
}

impl From<&Actor> for AuditActor {
    fn from(actor: &Actor) -> Self {
        Self {
            kind: actor.kind(),
            id: Some(actor.id()),
            label: actor.label(),
        }
    }
}

fn refuse(code: ErrorCode, detail: &str) -> Response {
    error_response(ErrorBody::new(code, detail))
}

/// The request's whole path (a nested router sees its own part only).
pub fn full_path(request: &Request) -> String {
    request
        .extensions()
        .get::<OriginalUri>()
        .map(|uri| uri.path().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned())
}

fn safe_method(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The credential a request presents: `X-API-Key`, else the session cookie (whose
/// state-changing requests must carry the session's CSRF token).
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
) -> Result<(String, std::sync::Arc<Credential>), Response> {
    let (secret, via_cookie) = if let Some(presented) = headers.get(API_KEY_HEADER) {
        let Some(secret) = presented.to_str().ok().and_then(ApiKeySecret::parse) else {
            return Err(refuse(ErrorCode::Unauthorized, "Invalid API key"));
        };
        (secret, false)
    } else if let Some(token) = sessions::cookie(headers, sessions::COOKIE) {
        let Some(secret) = ApiKeySecret::parse_as(keys::SESSION_SCHEME, token) else {
            return Err(refuse(
                ErrorCode::Unauthorized,
                "Session ended: sign in again",
            ));
        };
        (secret, true)
    } else {
        return Err(refuse(
            ErrorCode::Unauthorized,
            "Missing X-API-Key header (or a signed-in session)",
        ));
    };
    let unknown = || {
        if via_cookie {
            refuse(ErrorCode::Unauthorized, "Session ended: sign in again")
        } else {
            refuse(ErrorCode::Unauthorized, "Invalid API key")
        }
    };
    let credential = match state.keys.find(&state.db, secret.prefix()).await {
        Ok(Some(found)) if secret.matches(&found.hash) && !found.expired() => found,
        Ok(_) => return Err(unknown()),
        Err(err) => return Err(crate::error::ApiError::from(err).into_response()),
    };
    if via_cookie && !safe_method(method) {
        let presented = headers
            .get(sessions::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| Sha256::digest(v.as_bytes()));
        let matches = match (presented, credential.csrf_hash.as_deref()) {
            (Some(presented), Some(stored)) => bool::from(presented.as_slice().ct_eq(stored)),
            _ => false,
        };
        if !matches {
            // The session is known: the audit log names whose cookie was used.
            let mut refused = refuse(
                ErrorCode::Forbidden,
                "Missing or wrong X-CSRF-Token: a state-changing request made with the session \
                 cookie must carry the token the sign-in gave",
            );
            refused
                .extensions_mut()
                .insert(AuditActor::from(&credential.actor));
            return Err(refused);
        }
    }
    Ok((secret.prefix().to_owned(), credential))
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

    let (prefix, credential) = match authenticate(&state, request.headers(), request.method()).await
    {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    if state.keys.due_for_touch(&prefix, credential.last_used_at) {
        let pool = state.db.clone();
        let actor = credential.actor.clone();
        tokio::spawn(async move {
            let touched = match actor {
                Actor::Key { id, .. } => keys::touch(&pool, id).await,
                Actor::User { session_id, .. } => sessions::touch(&pool, session_id).await,
            };
            if let Err(err) = touched {
                tracing::warn!(error = %err, "could not record key or session use");
            }
        });
    }
    let audit_actor = AuditActor::from(&credential.actor);

    let decision = state.limiter.check(credential.actor.rate_id(), class);
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
        response.extensions_mut().insert(audit_actor);
        return response;
    }

    // A printer's own routes: one out of reach answers as an unknown one would (nothing to
    // look at, on the hot path, for a caller not limited).
    let out_of_reach = if credential.reach.is_unlimited() || !credential.grants(permission) {
        None
    } else if let Some(id) = crate::audit::path_ids(path, &full_path(&request)).1 {
        credential.reach.check_printer(&state, id).await.err()
    } else {
        None
    };
    let mut response = if let Some(unknown) = out_of_reach {
        unknown.into_response()
    } else if credential.grants(permission)
        && !credential.reach.is_unlimited()
        && farm_wide(request.method(), path)
    {
        refuse(
            ErrorCode::Forbidden,
            "This concerns the whole farm; you are limited to some sites or printers",
        )
    } else if credential.grants(permission) {
        request.extensions_mut().insert(Caller {
            actor: credential.actor.clone(),
            permissions: credential.permissions.clone(),
            reach: credential.reach.clone(),
        });
        next.run(request).await
    } else {
        let whom = match credential.actor {
            Actor::Key { .. } => "This API key lacks",
            Actor::User { .. } => "Your role lacks",
        };
        refuse(
            ErrorCode::Forbidden,
            &format!("{whom} the {} permission", permission.as_str()),
        )
    };
    set_rate_headers(response.headers_mut(), &decision);
    response.extensions_mut().insert(audit_actor);
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
