//! The accept loop every printer port shares: take TCP connections (or cut them at once under
//! the `refuse_connections` fault), finish the TLS handshake within a deadline, and hand each
//! connection to its protocol in a task of its own.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::printer::Printer;

const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Serves `listener` until the task is dropped; `handle` runs once per TLS connection.
pub async fn serve_tls<F, Fut>(
    printer: Arc<Printer>,
    listener: TcpListener,
    tls: TlsAcceptor,
    handle: F,
) where
    F: Fn(Arc<Printer>, TlsStream<TcpStream>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if printer.faults().refuse_connections {
            drop(socket);
            continue;
        }
        let printer = printer.clone();
        let tls = tls.clone();
        let handle = handle.clone();
        let delay = Duration::from_millis(printer.faults().handshake_delay_ms);
        tokio::spawn(async move {
            let _ = socket.set_nodelay(true);
            tokio::time::sleep(delay).await;
            if let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_DEADLINE, tls.accept(socket)).await
            {
                handle(printer, stream).await;
            }
        });
    }
}
