use clap::Parser;
use printyard_contracts::ServiceName;
use printyard_service::boot::{PlainCli, boot};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = PlainCli::parse();
    let booted = boot::<printyard_gateway::Config>(ServiceName::Gateway, &cli.common)?;
    printyard_gateway::run(booted.config).await
}
