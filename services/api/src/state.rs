//! What every handler shares. Cloning it (axum does for every request, once per extractor
//! and middleware that takes `State`) costs one reference count: the NATS clients, streams and
//! buckets inside are deep structures whose clones allocate, and cloning them per request was
//! most of the status read's CPU.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use printyard_service::rpc::RpcClient;
use sqlx::PgPool;

use crate::auth::key_cache::KeyCache;
use crate::auth::rate_limit::RateLimiter;
use crate::config::HttpConfig;
use crate::registry::Registry;
use crate::stats_answers::StatsAnswers;
use crate::status_cache::KnownPrinters;
use crate::status_cache::StatusCache;

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub rpc: RpcClient,
    pub db: PgPool,
    pub started: Instant,
    pub http: HttpConfig,
    pub limiter: RateLimiter,
    pub registry: Registry,
    pub statuses: StatusCache,
    pub keys: KeyCache,
    /// The ids in the registry bucket, so that hot reads need not ask Postgres.
    pub known: KnownPrinters,
    /// Camera viewers on this replica.
    pub cameras: crate::camera::Cameras,
    /// `/statistics` answers as sent, until the facts or the printers change.
    pub stats_answers: StatsAnswers,
    /// The NATS object store uploads travel to `archive` through.
    pub transfer: async_nats::jetstream::object_store::ObjectStore,
    /// Sessions, sign-in protection, the audit log's retention.
    pub people: crate::config::PeopleConfig,
    /// The audit log's writer (with its backlog while Postgres is away).
    pub audit: crate::audit::AuditWriter,
    /// Single sign-on (off unless `people.sso.issuer` is set).
    pub sso: crate::people::sso::Sso,
    /// A permit per open `/events` stream (`http.max_event_streams`).
    pub event_streams: Arc<tokio::sync::Semaphore>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_of_the_state_is_one_pointer() {
        assert_eq!(
            std::mem::size_of::<AppState>(),
            std::mem::size_of::<usize>()
        );
    }
}
