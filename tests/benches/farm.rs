//! The whole system through the path a user with a big farm takes: the six services, NATS,
//! Postgres and the simulator (`printer-sim`, `--client-cap 4` as printers have) each in a
//! process of its own, every printer added through `POST /printers` (8 requests at a time),
//! trusted on first use (the gateway is not given the simulator's CA), every printer printing.
//!
//! `scripts/bench farm 2000` (or `scripts/bench farm 200,1000,2000`). Prints, per farm size:
//! - how long until every printer is online, counted from the first `POST /printers`;
//! - whether they stay online: the fewest online over a steady window (`BENCH_FARM_STAY_SECS`,
//!   60) and the gateway's sessions ended in it;
//! - CPU (percent of one core over the window) and resident memory per process: each service,
//!   NATS, Postgres (all `postgres` processes of the machine) and, apart, the simulator;
//! - report → status: an HMS entry raised (and cleared) through the simulator's control API,
//!   timed until `GET /printers/{id}/status` shows it (polled every 2 ms), 200 samples;
//! - `GET /printers/{id}/status` (random ids, rate limits off) and `GET /printers` under `wrk`;
//! - the gateway's memory before and 30 s after every printer is deleted through the API.
//!
//! The binaries are the release builds `scripts/bench farm` makes (`$CARGO_TARGET_DIR/release`).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use printyard_tests::bench::{CpuWindow, Process, pids_named, release_dir, spawn, wrk};
use printyard_tests::nats_server::{TempDir, free_port};
use printyard_tests::{TestEnv, post_printer, process_usage};
use rand::Rng;
use serde_json::{Value, json};
use tokio::process::Command;

