//! Every service answers NATS micro-service discovery: `$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`.

use std::time::Duration;

use printyard_tests::{Farm, TestEnv, keyed_http};
use serde_json::Value;

async fn ask(client: &async_nats::Client, subject: String) -> Value {
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(subject.clone(), "".into()),
    )
    .await
    .unwrap_or_else(|_| panic!("{subject} timed out"))
    .unwrap_or_else(|e| panic!("{subject}: {e}"));
    serde_json::from_slice(&reply.payload).unwrap()
}

#[tokio::test]
async fn every_service_answers_ping_info_and_stats() {
    let env = TestEnv::new().await;
    let farm = Farm::start(&env).await;
    let nats = env.nats.client().await;

    for service in [
        "api",
        "gateway",
        "archive",
        "scheduler",
        "stats",
        "notifier",
        "filament",
    ] {
        let ping = ask(&nats, format!("$SRV.PING.{service}")).await;
        assert_eq!(ping["name"], service);
        assert_eq!(ping["version"], env!("CARGO_PKG_VERSION"));
        let info = ask(&nats, format!("$SRV.INFO.{service}")).await;
        assert_eq!(info["name"], service);
        assert!(!info["description"].as_str().unwrap().is_empty(), "{info}");
    }

    // archive's endpoint is listed, in the queue group named after the service, and counted.
    let info = ask(&nats, "$SRV.INFO.archive".into()).await;
    let summary = |list: &Value| {
        list["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["subject"] == "printyard.archive.summary")
            .cloned()
            .unwrap_or_else(|| panic!("no summary endpoint: {list}"))
    };
    let endpoint = summary(&info);
    assert_eq!(endpoint["queue_group"], "archive", "{info}");

    let key = env.api_key(&[printyard_api::auth::Permission::Read]).await;
    let client = keyed_http(&key);
    for _ in 0..2 {
        let r = client
            .get(farm.api.api_url("/system/info"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let stats = ask(&nats, "$SRV.STATS.archive".into()).await;
    let endpoint = summary(&stats);
    assert_eq!(endpoint["num_requests"], 2, "{stats}");
    assert_eq!(endpoint["num_errors"], 0, "{stats}");
}
