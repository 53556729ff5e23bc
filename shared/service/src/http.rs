//! Serving HTTP with deadlines a client cannot stretch.
//!
//! `axum::serve` sets no deadline on reading a request: a client that sends its headers or its
//! body a byte a second holds a connection, a task and its buffers for as long as it likes.
//! [`serve`] is the same accept loop with two deadlines, in the manner of Apache's
//! `mod_reqtimeout`:
//!
//! - the request head must arrive within [`Deadlines::header`], or the connection is closed;
//! - the body must keep up a minimum rate: it may take [`Deadlines::body_grace`], plus a second
//!   for every [`Deadlines::body_min_rate`] bytes received. Past that, reading it fails with
//!   [`BodyTooSlow`] (the API answers 408 and the connection is closed). Time only counts while
//!   the server waits for the client: bytes already received are never refused.
//!
//! Every request carries `ConnectInfo<SocketAddr>`, as with `into_make_service_with_connect_info`.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// How long a client may take to send a request. Shared by the API's public listener and every
/// service's admin listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Deadlines {
    /// The request line and headers, in milliseconds.
    pub header_ms: u64,
    /// What a body may take before the rate counts, in milliseconds.
    pub body_grace_ms: u64,
    /// Bytes a second a body must average past the grace (0: no deadline on bodies).
    pub body_min_rate: u64,
}

impl Default for Deadlines {
    fn default() -> Self {
        // mod_reqtimeout's defaults: headers 20 s, bodies 20 s plus a second per 500 bytes.
        Self {
            header_ms: 20_000,
            body_grace_ms: 20_000,
            body_min_rate: 500,
        }
    }
}

impl Deadlines {
    pub fn header(&self) -> Duration {
        Duration::from_millis(self.header_ms)
    }
    pub fn body_grace(&self) -> Duration {
        Duration::from_millis(self.body_grace_ms)
    }
}

/// The error of a body that did not keep up [`Deadlines::body_min_rate`].
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly")]
pub struct BodyTooSlow;

/// Whether `err` (or one of its causes) is [`BodyTooSlow`].
pub fn is_too_slow(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if err.is::<BodyTooSlow>() {
            return true;
        }
        current = err.source();
    }
    false
}

/// How long the graceful shutdown waits for open requests (streams end on the same signal).
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `stop`, then lets open connections finish (up to 10 s).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    deadlines: Deadlines,
    stop: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(deadlines.header());
    builder.http2().timer(TokioTimer::new());
    loop {
        let (stream, remote) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors, mostly: wait a little rather than spin.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service =
            tower::ServiceExt::map_request(app, move |request: hyper::Request<Incoming>| {
                let (mut parts, body) = request.into_parts();
                parts.extensions.insert(ConnectInfo(remote));
                hyper::Request::from_parts(parts, Body::new(MinRate::new(body, deadlines)))
            });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, peer = %remote, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open {DRAIN:?} after shutdown: closed");
    }
}

/// A request body held to [`Deadlines`]' minimum rate.
struct MinRate<B> {
    inner: B,
    grace: Duration,
    rate: u64,
    started: Instant,
    received: u64,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> MinRate<B> {
    fn new(inner: B, deadlines: Deadlines) -> Self {
        Self {
            inner,
            grace: deadlines.body_grace(),
            rate: deadlines.body_min_rate,
            started: Instant::now(),
            received: 0,
            deadline: None,
        }
    }

    fn due(&self) -> Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / self.rate.max(1) as f64);
        self.started + self.grace + earned
    }
}

impl<B> HttpBody for MinRate<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let Some(Ok(frame)) = &frame
                && let Some(data) = frame.data_ref()
            {
                this.received += data.len() as u64;
                this.deadline = None;
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.rate == 0 {
            return Poll::Pending;
        }
        let due = this.due();
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTooSlow))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
