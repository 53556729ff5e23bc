//! The `FARM_EVENTS` stream from both ends: publishing an event (its id as `Nats-Msg-Id`, so a
//! re-publish is stored once; retried with backoff), and a service's durable pull consumer,
//! shared by its replicas, that hands each event to a handler and acknowledges it once handled
//! (a failure is redelivered a few seconds later, an unreadable message is dropped).
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

/// Runs the durable consumer until `shutdown`, handing every event to `handle`: `Ok` is
/// acknowledged, `Err(reason)` redelivered in 5 s. A consumer that fails (NATS gone, stream
/// recreated) is opened again with backoff.
pub async fn consume<H, F>(
    jetstream: jetstream::Context,
    options: ConsumerOptions,
    shutdown: CancellationToken,
    handle: H,
) where
    H: Fn(FarmEvent) -> F,
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
    H: Fn(FarmEvent) -> F,
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
    messages
        .take_until(shutdown.cancelled())
        .for_each_concurrent(options.concurrency.max(1), |message| async move {
            let message = match message {
                Ok(message) => message,
                Err(err) => {
                    tracing::debug!(error = %err, "pull hiccup");
                    return;
                }
            };
            let ack = match serde_json::from_slice::<FarmEvent>(&message.payload) {
                Err(err) => {
                    tracing::warn!(error = %err, subject = %message.subject, "unreadable event skipped");
                    AckKind::Term
                }
                Ok(event) => {
                    let id = event.id.clone();
                    match handle(event).await {
                        Ok(()) => AckKind::Ack,
                        Err(reason) => {
                            tracing::warn!(consumer = name, event = %id, reason, "event not applied yet; retrying");
                            AckKind::Nak(Some(Duration::from_secs(5)))
                        }
                    }
                }
            };
            if let Err(err) = message.ack_with(ack).await {
                tracing::debug!(error = %err, "ack not sent (the event will be redelivered)");
            }
        })
        .await;
    if shutdown.is_cancelled() {
        Ok(())
    } else {
        Err(anyhow::anyhow!("the message stream ended"))
    }
}
