//! `/api/v1/system/info`, with the archive count asked of the archive service over NATS.

use printyard_api::auth::Permission;
use printyard_tests::{Farm, TestEnv, keyed_http};
use serde_json::Value;

#[tokio::test]
async fn system_info_reports_version_uptime_archive_count_and_database_size() {
    let env = TestEnv::new().await;
    let farm = Farm::start(&env).await;
    let pool = env.pool().await;
    for name in ["Benchy", "Cube", "Gear"] {
        sqlx::query(
            "INSERT INTO archive.archives (name, filename, status) VALUES ($1, $2, 'success')",
        )
        .bind(name)
        .bind(format!("{name}.3mf"))
        .execute(&pool)
        .await
        .unwrap();
    }

    let client = keyed_http(&env.api_key(&[Permission::Read]).await);
    let response = client
        .get(farm.api.api_url("/system/info"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "the reference's content type"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime"].as_u64().is_some(), "{body}");
    assert_eq!(body["database"]["archives"], 3, "{body}");
    let size = body["database"]["size_mb"].as_f64().unwrap();
    assert!(size > 1.0, "a Postgres database is several MiB: {size}");
}

#[tokio::test]
async fn uptime_grows() {
    let env = TestEnv::new().await;
    let farm = Farm::start(&env).await;
    let url = farm.api.api_url("/system/info");
    let http = keyed_http(&env.api_key(&[Permission::Read]).await);
    let first: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let second: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert!(
        second["uptime"].as_u64() > first["uptime"].as_u64(),
        "{first} {second}"
    );
}
