//! Rate limits shared by every `api` replica: a fixed window per key and class, counted in
//! Postgres with one atomic upsert per request, on the database's clock. Replicas behind a load
//! balancer therefore draw on one budget: 100 reads a minute means 100 in total, not per process.
//!
//! Fixed windows are what the reference's `X-RateLimit-Reset` describes (the epoch second the
//! window ends); a client may burst at a window's edge, the accepted price of one cheap query.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::access::RateClass;

/// `rate_limits.*`: requests per window for each class.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    /// Turn limits off entirely (benchmarks, trusted networks).
    pub enabled: bool,
    pub window_secs: u32,
    pub read: u32,
    pub write: u32,
    pub control: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window_secs: 60,
            read: 100,
            write: 30,
            control: 10,
        }
    }
}

impl RateLimitConfig {
    pub fn limit(&self, class: RateClass) -> u32 {
        match class {
            RateClass::Read => self.read,
            RateClass::Write => self.write,
            RateClass::Control => self.control,
        }
    }
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Epoch second at which the current window ends.
    pub reset_epoch: i64,
    /// How long until the next window (meaningful when refused).
    pub retry_after: Duration,
}

#[derive(Clone)]
pub struct RateLimiter {
    pool: PgPool,
    config: RateLimitConfig,
}

impl RateLimiter {
    pub fn new(pool: PgPool, config: RateLimitConfig) -> Self {
        Self { pool, config }
    }

    /// Counts one request of `key_id` in `class` and says whether it may proceed.
    pub async fn check(&self, key_id: i64, class: RateClass) -> Result<Decision, sqlx::Error> {
        let limit = self.config.limit(class);
        if !self.config.enabled {
            return Ok(Decision {
                allowed: true,
                limit,
                remaining: limit,
                reset_epoch: 0,
                retry_after: Duration::ZERO,
            });
        }
        let window = i64::from(self.config.window_secs.max(1));
        // The window is computed from now() inside the statement: one clock for all replicas.
        let (count, window_start, now_ms): (i32, i64, i64) = sqlx::query_as(
            "WITH clock AS (
                 SELECT floor(extract(epoch FROM now()) / $3)::bigint * $3 AS start,
                        (extract(epoch FROM now()) * 1000)::bigint AS now_ms
             )
             INSERT INTO api.rate_limits AS r (key_id, class, window_start, count)
             SELECT $1, $2, to_timestamp(clock.start), 1 FROM clock
             ON CONFLICT (key_id, class) DO UPDATE
                SET count = CASE WHEN r.window_start = EXCLUDED.window_start
                                 THEN r.count + 1 ELSE 1 END,
                    window_start = EXCLUDED.window_start
             RETURNING count,
                       extract(epoch FROM window_start)::bigint,
                       (extract(epoch FROM now()) * 1000)::bigint",
        )
        .bind(key_id)
        .bind(class.as_str())
        .bind(window)
        .fetch_one(&self.pool)
        .await?;
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        let reset_epoch = window_start + window;
        let retry_ms = (reset_epoch * 1000 - now_ms).max(0) as u64;
        Ok(Decision {
            allowed: count <= limit,
            limit,
            remaining: limit.saturating_sub(count),
            reset_epoch,
            retry_after: Duration::from_millis(retry_ms),
        })
    }
}
