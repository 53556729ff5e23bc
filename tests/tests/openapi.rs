//! The served OpenAPI document and the docs page.

use printyard_tests::{TestEnv, http, spawn_api};
use serde_json::Value;

#[tokio::test]
async fn the_openapi_document_is_public_and_describes_every_endpoint_and_the_key_scheme() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;

    let response = http()
        .get(api.api_url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "no key needed to read the description"
    );
    let doc: Value = response.json().await.unwrap();

    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["servers"][0]["url"], "/api/v1");
    let scheme = &doc["components"]["securitySchemes"]["api_key"];
    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["in"], "header");
    assert_eq!(scheme["name"], "X-API-Key");
    for (method, path) in [
        ("get", "/health"),
        ("get", "/system/info"),
        ("get", "/api-keys"),
        ("post", "/api-keys"),
        ("delete", "/api-keys/{id}"),
    ] {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is described");
    }
    let info = &doc["paths"]["/system/info"]["get"];
    assert_eq!(info["security"][0]["api_key"], serde_json::json!([]));
    for status in ["401", "403", "429", "503"] {
        assert!(
            info["responses"][status].is_object(),
            "/system/info documents {status}"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn the_interactive_docs_are_served_from_the_binary() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;

    let page = http().get(api.api_url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    let script = http()
        .get(api.api_url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        script.status(),
        200,
        "assets come from the binary, not a CDN"
    );
    assert!(
        script.content_length().unwrap_or(0) > 100_000
            || script.text().await.unwrap().len() > 100_000
    );
}
