//! Passwords: Argon2id with the RustCrypto defaults (19 MiB, 2 passes, 1 lane, the parameters
//! OWASP recommends), stored in PHC string form so that parameters can change later without
//! invalidating older hashes. Hashing takes tens of milliseconds of CPU and runs on the
//! blocking pool.

use std::fmt;
use std::sync::LazyLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// A password as received: never logged (its `Debug` is redacted), dropped after hashing.
#[derive(Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl Password {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// At least 12 characters and at most 1,000 (long enough to resist guessing, short enough
    /// that hashing cannot be made expensive).
    pub fn problem(&self) -> Option<&'static str> {
        let length = self.0.chars().count();
        if length < 12 {
            Some("Invalid field `password`: at least 12 characters")
        } else if length > 1000 {
            Some("Invalid field `password`: at most 1,000 characters")
        } else {
            None
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// The PHC string of `password` with a fresh salt.
pub async fn hash(password: Password) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|err| anyhow::anyhow!("hashing a password: {err}"))
    })
    .await?
}

/// A hash of nothing anyone knows: checked against when the username is unknown, so that an
/// unknown name takes as long as a wrong password.
static DECOY: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(b"printyard decoy password", &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// Whether `password` matches `stored` (a PHC string; `None`: the decoy, never a match).
pub async fn verify(password: Password, stored: Option<String>) -> bool {
    let decoy = stored.is_none();
    let stored = stored.unwrap_or_else(|| DECOY.clone());
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        let matches = argon2()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok();
        matches && !decoy
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_is_argon2id_salted_and_checks_only_its_password() {
        let first = hash(Password::new("correct horse battery")).await.unwrap();
        let second = hash(Password::new("correct horse battery")).await.unwrap();
        assert!(first.starts_with("$argon2id$v=19$"), "{first}");
        assert_ne!(first, second, "salted");
        assert!(verify(Password::new("correct horse battery"), Some(first.clone())).await);
        assert!(!verify(Password::new("correct horse batterY"), Some(first)).await);
        assert!(!verify(Password::new("printyard decoy password"), None).await);
    }

    #[test]
    fn short_and_huge_passwords_are_refused_and_never_shown() {
        assert!(Password::new("short").problem().is_some());
        assert!(Password::new("x".repeat(1001)).problem().is_some());
        assert!(Password::new("twelve chars").problem().is_none());
        assert!(!format!("{:?}", Password::new("hunter2hunter2")).contains("hunter2"));
    }
}
