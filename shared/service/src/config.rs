//! Layered configuration: built-in defaults, then an optional file, then the environment.
//!
//! The file is named by `--config` or `PRINTYARD_CONFIG` (TOML, YAML or JSON by extension);
//! environment variables `PRINTYARD__SECTION__KEY` override single keys, e.g.
//! `PRINTYARD__NATS__URL=nats://10.0.0.5:4222`. Unknown keys are logged, not fatal, so one
//! environment can be shared by services that read different sections.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::Secret;

/// Environment prefix and separator: `PRINTYARD__NATS__URL` is `nats.url`.
pub const ENV_PREFIX: &str = "PRINTYARD";
pub const ENV_SEPARATOR: &str = "__";
/// Environment variable naming a config file.
pub const CONFIG_FILE_ENV: &str = "PRINTYARD_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(#[from] config::ConfigError),
}

/// A loaded configuration and the keys it did not recognise.
#[derive(Debug)]
pub struct Loaded<T> {
    pub config: T,
    pub unknown_keys: Vec<String>,
}

/// Loads `T` from its defaults, the file (if any) and the environment.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<Loaded<T>, ConfigError> {
    load_from(file, std::env::vars())
}

/// As [`load`], with the environment given explicitly (tests, and nothing else, use this).
pub fn load_from<T: DeserializeOwned>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded<T>, ConfigError> {
    let env: std::collections::HashMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")))
        .collect();
    let file = file
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(CONFIG_FILE_ENV).map(Into::into));
    let mut builder = config::Config::builder();
    if let Some(path) = file {
        builder = builder.add_source(config::File::from(path).required(true));
    }
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .try_parsing(true)
            .source(Some(env)),
    );
    let raw = builder.build()?;
    let mut unknown_keys = Vec::new();
    let config = serde_ignored::deserialize(raw, |path| unknown_keys.push(path.to_string()))?;
    Ok(Loaded {
        config,
        unknown_keys,
    })
}

/// Logs the keys a service did not recognise (typos show up here).
pub fn warn_unknown_keys(unknown: &[String]) {
    for key in unknown {
        tracing::warn!(key = %key, "unknown configuration key ignored");
    }
}

/// `nats.*`: how to reach NATS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated.
    pub url: String,
    /// Credentials file (`.creds`) for a secured cluster or leaf node.
    pub credentials_file: Option<String>,
    /// User and password, for a server whose users are listed in its configuration (a
    /// site's gateway user at its leaf node: docs/sites.md).
    pub user: Option<String>,
    pub password: Option<Secret<String>>,
    /// The JetStream domain of the central cluster, for a connection through a leaf node
    /// (a site's gateway: docs/sites.md); unset when connected to the cluster itself.
    pub jetstream_domain: Option<String>,
    /// The prefix of this connection's reply inboxes (`_INBOX` when unset). A site's gateway
    /// uses `_INBOX_<site>`, the inboxes its credentials may receive on.
    pub inbox_prefix: Option<String>,
    /// Deadline of one connection attempt.
    pub connect_timeout_ms: u64,
    /// How long start-up keeps retrying before giving up.
    pub startup_timeout_secs: u64,
    /// Deadline of a request to another service.
    pub request_timeout_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            credentials_file: None,
            user: None,
            password: None,
            inbox_prefix: None,
            jetstream_domain: None,
            connect_timeout_ms: 2_000,
            startup_timeout_secs: 60,
            request_timeout_ms: 1_500,
        }
    }
}

impl NatsConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// `database.*`: the Postgres the five central services share (each in its own schema).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    pub url: Secret<String>,
    pub max_connections: u32,
    /// Deadline for taking a connection from the pool.
    pub acquire_timeout_ms: u64,
    /// How long start-up keeps retrying before giving up.
    pub startup_timeout_secs: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::from("postgres://postgres@127.0.0.1:5432/printyard"),
            max_connections: 10,
            acquire_timeout_ms: 3_000,
            startup_timeout_secs: 60,
        }
    }
}

/// `admin.*`: the listener for `/healthz`, `/readyz` and `/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

