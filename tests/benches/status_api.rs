//! `GET /printers/{id}/status` on one api process under `wrk` (Debian's `wrk`, installed by
//! `scripts/bench`): requests per second and latency percentiles.
//!
//! `scripts/bench status_api`. The api is the release binary as deployed (`scripts/bench`
//! builds it): its own process, allocator and logging at its default level. The status comes
//! from the api's watched copy of `printer_status` and the printer's existence from its
//! watched copy of `printer_registry`; the key from its key cache. Measured with rate limits
//! off, on (with a budget too large to hit: the shared limiter counts every request), and
//! with the key cache off (`http.key_cache_secs = 0`: a key lookup in Postgres per request).
//! `BENCH_WRK="-t2 -c64 -d15s"` changes wrk's load.

use std::time::Duration;

use printyard_api::auth::Permission;
use printyard_contracts::farm::StatusRecord;
use printyard_contracts::printer::{PrinterState, PrinterStatus, Temperatures};
use printyard_tests::bench::spawn_api_binary;
use printyard_tests::nats_server::TempDir;
use printyard_tests::{TestEnv, keyed_http};
use serde_json::{Value, json};

async fn add_printer(base: &str, key: &str, serial: &str) -> i64 {
    let created: Value = keyed_http(key)
        .post(format!("{base}/printers"))
        .json(
            &json!({"name": "Bench", "ip_address": "10.9.8.7", "access_code": "12345678",
                      "serial_number": serial}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["id"].as_i64().expect("the printer was created")
}

async fn run_wrk(label: &str, url: &str, key: &str) {
    let load = std::env::var("BENCH_WRK").unwrap_or_else(|_| "-t2 -c32 -d15s".into());
    wrk("GET /printers/{id}/status", label, url, key, &load).await
}

async fn wrk(what: &str, label: &str, url: &str, key: &str, load: &str) {
    printyard_tests::bench::wrk(what, label, url, key, load, None).await;
}

#[tokio::main]
async fn main() {
    let env = TestEnv::new().await;
    let logs = TempDir::new("status-api-bench");
    let log = |name: &str| logs.0.join(format!("{name}.log"));
    const OFF: (&str, &str) = ("PRINTYARD__RATE_LIMITS__ENABLED", "false");
    const UNHIT_READS: (&str, &str) = ("PRINTYARD__RATE_LIMITS__READ", "1000000000");
    const UNHIT_WRITES: (&str, &str) = ("PRINTYARD__RATE_LIMITS__WRITE", "1000000000");
    const UNCACHED: (&str, &str) = ("PRINTYARD__HTTP__KEY_CACHE_SECS", "0");
    let key = env.api_key(&[Permission::Admin]).await;

    let (api, base) = spawn_api_binary(&env, &[OFF], &log("off")).await;
    let id = add_printer(&base, &key, "01P00A000000001").await;
    // A printing printer's status, as a gateway writes it.
    let js = async_nats::jetstream::new(env.nats.client().await);
    let bucket = js.get_key_value("printer_status").await.unwrap();
    let record = StatusRecord {
        printer_id: id,
        serial: "01P00A000000001".into(),
        connected: true,
        last_seen: Some(chrono::Utc::now()),
        connection_error: None,
        model: Some("P1S".into()),
        tls_pin: None,
        firmware: None,
        status: Some(PrinterStatus {
            state: PrinterState::Printing,
            progress: 42,
            remaining_time: 3_600,
            current_layer: 120,
            total_layers: 267,
            temperatures: Temperatures {
                nozzle: 219.5,
                bed: 60.0,
                chamber: Some(35.0),
                nozzle_target: 220.0,
                bed_target: 60.0,
            },
            hms_status: printyard_contracts::printer::HmsStatus::Ok,
            hms: vec![],
            job_name: Some("Benchy".into()),
            gcode_file: Some("benchy.gcode.3mf".into()),
            task_id: None,
            print_error: None,
            filaments: vec![],
            has_ams: false,
        }),
    };
    bucket
        .put(
            format!("default.{id}"),
            serde_json::to_vec(&record).unwrap().into(),
        )
        .await
        .unwrap();
    let url = format!("{base}/printers/{id}/status");
    let client = keyed_http(&key);
    for _ in 0..50 {
        let s: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        if s["state"] == "printing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run_wrk("rate limits off", &url, &key).await;
    drop(api);

    for (label, settings) in [
        ("rate limits on ", &[UNHIT_READS][..]),
        ("limits off, key cache off", &[OFF, UNCACHED][..]),
    ] {
        let (api, base) = spawn_api_binary(&env, settings, &log(label.trim())).await;
        let url = format!("{base}/printers/{id}/status");
        run_wrk(label, &url, &key).await;
        drop(api);
    }

    // The list of a 1,000-printer farm, each printer with a status.
    let printers: usize = std::env::var("BENCH_LIST_PRINTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let (api, base) = spawn_api_binary(&env, &[UNHIT_READS, UNHIT_WRITES], &log("list")).await;
    for n in 2..=printers {
        let serial = format!("01P00A{n:09}");
        let id = add_printer(&base, &key, &serial).await;
        let mut status = record.clone();
        status.printer_id = id;
        status.serial = serial;
        bucket
            .put(
                format!("default.{id}"),
                serde_json::to_vec(&status).unwrap().into(),
            )
            .await
            .unwrap();
    }
    let url = format!("{base}/printers");
    let listed: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(printers));
    let load = std::env::var("BENCH_LIST_WRK").unwrap_or_else(|_| "-t1 -c4 -d10s".into());
    let what = format!("GET /printers ({printers} printers)");
    wrk(&what, "rate limits on ", &url, &key, &load).await;
    drop(api);
}
