//! Which printers this gateway drives: it watches the registry for its site, claims each
//! printer through the ownership lease, renews what it holds, and starts or stops one connection
//! task per held printer. Never are two connections open to one printer: a task runs only
//! while its lease is held.
//!
//! The gateways of a site share its printers: each announces itself in `gateway_members`
//! (expiring like a lease), claims no more than its fair share (printers ÷ live gateways,
//! rounded up), and hands back what it holds beyond that share, which a gateway under its
//! share then claims. When one dies, its member entry and leases expire, the share grows,
//! and the others take its printers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, Operation};
use futures::StreamExt;
use printyard_contracts::farm::{PrinterRecord, Site, printer_of_key, registry_key};
use printyard_service::backoff::Backoff;
use printyard_service::kv_watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::connection::Connection;
use crate::store::FarmStore;

pub struct Supervisor {
    pub store: Arc<FarmStore>,
    pub site: Site,
    pub instance: String,
    pub lease: Duration,
    pub connection: Arc<crate::settings::Settings>,
    /// Live gateways of this site (itself included), as last counted.
    pub members: AtomicUsize,
}

struct Held {
    record: PrinterRecord,
    revision: Option<u64>,
    task: Option<(CancellationToken, JoinHandle<()>)>,
    /// When the lease is next renewed: a third of the lease after the last renewal, the first
    /// time at a random point within that third, so that the renewals of a farm claimed at
    /// once spread over time instead of coming in one burst.
    renew_at: Instant,
}

/// A printer's lease as recorded in `printer_owners`.
enum Lease {
    /// This gateway's, at this revision.
    Ours(u64),
    /// Another gateway's.
    Other,
    /// Nobody's: never claimed, released, or expired.
    Free,
}

/// Ticks per renewal period (a third of the lease): each tick renews the leases that are due.
const TICKS_PER_RENEWAL: u32 = 5;

/// Lease renewals in flight at once. A renewal is one small KV write, but on a gateway busy
/// with thousands of status writes each waits its turn on the connection (150 ms and more):
/// 32 at a time took 2,000 printers' renewals past the 15 s lease and hundreds of healthy
/// connections were dropped as lost.
const RENEW_CONCURRENCY: usize = 256;

/// How long a connection task has to end once told to stop (it answers what is pending,
/// writes its last status and says DISCONNECT) before it is aborted.
const STOP_GRACE: Duration = Duration::from_secs(5);

impl Held {
    fn new(record: PrinterRecord) -> Self {
        Self {
            record,
            revision: None,
            task: None,
            renew_at: Instant::now(),
        }
    }

    /// Hands the lease back (after the connection task ended: never two connections).
    async fn release(&mut self, store: &FarmStore) {
        if let Some(revision) = self.revision.take() {
            let _ = store
                .owners
                .delete_expect_revision(
                    registry_key(&self.record.site, self.record.id),
                    Some(revision),
                )
                .await;
        }
    }
}

