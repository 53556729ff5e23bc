use clap::Parser;
use printyard_contracts::ServiceName;
use printyard_service::boot::{PlainCli, boot};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = PlainCli::parse();
    let booted = boot::<printyard_notifier::Config>(ServiceName::Notifier, &cli.common)?;
    printyard_notifier::run(booted.config).await
}
