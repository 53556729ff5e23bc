//! Local copies of two KV buckets, kept current by watching them, so that hot reads never wait
//! on Postgres, a gateway or a printer: `printer_status` (each printer's latest status) and the
//! ids in `printer_registry` (which printers exist).

use async_nats::jetstream::kv::{self, Operation};
use futures::StreamExt as _;
use printyard_contracts::farm::{PrinterRecord, StatusRecord, is_legacy_key, printer_of_key};
use printyard_service::kv_watch::follow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct StatusCache {
    entries: Arc<RwLock<HashMap<i64, StatusRecord>>>,
    /// Every status written, for the live event stream (`/events`).
    changes: broadcast::Sender<StatusRecord>,
}

impl Default for StatusCache {
    fn default() -> Self {
        Self {
            entries: Arc::default(),
            changes: broadcast::channel(4096).0,
        }
    }
}

impl StatusCache {
    pub fn get(&self, printer_id: i64) -> Option<StatusRecord> {
        self.entries.read().ok()?.get(&printer_id).cloned()
    }

    /// `f` given a lookup of the latest statuses, under one read of the cache and without
    /// copying them (a list of thousands of printers).
    pub fn with<T>(&self, f: impl FnOnce(&HashMap<i64, StatusRecord>) -> T) -> T {
        match self.entries.read() {
            Ok(entries) => f(&entries),
            Err(_) => f(&HashMap::new()),
        }
    }

    /// Every printer's latest status.
    pub fn all(&self) -> Vec<StatusRecord> {
        self.entries
            .read()
            .map(|entries| entries.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The statuses written from now on. A receiver that falls 4,096 behind is told it lagged.
    pub fn subscribe(&self) -> broadcast::Receiver<StatusRecord> {
        self.changes.subscribe()
    }

    /// Follows the bucket until `stop`.
    pub async fn follow(self, bucket: kv::Store, stop: CancellationToken) {
        follow(bucket, stop, move |entry| {
            let Some(id) = printer_of_key(&entry.key) else {
                return;
            };
            match entry.operation {
                Operation::Put => {
                    // Decoded before the lock: readers wait for the insert only.
                    let Ok(record) = serde_json::from_slice::<StatusRecord>(&entry.value) else {
                        return;
                    };
                    if self.changes.receiver_count() > 0 {
                        let _ = self.changes.send(record.clone());
                    }
                    if let Ok(mut entries) = self.entries.write() {
                        entries.insert(id, record);
                    }
                }
                Operation::Delete | Operation::Purge => {
                    if let Ok(mut entries) = self.entries.write() {
                        entries.remove(&id);
                    }
                }
            }
        })
        .await
    }
}

/// The printers in the registry bucket (keys `<site>.<id>`, values the records `api` mirrors
/// there): their sites and names. A hint for the fast path: a miss is checked in Postgres,
/// which stays the authority.
#[derive(Clone, Default)]
pub struct KnownPrinters {
    /// Printer id → its site and name.
    ids: Arc<RwLock<HashMap<i64, (String, String)>>>,
    /// Grows with every change of `ids` (answers naming printers are kept per version).
    version: Arc<AtomicU64>,
}

impl KnownPrinters {
    pub fn contains(&self, printer_id: i64) -> bool {
        self.ids
            .read()
            .is_ok_and(|ids| ids.contains_key(&printer_id))
    }

    /// The printer's site, as its registry key says.
    pub fn site(&self, printer_id: i64) -> Option<String> {
        Some(self.ids.read().ok()?.get(&printer_id)?.0.clone())
    }

    /// A number that changes whenever a printer is added, changed or removed (read it before
    /// [`KnownPrinters::names`]: an answer named after it is then never older than it says).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Every printer's site, by id.
    pub fn sites(&self) -> Vec<(i64, String)> {
        self.ids
            .read()
            .map(|ids| {
                ids.iter()
                    .map(|(id, (site, _))| (*id, site.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every printer's name, by id.
    pub fn names(&self) -> HashMap<i64, String> {
        self.ids
            .read()
            .map(|ids| {
                ids.iter()
                    .map(|(id, (_, name))| (*id, name.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn follow(self, bucket: kv::Store, stop: CancellationToken) {
        follow(bucket, stop, move |entry| {
            let Some((site, id)) = entry.key.rsplit_once('.') else {
                return;
            };
            let Ok(id) = id.parse() else {
                return;
            };
            let Ok(mut ids) = self.ids.write() else {
                return;
            };
            match entry.operation {
                Operation::Put => {
                    let name = serde_json::from_slice::<PrinterRecord>(&entry.value)
                        .map(|record| record.name)
                        .unwrap_or_default();
                    ids.insert(id, (site.to_owned(), name));
                }
                Operation::Delete | Operation::Purge => {
                    ids.remove(&id);
                }
            };
            self.version.fetch_add(1, Ordering::AcqRel);
        })
        .await
    }
}

/// Purges the statuses stored under the key layout before sites (`<id>`; now `<site>.<id>`):
/// nothing writes them any more, and a reader would take them for the printer's current
/// status. Idempotent; run by every `api` at start.
pub async fn purge_legacy_keys(bucket: kv::Store) {
    let keys = match bucket.keys().await {
        Ok(keys) => keys,
        Err(err) => {
            tracing::warn!(error = %err, "legacy status keys not listed");
            return;
        }
    };
    let legacy: Vec<String> = keys
        .filter_map(|key| async move { key.ok().filter(|k| is_legacy_key(k)) })
        .collect()
        .await;
    for key in &legacy {
        if let Err(err) = bucket.purge(key).await {
            tracing::warn!(key, error = %err, "legacy status key not purged");
        }
    }
    if !legacy.is_empty() {
        tracing::info!(
            keys = legacy.len(),
            "statuses of the layout before sites purged"
        );
    }
}
