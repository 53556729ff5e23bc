//! API keys and permissions: every route against every permission, 401 for missing, unknown
//! and revoked keys (at once on every replica), the secret shown once.

use printyard_api::auth::access::{Access, Permission, ROUTES, access_for};
use printyard_tests::{TestEnv, http, spawn_api};
use reqwest::Method;
use serde_json::{Value, json};

fn methods_of(item: &utoipa::openapi::PathItem) -> Vec<Method> {
    let mut methods = Vec::new();
    if item.get.is_some() {
        methods.push(Method::GET)
    }
    if item.post.is_some() {
        methods.push(Method::POST)
    }
    if item.put.is_some() {
        methods.push(Method::PUT)
    }
    if item.patch.is_some() {
        methods.push(Method::PATCH)
    }
    if item.delete.is_some() {
        methods.push(Method::DELETE)
    }
    methods
}

/// Every (method, full path) that the api serves, from its generated OpenAPI document.
fn served_routes() -> Vec<(Method, String)> {
    let (_, openapi) = printyard_api::routes::v1();
    let mut routes = Vec::new();
    for (path, item) in &openapi.paths.paths {
        for method in methods_of(item) {
            routes.push((method, format!("/api/v1{path}")));
        }
    }
    routes
}

#[test]
fn every_served_route_has_an_access_rule_and_every_rule_a_route() {
    let served = served_routes();
    assert!(served.len() >= 5, "{served:?}");
    for (method, path) in &served {
        let method = axum::http::Method::from_bytes(method.as_str().as_bytes()).unwrap();
        assert!(
            access_for(&method, path).is_some(),
            "{method} {path} is served but has no entry in access::ROUTES"
        );
    }
    for (method, path, _) in ROUTES {
        // The OpenAPI document itself is served beside the documented routes.
        if *path == "/api/v1/openapi.json" {
            continue;
        }
        assert!(
            served
                .iter()
                .any(|(m, p)| m.as_str() == *method && p == path),
            "access::ROUTES names {method} {path}, which is not served"
        );
    }
}

#[tokio::test]
async fn every_route_admits_exactly_the_permissions_its_rule_names() {
    let env = TestEnv::new().await;
    // Every route with every key: more requests than a key's budget of a class holds, and the
    // budgets are not what this test is about (rate_limits.rs is).
    let mut config = env.api_config();
    config.rate_limits.enabled = false;
    let api = printyard_tests::spawn_api_with(config).await;
    let client = http();
    let base = format!("http://{}", api.http_addr.unwrap());
    let mut keys = Vec::new();
    for permission in Permission::ALL {
        keys.push((permission, env.api_key(&[permission]).await));
    }

    for (method, path) in served_routes() {
        let axum_method = axum::http::Method::from_bytes(method.as_str().as_bytes()).unwrap();
        let access = access_for(&axum_method, &path).unwrap();
        // Ids that exist nowhere, and empty bodies: a request that passes authorisation then
        // fails validation or lookup, so nothing is changed by this test.
        let url = format!("{base}{}", path.replace("{id}", "999999"));
        let request = |key: Option<&str>| {
            let mut r = client.request(method.clone(), &url);
            if let Some(key) = key {
                r = r.header("X-API-Key", key);
            }
            if method == Method::POST || method == Method::PATCH {
                r = r.json(&json!({}));
            }
            r
        };

        let anonymous = request(None).send().await.unwrap().status().as_u16();
        match access {
            Access::Public => assert_ne!(anonymous, 401, "{method} {path} is public"),
            Access::Key(needed, _) => {
                assert_eq!(anonymous, 401, "{method} {path} without a key");
                for (held, key) in &keys {
                    let status = request(Some(key)).send().await.unwrap().status().as_u16();
                    if held.grants(needed) {
                        assert!(
                            status != 401 && status != 403,
                            "{method} {path} with {held:?} (needs {needed:?}) answered {status}"
                        );
                    } else {
                        assert_eq!(
                            status, 403,
                            "{method} {path} with {held:?} (needs {needed:?})"
                        );
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn missing_malformed_and_unknown_keys_are_401_in_the_error_format() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let url = api.api_url("/system/info");
    let unknown = printyard_api::auth::keys::ApiKeySecret::generate();

    for key in [None, Some("nonsense"), Some(unknown.reveal())] {
        let mut request = http().get(&url);
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{key:?}");
        assert!(response.headers().get("x-ratelimit-limit").is_none());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "UNAUTHORIZED");
        let detail = body["detail"].as_str().unwrap();
        if let Some(key) = key {
            assert!(!detail.contains(key), "the key is never echoed: {detail}");
        }
    }
}

#[tokio::test]
async fn a_created_key_is_shown_once_works_at_once_and_is_listed_without_its_secret() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let admin = env.api_key(&[Permission::Admin]).await;
    let client = http();

    let created = client
        .post(api.api_url("/api-keys"))
        .header("X-API-Key", &admin)
        .json(&json!({"name": "dashboard", "permissions": ["read", "control"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let secret = created["key"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "dashboard");
    assert_eq!(created["permissions"], json!(["control", "read"]));
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));

    let info = client
        .get(api.api_url("/system/info"))
        .header("X-API-Key", &secret)
        .send()
        .await
        .unwrap();
    assert_ne!(info.status(), 401);
    assert_ne!(info.status(), 403);

    let listing = client
        .get(api.api_url("/api-keys"))
        .header("X-API-Key", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), 200);
    let text = listing.text().await.unwrap();
    // What follows `pyk_<id>_`: the random part (URL-safe base64, which has `_` too: cut at
    // the last `_`, a key's tail was sometimes a letter or two that any listing contains).
    let prefix = created["prefix"].as_str().unwrap();
    let secret_part = &secret[prefix.len() + 1..];
    assert_eq!(secret_part.len(), 43);
    assert!(
        !text.contains(secret_part),
        "a listing never shows a secret"
    );
    let listed: Vec<Value> = serde_json::from_str(&text).unwrap();
    let entry = listed.iter().find(|k| k["name"] == "dashboard").unwrap();
    assert!(entry.get("key").is_none());
    for field in ["id", "prefix", "permissions", "created_at", "last_used_at"] {
        assert!(entry.get(field).is_some(), "{field} in {entry}");
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_by_every_replica() {
    let env = TestEnv::new().await;
    let first = spawn_api(&env).await;
    let second = spawn_api(&env).await;
    let admin = env.api_key(&[Permission::Admin]).await;
    let client = http();
    let created: Value = client
        .post(first.api_url("/api-keys"))
        .header("X-API-Key", &admin)
        .json(&json!({"name": "temp", "permissions": ["read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap();
    for api in [&first, &second] {
        let ok = client
            .get(api.api_url("/system/info"))
            .header("X-API-Key", key)
            .send()
            .await
            .unwrap();
        assert_ne!(ok.status(), 401);
    }

    let revoked = client
        .delete(first.api_url(&format!("/api-keys/{}", created["id"])))
        .header("X-API-Key", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);

    for api in [&first, &second] {
        let refused = client
            .get(api.api_url("/system/info"))
            .header("X-API-Key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            refused.status(),
            401,
            "revocation holds on every replica at once"
        );
    }
    let again = client
        .delete(first.api_url(&format!("/api-keys/{}", created["id"])))
        .header("X-API-Key", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
}
