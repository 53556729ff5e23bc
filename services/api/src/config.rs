//! The api service's configuration: the shared sections plus `http.*`.

use std::net::SocketAddr;
use std::time::Duration;

use printyard_service::config::{
    AdminConfig, DatabaseConfig, HasTelemetry, NatsConfig, TelemetryConfig,
};
use serde::{Deserialize, Serialize};

pub use crate::auth::rate_limit::RateLimitConfig;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats: NatsConfig,
    pub database: DatabaseConfig,
    pub admin: AdminConfig,
    pub telemetry: TelemetryConfig,
    pub http: HttpConfig,
    pub rate_limits: RateLimitConfig,
    pub people: PeopleConfig,
}

/// `people.*`: sessions, sign-in protection, the audit log's retention, single sign-on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PeopleConfig {
    /// How long a session lasts from sign-in.
    pub session_hours: u64,
    /// Failed password sign-ins in a row that lock an account.
    pub lockout_failures: u32,
    /// How long a locked account stays locked.
    pub lockout_secs: u64,
    /// Each failed sign-in waits this long times the failures in a row so far (at most 5 s)
    /// before it answers, so that guessing is slow even before the lock.
    pub failure_delay_ms: u64,
    /// Audit entries older than this many days are removed (0: kept for ever).
    pub audit_retention_days: u32,
    /// Take the client's address from the first `X-Forwarded-For` entry (set when a trusted
    /// load balancer is in front), else from the connection.
    pub trust_forwarded_for: bool,
    pub sso: crate::people::sso::SsoConfig,
}

impl Default for PeopleConfig {
    fn default() -> Self {
        Self {
            session_hours: 12,
            lockout_failures: 5,
            lockout_secs: 900,
            failure_delay_ms: 250,
            audit_retention_days: 365,
            trust_forwarded_for: false,
            sso: Default::default(),
        }
    }
}

impl PeopleConfig {
    pub fn session_lifetime(&self) -> Duration {
        Duration::from_secs(self.session_hours.max(1) * 3600)
    }

    pub fn lockout(&self) -> Duration {
        Duration::from_secs(self.lockout_secs)
    }
}

impl HasTelemetry for Config {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

/// `http.*`: the public listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// How long `/health` waits for discovery answers from service instances.
    pub discovery_window_ms: u64,
    /// The largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// How long a printer command (refresh, pause, resume, stop) may take end to end. Longer
    /// than the gateway's own acknowledgement deadline, so its "timed out" answer arrives.
    pub command_timeout_ms: u64,
    /// How long a replica may use a key it looked up without asking Postgres again (0: every
    /// request asks). Revocations reach every replica at once over NATS; this bounds the case
    /// of a replica cut off from NATS.
    pub key_cache_secs: u64,
    /// The largest 3MF `POST /archives` accepts (413 above it).
    pub max_upload_bytes: u64,
    /// How long an upload may take to arrive.
    pub upload_timeout_secs: u64,
    /// How long a camera stream or snapshot waits for the gateway to open the camera and send
    /// a frame (the gateway's own `camera_first_frame_secs` should be shorter, so its reason
    /// arrives first).
    pub camera_timeout_secs: u64,
    /// Open `/events` streams one replica serves at most (each holds a NATS consumer and about
    /// 40 KiB); past it, 503 until one closes.
    pub max_event_streams: usize,
    /// How long a client may take to send a request's line and headers before the connection
    /// is closed.
    pub header_timeout_ms: u64,
    /// How long a request body may take before `body_min_rate` counts (408 past it).
    pub body_grace_ms: u64,
    /// Bytes a second a body must average past the grace (0: none): a second more for every
    /// this many bytes received.
    pub body_min_rate: u64,
}

impl HttpConfig {
    /// The listener's deadlines on reading requests.
    pub fn deadlines(&self) -> printyard_service::http::Deadlines {
        printyard_service::http::Deadlines {
            header_ms: self.header_timeout_ms,
            body_grace_ms: self.body_grace_ms,
            body_min_rate: self.body_min_rate,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        let deadlines = printyard_service::http::Deadlines::default();
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8000)),
            discovery_window_ms: 250,
            max_body_bytes: 1024 * 1024,
            command_timeout_ms: 8000,
            key_cache_secs: 60,
            max_upload_bytes: 1024 * 1024 * 1024,
            upload_timeout_secs: 600,
            camera_timeout_secs: 10,
            max_event_streams: 5_000,
            header_timeout_ms: deadlines.header_ms,
            body_grace_ms: deadlines.body_grace_ms,
            body_min_rate: deadlines.body_min_rate,
        }
    }
}

impl HttpConfig {
    pub fn discovery_window(&self) -> Duration {
        Duration::from_millis(self.discovery_window_ms)
    }

    pub fn command_deadline(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms.max(100))
    }
}
