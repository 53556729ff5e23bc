//! API keys: generation, the secret's format, hashing, and their rows in `api.api_keys`.
//!
//! A key reads `pyk_<id>_<secret>` (a person's session token has the same shape, `pys_…`,
//! see [`crate::people::sessions`]): `pyk_<id>` is its public prefix (shown in listings and
//! used to find the row), `<secret>` 32 random bytes in URL-safe base64. Only the SHA-256 of
//! the whole key is stored, and compared in constant time. A key is never logged, traced or
//! echoed: it lives in [`ApiKeySecret`], whose `Debug` is redacted.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use super::credential::{Actor, Credential};
use super::scope::{Reach, Scope};

/// What a key may do. `admin` implies every other permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Write,
    Control,
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 4] = [
        Permission::Read,
        Permission::Write,
        Permission::Control,
        Permission::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Control => "control",
            Permission::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether holding `self` is enough for an endpoint that needs `needed`.
    pub fn grants(self, needed: Permission) -> bool {
        self == Permission::Admin || self == needed
    }
}

/// The scheme of API keys.
pub const KEY_SCHEME: &str = "pyk";
/// The scheme of session tokens.
pub const SESSION_SCHEME: &str = "pys";
const SCHEME_LEN: usize = 3;
const ID_LEN: usize = 8;
const ID_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A full API key (or session token), as given to its owner once.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeySecret({}_[redacted])", self.prefix())
    }
}

impl ApiKeySecret {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self::generate_for(KEY_SCHEME)
    }

    /// A fresh random token of `scheme` (`pyk` or `pys`).
    pub fn generate_for(scheme: &str) -> Self {
        debug_assert_eq!(scheme.len(), SCHEME_LEN);
        let mut rng = rand::rng();
        let id: String = (0..ID_LEN)
            .map(|_| ID_ALPHABET[(rng.next_u32() as usize) % ID_ALPHABET.len()] as char)
            .collect();
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        ApiKeySecret(format!("{scheme}_{id}_{}", URL_SAFE_NO_PAD.encode(secret)))
    }

    /// Checks the shape of a presented key; `None` when it cannot be one of ours.
    pub fn parse(presented: &str) -> Option<Self> {
        Self::parse_as(KEY_SCHEME, presented)
    }

    /// Checks the shape of a presented token of `scheme`.
    pub fn parse_as(scheme: &str, presented: &str) -> Option<Self> {
        let rest = presented.strip_prefix(scheme)?.strip_prefix('_')?;
        let (id, secret) = rest.split_once('_')?;
        let id_ok = id.len() == ID_LEN && id.bytes().all(|b| ID_ALPHABET.contains(&b));
        let secret_ok = secret.len() == 43
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (id_ok && secret_ok).then(|| ApiKeySecret(presented.to_owned()))
    }

    /// The public part: `pyk_<id>`.
    pub fn prefix(&self) -> &str {
        &self.0[..SCHEME_LEN + 1 + ID_LEN]
    }

    /// The SHA-256 that is stored instead of the key.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// Compares with a stored hash in constant time.
    pub fn matches(&self, stored: &[u8]) -> bool {
        stored.len() == 32 && bool::from(self.hash().as_slice().ct_eq(stored))
    }

    /// The key itself, for the one response that shows it.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

/// An API key as listed: never with its secret.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    /// The key's public prefix (`pyk_xxxxxxxx`), to tell keys apart.
    pub prefix: String,
    #[schema(value_type = Vec<Permission>)]
    pub permissions: Vec<String>,
    /// Sites the key is limited to (empty: not limited by site).
    pub sites: Vec<String>,
    /// Printers the key is limited to (empty: not limited by printer).
    pub printer_ids: Vec<i64>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A stored key, as authentication reads it.