const SERVICES: [&str; 6] = [
    "archive",
    "scheduler",
    "stats",
    "notifier",
    "gateway",
    "api",
];
const ADD_AT_ONCE: usize = 8;
const ONLINE_WITHIN: Duration = Duration::from_secs(600);
const SAMPLES: usize = 100;

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_FARM_PRINTERS")
        .unwrap_or_else(|_| "200".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let stay = Duration::from_secs(
        std::env::var("BENCH_FARM_STAY_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    for count in sizes {
        runtime.block_on(run(count, stay));
    }
}

async fn run(count: usize, stay: Duration) {
    println!("--- farm of {count} printers ---");
    let env = TestEnv::new().await;
    let bins = release_dir();
    let work = TempDir::new("farm-bench");
    let dir = work.0.clone();

    // The simulator: a loopback range of its own, every printer printing.
    let control = free_port();
    let manifest = dir.join("farm.json");
    let ftps = if is_root() { "990" } else { "9990" };
    let mut rng = rand::rng();
    let first_ip = format!("127.{}.0.1", rng.random_range(100..200));
    let sim_args: Vec<String> = [
        "--count",
        &count.to_string(),
        "--printing",
        &count.to_string(),
        "--first-ip",
        &first_ip,
        "--ftps-port",
        ftps,
        "--control",
        &format!("127.0.0.1:{control}"),
        "--manifest",
        &manifest.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let sim = spawn(
        "simulator",
        &bins.join("printer-sim"),
        &sim_args,
        &[("RUST_LOG".into(), "warn".into())],
        &dir.join("printer-sim.log"),
    );
    let manifest: Value = {
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&manifest)
                && let Ok(value) = serde_json::from_str(&text)
            {
                break value;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no manifest");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let printers = manifest["printers"].as_array().expect("printers").clone();
    assert_eq!(printers.len(), count);

    // The services, each its own process, configured as `scripts/dev` does.
    let api_port = free_port();
    let mut admin_ports = HashMap::new();
    let mut services = Vec::new();
    for name in SERVICES {
        let admin = free_port();
        admin_ports.insert(name, admin);
        let mut vars: Vec<(String, String)> = vec![
            ("PRINTYARD__NATS__URL".into(), env.nats.url()),
            (
                "PRINTYARD__ADMIN__LISTEN".into(),
                format!("127.0.0.1:{admin}"),
            ),
            ("PRINTYARD__TELEMETRY__LOG_FORMAT".into(), "text".into()),
            (
                "RUST_LOG".into(),
                std::env::var("BENCH_FARM_LOG").unwrap_or_else(|_| "warn".into()),
            ),
        ];
        if name != "gateway" {
            vars.push(("PRINTYARD__DATABASE__URL".into(), env.database_url.clone()));
        }
        match name {
            "api" => {
                vars.push((
                    "PRINTYARD__HTTP__LISTEN".into(),
                    format!("127.0.0.1:{api_port}"),
                ));
                vars.push(("PRINTYARD__RATE_LIMITS__ENABLED".into(), "false".into()));
            }
            "archive" => {
                vars.push((
                    "PRINTYARD__ARCHIVE__STORE".into(),
                    dir.join("objects").to_string_lossy().into_owned(),
                ));
                vars.push((
                    "PRINTYARD__ARCHIVE__WORK_DIR".into(),
                    dir.join("spool").to_string_lossy().into_owned(),
                ));
            }
            _ => {}
        }
        services.push(spawn(
            name,
            &bins.join(format!("printyard-{name}")),
            &[],
            &vars,
            &dir.join(format!("{name}.log")),
        ));
        // One after another: each migrates its own schema.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let base = format!("http://127.0.0.1:{api_port}/api/v1");
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    loop {
        let healthy = plain
            .get(format!("{base}/health"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success());
        if healthy.is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the api never became healthy; logs in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let key = create_key(&bins, &env.database_url).await;
    let client = printyard_tests::keyed_http(&key);

    // Add every printer through the API, 8 requests at a time.
    let added_from = Instant::now();
    let ids: Vec<(i64, String)> = futures::stream::iter(printers.iter().cloned())
        .map(|printer| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let body = json!({
                    "name": printer["name"], "ip_address": printer["ip"],
                    "access_code": printer["access_code"], "serial_number": printer["serial"],
                });
                let id = post_printer(&client, &base, &body).await;
                (
                    id,
                    printer["serial"].as_str().unwrap_or_default().to_owned(),
                )
            }
        })
        .buffer_unordered(ADD_AT_ONCE)
        .collect()
        .await;
    let adding = added_from.elapsed();

    // Until every one is online (its status anything but offline).
    let mut last_report = Instant::now();
    let online_after = loop {
        let online = online_count(&client, &base).await;
        if online == count {
            break added_from.elapsed();
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            println!(
                "  {:>5.0} s: {online} of {count} online",
                added_from.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        assert!(
            added_from.elapsed() < ONLINE_WITHIN,
            "only {online} of {count} online after {ONLINE_WITHIN:?}; logs in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "added {count} printers through the API in {:.1} s; all online {:.1} s after the first was added",
        adding.as_secs_f64(),
        online_after.as_secs_f64()
    );

    // The steady window: CPU per process, and whether every printer stays online.
    let gateway_metrics = format!("http://127.0.0.1:{}/metrics", admin_ports["gateway"]);
    let mut groups: Vec<(String, Vec<u32>)> = services
        .iter()
        .map(|p| (p.name.clone(), vec![p.pid()]))
        .collect();
    groups.push(("nats".into(), env.nats.pid().into_iter().collect()));
    groups.push(("postgres".into(), pids_named("postgres")));
    groups.push(("simulator".into(), vec![sim.pid()]));
    let pids: Vec<Vec<u32>> = groups.iter().map(|(_, p)| p.clone()).collect();
    let ended_before = metric_sum(
        &plain,
        &gateway_metrics,
        "printyard_gateway_reconnects_total",
    )
    .await;
    let lost_before = metric_sum(
        &plain,
        &gateway_metrics,
        "printyard_gateway_leases_lost_total",
    )
    .await;
    let window = CpuWindow::start(&pids);
    let stay_from = Instant::now();
    let mut fewest = count;
    while stay_from.elapsed() < stay {
        tokio::time::sleep(Duration::from_secs(5)).await;
        fewest = fewest.min(online_count(&client, &base).await);
    }
    let cpu = window.percent(&pids);
    let ended = metric_sum(
        &plain,
        &gateway_metrics,
        "printyard_gateway_reconnects_total",
    )
    .await
        - ended_before;
    let lost = metric_sum(
        &plain,
        &gateway_metrics,
        "printyard_gateway_leases_lost_total",
    )
    .await
        - lost_before;
    println!(
        "stayed online over {} s: fewest online {fewest} of {count}; gateway sessions ended {ended:.0}, leases lost {lost:.0}",
        stay.as_secs()
    );
    let mut ours = 0.0;
    let mut rows = Vec::new();
    for ((name, group), cpu) in groups.iter().zip(&cpu) {
        let rss: u64 = group.iter().map(|pid| process_usage(*pid).1).sum();
        if name != "simulator" {
            ours += cpu;
        }
        rows.push(format!("{name} {cpu:.1} % / {} MB", rss / 1024));
    }
    println!("CPU (of one core) / RSS: {}", rows.join(", "));
    println!("Printyard's processes with NATS and Postgres together: {ours:.1} % of one core");

    // Report → status.
    let sim_control = format!("http://127.0.0.1:{control}");
    let mut latencies = Vec::new();
    for _ in 0..SAMPLES {
        let (id, serial) = ids[rand::rng().random_range(0..ids.len())].clone();
        for raise in [true, false] {
            let hms_url = format!("{sim_control}/printers/{serial}/hms");
            let sent = Instant::now();
            let answer = if raise {
                plain
                    .post(&hms_url)
                    .json(&json!({"attr": 0x0300_0100u32, "code": 0x0001_0001u32}))
                    .send()
                    .await
            } else {
                plain.delete(&hms_url).send().await
            };
            answer.expect("the simulator's control API");
            loop {
                let status: Value = match client
                    .get(format!("{base}/printers/{id}/status"))
                    .send()
                    .await
                {
                    Ok(r) => r.json().await.unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                let shows = status["hms"].as_array().map(|h| !h.is_empty());
                if shows == Some(raise) {
                    latencies.push(sent.elapsed());
                    break;
                }
                assert!(sent.elapsed() < Duration::from_secs(30), "no status change");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    latencies.sort_unstable();
    let at = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "report → status ({} samples, an HMS entry raised or cleared): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        at(0.5).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );

    // Throughput of the status read (random printers) and of the list.
    let (low, high) = (
        ids.iter().map(|(id, _)| *id).min().unwrap_or(1),
        ids.iter().map(|(id, _)| *id).max().unwrap_or(1),
    );
    let script = dir.join("status.lua");
    std::fs::write(
        &script,
        format!(
            "request = function()\n  return wrk.format(nil, \"/api/v1/printers/\" .. math.random({low}, {high}) .. \"/status\")\nend\n"
        ),
    )
    .unwrap();
    wrk(
        "GET /printers/{id}/status",
        "random printers",
        &format!("{base}/printers/1/status"),
        &key,
        "-t2 -c32 -d10s",
        Some(&script),
    )
    .await;
    // What one client (a dashboard, a script) waits, rather than 32 saturating the cores.
    wrk(
        "GET /printers/{id}/status",
        "random printers, one client",
        &format!("{base}/printers/1/status"),
        &key,
        "-t1 -c1 -d10s",
        Some(&script),
    )
    .await;
    wrk(
        &format!("GET /printers ({count} printers)"),
        "whole list",
        &format!("{base}/printers"),
        &key,
        "-t1 -c4 -d10s",
        None,
    )
    .await;

    // The dashboard's farm screen in Chromium, every printer live (`web/e2e/farm-view.mjs`).
    if std::env::var("BENCH_FARM_BROWSER").as_deref() != Ok("0") {
        dashboard(&format!("http://127.0.0.1:{api_port}"), &key, count).await;
    }

    // The gateway's memory, held and after every printer is deleted.
    let gateway_pid = services
        .iter()
        .find(|p| p.name == "gateway")
        .map(Process::pid)
        .unwrap_or(0);
    let held_rss = process_usage(gateway_pid).1;
    let deleting = Instant::now();
    futures::stream::iter(ids.iter().map(|(id, _)| *id))
        .for_each_concurrent(ADD_AT_ONCE, |id| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let _ = client.delete(format!("{base}/printers/{id}")).send().await;
            }
        })
        .await;
    let deleted_in = deleting.elapsed();
    // Let go: the gateway holds none (connections ended, statuses purged, leases released).
    let mut let_go_in = None;
    while deleting.elapsed() < Duration::from_secs(120) {
        if metric(&client, &gateway_metrics, "printyard_gateway_printers_held").await == Some(0.0) {
            let_go_in = Some(deleting.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after_let_go = process_usage(gateway_pid).1;
    tokio::time::sleep(Duration::from_secs(30)).await;
    println!(
        "deleting {count} printers through the API took {:.1} s; the gateway held none after {}",
        deleted_in.as_secs_f64(),
        let_go_in.map_or("more than 120 s".to_owned(), |d| format!(
            "{:.1} s",
            d.as_secs_f64()
        )),
    );
    println!(
        "gateway RSS holding {count} printers {} MB; when it held none {} MB; 30 s later {} MB",
        held_rss / 1024,
        after_let_go / 1024,
        process_usage(gateway_pid).1 / 1024
    );

    for mut process in services {
        let _ = process.child.start_kill();
        let _ = process.child.wait().await;
    }
    let mut sim = sim;
    let _ = sim.child.start_kill();
    let _ = sim.child.wait().await;
    env.drop_database().await;
    if std::env::var_os("BENCH_FARM_KEEP_LOGS").is_some() {
        println!("logs kept in {}", dir.display());
        std::mem::forget(work);
    }
}

/// Runs `web/e2e/farm-view.mjs` (headless Chromium at 2560×1440) against the farm and prints
/// its figures: time until every printer shows, JavaScript heap, layout and script per second
/// while live, for the dense and the tile view.
async fn dashboard(url: &str, key: &str, count: usize) {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    if !web.join("node_modules/playwright-core").exists()
        || !Path::new("/usr/bin/chromium").exists()
    {
        println!("dashboard: skipped (needs web/node_modules and Chromium: run scripts/test once)");
        return;
    }
    let shots = std::env::temp_dir().join("printyard-farm-view");
    let run = Command::new("node")
        .arg("e2e/farm-view.mjs")
        .current_dir(&web)
        .env("PRINTYARD_URL", url)
        .env("PRINTYARD_KEY", key)
        .env("PRINTYARD_PRINTERS", count.to_string())
        .env("PRINTYARD_SCREENSHOTS", &shots)
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(600), run).await {
        Ok(Ok(output)) => {
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                println!("dashboard {line}");
            }
            if !output.status.success() {
                println!(
                    "dashboard: FAILED\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            println!("dashboard screenshots: {}", shots.display());
        }
        Ok(Err(err)) => println!("dashboard: node did not run: {err}"),
        Err(_) => println!("dashboard: no answer within 10 minutes"),
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// An admin key made by `printyard-api create-key`, as an operator makes the first one.
async fn create_key(bins: &Path, database_url: &str) -> String {
    let output = Command::new(bins.join("printyard-api"))
        .args(["create-key", "--name", "bench", "--permission", "admin"])
        .env("PRINTYARD__DATABASE__URL", database_url)
        .output()
        .await
        .expect("printyard-api create-key");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// How many printers `GET /printers` shows as anything but offline.
async fn online_count(client: &reqwest::Client, base: &str) -> usize {
    let Ok(response) = client.get(format!("{base}/printers")).send().await else {
        return 0;
    };
    let listed: Value = response.json().await.unwrap_or(Value::Null);
    listed
        .as_array()
        .map(|printers| printers.iter().filter(|p| p["status"] != "offline").count())
        .unwrap_or(0)
}

/// The sum of a metric's samples (every label set) on a Prometheus page; 0 if unreadable.
async fn metric_sum(client: &reqwest::Client, url: &str, name: &str) -> f64 {
    metric(client, url, name).await.unwrap_or(0.0)
}

/// The sum of a metric's samples on a Prometheus page, if the page was read and shows it.
async fn metric(client: &reqwest::Client, url: &str, name: &str) -> Option<f64> {
    let response = client.get(url).send().await.ok()?;
    let text = response.text().await.ok()?;
    let samples: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}
