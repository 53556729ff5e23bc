//! The filament service's configuration: the shared sections plus `filament.*`.

use std::collections::BTreeMap;

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
    pub filament: FilamentConfig,
}

impl HasTelemetry for Config {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

/// `filament.*`: when a spool is low.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FilamentConfig {
    /// A spool with fewer grams left than this is low (`spool_low`, `GET /spools?low=true`)...
    pub low_g: f64,
    /// ...unless its material has its own threshold here (`{"PETG": 200}`; material names
    /// as printers report them, any case).
    pub low_g_by_material: BTreeMap<String, f64>,
    /// Spoolman as the one inventory (off without a URL).
    pub spoolman: SpoolmanConfig,
}

impl Default for FilamentConfig {
    fn default() -> Self {
        Self {
            low_g: 150.0,
            low_g_by_material: BTreeMap::new(),
            spoolman: SpoolmanConfig::default(),
        }
    }
}

/// `filament.spoolman.*`: where Spoolman is and how often it is synced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpoolmanConfig {
    /// Spoolman's address (`http://spoolman:7912`); none: no sync.
    pub url: Option<String>,
    /// Seconds between syncs.
    pub poll_secs: u64,
    /// Deadline of one call to Spoolman.
    pub timeout_ms: u64,
}

impl Default for SpoolmanConfig {
    fn default() -> Self {
        Self {
            url: None,
            poll_secs: 60,
            timeout_ms: 5_000,
        }
    }
}

impl FilamentConfig {
    /// The low-stock threshold of `material`, grams.
    pub fn threshold(&self, material: &str) -> f64 {
        self.low_g_by_material
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(material))
            .map_or(self.low_g, |(_, g)| *g)
    }

    /// The per-material thresholds as SQL reads them (`{"PETG": 200}`, upper-case keys).
    pub fn thresholds_json(&self) -> serde_json::Value {
        self.low_g_by_material
            .iter()
            .map(|(m, g)| (m.to_ascii_uppercase(), serde_json::json!(g)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_material_threshold_overrides_the_default_in_any_case() {
        let config = FilamentConfig {
            low_g: 100.0,
            low_g_by_material: [("petg".to_owned(), 250.0)].into(),
            ..FilamentConfig::default()
        };
        assert_eq!(config.threshold("PETG"), 250.0);
        assert_eq!(config.threshold("PLA"), 100.0);
        assert_eq!(config.thresholds_json(), serde_json::json!({"PETG": 250.0}));
    }
}
