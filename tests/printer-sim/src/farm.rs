//! A farm of simulated printers in one process: one loopback address per printer (127.0.1.N by
//! default) with the real ports, a CA that signs every printer's certificate, and a manifest
//! that tells scripts and tests what was started.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use rand::Rng;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::camera::{self, CameraConfig};
use crate::certs::{self, Ca};
use crate::model::{Model, serial_for};
use crate::printer::{Printer, PrinterSpec};
use crate::rtsps;
use crate::{control, ftps, mqtt};

/// The sliced 3MF a printer prints when the farm starts it printing.
pub const DEMO_3MF: &[u8] = include_bytes!("../../fixtures/3mf/a1mini-1plate.gcode.3mf");
pub const DEMO_PATH: &str = "/cache/demo-cube.gcode.3mf";

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ports {
    pub mqtt: u16,
    pub ftps: u16,
    pub camera: u16,
    /// The RTSPS camera (X1).
    pub rtsps: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            mqtt: 8883,
            ftps: 990,
            camera: 6000,
            rtsps: 322,
        }
    }
}

#[derive(Debug, Clone)]
pub struct FarmConfig {
    pub count: usize,
    /// Models, used in turn.
    pub models: Vec<Model>,
    pub first_ip: Ipv4Addr,
    /// The number in the first printer's serial (the next ones count up from it): farms
    /// started side by side (two sites) need serials of their own, as real printers have.
    pub first_serial: usize,
    pub ports: Ports,
    /// Simulated seconds per real second.
    pub speed: f64,
    pub tick: Duration,
    pub idle_report: Duration,
    /// Concurrent MQTT clients a printer accepts (`None`: unlimited).
    pub mqtt_client_cap: Option<usize>,
    pub camera: CameraConfig,
    /// Where the control API listens (`None`: not started).
    pub control: Option<SocketAddr>,
    /// How many printers start printing the demo 3MF at once.
    pub printing: usize,
}

impl Default for FarmConfig {
    fn default() -> Self {
        Self {
            count: 1,
            models: Model::ALL.to_vec(),
            first_ip: Ipv4Addr::new(127, 0, 1, 1),
            first_serial: 1,
            ports: Ports::default(),
            speed: 1.0,
            tick: Duration::from_secs(1),
            idle_report: Duration::from_secs(5),
            mqtt_client_cap: Some(4),
            camera: CameraConfig::default(),
            control: None,
            printing: 0,
        }
    }
}

/// One printer as the manifest lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestPrinter {
    pub name: String,
    pub serial: String,
    pub access_code: String,
    pub ip: Ipv4Addr,
    pub model: Model,
    pub model_id: &'static str,
    pub mqtt_port: u16,
    pub ftps_port: u16,
    /// Port 6000 camera (A1, P1); `None` for models with RTSPS cameras.
    pub camera_port: Option<u16>,
    /// RTSPS camera (X1); `None` for models with a port 6000 camera.
    pub rtsps_port: Option<u16>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub ca_path: Option<PathBuf>,
    pub ca_pem: String,
    pub control_url: Option<String>,
    pub printers: Vec<ManifestPrinter>,
}

