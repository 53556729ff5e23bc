//! Auto-archiving end to end: a print started on a simulated printer "from the touchscreen"
//! travels gateway (MQTT events, FTPS capture) → NATS → archive → API, with the real
//! simulator, NATS, Postgres and object store.

use std::time::Duration;

use printyard_printer_sim::Model;
use printyard_printer_sim::farm::{DEMO_3MF, DEMO_PATH};
use printyard_printer_sim::printer::{GcodeState, Printer};
use printyard_tests::threemf::{Slicing, sliced_3mf};
use printyard_tests::{
    Running, SimFarm, TestEnv, eventually, spawn_api_and_client, spawn_archive, spawn_gateway_with,
};
use serde_json::{Value, json};

struct Setup {
    env: TestEnv,
    sim: SimFarm,
    api: Running,
    _gateway: Running,
    client: reqwest::Client,
}

async fn setup(speed: f64, capture_window_secs: u64) -> (Setup, Running) {
    setup_for(Model::A1Mini, speed, capture_window_secs).await
}

async fn setup_for(model: Model, speed: f64, capture_window_secs: u64) -> (Setup, Running) {
    let env = TestEnv::new().await;
    let sim = SimFarm::start(&[model], speed).await;
    let archive = spawn_archive(&env).await;
    let (api, client) = spawn_api_and_client(&env).await;
    let mut config = sim.gateway_config(&env);
    config.gateway.capture_window_secs = capture_window_secs;
    let gateway = spawn_gateway_with(config).await;
    let setup = Setup {
        env,
        sim,
        api,
        _gateway: gateway,
        client,
    };
    let printer = setup.printer();
    let response = setup
        .client
        .post(setup.api.api_url("/printers"))
        .json(&json!({
            "name": "Desk A1 mini", "ip_address": printer.spec.ip.to_string(),
            "access_code": printer.spec.access_code, "serial_number": printer.spec.serial,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    eventually(Duration::from_secs(15), "the printer connected", || async {
        let status = setup.get("/printers/1/status").await;
        (status["connected"] == true).then_some(())
    })
    .await;
    (setup, archive)
}

impl Setup {
    fn printer(&self) -> &Printer {
        &self.sim.farm.printers[0]
    }

    async fn get(&self, path: &str) -> Value {
        self.client
            .get(self.api.api_url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn archives(&self) -> Vec<Value> {
        self.get("/archives").await["archives"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Waits until the only archive satisfies `done`, and returns it.
    async fn archive_where(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        eventually(Duration::from_secs(40), what, || async {
            let archives = self.archives().await;
            assert!(archives.len() <= 1, "one print, one archive: {archives:?}");
            archives.into_iter().next().filter(|a| done(a))
        })
        .await
    }

    async fn start_print(&self) {
        self.start_print_of(DEMO_PATH, DEMO_3MF.to_vec());
    }

    /// `file` put on the printer at `path` and printed from its touchscreen.
    fn start_print_of(&self, path: &str, file: Vec<u8>) {
        self.printer().store(path, bytes::Bytes::from(file));
        self.printer().start_from_touchscreen(path, 1).unwrap();
    }

    /// The archive's 3MF, downloaded through the API.
    async fn archived_file(&self, id: i64) -> Vec<u8> {
        let response = self
            .client
            .get(self.api.api_url(&format!("/archives/{id}/3mf")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.bytes().await.unwrap().to_vec()
    }
}

#[tokio::test]
async fn a_touchscreen_print_is_archived_with_its_file_and_completes() {
    let (setup, _archive) = setup(60.0, 30).await;
    setup.start_print().await;

    let printing = setup
        .archive_where("the print archived with its file", |a| {
            a["status"] == "printing" && a["has_file"] == true
        })
        .await;
    assert_eq!(printing["printer_id"], 1);
    assert_eq!(printing["printer_name"], "Desk A1 mini");
    assert_eq!(printing["name"], "demo-cube", "named from the file");
    assert_eq!(printing["filename"], "demo-cube.gcode.3mf");
    assert_eq!(printing["print_time_estimate"], 1095);
    assert_eq!(printing["weight"], 2.83);
    assert_eq!(printing["printer_model_id"], "N1");
    assert_eq!(printing["filament_type"], "PLA");
    assert_eq!(printing["has_thumbnail"], true);
    assert!(printing["started_at"].is_string());
    let id = printing["id"].as_i64().unwrap();

    assert!(
        setup.archived_file(id).await == DEMO_3MF,
        "the archived 3MF is byte-identical to the printer's file"
    );

    let done = setup
        .archive_where("the print completed", |a| a["status"] == "success")
        .await;
    assert_eq!(done["id"], id);
    assert_eq!(done["filament_used"], 2.83, "a whole print uses the plan");
    assert!(done["completed_at"].is_string());
    assert!(done["duration"].as_i64().unwrap() >= 1, "{done}");
    assert_eq!(done["progress"], 100);
}

#[tokio::test]
async fn an_h2ds_touchscreen_print_is_archived_with_its_file_and_completes() {
    // The H2D names the file printing by its plate in the unpacked 3MF
    // (`/data/Metadata/plate_1.gcode`), as an X1 does: the gateway finds the 3MF by the
    // task's name.
    let (setup, _archive) = setup_for(Model::H2D, 60.0, 30).await;
    let file = sliced_3mf(&Slicing {
        model_id: "O1D",
        title: "Hinge",
        ..Default::default()
    });
    setup.start_print_of("/hinge.gcode.3mf", file.clone());
    let printing = setup
        .archive_where("the H2D's print archived with its file", |a| {
            a["status"] == "printing" && a["has_file"] == true
        })
        .await;
    assert_eq!(printing["name"], "Hinge", "{printing}");
    assert_eq!(printing["printer_model_id"], "O1D");
    assert_eq!(printing["plate"], 1);
    let id = printing["id"].as_i64().unwrap();
    assert!(
        setup.archived_file(id).await == file,
        "the archived 3MF is byte-identical to the printer's file"
    );
    let done = setup
        .archive_where("the H2D's print completed", |a| a["status"] == "success")
        .await;
    assert_eq!(done["id"], id);
    assert_eq!(done["filament_used"], 2.83, "{done}");
}

#[tokio::test]
async fn a_stopped_print_is_archived_as_stopped_with_its_partial_use() {
    let (setup, _archive) = setup(10.0, 30).await;
    setup.start_print().await;
    setup
        .archive_where("the print archived with its file", |a| {
            a["has_file"] == true
        })
        .await;
    eventually(Duration::from_secs(30), "some progress", || async {
        let snapshot = setup.printer().snapshot();
        (snapshot.gcode_state == GcodeState::Running && snapshot.progress >= 5).then_some(())
    })
    .await;
    let response = setup
        .client
        .post(setup.api.api_url("/printers/1/stop"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    let stopped = setup
        .archive_where("the print stopped", |a| a["status"] == "stopped")
        .await;
    let progress = stopped["progress"].as_f64().unwrap();
    assert!((5.0..100.0).contains(&progress), "{stopped}");
    let used = stopped["filament_used"].as_f64().unwrap();
    let expected = 2.83 * progress / 100.0;
    assert!(
        (used - expected).abs() < 0.03,
        "used {used} g, expected about {expected} g at {progress} %"
    );
    assert!(stopped["duration"].is_i64());
}

#[tokio::test]
async fn a_restart_of_archive_mid_print_loses_nothing_and_duplicates_nothing() {
    let (setup, archive) = setup(40.0, 30).await;
    setup.start_print().await;
    setup
        .archive_where("the print archived", |a| a["has_file"] == true)
        .await;
    archive.stop().await;
    // The print ends while archive is down; its events wait in the stream.
    eventually(Duration::from_secs(60), "the print finished", || async {
        (setup.printer().snapshot().gcode_state == GcodeState::Finish).then_some(())
    })
    .await;
    let _archive = spawn_archive(&setup.env).await;
    let done = setup
        .archive_where("the completion applied after the restart", |a| {
            a["status"] == "success"
        })
        .await;
    assert_eq!(done["has_file"], true);
    let pool = setup.env.pool().await;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM archive.applied_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        applied >= 3,
        "start, file and completion recorded: {applied}"
    );
}

#[tokio::test]
async fn a_file_the_gateway_cannot_fetch_leaves_the_archive_with_the_reason() {
    let (setup, _archive) = setup(10.0, 3).await;
    setup.start_print().await;
    // The job is loaded; the file goes before the gateway looks for it.
    assert!(setup.printer().delete(DEMO_PATH));
    let archive = setup
        .archive_where("the archive says why it has no file", |a| {
            !a["file_error"].is_null()
        })
        .await;
    assert_eq!(archive["has_file"], false);
    assert_eq!(archive["status"], "printing");
    assert_eq!(
        archive["name"], "demo-cube",
        "named from what the printer reported"
    );
    let reason = archive["file_error"].as_str().unwrap();
    assert!(reason.contains("not on the printer"), "{reason}");
    let response = setup
        .client
        .get(
            setup
                .api
                .api_url(&format!("/archives/{}/3mf", archive["id"])),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn a_hostile_file_on_the_printer_is_refused_with_the_reason() {
    let (setup, _archive) = setup(10.0, 10).await;
    setup.start_print().await;
    // The job is loaded; what the gateway then finds under its name is no 3MF at all.
    setup.printer().store(
        DEMO_PATH,
        bytes::Bytes::from_static(b"<html>not a zip</html>"),
    );
    let archive = setup
        .archive_where("the archive says the file was refused", |a| {
            !a["file_error"].is_null()
        })
        .await;
    assert_eq!(archive["has_file"], false);
    let reason = archive["file_error"].as_str().unwrap();
    assert!(reason.contains("not a 3MF"), "{reason}");
    assert!(
        stored_nothing(&setup.env.objects.0),
        "nothing of it reached storage"
    );
}

fn stored_nothing(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir.join("3mf"))
        .map(|mut entries| entries.next().is_none())
        .unwrap_or(true)
}
