//! What every printer connection of a gateway shares: trust anchors, deadlines, the limits of
//! captures, uploads and connects, and the clients of other services.

use std::sync::Arc;
use std::time::Duration;

use printyard_bambu::mqtt::ConnectPacer;
use rustls::pki_types::TrustAnchor;

/// Settings shared by every connection of a gateway.
pub struct Settings {
    pub anchors: Arc<Vec<TrustAnchor<'static>>>,
    pub silence: Duration,
    /// How long a silent printer has to answer a request for a full report before its
    /// connection is taken as dead.
    pub silence_probe: Duration,
    pub status_interval: Duration,
    pub command_deadline: Duration,
    /// For telling `api` about certificates trusted on first use.
    pub pins: crate::pins::PinKeeper,
    /// Calls to other services (the archive's files for uploads).
    pub rpc: printyard_service::rpc::RpcClient,
    /// Fetching print files for the archive.
    pub capture: CaptureLimits,
    /// Uploads of queued jobs at once (all printers of this gateway together).
    pub uploads: tokio::sync::Semaphore,
    /// How long a started print may take to show on the printer.
    pub print_start: Duration,
    pub camera: crate::camera::CameraSettings,
    /// Connections being established at once (all printers of this gateway together).
    pub connect_pacer: ConnectPacer,
    /// TCP, TLS and CONNACK together, from a connection's turn.
    pub connect_timeout: Duration,
}

/// Limits of captures (a print's 3MF fetched for the archive), shared by a gateway's
/// connections.
pub struct CaptureLimits {
    /// How long a capture keeps trying (X1 printers write the file seconds after the start).
    pub window: Duration,
    pub max_bytes: u64,
    /// Captures at once.
    pub slots: tokio::sync::Semaphore,
}
