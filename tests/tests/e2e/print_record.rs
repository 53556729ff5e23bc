//! The print record is exact on every path: one archive per print (also for a print already
//! running when its printer is first seen), the file and plate of that print or none with the
//! reason, and every end announced once on `FARM_EVENTS`, whichever witness saw it. With the
//! real services, NATS, Postgres and the printer simulator.

use std::time::Duration;

use printyard_api::auth::Permission;
use printyard_printer_sim::Model;
use printyard_printer_sim::farm::{DEMO_3MF, DEMO_PATH};
use printyard_printer_sim::printer::{GcodeState, Printer};
use printyard_tests::receiver::{Behaviour, Received, Receiver};
use printyard_tests::sse::{Sse, read_events};
use printyard_tests::threemf::{Slicing, sliced_3mf};
use printyard_tests::{
    Running, SimFarm, TestEnv, eventually, get_json, keyed_http, post_printer,
    spawn_api_and_client, spawn_archive, spawn_gateway_with, spawn_notifier, spawn_scheduler_with,
    spawn_stats, upload_file,
};
use serde_json::{Value, json};

struct World {
    env: TestEnv,
    sim: SimFarm,
    api: Running,
    _archive: Running,
    _scheduler: Running,
    _stats: Running,
    _notifier: Running,
    /// The gateway running now (taken by a test that stops it).
    gateway: tokio::sync::Mutex<Option<Running>>,
    client: reqwest::Client,
}

/// The services but the gateway, and a simulated farm of `models` registered through the API
/// (ids 1, 2, … in order).
async fn world(models: &[Model], speed: f64) -> World {
    let env = TestEnv::new().await;
    let sim = SimFarm::start(models, speed).await;
    let archive = spawn_archive(&env).await;
    let (api, client) = spawn_api_and_client(&env).await;
    let mut scheduler = env.scheduler_config();
    scheduler.scheduler.claim_lease_secs = 3;
    let scheduler = spawn_scheduler_with(scheduler).await;
    let stats = spawn_stats(&env).await;
    let notifier = spawn_notifier(&env).await;
    let world = World {
        env,
        sim,
        api,
        _archive: archive,
        _scheduler: scheduler,
        _stats: stats,
        _notifier: notifier,
        gateway: Default::default(),
        client,
    };
    for (i, printer) in world.sim.farm.printers.iter().enumerate() {
        let body = json!({
            "name": format!("Printer {}", i + 1),
            "ip_address": printer.spec.ip.to_string(),
            "access_code": printer.spec.access_code,
            "serial_number": printer.spec.serial,
            "auto_clear_plate": true,
        });
        post_printer(&world.client, &world.api.api_url(""), &body).await;
    }
    world
}

impl World {
    fn printer(&self, id: i64) -> &Printer {
        &self.sim.farm.printers[id as usize - 1]
    }

    fn gateway_config(&self) -> printyard_gateway::Config {
        let mut config = self.sim.gateway_config(&self.env);
        config.gateway.capture_window_secs = 6;
        config.gateway.lease_secs = 3;
        config
    }

