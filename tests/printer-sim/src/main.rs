//! `printer-sim`: starts a farm of simulated printers and writes its manifest.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use printyard_printer_sim::camera::CameraConfig;
use printyard_printer_sim::{Farm, FarmConfig, Model, Ports};

/// A farm of virtual Bambu Lab printers speaking the real LAN protocol.
///
/// Printer N listens on its own loopback address (127.0.1.N by default) on 8883 (MQTT/TLS),
/// 990 (implicit FTPS) and 6000 (camera of A1 and P1) or 322 (RTSPS camera of X1). Ports
/// below 1024 need root.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// How many printers.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Models, used in turn: X1C, P1S, P1P, A1, A1mini, H2D.
    #[arg(long, value_delimiter = ',', value_parser = parse_model, default_value = "X1C,P1S,P1P,A1,A1mini,H2D")]
    models: Vec<Model>,
    /// Simulated seconds per real second (60: an hour-long print takes a minute).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Simulation step and shortest interval between reports, milliseconds.
    #[arg(long, default_value_t = 1000)]
    tick_ms: u64,
    /// An idle printer sends a small report this often, seconds.
    #[arg(long, default_value_t = 5)]
    idle_report_secs: u64,
    /// How many printers start printing a demo file at once.
    #[arg(long, default_value_t = 0)]
    printing: usize,
    /// The first printer's address.
    #[arg(long, default_value = "127.0.1.1")]
    first_ip: Ipv4Addr,
    /// The number in the first printer's serial (`01P00A000000001` is 1); the next count up.
    #[arg(long, default_value_t = 1)]
    first_serial: usize,
    #[arg(long, default_value_t = 8883)]
    mqtt_port: u16,
    #[arg(long, default_value_t = 990)]
    ftps_port: u16,
    #[arg(long, default_value_t = 6000)]
    camera_port: u16,
    /// The RTSPS camera's port (X1).
    #[arg(long, default_value_t = 322)]
    rtsps_port: u16,
    /// Concurrent MQTT clients per printer; 0 for unlimited.
    #[arg(long, default_value_t = 4)]
    client_cap: usize,
    #[arg(long, default_value_t = 1.0)]
    camera_fps: f64,
    /// Camera frame size, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720")]
    camera_size: String,
    /// The control API (fault injection).
    #[arg(long, default_value = "127.0.0.1:8990")]
    control: SocketAddr,
    /// Where to write the manifest (serials, access codes, addresses, models, CA path) as JSON.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Where to write the simulator CA's PEM (default: beside the manifest, as sim-ca.pem).
    #[arg(long)]
    ca: Option<PathBuf>,
}

fn parse_model(s: &str) -> Result<Model, String> {
    Model::parse(s).ok_or_else(|| format!("unknown model {s:?} (X1C, P1S, P1P, A1, A1mini, H2D)"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let (width, height) = cli
        .camera_size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .ok_or_else(|| anyhow::anyhow!("--camera-size must be WIDTHxHEIGHT"))?;
    let config = FarmConfig {
        count: cli.count,
        models: cli.models,
        first_ip: cli.first_ip,
        first_serial: cli.first_serial,
        ports: Ports {
            mqtt: cli.mqtt_port,
            ftps: cli.ftps_port,
            camera: cli.camera_port,
            rtsps: cli.rtsps_port,
        },
        speed: cli.speed,
        tick: Duration::from_millis(cli.tick_ms.max(10)),
        idle_report: Duration::from_secs(cli.idle_report_secs.max(1)),
        mqtt_client_cap: (cli.client_cap > 0).then_some(cli.client_cap),
        camera: CameraConfig {
            fps: cli.camera_fps,
            width,
            height,
        },
        control: Some(cli.control),
        printing: cli.printing,
    };
    let farm = Farm::start(config).await?;
    let ca_path = cli.ca.or_else(|| {
        cli.manifest
            .as_ref()
            .map(|m| m.with_file_name("sim-ca.pem"))
    });
    if let Some(path) = &ca_path {
        std::fs::write(path, farm.ca_pem())?;
    }
    let manifest = farm.manifest(ca_path);
    let json = serde_json::to_string_pretty(&manifest)?;
    match &cli.manifest {
        Some(path) => {
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, &json)?;
            std::fs::rename(&tmp, path)?;
        }
        None => println!("{json}"),
    }
    tracing::info!(
        printers = farm.printers.len(),
        control = ?farm.control_addr(),
        "printer farm running; Ctrl-C stops it"
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
