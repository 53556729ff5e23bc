//! Local copies of KV buckets: a watch that hands every entry (history first, then changes) to
//! the caller, and watches again with backoff when the watch fails or ends, so a service keeps
//! an up-to-date view of a bucket without ever asking for it on a hot path. And watches of one
//! site's keys that credentials limited to that site may open.

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, push};
use async_nats::jetstream::kv::{self, Entry};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// Watches every key of `bucket` and hands each entry to `apply`, until `stop`. After a failed
/// or ended watch, the next one starts with the latest entry of every key: a change missed in
/// between is seen then.
pub async fn follow(bucket: kv::Store, stop: CancellationToken, mut apply: impl FnMut(Entry)) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let mut watch = match bucket.watch_with_history(">").await {
            Ok(watch) => watch,
            Err(err) => {
                tracing::warn!(error = %err, "bucket watch failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => continue,
                }
            }
        };
        backoff.reset();
        loop {
            let entry = tokio::select! {
                _ = stop.cancelled() => return,
                entry = watch.next() => entry,
            };
            match entry {
                Some(Ok(entry)) => apply(entry),
                Some(Err(err)) => tracing::warn!(error = %err, "bucket watch hiccup"),
                None => break,
            }
        }
    }
}

/// A watch of the keys of `bucket` matching `keys` (`<site>.*`), history first (the latest
/// entry of each key), then every change.
///
/// Unlike `kv::Store::watch`, its consumer has a name (`<name>_<random>`), so the server sees
/// the filter in the request subject (`$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>`) and
/// credentials limited to one site's keys may create it and no other (docs/sites.md).
pub async fn watch_keys(
    client: &async_nats::Client,
    bucket: &kv::Store,
    keys: &str,
    name: &str,
) -> Result<KeyWatch, String> {
    KeyWatch::start(client, bucket, keys, name).await
}

/// The keys of `bucket` matching `keys` that hold a value now (see [`watch_keys`] for why
/// not `kv::Store::keys`).
pub async fn list_keys(
    client: &async_nats::Client,
    bucket: &kv::Store,
    keys: &str,
    name: &str,
    deadline: Duration,
) -> Result<Vec<String>, String> {
    let mut watch = KeyWatch::start(client, bucket, keys, name).await?;
    let mut live = Vec::new();
    if watch.caught_up {
        return Ok(live);
    }
    tokio::time::timeout(deadline, async {
        while let Some(entry) = watch.next().await {
            let entry = entry?;
            if matches!(entry.operation, kv::Operation::Put) {
                live.push(entry.key);
            }
            if entry.delta == 0 {
                return Ok(());
            }
        }
        Err("the key listing ended early".to_owned())
    })
    .await
    .map_err(|_| format!("keys not listed within {deadline:?}"))??;
    Ok(live)
}

/// The entries of a [`watch_keys`] watch.
pub struct KeyWatch {
    messages: push::Ordered,
    prefix: String,
    bucket: String,
    /// Nothing was there to deliver when the watch started.
    caught_up: bool,
}

impl KeyWatch {
    async fn start(
        client: &async_nats::Client,
        bucket: &kv::Store,
        keys: &str,
        name: &str,
    ) -> Result<Self, String> {
        let consumer = bucket
            .stream
            .create_consumer(push::OrderedConfig {
                name: Some(format!("{name}_{:012x}", rand::random::<u64>() >> 16)),
                deliver_subject: client.new_inbox(),
                description: Some("kv key watch".to_owned()),
                filter_subject: format!("{}{keys}", bucket.prefix),
                replay_policy: async_nats::jetstream::consumer::ReplayPolicy::Instant,
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("watching {}: {e}", bucket.name))?;
        let caught_up = consumer.cached_info().num_pending == 0;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| format!("watching {}: {e}", bucket.name))?;
        Ok(Self {
            messages,
            prefix: bucket.prefix.clone(),
            bucket: bucket.name.clone(),
            caught_up,
        })
    }
}

impl futures::Stream for KeyWatch {
    type Item = Result<Entry, String>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let message = match self.messages.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err.to_string()))),
            Poll::Ready(Some(Ok(message))) => message,
        };
        let info = match message.info() {
            Ok(info) => info,
            Err(err) => return Poll::Ready(Some(Err(format!("unreadable entry: {err}")))),
        };
        let operation = match message
            .headers
            .as_ref()
            .and_then(|h| h.get("KV-Operation"))
            .map(|v| v.as_str())
        {
            Some("DEL") => kv::Operation::Delete,
            Some("PURGE") => kv::Operation::Purge,
            _ => kv::Operation::Put,
        };
        let Some(key) = message.subject.strip_prefix(self.prefix.as_str()) else {
            return Poll::Ready(Some(Err(format!(
                "entry outside the bucket: {}",
                message.subject
            ))));
        };
        let entry = Entry {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            value: message.payload.clone(),
            revision: info.stream_sequence,
            created: info.published,
            delta: info.pending,
            operation,
            seen_current: info.pending == 0,
        };
        Poll::Ready(Some(Ok(entry)))
    }
}
