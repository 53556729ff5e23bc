//! Bad input gets a clear `{detail, code}` error with the right status: malformed JSON,
//! wrong types, missing and unknown fields, huge bodies, non-numeric path ids, bad query values.

use printyard_api::auth::Permission;
use printyard_tests::{TestEnv, http, spawn_api};
use serde_json::Value;

async fn post_keys(api: &printyard_tests::Running, key: &str, body: &'static str) -> (u16, Value) {
    let response = http()
        .post(api.api_url("/api-keys"))
        .header("X-API-Key", key)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_are_refused_naming_the_field() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let admin = env.api_key(&[Permission::Admin]).await;

    let cases: [(&'static str, u16, &str); 6] = [
        (
            r#"{"name": "x", "permissions": ["read"]"#,
            400,
            "Malformed JSON",
        ),
        (r#"{"name": 5, "permissions": ["read"]}"#, 422, "`name`"),
        (
            r#"{"name": "x", "permissions": "read"}"#,
            422,
            "`permissions`",
        ),
        (
            r#"{"name": "x", "permissions": ["root"]}"#,
            422,
            "permissions[0]",
        ),
        (r#"{"permissions": ["read"]}"#, 422, "name"),
        (
            r#"{"name": "x", "permissions": ["read"], "owner": "me"}"#,
            422,
            "owner",
        ),
    ];
    for (body, status, names) in cases {
        let (got, error) = post_keys(&api, &admin, body).await;
        assert_eq!(got, status, "{body}: {error}");
        assert_eq!(error["code"], "VALIDATION_ERROR", "{body}");
        let detail = error["detail"].as_str().unwrap();
        assert!(
            detail.contains(names),
            "{body}: {detail} should name {names}"
        );
    }
    let (got, error) = post_keys(&api, &admin, r#"{"name": "", "permissions": []}"#).await;
    assert_eq!(
        (got, error["code"].as_str()),
        (422, Some("VALIDATION_ERROR"))
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_a_wrong_content_type_415() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let admin = env.api_key(&[Permission::Admin]).await;
    let huge = format!(
        r#"{{"name": "{}", "permissions": ["read"]}}"#,
        "x".repeat(2 * 1024 * 1024)
    );

    let response = http()
        .post(api.api_url("/api-keys"))
        .header("X-API-Key", &admin)
        .header("Content-Type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");

    let response = http()
        .post(api.api_url("/api-keys"))
        .header("X-API-Key", &admin)
        .header("Content-Type", "text/plain")
        .body(r#"{"name": "x", "permissions": ["read"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "UNSUPPORTED_MEDIA_TYPE");
}

#[tokio::test]
async fn a_path_id_that_is_not_a_number_is_400_not_500() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let admin = env.api_key(&[Permission::Admin]).await;

    for id in ["abc", "1.5", "99999999999999999999999"] {
        let response = http()
            .delete(api.api_url(&format!("/api-keys/{id}")))
            .header("X-API-Key", &admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{id}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "BAD_REQUEST", "{id}");
    }
}

#[tokio::test]
async fn a_nul_byte_in_text_is_a_422_not_a_500() {
    // Found by schemathesis: Postgres cannot store NUL in text, which once surfaced as a 500.
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let admin = env.api_key(&[Permission::Admin]).await;
    let client = printyard_tests::keyed_http(&admin);

    let key = client
        .post(api.api_url("/api-keys"))
        .json(&serde_json::json!({"name": "a\u{0}b", "permissions": ["read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), 422);
    let printer = serde_json::json!({
        "name": "Shelf", "ip_address": "10.0.0.9", "access_code": "12345678",
        "serial_number": "01P00A000000003", "model": "P1S\u{0}"
    });
    let response = client
        .post(api.api_url("/printers"))
        .json(&printer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "VALIDATION_ERROR");
    assert!(body["detail"].as_str().unwrap().contains("model"));

    // Behind a service too (found by `scripts/fuzz-api`: the filament service answered 503):
    // every service's database refusing a value is the client's 422.
    let _filament = printyard_tests::spawn_filament(&env).await;
    let spool = printyard_tests::eventually(
        std::time::Duration::from_secs(20),
        "the filament service answering",
        || async {
            let response = client
                .post(api.api_url("/spools"))
                .json(&serde_json::json!({"material": "PLA", "brand": "a\u{0}b"}))
                .send()
                .await
                .ok()?;
            (response.status() != 503).then_some(response)
        },
    )
    .await;
    assert_eq!(spool.status(), 422);
    let body: Value = spool.json().await.unwrap();
    assert_eq!(body["code"], "VALIDATION_ERROR", "{body}");
}

#[tokio::test]
async fn a_bad_site_in_a_listing_query_is_a_422_naming_it() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let reader = env.api_key(&[Permission::Read]).await;
    for path in ["/printers", "/archives", "/statistics", "/events"] {
        let response = http()
            .get(api.api_url(&format!("{path}?site=no.such%20site")))
            .header("X-API-Key", &reader)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{path}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], "VALIDATION_ERROR", "{path}: {error}");
        let detail = error["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("Invalid query `site`"),
            "{path}: {detail}"
        );
    }
}

/// What `scripts/fuzz-api` once found accepted against the document: a query parameter the
/// document bounds is checked on every operation that lists it, also where the answer does not
/// read it.
#[tokio::test]
async fn a_documented_query_bound_is_checked_where_the_answer_ignores_it() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let admin = env.api_key(&[Permission::Admin]).await;
    for path in [
        "/audit/export?offset=-1",
        "/audit/export?limit=0",
        "/statistics/utilisation?format=",
        "/statistics/utilisation?format=pdf",
    ] {
        let response = http()
            .get(api.api_url(path))
            .header("X-API-Key", &admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{path}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], "VALIDATION_ERROR", "{path}: {error}");
    }
}
