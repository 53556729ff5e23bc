use clap::Parser;
use printyard_contracts::ServiceName;
use printyard_service::boot::{PlainCli, boot};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = PlainCli::parse();
    let booted = boot::<printyard_filament::Config>(ServiceName::Filament, &cli.common)?;
    printyard_filament::run(booted.config).await
}