#[derive(Debug, sqlx::FromRow)]
struct StoredKey {
    id: i64,
    name: String,
    prefix: String,
    key_hash: Vec<u8>,
    permissions: Vec<String>,
    sites: Vec<String>,
    printer_ids: Vec<i64>,
    last_used_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, name, prefix, permissions, sites, printer_ids, created_at, last_used_at";

/// Creates a key (limited to `scope`) and returns it with its one-time secret.
pub async fn create(
    pool: &PgPool,
    name: &str,
    permissions: &[Permission],
    scope: &Scope,
) -> Result<(ApiKey, ApiKeySecret), sqlx::Error> {
    let secret = ApiKeySecret::generate();
    let mut permissions: Vec<String> = permissions.iter().map(|p| p.as_str().to_owned()).collect();
    permissions.sort();
    permissions.dedup();
    let key = sqlx::query_as::<_, ApiKey>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO api.api_keys (name, prefix, key_hash, permissions, sites, printer_ids)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING {COLUMNS}"
    )))
    .bind(name)
    .bind(secret.prefix())
    .bind(secret.hash().as_slice())
    .bind(&permissions)
    .bind(&scope.sites)
    .bind(&scope.printer_ids)
    .fetch_one(pool)
    .await?;
    Ok((key, secret))
}

/// Every key that is not revoked, newest first.
pub async fn list(pool: &PgPool) -> Result<Vec<ApiKey>, sqlx::Error> {
    sqlx::query_as::<_, ApiKey>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api.api_keys WHERE revoked_at IS NULL ORDER BY id DESC"
    )))
    .fetch_all(pool)
    .await
}

/// The live key `id`, when there is one.
pub async fn get(pool: &PgPool, id: i64) -> Result<Option<ApiKey>, sqlx::Error> {
    sqlx::query_as::<_, ApiKey>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api.api_keys WHERE id = $1 AND revoked_at IS NULL"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Revokes a key; its prefix, or `None` when there is no such live key.
pub async fn revoke(pool: &PgPool, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE api.api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL
         RETURNING prefix",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// The live key with this prefix, if any, as authentication needs it.
pub async fn find(pool: &PgPool, prefix: &str) -> Result<Option<Credential>, sqlx::Error> {
    let stored = sqlx::query_as::<_, StoredKey>(
        "SELECT id, name, prefix, key_hash, permissions, sites, printer_ids, last_used_at
           FROM api.api_keys WHERE prefix = $1 AND revoked_at IS NULL",
    )
    .bind(prefix)
    .fetch_optional(pool)
    .await?;
    Ok(stored.map(|key| Credential {
        hash: key.key_hash,
        csrf_hash: None,
        actor: Actor::Key {
            id: key.id,
            prefix: key.prefix,
            name: key.name,
        },
        permissions: parse_permissions(&key.permissions),
        reach: Reach::new([Scope {
            sites: key.sites,
            printer_ids: key.printer_ids,
        }]),
        expires_at: None,
        last_used_at: key.last_used_at,
    }))
}

/// The permissions a row lists (unknown names, which the schema refuses, are skipped).
pub fn parse_permissions(names: &[String]) -> Vec<Permission> {
    names.iter().filter_map(|p| Permission::parse(p)).collect()
}

/// Records use, at most once a minute per key so that reads do not become writes.
pub async fn touch(pool: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api.api_keys SET last_used_at = now()
          WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_back_and_matches_only_its_own_hash() {
        let key = ApiKeySecret::generate();
        let parsed = ApiKeySecret::parse(key.reveal()).expect("own keys parse");
        assert_eq!(parsed, key);
        assert!(key.matches(&key.hash()));
        assert!(!key.matches(&ApiKeySecret::generate().hash()));
        assert!(!key.matches(&[0u8; 31]));
        assert!(key.prefix().starts_with("pyk_") && key.prefix().len() == 12);
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let key = ApiKeySecret::generate();
        let good = key.reveal();
        for bad in [
            "",
            "pyk_",
            "hello",
            &good[..good.len() - 1],
            &format!("{good}x"),
            &good.replacen("pyk_", "pyx_", 1),
            &good.replacen('_', "-", 1),
            "pyk_ABCDEFGH_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(ApiKeySecret::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let key = ApiKeySecret::generate();
        let shown = format!("{key:?}");
        let secret = &key.reveal()[key.prefix().len() + 1..];
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains(key.prefix()));
    }
}
