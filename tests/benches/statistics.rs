//! Statistics figures (`scripts/bench statistics`), with api and stats in this process on real
//! NATS and Postgres: `BENCH_PRINTS` (default 1,000,000) prints over two years from 500
//! printers of five sites, seeded into the stats schema as the consumer would have left it;
//! then `GET /statistics` for each filter shape, four clients at once (p50/p95/p99), and a
//! CSV export of a year by day and printer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use printyard_api::auth::Permission;
use printyard_tests::{TestEnv, keyed_http, spawn_api_with, spawn_stats};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// Seeds `count` prints (ended, priced with the default settings) and their summaries.
async fn seed(env: &TestEnv, count: i64) {
    let pool = env.pool().await;
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO stats.prints (archive_id, revision, counted, status, printer_id, site, \
           project_id, filament_type, model, created_at, duration, filament_g, filament_cost, \
           energy_kwh, energy_cost, priced_with) \
         SELECT i, 1, true, (ARRAY['success','success','success','failed','stopped'])[1 + r.c % 5], \
           1 + r.b % 500, 'site-' || ((1 + r.b % 500) % 5), \
           CASE WHEN r.d % 10 = 0 THEN 1 + r.d % 20 ELSE 0 END, \
           (ARRAY['PLA','PETG','ABS','TPU'])[1 + r.a % 4], 'P1S', \
           date '2026-12-01' - (i % 730) * interval '1 day' - (r.a % 86400) * interval '1 second', \
           600 + r.a % 20000, (r.b % 500) / 10.0, (r.b % 500) / 10.0 / 1000.0 * 20, \
           (600 + r.a % 20000) / 3600.0 * 0.12, (600 + r.a % 20000) / 3600.0 * 0.12 * 0.3, 0 \
         FROM generate_series(1, $1) AS i, \
           LATERAL (SELECT hashint4(i::int) & 2147483647 AS a, hashint4((i + 7)::int) & 2147483647 AS b, \
             hashint4((i + 13)::int) & 2147483647 AS c, hashint4((i + 29)::int) & 2147483647 AS d) r",
    )
    .bind(count)
    .execute(&pool)
    .await
    .expect("seeding prints");
    let sums = "count(*), count(*) FILTER (WHERE status = 'success'), \
        count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'stopped'), \
        sum(duration), sum(filament_g), sum(filament_cost), sum(energy_kwh), sum(energy_cost)";
    let columns = "prints, successful, failed, stopped, print_time, filament_g, filament_cost, \
        energy_kwh, energy_cost";
    let mut statements = Vec::new();
    for (grain, period) in [
        ("day", "(created_at AT TIME ZONE 'UTC')::date"),
        (
            "month",
            "date_trunc('month', created_at AT TIME ZONE 'UTC')::date",
        ),
        (
            "year",
            "date_trunc('year', created_at AT TIME ZONE 'UTC')::date",
        ),
    ] {
        statements.push(format!(
            "INSERT INTO stats.printer_{grain} (period, printer_id, site, {columns}) \
             SELECT {period}, printer_id, site, {sums} FROM stats.prints GROUP BY 1, 2, 3"
        ));
        statements.push(format!(
            "INSERT INTO stats.type_{grain} (period, site, filament_type, {columns}) \
             SELECT {period}, site, filament_type, {sums} FROM stats.prints GROUP BY 1, 2, 3"
        ));
    }
    statements.push(format!(
        "INSERT INTO stats.site_day (period, site, {columns}) \
         SELECT (created_at AT TIME ZONE 'UTC')::date, site, {sums} FROM stats.prints GROUP BY 1, 2"
    ));
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .expect("building a summary");
    }
    for table in [
        "prints",
        "printer_day",
        "printer_month",
        "printer_year",
        "type_day",
        "type_month",
        "type_year",
        "site_day",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE stats.{table}")))
            .execute(&pool)
            .await
            .unwrap();
    }
    let rows: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM stats.printer_day), (SELECT count(*) FROM stats.printer_month), \
           (SELECT count(*) FROM stats.type_day)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    println!(
        "seeded {count} prints in {:.1} s (summary rows: printer-day {}, printer-month {}, type-day {})",
        started.elapsed().as_secs_f64(),
        rows.0,
        rows.1,
        rows.2
    );
}

