//! What every handler shares. Cheap to clone; no locks.

use std::time::Instant;

use printyard_service::rpc::RpcClient;
use sqlx::PgPool;

use crate::config::HttpConfig;
use crate::rate_limit::RateLimiter;

#[derive(Clone)]
pub struct AppState {
    pub rpc: RpcClient,
    pub db: PgPool,
    pub started: Instant,
    pub http: HttpConfig,
    pub limiter: RateLimiter,
}
