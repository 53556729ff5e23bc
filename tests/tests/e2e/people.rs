//! People: users and sessions across api replicas, scope by site, the audit log, the sign-in
//! lockout, and single sign-on through a real OpenID provider (`oidc-provider`, run by node).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use printyard_api::auth::Permission;
use printyard_printer_sim::Model;
use printyard_printer_sim::farm::{DEMO_3MF, DEMO_PATH};
use printyard_tests::nats_server::free_port;
use printyard_tests::{
    Running, SimFarm, TestEnv, eventually, http, keyed_http, spawn_api, spawn_api_with,
    spawn_archive, spawn_gateway_with, spawn_notifier, spawn_scheduler, upload_file,
    wait_connected,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const PASSWORD: &str = "correct horse battery staple";

/// A signed-in person's cookies, sent by hand so that any replica can be asked.
#[derive(Clone)]
struct Session {
    token: String,
    csrf: String,
}

impl Session {
    fn cookie(&self) -> String {
        format!(
            "printyard_session={}; printyard_csrf={}",
            self.token, self.csrf
        )
    }

    fn get(&self, api: &Running, path: &str) -> reqwest::RequestBuilder {
        http()
            .get(api.api_url(path))
            .header("cookie", self.cookie())
    }

    /// A state-changing request, with the CSRF token as the dashboard sends it.
    fn send(&self, method: reqwest::Method, api: &Running, path: &str) -> reqwest::RequestBuilder {
        http()
            .request(method, api.api_url(path))
            .header("cookie", self.cookie())
            .header("x-csrf-token", &self.csrf)
    }
}

/// The value of cookie `name` among a response's `Set-Cookie` headers.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (pair, attributes) = v.split_once(';').unwrap_or((v, ""));
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| (value.to_owned(), attributes.to_owned()))
        })
}

