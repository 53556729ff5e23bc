//! The scheduler's view of the farm: local copies of the printer registry and of every
//! printer's live status, kept by watching their KV buckets, so that matching jobs to printers
//! never waits on a printer, a gateway or another service.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use async_nats::jetstream::kv::{self, Operation};
use printyard_bambu::models;
use printyard_contracts::farm::{PrinterRecord, StatusRecord};
use printyard_contracts::filament::{TraySpool, parse_tray_key};
use printyard_contracts::printer::{LoadedFilament, PrinterState};
use printyard_service::kv_watch::follow;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One printer as the dispatcher sees it.
#[derive(Debug, Clone)]
pub struct PrinterView {
    pub record: PrinterRecord,
    pub status: Option<StatusRecord>,
    /// The spool the inventory knows in each tray (the `tray_spools` bucket).
    pub spools: BTreeMap<i32, TraySpool>,
}

impl PrinterView {
    pub fn id(&self) -> i64 {
        self.record.id
    }

    /// The marketing name: as given, else as the gateway detected it, else by serial.
    pub fn model(&self) -> Option<&'static str> {
        self.record
            .model
            .as_deref()
            .and_then(models::canonical)
            .or_else(|| {
                self.status
                    .as_ref()
                    .and_then(|s| s.model.as_deref())
                    .and_then(models::canonical)
            })
            .or_else(|| models::from_serial(&self.record.serial))
    }

    /// The 3MF `printer_model_id` files for this printer are sliced with.
    pub fn model_id(&self) -> Option<&'static str> {
        self.model().and_then(models::model_id)
    }

    pub fn connected(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.connected)
    }

    pub fn state(&self) -> PrinterState {
        match &self.status {
            Some(s) if s.connected => s.status.as_ref().map_or(PrinterState::Idle, |st| st.state),
            _ => PrinterState::Offline,
        }
    }

    /// Connected and not busy: idle, or showing the end of its last print.
    pub fn free(&self) -> bool {
        self.connected()
            && matches!(
                self.state(),
                PrinterState::Idle | PrinterState::Finished | PrinterState::Failed
            )
    }

    pub fn filaments(&self) -> &[LoadedFilament] {
        self.status
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .map_or(&[], |s| s.filaments.as_slice())
    }

    /// Grams left in a tray, and the spool, when known: the inventory's spool, else the
    /// printer's own measure of a Bambu spool.
    pub fn stock(&self, tray: u16) -> Option<Stock> {
        if let Some(spool) = self.spools.get(&i32::from(tray)) {
            return Some(Stock {
                grams: spool.remaining_g,
                spool: Some(spool.spool_id),
            });
        }
        self.filaments()
            .iter()
            .find(|f| f.tray == tray)
            .and_then(LoadedFilament::measured_g)
            .map(|grams| Stock { grams, spool: None })
    }

    pub fn has_ams(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some_and(|s| s.has_ams)
    }

    /// The job name the printer reports (`cube-pyq42` for a queued job).
    pub fn job_name(&self) -> Option<&str> {
        self.status
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.job_name.as_deref())
    }
}

/// What a tray holds, as far as anyone knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stock {
    pub grams: f64,
    pub spool: Option<i64>,
}

#[derive(Default)]
struct Inner {
    printers: HashMap<i64, PrinterRecord>,
    statuses: HashMap<i64, StatusRecord>,
    spools: HashMap<i64, BTreeMap<i32, TraySpool>>,
}

impl Inner {
    fn view(&self, record: &PrinterRecord) -> PrinterView {
        PrinterView {
            status: self.statuses.get(&record.id).cloned(),
            spools: self.spools.get(&record.id).cloned().unwrap_or_default(),
            record: record.clone(),
        }
    }
}

/// The watched registry and status buckets; `changed` is notified when a printer appears,
/// goes, or changes in a way that matters to dispatch (connection, state, filaments).
#[derive(Clone, Default)]
pub struct FarmView {
    inner: Arc<RwLock<Inner>>,
    pub changed: Arc<Notify>,
}

