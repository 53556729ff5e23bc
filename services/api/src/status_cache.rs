//! Local copies of two KV buckets, kept current by watching them, so that hot reads never wait
//! on Postgres, a gateway or a printer: `printer_status` (each printer's latest status) and the
//! ids in `printer_registry` (which printers exist).

use async_nats::jetstream::kv::{self, Operation};
use printyard_contracts::farm::StatusRecord;
use printyard_service::kv_watch::follow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
pub struct StatusCache {
    entries: Arc<RwLock<HashMap<i64, StatusRecord>>>,
}

impl StatusCache {
    pub fn get(&self, printer_id: i64) -> Option<StatusRecord> {
        self.entries.read().ok()?.get(&printer_id).cloned()
    }

    /// Follows the bucket until `stop`.
    pub async fn follow(self, bucket: kv::Store, stop: CancellationToken) {
        follow(bucket, stop, move |entry| {
            let Ok(id) = entry.key.parse::<i64>() else {
                return;
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
        })
        .await
    }
}

/// The printer ids in the registry bucket (keys `<site>.<id>`). A hint for the fast path: a
/// miss is checked in Postgres, which stays the authority.
#[derive(Clone, Default)]
pub struct KnownPrinters {
    ids: Arc<RwLock<HashSet<i64>>>,
}

impl KnownPrinters {
    pub fn contains(&self, printer_id: i64) -> bool {
        self.ids.read().is_ok_and(|ids| ids.contains(&printer_id))
    }

    pub async fn follow(self, bucket: kv::Store, stop: CancellationToken) {
        follow(bucket, stop, move |entry| {
            let Some(id) = entry.key.rsplit('.').next().and_then(|i| i.parse().ok()) else {
                return;
            };
            let Ok(mut ids) = self.ids.write() else {
                return;
            };
            match entry.operation {
                Operation::Put => ids.insert(id),
                Operation::Delete | Operation::Purge => ids.remove(&id),
            };
        })
        .await
    }
}
