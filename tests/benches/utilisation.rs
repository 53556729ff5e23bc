//! Utilisation figures (`scripts/bench utilisation`), with api and stats in this process on
//! real NATS and Postgres: 500 printers of five sites over two years, eight activity facts a day
//! each (`BENCH_FACTS_PER_DAY`; 2.9 million facts), and two plate clears and a queue wait a day,
//! seeded into the stats schema as the consumer would have left it (every day starts with a
//! fact at midnight, so summing by day is a plain GROUP BY); then `GET /statistics/utilisation`
//! for each filter shape, four clients at once and one (p50/p95/p99). The answers are not
//! cached: each is summed afresh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use printyard_api::auth::Permission;
use printyard_tests::{TestEnv, keyed_http, spawn_api_with, spawn_stats};

const PRINTERS: i64 = 500;
const DAYS: i64 = 730;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

async fn exec(pool: &sqlx::PgPool, sql: String) {
    sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
}

/// Seeds the facts, the waits and their summaries.
async fn seed(env: &TestEnv, per_day: i64) {
    let pool = env.pool().await;
    let started = Instant::now();
    let step = 86_400 / per_day;
    exec(
        &pool,
        format!(
            "INSERT INTO stats.activity (printer_id, at, activity, site, until) \
             SELECT p, t, a, 'site-' || (p % 5), lead(t) OVER (PARTITION BY p ORDER BY t) FROM ( \
               SELECT p, timestamptz '2024-12-02 00:00:00+00' + d * interval '1 day' \
                 + k * interval '{step} seconds' \
                 + CASE WHEN k > 0 THEN (hashint4((p * 1000003 + d * 31 + k)::int) & 1023) \
                   * interval '1 second' ELSE interval '0' END AS t, \
                 (ARRAY['printing','printing','printing','paused','awaiting_clear','idle_queued', \
                   'idle','error','offline','maintenance'])[1 + (hashint4((p * 7 + d * 13 + k)::int) \
                   & 2147483647) % 10] AS a \
               FROM generate_series(1, {PRINTERS}) p, generate_series(0, {DAYS} - 1) d, \
                 generate_series(0, {per_day} - 1) k) f"
        ),
    )
    .await;
    let columns =
        "printing, paused, awaiting_clear, idle_queued, idle, error, offline, maintenance";
    let pivot: Vec<String> = columns
        .split(", ")
        .map(|c| {
            format!(
                "coalesce(sum(extract(epoch FROM until - at)) FILTER (WHERE activity = '{c}'), 0)"
            )
        })
        .collect();
    exec(
        &pool,
        format!(
            "INSERT INTO stats.activity_day (period, printer_id, site, {columns}) \
             SELECT (at AT TIME ZONE 'UTC')::date, printer_id, site, {} FROM stats.activity \
             WHERE until IS NOT NULL GROUP BY 1, 2, 3",
            pivot.join(", ")
        ),
    )
    .await;
    let sums: Vec<String> = columns.split(", ").map(|c| format!("sum({c})")).collect();
    let sums = sums.join(", ");
    for grain in ["month", "year"] {
        exec(
            &pool,
            format!(
                "INSERT INTO stats.activity_{grain} (period, printer_id, site, {columns}) \
                 SELECT date_trunc('{grain}', period)::date, printer_id, site, {sums} \
                 FROM stats.activity_day GROUP BY 1, 2, 3"
            ),
        )
        .await;
    }
    exec(
        &pool,
        format!(
            "INSERT INTO stats.activity_site_day (period, site, {columns}) \
             SELECT period, site, {sums} FROM stats.activity_day GROUP BY 1, 2"
        ),
    )
    .await;
    exec(
        &pool,
        format!(
            "INSERT INTO stats.waits (kind, key, printer_id, site, at, seconds) \
             SELECT (ARRAY['plate_clear','plate_clear','queue_wait'])[1 + n], p || '.' || d || '.' || n, \
               p, 'site-' || (p % 5), timestamptz '2024-12-02 08:00:00+00' + d * interval '1 day' \
                 + n * interval '4 hours', \
               30 + (hashint4((p * 101 + d * 7 + n)::int) & 2147483647) % 7200 \
             FROM generate_series(1, {PRINTERS}) p, generate_series(0, {DAYS} - 1) d, \
               generate_series(0, 2) n"
        ),
    )
    .await;
    let bucket = "CASE WHEN seconds < 1.1 THEN 0 ELSE floor(ln(seconds) / ln(1.1))::int END";
    for grain in ["day", "month", "year"] {
        exec(
            &pool,
            format!(
                "INSERT INTO stats.waits_{grain} (period, printer_id, site, kind, bucket, count) \
                 SELECT date_trunc('{grain}', at AT TIME ZONE 'UTC')::date, printer_id, site, kind, \
                   {bucket}, count(*) FROM stats.waits GROUP BY 1, 2, 3, 4, 5"
            ),
        )
        .await;
    }
    for grain in ["day", "month", "year"] {
        exec(
            &pool,
            format!(
                "INSERT INTO stats.waits_site_{grain} (period, site, kind, bucket, count) \
                 SELECT period, site, kind, bucket, sum(count) FROM stats.waits_{grain} \
                 GROUP BY 1, 2, 3, 4"
            ),
        )
        .await;
    }
    // Kept in time order, as a farm's facts arrive: a day's rows lie together.
    for (table, index) in [
        ("activity_day", "activity_day_pkey"),
        ("activity_site_day", "activity_site_day_pkey"),
        ("waits_day", "waits_day_pkey"),
        ("waits_site_day", "waits_site_day_pkey"),
    ] {
        exec(&pool, format!("CLUSTER stats.{table} USING {index}")).await;
    }
    for table in [
        "activity",
        "activity_day",
        "activity_month",
        "activity_year",
        "activity_site_day",
        "waits",
        "waits_day",
        "waits_month",
        "waits_year",
        "waits_site_day",
        "waits_site_month",
        "waits_site_year",
    ] {
        exec(&pool, format!("VACUUM ANALYZE stats.{table}")).await;
    }
    let rows: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM stats.activity), (SELECT count(*) FROM stats.activity_day), \
           (SELECT count(*) FROM stats.waits)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    println!(
        "seeded {} facts of {PRINTERS} printers over {DAYS} days in {:.1} s (printer-day rows {}, \
         waits {})",
        rows.0,
        started.elapsed().as_secs_f64(),
        rows.1,
        rows.2
    );
}

