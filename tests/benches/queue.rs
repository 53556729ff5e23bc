//! Queue figures (`scripts/bench queue`), with every service in this process on real NATS,
//! Postgres and the filesystem store, and the printer simulator on loopback:
//!
//! 1. Dispatch: `BENCH_PRINTERS` (default 100) idle simulated printers whose FTPS is throttled
//!    to 150 KB/s get one job each, all queued at once; the time until every one is printing,
//!    against the time one job takes alone (the ratio says whether uploads overlap: 1.0 is
//!    perfect, N is one printer after another).
//! 2. Claims: with `BENCH_PENDING` (default 100,000) pending jobs, the time of one claim (the
//!    transaction that picks a printer's next job), p50/p95/p99 over 2,000 claims, for jobs
//!    that may go to any printer and for jobs that each name a printer.
//!
//! 3. Stagger: `BENCH_STAGGER_PRINTERS` (default 20) idle printers of one site get a job each,
//!    all queued at once, with `scheduler.stagger_secs` 0 and then `BENCH_STAGGER_SECS`
//!    (default 2): when each job started, the spread from first to last, the closest two starts
//!    and the most starts within any 10 s (beds heating at once).
//!
//! `BENCH_ONLY=dispatch|claim|stagger` runs one part; `BENCH_FILE_KB` (default 2048) sizes the
//! 3MF of the dispatch part.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use printyard_api::auth::Permission;
use printyard_contracts::farm::{PrinterRecord, Site, StatusRecord};
use printyard_contracts::printer::{HmsStatus, LoadedFilament, PrinterState, PrinterStatus};
use printyard_printer_sim::printer::Faults;
use printyard_printer_sim::{Farm, FarmConfig, Model};
use printyard_scheduler::dispatch::Dispatcher;
use printyard_scheduler::farm::{FarmView, PrinterView};
use printyard_scheduler::matching::Occupancy;
use printyard_tests::threemf::{Slicing, sliced_3mf};
use printyard_tests::{
    TestEnv, eventually, keyed_http, spawn_api_with, spawn_archive, spawn_gateway_with,
    spawn_scheduler_with,
};
use serde_json::{Value, json};

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

/// 150 KB/s, as a delay per 64 KiB block (the simulator's FTPS fault).
const THROTTLE_MS_PER_64K: u64 = 65_536 * 1000 / 150_000;

