//! The printer's status as this gateway knows it, and where it goes: the `printer_status`
//! bucket (written when it changes, at most every `status_interval` unless a change must be
//! seen at once) and the printer's camera task (whether the printer is online, how to trust
//! it, which model it is).

use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use printyard_bambu::models;
use printyard_bambu::tls::{TrustMode, parse_fingerprint};
use printyard_contracts::farm::{PrinterRecord, StatusRecord, registry_key};
use tokio::sync::watch;

use crate::camera::Target;

pub(super) struct StatusBoard {
    /// The status now.
    pub now: StatusRecord,
    /// The last one written, and when.
    published: Option<StatusRecord>,
    published_at: Option<Instant>,
    /// Its key in the bucket.
    key: String,
    interval: Duration,
    /// Whether the printer's certificate is checked at all (`tls_insecure`).
    insecure: bool,
    camera: watch::Sender<Target>,
}

impl StatusBoard {
    pub fn new(record: &PrinterRecord, interval: Duration) -> Self {
        let now = StatusRecord {
            printer_id: record.id,
            serial: record.serial.clone(),
            connected: false,
            last_seen: None,
            connection_error: None,
            model: record
                .model
                .clone()
                .or_else(|| models::from_serial(&record.serial).map(str::to_owned)),
            tls_pin: record.tls_pin.clone(),
            firmware: None,
            status: None,
        };
        let board = Self {
            now,
            published: None,
            published_at: None,
            key: registry_key(&record.site, record.id),
            interval,
            insecure: record.tls_insecure,
            camera: watch::Sender::new(Target {
                online: Err("not connected yet".into()),
                trust: TrustMode::Insecure,
                model: None,
            }),
        };
        let target = board.camera_target();
        board.camera.send_replace(target);
        board
    }

    /// What the printer's camera task watches.
    pub fn camera(&self) -> watch::Receiver<Target> {
        self.camera.subscribe()
    }

    /// Marks the session up or down (and counts connected printers).
    pub fn set_connected(&mut self, connected: bool) {
        if self.now.connected != connected {
            crate::observe::connected(connected);
        }
        self.now.connected = connected;
    }

    /// Why a command cannot reach the printer now; `None` while its session is up.
    pub fn not_connected(&self) -> Option<String> {
        (!self.now.connected).then(|| {
            self.now
                .connection_error
                .clone()
                .unwrap_or_else(|| "not connected yet".into())
        })
    }

    /// What a print dispatch needs to know of the printer now.
    pub fn printer(&self) -> super::dispatch::Printer<'_> {
        super::dispatch::Printer {
            status: self.now.status.as_ref(),
            not_connected: self.not_connected(),
            trust: self.trust(),
        }
    }

    /// How the printer's certificate is trusted: its pin once known, else the Bambu CA.
    pub fn trust(&self) -> TrustMode {
        if self.insecure {
            TrustMode::Insecure
        } else {
            TrustMode::Verify {
                pin: self.now.tls_pin.as_deref().and_then(parse_fingerprint),
            }
        }
    }

    fn camera_target(&self) -> Target {
        Target {
            online: match self.not_connected() {
                None => Ok(()),
                Some(why) => Err(why),
            },
            trust: self.trust(),
            model: self.now.model.clone(),
        }
    }

    /// Puts the status into `bucket` if it changed, at most every interval (`force` for
    /// connection changes and decisive reports, which are always written at once).
    pub async fn flush(&mut self, bucket: &kv::Store, force: bool) {
        if self.published.as_ref() == Some(&self.now) {
            return;
        }
        // What the camera knows derives from the status: only a changed status can change it.
        let target = self.camera_target();
        self.camera.send_if_modified(|kept| {
            let changed = *kept != target;
            *kept = target;
            changed
        });
        let due = self
            .published_at
            .is_none_or(|at| at.elapsed() >= self.interval);
        // Compared without copying: the kept record takes the new time for the comparison.
        let changed_beyond_time = match self.published.as_mut() {
            None => true,
            Some(published) => {
                let kept = std::mem::replace(&mut published.last_seen, self.now.last_seen);
                let changed = *published != self.now;
                published.last_seen = kept;
                changed
            }
        };
        if !(force || (due && changed_beyond_time)) {
            return;
        }
        let Ok(value) = serde_json::to_vec(&self.now) else {
            return;
        };
        match bucket.put(&self.key, value.into()).await {
            Ok(_) => {
                crate::observe::status_written();
                self.published = Some(self.now.clone());
                self.published_at = Some(Instant::now());
            }
            Err(err) => {
                tracing::warn!(printer = self.now.printer_id, error = %err, "status not stored")
            }
        }
    }
}