/// Runs `per_client` calls on each of `clients` clients at once: the sorted times, and how
/// many calls failed.
async fn measure(
    clients: usize,
    per_client: usize,
    client: &reqwest::Client,
    url: Arc<String>,
) -> (Vec<Duration>, usize) {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut errors = 0;
            for _ in 0..per_client {
                let started = Instant::now();
                let response = client.get(url.as_str()).send().await.unwrap();
                if response.status() != 200 {
                    errors += 1;
                }
                response.bytes().await.unwrap();
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
    let per_day: i64 = std::env::var("BENCH_FACTS_PER_DAY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            let env = TestEnv::new().await;
            let stats = spawn_stats(&env).await;
            let mut config = env.api_config();
            config.rate_limits.enabled = false;
            let api = spawn_api_with(config).await;
            let key = env.api_key(&[Permission::Read]).await;
            seed(&env, per_day).await;
            // BENCH_EXPLAIN=<ms>: the plans of statements slower than that go to the Postgres
            // log (auto_explain), for the stats service's new connections.
            if let Ok(ms) = std::env::var("BENCH_EXPLAIN") {
                let pool = env.pool().await;
                for setting in [
                    "session_preload_libraries = 'auto_explain'".to_owned(),
                    format!("auto_explain.log_min_duration = '{ms}ms'"),
                    "auto_explain.log_analyze = on".to_owned(),
                ] {
                    exec(
                        &pool,
                        format!("ALTER DATABASE {} SET {setting}", env.database_name),
                    )
                    .await;
                }
            }
            // Started afresh on the seeded schema (and with the explain settings).
            stats.stop().await;
            let _stats = spawn_stats(&env).await;
            let client = keyed_http(&key);
            let base = api.api_url("/statistics/utilisation");
            let shapes = [
                (
                    "the farm, two years",
                    "?start_date=2024-12-02&end_date=2026-11-30",
                ),
                (
                    "the farm, two years, instants",
                    "?start_date=2024-12-02T06:00:00Z&end_date=2026-11-30T18:00:00Z",
                ),
                (
                    "one site, one year",
                    "?site=site-3&start_date=2025-12-01&end_date=2026-11-30",
                ),
                (
                    "one printer, two years",
                    "?printer_id=123&start_date=2024-12-02&end_date=2026-11-30",
                ),
                (
                    "the farm, one month",
                    "?start_date=2026-06-01&end_date=2026-06-30",
                ),
                ("the last 30 days (default)", ""),
            ];
            println!(
                "GET /statistics/utilisation per filter shape ({PRINTERS} printers, {per_day} \
                 facts a day each): 100 requests by 4 clients at once, 50 by one client; every \
                 answer summed afresh"
            );
            for (name, query) in shapes {
                let url = Arc::new(format!("{base}{query}"));
                let first: serde_json::Value = client
                    .get(url.as_str())
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap_or_default();
                let (four, errors) = measure(4, 25, &client, url.clone()).await;
                let (one, _) = measure(1, 50, &client, url.clone()).await;
                println!(
                    "  {name:32} printers {:>4} printing {:>9.0} h utilisation {:>5}%  \
                     4 clients p50 {:6.1} p95 {:6.1} p99 {:6.1} ms{}  1 client p50 {:5.1} p95 {:5.1} ms",
                    first["farm"]["printers"],
                    first["farm"]["hours"]["printing"].as_f64().unwrap_or_default(),
                    first["farm"]["utilisation"],
                    percentile(&four, 0.50),
                    percentile(&four, 0.95),
                    percentile(&four, 0.99),
                    if errors > 0 {
                        format!(" ({errors} errors)")
                    } else {
                        String::new()
                    },
                    percentile(&one, 0.50),
                    percentile(&one, 0.95),
                );
            }
        });
}
