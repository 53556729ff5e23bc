//! What every handler shares. Cheap to clone; no locks.

use std::time::Instant;

use printyard_service::rpc::RpcClient;
use sqlx::PgPool;

use crate::config::HttpConfig;
use crate::key_cache::KeyCache;
use crate::rate_limit::RateLimiter;
use crate::registry::Registry;
use crate::stats_answers::StatsAnswers;
use crate::status_cache::KnownPrinters;
use crate::status_cache::StatusCache;

#[derive(Clone)]
pub struct AppState {
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
}
