//! What every handler shares. Cheap to clone; no locks.

use std::time::Instant;

use printyard_service::rpc::RpcClient;
use sqlx::PgPool;

use crate::config::HttpConfig;
use crate::rate_limit::RateLimiter;
use crate::registry::Registry;
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
}
