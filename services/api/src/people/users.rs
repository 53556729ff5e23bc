//! Users: accounts with a role and their own scope, signing in with a password, through
//! single sign-on, or both. Repeated failed sign-ins lock the account for a while.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// A user as listed: never with a password hash.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub role: String,
    /// Sites the user is limited to (empty: as far as the role reaches).
    pub sites: Vec<String>,
    /// Printers the user is limited to (empty: as far as the role reaches).
    pub printer_ids: Vec<i64>,
    pub enabled: bool,
    /// Whether the user can sign in with a password (SSO-only users cannot).
    pub has_password: bool,
    /// Whether the user signs in through single sign-on.
    pub sso: bool,
    /// While set and in the future, password sign-in is refused.
    pub locked_until: Option<DateTime<Utc>>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, username, email, role, sites, printer_ids, enabled, \
    password_hash IS NOT NULL AS has_password, oidc_subject IS NOT NULL AS sso, \
    locked_until, last_login_at, created_at";

pub async fn list(pool: &PgPool) -> Result<Vec<User>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api.users ORDER BY lower(username)"
    )))
    .fetch_all(pool)
    .await
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api.users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// A new user's fields (the password already hashed).
pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub password_hash: Option<String>,
    pub role: &'a str,
    pub sites: &'a [String],
    pub printer_ids: &'a [i64],
}

/// Why a user could not be stored.
pub enum Refused {
    UsernameTaken,
    UnknownRole,
}

fn refused(err: &sqlx::Error) -> Option<Refused> {
    let db = err.as_database_error()?;
    match db.code().as_deref() {
        Some("23505") => Some(Refused::UsernameTaken),
        Some("23503") => Some(Refused::UnknownRole),
        _ => None,
    }
}

pub async fn create(pool: &PgPool, new: NewUser<'_>) -> Result<Result<User, Refused>, sqlx::Error> {
    let created = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO api.users (username, email, password_hash, role, sites, printer_ids)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    )))
    .bind(new.username)
    .bind(new.email)
    .bind(new.password_hash)
    .bind(new.role)
    .bind(new.sites)
    .bind(new.printer_ids)
    .fetch_one(pool)
    .await;
    match created {
        Ok(user) => Ok(Ok(user)),
        Err(err) => match refused(&err) {
            Some(reason) => Ok(Err(reason)),
            None => Err(err),
        },
    }
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Default)]
pub struct UserChange {
    pub email: Option<Option<String>>,
    pub password_hash: Option<String>,
    pub role: Option<String>,
    pub sites: Option<Vec<String>>,
    pub printer_ids: Option<Vec<i64>>,
    pub enabled: Option<bool>,
}

pub async fn update(
    pool: &PgPool,
    id: i64,
    change: UserChange,
) -> Result<Result<Option<User>, Refused>, sqlx::Error> {
    let (email_set, email) = match change.email {
        Some(email) => (true, email),
        None => (false, None),
    };
    let updated = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE api.users SET
            email = CASE WHEN $2 THEN $3 ELSE email END,
            password_hash = COALESCE($4, password_hash),
            role = COALESCE($5, role),
            sites = COALESCE($6, sites),
            printer_ids = COALESCE($7, printer_ids),
            enabled = COALESCE($8, enabled),
            -- a new password or re-enabling lifts a lockout
            failed_logins = CASE WHEN $4 IS NOT NULL OR $8 THEN 0 ELSE failed_logins END,
            locked_until = CASE WHEN $4 IS NOT NULL OR $8 THEN NULL ELSE locked_until END
          WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(email_set)
    .bind(email)
    .bind(change.password_hash)
    .bind(change.role)
    .bind(change.sites)
    .bind(change.printer_ids)
    .bind(change.enabled)
    .fetch_optional(pool)
    .await;
    match updated {
        Ok(user) => Ok(Ok(user)),
        Err(err) => match refused(&err) {
            Some(reason) => Ok(Err(reason)),
            None => Err(err),
        },
    }
}

pub async fn delete(pool: &PgPool, id: i64) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM api.users WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected()
        > 0)
}

/// What a password sign-in needs of a user.
#[derive(Debug, sqlx::FromRow)]
pub struct SignInRow {
    pub id: i64,
    pub username: String,
    pub password_hash: Option<String>,
    pub enabled: bool,
    pub locked_until: Option<DateTime<Utc>>,
}

pub async fn for_sign_in(pool: &PgPool, username: &str) -> Result<Option<SignInRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, username, password_hash, enabled, locked_until
           FROM api.users WHERE lower(username) = lower($1)",
    )
    .bind(username)
    .fetch_optional(pool)
    .await
}

/// Counts a failed sign-in; the `limit`th in a row locks the account for `lockout` (and the
/// count starts again). Returns the failures in a row so far and the lock's end, if any.
pub async fn sign_in_failed(
    pool: &PgPool,
    id: i64,
    limit: u32,
    lockout: std::time::Duration,
) -> Result<(i32, Option<DateTime<Utc>>), sqlx::Error> {
    sqlx::query_as(
        "UPDATE api.users SET
            failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END,
            locked_until = CASE WHEN failed_logins + 1 >= $2
                THEN now() + make_interval(secs => $3) ELSE locked_until END
          WHERE id = $1
          RETURNING CASE WHEN failed_logins = 0 THEN $2 ELSE failed_logins END, locked_until",
    )
    .bind(id)
    .bind(limit as i32)
    .bind(lockout.as_secs_f64())
    .fetch_one(pool)
    .await
}

pub async fn signed_in(pool: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api.users SET failed_logins = 0, locked_until = NULL, last_login_at = now()
          WHERE id = $1",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// The user single sign-on names (`issuer`, `subject`), created on first sign-in with
/// `username` (made unique when taken) and kept in the role the provider's claim maps to.
/// `None` when the user exists and is disabled.
pub async fn sso_upsert(
    pool: &PgPool,
    issuer: &str,
    subject: &str,
    username: &str,
    email: Option<&str>,
    role: &str,
) -> Result<Option<User>, sqlx::Error> {
    let existing: Option<User> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE api.users SET role = $3, email = COALESCE($4, email), last_login_at = now()
          WHERE oidc_issuer = $1 AND oidc_subject = $2 RETURNING {COLUMNS}"
    )))
    .bind(issuer)
    .bind(subject)
    .bind(role)
    .bind(email)
    .fetch_optional(pool)
    .await?;
    if let Some(user) = existing {
        return Ok(user.enabled.then_some(user));
    }
    for attempt in 0..20 {
        let name = if attempt == 0 {
            username.to_owned()
        } else {
            format!("{username}-{attempt}")
        };
        let created = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO api.users (username, email, role, oidc_issuer, oidc_subject, last_login_at)
             VALUES ($1, $2, $3, $4, $5, now())
             ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
        )))
        .bind(&name)
        .bind(email)
        .bind(role)
        .bind(issuer)
        .bind(subject)
        .fetch_optional(pool)
        .await?;
        if let Some(user) = created {
            return Ok(Some(user));
        }
        // Another replica created the same SSO user at the same moment: take that one.
        let raced: Option<User> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api.users WHERE oidc_issuer = $1 AND oidc_subject = $2"
        )))
        .bind(issuer)
        .bind(subject)
        .fetch_optional(pool)
        .await?;
        if let Some(user) = raced {
            return Ok(user.enabled.then_some(user));
        }
    }
    Err(sqlx::Error::Protocol(
        "no free username for a single sign-on user".into(),
    ))
}
