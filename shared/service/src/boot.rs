//! What every service binary does before its own work: read arguments and configuration,
//! start logs and traces. Keeps each `main.rs` a few lines long.

use std::path::PathBuf;

use printyard_contracts::ServiceName;
use serde::de::DeserializeOwned;

use crate::config::{self, HasTelemetry};
use crate::telemetry::{self, TelemetryGuard};

/// Arguments every service binary accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Configuration file (TOML, YAML or JSON); `PRINTYARD__SECTION__KEY` variables override it.
    #[arg(long, env = config::CONFIG_FILE_ENV)]
    pub config: Option<PathBuf>,
}

/// A service binary with nothing but the common arguments.
#[derive(Debug, clap::Parser)]
#[command(version, about)]
pub struct PlainCli {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// A started process: its configuration and the guard that flushes traces on exit.
pub struct Booted<C> {
    pub config: C,
    pub telemetry: TelemetryGuard,
}

/// Loads `C` and starts telemetry for `service`.
pub fn boot<C: DeserializeOwned + HasTelemetry>(
    service: ServiceName,
    args: &CommonArgs,
) -> anyhow::Result<Booted<C>> {
    let loaded = config::load::<C>(args.config.as_deref())?;
    let telemetry = telemetry::init(service, loaded.config.telemetry())?;
    config::warn_unknown_keys(&loaded.unknown_keys);
    Ok(Booted {
        config: loaded.config,
        telemetry,
    })
}
