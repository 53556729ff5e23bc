//! The web dashboard (`web/`), served by `api` at `/`: its generated API client matches the
//! OpenAPI document the api serves, the files come with the right headers, and the whole
//! thing works in headless Chromium against a farm of simulated printers
//! (`web/e2e/dashboard.mjs`: the wall, pause from a tile, archive upload, edit and search, a
//! read-only key, a phone in the dark, the JavaScript budget; screenshots of every page).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use printyard_api::auth::Permission;
use printyard_printer_sim::Model;
use printyard_printer_sim::farm::{DEMO_3MF, DEMO_PATH};
use printyard_printer_sim::printer::GcodeState;
use printyard_tests::{
    SimFarm, TestEnv, add_printer, eventually, get_json, http, keyed_http, spawn_api,
    spawn_archive, spawn_filament, spawn_gateway_with, spawn_notifier, spawn_scheduler,
    spawn_stats, wait_connected,
};

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web")
}

/// `web/node_modules/.bin/<tool>`, installed by `npm ci` (scripts/test runs it).
fn node_tool(tool: &str) -> PathBuf {
    let path = web_dir().join("node_modules/.bin").join(tool);
    assert!(
        path.exists(),
        "{} is missing: run `npm --prefix web ci` (scripts/test does)",
        path.display()
    );
    path
}

#[tokio::test]
async fn the_generated_client_matches_the_openapi_document_the_api_serves() {
    let dir = tempfile::tempdir().unwrap();
    let document = dir.path().join("openapi.json");
    let generated = dir.path().join("schema.d.ts");
    let served = printyard_api::routes::openapi_document()
        .to_pretty_json()
        .unwrap();
    std::fs::write(&document, served).unwrap();
    let status = tokio::process::Command::new(node_tool("openapi-typescript"))
        .arg(&document)
        .arg("-o")
        .arg(&generated)
        .kill_on_drop(true)
        .status()
        .await
        .expect("running openapi-typescript");
    assert!(status.success(), "openapi-typescript failed");
    let committed = std::fs::read_to_string(web_dir().join("src/api/schema.d.ts")).unwrap();
    assert!(
        std::fs::read_to_string(&generated).unwrap() == committed,
        "web/src/api/schema.d.ts is not the client of the current API: run `npm --prefix web run generate`"
    );
}