    async fn start_gateway(&self) {
        *self.gateway.lock().await = Some(spawn_gateway_with(self.gateway_config()).await);
        for id in 1..=self.sim.farm.printers.len() as i64 {
            let url = self.api.api_url(&format!("/printers/{id}/status"));
            let client = &self.client;
            eventually(Duration::from_secs(20), "the printer connected", || {
                let url = url.clone();
                async move {
                    let status = get_json(client, &url).await?;
                    (status["connected"] == true).then_some(())
                }
            })
            .await;
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api.send_json(&self.client, method, path, body).await
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn upload(&self, file: Vec<u8>, name: &str) -> Value {
        upload_file(&self.client, &self.api.api_url(""), file, name).await
    }

    /// The archives of printer `id`, oldest first.
    async fn prints_of(&self, id: i64) -> Vec<Value> {
        let mut archives = self
            .get(&format!("/archives?printer_id={id}&limit=100"))
            .await["archives"]
            .as_array()
            .unwrap()
            .clone();
        archives.reverse();
        archives
    }

    /// Waits until printer `id`'s archives satisfy `done`.
    async fn prints_where(
        &self,
        id: i64,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        eventually(Duration::from_secs(60), what, || async {
            let prints = self.prints_of(id).await;
            done(&prints).then_some(prints)
        })
        .await
    }

    async fn job_where(&self, id: i64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        eventually(Duration::from_secs(60), what, || async {
            let (status, jobs) = self.send(reqwest::Method::GET, "/queue", None).await;
            if status != 200 {
                return None;
            }
            let job = jobs.as_array()?.iter().find(|j| j["id"] == id)?.clone();
            done(&job).then_some(job)
        })
        .await
    }

    async fn stop_gateway(&self) {
        let running = self.gateway.lock().await.take();
        running.expect("a gateway runs").stop().await;
    }

    /// A webhook for every print end, delivered to a receiver on loopback.
    async fn webhook_for_ends(&self) -> Receiver {
        let receiver = Receiver::start(Behaviour::Correct).await;
        let admin = keyed_http(&self.env.api_key(&[Permission::Admin]).await);
        let (status, body) = self
            .api
            .send_json(
                &admin,
                reqwest::Method::POST,
                "/webhooks",
                Some(json!({"url": receiver.url("/hook"), "events": END_EVENTS})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        receiver
    }

    fn start_demo_print(&self, id: i64) {
        let printer = self.printer(id);
        printer.store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
        printer.start_from_touchscreen(DEMO_PATH, 1).unwrap();
    }

    async fn printer_reaches(&self, id: i64, state: GcodeState) {
        eventually(Duration::from_secs(60), "the printer's state", || async {
            (self.printer(id).snapshot().gcode_state == state).then_some(())
        })
        .await;
    }
}

const END_EVENTS: [&str; 4] = [
    "print_complete",
    "print_failed",
    "print_stopped",
    "print_unknown",
];

fn two_plates_for_x1c() -> Vec<u8> {
    sliced_3mf(&Slicing {
        model_id: "BL-P001",
        title: "Bracket",
        plates: 2,
        ..Default::default()
    })
}

#[tokio::test]
async fn a_job_for_plate_two_is_archived_as_plate_two_also_when_another_gateway_sees_it_start() {
    let world = world(&[Model::X1C], 100.0).await;
    world.start_gateway().await;
    let library = world
        .upload(two_plates_for_x1c(), "bracket.gcode.3mf")
        .await;
    assert_eq!(library["plates"], 2, "{library}");
    // The printer prepares in real time: the gateway that sent the job is replaced meanwhile,
    // and the next one sees the print start without having sent it.
    world.printer(1).set_speed(1.0);
    let (status, job) = world
        .send(
            reqwest::Method::POST,
            "/queue",
            Some(json!({"archive_id": library["id"], "printer_id": 1, "plate": 2})),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    let job = job["id"].as_i64().unwrap();
    world.printer_reaches(1, GcodeState::Prepare).await;
    world.stop_gateway().await;
    world.start_gateway().await;
    world.printer(1).set_speed(100.0);
    let done = world
        .job_where(job, "the job completed", |j| {
            j["status"] == "completed" && j["result_archive_id"].is_i64()
        })
        .await;
    let printed = world.printer(1).snapshot().last_project_file.unwrap();
    assert_eq!(printed["param"], "Metadata/plate_2.gcode");
    let archive = world
        .get(&format!("/archives/{}", done["result_archive_id"]))
        .await;
    assert_eq!(archive["status"], "success", "{archive}");
    assert_eq!(archive["plate"], 2, "{archive}");
    assert_eq!(
        archive["weight"], 5.66,
        "plate 2's planned grams: {archive}"
    );
    assert_eq!(archive["filament_used"], 5.66, "{archive}");
    assert_eq!(archive["file_sha256"], library["file_sha256"]);
    assert_eq!(world.prints_of(1).await.len(), 1, "one print, one archive");
}

#[tokio::test]
async fn a_reprint_from_the_touchscreen_after_a_queued_job_gets_no_file_but_the_reason() {
    let world = world(&[Model::X1C], 100.0).await;
    world.start_gateway().await;
    let library = world
        .upload(two_plates_for_x1c(), "bracket.gcode.3mf")
        .await;
    let (status, job) = world
        .send(
            reqwest::Method::POST,
            "/queue",
            Some(json!({"archive_id": library["id"], "printer_id": 1})),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    world
        .job_where(job["id"].as_i64().unwrap(), "the job completed", |j| {
            j["status"] == "completed"
        })
        .await;
    // Someone prints another file again from the X1's history: it is not in the storage FTPS
    // serves (the queued job's file is, and it is the newest there).
    let other = sliced_3mf(&Slicing {
        model_id: "BL-P001",
        title: "Manual",
        weight: 7.5,
        ..Default::default()
    });
    world
        .printer(1)
        .reprint_from_history("manual", other.into(), 1)
        .unwrap();
    let prints = world
        .prints_where(1, "the reprint archived and ended", |p| {
            p.len() == 2 && p[1]["status"] == "success" && p[1]["file_error"].is_string()
        })
        .await;
    let manual = &prints[1];
    assert_eq!(manual["name"], "manual", "{manual}");
    assert_eq!(
        manual["has_file"], false,
        "not the queued job's file: {manual}"
    );
    assert_eq!(manual["file_sha256"], Value::Null);
    assert_eq!(
        manual["plate"], 1,
        "from the printer's gcode_file: {manual}"
    );
    let reason = manual["file_error"].as_str().unwrap();
    assert!(
        reason.contains("the file of the print (manual) is not on the printer"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_printer_printing_before_it_is_added_gets_one_archive_that_ends() {
    let world = world(&[Model::X1C, Model::A1Mini], 100.0).await;
    // Both start before any gateway sees them: the X1C is still preparing when first seen
    // (its simulation runs in real time until then), the A1 mini already running.
    for id in [1, 2] {
        world
            .printer(id)
            .store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
    }
    world.printer(1).set_speed(1.0);
    world
        .printer(1)
        .start_from_touchscreen(DEMO_PATH, 1)
        .unwrap();
    world
        .printer(2)
        .start_from_touchscreen(DEMO_PATH, 1)
        .unwrap();
    world.printer_reaches(2, GcodeState::Running).await;
    world.start_gateway().await;
    assert_eq!(world.printer(1).snapshot().gcode_state, GcodeState::Prepare);
    tokio::time::sleep(Duration::from_secs(2)).await;
    world.printer(1).set_speed(100.0);
    for id in [1, 2] {
        world.printer_reaches(id, GcodeState::Finish).await;
        let prints = world
            .prints_where(id, "the print ended", |p| {
                !p.is_empty() && p.iter().all(|a| a["status"] != "printing")
            })
            .await;
        assert_eq!(prints.len(), 1, "one print, one archive: {prints:#?}");
        assert_eq!(prints[0]["status"], "success", "{:#?}", prints[0]);
        assert_eq!(prints[0]["has_file"], true, "{:#?}", prints[0]);
    }
    // Nothing is left open (a second archive of a print once stayed `printing` for ever).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let open = world.get("/archives?status=printing").await;
    assert_eq!(open["total"], 0, "{open}");
    for id in [1, 2] {
        assert_eq!(world.prints_of(id).await.len(), 1);
    }
}

#[tokio::test]
async fn a_print_that_ends_while_its_gateway_is_down_is_announced_to_webhooks_and_the_stream() {
    let world = world(&[Model::A1Mini], 100.0).await;
    let receiver = world.webhook_for_ends().await;
    world.start_gateway().await;
    let query = format!("?events={}&printer_id=1", END_EVENTS.join(","));
    let stream = read_events(
        &world.client,
        &world.api,
        &query,
        None,
        |events: &[Sse]| !events.is_empty(),
    );
    let watched = async {
        world.start_demo_print(1);
        world
            .prints_where(1, "the print archived", |p| {
                p.len() == 1 && p[0]["has_file"] == true
            })
            .await;
        // The gateway goes; the print finishes with nobody watching; a gateway comes back.
        world.stop_gateway().await;
        world.printer_reaches(1, GcodeState::Finish).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        world.start_gateway().await;
    };
    let (events, ()) = tokio::join!(stream, watched);
    let prints = world
        .prints_where(1, "the print closed", |p| p[0]["status"] != "printing")
        .await;
    let archive = &prints[0];
    assert_eq!(archive["status"], "success", "{archive}");
    assert!(
        archive["end_reason"]
            .as_str()
            .unwrap()
            .contains("seen again")
    );

    // The live stream said it, with the archive and how the end was learned.
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event, "print_complete");
    let data = &events[0].data["data"];
    assert_eq!(data["archive_id"], archive["id"]);
    assert_eq!(data["observed"], "printer_seen_again");
    assert_eq!(data["end_time_known"], false);
    assert_eq!(data["status"], "success");
    // So did the webhook, once.
    let bodies = eventually(Duration::from_secs(20), "the webhook", || async {
        let bodies: Vec<Value> = receiver.requests().iter().map(Received::json).collect();
        (!bodies.is_empty()).then_some(bodies)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.delivered_ids().len(), 1, "announced once");
    assert_eq!(bodies[0]["event"], "print_complete");
    assert_eq!(bodies[0]["data"]["archive_id"], archive["id"]);
    assert_eq!(bodies[0]["data"]["filename"], "demo-cube.gcode.3mf");
    assert_eq!(bodies[0]["data"]["status"], "success");
}

#[tokio::test]
async fn prints_of_deleted_printers_are_counted_apart_from_the_success_rate() {
    let world = world(&[Model::A1Mini, Model::A1Mini, Model::A1Mini], 100.0).await;
    let receiver = world.webhook_for_ends().await;
    world.start_gateway().await;
    // One print succeeds; two printers are deleted mid-print.
    for id in 1..=3 {
        world.start_demo_print(id);
    }
    for id in 2..=3 {
        world
            .prints_where(id, "the print archived", |p| p.len() == 1)
            .await;
        let (status, body) = world
            .send(reqwest::Method::DELETE, &format!("/printers/{id}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
    }
    world.printer_reaches(1, GcodeState::Finish).await;
    let stats = eventually(Duration::from_secs(30), "every print counted", || async {
        let stats = world.get("/statistics").await;
        (stats["unknown_prints"] == 2 && stats["total_prints"] == 1).then_some(stats)
    })
    .await;
    assert_eq!(stats["successful_prints"], 1, "{stats}");
    assert_eq!(stats["success_rate"], 100.0, "over known outcomes: {stats}");
    // Equal to the archive's own sums.
    let archives = world.get("/archives?limit=100").await;
    let by_status = |status: &str| {
        archives["archives"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["status"] == status)
            .count()
    };
    assert_eq!(by_status("unknown"), 2);
    assert_eq!(by_status("success"), 1);
    // Every end announced: two `print_unknown` saying why, one `print_complete`.
    let ends = eventually(Duration::from_secs(20), "three ends delivered", || async {
        let bodies: Vec<Value> = receiver.requests().iter().map(Received::json).collect();
        (bodies.len() >= 3).then_some(bodies)
    })
    .await;
    let mut kinds: Vec<&str> = ends.iter().map(|b| b["event"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["print_complete", "print_unknown", "print_unknown"]);
    for unknown in ends.iter().filter(|b| b["event"] == "print_unknown") {
        assert_eq!(unknown["data"]["status"], "unknown");
        let reason = unknown["data"]["end_reason"].as_str().unwrap();
        assert!(reason.contains("deleted"), "{reason}");
    }
}

/// A takeover racing the previous gateway's last event: the new gateway's first look (the
/// printer idle) is handled before the old gateway's end of the print. The inference
/// (`unknown`) is not announced during its grace, and the end the old gateway saw replaces it:
/// one announcement, `print_complete`, seen by the gateway.
#[tokio::test]
async fn an_end_handled_after_an_inference_replaces_it_before_anything_is_announced() {
    use futures::StreamExt;
    use printyard_contracts::farm::{EventKind, FarmEvent, Site, event_id};
    let env = TestEnv::new().await;
    let _archive = spawn_archive(&env).await;
    let (api, client) = spawn_api_and_client(&env).await;
    let nats = env.nats.client().await;
    let mut ends = nats.subscribe("printyard.events.*.1.>").await.unwrap();
    let js = async_nats::jetstream::new(nats);
    let publish = |kind, occurrence: &str, data: Value| {
        let event = FarmEvent {
            id: event_id("SIM1", kind, occurrence),
            kind,
            site: Site::default(),
            printer_id: 1,
            serial: "SIM1".into(),
            at: chrono::Utc::now(),
            data,
        };
        let js = js.clone();
        async move {
            printyard_service::farm_events::publish(&js, &event)
                .await
                .unwrap()
        }
    };
    let print = json!({"print": "cube@a.1", "job_name": "cube", "printer_name": "P"});
    publish(EventKind::PrintStarted, "cube@a.1.", print.clone()).await;
    let archives_url = api.api_url("/archives");
    let open = eventually(Duration::from_secs(20), "the print archived", || async {
        let list = get_json(&client, &archives_url).await?;
        list["archives"].as_array()?.first().cloned()
    })
    .await;
    // Another gateway's first look: the printer idle, another job shown.
    publish(
        EventKind::PrinterState,
        "seen.2",
        json!({"state": "idle", "job_name": "gear", "printer_name": "P"}),
    )
    .await;
    let url = api.api_url(&format!("/archives/{}", open["id"]));
    eventually(Duration::from_secs(20), "the inference", || async {
        let archive = get_json(&client, &url).await?;
        (archive["status"] == "unknown").then_some(())
    })
    .await;
    // The old gateway's end of it, handled late.
    publish(
        EventKind::PrintEnded,
        "cube@a.1.",
        json!({"print": "cube@a.1", "job_name": "cube", "outcome": "complete"}),
    )
    .await;
    let done = eventually(Duration::from_secs(20), "the end replacing it", || async {
        let archive = get_json(&client, &url).await?;
        (archive["status"] == "success").then_some(archive)
    })
    .await;
    assert_eq!(done["end_reason"], Value::Null, "{done}");
    // One announcement, after the grace would have passed: what the gateway saw.
    let mut announced = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(14);
    while let Ok(Some(message)) = tokio::time::timeout_at(until, ends.next()).await {
        let event: Value = serde_json::from_slice(&message.payload).unwrap();
        if event["id"]
            .as_str()
            .unwrap_or("")
            .starts_with("archive.print_end.")
        {
            announced.push(event);
        }
    }
    assert_eq!(announced.len(), 1, "{announced:#?}");
    assert_eq!(announced[0]["kind"], "print_complete");
    assert_eq!(announced[0]["data"]["observed"], "gateway");
    assert_eq!(announced[0]["data"]["archive_id"], open["id"]);
}
