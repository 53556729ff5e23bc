//! Graceful shutdown: SIGTERM or SIGINT cancels one token that every part of a service
//! watches. Stopping work is the runtime's job (see [`crate::runtime`]), not this module's.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or SIGINT.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Without signal handlers the process can still be stopped by SIGKILL; Ctrl-C
            // through tokio's portable handler is the best remaining option.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
