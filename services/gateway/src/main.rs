use std::cell::Cell;
use std::time::{Duration, Instant};

use clap::Parser;

use printyard_contracts::ServiceName;
use printyard_service::boot::{PlainCli, boot};

/// mimalloc gives freed memory back to the system: a gateway's memory follows the printers it
/// holds, down as well as up.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = PlainCli::parse();
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
            unsafe { libmimalloc_sys::mi_collect(false) };
        }
    });
}
