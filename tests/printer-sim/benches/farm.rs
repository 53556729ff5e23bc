//! CPU and memory of one simulator process carrying 1,000 printers, idle and printing, each
//! with an MQTT client subscribed to its reports (as a gateway would be).
//!
//! `cargo bench -p printyard-printer-sim --bench farm` (root: the printers bind port 990).
//! Set `SIM_BENCH_COUNT` to change the farm size.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::Value;

const MEASURE: Duration = Duration::from_secs(20);

fn proc_cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn proc_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

async fn run(count: usize, printing: usize, first_ip: &str) {
    let dir = std::env::temp_dir().join(format!("sim-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest_path: PathBuf = dir.join(format!("farm-{printing}.json"));
    let _ = std::fs::remove_file(&manifest_path);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_printer-sim"))
        .args([
            "--count",
            &count.to_string(),
            "--printing",
            &printing.to_string(),
        ])
        .args([
            "--first-ip",
            first_ip,
            "--control",
            "127.0.0.1:0",
            "--client-cap",
            "0",
        ])
        .arg("--manifest")
        .arg(&manifest_path)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let started = Instant::now();
    while !manifest_path.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the farm did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let startup = started.elapsed();
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let tls = printyard_printer_sim::certs::client_config(manifest["ca_pem"].as_str().unwrap());
    let received = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for (i, p) in manifest["printers"].as_array().unwrap().iter().enumerate() {
        let mut options = MqttOptions::new(format!("bench-{i}"), p["ip"].as_str().unwrap(), 8883);
        options.set_credentials("bblp", p["access_code"].as_str().unwrap());
        options.set_max_packet_size(1 << 20, 1 << 20);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        client
            .subscribe(
                format!("device/{}/report", p["serial"].as_str().unwrap()),
                QoS::AtMostOnce,
            )
            .await
            .unwrap();
        let received = received.clone();
        clients.push((
            client,
            tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::Publish(_))) => {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            }),
        ));
    }
    tokio::time::sleep(Duration::from_secs(5)).await; // connections settle
    let ticks_before = proc_cpu_ticks(pid);
    let messages_before = received.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(MEASURE).await;
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = (proc_cpu_ticks(pid) - ticks_before) as f64 / 100.0 / seconds * 100.0;
    let rss = proc_rss_mib(pid);
    let rate = (received.load(Ordering::Relaxed) - messages_before) as f64 / seconds;
    println!(
        "{count} printers, {printing} printing: start-up {:.1} s, CPU {cpu:.1} % of one core, RSS {rss:.0} MiB, {rate:.0} reports/s delivered to {count} MQTT clients",
        startup.as_secs_f64()
    );
    for (_, task) in clients {
        task.abort();
    }
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::var("SIM_BENCH_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    run(count, 0, "127.0.60.1").await;
    run(count, count, "127.0.80.1").await;
}