impl FarmView {
    pub fn printer(&self, id: i64) -> Option<PrinterView> {
        let inner = self.inner.read().ok()?;
        Some(inner.view(inner.printers.get(&id)?))
    }

    /// Every registered printer, by id.
    pub fn printers(&self) -> Vec<PrinterView> {
        let Ok(inner) = self.inner.read() else {
            return Vec::new();
        };
        let mut all: Vec<PrinterView> = inner.printers.values().map(|r| inner.view(r)).collect();
        all.sort_by_key(PrinterView::id);
        all
    }

    pub async fn follow_registry(self, bucket: kv::Store, stop: CancellationToken) {
        follow(bucket, stop, move |entry| {
            let Some(id) = entry.key.rsplit('.').next().and_then(|i| i.parse().ok()) else {
                return;
            };
            let Ok(mut inner) = self.inner.write() else {
                return;
            };
            match entry.operation {
                Operation::Put => match serde_json::from_slice::<PrinterRecord>(&entry.value) {
                    Ok(record) => {
                        inner.printers.insert(id, record);
                    }
                    Err(err) => {
                        tracing::warn!(key = %entry.key, error = %err, "unreadable registry entry")
                    }
                },
                Operation::Delete | Operation::Purge => {
                    inner.printers.remove(&id);
                }
            }
            drop(inner);
            self.changed.notify_waiters();
        })
        .await
    }

    pub async fn follow_status(self, bucket: kv::Store, stop: CancellationToken) {
        follow(bucket, stop, move |entry| {
            let Some(id) = printyard_contracts::farm::printer_of_key(&entry.key) else {
                return;
            };
            let Ok(mut inner) = self.inner.write() else {
                return;
            };
            let matters = match entry.operation {
                Operation::Put => match serde_json::from_slice::<StatusRecord>(&entry.value) {
                    Ok(record) => {
                        let matters = inner
                            .statuses
                            .get(&id)
                            .is_none_or(|old| dispatch_relevant_change(old, &record));
                        inner.statuses.insert(id, record);
                        matters
                    }
                    Err(_) => false,
                },
                Operation::Delete | Operation::Purge => inner.statuses.remove(&id).is_some(),
            };
            drop(inner);
            if matters {
                self.changed.notify_waiters();
            }
        })
        .await
    }
}

impl FarmView {
    /// Follows the inventory's spools in trays (the `tray_spools` bucket): a spool's weight
    /// decides whether a printer has enough for a job.
    pub async fn follow_spools(self, bucket: kv::Store, stop: CancellationToken) {
        follow(bucket, stop, move |entry| {
            let Some((printer, tray)) = parse_tray_key(&entry.key) else {
                return;
            };
            let Ok(mut inner) = self.inner.write() else {
                return;
            };
            let trays = inner.spools.entry(printer).or_default();
            let spool = (entry.operation == Operation::Put)
                .then(|| serde_json::from_slice::<TraySpool>(&entry.value).ok())
                .flatten();
            let changed = match spool {
                Some(spool) => trays.insert(tray, spool.clone()).as_ref() != Some(&spool),
                None => trays.remove(&tray).is_some(),
            };
            drop(inner);
            if changed {
                self.changed.notify_waiters();
            }
        })
        .await
    }
}

/// Whether a new status may change what the dispatcher decides (progress and temperatures,
/// ten times a second while printing, do not).
fn dispatch_relevant_change(old: &StatusRecord, new: &StatusRecord) -> bool {
    let key = |r: &StatusRecord| {
        (
            r.connected,
            r.model.clone(),
            r.status.as_ref().map(|s| {
                (
                    s.state,
                    s.job_name.clone(),
                    s.filaments.clone(),
                    s.has_ams,
                    s.print_error.clone(),
                )
            }),
        )
    };
    key(old) != key(new)
}