impl Supervisor {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut printers: HashMap<i64, Held> = HashMap::new();
        // Deleted printers being let go: each in a task of its own, so that deleting a
        // thousand printers neither waits a thousand goodbyes in turn nor holds up the lease
        // renewals of the printers that stay.
        let mut retiring = JoinSet::new();
        let mut renew = tokio::time::interval(self.renew_every() / TICKS_PER_RENEWAL);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u32;
        let Some(mut watch) = self.watch_registry(&shutdown).await else {
            return;
        };
        // Known peers before the first claims: a gateway joining a busy site takes its share,
        // not everything.
        self.update_share(&printers).await;
        loop {
            let holding = printers.values().filter(|h| h.task.is_some()).count();
            crate::observe::held(holding + retiring.len());
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = retiring.join_next(), if !retiring.is_empty() => {}
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
                                let held = printers.entry(id).or_insert(Held::new(record.clone()));
                                let changed = if same_connection(&held.record, &record) {
                                    // api stored the pin this connection learned, or the farm
                                    // changed what the connection does not use: nothing to redo.
                                    held.record = record;
                                    false
                                } else if held.record != record {
                                    // Changed (new address or code, pin cleared): reconnect.
                                    held.record = record;
                                    stop(held).await;
                                    true
                                } else {
                                    false
                                };
                                // A printer this gateway drives and that did not change needs
                                // nothing: its lease is renewed on the tick. (Renewing here, one
                                // round trip per entry, let the pins of a farm coming online
                                // hold up the loop past the lease, and hundreds of healthy
                                // connections were dropped as lost.)
                                if held.task.is_some() && !changed {
                                    continue;
                                }
                                // Only this printer: claiming them all on every entry would
                                // make a start with N printers cost N² lease writes.
                                // A new one is claimed only while this gateway is under its
                                // share.
                                let holding = printers.values().filter(|h| h.task.is_some()).count();
                                let under_share = holding < self.share(printers.len());
                                if let Some(held) = printers.get_mut(&id)
                                    && (held.revision.is_some() || under_share)
                                {
                                    self.claim(id, held).await;
                                }
                            }
                            Err(err) => tracing::warn!(key = %entry.key, error = %err, "unreadable registry entry"),
                        },
                        Operation::Delete | Operation::Purge => {
                            if let Some(held) = printer_of_key(&entry.key).and_then(|id| printers.remove(&id)) {
                                retiring.spawn(retire(held, self.store.clone()));
                            }
                        }
                    }
                }
                _ = renew.tick() => {
                    // Gateways count each other and share out once per renewal period; the
                    // leases due are renewed, and free printers claimed, at every tick.
                    let counting = ticks.is_multiple_of(TICKS_PER_RENEWAL);
                    if counting {
                        self.update_share(&printers).await;
                    }
                    self.claim_all(&mut printers).await;
                    if counting {
                        self.shed(&mut printers).await;
                    }
                    ticks = ticks.wrapping_add(1);
                }
            }
        }
        stop_all(printers.values_mut()).await;
        self.release_all(printers.values_mut()).await;
        while retiring.join_next().await.is_some() {}
        crate::observe::held(0);
        let _ = self.store.members.delete(self.member_key()).await;
    }

    /// How often a held lease is renewed: a third of the lease, so that two renewals can fail
    /// before it expires.
    fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// Renews the held leases that are due and claims free printers up to the fair share;
    /// starts and stops tasks to match. The lease writes run concurrently.
    async fn claim_all(&self, printers: &mut HashMap<i64, Held>) {
        let share = self.share(printers.len());
        let (mut held, mut free): (Vec<_>, Vec<_>) =
            printers.iter_mut().partition(|(_, h)| h.revision.is_some());
        let now = Instant::now();
        let renewing = now;
        let mut due: Vec<_> = held.iter_mut().filter(|(_, h)| h.renew_at <= now).collect();
        let renewed = due.len();
        futures::stream::iter(due.iter_mut())
            .for_each_concurrent(RENEW_CONCURRENCY, |(id, held)| self.claim(**id, held))
            .await;
        let took = renewing.elapsed();
        if renewed > 0 {
            crate::observe::renewed_leases(took);
        }
        if took > self.renew_every() {
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                printers = renewed,
                "renewing leases took over a third of the lease: NATS is slow to answer, leases may expire"
            );
        }
        let mut budget =
            share.saturating_sub(held.iter().filter(|(_, h)| h.task.is_some()).count());
        // Free printers in batches no larger than what the share still allows, so that a
        // batch of printers other gateways hold does not use the budget up.
        free.sort_unstable_by_key(|(id, _)| **id);
        let mut rest = free.as_mut_slice();
        while budget > 0 && !rest.is_empty() {
            let (batch, after) = rest.split_at_mut(budget.min(32).min(rest.len()));
            futures::stream::iter(batch.iter_mut())
                .for_each_concurrent(32, |(id, held)| self.claim(**id, held))
                .await;
            budget = budget.saturating_sub(batch.iter().filter(|(_, h)| h.task.is_some()).count());
            rest = after;
        }
    }

    /// This gateway's fair share of `total` printers: rounded up, so the shares cover them all.
    fn share(&self, total: usize) -> usize {
        total.div_ceil(self.members.load(Ordering::Relaxed).max(1))
    }

    /// Announces this gateway and counts the live gateways of its site.
    async fn update_share(&self, printers: &HashMap<i64, Held>) {
        let held = printers.values().filter(|h| h.task.is_some()).count();
        if let Err(err) = self
            .store
            .members
            .put(self.member_key(), held.to_string().into())
            .await
        {
            tracing::warn!(error = %err, "gateway membership not renewed");
        }
        let listed = kv_watch::list_keys(
            &self.store.client,
            &self.store.members,
            &format!("{}.*", self.site),
            &self.consumer_name(),
            Duration::from_secs(5),
        )
        .await;
        match listed {
            Ok(members) => self.members.store(members.len().max(1), Ordering::Relaxed),
            Err(err) => tracing::warn!(error = %err, "gateway members not counted"),
        }
    }

    /// Hands back printers held beyond the fair share (highest ids first), for a gateway
    /// under its share to claim.
    async fn shed(&self, printers: &mut HashMap<i64, Held>) {
        let share = self.share(printers.len());
        let mut held: Vec<i64> = printers
            .iter()
            .filter(|(_, h)| h.task.is_some())
            .map(|(id, _)| *id)
            .collect();
        if held.len() <= share {
            return;
        }
        held.sort_unstable();
        let beyond = held.split_off(share);
        let mut handed: Vec<&mut Held> = printers
            .iter_mut()
            .filter(|(id, _)| beyond.binary_search(id).is_ok())
            .map(|(id, held)| {
                tracing::info!(printer = id, "handing the printer to a less busy gateway");
                held
            })
            .collect();
        stop_all(handed.iter_mut().map(|h| &mut **h)).await;
        self.release_all(handed.into_iter()).await;
    }

    fn member_key(&self) -> String {
        format!("{}.{}", self.site, self.instance)
    }

    /// The name of this gateway's bucket watches (the server adds nothing: a site's
    /// credentials may create watches of its own keys under any name).
    fn consumer_name(&self) -> String {
        format!("{}_{}", self.site, self.instance)
    }

    /// Claims or renews one printer's lease; starts or stops its task to match.
    async fn claim(&self, id: i64, held: &mut Held) {
        let key = registry_key(&self.site, id);
        let value = bytes::Bytes::from(self.instance.clone());
        let attempt = match held.revision {
            Some(revision) => self
                .store
                .owners
                .update(&key, value.clone(), revision)
                .await
                .ok(),
            None => self.store.owners.create(&key, value.clone()).await.ok(),
        };
        // A write can fail after the server applied it (a time-out under load): if the
        // lease on record is ours, keep it rather than dropping a healthy connection. When the
        // record cannot be read either, nothing is known: what runs keeps running until the
        // next renewal (the lease outlives two missed renewals), nothing new starts.
        let owned = match attempt {
            Some(revision) => Some(revision),
            None => match self.lease_on_record(&key).await {
                Ok(Lease::Ours(revision)) => Some(revision),
                Ok(Lease::Other) => None,
                // Ours expired while NATS was too slow to renew it, and no other gateway took
                // it: taken again, the connection kept (dropping it gains nothing; it once
                // dropped hundreds of healthy connections of a busy farm).
                Ok(Lease::Free) if held.task.is_some() => {
                    let retaken = self.store.owners.create(&key, value).await.ok();
                    if retaken.is_some() {
                        tracing::warn!(printer = id, "the lease had expired; taken again");
                    }
                    retaken
                }
                Ok(Lease::Free) => None,
                Err(err) => {
                    tracing::warn!(printer = id, error = %err, "lease not renewed; retried on the next renewal");
                    return;
                }
            },
        };
        held.revision = owned;
        let every = self.renew_every();
        held.renew_at = match (owned.is_some(), held.task.is_some()) {
            (true, true) => Instant::now() + every,
            // A first claim: renewed at a random point within the period.
            (true, false) => Instant::now() + every.mul_f64(rand::random_range(0.2..1.0)),
            _ => Instant::now(),
        };
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
                crate::observe::lease_lost();
                stop(held).await;
            }
            _ => {}
        }
    }

    /// A watch of this site's registry keys, history first; retried until `shutdown`.
    async fn watch_registry(&self, shutdown: &CancellationToken) -> Option<kv_watch::KeyWatch> {
        let filter = format!("{}.*", self.site);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            let watch = kv_watch::watch_keys(
                &self.store.client,
                &self.store.registry,
                &filter,
                &self.consumer_name(),
            )
            .await;
            match watch {
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

    /// Who holds the lease on record; an error when it could not be read.
    async fn lease_on_record(&self, key: &str) -> Result<Lease, kv::EntryError> {
        let Some(entry) = self.store.owners.entry(key).await? else {
            return Ok(Lease::Free);
        };
        if !matches!(entry.operation, Operation::Put) {
            return Ok(Lease::Free);
        }
        Ok(if entry.value.as_ref() == self.instance.as_bytes() {
            Lease::Ours(entry.revision)
        } else {
            Lease::Other
        })
    }

    /// Hands back the leases of `held` (a few dozen at a time).
    async fn release_all<'a>(&self, held: impl Iterator<Item = &'a mut Held>) {
        futures::stream::iter(held)
            .for_each_concurrent(32, |held| held.release(&self.store))
            .await;
    }
}

