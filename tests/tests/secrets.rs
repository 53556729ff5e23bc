//! API keys, passwords and sessions never reach logs or traces: everything the services log,
//! at every level, while keys are created, used, refused and revoked and people sign in, use
//! a session and sign out, is captured and searched for them.

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

    // People: a password set, tried wrong and right; a session used and ended.
    let password = "a password nobody logs 7f3e";
    client
        .post(api.api_url("/users"))
        .header("X-API-Key", &admin)
        .json(&json!({"username": "lena", "password": password, "role": "operator"}))
        .send()
        .await
        .unwrap();
    client
        .post(api.api_url("/auth/login"))
        .json(&json!({"username": "lena", "password": format!("{password}!")}))
        .send()
        .await
        .unwrap();
    let signed_in: Value = client
        .post(api.api_url("/auth/login"))
        .json(&json!({"username": "lena", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf = signed_in["csrf_token"].as_str().unwrap().to_owned();
    // The session token is in the cookie only: sign in once more to read it.
    let again = client
        .post(api.api_url("/auth/login"))
        .json(&json!({"username": "lena", "password": password}))
        .send()
        .await
        .unwrap();
    let token = again
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("printyard_session="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    let cookie = format!("printyard_session={token}");
    client
        .get(api.api_url("/auth/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    client
        .post(api.api_url("/auth/logout"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    client
        .get(api.api_url("/auth/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("signed in"),
        "sign-ins are logged (without secrets)"
    );
    for secret in [password, &csrf, &token] {
        // Tokens are `py?_<id>_<secret>`; the password is whole.
        let hidden = if secret == password {
            password
        } else {
            secret.splitn(3, '_').nth(2).unwrap()
        };
        assert!(hidden.len() >= 20);
        assert!(
            !logs.contains(hidden),
            "a password, session token or CSRF token appeared in the logs"
        );
    }
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