pub struct Farm {
    pub printers: Vec<Arc<Printer>>,
    ca: Ca,
    ca_pem: String,
    ports: Ports,
    control_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Farm {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The `index`-th address after `first`, skipping .0 and .255 in the last octet.
pub fn address(first: Ipv4Addr, index: usize) -> Ipv4Addr {
    let base = u32::from(first);
    let mut ip = base;
    let mut left = index;
    loop {
        let last = ip & 0xFF;
        if last != 0 && last != 255 {
            if left == 0 {
                return Ipv4Addr::from(ip);
            }
            left -= 1;
        }
        ip += 1;
    }
}

impl Farm {
    pub async fn start(config: FarmConfig) -> anyhow::Result<Self> {
        // Thousands of listeners need more descriptors than a default soft limit allows.
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        let ca = Ca::generate()?;
        let mut rng = rand::rng();
        let mut printers = Vec::with_capacity(config.count);
        let mut tasks = Vec::new();
        for index in 0..config.count {
            let model = config.models[index % config.models.len().max(1)];
            let ip = address(config.first_ip, index);
            let serial = serial_for(model, config.first_serial + index);
            let spec = PrinterSpec {
                name: format!("{} #{}", model.name(), index + 1),
                access_code: format!("{:08}", rng.random_range(0..100_000_000u32)),
                serial,
                model,
                ip,
            };
            let identity = ca.issue(&spec.serial, IpAddr::V4(ip))?;
            let acceptor = TlsAcceptor::from(certs::server_config(&identity)?);
            let printer = Arc::new(Printer::new(spec, config.speed));
            let bind = |port: u16| async move {
                TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), port))
                    .await
                    .with_context(|| format!("binding {ip}:{port} (ports below 1024 need root)"))
            };
            let mqtt_listener = bind(config.ports.mqtt).await?;
            let ftps_listener = bind(config.ports.ftps).await?;
            tasks.push(tokio::spawn(mqtt::serve(
                printer.clone(),
                mqtt_listener,
                acceptor.clone(),
                config.mqtt_client_cap,
            )));
            tasks.push(tokio::spawn(ftps::serve(
                printer.clone(),
                ftps_listener,
                acceptor.clone(),
            )));
            if model.has_port6000_camera() {
                let camera_listener = bind(config.ports.camera).await?;
                tasks.push(tokio::spawn(camera::serve(
                    printer.clone(),
                    camera_listener,
                    acceptor,
                    config.camera,
                )));
            } else {
                let rtsps_listener = bind(config.ports.rtsps).await?;
                tasks.push(tokio::spawn(rtsps::serve(
                    printer.clone(),
                    rtsps_listener,
                    acceptor,
                    config.camera,
                )));
            }
            tasks.push(tokio::spawn(
                printer.clone().run(config.tick, config.idle_report),
            ));
            if index < config.printing {
                printer.store(DEMO_PATH, Bytes::from_static(DEMO_3MF));
                printer
                    .start_from_touchscreen(DEMO_PATH, 1)
                    .map_err(|e| anyhow::anyhow!(e))?;
            }
            printers.push(printer);
        }
        let mut farm = Farm {
            printers,
            ca_pem: ca.pem().to_owned(),
            ca,
            ports: config.ports,
            control_addr: None,
            tasks,
        };
        if let Some(addr) = config.control {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the control API on {addr}"))?;
            farm.control_addr = Some(listener.local_addr()?);
            let router = control::router(farm.printers.clone());
            farm.tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            }));
        }
        Ok(farm)
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A certificate and key (PEM) for `printer`, from the farm's CA, for a server outside the
    /// simulator that speaks for it (the tests run GStreamer's RTSP server with this, an RTSPS
    /// camera other than the simulator's own).
    pub fn identity_pem(&self, printer: &Printer) -> anyhow::Result<(String, String)> {
        self.ca
            .issue_pem(&printer.spec.serial, std::net::IpAddr::V4(printer.spec.ip))
    }

    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control_addr
    }

    pub fn printer(&self, serial: &str) -> Option<&Arc<Printer>> {
        self.printers.iter().find(|p| p.spec.serial == serial)
    }

    pub fn manifest(&self, ca_path: Option<PathBuf>) -> Manifest {
        Manifest {
            ca_path,
            ca_pem: self.ca_pem.clone(),
            control_url: self.control_addr.map(|a| format!("http://{a}")),
            printers: self
                .printers
                .iter()
                .map(|p| ManifestPrinter {
                    name: p.spec.name.clone(),
                    serial: p.spec.serial.clone(),
                    access_code: p.spec.access_code.clone(),
                    ip: p.spec.ip,
                    model: p.spec.model,
                    model_id: p.spec.model.model_id(),
                    mqtt_port: self.ports.mqtt,
                    ftps_port: self.ports.ftps,
                    camera_port: p
                        .spec
                        .model
                        .has_port6000_camera()
                        .then_some(self.ports.camera),
                    rtsps_port: (!p.spec.model.has_port6000_camera()).then_some(self.ports.rtsps),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::address;
    use std::net::Ipv4Addr;

    #[test]
    fn addresses_skip_network_and_broadcast_octets() {
        let first = Ipv4Addr::new(127, 0, 1, 1);
        assert_eq!(address(first, 0), Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(address(first, 253), Ipv4Addr::new(127, 0, 1, 254));
        assert_eq!(address(first, 254), Ipv4Addr::new(127, 0, 2, 1));
        assert_eq!(address(first, 999), Ipv4Addr::new(127, 0, 4, 238));
    }
}
