use clap::Parser;
use printyard_contracts::ServiceName;
use printyard_service::boot::{PlainCli, boot};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = PlainCli::parse();
    let booted = boot::<printyard_stats::Config>(ServiceName::Stats, &cli.common)?;
    printyard_stats::run(booted.config).await
}
