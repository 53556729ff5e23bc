//! API keys never reach logs or traces: everything the services log, at every level, while
//! keys are created, used, refused and revoked, is captured and searched for them.

use std::io::Write;
use std::sync::{Arc, Mutex};

use printyard_api::auth::Permission;
use printyard_tests::{TestEnv, http, spawn_api, spawn_archive};
use serde_json::{Value, json};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn keys_never_appear_in_logs_at_any_level() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(captured.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let _archive = spawn_archive(&env).await;
    let admin = env.api_key(&[Permission::Admin]).await;
    let client = http();
    let created: Value = client
        .post(api.api_url("/api-keys"))
        .header("X-API-Key", &admin)
        .json(&json!({"name": "secret-test", "permissions": ["read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let unknown = printyard_api::auth::keys::ApiKeySecret::generate()
        .reveal()
        .to_owned();
    for presented in [&key, &unknown, &admin] {
        client
            .get(api.api_url("/system/info"))
            .header("X-API-Key", presented)
            .send()
            .await
            .unwrap();
        client
            .get(api.api_url("/api-keys"))
            .header("X-API-Key", presented)
            .send()
            .await
            .unwrap();
    }
    client
        .delete(api.api_url(&format!("/api-keys/{}", created["id"])))
        .header("X-API-Key", &admin)
        .send()
        .await
        .unwrap();
    client
        .get(api.api_url("/system/info"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.len() > 1_000,
        "the services did log: {} bytes",
        logs.len()
    );
    assert!(
        logs.contains("API key created"),
        "creation is logged (without the key)"
    );
    for secret in [&key, &unknown, &admin] {
        // `pyk_<id>_<secret>`: the secret is URL-safe base64, which has `_` of its own.
        let hidden = secret.splitn(3, '_').nth(2).unwrap();
        assert_eq!(hidden.len(), 43);
        assert!(
            !logs.contains(hidden),
            "a key's secret part appeared in the logs"
        );
    }
}
