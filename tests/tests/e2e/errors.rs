//! The reference's `{detail, code}` error format on routes that do not exist.

use printyard_tests::{TestEnv, http, spawn_api};
use serde_json::Value;

#[tokio::test]
async fn an_unknown_route_answers_404_not_found_in_the_error_format() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;

    for path in ["/api/v1/nope", "/elsewhere", "/api/v2/health"] {
        let url = format!("http://{}{path}", api.http_addr.unwrap());
        let response = http().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "NOT_FOUND", "{path}");
        assert!(body["detail"].as_str().unwrap().contains(path), "{body}");
        assert_eq!(
            body.as_object().unwrap().len(),
            2,
            "only detail and code: {body}"
        );
    }
}

#[tokio::test]
async fn a_wrong_method_answers_405_in_the_error_format() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;

    let response = http().delete(api.api_url("/health")).send().await.unwrap();

    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "METHOD_NOT_ALLOWED");
    assert!(body["detail"].is_string());
}
