//! The printer gateway: the only service that talks to printers (MQTT over TLS, FTPS,
//! camera), bridging them onto NATS. It runs at a site next to its printers and needs
//! nothing but NATS: no database, no object storage.
//!
//! It watches the printer registry for its site, claims printers through the ownership lease,
//! holds one connection per claimed printer, and publishes their status (KV `printer_status`)
//! and events (stream `FARM_EVENTS`), and answers commands on each held printer's command
//! subject.

pub mod camera;
pub mod capture;
pub mod connection;
pub mod observe;
pub mod outbox;
pub mod pins;
pub mod settings;
pub mod store;
pub mod supervisor;
pub mod tracker;

use std::sync::Arc;
use std::time::Duration;

use printyard_bambu::tls::{BAMBU_CA_BUNDLE, trust_anchors};
use printyard_contracts::ServiceName;
use printyard_contracts::farm::{Site, site_inbox_prefix};
use printyard_service::config::{AdminConfig, HasTelemetry, NatsConfig, TelemetryConfig};
use printyard_service::{Runtime, RuntimeOptions};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The gateway's configuration: no `database` section, by design.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats: NatsConfig,
    pub admin: AdminConfig,
    pub telemetry: TelemetryConfig,
    pub gateway: GatewayConfig,
}

/// `gateway.*`: which printers this gateway serves and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    /// The site whose printers this gateway connects to.
    pub site: String,
    /// The site's NATS leaf node runs JetStream in domain `site-<site>`: events and captured
    /// files are kept there first and reach the central services by stream sourcing, so an
    /// uplink outage loses nothing (docs/sites.md).
    pub site_jetstream: bool,
    /// How long a claim on a printer lasts without renewal (failover time).
    pub lease_secs: u64,
    /// PEM files of CAs trusted beside the Bambu CA bundle (a lab's own, the simulator's).
    /// A list in a config file; comma-separated in `PRINTYARD__GATEWAY__EXTRA_CA_FILES`.
    #[serde(deserialize_with = "list_or_commas")]
    pub extra_ca_files: Vec<String>,
    /// Silence after which a printer is asked for a full report...
    pub silence_secs: u64,
    /// ...and after which, still silent, its connection is taken as dead.
    pub silence_probe_secs: u64,
    /// Printer connections being established at once (TCP, TLS, CONNACK): a farm starting
    /// together connects in a steady stream instead of timing out together.
    pub connect_concurrency: usize,
    /// How long one connection may take from its turn to the CONNACK.
    pub connect_timeout_secs: u64,
    /// The most often a printer's status is written to the KV bucket.
    pub status_interval_ms: u64,
    /// How long a command waits for the printer's acknowledgement.
    pub command_deadline_ms: u64,
    /// How long after a print starts its 3MF is looked for on the printer (X1 printers write
    /// it some seconds after the start).
    pub capture_window_secs: u64,
    /// The largest 3MF fetched from a printer.
    pub capture_max_bytes: u64,
    /// Files fetched from printers at once.
    pub capture_concurrency: usize,
    /// Queued jobs uploaded to printers at once (printers write slowly: a farm's uploads run
    /// side by side).
    pub upload_concurrency: usize,
    /// How long a queued job's start may take to show on the printer after its upload.
    pub print_start_secs: u64,
    /// How long a camera stays open after its last viewer leaves.
    pub camera_linger_secs: u64,
    /// How long a camera has to send its first frame (then: 503 with the reason).
    pub camera_first_frame_secs: u64,
    /// How long an open camera may send nothing before it is taken as dead.
    pub camera_stall_secs: u64,
    /// The ffmpeg that decodes RTSPS cameras (X1, X1E, P2S, H2D, H2S).
    pub ffmpeg: String,
    /// The cameras' ports: 6000 (A1, P1) and 322 (RTSPS) on printers; for simulators.
    pub camera_jpeg_port: u16,
    pub camera_rtsps_port: u16,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            site: "default".into(),
            site_jetstream: false,
            lease_secs: printyard_contracts::farm::DEFAULT_LEASE_SECS,
            extra_ca_files: Vec::new(),
            silence_secs: 60,
            silence_probe_secs: 10,
            connect_concurrency: 128,
            connect_timeout_secs: 10,
            status_interval_ms: 100,
            command_deadline_ms: 5000,
            capture_window_secs: 90,
            capture_max_bytes: 1024 * 1024 * 1024,
            capture_concurrency: 4,
            upload_concurrency: 100,
            print_start_secs: 60,
            camera_linger_secs: 5,
            camera_first_frame_secs: 10,
            camera_stall_secs: 30,
            ffmpeg: "ffmpeg".into(),
            camera_jpeg_port: printyard_bambu::camera::JPEG_PORT,
            camera_rtsps_port: printyard_bambu::camera::RTSPS_PORT,
        }
    }
}

/// A list of strings, or one string of comma-separated items (how environment variables
/// carry lists).
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(items) => items,
        Either::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

