//! Rate limits per key and class, shared by every api replica, with the reference's headers.

use std::time::{SystemTime, UNIX_EPOCH};

use printyard_api::access::Permission;
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
