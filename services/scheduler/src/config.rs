//! The scheduler's configuration: the shared sections plus `scheduler.*`.

use std::time::Duration;

use printyard_service::config::{
    AdminConfig, DatabaseConfig, HasTelemetry, NatsConfig, TelemetryConfig,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats: NatsConfig,
    pub database: DatabaseConfig,
    pub admin: AdminConfig,
    pub telemetry: TelemetryConfig,
    pub scheduler: SchedulerConfig,
}

impl HasTelemetry for Config {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

/// `scheduler.*`: how jobs are dispatched.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    /// How often the dispatcher looks for idle printers (it also wakes on every change).
    pub tick_ms: u64,
    /// How long a replica's claim on a dispatching job lasts unrenewed: after a replica dies,
    /// another takes its dispatches over once this has passed.
    pub claim_lease_secs: u64,
    /// Jobs being sent to printers at once, per site (uploads of a farm run side by side).
    pub dispatch_concurrency: usize,
    /// Dispatches of one job before it fails for good (for failures that may pass: printer
    /// busy or offline, upload failed, no answer).
    pub max_attempts: i32,
    /// The wait before a job whose dispatch failed is tried again, doubled each attempt...
    pub retry_backoff_secs: u64,
    /// ...up to this.
    pub retry_backoff_max_secs: u64,
    /// How long the gateway may take to have a print showing on the printer, beyond the
    /// upload's own deadline.
    pub print_start_secs: u64,
    /// Farm events one replica handles at once.
    pub event_concurrency: usize,
    /// Grams a tray must hold beyond what a job's plate needs for the job to be sent to it
    /// (the slicer's estimate is not exact, and a spool's last grams may not feed).
    pub filament_margin_g: f64,
    /// Seconds between two jobs starting at one site (0: off), so that a site's power draw does
    /// not spike when many beds heat at once. Held across scheduler replicas.
    pub stagger_secs: f64,
    /// The same for a site of its own (`{north: 30}`), over `stagger_secs`.
    pub stagger_secs_by_site: std::collections::HashMap<String, f64>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            tick_ms: 1000,
            claim_lease_secs: 30,
            dispatch_concurrency: 100,
            max_attempts: 3,
            retry_backoff_secs: 30,
            retry_backoff_max_secs: 600,
            print_start_secs: 120,
            event_concurrency: 8,
            filament_margin_g: 20.0,
            stagger_secs: 0.0,
            stagger_secs_by_site: Default::default(),
        }
    }
}

impl SchedulerConfig {
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms.max(50))
    }

    pub fn claim_lease(&self) -> Duration {
        Duration::from_secs(self.claim_lease_secs.max(2))
    }

    /// The time between two starts at `site` (zero: not staggered).
    pub fn stagger(&self, site: &str) -> Duration {
        let secs = self
            .stagger_secs_by_site
            .get(site)
            .copied()
            .unwrap_or(self.stagger_secs);
        if secs.is_finite() && secs > 0.0 {
            Duration::from_secs_f64(secs.min(86_400.0))
        } else {
            Duration::ZERO
        }
    }

    /// The wait before attempt `attempts + 1`.
    pub fn retry_backoff(&self, attempts: i32) -> Duration {
        let doublings = attempts.clamp(1, 16) as u32 - 1;
        let secs = self
            .retry_backoff_secs
            .saturating_mul(1u64 << doublings)
            .min(self.retry_backoff_max_secs);
        Duration::from_secs(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sites_own_stagger_wins_over_the_farms() {
        let mut config = SchedulerConfig {
            stagger_secs: 10.0,
            ..Default::default()
        };
        config.stagger_secs_by_site.insert("north".into(), 30.0);
        config.stagger_secs_by_site.insert("lab".into(), 0.0);
        assert_eq!(config.stagger("north"), Duration::from_secs(30));
        assert_eq!(config.stagger("south"), Duration::from_secs(10));
        assert_eq!(config.stagger("lab"), Duration::ZERO);
        assert_eq!(SchedulerConfig::default().stagger("x"), Duration::ZERO);
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let config = SchedulerConfig::default();
        assert_eq!(config.retry_backoff(1), Duration::from_secs(30));
        assert_eq!(config.retry_backoff(2), Duration::from_secs(60));
        assert_eq!(config.retry_backoff(3), Duration::from_secs(120));
        assert_eq!(config.retry_backoff(10), Duration::from_secs(600));
    }
}