impl HasTelemetry for Config {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

/// The printer gateway.
pub struct Gateway;

impl Gateway {
    /// Starts the gateway; `shutdown` stops it.
    pub async fn start(mut config: Config, shutdown: CancellationToken) -> anyhow::Result<Runtime> {
        let site =
            Site::parse(&config.gateway.site).map_err(|e| anyhow::anyhow!("gateway.site: {e}"))?;
        // Replies come back on the site's own inboxes: the only ones a site's credentials
        // may receive on.
        config
            .nats
            .inbox_prefix
            .get_or_insert_with(|| site_inbox_prefix(&site));
        let runtime = Runtime::start(
            RuntimeOptions {
                service: ServiceName::Gateway,
                description: "Bridges printers' MQTT, FTPS and camera onto NATS",
                nats: &config.nats,
                database: None,
                admin: &config.admin,
            },
            shutdown,
        )
        .await?;
        observe::describe();
        let settings = &config.gateway;
        let mut pems = vec![BAMBU_CA_BUNDLE.to_owned()];
        for path in &settings.extra_ca_files {
            pems.push(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading CA file {path}: {e}"))?,
            );
        }
        let pem_refs: Vec<&str> = pems.iter().map(String::as_str).collect();
        let lease = Duration::from_secs(settings.lease_secs.max(3));
        let store = Arc::new(
            store::FarmStore::open_when_ready(
                runtime.nats().clone(),
                config.nats.jetstream_domain.as_deref(),
                &site,
                lease,
                if settings.site_jetstream {
                    store::Keeping::AtSite
                } else {
                    store::Keeping::Central
                },
                Duration::from_secs(config.nats.startup_timeout_secs),
            )
            .await?,
        );
        let supervisor = supervisor::Supervisor {
            store,
            site: site.clone(),
            instance: format!("gateway-{:016x}", rand::random::<u64>()),
            lease,
            members: std::sync::atomic::AtomicUsize::new(1),
            connection: Arc::new(settings::Settings {
                anchors: Arc::new(trust_anchors(&pem_refs)),
                silence: Duration::from_secs(settings.silence_secs.max(5)),
                silence_probe: Duration::from_secs(settings.silence_probe_secs.max(1)),
                status_interval: Duration::from_millis(settings.status_interval_ms.max(50)),
                command_deadline: Duration::from_millis(settings.command_deadline_ms.max(100)),
                pins: pins::PinKeeper::start(runtime.rpc().clone(), site.clone()),
                rpc: runtime.rpc().clone(),
                capture: settings::CaptureLimits {
                    window: Duration::from_secs(settings.capture_window_secs.max(1)),
                    max_bytes: settings.capture_max_bytes,
                    slots: tokio::sync::Semaphore::new(settings.capture_concurrency.max(1)),
                },
                uploads: tokio::sync::Semaphore::new(settings.upload_concurrency.max(1)),
                print_start: Duration::from_secs(settings.print_start_secs.max(5)),
                camera: camera::CameraSettings {
                    linger: Duration::from_secs(settings.camera_linger_secs),
                    first_frame: Duration::from_secs(settings.camera_first_frame_secs.max(1)),
                    stall: Duration::from_secs(settings.camera_stall_secs.max(2)),
                    ffmpeg: settings.ffmpeg.clone(),
                    jpeg_port: settings.camera_jpeg_port,
                    rtsps_port: settings.camera_rtsps_port,
                },
                connect_pacer: Arc::new(tokio::sync::Semaphore::new(
                    settings.connect_concurrency.max(1),
                )),
                connect_timeout: Duration::from_secs(settings.connect_timeout_secs.max(1)),
            }),
        };
        if settings.site_jetstream {
            runtime.tasks().spawn(source_site_stream(
                runtime.rpc().clone(),
                site.clone(),
                runtime.shutdown_token().clone(),
            ));
        }
        runtime
            .tasks()
            .spawn(supervisor.run(runtime.shutdown_token().clone()));
        Ok(runtime)
    }
}

/// Runs the gateway until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    printyard_service::run_until_signal(|shutdown| Gateway::start(config, shutdown)).await
}

/// Asks `api` to have `FARM_EVENTS` source this site's event stream, until it has said yes
/// (the uplink may be down when the gateway starts; the events wait at the site meanwhile).
async fn source_site_stream(
    rpc: printyard_service::rpc::RpcClient,
    site: Site,
    shutdown: CancellationToken,
) {
    let mut backoff = printyard_service::backoff::Backoff::new(
        Duration::from_millis(500),
        Duration::from_secs(30),
    );
    loop {
        let asked = rpc
            .call_site(
                printyard_contracts::farm::SITE_STREAM,
                &site,
                &printyard_contracts::rpc::Empty {},
            )
            .await;
        match asked {
            Ok(_) => {
                tracing::info!(%site, "the central event stream sources this site's");
                return;
            }
            Err(err) => {
                tracing::warn!(%site, error = %err, "site stream not sourced yet; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_ca_files_come_as_a_list_or_comma_separated() {
        let from_env: GatewayConfig =
            serde_json::from_value(serde_json::json!({"extra_ca_files": "/a.pem, /b.pem"}))
                .unwrap();
        assert_eq!(from_env.extra_ca_files, ["/a.pem", "/b.pem"]);
        let from_file: GatewayConfig =
            serde_json::from_value(serde_json::json!({"extra_ca_files": ["/c.pem"]})).unwrap();
        assert_eq!(from_file.extra_ca_files, ["/c.pem"]);
        let none: GatewayConfig =
            serde_json::from_value(serde_json::json!({"extra_ca_files": ""})).unwrap();
        assert!(none.extra_ca_files.is_empty());
    }
}
