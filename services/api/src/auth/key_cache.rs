//! Credentials (API keys and people's sessions) as authentication needs them, cached per
//! replica so that a request does not cost a database round trip. Revocation stays immediate
//! on every replica: the replica that revokes a key or a session, disables a user or changes
//! a role or a scope asks every api instance over NATS to forget what it changed (one prefix,
//! or `*`: everything) and waits for their answers before it answers. The cache's
//! time-to-live bounds the worst case (a replica cut off from NATS).
//!
//! While the database does not answer, a key this replica looked up before is used past its
//! time-to-live (revoked keys are evicted, so never one of them): requests that need nothing
//! else from Postgres (a printer's status, the live event stream) keep working.
//!
//! A lookup that raced a revocation (read the row before the revoke, finished after the
//! eviction) is not cached: evictions bump a generation that the lookup must still match.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::Client;
use bytes::Bytes;
use futures::StreamExt;
use printyard_contracts::ServiceName;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::credential::Credential;
use super::keys::{self, SESSION_SCHEME};

/// Where replicas are told to forget a credential (payload: its public prefix, or `*` for
/// every credential).
pub const REVOKED_SUBJECT: &str = "printyard.api.keys.revoked";

struct Entry {
    key: Arc<Credential>,
    fetched: Instant,
    /// When this replica last recorded the key's use.
    touched: Option<Instant>,
}

#[derive(Clone)]
pub struct KeyCache {
    entries: Arc<RwLock<HashMap<String, Entry>>>,
    generation: Arc<AtomicU64>,
    ttl: Duration,
}

impl KeyCache {
    /// `ttl` zero turns caching off (every request reads the database).
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: Arc::default(),
            generation: Arc::default(),
            ttl,
        }
    }

    /// The live key or session with `prefix`, from the cache or the database.
    pub async fn find(
        &self,
        pool: &PgPool,
        prefix: &str,
    ) -> Result<Option<Arc<Credential>>, sqlx::Error> {
        if let Ok(entries) = self.entries.read()
            && let Some(entry) = entries.get(prefix)
            && entry.fetched.elapsed() < self.ttl
        {
            return Ok(Some(entry.key.clone()));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let looked_up = if prefix.starts_with(SESSION_SCHEME) {
            crate::people::sessions::find(pool, prefix).await
        } else {
            keys::find(pool, prefix).await
        };
        let found = match looked_up {
            Ok(found) => found,
            Err(err) => {
                let stale = self
                    .entries
                    .read()
                    .ok()
                    .and_then(|entries| entries.get(prefix).map(|e| e.key.clone()));
                return match stale {
                    Some(key) => {
                        tracing::warn!(error = %err, "database unavailable: using a key looked up before");
                        Ok(Some(key))
                    }
                    None => Err(err),
                };
            }
        };
        let Some(found) = found else {
            return Ok(None);
        };
        let found = Arc::new(found);
        if !self.ttl.is_zero()
            && let Ok(mut entries) = self.entries.write()
            && self.generation.load(Ordering::SeqCst) == generation
        {
            let touched = entries.get(prefix).and_then(|e| e.touched);
            entries.insert(
                prefix.to_owned(),
                Entry {
                    key: found.clone(),
                    fetched: Instant::now(),
                    touched,
                },
            );
        }
        Ok(Some(found))
    }

    /// Whether this replica should record the key's use now (at most once a minute). The
    /// common answer (no) takes only the read lock.
    pub fn due_for_touch(
        &self,
        prefix: &str,
        last_used: Option<chrono::DateTime<chrono::Utc>>,
    ) -> bool {
        let recent = |touched: Option<Instant>| {
            touched.is_some_and(|t| t.elapsed() <= Duration::from_secs(60))
        };
        if let Ok(entries) = self.entries.read()
            && entries.get(prefix).is_some_and(|e| recent(e.touched))
        {
            return false;
        }
        let stale_in_db =
            last_used.is_none_or(|at| chrono::Utc::now() - at > chrono::TimeDelta::minutes(1));
        let Ok(mut entries) = self.entries.write() else {
            return stale_in_db;
        };
        match entries.get_mut(prefix) {
            Some(entry) if recent(entry.touched) => false,
            Some(entry) => {
                // Whether or not the row needs it, not again from here for a minute.
                entry.touched = Some(Instant::now());
                stale_in_db
            }
            None => stale_in_db,
        }
    }

    /// Forgets `prefix` (`*`: everything).
    pub fn evict(&self, prefix: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut entries) = self.entries.write() {
            if prefix == EVERYTHING {
                entries.clear();
            } else {
                entries.remove(prefix);
            }
        }
    }

    /// Answers revocations from other replicas until `stop`.
    pub async fn follow_revocations(self, client: Client, stop: CancellationToken) {
        let mut subscription = match client.subscribe(REVOKED_SUBJECT).await {
            Ok(s) => s,
            Err(err) => {
                tracing::error!(error = %err, "cannot follow key revocations; caching stays bounded by its TTL");
                return;
            }
        };
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => break,
                message = subscription.next() => message,
            };
            let Some(message) = message else { break };
            if let Ok(prefix) = std::str::from_utf8(&message.payload) {
                self.evict(prefix);
            }
            if let Some(reply) = message.reply {
                let _ = client.publish(reply, Bytes::from_static(b"ok")).await;
            }
        }
    }
}

/// The eviction payload that clears every cached credential.
pub const EVERYTHING: &str = "*";

/// Forgets `prefix` here and on every other replica before returning (see
/// [`broadcast_revocation`]).
pub async fn revoke_everywhere(state: &crate::state::AppState, prefix: &str) {
    state.keys.evict(prefix);
    broadcast_revocation(
        state.rpc.nats(),
        prefix,
        state.http.discovery_window(),
        Duration::from_secs(1),
    )
    .await;
}

/// Tells every api instance to forget `prefix`, and waits (up to `deadline`) until as many
/// have answered as discovery counts. Returns how many answered.
pub async fn broadcast_revocation(
    client: &Client,
    prefix: &str,
    discovery_window: Duration,
    deadline: Duration,
) -> usize {
    let expected = crate::discovery::instances(client, ServiceName::Api, discovery_window)
        .await
        .unwrap_or(1)
        .max(1);
    let inbox = client.new_inbox();
    let Ok(mut answers) = client.subscribe(inbox.clone()).await else {
        return 0;
    };
    if client
        .publish_with_reply(REVOKED_SUBJECT, inbox, Bytes::from(prefix.to_owned()))
        .await
        .is_err()
    {
        return 0;
    }
    let mut answered = 0;
    let _ = tokio::time::timeout(deadline, async {
        while answered < expected && answers.next().await.is_some() {
            answered += 1;
        }
    })
    .await;
    let _ = answers.unsubscribe().await;
    if answered < expected {
        tracing::warn!(
            answered,
            expected,
            "not every api replica confirmed a key revocation; the cache TTL bounds it"
        );
    }
    answered
}
