use clap::Parser;

use printyard_contracts::ServiceName;
use printyard_service::boot::{PlainCli, boot};

/// mimalloc gives freed memory back to the system: a gateway's memory follows the printers it
/// holds, down as well as up.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = PlainCli::parse();
    // A connection per printer: thousands of sockets, beyond the usual soft limit of 1,024.
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("the open-file limit could not be raised: {err}");
    }
    let booted = boot::<printyard_gateway::Config>(ServiceName::Gateway, &cli.common)?;
    printyard_gateway::run(booted.config).await
}
