//! The farm events of one held printer, published to `FARM_EVENTS` in the order they happened
//! and never given up while the gateway runs: a publish that fails (NATS restarting, the site's
//! uplink down) is tried again with backoff, and the printer's connection never waits for it
//! (its MQTT session goes on). Bounded: past [`CAPACITY`] waiting events the oldest progress
//! milestone goes first, then the oldest event, each counted.
//!
//! Released with the printer: what is still waiting is tried for [`FLUSH_ON_RELEASE`] more,
//! then dropped (counted). A killed gateway loses what it held; the next gateway's first look at
//! the printer (`printer_state`) closes what those events would have.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use printyard_contracts::farm::{EventKind, FarmEvent, PrinterRecord, event_id};
use printyard_service::backoff::Backoff;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::FarmStore;

/// Events waiting per printer.
const CAPACITY: usize = 1024;
/// How long a released printer's waiting events are still tried.
const FLUSH_ON_RELEASE: Duration = Duration::from_secs(10);

/// A printer's event queue; cheap to clone.
#[derive(Clone)]
pub struct EventOutbox {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Mutex<VecDeque<FarmEvent>>,
    wake: Notify,
}

impl EventOutbox {
    /// Starts the printer's publisher, which stops once `released` and flushed.
    pub fn start(store: Arc<FarmStore>, released: CancellationToken) -> Self {
        let inner = Arc::new(Inner {
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
        });
        tokio::spawn(publish(inner.clone(), store, released));
        Self { inner }
    }

    /// Queues `event` after those before it.
    pub fn push(&self, event: FarmEvent) {
        let Ok(mut queue) = self.inner.queue.lock() else {
            return;
        };
        if queue.len() >= CAPACITY {
            let victim = queue
                .iter()
                .position(|e| e.kind == EventKind::PrintProgress)
                .unwrap_or(0);
            if let Some(dropped) = queue.remove(victim) {
                tracing::warn!(event = %dropped.id, "event queue full: oldest dropped");
                metrics::counter!("printyard_gateway_events_dropped_total", "cause" => "full")
                    .increment(1);
            }
        }
        queue.push_back(event);
        drop(queue);
        self.inner.wake.notify_one();
    }

    /// Events waiting to be published.
    pub fn waiting(&self) -> usize {
        self.inner.queue.lock().map_or(0, |q| q.len())
    }
}

async fn publish(inner: Arc<Inner>, store: Arc<FarmStore>, released: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut give_up: Option<tokio::time::Instant> = None;
    loop {
        let front = inner.queue.lock().ok().and_then(|q| q.front().cloned());
        let Some(event) = front else {
            if released.is_cancelled() {
                return;
            }
            tokio::select! {
                _ = inner.wake.notified() => continue,
                _ = released.cancelled() => return,
            }
        };
        if released.is_cancelled() {
            let deadline =
                *give_up.get_or_insert_with(|| tokio::time::Instant::now() + FLUSH_ON_RELEASE);
            if tokio::time::Instant::now() >= deadline {
                let lost = inner.queue.lock().map_or(0, |mut q| q.drain(..).count());
                tracing::warn!(lost, "events not published before the printer was released");
                metrics::counter!("printyard_gateway_events_dropped_total", "cause" => "released")
                    .increment(lost as u64);
                return;
            }
        }
        match printyard_service::farm_events::publish_once(&store.events, &event).await {
            Ok(()) => {
                backoff.reset();
                crate::observe::event_published(event.kind.as_str());
                if let Ok(mut queue) = inner.queue.lock()
                    && queue.front().is_some_and(|e| e.id == event.id)
                {
                    queue.pop_front();
                }
            }
            Err(err) => {
                let wait = backoff.next_delay();
                tracing::warn!(event = %event.id, error = %err, "event not published yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = released.cancelled(), if give_up.is_none() => {}
                }
            }
        }
    }
}

/// A farm event of `record`'s printer, happening now. Its id (`Nats-Msg-Id`) comes from what
/// happened, so a re-publish is stored once.
pub fn farm_event(
    record: &PrinterRecord,
    kind: EventKind,
    occurrence: &str,
    data: serde_json::Value,
) -> FarmEvent {
    FarmEvent {
        id: event_id(&record.serial, kind, occurrence),
        kind,
        site: record.site.clone(),
        printer_id: record.id,
        serial: record.serial.clone(),
        at: Utc::now(),
        data,
    }
}
