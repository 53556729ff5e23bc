//! The notifier's configuration: the shared sections plus `notifier.*`.

use std::time::Duration;

use printyard_service::config::{
    AdminConfig, DatabaseConfig, HasTelemetry, NatsConfig, TelemetryConfig,
};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::targets::TargetPolicy;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats: NatsConfig,
    pub database: DatabaseConfig,
    pub admin: AdminConfig,
    pub telemetry: TelemetryConfig,
    pub notifier: NotifierConfig,
}

impl HasTelemetry for Config {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

/// `notifier.*`: where webhooks may point, how deliveries are sent and retried.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifierConfig {
    /// Which addresses a webhook may reach: `lan` (public and private ranges; the default),
    /// `public` (public addresses only), `any` (also loopback and link-local, cloud metadata
    /// included: for tests and single-machine setups).
    pub targets: TargetPolicy,
    /// A delivery attempt's whole deadline (connect, send, answer).
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Deliveries in flight at once, per notifier replica.
    pub concurrency: usize,
    /// Deliveries in flight at once to one webhook, per replica (a slow receiver holds only
    /// these).
    pub per_endpoint: usize,
    /// The wait before the second attempt; doubled each attempt, with jitter (50 to 100 % of
    /// it)...
    pub retry_base_ms: u64,
    /// ...up to this.
    pub retry_max_secs: u64,
    /// How long a delivery is retried before it fails for good.
    pub retry_for_secs: u64,
    /// A webhook whose deliveries have failed for this long, when one of them fails for good,
    /// is disabled, with the reason shown.
    pub disable_after_secs: u64,
    /// How long a claimed delivery is held before another replica may take it (a notifier
    /// killed mid-delivery): longer than `timeout_ms`.
    pub lease_secs: u64,
    /// How often the sender looks for due deliveries (it is also woken by new ones).
    pub poll_ms: u64,
    /// How long a print event waits for its archive id (`archive_created`) before it is sent
    /// without one.
    pub archive_wait_ms: u64,
    /// Days finished deliveries stay in the log.
    pub keep_log_days: u32,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self {
            targets: TargetPolicy::Lan,
            timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            concurrency: 512,
            per_endpoint: 4,
            retry_base_ms: 5_000,
            retry_max_secs: 3_600,
            retry_for_secs: 86_400,
            disable_after_secs: 86_400,
            lease_secs: 60,
            poll_ms: 500,
            archive_wait_ms: 3_000,
            keep_log_days: 7,
        }
    }
}

impl NotifierConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(100))
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.clamp(100, self.timeout_ms.max(100)))
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs).max(self.timeout() + Duration::from_secs(5))
    }

    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms.clamp(10, 60_000))
    }

    /// The most the wait before attempt `attempts + 1` can be (before jitter).
    pub fn retry_ceiling(&self, attempts: i32) -> Duration {
        let doublings = (attempts.clamp(1, 31) - 1) as u32;
        let millis = self
            .retry_base_ms
            .max(1)
            .saturating_mul(1u64 << doublings.min(40))
            .min(self.retry_max_secs.saturating_mul(1000));
        Duration::from_millis(millis)
    }

    /// The wait before attempt `attempts + 1`: 50 to 100 % of [`Self::retry_ceiling`], so that
    /// the retries of many deliveries spread out.
    pub fn retry_delay(&self, attempts: i32) -> Duration {
        let ceiling = self.retry_ceiling(attempts);
        ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_with_jitter_up_to_the_cap() {
        let config = NotifierConfig::default();
        assert_eq!(config.retry_ceiling(1), Duration::from_secs(5));
        assert_eq!(config.retry_ceiling(2), Duration::from_secs(10));
        assert_eq!(config.retry_ceiling(5), Duration::from_secs(80));
        assert_eq!(config.retry_ceiling(20), Duration::from_secs(3600));
        for attempts in 1..10 {
            let delay = config.retry_delay(attempts);
            let ceiling = config.retry_ceiling(attempts);
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "{delay:?} of {ceiling:?}"
            );
        }
    }

    #[test]
    fn a_lease_outlasts_an_attempt() {
        let config = NotifierConfig {
            lease_secs: 1,
            ..Default::default()
        };
        assert!(config.lease() > config.timeout());
    }
}
