//! Rate limits per key and class, shared by every api replica (counted in memory and told to
//! the other replicas over NATS every `rate_limits.sync_ms`), with the reference's headers; and
//! the hot path without Postgres: a printer's status is read while the database refuses
//! connections.

use std::time::{SystemTime, UNIX_EPOCH};

use printyard_api::auth::Permission;
use printyard_tests::{TestEnv, http, spawn_api, spawn_api_with, spawn_archive};
use serde_json::{Value, json};

fn header(response: &reqwest::Response, name: &str) -> i64 {
    response.headers()[name].to_str().unwrap().parse().unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Waits until at least `margin` seconds remain in the current window of `window` seconds,
/// so that a burst of requests is counted in one window.
async fn away_from_window_edge(window: i64, margin: i64) {
    let left = window - now() % window;
    if left < margin {
        tokio::time::sleep(std::time::Duration::from_secs(left as u64 + 1)).await;
    }
}

#[tokio::test]
async fn every_authenticated_response_carries_the_rate_limit_headers() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let _archive = spawn_archive(&env).await;
    let key = env.api_key(&[Permission::Read]).await;
    away_from_window_edge(60, 5).await;

    let first = http()
        .get(api.api_url("/system/info"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-ratelimit-limit"), 100);
    assert_eq!(header(&first, "x-ratelimit-remaining"), 99);
    let reset = header(&first, "x-ratelimit-reset");
    assert_eq!(reset % 60, 0, "the window ends on a minute: {reset}");
    assert!(reset > now() && reset <= now() + 61, "{reset}");

    // A forbidden request is still an authenticated one: it counts and carries the headers.
    let forbidden = http()
        .get(api.api_url("/api-keys"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    assert_eq!(header(&forbidden, "x-ratelimit-remaining"), 98);
}

#[tokio::test]
async fn two_replicas_used_alternately_share_one_budget_and_the_101st_read_is_429() {
    let env = TestEnv::new().await;
    let mut config = env.api_config();
    // An hour-long window keeps the burst inside one window; the budget is still 100 reads.
    config.rate_limits.window_secs = 3600;
    let first = spawn_api_with(config.clone()).await;
    let second = spawn_api_with(config).await;
    let key = env.api_key(&[Permission::Read]).await;
    away_from_window_edge(3600, 30).await;
    let client = http();

    let mut allowed = 0;
    let mut last = None;
    for i in 0..101 {
        let api = if i % 2 == 0 { &first } else { &second };
        let response = client
            .get(api.api_url("/api-keys"))
            .header("X-API-Key", &key)
            .send()
            .await
            .unwrap();
        // 403: a read key may not list keys, but the request is authenticated and counted.
        match response.status().as_u16() {
            403 => allowed += 1,
            429 => {}
            other => panic!("request {i}: unexpected {other}"),
        }
        last = Some(response);
        // Replicas tell each other their counts every `sync_ms` (10 ms): within the documented
        // bound, requests a few sync intervals apart see one budget exactly.
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }

    assert_eq!(
        allowed, 100,
        "100 reads in total across both replicas, not 100 each"
    );
    let refused = last.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-ratelimit-limit"), 100);
    assert_eq!(header(&refused, "x-ratelimit-remaining"), 0);
    let retry_after = header(&refused, "retry-after");
    let reset = header(&refused, "x-ratelimit-reset");
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    assert!(
        (reset - now() - retry_after).abs() <= 2,
        "Retry-After points at the reset"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMITED");
}

#[tokio::test]
async fn each_class_has_its_own_budget_per_key() {
    let env = TestEnv::new().await;
    let mut config = env.api_config();
    config.rate_limits.window_secs = 3600;
    config.rate_limits.write = 2;
    let api = spawn_api_with(config).await;
    let admin = env.api_key(&[Permission::Admin]).await;
    let other = env.api_key(&[Permission::Admin]).await;
    away_from_window_edge(3600, 30).await;
    let client = http();
    let create = |key: &str| {
        client
            .post(api.api_url("/api-keys"))
            .header("X-API-Key", key.to_owned())
            .json(&json!({"name": "k", "permissions": ["read"]}))
    };

    assert_eq!(create(&admin).send().await.unwrap().status(), 201);
    assert_eq!(create(&admin).send().await.unwrap().status(), 201);
    let third = create(&admin).send().await.unwrap();
    assert_eq!(third.status(), 429);
    assert_eq!(header(&third, "x-ratelimit-limit"), 2);

    let read = client
        .get(api.api_url("/api-keys"))
        .header("X-API-Key", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "reads are a separate budget");
    assert_eq!(
        create(&other).send().await.unwrap().status(),
        201,
        "another key has its own"
    );
}

#[tokio::test]
async fn a_status_read_needs_no_database() {
    let env = TestEnv::new().await;
    let mut config = env.api_config();
    config.http.key_cache_secs = 1;
    let api = spawn_api_with(config).await;
    let key = env.api_key(&[Permission::Read, Permission::Write]).await;
    let client = printyard_tests::keyed_http(&key);
    let (status, _) = api
        .send_json(
            &client,
            reqwest::Method::POST,
            "/printers",
            Some(json!({
                "name": "Steady", "ip_address": "192.0.2.10",
                "access_code": "12345678", "serial_number": "01P00A000000001",
            })),
        )
        .await;
    assert_eq!(status, 201);
    let status_read = || async {
        let started = std::time::Instant::now();
        let response = client
            .get(api.api_url("/printers/1/status"))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), started.elapsed())
    };
    // Known to the replica (the registry bucket) and the key looked up once.
    printyard_tests::eventually(
        std::time::Duration::from_secs(10),
        "a status read",
        || async { (status_read().await.0 == 200).then_some(()) },
    )
    .await;

    // The database refuses this api's connections and drops the open ones.
    // From another database: one cannot bar connections to the database one is in.
    let (server, _) = env.database_url.rsplit_once('/').unwrap();
    let admin = sqlx::PgPool::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS false",
        env.database_name
    )))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&env.database_name)
    .execute(&admin)
    .await
    .unwrap();
    // Past the key cache's time-to-live too: the key looked up before still serves.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    for _ in 0..20 {
        let (status, took) = status_read().await;
        assert_eq!(status, 200, "the status read without Postgres");
        assert!(took < std::time::Duration::from_millis(500), "{took:?}");
    }
    // What needs the database says so.
    let listed = client.get(api.api_url("/printers")).send().await.unwrap();
    assert_eq!(listed.status(), 503);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS true",
        env.database_name
    )))
    .execute(&admin)
    .await
    .unwrap();
}
