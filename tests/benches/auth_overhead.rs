//! What API keys and the shared rate limiter cost per request.
//!
//! Runs the real api against a private Postgres and NATS (`scripts/bench auth_overhead`) and
//! prints: the limiter's own latency (in memory), and the latency of an authenticated request
//! with limits on and off, sequential and with concurrent clients.

use std::time::{Duration, Instant};

use printyard_api::auth::access::{Permission, RateClass};
use printyard_api::auth::rate_limit::{RateLimitConfig, RateLimiter};
use printyard_tests::{TestEnv, spawn_api_with};

const ROUNDS: usize = 3_000;

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    format!(
        "n={} mean={:.0}µs p50={:.0}µs p99={:.0}µs",
        samples.len(),
        mean.as_secs_f64() * 1e6,
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6
    )
}

async fn http_latencies(url: &str, key: &str, clients: usize) -> (Vec<Duration>, f64) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let client = client.clone();
            let url = url.to_owned();
            let key = key.to_owned();
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(ROUNDS / clients);
                for _ in 0..ROUNDS / clients {
                    let t = Instant::now();
                    let response = client
                        .get(&url)
                        .header("X-API-Key", &key)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                    response.bytes().await.unwrap();
                    samples.push(t.elapsed());
                }
                samples
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    (all, rate)
}

#[tokio::main]
async fn main() {
    let env = TestEnv::new().await;
    let mut unlimited = env.api_config();
    unlimited.rate_limits.enabled = false;
    let mut limited = env.api_config();
    limited.rate_limits.read = u32::MAX / 2;
    let off = spawn_api_with(unlimited).await;
    let on = spawn_api_with(limited).await;
    let key = env.api_key(&[Permission::Admin]).await;

    // The limiter alone: a lock and a map lookup per request (counts shared over NATS).
    let limiter = RateLimiter::new(RateLimitConfig {
        read: u32::MAX / 2,
        ..RateLimitConfig::default()
    });
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        limiter.check(1, RateClass::Read);
        samples.push(t.elapsed());
    }
    println!(
        "rate limiter check (in memory):              {}",
        summary(samples)
    );

    for clients in [1, 8] {
        for (label, api) in [("limits off", &off), ("limits on ", &on)] {
            let url = api.api_url("/api-keys");
            let _ = http_latencies(&url, &key, clients).await; // warm-up
            let (samples, rate) = http_latencies(&url, &key, clients).await;
            println!(
                "GET /api-keys, {clients} client(s), {label}:  {}  {rate:.0} req/s",
                summary(samples)
            );
        }
    }
}
