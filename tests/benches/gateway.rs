//! One gateway process against 100, 1,000 and 2,000 simulated printers, each reporting every
//! second: the gateway's CPU and memory, and the delay from a printer's report to the KV update.
//!
//! `scripts/bench gateway` (or `BENCH_PRINTERS=100,500 scripts/bench gateway`). The gateway runs
//! in a child process (this binary re-run), so its CPU time and memory are its own, read from
//! `/proc`. The simulator and the measuring run in this process, NATS in its own; all share the
//! machine's cores, as they would not in production.
//!
//! A report is a delta carrying a unique `nozzle_temper`, sent through the simulated printer's
//! real MQTT/TLS connection; its delay ends when this process's watch of `printer_status` sees
//! that temperature for that printer. Reports the gateway coalesced (a newer one overtook them
//! within `gateway.status_interval_ms`) are counted, not timed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use printyard_contracts::farm::StatusRecord;
use printyard_printer_sim::{Farm, FarmConfig, Model};
use printyard_tests::{
    ChildGateway, TestEnv, process_usage as usage, register_in_bucket, run_child_gateway,
};

const WARM_UP: Duration = Duration::from_secs(5);
const WINDOW: Duration = Duration::from_secs(20);

/// (printer id, temperature) → when the report was sent.
type Sent = Arc<Mutex<HashMap<(i64, u64), Instant>>>;

fn main() {
    if std::env::var_os("PRINTYARD_CHILD_GATEWAY").is_some() {
        return run_child_gateway();
    }
    let sizes: Vec<usize> = std::env::var("BENCH_PRINTERS")
        .unwrap_or_else(|_| "100,1000,2000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    for count in sizes {
        runtime.block_on(run(count));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn run(count: usize) {
    let env = TestEnv::new().await;
    let farm = Farm::start(FarmConfig {
        count,
        models: Model::ALL.to_vec(),
        first_ip: std::net::Ipv4Addr::new(127, 77, 0, 1),
        speed: 1.0,
        tick: Duration::from_secs(1),
        // Idle printers' heartbeat (it changes only the Wi-Fi signal); the timed reports are
        // the benchmark's own.
        idle_report: Duration::from_secs(5),
        mqtt_client_cap: None,
        ..Default::default()
    })
    .await
    .expect("the simulated farm starts");
    let dir = std::env::temp_dir().join(format!("printyard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("sim-ca.pem");
    std::fs::write(&ca, farm.ca_pem()).unwrap();

    let mut config = env.gateway_config();
    config.gateway.extra_ca_files = vec![ca.to_string_lossy().into_owned()];
    if let Some(ms) = std::env::var("BENCH_STATUS_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.gateway.status_interval_ms = ms;
    }
    let gateway = ChildGateway::spawn("child_gateway", &config);
    let pid = gateway.pid().expect("the gateway's pid");

    let js = jetstream::new(env.nats.client().await);
    let started = Instant::now();
    register_in_bucket(&env, &farm.printers).await;

    // Follow the status bucket: connections, and the reports' arrival.
    let status = js.get_key_value("printer_status").await.unwrap();
    let sent: Sent = Arc::default();
    let delays = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let connected = Arc::new(Mutex::new(HashMap::<i64, (bool, Option<String>)>::new()));
    let watcher = {
        let (sent, delays, connected) = (sent.clone(), delays.clone(), connected.clone());
        let mut watch = status.watch_with_history(">").await.unwrap();
        tokio::spawn(async move {
            while let Some(entry) = watch.next().await {
                let Ok(entry) = entry else { continue };
                let now = Instant::now();
                let Ok(record) = serde_json::from_slice::<StatusRecord>(&entry.value) else {
                    continue;
                };
                connected.lock().unwrap().insert(
                    record.printer_id,
                    (record.connected, record.connection_error.clone()),
                );
                let Some(nozzle) = record.status.map(|s| s.temperatures.nozzle) else {
                    continue;
                };
                if let Some(at) = sent
                    .lock()
                    .unwrap()
                    .remove(&(record.printer_id, nozzle as u64))
                {
                    delays.lock().unwrap().push(now - at);
                }
            }
        })
    };
    loop {
        let up = connected.lock().unwrap().values().filter(|c| c.0).count();
        if up == count {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let errors: Vec<_> = connected
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, c)| !c.0)
                .map(|(id, c)| format!("{id}: {:?}", c.1))
                .take(10)
                .collect();
            let mut keys = status.keys().await.unwrap();
            let mut stored = 0;
            let mut up_in_bucket = 0;
            while let Some(Ok(key)) = keys.next().await {
                stored += 1;
                if let Ok(Some(v)) = status.get(&key).await
                    && serde_json::from_slice::<StatusRecord>(&v).is_ok_and(|r| r.connected)
                {
                    up_in_bucket += 1;
                }
            }
            panic!(
                "only {up} of {count} printers seen connected within 120 s (the bucket holds \
                 {stored} statuses, {up_in_bucket} connected): {errors:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let connect_time = started.elapsed();

    // Every printer reports once a second, spread evenly over the second.
    let sender = {
        let printers = farm.printers.clone();
        let sent = sent.clone();
        tokio::spawn(async move {
            let gap = Duration::from_secs(1) / printers.len() as u32;
            let mut ticker = tokio::time::interval(gap);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for round in 0u64.. {
                for (i, printer) in printers.iter().enumerate() {
                    ticker.tick().await;
                    // Unique per printer and round; whole degrees survive the round trip.
                    let nozzle = 1_000 + round;
                    let payload = serde_json::json!({"print": {
                        "command": "push_status", "msg": 1,
                        "sequence_id": round.to_string(), "nozzle_temper": nozzle,
                    }});
                    sent.lock()
                        .unwrap()
                        .insert((i as i64 + 1, nozzle), Instant::now());
                    printer.send_raw(serde_json::to_vec(&payload).unwrap().into());
                }
            }
        })
    };
    tokio::time::sleep(WARM_UP).await;
    delays.lock().unwrap().clear();
    let (cpu_before, _, _) = usage(pid);
    let window_start = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let (cpu_after, rss, peak) = usage(pid);
    let elapsed = window_start.elapsed().as_secs_f64();
    let mut timed = std::mem::take(&mut *delays.lock().unwrap());
    sender.abort();
    // Reports still in flight when the window closed are not counted as coalesced.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let late_or_coalesced = {
        let cutoff = Instant::now() - Duration::from_secs(2);
        sent.lock()
            .unwrap()
            .values()
            .filter(|at| **at < cutoff)
            .count()
    };
    timed.sort();
    println!(
        "{count:>5} printers: connected in {:.1} s; CPU {:.1} % of one core; RSS {} MiB (peak {} MiB); \
         {} reports timed in {:.0} s, report→KV p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} not seen in the bucket",
        connect_time.as_secs_f64(),
        (cpu_after - cpu_before) / elapsed * 100.0,
        rss / 1024,
        peak / 1024,
        timed.len(),
        elapsed,
        percentile(&timed, 0.50).as_secs_f64() * 1e3,
        percentile(&timed, 0.99).as_secs_f64() * 1e3,
        timed.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        late_or_coalesced,
    );
    watcher.abort();
    gateway.kill().await;
    drop(farm);
    let _ = std::fs::remove_dir_all(&dir);
}
