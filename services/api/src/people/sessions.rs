//! Sessions: a sign-in's token (`pys_<id>_<secret>`, the shape of an API key) travels in an
//! `HttpOnly`, `SameSite=Strict` cookie (`Secure` behind TLS); a second random token, the CSRF
//! token, is given to the page and must come back in `X-CSRF-Token` on every state-changing
//! request made with the cookie. Only the SHA-256 of each is stored. A session ends when it
//! expires, on sign-out, or when its user is disabled or deleted; every replica forgets it at
//! once (see [`crate::auth::key_cache`]).

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::auth::credential::{Actor, Credential};
use crate::auth::keys::{self, ApiKeySecret, SESSION_SCHEME};
use crate::auth::scope::{Reach, Scope};

/// The cookie that carries the session token.
pub const COOKIE: &str = "printyard_session";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A new session's secrets, shown to the browser once.
pub struct NewSession {
    pub id: i64,
    pub token: ApiKeySecret,
    pub csrf: ApiKeySecret,
    pub expires_at: DateTime<Utc>,
}

pub async fn create(
    pool: &PgPool,
    user_id: i64,
    method: &str,
    lifetime: std::time::Duration,
) -> Result<NewSession, sqlx::Error> {
    let token = ApiKeySecret::generate_for(SESSION_SCHEME);
    let csrf = ApiKeySecret::generate_for("pyc");
    let (id, expires_at) = sqlx::query_as(
        "INSERT INTO api.sessions (prefix, token_hash, csrf_hash, user_id, method, expires_at)
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
         RETURNING id, expires_at",
    )
    .bind(token.prefix())
    .bind(token.hash().as_slice())
    .bind(csrf.hash().as_slice())
    .bind(user_id)
    .bind(method)
    .bind(lifetime.as_secs_f64())
    .fetch_one(pool)
    .await?;
    Ok(NewSession {
        id,
        token,
        csrf,
        expires_at,
    })
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: i64,
    token_hash: Vec<u8>,
    csrf_hash: Vec<u8>,
    expires_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    user_id: i64,
    username: String,
    user_sites: Vec<String>,
    user_printer_ids: Vec<i64>,
    permissions: Vec<String>,
    role_sites: Vec<String>,
    role_printer_ids: Vec<i64>,
}

/// The live session with `prefix` of an enabled user, as authentication needs it: the user's
/// role's permissions, and the reach both the user's and the role's scope allow.
pub async fn find(pool: &PgPool, prefix: &str) -> Result<Option<Credential>, sqlx::Error> {
    let row: Option<SessionRow> = sqlx::query_as(
        "SELECT s.id, s.token_hash, s.csrf_hash, s.expires_at, s.last_used_at,
                u.id AS user_id, u.username, u.sites AS user_sites,
                u.printer_ids AS user_printer_ids, r.permissions, r.sites AS role_sites,
                r.printer_ids AS role_printer_ids
           FROM api.sessions s
           JOIN api.users u ON u.id = s.user_id
           JOIN api.roles r ON r.name = u.role
          WHERE s.prefix = $1 AND s.revoked_at IS NULL AND s.expires_at > now() AND u.enabled",
    )
    .bind(prefix)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| Credential {
        hash: row.token_hash,
        csrf_hash: Some(row.csrf_hash),
        actor: Actor::User {
            id: row.user_id,
            username: row.username,
            session_id: row.id,
        },
        permissions: keys::parse_permissions(&row.permissions),
        reach: Reach::new([
            Scope {
                sites: row.user_sites,
                printer_ids: row.user_printer_ids,
            },
            Scope {
                sites: row.role_sites,
                printer_ids: row.role_printer_ids,
            },
        ]),
        expires_at: Some(row.expires_at),
        last_used_at: row.last_used_at,
    }))
}

/// Ends one session; its prefix, when it was live.
pub async fn revoke(pool: &PgPool, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE api.sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL
         RETURNING prefix",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Ends every session of a user; how many were live.
pub async fn revoke_user(pool: &PgPool, user_id: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE api.sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .execute(pool)
    .await?
    .rows_affected())
}

/// Records use, at most once a minute per session.
pub async fn touch(pool: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api.sessions SET last_used_at = now()
          WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Removes sessions that ended more than a day ago, and SSO logins never completed.
pub async fn sweep(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let sessions = sqlx::query(
        "DELETE FROM api.sessions
          WHERE coalesce(revoked_at, expires_at) < now() - interval '1 day'",
    )
    .execute(pool)
    .await?
    .rows_affected();
    sqlx::query("DELETE FROM api.sso_logins WHERE created_at < now() - interval '10 minutes'")
        .execute(pool)
        .await?;
    Ok(sessions)
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// The `Set-Cookie` value that gives the browser `token` until `expires_at` (`Secure` when the
/// request came over TLS, directly or through a proxy that says so).
pub fn set_cookie(token: &str, max_age_secs: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}")
}

/// The `Set-Cookie` value that makes the browser forget the session.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

/// Whether the request reached us over TLS (a proxy in front says so in `X-Forwarded-Proto`).
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others_and_set_http_only() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "cookie",
            "a=1; printyard_session=pys_x; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("pys_x"));
        assert_eq!(cookie(&headers, "c"), None);
        let set = set_cookie("pys_x", 60, true);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure")
        );
        assert!(!set_cookie("pys_x", 60, false).contains("Secure"));
    }
}
