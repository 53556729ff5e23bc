//! Archive figures (`scripts/bench archive`), with api and archive in this process on real
//! NATS, Postgres and the filesystem store:
//!
//! 1. `GET /archives` with search and filters over `BENCH_ARCHIVES` archives (default
//!    1,000,000, seeded straight into the schema): p50/p95/p99 per query shape.
//! 2. CSV export of 100,000 rows: time, and how much the process's resident memory grows
//!    while the response streams (sampled every 10 ms).
//! 3. A `BENCH_FILE_MB` (default 200) 3MF uploaded and downloaded: throughput and resident
//!    memory growth for each.
//!
//! `BENCH_ONLY=list|export|files` runs one part.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use printyard_api::auth::Permission;
use printyard_tests::{TestEnv, keyed_http, spawn_api_with, spawn_archive};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples resident memory every 10 ms until dropped; `peak_growth_mib` is the most it grew
/// over the baseline taken at the start.
struct MemoryWatch {
    baseline: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl MemoryWatch {
    fn start() -> Self {
        let baseline = rss_kib();
        let peak = Arc::new(AtomicU64::new(baseline));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            baseline,
            peak,
            stop,
        }
    }

    fn peak_growth_mib(&self) -> f64 {
        self.peak
            .load(Ordering::Relaxed)
            .saturating_sub(self.baseline) as f64
            / 1024.0
    }
}

impl Drop for MemoryWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// Seeds `count` archives: 200 printers, five statuses, two years of dates, names from a word
/// list (so searches match a realistic share), some notes and tags, each drawn independently
/// (by hash, so that no two columns are accidentally correlated).
async fn seed(env: &TestEnv, count: i64) {
    let pool = env.pool().await;
    let started = Instant::now();
    // Seeded as history: the change-announcing triggers stay quiet (a million `archive_updated`
    // events are not what this benchmark measures).
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO archive.archives (name, filename, printer_id, printer_name, status, \
           created_at, started_at, completed_at, duration, filament_used, filament_type, notes, tags) \
         SELECT w.word || ' ' || (r.a % 997), lower(w.word) || '-' || i || '.gcode.3mf', \
           1 + r.b % 200, 'Printer ' || (1 + r.b % 200), \
           (ARRAY['success','success','success','failed','stopped'])[1 + r.c % 5], \
           now() - (i % 730) * interval '1 day' - (r.a % 86400) * interval '1 second', \
           now() - (i % 730) * interval '1 day', now() - (i % 730) * interval '1 day', \
           600 + r.a % 20000, (r.b % 500) / 10.0, (ARRAY['PLA','PETG','ABS','TPU'])[1 + r.c % 4], \
           CASE WHEN r.d % 50 = 0 THEN 'reprint for customer ' || (r.a % 311) END, \
           CASE WHEN r.d % 20 = 1 THEN ARRAY['functional'] WHEN r.d % 33 = 2 THEN ARRAY['gift'] ELSE '{}' END \
         FROM generate_series(1, $1) AS i, \
           LATERAL (SELECT hashint4(i::int) & 2147483647 AS a, hashint4((i + 7)::int) & 2147483647 AS b, \
             hashint4((i + 13)::int) & 2147483647 AS c, hashint4((i + 29)::int) & 2147483647 AS d) r, \
           LATERAL (SELECT (ARRAY['Benchy','Gear','Bracket','Vase','Clip','Hinge','Knob', \
             'Spacer','Mount','Cover','Lid','Box','Hook','Stand','Planter','Enclosure', \
             'Spool holder','Cable clip','Phone stand','Calibration cube'])[1 + (hashint4((i + 3)::int) & 2147483647) % 20] AS word) w",
    )
    .bind(count)
    .execute(&mut *tx)
    .await
    .expect("seeding archives");
    tx.commit().await.unwrap();
    // Steady state, as autovacuum keeps a live table: statistics and the visibility map.
    sqlx::query("VACUUM ANALYZE archive.archives")
        .execute(&pool)
        .await
        .unwrap();
    println!(
        "seeded {count} archives in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

async fn bench_list(base: &str, client: &reqwest::Client) {
    let shapes = [
        ("no filter (newest 50)", ""),
        ("search=benchy", "?search=benchy"),
        ("search=gear&status=failed", "?search=gear&status=failed"),
        (
            "search=customer&printer_id=50",
            "?search=customer&printer_id=50",
        ),
        (
            "printer_id=7&start_date..end_date (1 month)",
            "?printer_id=7&start_date=2026-01-01&end_date=2026-01-31",
        ),
        (
            "search=spool holder&status=success&start_date (1 year)",
            "?search=spool%20holder&status=success&start_date=2026-01-01",
        ),
        ("status=stopped&offset=5000", "?status=stopped&offset=5000"),
    ];
    for concurrency in [1, 4] {
        println!("GET /archives, 200 requests per shape, {concurrency} at a time:");
        list_shapes(base, client, &shapes, concurrency).await;
    }
}

async fn list_shapes(
    base: &str,
    client: &reqwest::Client,
    shapes: &[(&str, &str)],
    concurrency: usize,
) {
    for (label, query) in shapes {
        let url = format!("{base}/archives{query}");
        let mut times: Vec<Duration> = futures::stream::iter(0..200)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let started = Instant::now();
                    let response = client.get(&url).send().await.unwrap();
                    assert_eq!(response.status().as_u16(), 200, "{url}");
                    let _ = response.bytes().await.unwrap();
                    started.elapsed()
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        times.sort();
        let total: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        println!(
            "  {label:<58} total {:>7}  p50 {:>6.1} ms  p95 {:>6.1} ms  p99 {:>6.1} ms",
            total["total"],
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            percentile(&times, 0.99)
        );
    }
}

async fn bench_export(base: &str, client: &reqwest::Client) {
    // One status in five over the last of the two years: about 100,000 of a million.
    let since = (chrono::Utc::now() - chrono::Duration::days(364)).format("%Y-%m-%d");
    let url = format!("{base}/archives/export?format=csv&status=failed&start_date={since}");
    let watch = MemoryWatch::start();
    let started = Instant::now();
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut stream = response.bytes_stream();
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    println!(
        "CSV export: {} rows, {:.1} MiB in {:.2} s; resident memory grew at most {:.1} MiB",
        lines.saturating_sub(1),
        bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64(),
        watch.peak_growth_mib()
    );
}

/// A valid sliced 3MF of about `mb` MiB: the fixture's metadata plus a large stored G-code.
fn big_3mf(mb: usize) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file.reopen().unwrap()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut fixture =
        zip::ZipArchive::new(std::io::Cursor::new(printyard_printer_sim::farm::DEMO_3MF)).unwrap();
    for i in 0..fixture.len() {
        let entry = fixture.by_index_raw(i).unwrap();
        if entry.name().map(|n| n.ends_with(".gcode")).unwrap_or(false) {
            continue;
        }
        zip.raw_copy_file(entry).unwrap();
    }
    zip.start_file("Metadata/plate_1.gcode", stored.large_file(true))
        .unwrap();
    let mut block = vec![0u8; 1024 * 1024];
    let mut state = 0x2545F4914F6CDD1Du64;
    for _ in 0..mb {
        for b in block.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = b'0' + (state % 10) as u8;
        }
        zip.write_all(&block).unwrap();
    }
    zip.finish().unwrap().flush().unwrap();
    file
}