#[tokio::test]
async fn the_dashboard_is_served_at_the_root_with_its_assets_and_policy() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let root = format!("http://{}", api.http_addr.unwrap());
    let client = http();
    let page = client.get(format!("{root}/")).send().await.unwrap();
    assert_eq!(page.status(), 200, "web/dist is built before the tests");
    let headers = page.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(headers["cache-control"], "no-cache");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"));
    let html = page.text().await.unwrap();
    let script = html
        .split('"')
        .find(|s| s.starts_with("/assets/") && s.ends_with(".js"))
        .expect("index.html loads a script from /assets/")
        .to_owned();

    // gzip when asked for (reqwest here does not decode it), plain otherwise.
    let zipped = client
        .get(format!("{root}{script}"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.status(), 200);
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    assert!(
        zipped.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert_eq!(
        zipped.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let zipped = zipped.bytes().await.unwrap();
    assert_eq!(&zipped[..2], &[0x1f, 0x8b], "a gzip stream");
    let plain = client.get(format!("{root}{script}")).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert!(plain.bytes().await.unwrap().len() > zipped.len());

    // The API keeps its own answers: unknown paths are the reference's 404, never the page.
    for path in [
        "/api/v1/nothing",
        "/nothing.js",
        "/assets/../Cargo.toml",
        "/api/v1/",
    ] {
        let response = client.get(format!("{root}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "NOT_FOUND", "{path}");
    }
    let post = client.post(format!("{root}/")).send().await.unwrap();
    assert_eq!(post.status(), 404);
    api.stop().await;
}

#[tokio::test]
async fn the_current_key_says_what_it_may_do_and_nothing_secret() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let read = env.api_key(&[Permission::Read]).await;
    let answer = keyed_http(&read)
        .get(api.api_url("/api-keys/current"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["permissions"], serde_json::json!(["read"]));
    assert!(read.starts_with(body["prefix"].as_str().unwrap()));
    assert!(body.get("key").is_none() && !body.to_string().contains(&read));
    // Without a key, or with a control-only key (it reads nothing), refused.
    let none = http()
        .get(api.api_url("/api-keys/current"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    let control = env.api_key(&[Permission::Control]).await;
    let refused = keyed_http(&control)
        .get(api.api_url("/api-keys/current"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    api.stop().await;
}

#[tokio::test]
async fn the_dashboard_in_chromium_shows_the_farm_and_acts_on_it() {
    let env = TestEnv::new().await;
    // The demo print lasts about four minutes at this speed: long enough to pause, short
    // enough for its progress to move within seconds.
    let sim = SimFarm::start(&[Model::A1Mini, Model::P1S, Model::X1C], 5.0).await;
    let _archive = spawn_archive(&env).await;
    let _scheduler = spawn_scheduler(&env).await;
    let _stats = spawn_stats(&env).await;
    let _notifier = spawn_notifier(&env).await;
    let _filament = spawn_filament(&env).await;
    let _gateway = spawn_gateway_with(sim.gateway_config(&env)).await;
    let api = spawn_api(&env).await;
    let admin = env.api_key(&[Permission::Admin]).await;
    let read = env.api_key(&[Permission::Read]).await;
    let client = keyed_http(&admin);
    let base = api.api_url("");
    let mut ids = Vec::new();
    for (i, printer) in sim.farm.printers.iter().enumerate() {
        let name = format!("Bay {} {}", i + 1, printer.spec.model.name());
        let id = add_printer(&client, &base, printer, &name, &printer.spec.access_code).await;
        wait_connected(&client, &base, id, Duration::from_secs(30)).await;
        ids.push(id);
    }
    let printing = sim.farm.printers[0].clone();
    printing.store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
    printing.start_from_touchscreen(DEMO_PATH, 1).unwrap();
    eventually(Duration::from_secs(60), "the printer running", || async {
        (printing.snapshot().gcode_state == GcodeState::Running).then_some(())
    })
    .await;
    eventually(
        Duration::from_secs(90),
        "the print archived with its file",
        || async {
            let page = get_json(&client, &format!("{base}/archives")).await?;
            let printed = &page["archives"][0];
            (printed["status"] == "printing" && printed["has_file"] == true).then_some(())
        },
    )
    .await;

    // A print that failed, for the statistics page to show.
    let failing = sim.farm.printers[1].clone();
    failing.store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
    failing.start_from_touchscreen(DEMO_PATH, 1).unwrap();
    eventually(
        Duration::from_secs(60),
        "the second printer running",
        || async { (failing.snapshot().gcode_state == GcodeState::Running).then_some(()) },
    )
    .await;
    failing.fail_print(None).unwrap();
    eventually(Duration::from_secs(60), "the failure counted", || async {
        let stats = get_json(&client, &format!("{base}/statistics")).await?;
        (stats["failed_prints"] == 1).then_some(())
    })
    .await;

    // Whether the simulated printer itself was ever paused while the browser ran.
    let paused = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn({
        let (printer, paused) = (printing.clone(), paused.clone());
        async move {
            loop {
                if printer.snapshot().gcode_state == GcodeState::Pause {
                    paused.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    let upload = tempfile::Builder::new().suffix(".3mf").tempfile().unwrap();
    std::fs::write(upload.path(), DEMO_3MF).unwrap();
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let run = tokio::process::Command::new("node")
        .arg("e2e/dashboard.mjs")
        .current_dir(web_dir())
        .env(
            "PRINTYARD_URL",
            format!("http://{}", api.http_addr.unwrap()),
        )
        .env("PRINTYARD_ADMIN_KEY", &admin)
        .env("PRINTYARD_READ_KEY", &read)
        .env("PRINTYARD_UPLOAD", upload.path())
        .env("PRINTYARD_SCREENSHOTS", &screenshots)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the browser run ends within 5 minutes")
        .expect("running node");
    watcher.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the browser checks failed (above)");
    assert!(
        stdout.contains(&format!("paused {}", ids[0])),
        "the browser paused the printing printer"
    );
    assert!(
        paused.load(Ordering::SeqCst),
        "the pause clicked in the browser reached the simulated printer"
    );
    for page in [
        "sign-in",
        "wall",
        "wall-cells",
        "archive",
        "cameras",
        "queue",
        "statistics",
        "settings",
        "camera-live",
        "wall-read-only",
        "wall-phone-dark",
        "people",
        "audit",
        "wall-operator",
        "wall-maintenance",
        "maintenance",
    ] {
        let shot = screenshots.join(format!("{page}.png"));
        let bytes = std::fs::read(&shot).unwrap_or_default();
        assert!(bytes.starts_with(b"\x89PNG"), "{} saved", shot.display());
    }
    println!("screenshots: {}", screenshots.display());
    api.stop().await;
}