async fn login(api: &Running, username: &str, password: &str) -> reqwest::Response {
    http()
        .post(api.api_url("/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn sign_in(api: &Running, username: &str) -> Session {
    let response = login(api, username, PASSWORD).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "signing in as {username}"
    );
    let (token, attributes) = set_cookie(&response, "printyard_session").expect("a session cookie");
    assert!(attributes.contains("HttpOnly"), "{attributes}");
    assert!(attributes.contains("SameSite=Strict"), "{attributes}");
    let body: Value = response.json().await.unwrap();
    Session {
        token,
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
    }
}

async fn create_user(admin: &reqwest::Client, api: &Running, body: Value) -> Value {
    let response = admin
        .post(api.api_url("/users"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "creating {body}");
    response.json().await.unwrap()
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_site_scoped_operator_sees_and_controls_only_its_site_on_every_replica() {
    let env = TestEnv::new().await;
    let sim = SimFarm::start(&[Model::A1Mini, Model::A1Mini], 200.0).await;
    let _archive = spawn_archive(&env).await;
    let _notifier = spawn_notifier(&env).await;
    let first = spawn_api(&env).await;
    let second = spawn_api(&env).await;
    let mut gateways = Vec::new();
    for site in ["north", "south"] {
        let mut config = sim.gateway_config(&env);
        config.gateway.site = site.to_owned();
        gateways.push(spawn_gateway_with(config).await);
    }
    let admin = keyed_http(&env.api_key(&[Permission::Admin]).await);
    let mut printers = Vec::new();
    for (printer, site) in sim.farm.printers.iter().zip(["north", "south"]) {
        let created: Value = admin
            .post(first.api_url("/printers"))
            .json(&json!({
                "name": format!("{site} A1"), "ip_address": printer.spec.ip.to_string(),
                "access_code": printer.spec.access_code, "serial_number": printer.spec.serial,
                "site": site,
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        printers.push(created["id"].as_i64().unwrap());
    }
    let (north, south) = (printers[0], printers[1]);
    for id in [north, south] {
        wait_connected(&admin, &first.api_url(""), id, Duration::from_secs(20)).await;
    }
    create_user(
        &admin,
        &first,
        json!({"username": "olga", "password": PASSWORD, "role": "operator", "sites": ["north"]}),
    )
    .await;
    let olga = sign_in(&first, "olga").await;

    // The live stream, opened before anything prints, on the first replica.
    let stream = olga.get(&first, "/events").send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut events = stream.bytes_stream();

    // Listings and reads on the other replica: only the north printer exists.
    let listed: Value = olga
        .get(&second, "/printers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&listed), vec![north]);
    let unknown: Value = olga
        .get(&second, "/printers/999999")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        format!("/printers/{south}"),
        format!("/printers/{south}/status"),
        format!("/printers/{south}/camera/snapshot"),
    ] {
        let response = olga.get(&second, &path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], unknown["code"]);
        assert_eq!(
            body["detail"]
                .as_str()
                .unwrap()
                .replace(&south.to_string(), "N"),
            unknown["detail"].as_str().unwrap().replace("999999", "N"),
            "a printer out of reach answers as an unknown one"
        );
    }
    let status = olga
        .get(&second, &format!("/printers/{north}/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::OK);

    // Commands: the south printer is unknown; the north one is reached (it is idle, so the
    // printer's own answer comes back, whatever it is).
    let south_pause = olga
        .send(
            reqwest::Method::POST,
            &second,
            &format!("/printers/{south}/pause"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(south_pause.status(), StatusCode::NOT_FOUND);
    let north_refresh = olga
        .send(
            reqwest::Method::POST,
            &second,
            &format!("/printers/{north}/refresh-status"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        north_refresh.status(),
        StatusCode::OK,
        "a command in reach goes through"
    );
    let forged = http()
        .post(second.api_url(&format!("/printers/{north}/refresh-status")))
        .header("cookie", olga.cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        StatusCode::FORBIDDEN,
        "a change with the cookie but without the CSRF token is refused"
    );
    let refused: Value = admin
        .get(first.api_url("/audit?action=refreshPrinterStatus&outcome=denied"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        refused["entries"][0]["actor"], "olga",
        "the audit log names whose cookie came without its token"
    );
    let outside = olga
        .send(reqwest::Method::POST, &second, "/printers")
        .json(
            &json!({"name": "mine", "ip_address": "10.0.0.9", "access_code": "12345678",
                      "serial_number": "01P00A000000009", "site": "south"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        outside.status(),
        StatusCode::FORBIDDEN,
        "no adding printers elsewhere"
    );

    // Both printers print; the operator's archives are the north printer's only.
    for printer in [&sim.farm.printers[1], &sim.farm.printers[0]] {
        printer.store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
        printer.start_from_touchscreen(DEMO_PATH, 1).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let all = eventually(Duration::from_secs(30), "both prints archived", || async {
        let page: Value = admin
            .get(first.api_url("/archives"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (page["total"] == 2).then_some(page)
    })
    .await;
    let south_archive = all["archives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["printer_id"] == south)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let seen: Value = olga
        .get(&second, "/archives")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["total"], 1);
    assert_eq!(seen["archives"][0]["printer_id"], north);
    let hidden = olga
        .get(&second, &format!("/archives/{south_archive}"))
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    let csv = olga
        .get(&second, "/archives/export")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv.lines().count(),
        2,
        "a header and the north print: {csv}"
    );

    // The stream carried the north printer's events and never the south one's.
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !text.contains("event: print_started") && Instant::now() < deadline {
        if let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(Duration::from_secs(1), events.next()).await
        {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    // A little longer, for anything of the south printer's that would follow.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(Duration::from_millis(200), events.next()).await
        {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(text.contains("event: print_started"), "{text}");
    let mut printers_seen = std::collections::BTreeSet::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let data: Value = serde_json::from_str(line).unwrap();
        printers_seen.insert(data["printer_id"].as_i64().unwrap());
    }
    assert_eq!(
        printers_seen.into_iter().collect::<Vec<_>>(),
        vec![north],
        "only the north printer's events and statuses"
    );

    // An admin key limited to the north site: webhooks only of its printers, nothing farm-wide.
    let farm_hook: Value = admin
        .post(first.api_url("/webhooks"))
        .json(&json!({"url": "http://127.0.0.1:9/farm"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let north_key: Value = admin
        .post(first.api_url("/api-keys"))
        .json(&json!({"name": "north admin", "permissions": ["admin"], "sites": ["north"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(north_key["sites"], json!(["north"]));
    let north_admin = keyed_http(north_key["key"].as_str().unwrap());
    let hook = north_admin
        .post(second.api_url("/webhooks"))
        .json(&json!({"url": "http://127.0.0.1:9/north"}))
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), StatusCode::CREATED);
    let hook: Value = hook.json().await.unwrap();
    assert_eq!(
        hook["printer_ids"],
        json!([north]),
        "limited to the printers in reach"
    );
    let listed: Value = north_admin
        .get(second.api_url("/webhooks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&listed), vec![hook["id"].as_i64().unwrap()]);
    let other = north_admin
        .get(second.api_url(&format!("/webhooks/{}", farm_hook["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    let widen = north_admin
        .patch(second.api_url(&format!("/webhooks/{}", hook["id"])))
        .json(&json!({"printer_ids": [south]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        widen.status(),
        StatusCode::NOT_FOUND,
        "no reaching out by a patch"
    );
    for path in ["/users", "/audit", "/api-keys", "/roles"] {
        let response = north_admin.get(second.api_url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let wider_key = north_admin
        .post(second.api_url("/api-keys"))
        .json(&json!({"name": "wider", "permissions": ["read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        wider_key.status(),
        StatusCode::FORBIDDEN,
        "no key wider than its maker"
    );
}

#[tokio::test]
async fn a_disabled_users_session_stops_working_on_every_replica_at_once() {
    let env = TestEnv::new().await;
    let first = spawn_api(&env).await;
    let second = spawn_api(&env).await;
    let admin = keyed_http(&env.api_key(&[Permission::Admin]).await);
    let user = create_user(
        &admin,
        &first,
        json!({"username": "Vera", "password": PASSWORD, "role": "viewer", "email": "vera@example.com"}),
    )
    .await;
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());
    let vera = sign_in(&first, "vera").await;
    for api in [&first, &second] {
        let me: Value = vera
            .get(api, "/auth/me")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["kind"], "user");
        assert_eq!(me["name"], "Vera");
        assert_eq!(me["role"], "viewer");
        assert_eq!(me["permissions"], json!(["read"]));
        // A viewer reads, and may not change anything.
        let refused = vera
            .send(reqwest::Method::POST, api, "/printers")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }

    let disabled = admin
        .patch(second.api_url(&format!("/users/{}", user["id"])))
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), StatusCode::OK);
    for api in [&first, &second] {
        let refused = vera.get(api, "/auth/me").send().await.unwrap();
        assert_eq!(
            refused.status(),
            StatusCode::UNAUTHORIZED,
            "the session ended on every replica before the answer"
        );
    }
    let again = login(&first, "vera", PASSWORD).await;
    assert_eq!(
        again.status(),
        StatusCode::FORBIDDEN,
        "a disabled account cannot sign in"
    );

    // Enabled again: a new sign-in works; signing out ends that session everywhere.
    admin
        .patch(first.api_url(&format!("/users/{}", user["id"])))
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    let vera = sign_in(&second, "VERA").await;
    assert_eq!(
        vera.get(&first, "/auth/me").send().await.unwrap().status(),
        200
    );
    let out = vera
        .send(reqwest::Method::POST, &first, "/auth/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    for api in [&first, &second] {
        assert_eq!(
            vera.get(api, "/auth/me").send().await.unwrap().status(),
            401
        );
    }
}

#[tokio::test]
async fn the_audit_log_names_who_paused_reordered_and_created_a_key() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let _scheduler = spawn_scheduler(&env).await;
    let _archive = spawn_archive(&env).await;
    let admin_key = env.api_key(&[Permission::Admin]).await;
    let admin = keyed_http(&admin_key);
    let printer: Value = admin
        .post(api.api_url("/printers"))
        .json(
            &json!({"name": "P1", "ip_address": "127.0.0.1", "access_code": "12345678",
                      "serial_number": "01P00A000000001"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let printer_id = printer["id"].as_i64().unwrap();
    create_user(
        &admin,
        &api,
        json!({"username": "mia", "password": PASSWORD, "role": "manager"}),
    )
    .await;
    let mia = sign_in(&api, "mia").await;
    // A pause of a printer that is not connected: refused by the farm, audited all the same.
    let paused = mia
        .send(
            reqwest::Method::POST,
            &api,
            &format!("/printers/{printer_id}/pause"),
        )
        .send()
        .await
        .unwrap();
    assert!(paused.status().is_client_error(), "{}", paused.status());
    let file = upload_file(&admin, &api.api_url(""), DEMO_3MF.to_vec(), "cube.3mf").await;
    let job: Value = admin
        .post(api.api_url("/queue"))
        .json(&json!({"archive_id": file["id"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reordered = mia
        .send(reqwest::Method::POST, &api, "/queue/reorder")
        .json(&json!({"order": [job["id"]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(reordered.status(), StatusCode::OK);
    let key: Value = admin
        .post(api.api_url("/api-keys"))
        .json(&json!({"name": "ci", "permissions": ["read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bad = login(&api, "mia", "not the password at all").await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);

    let page: Value = admin
        .get(api.api_url("/audit"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = page["entries"].as_array().unwrap();
    let find = |action: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {page}"))
    };
    let pause = find("pausePrinter");
    assert_eq!(pause["actor"], "mia");
    assert_eq!(pause["actor_kind"], "user");
    assert_eq!(pause["printer_id"], printer_id);
    assert_eq!(pause["outcome"], "failed");
    assert_eq!(pause["ip"], "127.0.0.1");
    let reorder = find("reorderQueue");
    assert_eq!(reorder["actor"], "mia");
    assert_eq!(reorder["outcome"], "success");
    let created = find("createApiKey");
    assert_eq!(created["actor_kind"], "key");
    assert!(created["actor"].as_str().unwrap().starts_with("key pyk_"));
    assert_eq!(created["status"], 201);
    let failed_login = find("login");
    assert_eq!(failed_login["outcome"], "denied");
    assert_eq!(failed_login["actor"], "sign-in as \"mia\"");
    // Newest first; reads are not audited.
    assert!(entries.iter().all(|e| e["method"] != "GET"));
    let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]));

    let mine: Value = admin
        .get(api.api_url("/audit?actor=mia&action=pausePrinter"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["total"], 1);
    let by_printer: Value = admin
        .get(api.api_url(&format!("/audit?printer_id={printer_id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_printer["total"], 1);
    let csv = admin
        .get(api.api_url("/audit/export"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("id,at,actor_kind"), "{csv}");
    assert!(
        csv.contains(",mia,") && csv.contains("reorderQueue"),
        "{csv}"
    );
    for secret in [
        PASSWORD,
        key["key"].as_str().unwrap(),
        &admin_key,
        &mia.token,
        &mia.csrf,
    ] {
        assert!(!csv.contains(secret), "a secret in the audit log");
    }

    // Append-only: the table refuses changes and deletions.
    let pool = env.pool().await;
    for statement in ["UPDATE api.audit SET actor = 'x'", "DELETE FROM api.audit"] {
        let refused = sqlx::query(statement).execute(&pool).await;
        assert!(refused.is_err(), "{statement} was allowed");
    }
}

#[tokio::test]
async fn repeated_failed_sign_ins_are_slowed_then_locked_out() {
    let env = TestEnv::new().await;
    let mut config = env.api_config();
    config.people.failure_delay_ms = 100;
    config.people.lockout_failures = 4;
    config.people.lockout_secs = 60;
    let api = spawn_api_with(config).await;
    let admin = keyed_http(&env.api_key(&[Permission::Admin]).await);
    let user = create_user(
        &admin,
        &api,
        json!({"username": "sam", "password": PASSWORD, "role": "viewer"}),
    )
    .await;
    let mut took = Vec::new();
    for attempt in 1..=3 {
        let started = Instant::now();
        let response = login(&api, "sam", &format!("guess number {attempt}")).await;
        took.push(started.elapsed());
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "UNAUTHORIZED");
        assert_eq!(body["detail"], "Wrong username or password");
    }
    assert!(
        took[2] >= Duration::from_millis(300),
        "the third failure in a row waits 3 × 100 ms: {took:?}"
    );
    let fourth = login(&api, "sam", "guess number 4").await;
    assert_eq!(fourth.status(), StatusCode::TOO_MANY_REQUESTS, "locked");
    let retry: u64 = fourth.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let right = login(&api, "sam", PASSWORD).await;
    assert_eq!(
        right.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits out the lock"
    );
    // An unknown name answers as a wrong password does.
    let unknown = login(&api, "nobody-here", PASSWORD).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    // An administrator lifts the lock by setting a new password.
    admin
        .patch(api.api_url(&format!("/users/{}", user["id"])))
        .json(&json!({"password": "a brand new passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        login(&api, "sam", "a brand new passphrase").await.status(),
        200
    );
    let short = admin
        .patch(api.api_url(&format!("/users/{}", user["id"])))
        .json(&json!({"password": "short"}))
        .send()
        .await
        .unwrap();
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// The suite's OpenID provider (`web/e2e/oidc-provider.mjs`), stopped when dropped.
struct Provider {
    issuer: String,
    _child: tokio::process::Child,
}

async fn start_provider(redirect_uri: &str) -> Provider {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    assert!(
        web.join("node_modules/oidc-provider").exists(),
        "oidc-provider is missing: run `npm --prefix web ci` (scripts/test does)"
    );
    let port = free_port();
    let mut child = tokio::process::Command::new("node")
        .arg("e2e/oidc-provider.mjs")
        .arg(port.to_string())
        .arg(redirect_uri)
        .current_dir(&web)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting node");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the provider starts within 20 s")
        .unwrap()
        .unwrap_or_default();
    let issuer = ready
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("the provider said {ready:?}"))
        .to_owned();
    // It goes on writing notices; a closed pipe would end it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Provider {
        issuer,
        _child: child,
    }
}

/// Drives a browser's part of a sign-in: follows redirects, fills the provider's sign-in
/// form as `login` and approves the consent form, until the provider sends the browser back
/// to the api's callback. Returns the callback's answer.
async fn browser_sign_in(api: &Running, login_as: &str) -> reqwest::Response {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let callback = api.api_url("/auth/sso/callback");
    let mut request = browser.get(api.api_url("/auth/sso/login"));
    for _ in 0..20 {
        let response = request.send().await.unwrap();
        let url = response.url().clone();
        if url.as_str().starts_with(&callback) {
            return response;
        }
        if response.status().is_redirection() {
            let location = response.headers()["location"].to_str().unwrap();
            request = browser.get(url.join(location).unwrap());
            continue;
        }
        assert_eq!(response.status(), StatusCode::OK, "at {url}");
        let page = response.text().await.unwrap();
        let action = page
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no form at {url}: {page}"));
        let target = url.join(action).unwrap();
        request = if page.contains("name=\"login\"") {
            browser.post(target).form(&[
                ("prompt", "login"),
                ("login", login_as),
                ("password", "anything"),
            ])
        } else {
            browser.post(target).form(&[("prompt", "consent")])
        };
    }
    panic!("the sign-in did not come back to the callback");
}

#[tokio::test]
async fn single_sign_on_through_a_real_provider_creates_the_user_with_the_role_of_its_group() {
    let env = TestEnv::new().await;
    // The api's address is needed for the provider's redirect URI: take a port first.
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/api/v1/auth/sso/callback");
    let provider = start_provider(&redirect).await;
    let mut config = env.api_config();
    config.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    config.people.sso = printyard_api::people::sso::SsoConfig {
        issuer: provider.issuer.clone(),
        client_id: "printyard".into(),
        client_secret: Some(printyard_service::Secret::new(
            "printyard-test-secret".into(),
        )),
        redirect_url: redirect.clone(),
        scopes: vec!["email".into(), "profile".into(), "groups".into()],
        roles: vec![
            printyard_api::people::sso::GroupRole {
                group: "farm-admins".into(),
                role: "admin".into(),
            },
            printyard_api::people::sso::GroupRole {
                group: "north-operators".into(),
                role: "north-operator".into(),
            },
        ],
        ..Default::default()
    };
    let api = spawn_api_with(config).await;
    let admin = keyed_http(&env.api_key(&[Permission::Admin]).await);
    let role = admin
        .post(api.api_url("/roles"))
        .json(
            &json!({"name": "north-operator", "permissions": ["read", "control"],
                      "sites": ["north"], "description": "Runs the north hall"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(role.status(), StatusCode::CREATED);
    let info: Value = http()
        .get(api.api_url("/auth/sso"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["enabled"], true);

    let answer = browser_sign_in(&api, "nora").await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(answer.headers()["location"], "/#/");
    let (token, _) = set_cookie(&answer, "printyard_session").expect("a session cookie");
    let (csrf, _) = set_cookie(&answer, "printyard_csrf").expect("a CSRF cookie");
    let nora = Session { token, csrf };
    let me: Value = nora
        .get(&api, "/auth/me")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["name"], "nora");
    assert_eq!(me["role"], "north-operator");
    assert_eq!(me["permissions"], json!(["control", "read"]));
    assert_eq!(
        me["printer_ids"],
        json!([]),
        "limited to a site with no printer yet"
    );

    let users: Value = admin
        .get(api.api_url("/users"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let created = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "nora")
        .expect("the user was created on first sign-in");
    assert_eq!(created["sso"], true);
    assert_eq!(created["has_password"], false);
    assert_eq!(created["email"], "nora@example.com");

    // The admins' group gives the admin role; no mapped group, no entry.
    let ada = browser_sign_in(&api, "ada").await;
    let (token, _) = set_cookie(&ada, "printyard_session").unwrap();
    let (csrf, _) = set_cookie(&ada, "printyard_csrf").unwrap();
    let ada = Session { token, csrf };
    let me: Value = ada
        .get(&api, "/auth/me")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "admin");
    assert_eq!(ada.get(&api, "/users").send().await.unwrap().status(), 200);
    let gus = browser_sign_in(&api, "gus").await;
    assert_eq!(gus.status(), StatusCode::SEE_OTHER);
    let location = gus.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/#/signin?error="), "{location}");
    assert!(set_cookie(&gus, "printyard_session").is_none());

    // A callback whose state was never issued (or is replayed) is refused.
    let forged = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(api.api_url("/auth/sso/callback?code=abc&state=never-issued"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::SEE_OTHER);
    let location = forged.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("/#/signin?error="), "{location}");
    assert!(set_cookie(&forged, "printyard_session").is_none());

    // Every single sign-on is in the audit log, refusals as denied.
    let audit: Value = admin
        .get(api.api_url("/audit?action=finishSso"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let outcomes: Vec<(String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("nora", "success"),
        ("ada", "success"),
        ("single sign-on", "denied"),
        ("single sign-on", "denied"),
    ];
    assert_eq!(
        outcomes,
        expected.map(|(a, o)| (a.to_owned(), o.to_owned())).to_vec()
    );
}

#[tokio::test]
async fn audit_entries_made_while_postgres_is_away_are_written_in_order_when_it_answers() {
    use printyard_api::audit::{AuditWriter, NewEntry};
    let env = TestEnv::new().await;
    let _api = spawn_api(&env).await; // brings the schema up
    let pool = env.pool().await;
    // A database that does not answer: nothing listens on the port.
    let away = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy(&format!(
            "postgres://postgres@127.0.0.1:{}/gone",
            free_port()
        ))
        .unwrap();
    let writer = AuditWriter::default();
    let entry = |n: i64| NewEntry {
        at: chrono::Utc::now() - chrono::TimeDelta::seconds(60 - n),
        actor_kind: "user",
        actor_id: Some(n),
        actor: format!("person {n}"),
        ip: Some("192.0.2.1".into()),
        method: "POST".into(),
        action: "pausePrinter".into(),
        route: "/api/v1/printers/{id}/pause".into(),
        object_id: Some(n.to_string()),
        printer_id: Some(n),
        status: 200,
        outcome: "success",
    };
    let started = Instant::now();
    for n in 1..=3 {
        writer.write(&away, entry(n)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "only the first entry waits for the database; the rest join the backlog at once"
    );
    assert!(writer.flush(&away).await.is_err(), "still away");
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM api.audit")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(written, 0);

    writer.flush(&pool).await.unwrap();
    let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT actor, at FROM api.audit ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let actors: Vec<&str> = rows.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actors,
        ["person 1", "person 2", "person 3"],
        "in order, once each"
    );
    assert!(
        rows.iter()
            .all(|(_, at)| *at < chrono::Utc::now() - chrono::TimeDelta::seconds(50)),
        "each with the time of its request, not of its writing"
    );
    writer.flush(&pool).await.unwrap();
    let again: i64 = sqlx::query_scalar("SELECT count(*) FROM api.audit")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(again, 3, "a second flush writes nothing twice");
}