async fn bench_files(base: &str, client: &reqwest::Client) {
    let mb: usize = std::env::var("BENCH_FILE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let file = big_3mf(mb);
    let size = std::fs::metadata(file.path()).unwrap().len();

    let watch = MemoryWatch::start();
    let started = Instant::now();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::open(file.path()).await.unwrap(),
    ));
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::stream_with_length(body, size).file_name("big.gcode.3mf"),
    );
    let response = client
        .post(format!("{base}/archives"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let archive: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{archive}");
    let upload = started.elapsed().as_secs_f64();
    let upload_growth = watch.peak_growth_mib();
    drop(watch);

    let watch = MemoryWatch::start();
    let started = Instant::now();
    let response = client
        .get(format!("{base}/archives/{}/3mf", archive["id"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut stream = response.bytes_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        received += chunk.unwrap().len() as u64;
    }
    assert_eq!(received, size);
    let download = started.elapsed().as_secs_f64();
    let size_mib = size as f64 / 1048576.0;
    println!(
        "{size_mib:.0} MiB 3MF: upload {upload:.1} s ({:.0} MiB/s), resident memory grew at most {upload_growth:.1} MiB; \
         download {download:.1} s ({:.0} MiB/s), grew at most {:.1} MiB",
        size_mib / upload,
        size_mib / download,
        watch.peak_growth_mib()
    );
}

fn main() {
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    }
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let only = std::env::var("BENCH_ONLY").ok();
        let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
        let env = TestEnv::new().await;
        let _archive = spawn_archive(&env).await;
        let mut config = env.api_config();
        config.rate_limits.enabled = false;
        let api = spawn_api_with(config).await;
        let key = env.api_key(&[Permission::Read, Permission::Write]).await;
        let client = keyed_http(&key);
        let base = api.api_url("");
        if runs("list") || runs("export") {
            let count: i64 = std::env::var("BENCH_ARCHIVES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1_000_000);
            seed(&env, count).await;
            if runs("list") {
                bench_list(&base, &client).await;
            }
            if runs("export") {
                bench_export(&base, &client).await;
            }
        }
        if runs("files") {
            bench_files(&base, &client).await;
        }
    });
}
