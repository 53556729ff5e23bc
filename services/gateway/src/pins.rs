//! Pins learned on first use, sent to `api` in batches: the connections of a farm trusting
//! its printers for the first time hand their pins here, and a single task sends what
//! gathered within a short window as one request (one transaction in `api`), retried with
//! backoff. Until a pin is stored it holds for the connection that learned it.

use std::collections::HashMap;
use std::time::Duration;

use printyard_contracts::farm::{PinLearned, PinsLearned, SITE_PINS_LEARNED, Site};
use printyard_service::backoff::Backoff;
use printyard_service::rpc::RpcClient;
use tokio::sync::mpsc;

/// How long pins gather before they are sent, and the most sent at once.
const WINDOW: Duration = Duration::from_millis(200);
const MOST: usize = 500;
/// Attempts per batch before its pins are left to the next connection to learn again.
const ATTEMPTS: usize = 10;

/// Where connections leave the pins they learned.
#[derive(Clone)]
pub struct PinKeeper {
    tx: mpsc::UnboundedSender<PinLearned>,
}

impl PinKeeper {
    /// Starts the sending task (it ends when every keeper is dropped). Pins go to `api` on
    /// `site`'s subject: it keeps those of that site's printers only.
    pub fn start(rpc: RpcClient, site: Site) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, rpc, site));
        Self { tx }
    }

    pub fn keep(&self, learned: PinLearned) {
        let _ = self.tx.send(learned);
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<PinLearned>, rpc: RpcClient, site: Site) {
    while let Some(first) = rx.recv().await {
        let batch = gather(first, &mut rx).await;
        let count = batch.pins.len();
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for attempt in 1..=ATTEMPTS {
            match rpc.call_site(SITE_PINS_LEARNED, &site, &batch).await {
                Ok(stored) => {
                    crate::observe::pins_stored(stored.stored.len());
                    tracing::debug!(sent = count, stored = stored.stored.len(), "pins kept");
                    break;
                }
                Err(err) if attempt < ATTEMPTS => {
                    tracing::warn!(pins = count, error = %err, "pins not stored yet; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(err) => {
                    tracing::warn!(pins = count, error = %err, "pins not stored; giving up");
                }
            }
        }
    }
}

/// `first` and what else arrives within the window, one pin per printer (the newest).
async fn gather(first: PinLearned, rx: &mut mpsc::UnboundedReceiver<PinLearned>) -> PinsLearned {
    let mut pins = HashMap::from([(first.printer_id, first)]);
    let until = tokio::time::Instant::now() + WINDOW;
    while pins.len() < MOST {
        tokio::select! {
            next = rx.recv() => match next {
                Some(learned) => { pins.insert(learned.printer_id, learned); }
                None => break,
            },
            _ = tokio::time::sleep_until(until) => break,
        }
    }
    let mut pins: Vec<PinLearned> = pins.into_values().collect();
    pins.sort_unstable_by_key(|p| p.printer_id);
    PinsLearned { pins }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(id: i64, pin: &str) -> PinLearned {
        PinLearned {
            printer_id: id,
            host: format!("10.0.0.{id}"),
            pin: pin.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pins_arriving_within_the_window_go_together_one_per_printer() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tx.send(pin(2, "b")).unwrap();
        tx.send(pin(1, "a")).unwrap();
        tx.send(pin(2, "c")).unwrap();
        let sender = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(WINDOW * 2).await;
            sender.send(pin(3, "late")).unwrap();
        });
        let first = rx.recv().await.unwrap();
        let batch = gather(first, &mut rx).await;
        assert_eq!(batch.pins, vec![pin(1, "a"), pin(2, "c")]);
        let first = rx.recv().await.unwrap();
        assert_eq!(gather(first, &mut rx).await.pins, vec![pin(3, "late")]);
    }
}
