//! Inventory figures (`scripts/bench filament`), with api and filament in this process on real
//! NATS and Postgres: `BENCH_SPOOLS` (default 10,000) spools of five materials and six colours,
//! four in each of the first 2,000 printers' trays and the rest on shelves, and `BENCH_PRINTS`
//! (default 1,000,000) archived prints' usage over two years, seeded into the filament schema as
//! the consumer would have left it; then each inventory query through the API, four clients at
//! once (p50/p95/p99). The bar: p95 under 20 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use printyard_api::auth::Permission;
use printyard_tests::bench::{env_number, percentile};
use printyard_tests::{TestEnv, keyed_http, spawn_api_with, spawn_filament};

async fn seed(env: &TestEnv, spools: i64, prints: i64) {
    let pool = env.pool().await;
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO filament.spools (material, color, brand, nominal_g, remaining_g, price, tag, \
           printer_id, tray, measured, first_used, last_used) \
         SELECT (ARRAY['PLA','PETG','ABS','TPU','ASA'])[1 + i % 5], \
           (ARRAY['000000FF','FFFFFFFF','FF0000FF','00AE42FF','1E90FFFF','808080FF'])[1 + (i / 5) % 6], \
           CASE WHEN i % 2 = 0 THEN 'Bambu Lab' ELSE 'Polymaker' END, 1000, \
           (hashint4(i::int) & 2147483647) % 1000, 20, \
           CASE WHEN i % 2 = 0 THEN upper(md5(i::text)) END, \
           CASE WHEN i <= 8000 THEN 1 + (i - 1) / 4 END, CASE WHEN i <= 8000 THEN (i - 1) % 4 END, \
           i % 2 = 0 AND i <= 8000, now() - interval '400 days', now() \
         FROM generate_series(1, $1) AS i",
    )
    .bind(spools)
    .execute(&pool)
    .await
    .expect("seeding spools");
    sqlx::query(
        "INSERT INTO filament.usage (archive_id, slot, material, color, grams, tray, spool_id, \
           deducted, at) \
         SELECT i, 1, s.material, s.color, 5 + (h % 200), s.tray, s.id, 0, \
           now() - (i % 730) * interval '1 day' - (h % 86400) * interval '1 second' \
         FROM generate_series(1, $1) AS i, \
           LATERAL (SELECT hashint4(i::int) & 2147483647 AS h) r, \
           LATERAL (SELECT * FROM filament.spools WHERE id = 1 + r.h % $2) s",
    )
    .bind(prints)
    .bind(spools)
    .execute(&pool)
    .await
    .expect("seeding usage");
    for table in ["spools", "usage"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "VACUUM ANALYZE filament.{table}"
        )))
        .execute(&pool)
        .await
        .unwrap();
    }
    println!(
        "seeded {spools} spools and {prints} prints' usage in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Runs `per_client` GETs of `path` on each of `clients` clients at once: the sorted times,
/// and how many failed.
async fn measure(
    client: &reqwest::Client,
    url: Arc<String>,
    clients: usize,
    per_client: usize,
) -> (Vec<Duration>, usize) {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut errors = 0;
            for _ in 0..per_client {
                let started = Instant::now();
                match client.get(url.as_str()).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    _ => errors += 1,
                }
                times.push(started.elapsed());
            }
            (times, errors)
        }));
    }
    let (mut times, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (t, e) = task.await.unwrap();
        times.extend(t);
        errors += e;
    }
    times.sort();
    (times, errors)
}

fn main() {
    printyard_service::runtime::install_crypto_provider();
    let spools = env_number("BENCH_SPOOLS", 10_000);
    let prints = env_number("BENCH_PRINTS", 1_000_000);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            let env = TestEnv::new().await;
            let filament = spawn_filament(&env).await;
            let mut config = env.api_config();
            config.rate_limits.enabled = false;
            let api = spawn_api_with(config).await;
            let key = env.api_key(&[Permission::Read]).await;
            seed(&env, spools, prints).await;
            let client = keyed_http(&key);
            let shapes = [
                ("first page", "/spools?limit=100".to_owned()),
                (
                    "last page",
                    format!("/spools?limit=100&offset={}", spools - 100),
                ),
                ("one material", "/spools?material=PETG&limit=100".to_owned()),
                ("low", "/spools?low=true&limit=100".to_owned()),
                ("one printer", "/spools?printer_id=1234".to_owned()),
                ("loaded", "/spools?loaded=true&limit=100".to_owned()),
                ("loaded, 1000", "/spools?loaded=true&limit=1000".to_owned()),
                ("one spool", "/spools/4321".to_owned()),
                ("summary", "/spools/summary".to_owned()),
                (
                    "usage of a spool",
                    "/spools/usage?spool_id=4321&limit=100".to_owned(),
                ),
                (
                    "usage of a print",
                    "/spools/usage?archive_id=654321".to_owned(),
                ),
            ];
            println!(
                "{:<18} {:>8} {:>8} {:>8}  (ms, 4 clients × 50)",
                "query", "p50", "p95", "p99"
            );
            for (name, path) in shapes {
                let url = Arc::new(api.api_url(&path));
                // Warm: the first call plans the statement and loads the pages.
                let _ = measure(&client, url.clone(), 1, 5).await;
                let (times, errors) = measure(&client, url, 4, 50).await;
                println!(
                    "{name:<18} {:>8.2} {:>8.2} {:>8.2}{}",
                    percentile(&times, 0.50),
                    percentile(&times, 0.95),
                    percentile(&times, 0.99),
                    if errors > 0 {
                        format!("  {errors} errors")
                    } else {
                        String::new()
                    }
                );
            }
            api.stop().await;
            filament.stop().await;
        });
}
