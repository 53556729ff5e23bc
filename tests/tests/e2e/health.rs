//! `/api/v1/health` against the real services.

use std::time::Duration;

use printyard_api::auth::Permission;
use printyard_tests::{Farm, TestEnv, eventually, http, keyed_http, spawn_api, spawn_archive};
use serde_json::Value;

async fn get_health(url: &str) -> (u16, Value) {
    let response = http().get(url).send().await.expect("health answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("health is JSON"))
}

#[tokio::test]
async fn health_is_healthy_with_database_nats_and_every_service_up() {
    let env = TestEnv::new().await;
    let farm = Farm::start(&env).await;
    let url = farm.api.api_url("/health");

    let (status, body) = get_health(&url).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "healthy", "{body}");
    assert_eq!(body["database"], "connected");
    assert_eq!(body["nats"], "connected");
    assert_eq!(body["mqtt"], "connected");
    for service in [
        "api",
        "gateway",
        "archive",
        "scheduler",
        "stats",
        "notifier",
        "filament",
    ] {
        assert_eq!(
            body["services"][service]["status"], "up",
            "{service}: {body}"
        );
        assert_eq!(
            body["services"][service]["instances"], 1,
            "{service}: {body}"
        );
    }
}

#[tokio::test]
async fn health_counts_every_replica_of_a_service() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let _archive_a = spawn_archive(&env).await;
    let _archive_b = spawn_archive(&env).await;

    let (status, body) = get_health(&api.api_url("/health")).await;

    assert_eq!(status, 200);
    assert_eq!(body["services"]["archive"]["instances"], 2, "{body}");
    assert_eq!(body["services"]["api"]["instances"], 1, "{body}");
}

#[tokio::test]
async fn a_missing_gateway_degrades_health_and_shows_mqtt_disconnected() {
    let env = TestEnv::new().await;
    let farm = Farm::start(&env).await;
    farm.gateway.stop().await;

    let (status, body) = get_health(&farm.api.api_url("/health")).await;

    assert_eq!(status, 200, "degraded is still 200: {body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["mqtt"], "disconnected");
    assert_eq!(body["services"]["gateway"]["status"], "down");
    assert_eq!(body["services"]["gateway"]["instances"], 0);
}

#[tokio::test]
async fn killing_archive_degrades_health_and_system_info_answers_503_until_it_returns() {
    let env = TestEnv::new().await;
    let mut farm = Farm::start(&env).await;
    let client = keyed_http(&env.api_key(&[Permission::Read]).await);
    let info_url = farm.api.api_url("/system/info");
    assert_eq!(client.get(&info_url).send().await.unwrap().status(), 200);

    farm.archive.stop().await;

    let (status, body) = get_health(&farm.api.api_url("/health")).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["services"]["archive"]["status"], "down", "{body}");

    let started = std::time::Instant::now();
    let response = client.get(&info_url).send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status(), 503);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], "SERVICE_UNAVAILABLE", "{error}");
    assert!(
        error["detail"].as_str().unwrap().contains("archive"),
        "{error}"
    );
    // The contract is "within about 2 s, never a hang": a deadline, not a speed bar.
    assert!(waited < Duration::from_millis(2_500), "took {waited:?}");

    // Starting it again heals both without restarting api.
    farm.archive = spawn_archive(&env).await;
    let api_health = farm.api.api_url("/health");
    eventually(Duration::from_secs(10), "health to heal", || async {
        let (_, body) = get_health(&api_health).await;
        (body["status"] == "healthy").then_some(())
    })
    .await;
    assert_eq!(client.get(&info_url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn health_is_unhealthy_503_when_postgres_goes_away() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    env.drop_database().await;

    let (status, body) = get_health(&api.api_url("/health")).await;

    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["database"], "disconnected");
    assert_eq!(body["nats"], "connected");
}
