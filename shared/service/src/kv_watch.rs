//! Local copies of KV buckets: a watch that hands every entry (history first, then changes) to
//! the caller, and watches again with backoff when the watch fails or ends, so a service keeps
//! an up-to-date view of a bucket without ever asking for it on a hot path.

use std::time::Duration;

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