/// The admin port every service uses by default (each pod has its own network);
/// `scripts/dev` gives each service its own port, since all six share one host there.
pub const DEFAULT_ADMIN_PORT: u16 = 9090;

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_ADMIN_PORT)),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

/// `telemetry.*`: logs and traces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    /// A `tracing` filter, e.g. `info` or `info,printyard_gateway=debug`. `RUST_LOG` wins.
    pub log_level: String,
    pub log_format: LogFormat,
    /// OTLP/HTTP endpoint (e.g. `http://otel-collector:4318`); traces are off when unset.
    pub otlp_endpoint: Option<String>,
    /// Fraction of root traces sampled when exporting, 0.0 to 1.0.
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            log_format: LogFormat::Json,
            otlp_endpoint: None,
            sample_ratio: 1.0,
        }
    }
}

/// The configuration of a central service that needs nothing beyond the shared sections.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceConfig {
    pub nats: NatsConfig,
    pub database: DatabaseConfig,
    pub admin: AdminConfig,
    pub telemetry: TelemetryConfig,
}

/// A service configuration that says how to log and trace.
pub trait HasTelemetry {
    fn telemetry(&self) -> &TelemetryConfig;
}

impl HasTelemetry for ServiceConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Sample {
        nats: NatsConfig,
        database: DatabaseConfig,
        admin: AdminConfig,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let loaded: Loaded<Sample> = load_from(None, env(&[])).unwrap();
        assert_eq!(loaded.config.nats.url, "nats://127.0.0.1:4222");
        assert_eq!(loaded.config.admin.listen.port(), DEFAULT_ADMIN_PORT);
        assert!(loaded.unknown_keys.is_empty());
    }

    #[test]
    fn environment_overrides_single_nested_keys_and_parses_numbers() {
        let loaded: Loaded<Sample> = load_from(
            None,
            env(&[
                ("PRINTYARD__NATS__URL", "nats://10.1.2.3:4222"),
                ("PRINTYARD__NATS__REQUEST_TIMEOUT_MS", "900"),
                ("PRINTYARD__ADMIN__LISTEN", "127.0.0.1:9999"),
                ("OTHER__NATS__URL", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(loaded.config.nats.url, "nats://10.1.2.3:4222");
        assert_eq!(loaded.config.nats.request_timeout_ms, 900);
        assert_eq!(loaded.config.nats.connect_timeout_ms, 2_000);
        assert_eq!(
            loaded.config.admin.listen,
            "127.0.0.1:9999".parse().unwrap()
        );
    }

    #[test]
    fn a_file_is_read_and_the_environment_wins_over_it() {
        let dir = std::env::temp_dir().join(format!("printyard-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("printyard.toml");
        std::fs::write(
            &path,
            "[nats]\nurl = \"nats://file:4222\"\n[database]\nmax_connections = 3\n",
        )
        .unwrap();
        let loaded: Loaded<Sample> = load_from(
            Some(&path),
            env(&[("PRINTYARD__NATS__URL", "nats://env:4222")]),
        )
        .unwrap();
        assert_eq!(loaded.config.nats.url, "nats://env:4222");
        assert_eq!(loaded.config.database.max_connections, 3);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_keys_are_reported_not_fatal() {
        let loaded: Loaded<Sample> =
            load_from(None, env(&[("PRINTYARD__NATS__URLL", "nats://typo:4222")])).unwrap();
        assert_eq!(loaded.unknown_keys, vec!["nats.urll".to_string()]);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error_naming_the_key() {
        let err = load_from::<Sample>(None, env(&[("PRINTYARD__ADMIN__LISTEN", "not-an-addr")]))
            .unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
    }

    #[test]
    fn the_database_url_never_shows_in_debug_output() {
        let loaded: Loaded<Sample> = load_from(
            None,
            env(&[("PRINTYARD__DATABASE__URL", "postgres://u:s3cret@db/x")]),
        )
        .unwrap();
        assert!(!format!("{:?}", loaded.config).contains("s3cret"));
        assert_eq!(
            loaded.config.database.url.expose(),
            "postgres://u:s3cret@db/x"
        );
    }
}