/// Whether `new` differs from `old` only by a pin being set where there was none, or by what
/// the farm decides beside the connection (maintenance mode, clearing its own plate): the
/// connection is kept.
fn same_connection(old: &PrinterRecord, new: &PrinterRecord) -> bool {
    let pin_kept_or_learned = new.tls_pin == old.tls_pin || old.tls_pin.is_none();
    pin_kept_or_learned
        && new != old
        && PrinterRecord {
            tls_pin: old.tls_pin.clone(),
            maintenance: old.maintenance,
            auto_clear_plate: old.auto_clear_plate,
            ..new.clone()
        } == *old
}

async fn stop(held: &mut Held) {
    stop_all(std::iter::once(held)).await;
}

/// Stops the connection tasks of `held` together: all are told at once, then awaited for at
/// most [`STOP_GRACE`] in all; one still running then is aborted, so that no connection
/// outlives its lease.
async fn stop_all<'a>(held: impl Iterator<Item = &'a mut Held>) {
    let tasks: Vec<_> = held.filter_map(|h| h.task.take()).collect();
    for (token, _) in &tasks {
        token.cancel();
    }
    let ending = tasks.into_iter().map(|(_, mut handle)| async move {
        if tokio::time::timeout(STOP_GRACE, &mut handle).await.is_err() {
            handle.abort();
            let _ = handle.await;
        }
    });
    futures::future::join_all(ending).await;
}

