use std::cell::Cell;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use printyard_contracts::ServiceName;
use printyard_contracts::farm::Site;
use printyard_service::boot::{CommonArgs, boot};

/// The printer gateway: bridges printers' MQTT, FTPS and camera onto NATS.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Print the NATS permissions of a site's gateway credentials, as the JSON `permissions`
    /// block of a `nats-server` user (docs/sites.md), and exit.
    SitePermissions {
        /// The site.
        #[arg(long)]
        site: String,
        /// The central cluster's JetStream domain, when the site's gateway connects through a
        /// leaf node (`central` in docs/sites.md's setup).
        #[arg(long)]
        domain: Option<String>,
        /// The site's leaf node runs JetStream (domain `site-<site>`) and keeps the site's
        /// events and files through an uplink outage (`gateway.site_jetstream`).
        #[arg(long)]
        buffered: bool,
        /// The permissions of the user the leaf node connects to the central cluster with,
        /// rather than the gateway's at the leaf node (they differ for a buffered site).
        #[arg(long)]
        leaf: bool,
    },
}

/// mimalloc gives freed memory back to the system: a gateway's memory follows the printers it
/// holds, down as well as up.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::SitePermissions {
        site,
        domain,
        buffered,
        leaf,
    }) = &cli.command
    {
        use printyard_contracts::sites::{SiteMode, gateway_permissions, leaf_permissions};
        let site = Site::parse(site).map_err(|e| anyhow::anyhow!("--site: {e}"))?;
        let mode = SiteMode {
            buffered: *buffered,
        };
        let permissions = if *leaf {
            leaf_permissions(&site, domain.as_deref(), mode)
        } else {
            gateway_permissions(&site, domain.as_deref(), mode)
        };
        println!("{}", serde_json::to_string_pretty(&permissions)?);
        return Ok(());
    }
    // A connection per printer: thousands of sockets, beyond the usual soft limit of 1,024.
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("the open-file limit could not be raised: {err}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(collect_freed_memory)
        .build()?;
    runtime.block_on(async {
        let booted = boot::<printyard_gateway::Config>(ServiceName::Gateway, &cli.common)?;
        printyard_gateway::run(booted.config).await
    })
}

/// How often an idle worker thread collects.
const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// Has mimalloc take back, on this worker thread, what other threads freed of its memory and
/// return empty pages to the system, at most once per [`COLLECT_EVERY`]; run whenever a
/// runtime worker goes idle. mimalloc does that work as a thread allocates again: a printer's
/// connection moves between workers, so its memory is mostly freed by another thread than the
/// one that allocated it, and a gateway whose printers were deleted has little left to
/// allocate (it kept 340 MB after 2,000 printers were deleted).
fn collect_freed_memory() {
    thread_local!(static LAST: Cell<Option<Instant>> = const { Cell::new(None) });
    LAST.with(|last| {
        if last.get().is_none_or(|at| at.elapsed() >= COLLECT_EVERY) {
            last.set(Some(Instant::now()));
            // SAFETY: `mi_collect` has no preconditions; it works on the calling thread's heap.
            // The workspace denies unsafe code; this one call into the allocator is the
            // exception (there is no safe wrapper for it).
            #[allow(unsafe_code)]
            unsafe {
                libmimalloc_sys::mi_collect(false)
            };
        }
    });
}
