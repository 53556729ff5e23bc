//! A credential as authentication needs it: an API key or a person's session, with who it
//! speaks for, what it may do and what it may reach.

use chrono::{DateTime, Utc};

use super::keys::Permission;
use super::scope::Reach;

/// Who a request speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An API key (its id, public prefix and name).
    Key {
        id: i64,
        prefix: String,
        name: String,
    },
    /// A person signed in (their user id and name, and the session's id).
    User {
        id: i64,
        username: String,
        session_id: i64,
    },
}

impl Actor {
    /// How the audit log and listings name the actor: the username, or `key <prefix> (<name>)`.
    pub fn label(&self) -> String {
        match self {
            Actor::Key { prefix, name, .. } => format!("key {prefix} ({name})"),
            Actor::User { username, .. } => username.clone(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Key { .. } => "key",
            Actor::User { .. } => "user",
        }
    }

    /// The key's or the user's id.
    pub fn id(&self) -> i64 {
        match self {
            Actor::Key { id, .. } | Actor::User { id, .. } => *id,
        }
    }

    /// Whose budget a request counts against: a key's own, or the user's (all their sessions
    /// together; negative so that it never meets a key's id).
    pub fn rate_id(&self) -> i64 {
        match self {
            Actor::Key { id, .. } => *id,
            Actor::User { id, .. } => -*id,
        }
    }
}

/// A stored credential: the hash to check a presented secret against, and what it grants.
#[derive(Debug, Clone)]
pub struct Credential {
    /// SHA-256 of the whole key or session token.
    pub hash: Vec<u8>,
    /// SHA-256 of a session's CSRF token (sessions only).
    pub csrf_hash: Option<Vec<u8>>,
    pub actor: Actor,
    pub permissions: Vec<Permission>,
    pub reach: Reach,
    /// When a session ends by itself.
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl Credential {
    pub fn grants(&self, needed: Permission) -> bool {
        self.permissions.iter().any(|p| p.grants(needed))
    }

    pub fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= Utc::now())
    }
}