async fn bench_dispatch() {
    let printers = env_number("BENCH_PRINTERS", 100) as usize;
    let file_kib = env_number("BENCH_FILE_KB", 2048) as usize;
    let env = TestEnv::new().await;
    // One printer more: the lone job's printer stays busy printing it.
    let farm = Farm::start(FarmConfig {
        count: printers + 1,
        models: vec![Model::P1S],
        speed: 1.0,
        tick: Duration::from_millis(200),
        idle_report: Duration::from_secs(5),
        first_ip: std::net::Ipv4Addr::new(127, 91, 0, 1),
        ..Default::default()
    })
    .await
    .expect("the simulated farm starts");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, farm.ca_pem()).unwrap();

    let _archive = spawn_archive(&env).await;
    let mut api_config = env.api_config();
    api_config.rate_limits.enabled = false;
    let api = spawn_api_with(api_config).await;
    let mut gateway_config = env.gateway_config();
    gateway_config.gateway.extra_ca_files = vec![ca.to_string_lossy().into_owned()];
    gateway_config.gateway.capture_window_secs = 5;
    let _gateway = spawn_gateway_with(gateway_config).await;
    let _scheduler = spawn_scheduler_with(env.scheduler_config()).await;
    let key = env.api_key(&[Permission::Admin]).await;
    let client = keyed_http(&key);
    let url = |path: &str| api.api_url(path);

    for (i, printer) in farm.printers.iter().enumerate() {
        let response = client
            .post(url("/printers"))
            .json(&json!({
                "name": format!("Bench {}", i + 1),
                "ip_address": printer.spec.ip.to_string(),
                "access_code": printer.spec.access_code,
                "serial_number": printer.spec.serial,
                "auto_clear_plate": true,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        printer.set_faults(Faults {
            ftps_delay_ms: THROTTLE_MS_PER_64K,
            ..Default::default()
        });
    }
    eventually(Duration::from_secs(120), "every printer online", || async {
        let list: Vec<Value> = client
            .get(url("/printers"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        list.iter().all(|p| p["status"] == "idle").then_some(())
    })
    .await;

    let file = sliced_3mf(&Slicing {
        model_id: "C12",
        title: "Bench part",
        padding: file_kib * 1024,
        ..Default::default()
    });
    let size = file.len();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(file).file_name("bench.3mf"),
    );
    let library: Value = client
        .post(url("/archives"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let archive_id = library["id"].as_i64().unwrap();

    let printing = |expected: usize| {
        let client = client.clone();
        let url = url("/queue?status=printing");
        async move {
            let jobs: Vec<Value> = client.get(&url).send().await.ok()?.json().await.ok()?;
            (jobs.len() >= expected).then_some(())
        }
    };
    let started = Instant::now();
    let response = client
        .post(url("/queue"))
        .json(&json!({"archive_id": archive_id, "printer_id": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    eventually(Duration::from_secs(600), "the lone job printing", || {
        printing(1)
    })
    .await;
    let alone = started.elapsed();

    let started = Instant::now();
    for _ in 0..printers {
        let response = client
            .post(url("/queue"))
            .json(&json!({"archive_id": archive_id}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
    }
    let queued = started.elapsed();
    eventually(Duration::from_secs(1800), "every job printing", || {
        printing(printers + 1)
    })
    .await;
    let all = started.elapsed();
    let upload = size as f64 / 150_000.0;
    println!(
        "dispatch: {size} byte 3MF, FTPS at 150 KB/s (an upload alone takes {upload:.1} s at that rate)"
    );
    println!(
        "  1 job to 1 printer:           printing after {:6.1} s",
        alone.as_secs_f64()
    );
    println!(
        "  {printers} jobs to {printers} printers:    printing after {:6.1} s (queued in {:.1} s)   ratio {:.2}",
        all.as_secs_f64(),
        queued.as_secs_f64(),
        all.as_secs_f64() / alone.as_secs_f64()
    );
    drop(farm);
}

/// The start instants of `printers` jobs queued at once on as many idle printers of one site,
/// with starts staggered by `stagger` seconds (0: off).
async fn staggered_starts(printers: usize, stagger: f64, first_ip: [u8; 4]) -> Vec<f64> {
    let env = TestEnv::new().await;
    let farm = Farm::start(FarmConfig {
        count: printers,
        models: vec![Model::P1S],
        speed: 1.0,
        tick: Duration::from_millis(200),
        idle_report: Duration::from_secs(5),
        first_ip: std::net::Ipv4Addr::from(first_ip),
        ..Default::default()
    })
    .await
    .expect("the simulated farm starts");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, farm.ca_pem()).unwrap();
    let _archive = spawn_archive(&env).await;
    let mut api_config = env.api_config();
    api_config.rate_limits.enabled = false;
    let api = spawn_api_with(api_config).await;
    let mut gateway_config = env.gateway_config();
    gateway_config.gateway.extra_ca_files = vec![ca.to_string_lossy().into_owned()];
    let _gateway = spawn_gateway_with(gateway_config).await;
    let mut scheduler_config = env.scheduler_config();
    scheduler_config.scheduler.stagger_secs = stagger;
    let _scheduler = spawn_scheduler_with(scheduler_config).await;
    let client = keyed_http(&env.api_key(&[Permission::Admin]).await);
    let url = |path: &str| api.api_url(path);
    for (i, printer) in farm.printers.iter().enumerate() {
        let response = client
            .post(url("/printers"))
            .json(&json!({
                "name": format!("Stagger {}", i + 1),
                "ip_address": printer.spec.ip.to_string(),
                "access_code": printer.spec.access_code,
                "serial_number": printer.spec.serial,
                "auto_clear_plate": true,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
    }
    eventually(Duration::from_secs(120), "every printer online", || async {
        let list: Vec<Value> = client
            .get(url("/printers"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        list.iter().all(|p| p["status"] == "idle").then_some(())
    })
    .await;
    let file = sliced_3mf(&Slicing {
        model_id: "C12",
        title: "Stagger part",
        ..Default::default()
    });
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(file).file_name("stagger.3mf"),
    );
    let library: Value = client
        .post(url("/archives"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for _ in 0..printers {
        let response = client
            .post(url("/queue"))
            .json(&json!({"archive_id": library["id"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
    }
    let jobs = eventually(Duration::from_secs(600), "every job printing", || async {
        let jobs: Vec<Value> = client
            .get(url("/queue?status=printing"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (jobs.len() >= printers).then_some(jobs)
    })
    .await;
    let mut starts: Vec<f64> = jobs
        .iter()
        .filter_map(|j| {
            j["started_at"]
                .as_str()?
                .parse::<chrono::DateTime<chrono::Utc>>()
                .ok()
        })
        .map(|t| t.timestamp_micros() as f64 / 1e6)
        .collect();
    starts.sort_by(f64::total_cmp);
    drop(farm);
    starts
}

async fn bench_stagger() {
    let printers = env_number("BENCH_STAGGER_PRINTERS", 20) as usize;
    let stagger: f64 = std::env::var("BENCH_STAGGER_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    println!("stagger: {printers} idle P1S of one site, a job each queued at once");
    for (secs, ip) in [(0.0, [127, 92, 0, 1]), (stagger, [127, 93, 0, 1])] {
        let starts = staggered_starts(printers, secs, ip).await;
        let spread = starts.last().unwrap_or(&0.0) - starts.first().unwrap_or(&0.0);
        let closest = starts
            .windows(2)
            .map(|w| w[1] - w[0])
            .fold(f64::INFINITY, f64::min);
        let busiest = starts
            .iter()
            .map(|a| {
                starts
                    .iter()
                    .filter(|b| (*a..*a + 10.0).contains(*b))
                    .count()
            })
            .max()
            .unwrap_or(0);
        println!(
            "  stagger_secs {secs:>4}: {} starts over {spread:6.1} s, closest two {closest:5.2} s apart, \
             at most {busiest} starting within 10 s",
            starts.len()
        );
    }
}

/// A connected, idle P1S with PLA loaded, as the dispatcher would see it.
fn idle_p1s(id: i64) -> PrinterView {
    let serial = format!("01P{id:012}");
    PrinterView {
        record: PrinterRecord {
            id,
            name: format!("Bench {id}"),
            site: Site::default(),
            host: "10.0.0.1".into(),
            serial: serial.clone(),
            access_code: "12345678".into(),
            model: None,
            tls_pin: None,
            tls_insecure: false,
            auto_clear_plate: true,
            maintenance: false,
        },
        status: Some(StatusRecord {
            printer_id: id,
            serial,
            connected: true,
            last_seen: None,
            connection_error: None,
            model: None,
            tls_pin: None,
            firmware: None,
            status: Some(PrinterStatus {
                state: PrinterState::Idle,
                progress: 0,
                remaining_time: 0,
                current_layer: 0,
                total_layers: 0,
                temperatures: Default::default(),
                hms_status: HmsStatus::Ok,
                hms: vec![],
                job_name: None,
                gcode_file: None,
                task_id: None,
                print_error: None,
                filaments: vec![LoadedFilament {
                    tray: 0,
                    kind: "PLA".into(),
                    color: Some("FFFFFFFF".into()),
                    remain: Some(100),
                    external: false,
                    ..Default::default()
                }],
                has_ams: true,
            }),
        }),
        spools: Default::default(),
    }
}

async fn bench_claim() {
    let pending = env_number("BENCH_PENDING", 100_000) as i64;
    let env = TestEnv::new().await;
    let scheduler = spawn_scheduler_with(env.scheduler_config()).await;
    let pool = env.pool().await;
    // The scheduler's own dispatcher would claim these for the (absent) farm: stop it, keep
    // the schema.
    scheduler.stop().await;
    let nats = env.nats.client().await;
    let dispatcher = Dispatcher::new(
        pool.clone(),
        printyard_service::rpc::RpcClient::new(nats, Duration::from_secs(2)),
        FarmView::default(),
        Default::default(),
        Arc::new(tokio::sync::Notify::new()),
    );
    let none = HashSet::new();
    let occupancy = Occupancy {
        plates_to_clear: &none,
        taken: &none,
        filament_margin_g: 20.0,
    };
    for (shape, target) in [
        ("any printer", "NULL"),
        ("a named printer each (5,000 printers)", "1 + i % 5000"),
    ] {
        sqlx::query("TRUNCATE queue.jobs")
            .execute(&pool)
            .await
            .unwrap();
        let seeded = Instant::now();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO queue.jobs (archive_id, printer_id, name, filename, model_id, filaments) \
             SELECT i, {target}, 'Part ' || i, 'part.3mf', 'C12', \
               '[{{\"id\": 1, \"type\": \"PLA\", \"color\": \"#FFFFFF\"}}]' \
             FROM generate_series(1, $1) AS i"
        )))
        .bind(pending)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("VACUUM ANALYZE queue.jobs")
            .execute(&pool)
            .await
            .unwrap();
        let seed_secs = seeded.elapsed().as_secs_f64();
        let mut times = Vec::new();
        for id in 1..=2000 {
            let printer = idle_p1s(id);
            let started = Instant::now();
            let claimed = dispatcher.claim(&printer, &occupancy).await.unwrap();
            times.push(started.elapsed());
            assert!(claimed.is_some(), "printer {id} got a job");
        }
        times.sort();
        println!(
            "claim, {pending} pending jobs for {shape} (seeded in {seed_secs:.1} s): 2000 claims \
             p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            percentile(&times, 0.50),
            percentile(&times, 0.95),
            percentile(&times, 0.99),
            percentile(&times, 1.0)
        );
    }
}

fn main() {
    printyard_service::runtime::install_crypto_provider();
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        if only.is_empty() || only == "dispatch" {
            bench_dispatch().await;
        }
        if only.is_empty() || only == "claim" {
            bench_claim().await;
        }
        if only.is_empty() || only == "stagger" {
            bench_stagger().await;
        }
    });
}
