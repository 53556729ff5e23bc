//! The `FARM_EVENTS` stream from both ends: publishing an event (its id as `Nats-Msg-Id`, so a
//! re-publish is stored once; retried with backoff), and a service's durable pull consumer,
//! shared by its replicas, that hands each event to a handler and acknowledges it once handled
//! (an unreadable message is dropped).
//!
//! The events of one printer go through one lane of a replica, one after another in the
//! stream's order (a failure is tried again in place, with backoff, before the lane goes on;
//! only after [`RETRIES_IN_PLACE`] is it left to a redelivery): a print's start is handled
//! before its end. Lanes run side by side, so printers do not wait for each other.
//!
//! Handlers must be idempotent (record the ids they applied in the transaction of their
//! effect): a crash between the effect and the acknowledgement redelivers the event.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use printyard_contracts::farm::{FarmEvent, all_events, event_subject};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// Publishes `event` on its subject, waiting for the stream's acknowledgement; retried with
/// backoff five times. `Err` with the last failure when it could not be stored.
pub async fn publish(jetstream: &jetstream::Context, event: &FarmEvent) -> Result<(), String> {
    let payload = serde_json::to_vec(event).map_err(|e| e.to_string())?;
    let subject = event_subject(&event.site, event.printer_id, event.kind);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut last = String::new();
    for attempt in 0..5 {
        match crate::nats::publish_to_stream(
            jetstream,
            subject.clone(),
            payload.clone().into(),
            Some(&event.id),
            Duration::from_secs(5),
        )
        .await
        {
            Ok(_) => return Ok(()),
            Err(err) => last = err.to_string(),
        }
        if attempt < 4 {
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
    tracing::error!(event = %event.id, kind = event.kind.as_str(), error = %last, "event lost");
    Err(last)
}

/// Publishes `event` once, waiting up to 5 s for the stream's acknowledgement (for callers
/// that retry in their own way, keeping their events in order).
pub async fn publish_once(jetstream: &jetstream::Context, event: &FarmEvent) -> Result<(), String> {
    let payload = serde_json::to_vec(event).map_err(|e| e.to_string())?;
    let subject = event_subject(&event.site, event.printer_id, event.kind);
    crate::nats::publish_to_stream(
        jetstream,
        subject,
        payload.into(),
        Some(&event.id),
        Duration::from_secs(5),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// How a service consumes the stream.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerOptions {
    /// The durable consumer's name (one per service, shared by its replicas).
    pub name: &'static str,
    /// How long a handler may take before the event is delivered again.
    pub ack_wait: Duration,
    /// Events one replica handles at once.
    pub concurrency: usize,
}

/// Attempts of a failing event in its lane (up to about a minute with the backoff) before it is
/// left to a redelivery and the lane goes on.
pub const RETRIES_IN_PLACE: u32 = 12;

/// In-place attempts during which a handler may wait for an event it depends on (a few
/// seconds, up to about 8 with the backoff): see [`Delivery::patient`].
const PATIENT_ATTEMPTS: u32 = 6;

/// How an event reached its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// 1 for the first try in this lane, then counting the tries in place.
    pub attempt: u32,
    /// Whether the server delivered it before (a replica died or gave up on it).
    pub redelivered: bool,
}

impl Delivery {
    /// Whether a handler that finds an event early (an event it follows is not applied yet,
    /// being handled by another replica) should ask to be called again rather than act on
    /// what it has: for the first seconds of a first delivery only, so a lost event never
    /// holds the others up for long.
    pub fn patient(&self) -> bool {
        !self.redelivered && self.attempt <= PATIENT_ATTEMPTS
    }
}

/// Events waiting for a lane, per lane: a lane that is behind holds back the stream's delivery
/// (the other lanes still work through what they have).
const LANE_QUEUE: usize = 64;

/// Runs the durable consumer until `shutdown`, handing every event to `handle`: `Ok` is
/// acknowledged; `Err(reason)` is tried again in place with backoff, then redelivered in 5 s.
/// While a handler works, the server is told every few seconds that the event is in hand, so
/// `ack_wait` bounds only how long a dead replica's events wait to be delivered again.
/// A consumer that fails (NATS gone, stream recreated) is opened again with backoff.
pub async fn consume<H, F>(
    jetstream: jetstream::Context,
    options: ConsumerOptions,
    shutdown: CancellationToken,
    handle: H,
) where
    H: Fn(FarmEvent, Delivery) -> F,
    F: Future<Output = Result<(), String>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    while !shutdown.is_cancelled() {
        match consume_once(&jetstream, options, &shutdown, &handle).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(consumer = options.name, error = %err, "event consumer stopped; resuming");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

async fn consume_once<H, F>(
    jetstream: &jetstream::Context,
    options: ConsumerOptions,
    shutdown: &CancellationToken,
    handle: &H,
) -> anyhow::Result<()>
where
    H: Fn(FarmEvent, Delivery) -> F,
    F: Future<Output = Result<(), String>>,
{
    let name = options.name;
    let stream = crate::nats::farm_events_stream(jetstream).await?;
    let consumer = stream
        .get_or_create_consumer(
            name,
            pull::Config {
                durable_name: Some(name.to_owned()),
                filter_subject: all_events(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: options.ack_wait,
                max_ack_pending: 1000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating consumer {name}: {e}"))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("pulling from {name}: {e}"))?;
    let lanes = options.concurrency.max(1);
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..lanes)
        .map(|_| tokio::sync::mpsc::channel::<(jetstream::Message, FarmEvent)>(LANE_QUEUE))
        .unzip();
    let dispatch = async move {
        let mut messages = std::pin::pin!(messages.take_until(shutdown.cancelled()));
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(message) => message,
                Err(err) => {
                    tracing::debug!(error = %err, "pull hiccup");
                    continue;
                }
            };
            match serde_json::from_slice::<FarmEvent>(&message.payload) {
                Err(err) => {
                    tracing::warn!(error = %err, subject = %message.subject, "unreadable event skipped");
                    acknowledge(&message, AckKind::Term).await;
                }
                Ok(event) => {
                    let lane = event.printer_id.unsigned_abs() as usize % lanes;
                    if senders[lane].send((message, event)).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping the senders ends the lanes once they have handled what they hold.
    };
    let work = futures::future::join_all(receivers.into_iter().map(|mut lane| async move {
        while let Some((message, event)) = lane.recv().await {
            let ack = handle_in_place(name, options.ack_wait, &message, event, handle).await;
            acknowledge(&message, ack).await;
        }
    }));
    tokio::join!(dispatch, work);
    if shutdown.is_cancelled() {
        Ok(())
    } else {
        Err(anyhow::anyhow!("the message stream ended"))
    }
}

/// Handles one event, trying a failure again in place (telling the server the event is still
/// in hand, so it is not redelivered meanwhile); returns how to acknowledge it.
async fn handle_in_place<H, F>(
    name: &str,
    ack_wait: Duration,
    message: &jetstream::Message,
    event: FarmEvent,
    handle: &H,
) -> AckKind
where
    H: Fn(FarmEvent, Delivery) -> F,
    F: Future<Output = Result<(), String>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(8));
    let id = event.id.clone();
    let redelivered = message.info().is_ok_and(|info| info.delivered > 1);
    for attempt in 1..=RETRIES_IN_PLACE {
        let delivery = Delivery {
            attempt,
            redelivered,
        };
        let handled = handle(event.clone(), delivery);
        let mut handled = std::pin::pin!(handled);
        let mut in_hand = tokio::time::interval(ack_wait / 3);
        in_hand.tick().await;
        let result = loop {
            tokio::select! {
                result = &mut handled => break result,
                _ = in_hand.tick() => acknowledge(message, AckKind::Progress).await,
            }
        };
        match result {
            Ok(()) => return AckKind::Ack,
            Err(reason) if attempt == RETRIES_IN_PLACE => {
                tracing::warn!(consumer = name, event = %id, reason, "event not applied; left to a redelivery");
            }
            Err(reason) => {
                tracing::debug!(consumer = name, event = %id, reason, attempt, "event not applied yet; retrying");
                acknowledge(message, AckKind::Progress).await;
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
    AckKind::Nak(Some(Duration::from_secs(5)))
}

async fn acknowledge(message: &jetstream::Message, ack: AckKind) {
    if let Err(err) = message.ack_with(ack).await {
        tracing::debug!(error = %err, "ack not sent (the event will be redelivered)");
    }
}
