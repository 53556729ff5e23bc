//! A local copy of the `printer_status` KV bucket, kept current by watching it, so that status
//! reads never wait on a gateway or a printer.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use futures::StreamExt;
use printyard_contracts::farm::StatusRecord;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
pub struct StatusCache {
    entries: Arc<RwLock<HashMap<i64, StatusRecord>>>,
}

impl StatusCache {
    pub fn get(&self, printer_id: i64) -> Option<StatusRecord> {
        self.entries.read().ok()?.get(&printer_id).cloned()
    }

    /// Follows the bucket until `stop`; re-watches with backoff if the watch ends.
    pub async fn follow(self, bucket: kv::Store, stop: CancellationToken) {
        let mut backoff = printyard_service::backoff::Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(5),
        );
        loop {
            let mut watch = match bucket.watch_with_history(">").await {
                Ok(watch) => watch,
                Err(err) => {
                    tracing::warn!(error = %err, "printer status watch failed");
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
                let Some(Ok(entry)) = entry else { break };
                let Ok(id) = entry.key.parse::<i64>() else {
                    continue;
                };
                let Ok(mut entries) = self.entries.write() else {
                    return;
                };
                match entry.operation {
                    Operation::Put => {
                        if let Ok(record) = serde_json::from_slice::<StatusRecord>(&entry.value) {
                            entries.insert(id, record);
                        }
                    }
                    Operation::Delete | Operation::Purge => {
                        entries.remove(&id);
                    }
                }
            }
        }
    }
}
