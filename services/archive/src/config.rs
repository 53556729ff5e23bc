//! The archive service's configuration: the shared sections plus `archive.*`.

use std::path::PathBuf;

use printyard_service::config::{
    AdminConfig, DatabaseConfig, HasTelemetry, NatsConfig, TelemetryConfig,
};
use printyard_service::secret::Secret;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats: NatsConfig,
    pub database: DatabaseConfig,
    pub admin: AdminConfig,
    pub telemetry: TelemetryConfig,
    pub archive: ArchiveConfig,
}

impl HasTelemetry for Config {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

/// `archive.*`: where files are kept and how big they may be.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ArchiveConfig {
    /// Object storage: a directory (`/var/lib/printyard/objects`, `file:///…`) or an S3 bucket
    /// (`s3://bucket`, with `archive.s3.*`).
    pub store: String,
    pub s3: S3Config,
    /// Where files are spooled while they are checked (default: the system's temp directory).
    pub work_dir: Option<PathBuf>,
    /// The largest 3MF accepted, bytes.
    pub max_file_bytes: u64,
    /// Farm events handled at once by one replica.
    pub event_concurrency: usize,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            store: "objects".into(),
            s3: S3Config::default(),
            work_dir: None,
            max_file_bytes: 1024 * 1024 * 1024,
            event_concurrency: 8,
        }
    }
}

/// `archive.s3.*`: an S3-compatible endpoint (AWS, MinIO, SeaweedFS, …).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct S3Config {
    /// `http(s)://host:port`; empty for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret<String>>,
    /// Allow a plain-HTTP endpoint (a local test server).
    pub allow_http: bool,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
        }
    }
}
