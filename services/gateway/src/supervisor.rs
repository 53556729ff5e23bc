//! Which printers this gateway drives: it watches the registry for its site, claims each
//! printer through the ownership lease, renews what it holds, and starts or stops one connection
//! task per held printer. Two gateways of a site share the printers; when one dies its leases
//! expire and the other claims them. Never are two connections open to one printer: a task
//! runs only while its lease is held.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use futures::StreamExt;
use printyard_contracts::farm::{PrinterRecord, Site};
use printyard_service::backoff::Backoff;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::connection::{self, Connection};
use crate::store::FarmStore;

pub struct Supervisor {
    pub store: Arc<FarmStore>,
    pub site: Site,
    pub instance: String,
    pub lease: Duration,
    pub connection: Arc<connection::Settings>,
}

struct Held {
    record: PrinterRecord,
    revision: Option<u64>,
    task: Option<(CancellationToken, JoinHandle<()>)>,
}

impl Supervisor {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut printers: HashMap<i64, Held> = HashMap::new();
        let mut renew = tokio::time::interval(self.lease / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let Some(mut watch) = self.watch_registry(&shutdown).await else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                entry = watch.next() => {
                    let entry = match entry {
                        Some(Ok(entry)) => entry,
                        Some(Err(err)) => {
                            tracing::warn!(error = %err, "registry watch hiccup");
                            continue;
                        }
                        None => {
                            // Re-watched from the latest entry per key: a missed change is
                            // seen again, an unchanged printer only renewed.
                            tracing::warn!("registry watch ended; watching again");
                            match self.watch_registry(&shutdown).await {
                                Some(again) => watch = again,
                                None => break,
                            }
                            continue;
                        }
                    };
                    match entry.operation {
                        Operation::Put => match serde_json::from_slice::<PrinterRecord>(&entry.value) {
                            Ok(record) => {
                                let id = record.id;
                                let held = printers.entry(id).or_insert(Held { record: record.clone(), revision: None, task: None });
                                if only_pin_learned(&held.record, &record) {
                                    // api stored the pin this connection learned: nothing to redo.
                                    held.record = record;
                                } else if held.record != record {
                                    // Changed (new address or code, pin cleared): reconnect.
                                    held.record = record;
                                    stop(held).await;
                                }
                                // Only this printer: claiming them all on every entry would
                                // make a start with N printers cost N² lease writes.
                                self.claim(id, held).await;
                            }
                            Err(err) => tracing::warn!(key = %entry.key, error = %err, "unreadable registry entry"),
                        },
                        Operation::Delete | Operation::Purge => {
                            let id = entry.key.rsplit('.').next().and_then(|i| i.parse::<i64>().ok());
                            if let Some(mut held) = id.and_then(|id| printers.remove(&id)) {
                                stop(&mut held).await;
                                self.release(&mut held).await;
                            }
                        }
                    }
                }
                _ = renew.tick() => self.claim_all(&mut printers).await,
            }
        }
        for held in printers.values_mut() {
            stop(held).await;
            self.release(held).await;
        }
    }

    /// Renews held leases and claims free printers; starts and stops tasks to match. The
    /// lease writes run concurrently (a few dozen at a time): thousands of printers renew in
    /// well under a second.
    async fn claim_all(&self, printers: &mut HashMap<i64, Held>) {
        futures::stream::iter(printers.iter_mut())
            .for_each_concurrent(32, |(id, held)| self.claim(*id, held))
            .await;
    }

    /// Claims or renews one printer's lease; starts or stops its task to match.
    async fn claim(&self, id: i64, held: &mut Held) {
        let key = id.to_string();
        let value = bytes::Bytes::from(self.instance.clone());
        let attempt = match held.revision {
            Some(revision) => self.store.owners.update(&key, value, revision).await.ok(),
            None => self.store.owners.create(&key, value).await.ok(),
        };
        // A write can fail after the server applied it (a time-out under load): if the
        // lease on record is ours, keep it rather than dropping a healthy connection.
        let owned = match attempt {
            Some(revision) => Some(revision),
            None => self.our_revision(&key).await,
        };
        held.revision = owned;
        match (owned.is_some(), held.task.is_some()) {
            (true, false) => {
                let token = CancellationToken::new();
                let conn = Connection::new(
                    held.record.clone(),
                    self.store.clone(),
                    self.connection.clone(),
                );
                let handle = tokio::spawn(conn.run(token.clone()));
                tracing::info!(printer = id, "claimed printer; connecting");
                held.task = Some((token, handle));
            }
            (false, true) => {
                tracing::warn!(printer = id, "lost the lease; disconnecting");
                stop(held).await;
            }
            _ => {}
        }
    }

    /// A watch of this site's registry keys, history first; retried until `shutdown`.
    async fn watch_registry(&self, shutdown: &CancellationToken) -> Option<kv::Watch> {
        let filter = format!("{}.*", self.site);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            match self.store.registry.watch_with_history(&filter).await {
                Ok(watch) => return Some(watch),
                Err(err) => {
                    tracing::warn!(error = %err, "registry watch failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }

    /// The lease's revision if the owner on record is this gateway.
    async fn our_revision(&self, key: &str) -> Option<u64> {
        let entry = self.store.owners.entry(key).await.ok()??;
        let live = matches!(entry.operation, async_nats::jetstream::kv::Operation::Put);
        (live && entry.value.as_ref() == self.instance.as_bytes()).then_some(entry.revision)
    }

    async fn release(&self, held: &mut Held) {
        if let Some(revision) = held.revision.take() {
            let _ = self
                .store
                .owners
                .delete_expect_revision(held.record.id.to_string(), Some(revision))
                .await;
        }
    }
}

/// Whether `new` differs from `old` only by a pin being set where there was none.
fn only_pin_learned(old: &PrinterRecord, new: &PrinterRecord) -> bool {
    old.tls_pin.is_none()
        && new.tls_pin.is_some()
        && PrinterRecord {
            tls_pin: None,
            ..new.clone()
        } == *old
}

async fn stop(held: &mut Held) {
    if let Some((token, handle)) = held.task.take() {
        token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
    }
}
