//! NATS connection with bounded start-up retries, and W3C trace context in message headers.
//!
//! Every message a service sends on behalf of a traced operation carries `traceparent`, so
//! the handler in another service continues the same trace (request/reply and JetStream alike).

use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, HeaderMap};
use opentelemetry::propagation::{Extractor, Injector};
use printyard_contracts::ServiceName;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::backoff::Backoff;
use crate::config::NatsConfig;

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("NATS at {url} not reachable after {secs} s: {last}")]
    Unreachable {
        url: String,
        secs: u64,
        last: String,
    },
    #[error("NATS credentials file could not be read: {0}")]
    Credentials(std::io::Error),
}

/// Connects to NATS, retrying with backoff until `startup_timeout_secs` have passed.
/// Once connected, the client reconnects by itself (async-nats' own capped backoff) and
/// re-subscribes; the admin `/readyz` reports the connection state meanwhile.
pub async fn connect(config: &NatsConfig, service: ServiceName) -> Result<Client, NatsError> {
    let deadline = Instant::now() + Duration::from_secs(config.startup_timeout_secs);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let mut options = ConnectOptions::new()
            .name(format!("printyard-{service}"))
            .connection_timeout(Duration::from_millis(config.connect_timeout_ms))
            .request_timeout(Some(config.request_timeout()))
            .max_reconnects(None)
            .event_callback(move |event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    async_nats::Event::Disconnected => tracing::warn!("NATS disconnected"),
                    other => tracing::info!(event = %other, "NATS event"),
                }
            });
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options.user_and_password(user.clone(), password.expose().clone());
        }
        if let Some(prefix) = &config.inbox_prefix {
            options = options.custom_inbox_prefix(prefix);
        }
        if let Some(path) = &config.credentials_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(NatsError::Credentials)?;
        }
        match options.connect(config.url.as_str()).await {
            Ok(client) => return Ok(client),
            Err(err) => {
                let delay = backoff.next_delay();
                if Instant::now() + delay >= deadline {
                    return Err(NatsError::Unreachable {
                        url: config.url.clone(),
                        secs: config.startup_timeout_secs,
                        last: err.to_string(),
                    });
                }
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "NATS not reachable yet");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// The JetStream of the central cluster: in `domain` when connected through a leaf node.
pub fn central_jetstream(client: Client, domain: Option<&str>) -> async_nats::jetstream::Context {
    match domain {
        Some(domain) => async_nats::jetstream::with_domain(client, domain),
        None => async_nats::jetstream::new(client),
    }
}

/// Whether the client is connected right now.
pub fn is_connected(client: &Client) -> bool {
    matches!(
        client.connection_state(),
        async_nats::connection::State::Connected
    )
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// Writes the current span's trace context (`traceparent`, `tracestate`) into `headers`.
pub fn inject_context(headers: &mut HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Makes `span` a child of the trace context carried in `headers`, if any.
pub fn adopt_context(span: &tracing::Span, headers: Option<&HeaderMap>) {
    let Some(headers) = headers else { return };
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    // Fails only when the span is disabled; there is nothing to parent then.
    let _ = span.set_parent(parent);
}

/// Headers for a new message, carrying the current trace context.
pub fn traced_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    inject_context(&mut headers);
    headers
}

/// Publishes to JetStream with the current trace context and, when given, a `Nats-Msg-Id`
/// so that the stream stores a re-published message once. Waits for the stream's ack.
pub async fn publish_to_stream(
    jetstream: &async_nats::jetstream::Context,
    subject: String,
    payload: bytes::Bytes,
    message_id: Option<&str>,
    deadline: Duration,
) -> Result<async_nats::jetstream::publish::PublishAck, StreamPublishError> {
    let mut headers = traced_headers();
    if let Some(id) = message_id {
        headers.insert("Nats-Msg-Id", id);
    }
    let ack = tokio::time::timeout(deadline, async {
        jetstream
            .publish_with_headers(subject, headers, payload)
            .await
            .map_err(|e| StreamPublishError::Rejected(e.to_string()))?
            .await
            .map_err(|e| StreamPublishError::Rejected(e.to_string()))
    })
    .await
    .map_err(|_| StreamPublishError::Timeout(deadline))??;
    Ok(ack)
}

#[derive(Debug, thiserror::Error)]
pub enum StreamPublishError {
    #[error("JetStream refused the message: {0}")]
    Rejected(String),
    #[error("JetStream did not acknowledge within {0:?}")]
    Timeout(Duration),
}

/// Returns once the server has processed everything this client sent before the call.
///
/// `Client::flush` only writes the buffer; a subscription is in effect for *other*
/// connections only after the server has read it. A message to ourselves through the
/// server proves that: the server handles one connection's operations in order.
pub async fn sync_with_server(client: &Client, deadline: Duration) -> Result<(), String> {
    use futures::StreamExt;
    let inbox = client.new_inbox();
    let mut echo = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    client
        .publish(inbox, bytes::Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    let arrived = tokio::time::timeout(deadline, echo.next()).await;
    let _ = echo.unsubscribe().await;
    match arrived {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("subscription closed".to_owned()),
        Err(_) => Err(format!("no echo from the server within {deadline:?}")),
    }
}

/// Opens a JetStream KV bucket, creating it when missing (idempotent across replicas).
/// Subscribes to `subject` (core NATS) and answers a task that calls `each` for every message
/// until `stop`: how a replica is woken by news from the others ("a job was added", "deliveries
/// are due").
pub async fn on_each_message(
    client: &Client,
    subject: String,
    stop: tokio_util::sync::CancellationToken,
    mut each: impl FnMut() + Send + 'static,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, async_nats::SubscribeError> {
    use futures::StreamExt;
    let mut messages = client.subscribe(subject).await?;
    Ok(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                message = messages.next() => match message {
                    Some(_) => each(),
                    None => return,
                },
            }
        }
    })
}

pub async fn kv_bucket(
    jetstream: &async_nats::jetstream::Context,
    name: &str,
    max_age: Duration,
) -> anyhow::Result<async_nats::jetstream::kv::Store> {
    if let Ok(store) = jetstream.get_key_value(name).await {
        return Ok(store);
    }
    jetstream
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: name.to_owned(),
            history: 1,
            max_age,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating KV bucket {name}: {e}"))
}

/// Opens the `FARM_EVENTS` stream, creating it when missing. Its producers (gateways) and its
/// consumers (archive, …) may start in any order, so every one of them opens it the same way.
pub async fn farm_events_stream(
    jetstream: &async_nats::jetstream::Context,
) -> anyhow::Result<async_nats::jetstream::stream::Stream> {
    use printyard_contracts::farm::{FARM_EVENTS_STREAM, all_events};
    jetstream
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: FARM_EVENTS_STREAM.to_owned(),
            subjects: vec![all_events()],
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(7 * 24 * 3600),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating stream {FARM_EVENTS_STREAM}: {e}"))
}

/// Opens an object store bucket files reach `archive` through (`archive_transfer`, or a
/// site's `archive_transfer_<site>`), creating it when missing. Objects nobody collected (a
/// crash between upload and import) expire after a day.
pub async fn transfer_bucket(
    jetstream: &async_nats::jetstream::Context,
    name: &str,
) -> anyhow::Result<async_nats::jetstream::object_store::ObjectStore> {
    if let Ok(store) = jetstream.get_object_store(name).await {
        return Ok(store);
    }
    jetstream
        .create_object_store(async_nats::jetstream::object_store::Config {
            bucket: name.to_owned(),
            description: Some("files on their way into the archive".to_owned()),
            max_age: Duration::from_secs(24 * 3600),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating object store {name}: {e}"))
}