/// Runs `per_client` calls on each of `clients` clients at once: the sorted times, and how
/// many calls failed.
async fn measure<F, Fut>(clients: usize, per_client: usize, call: F) -> (Vec<Duration>, usize)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let calls: Vec<Fut> = (0..per_client).map(|_| call()).collect();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut errors = 0;
            for call in calls {
                let started = Instant::now();
                if !call.await {
                    errors += 1;
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

/// The filter `api` makes of a shape's query (dates as whole UTC days, both inclusive).
fn stats_filter(query: &str) -> printyard_contracts::stats::StatsFilter {
    use chrono::{DateTime, NaiveDate, Utc};
    let mut filter = printyard_contracts::stats::StatsFilter::default();
    let bound = |value: &str, end: bool| -> DateTime<Utc> {
        match value.parse::<DateTime<Utc>>() {
            Ok(instant) => instant,
            Err(_) => {
                let day: NaiveDate = value.parse().unwrap();
                let day = if end { day.succ_opt().unwrap() } else { day };
                day.and_hms_opt(0, 0, 0).unwrap().and_utc()
            }
        }
    };
    for pair in query
        .trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap();
        match key {
            "printer_id" => filter.printer_id = value.parse().ok(),
            "site" => filter.site = Some(value.to_owned()),
            "filament_type" => filter.filament_type = Some(value.to_owned()),
            "start_date" => filter.from = Some(bound(value, false)),
            "end_date" => {
                // An instant is inclusive in the api, as a day is: one microsecond past it.
                filter.until = Some(if value.contains('T') {
                    bound(value, true) + chrono::Duration::microseconds(1)
                } else {
                    bound(value, true)
                })
            }
            _ => {}
        }
    }
    filter
}

fn main() {
    printyard_service::runtime::install_crypto_provider();
    let count: i64 = std::env::var("BENCH_PRINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            let env = TestEnv::new().await;
            let stats = spawn_stats(&env).await;
            let mut config = env.api_config();
            config.rate_limits.enabled = false;
            config.database.max_connections = 8;
            let api = spawn_api_with(config).await;
            let key = env.api_key(&[Permission::Read]).await;
            seed(&env, count).await;
            // BENCH_EXPLAIN=<ms>: the plans of statements slower than that go to the Postgres
            // log (auto_explain), for a stats service started afresh.
            let stats = match std::env::var("BENCH_EXPLAIN") {
                Ok(ms) => {
                    stats.stop().await;
                    let pool = sqlx::PgPool::connect(&env.database_url).await.unwrap();
                    for setting in [
                        "session_preload_libraries = 'auto_explain'".to_owned(),
                        format!("auto_explain.log_min_duration = '{ms}ms'"),
                        "auto_explain.log_analyze = on".to_owned(),
                        "auto_explain.log_buffers = on".to_owned(),
                    ] {
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "ALTER DATABASE {} SET {setting}",
                            env.database_name
                        )))
                        .execute(&pool)
                        .await
                        .unwrap();
                    }
                    spawn_stats(&env).await
                }
                Err(_) => stats,
            };
            let _stats = stats;
            let client = keyed_http(&key);
            let base = api.api_url("/statistics");
            let shapes = [
                ("no filter", String::new()),
                ("one printer", "?printer_id=123".to_owned()),
                (
                    "one month",
                    "?start_date=2026-06-01&end_date=2026-06-30".to_owned(),
                ),
                ("one site", "?site=site-3".to_owned()),
                (
                    "the whole range",
                    "?start_date=2024-12-01&end_date=2026-12-01".to_owned(),
                ),
                (
                    "one printer, one month, instants",
                    "?printer_id=42&start_date=2026-06-01T06:00:00Z&end_date=2026-06-30T18:00:00Z"
                        .to_owned(),
                ),
                (
                    "one filament type, one year",
                    "?filament_type=PETG&start_date=2025-12-01&end_date=2026-11-30".to_owned(),
                ),
            ];
            let db = sqlx::PgPool::connect(&env.database_url).await.unwrap();
            let rpc = printyard_service::rpc::RpcClient::new(
                env.nats.client().await,
                Duration::from_secs(10),
            );
            println!(
                "GET /statistics per filter shape: 200 requests by 4 clients at once and 50 by one \
                 client (answers kept until the facts change: the first is summed, the rest \
                 reused); 50 uncached answers of the stats service alone (the facts changed \
                 before each, over NATS without HTTP and api)"
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
                let get = |client: reqwest::Client, url: Arc<String>| async move {
                    let response = client.get(url.as_str()).send().await.unwrap();
                    let ok = response.status() == 200;
                    response.bytes().await.unwrap();
                    ok
                };
                let (four, errors) = measure(4, 50, || get(client.clone(), url.clone())).await;
                let (one, _) = measure(1, 50, || get(client.clone(), url.clone())).await;
                // Uncached: the facts' generation moves before each call (as when a print
                // ends), so the stats service sums again; the bump is not timed.
                let filter = stats_filter(query.as_str());
                let mut direct = Vec::new();
                for _ in 0..50 {
                    sqlx::query("UPDATE stats.generation SET value = value + 1")
                        .execute(&db)
                        .await
                        .unwrap();
                    let started = Instant::now();
                    let answered = rpc
                        .call(
                            printyard_contracts::stats::STATISTICS,
                            &printyard_contracts::stats::StatsRequest {
                                filter: filter.clone(),
                                unless: None,
                            },
                        )
                        .await
                        .is_ok();
                    direct.push(started.elapsed());
                    assert!(answered, "{name}: the stats service answers");
                }
                direct.sort();
                println!(
                    "  {name:34} prints {:>8}  4 clients p50 {:6.1} p95 {:6.1} p99 {:6.1} ms{}  \
                     1 client p50 {:5.1} p95 {:5.1} ms  uncached p50 {:5.1} p95 {:5.1} ms",
                    first["total_prints"],
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
                    percentile(&direct, 0.50),
                    percentile(&direct, 0.95),
                );
            }
            let started = Instant::now();
            let csv = client
                .get(api.api_url(
                    "/statistics/export?format=csv&start_date=2025-12-01&end_date=2026-11-30",
                ))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            println!(
                "export of a year by day and printer: {} rows, {:.1} KiB in {:.2} s",
                csv.lines().count() - 1,
                csv.len() as f64 / 1024.0,
                started.elapsed().as_secs_f64()
            );
        });
}