/// Lets a printer deleted from the registry go: its connection ends, then, if this gateway
/// held it, its status is purged from `printer_status` (nothing reads a deleted printer's
/// status; kept, it would sit in every reader's memory) and its lease handed back.
async fn retire(mut held: Held, store: Arc<FarmStore>) {
    let ours = held.task.is_some() || held.revision.is_some();
    stop(&mut held).await;
    if ours {
        let key = registry_key(&held.record.site, held.record.id);
        if let Err(err) = store.status.purge(&key).await {
            tracing::warn!(printer = held.record.id, error = %err, "status of a deleted printer not purged");
        }
    }
    held.release(&store).await;
    tracing::info!(printer = held.record.id, "printer deleted; let go");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PrinterRecord {
        PrinterRecord {
            id: 1,
            name: "P1".into(),
            site: Default::default(),
            host: "10.0.0.1".into(),
            serial: "01P00A000000001".into(),
            access_code: "12345678".into(),
            model: None,
            tls_pin: None,
            tls_insecure: false,
            auto_clear_plate: false,
            maintenance: false,
        }
    }

    #[test]
    fn a_learned_pin_or_a_farm_setting_keeps_the_connection_and_the_rest_does_not() {
        let old = record();
        let learned = PrinterRecord {
            tls_pin: Some("ab".into()),
            ..old.clone()
        };
        assert!(same_connection(&old, &learned));
        let serviced = PrinterRecord {
            maintenance: true,
            auto_clear_plate: true,
            ..learned.clone()
        };
        assert!(same_connection(&learned, &serviced));
        for changed in [
            PrinterRecord {
                host: "10.0.0.2".into(),
                ..learned.clone()
            },
            PrinterRecord {
                access_code: "87654321".into(),
                ..learned.clone()
            },
            PrinterRecord {
                tls_pin: None,
                ..learned.clone()
            },
            PrinterRecord {
                tls_pin: Some("cd".into()),
                ..learned.clone()
            },
        ] {
            assert!(!same_connection(&learned, &changed), "{changed:?}");
        }
        assert!(
            !same_connection(&old, &old),
            "nothing changed: nothing to keep"
        );
    }
}
