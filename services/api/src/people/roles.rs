//! Roles: named sets of the four permissions, each optionally limited to sites and printers.
//! Four are built in (`viewer`, `operator`, `manager`, `admin`) and cannot be changed or
//! removed; a farm adds its own (say `north-operator`: read and control at site `north`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::auth::keys::Permission;

/// A role as listed.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Role {
    pub name: String,
    pub description: String,
    #[schema(value_type = Vec<Permission>)]
    pub permissions: Vec<String>,
    /// Sites the role is limited to (empty: not limited by site).
    pub sites: Vec<String>,
    /// Printers the role is limited to (empty: not limited by printer).
    pub printer_ids: Vec<i64>,
    /// Built-in roles cannot be changed or deleted.
    pub builtin: bool,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "name, description, permissions, sites, printer_ids, builtin, created_at";

pub async fn list(pool: &PgPool) -> Result<Vec<Role>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api.roles ORDER BY builtin DESC, name"
    )))
    .fetch_all(pool)
    .await
}

pub async fn get(pool: &PgPool, name: &str) -> Result<Option<Role>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api.roles WHERE name = $1"
    )))
    .bind(name)
    .fetch_optional(pool)
    .await
}

/// What a role is made of, for creating or replacing one.
#[derive(Debug, Clone, Default)]
pub struct RoleSpec {
    pub description: String,
    pub permissions: Vec<String>,
    pub sites: Vec<String>,
    pub printer_ids: Vec<i64>,
}

/// Creates `name`; `None` when a role of that name exists.
pub async fn create(
    pool: &PgPool,
    name: &str,
    spec: &RoleSpec,
) -> Result<Option<Role>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO api.roles (name, description, permissions, sites, printer_ids)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING RETURNING {COLUMNS}"
    )))
    .bind(name)
    .bind(&spec.description)
    .bind(&spec.permissions)
    .bind(&spec.sites)
    .bind(&spec.printer_ids)
    .fetch_optional(pool)
    .await
}

/// Replaces a farm-defined role's permissions and scope; `None` when there is no such role
/// (built-in roles count as none here: the caller tells them apart first).
pub async fn update(
    pool: &PgPool,
    name: &str,
    spec: &RoleSpec,
) -> Result<Option<Role>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE api.roles SET description = $2, permissions = $3, sites = $4, printer_ids = $5
          WHERE name = $1 AND NOT builtin RETURNING {COLUMNS}"
    )))
    .bind(name)
    .bind(&spec.description)
    .bind(&spec.permissions)
    .bind(&spec.sites)
    .bind(&spec.printer_ids)
    .fetch_optional(pool)
    .await
}

/// Why a role could not be deleted.
pub enum DeleteRefused {
    NotFound,
    Builtin,
    InUse(i64),
}

pub async fn delete(pool: &PgPool, name: &str) -> Result<Result<(), DeleteRefused>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(builtin) =
        sqlx::query_scalar::<_, bool>("SELECT builtin FROM api.roles WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(Err(DeleteRefused::NotFound));
    };
    if builtin {
        return Ok(Err(DeleteRefused::Builtin));
    }
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM api.users WHERE role = $1")
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
    if users > 0 {
        return Ok(Err(DeleteRefused::InUse(users)));
    }
    sqlx::query("DELETE FROM api.roles WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Ok(()))
}

/// Whether `name` is a valid role name: lower-case letters, digits, `-` and `_`, starting with
/// a letter, 1 to 40 characters.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 40
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}
