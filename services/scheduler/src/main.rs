use clap::Parser;
use printyard_contracts::ServiceName;
use printyard_service::boot::{PlainCli, boot};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = PlainCli::parse();
    let booted = boot::<printyard_scheduler::Config>(ServiceName::Scheduler, &cli.common)?;
    printyard_scheduler::run(booted.config).await
}
