//! Every service's admin listener: `/healthz`, `/readyz`, `/metrics`.

use printyard_api::auth::Permission;
use printyard_tests::{Farm, TestEnv, http, keyed_http};
use serde_json::Value;

#[tokio::test]
async fn every_service_is_alive_and_ready_with_its_dependencies_checked() {
    let env = TestEnv::new().await;
    let farm = Farm::start(&env).await;
    let client = http();
    let services = [
        ("api", &farm.api, true),
        ("gateway", &farm.gateway, false),
        ("archive", &farm.archive, true),
        ("scheduler", &farm.scheduler, true),
        ("stats", &farm.stats, true),
        ("notifier", &farm.notifier, true),
        ("filament", &farm.filament, true),
    ];
    for (name, service, has_database) in services {
        let alive = client
            .get(service.admin_url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(alive.status(), 200, "{name} /healthz");

        let ready = client
            .get(service.admin_url("/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200, "{name} /readyz");
        let body: Value = ready.json().await.unwrap();
        assert_eq!(body["status"], "ready", "{name}: {body}");
        assert_eq!(body["checks"]["nats"], "ok", "{name}: {body}");
        if has_database {
            assert_eq!(body["checks"]["postgres"], "ok", "{name}: {body}");
        } else {
            assert!(
                body["checks"].get("postgres").is_none(),
                "the gateway has no database: {body}"
            );
        }
    }
}

#[tokio::test]
async fn readyz_turns_503_when_the_database_goes_away() {
    let env = TestEnv::new().await;
    let archive = printyard_tests::spawn_archive(&env).await;
    env.drop_database().await;

    let ready = http()
        .get(archive.admin_url("/readyz"))
        .send()
        .await
        .unwrap();

    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["nats"], "ok");
    assert_ne!(body["checks"]["postgres"], "ok", "{body}");
}

#[tokio::test]
async fn metrics_count_and_time_http_requests_and_served_nats_requests() {
    let env = TestEnv::new().await;
    let farm = Farm::start(&env).await;
    let client = keyed_http(&env.api_key(&[Permission::Read]).await);
    for _ in 0..3 {
        let info = client
            .get(farm.api.api_url("/system/info"))
            .send()
            .await
            .unwrap();
        assert_eq!(info.status(), 200);
    }
    // Any token is a method to HTTP; an unknown one is counted, not kept as a label of its own.
    let brew = reqwest::Method::from_bytes(b"BREW-7F3A").unwrap();
    let refused = client
        .request(brew, farm.api.api_url("/system/info"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 405);

    let metrics = client
        .get(farm.api.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let http_count = metrics
        .lines()
        .find(|l| {
            l.starts_with("printyard_http_requests_total{")
                && l.contains("route=\"/api/v1/system/info\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no request counter in:\n{metrics}"));
    let count: f64 = http_count.rsplit(' ').next().unwrap().parse().unwrap();
    // One process-wide recorder serves every test of this binary: at least our three.
    assert!(count >= 3.0, "{http_count}");
    assert!(
        metrics.contains("printyard_http_request_duration_seconds_bucket{"),
        "latency histogram"
    );
    assert!(
        !metrics.contains("BREW-7F3A"),
        "a client's method became a label"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("printyard_http_requests_total{")
                && l.contains("method=\"OTHER\"")
                && l.contains("status=\"405\"")),
        "the unknown method counted as OTHER"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("printyard_rpc_requests_total{")
                && l.contains("endpoint=\"summary\"")
                && l.contains("outcome=\"ok\"")),
        "archive's served requests are counted:\n{metrics}"
    );
}
