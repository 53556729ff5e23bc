//! Webhook figures (`scripts/bench webhooks`): the notifier in this process on real NATS and
//! Postgres, `BENCH_WEBHOOKS` (default 1,000) subscriptions to one loopback receiver that keeps
//! its connections open, events published to `FARM_EVENTS` as the gateway publishes them.
//!
//! 1. Steady: events at `BENCH_RATE` per second (default 200) for 5 s, each for one printer
//!    and each subscription for one printer (`printer_ids`): event-to-delivery p50/p99.
//! 2. Fan-out: `BENCH_EVENTS` (default 10) events at once, each to every subscription:
//!    deliveries per second, and event-to-delivery p50/p99 (mostly the queue's wait).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use printyard_contracts::farm::{EventKind, FarmEvent, Site, event_id};
use printyard_contracts::webhooks::{self as contract, NewWebhook};
use printyard_service::rpc::RpcClient;
use printyard_tests::receiver::{Behaviour, Receiver};
use printyard_tests::{TestEnv, eventually, spawn_notifier_with};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn event(printer_id: i64, n: u64) -> FarmEvent {
    let serial = format!("BENCH{printer_id:05}");
    FarmEvent {
        id: event_id(&serial, EventKind::PrinterError, &format!("e{n}")),
        kind: EventKind::PrinterError,
        site: Site::default(),
        printer_id,
        serial,
        at: Utc::now(),
        data: serde_json::json!({"code": "0300_0100_0001_0007", "severity": "serious", "text": "bench"}),
    }
}

/// Publishes `events` (as fast as the stream takes them, or paced to `rate` per second) and
/// waits until the receiver has each `expected` times; the latencies of every delivery.
async fn run(
    env: &TestEnv,
    receiver: &Receiver,
    events: Vec<FarmEvent>,
    rate: Option<u64>,
    expected: usize,
) -> (Vec<Duration>, Duration) {
    let js = async_nats::jetstream::new(env.nats.client().await);
    let before = receiver.requests().len();
    let mut published = HashMap::new();
    let started = Instant::now();
    for (i, event) in events.iter().enumerate() {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        published.insert(event.id.clone(), Instant::now());
        printyard_service::farm_events::publish(&js, event)
            .await
            .expect("published");
    }
    let total = before + events.len() * expected;
    eventually(Duration::from_secs(600), "every delivery", || async {
        (receiver.requests().len() >= total).then_some(())
    })
    .await;
    let elapsed = started.elapsed();
    let mut latencies: Vec<Duration> = receiver.requests()[before..]
        .iter()
        .filter_map(|r| {
            published
                .get(r.id())
                .map(|at| r.at.saturating_duration_since(*at))
        })
        .collect();
    latencies.sort();
    (latencies, elapsed)
}

fn main() {
    printyard_service::runtime::install_crypto_provider();
    let webhooks = env_number("BENCH_WEBHOOKS", 1000) as i64;
    let rate = env_number("BENCH_RATE", 200);
    let burst = env_number("BENCH_EVENTS", 10);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            let env = TestEnv::new().await;
            let mut config = env.notifier_config();
            config.database.max_connections = 8;
            config.notifier.poll_ms = 500;
            let _notifier = spawn_notifier_with(config).await;
            let receiver = Receiver::start_keep_alive(Behaviour::Correct).await;
            let rpc = RpcClient::new(env.nats.client().await, Duration::from_secs(5));

            // 1. Steady: every subscription for one printer.
            let mut ids = Vec::new();
            for printer in 1..=webhooks {
                let created = rpc
                    .call(
                        contract::CREATE,
                        &NewWebhook {
                            url: receiver.url("/hook"),
                            events: None,
                            printer_ids: Some(vec![printer]),
                            site: None,
                            enabled: None,
                            format: None,
                        },
                    )
                    .await
                    .expect("a webhook");
                ids.push(created.webhook.id);
            }
            let count = rate * 5;
            let events: Vec<FarmEvent> = (0..count)
                .map(|n| event((n as i64 * 7919) % webhooks + 1, n))
                .collect();
            let (latencies, elapsed) = run(&env, &receiver, events, Some(rate), 1).await;
            println!(
                "{webhooks} subscriptions, one printer each; {count} events at {rate}/s ({:.1} s): \
                 event-to-delivery p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                elapsed.as_secs_f64(),
                percentile(&latencies, 0.50),
                percentile(&latencies, 0.99),
                percentile(&latencies, 1.0),
            );

            // 2. Fan-out: every subscription for every printer.
            for id in &ids {
                rpc.call(
                    contract::UPDATE,
                    &contract::UpdateWebhook {
                        id: *id,
                        patch: contract::WebhookPatch {
                            printer_ids: Some(None),
                            ..Default::default()
                        },
                    },
                )
                .await
                .expect("updated");
            }
            let events: Vec<FarmEvent> = (0..burst).map(|n| event(1, 1_000_000 + n)).collect();
            let (latencies, elapsed) = run(&env, &receiver, events, None, webhooks as usize).await;
            let deliveries = latencies.len();
            println!(
                "{webhooks} subscriptions to every event; {burst} events at once: {deliveries} \
                 deliveries in {:.2} s = {:.0} deliveries/s; event-to-delivery p50 {:.1} ms, \
                 p99 {:.1} ms",
                elapsed.as_secs_f64(),
                deliveries as f64 / elapsed.as_secs_f64(),
                percentile(&latencies, 0.50),
                percentile(&latencies, 0.99),
            );
        });
}
