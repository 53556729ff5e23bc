//! The print queue end to end: jobs queued through the API are dispatched by the scheduler to
//! simulated printers (FTPS upload, `project_file`, confirmation), follow their prints to the
//! end and link the archive the print produced; with real NATS, Postgres, object storage and
//! the printer simulator.

use std::time::Duration;

use futures::StreamExt;
use printyard_printer_sim::Model;
use printyard_printer_sim::printer::{Faults, GcodeState, Printer, md5_hex};
use printyard_tests::threemf::{Slicing, sliced_3mf};
use printyard_tests::{
    ChildService, Running, SimFarm, TestEnv, eventually, run_child_scheduler, spawn_api_and_client,
    spawn_archive, spawn_gateway_with, spawn_scheduler_with, upload_file,
};
use serde_json::{Value, json};

struct World {
    env: TestEnv,
    sim: SimFarm,
    api: Running,
    _archive: Running,
    gateway: Option<Running>,
    scheduler: Option<Running>,
    client: reqwest::Client,
}

/// Services and a simulated farm of `models` (printers registered through the API, ids 1, 2,
/// … in order). The scheduler's claims last 3 s, so a takeover is quick.
async fn world(models: &[Model], speed: f64, with_gateway: bool, auto_clear: bool) -> World {
    let env = TestEnv::new().await;
    let sim = SimFarm::start(models, speed).await;
    let archive = spawn_archive(&env).await;
    let (api, client) = spawn_api_and_client(&env).await;
    let scheduler = spawn_scheduler_with(scheduler_config(&env)).await;
    let mut world = World {
        env,
        sim,
        api,
        _archive: archive,
        gateway: None,
        scheduler: Some(scheduler),
        client,
    };
    for (i, printer) in world.sim.farm.printers.clone().iter().enumerate() {
        let (status, body) = world
            .send(
                reqwest::Method::POST,
                "/printers",
                Some(json!({
                    "name": format!("Printer {}", i + 1),
                    "ip_address": printer.spec.ip.to_string(),
                    "access_code": printer.spec.access_code,
                    "serial_number": printer.spec.serial,
                    "auto_clear_plate": auto_clear,
                })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    if with_gateway {
        world.start_gateway().await;
    }
    world
}

fn scheduler_config(env: &TestEnv) -> printyard_scheduler::Config {
    let mut config = env.scheduler_config();
    config.scheduler.claim_lease_secs = 3;
    config.scheduler.retry_backoff_secs = 1;
    config
}

impl World {
    fn printer(&self, id: i64) -> &Printer {
        &self.sim.farm.printers[id as usize - 1]
    }

    async fn start_gateway(&mut self) {
        let mut config = self.sim.gateway_config(&self.env);
        config.gateway.capture_window_secs = 20;
        self.gateway = Some(spawn_gateway_with(config).await);
        let this = &*self;
        for id in 1..=this.sim.farm.printers.len() as i64 {
            eventually(
                Duration::from_secs(20),
                "the printer connected",
                || async move {
                    let status = this.get(&format!("/printers/{id}/status")).await;
                    (status["connected"] == true).then_some(())
                },
            )
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

    async fn queue(&self, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, "/queue", Some(body)).await
    }

    async fn queued(&self, body: Value) -> i64 {
        let (status, job) = self.queue(body).await;
        assert_eq!(status, 201, "{job}");
        job["id"].as_i64().unwrap()
    }

    /// The queue. A 503 ("try again shortly") is tried again a few times: a request that
    /// reached a scheduler replica as it was killed goes unanswered (seen once in CI).
    async fn jobs(&self) -> Vec<Value> {
        for _ in 0..10 {
            let (status, body) = self.send(reqwest::Method::GET, "/queue", None).await;
            if status != 503 {
                assert_eq!(status, 200, "GET /queue: {body}");
                return body.as_array().unwrap().clone();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!("GET /queue: the scheduler stayed unavailable");
    }

    async fn job(&self, id: i64) -> Value {
        self.jobs()
            .await
            .into_iter()
            .find(|j| j["id"] == id)
            .unwrap_or_else(|| panic!("job {id} is listed"))
    }

    async fn job_where(&self, id: i64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        eventually(Duration::from_secs(60), what, || async {
            let job = self.job(id).await;
            done(&job).then_some(job)
        })
        .await
    }

    /// Job names the simulated printers started, across the farm.
    fn started(&self) -> Vec<String> {
        self.sim
            .farm
            .printers
            .iter()
            .flat_map(|p| p.snapshot().started_jobs)
            .collect()
    }

    async fn clear_plate(&self, printer: i64) {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                &format!("/printers/{printer}/clear-plate"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "plate_cleared");
    }
}

/// A subscription to every farm event.
async fn farm_events(env: &TestEnv) -> async_nats::Subscriber {
    env.nats
        .client()
        .await
        .subscribe("printyard.events.>")
        .await
        .unwrap()
}

/// The kinds of the events seen so far for queue job `job`.
async fn queue_events(events: &mut async_nats::Subscriber, job: i64, until: &str) -> Vec<String> {
    let mut kinds = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !kinds.iter().any(|k| k == until) {
        let message = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("no {until} for job {job}: saw {kinds:?}"))
            .unwrap();
        let event: Value = serde_json::from_slice(&message.payload).unwrap();
        let kind = event["kind"].as_str().unwrap_or_default().to_owned();
        if kind.starts_with("queue_job") && event["data"]["job_id"] == job {
            kinds.push(kind);
        }
    }
    kinds
}

#[tokio::test]
async fn a_queued_job_prints_on_its_printer_completes_with_its_archive_then_waits_for_the_plate() {
    let world = world(&[Model::A1Mini, Model::A1Mini], 200.0, true, false).await;
    let mut events = farm_events(&world.env).await;
    let file = sliced_3mf(&Slicing {
        title: "Gear",
        ..Default::default()
    });
    let library = world.upload(file.clone(), "gear.gcode.3mf").await;
    let archive_id = library["id"].as_i64().unwrap();
    let job_id = world
        .queued(json!({"archive_id": archive_id, "printer_id": 2}))
        .await;

    let printing = world
        .job_where(job_id, "the job printing", |j| j["status"] == "printing")
        .await;
    assert_eq!(printing["printer_assigned"], 2);
    assert_eq!(printing["printer_name"], "Printer 2");
    assert_eq!(printing["name"], "Gear");
    assert_eq!(printing["attempts"], 1);
    assert_eq!(printing["sliced_for"], "A1 mini");
    assert_eq!(
        printing["thumbnail_url"],
        format!("/api/v1/archives/{archive_id}/thumbnail")
    );
    let subtask = format!("Gear-pyq{job_id}");
    assert_eq!(
        world.printer(2).snapshot().started_jobs,
        std::slice::from_ref(&subtask)
    );
    assert!(world.printer(1).snapshot().started_jobs.is_empty());
    // The printer got the file it checks by MD5, and the AMS tray of the plate's filament.
    let sent = world.printer(2).snapshot().last_project_file.unwrap();
    assert_eq!(sent["md5"], md5_hex(&file));
    assert_eq!(sent["param"], "Metadata/plate_1.gcode");
    assert_eq!(sent["use_ams"], true);
    assert_eq!(sent["ams_mapping"], json!([0]), "the first PLA tray");
    assert_eq!(
        world
            .printer(2)
            .file(&format!("/{subtask}.gcode.3mf"))
            .unwrap()
            .as_ref(),
        file.as_slice(),
        "the upload is byte-identical"
    );

    let done = world
        .job_where(job_id, "the job completed with its archive", |j| {
            j["status"] == "completed" && j["result_archive_id"].is_i64()
        })
        .await;
    assert!(done["completed_at"].is_string() && done["started_at"].is_string());
    assert_eq!(done["error"], Value::Null);
    let result = world
        .get(&format!("/archives/{}", done["result_archive_id"]))
        .await;
    assert_eq!(result["status"], "success");
    assert_eq!(result["printer_id"], 2);
    assert_eq!(result["queue_job_id"], job_id);
    assert_eq!(result["source_archive_id"], archive_id);
    assert_eq!(result["name"], "Gear", "named without the queue's tag");
    assert_eq!(
        result["file_sha256"], library["file_sha256"],
        "the print's archive reuses the library file"
    );
    assert_eq!(result["has_file"], true);
    assert_eq!(
        queue_events(&mut events, job_id, "queue_job_completed").await,
        ["queue_job_started", "queue_job_completed"]
    );

    // The part is still on the plate: the next job for this printer waits for a person.
    let next = world
        .queued(json!({"archive_id": archive_id, "printer_id": 2}))
        .await;
    let waiting = world
        .job_where(next, "the plate reason", |j| {
            j["waiting_reason"].is_string()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting_still = world.job(next).await;
    assert_eq!(waiting_still["status"], "pending", "{waiting}");
    assert_eq!(
        waiting_still["waiting_reason"],
        "plate not cleared on Printer 2"
    );
    assert_eq!(world.printer(2).snapshot().started_jobs.len(), 1);
    world.clear_plate(2).await;
    world
        .job_where(next, "the next job printing", |j| j["status"] == "printing")
        .await;
    assert_eq!(world.printer(2).snapshot().started_jobs.len(), 2);
}

#[tokio::test]
async fn a_job_for_an_x1c_waits_while_only_p1s_printers_are_idle_with_its_reason() {
    let world = world(&[Model::P1S, Model::P1S], 200.0, true, true).await;
    let x1c_file = sliced_3mf(&Slicing {
        model_id: "BL-P001",
        title: "Bracket",
        ..Default::default()
    });
    let archive_id = world.upload(x1c_file, "bracket.3mf").await["id"]
        .as_i64()
        .unwrap();

    // Refused outright where the target cannot print it.
    let (status, body) = world
        .queue(json!({"archive_id": archive_id, "printer_id": 1}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "VALIDATION_ERROR");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("X1 Carbon") && detail.contains("P1S"),
        "the detail says which model the file needs: {detail}"
    );
    let (status, body) = world
        .queue(json!({"archive_id": archive_id, "model": "P1S"}))
        .await;
    assert_eq!(status, 422, "{body}");

    // For any printer it waits, and says why.
    let job = world.queued(json!({"archive_id": archive_id})).await;
    let waiting = world.job(job).await;
    assert_eq!(waiting["status"], "pending");
    assert_eq!(waiting["waiting_reason"], "no X1 Carbon printer");
    assert_eq!(waiting["sliced_for"], "X1 Carbon");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(world.job(job).await["status"], "pending");
    assert!(world.started().is_empty(), "no P1S got it");
}

#[tokio::test]
async fn a_job_needing_petg_waits_until_petg_is_loaded_and_maps_that_tray() {
    let world = world(&[Model::P1S], 200.0, true, true).await;
    let petg = sliced_3mf(&Slicing {
        model_id: "C12",
        filaments: &[("PETG", "#FF8000")],
        title: "Clip",
        ..Default::default()
    });
    let archive_id = world.upload(petg, "clip.3mf").await["id"].as_i64().unwrap();
    let job = world.queued(json!({"archive_id": archive_id})).await;
    let waiting = world
        .job_where(job, "the filament reason", |j| {
            j["waiting_reason"] == "PETG not loaded"
        })
        .await;
    assert_eq!(waiting["filament_types"], json!(["PETG"]));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(world.job(job).await["status"], "pending");

    // A person loads PETG into the third tray (the printer reports it; the queue sees it).
    world.printer(1).load_filament(2, "PETG", "FF8000FF");
    world
        .job_where(job, "the job printing", |j| j["status"] == "printing")
        .await;
    let sent = world.printer(1).snapshot().last_project_file.unwrap();
    assert_eq!(sent["ams_mapping"], json!([2]));
}

#[tokio::test]
async fn a_scheduled_job_waits_for_its_time() {
    let world = world(&[Model::A1Mini], 200.0, true, true).await;
    let archive_id = world
        .upload(sliced_3mf(&Slicing::default()), "cube.3mf")
        .await["id"]
        .as_i64()
        .unwrap();
    let at = chrono::Utc::now() + chrono::Duration::seconds(4);
    let job = world
        .queued(json!({"archive_id": archive_id, "scheduled_time": at.to_rfc3339()}))
        .await;
    let waiting = world.job(job).await;
    assert_eq!(waiting["status"], "pending");
    let reason = waiting["waiting_reason"].as_str().unwrap();
    assert!(reason.starts_with("scheduled for "), "{reason}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(world.job(job).await["status"], "pending");
    assert!(world.started().is_empty());
    let printing = world
        .job_where(job, "the job printing", |j| j["status"] == "printing")
        .await;
    let started =
        chrono::DateTime::parse_from_rfc3339(printing["started_at"].as_str().unwrap()).unwrap();
    assert!(started >= at, "started {started}, scheduled {at}");
}

#[tokio::test]
async fn reorder_changes_what_starts_next() {
    // No gateway yet: the printer is offline while the queue is arranged.
    let mut world = world(&[Model::A1Mini], 200.0, false, true).await;
    let archive_id = world
        .upload(sliced_3mf(&Slicing::default()), "cube.3mf")
        .await["id"]
        .as_i64()
        .unwrap();
    let first = world.queued(json!({"archive_id": archive_id})).await;
    let second = world.queued(json!({"archive_id": archive_id})).await;
    let third = world.queued(json!({"archive_id": archive_id})).await;
    assert_eq!(
        world.job(first).await["waiting_reason"],
        "no A1 mini online"
    );

    // Unknown ids and duplicates change nothing.
    let positions =
        |jobs: Vec<Value>| -> Vec<i64> { jobs.iter().map(|j| j["id"].as_i64().unwrap()).collect() };
    for bad in [
        json!({"order": [third, 999_999]}),
        json!({"order": [third, third]}),
    ] {
        let (status, body) = world
            .send(reqwest::Method::POST, "/queue/reorder", Some(bad))
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(positions(world.jobs().await), [first, second, third]);
    }
    let (status, body) = world
        .send(
            reqwest::Method::POST,
            "/queue/reorder",
            Some(json!({"order": [third, first]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(positions(world.jobs().await), [third, second, first]);

    world.start_gateway().await;
    world
        .job_where(third, "the reordered job printing", |j| {
            j["status"] == "printing"
        })
        .await;
    assert_eq!(world.job(second).await["status"], "pending");
    assert_eq!(world.job(first).await["status"], "pending");
    assert_eq!(world.job(second).await["waiting_reason"], "no idle A1 mini");
}

#[tokio::test]
async fn a_refused_start_fails_the_job_with_the_printers_reason() {
    let world = world(&[Model::P1S], 200.0, true, true).await;
    let mut events = farm_events(&world.env).await;
    world.printer(1).set_faults(Faults {
        require_signed: true,
        ..Default::default()
    });
    let file = sliced_3mf(&Slicing {
        model_id: "C12",
        ..Default::default()
    });
    let archive_id = world.upload(file, "cube.3mf").await["id"].as_i64().unwrap();
    let job = world.queued(json!({"archive_id": archive_id})).await;
    let failed = world
        .job_where(job, "the job failed", |j| j["status"] == "failed")
        .await;
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("Developer Mode"), "{error}");
    assert_eq!(failed["attempts"], 1, "a refusal is not retried");
    assert!(world.printer(1).snapshot().started_jobs.is_empty());
    assert_eq!(world.printer(1).snapshot().gcode_state, GcodeState::Idle);
    assert_eq!(
        queue_events(&mut events, job, "queue_job_failed").await,
        ["queue_job_failed"]
    );
}

#[tokio::test]
async fn an_upload_the_printer_refuses_is_retried_with_backoff_then_fails_with_the_reason() {
    let world = world(&[Model::A1Mini], 200.0, true, true).await;
    world.printer(1).set_faults(Faults {
        no_sd_card: true,
        ..Default::default()
    });
    let archive_id = world
        .upload(sliced_3mf(&Slicing::default()), "cube.3mf")
        .await["id"]
        .as_i64()
        .unwrap();
    let job = world.queued(json!({"archive_id": archive_id})).await;
    // Between attempts the job is pending again and says when it is tried next, and why.
    let retrying = world
        .job_where(job, "a retry after the first attempt", |j| {
            j["status"] == "pending" && j["attempts"] == 1
        })
        .await;
    let reason = retrying["waiting_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("retrying after ") && reason.contains("553"),
        "{reason}"
    );
    // Three attempts (`scheduler.max_attempts`), one then two seconds apart, then failed.
    let failed = world
        .job_where(job, "the job failed", |j| j["status"] == "failed")
        .await;
    assert_eq!(failed["attempts"], 3);
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("upload failed") && error.contains("553"),
        "{error}"
    );
    assert!(world.started().is_empty());
}

#[tokio::test]
async fn queue_input_is_checked_and_jobs_on_printers_cannot_be_removed() {
    let world = world(&[Model::A1Mini], 200.0, true, true).await;
    let library = world
        .upload(sliced_3mf(&Slicing::default()), "cube.3mf")
        .await;
    let archive_id = library["id"].as_i64().unwrap();

    let cases = [
        (json!({"archive_id": 987_654}), 404, "NOT_FOUND"),
        (
            json!({"archive_id": archive_id, "printer_id": 99}),
            404,
            "NOT_FOUND",
        ),
        (
            json!({"archive_id": archive_id, "plate": 2}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            json!({"archive_id": archive_id, "plate": 0}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            json!({"archive_id": archive_id, "model": "Ender 3"}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            json!({"archive_id": archive_id, "site": "Not A Site"}),
            422,
            "VALIDATION_ERROR",
        ),
        (json!({"archive_id": "seven"}), 422, "VALIDATION_ERROR"),
        (
            json!({"archive_id": archive_id, "colour": "red"}),
            422,
            "VALIDATION_ERROR",
        ),
        (
            json!({"archive_id": archive_id, "scheduled_time": "tomorrow"}),
            422,
            "VALIDATION_ERROR",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = world.queue(body.clone()).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    let (_, plate) = world
        .queue(json!({"archive_id": archive_id, "plate": 2}))
        .await;
    assert!(
        plate["detail"].as_str().unwrap().contains("plate 2"),
        "{plate}"
    );

    // An archive without a file (a print whose file could not be fetched) cannot be queued.
    let pool = world.env.pool().await;
    let bare: i64 = sqlx::query_scalar(
        "INSERT INTO archive.archives (name, filename, status, file_error) \
         VALUES ('lost', 'lost.3mf', 'failed', 'the file is not on the printer') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let (status, body) = world.queue(json!({"archive_id": bare})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("no 3MF file"),
        "{body}"
    );

    let (status, body) = world
        .send(reqwest::Method::GET, "/queue?status=queued", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("VALIDATION_ERROR"))
    );
    let (status, _) = world
        .send(reqwest::Method::DELETE, "/queue/424242", None)
        .await;
    assert_eq!(status, 404);

    // A job on its printer is stopped, not removed; a pending one is removed.
    let printing = world.queued(json!({"archive_id": archive_id})).await;
    world
        .job_where(printing, "the job printing", |j| j["status"] == "printing")
        .await;
    let pending = world.queued(json!({"archive_id": archive_id})).await;
    let (status, body) = world
        .send(reqwest::Method::DELETE, &format!("/queue/{printing}"), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("JOB_PRINTING")),
        "{body}"
    );
    let (status, body) = world
        .send(reqwest::Method::DELETE, &format!("/queue/{pending}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"id": pending, "deleted": true}));
    let ids: Vec<Value> = world.jobs().await.iter().map(|j| j["id"].clone()).collect();
    assert_eq!(ids, [json!(printing)]);
    let printing_only = world.get("/queue?status=printing").await;
    assert_eq!(printing_only.as_array().unwrap().len(), 1);
    let by_printer = world.get("/queue?printer_id=1").await;
    assert_eq!(by_printer.as_array().unwrap().len(), 1);
}

#[test]
#[ignore = "a child process of two_schedulers_one_killed_mid_dispatch_print_every_job_exactly_once"]
fn child_scheduler() {
    run_child_scheduler();
}

#[tokio::test]
async fn two_schedulers_one_killed_mid_dispatch_print_every_job_exactly_once() {
    // Printers offline (no gateway yet) while the jobs are queued.
    let mut world = world(
        &[Model::P1S, Model::P1S, Model::P1S, Model::P1S],
        200.0,
        false,
        true,
    )
    .await;
    // Uploads take a few seconds (the file is padded, printers write slowly), so the kill
    // lands while jobs are dispatching.
    for printer in &world.sim.farm.printers {
        printer.set_faults(Faults {
            ftps_delay_ms: 300,
            ..Default::default()
        });
    }
    let file = sliced_3mf(&Slicing {
        model_id: "C12",
        title: "Part",
        padding: 600 * 1024,
        ..Default::default()
    });
    let archive_id = world.upload(file, "part.3mf").await["id"].as_i64().unwrap();
    let mut jobs = Vec::new();
    for _ in 0..6 {
        jobs.push(world.queued(json!({"archive_id": archive_id})).await);
    }
    // The in-process scheduler steps aside: the doomed one, in a process of its own, claims.
    world.scheduler.take().unwrap().stop().await;
    let doomed =
        ChildService::spawn_scheduler("queue::child_scheduler", &scheduler_config(&world.env));
    world.start_gateway().await;
    eventually(Duration::from_secs(30), "jobs dispatching", || async {
        let jobs = world.jobs().await;
        let dispatching = jobs.iter().filter(|j| j["status"] == "dispatching").count();
        (dispatching >= 2).then_some(())
    })
    .await;
    doomed.kill().await;
    let survivor = spawn_scheduler_with(scheduler_config(&world.env)).await;

    for job in &jobs {
        world
            .job_where(*job, "every job completed", |j| j["status"] == "completed")
            .await;
    }
    let mut started = world.started();
    started.sort();
    let mut expected: Vec<String> = jobs.iter().map(|j| format!("Part-pyq{j}")).collect();
    expected.sort();
    assert_eq!(started, expected, "every job printed exactly once");
    let jobs = world.jobs().await;
    assert!(
        jobs.iter()
            .all(|j| j["status"] == "completed" && j["attempts"] == 1),
        "none stuck, none sent twice: {jobs:?}"
    );
    survivor.stop().await;
}

#[tokio::test]
async fn a_printer_in_maintenance_gets_no_job_and_the_job_goes_elsewhere() {
    let world = world(&[Model::P1S, Model::P1S], 200.0, true, true).await;
    let file = sliced_3mf(&Slicing {
        model_id: "C12",
        title: "Hinge",
        ..Default::default()
    });
    let archive_id = world.upload(file, "hinge.3mf").await["id"]
        .as_i64()
        .unwrap();
    let (status, printer) = world
        .send(
            reqwest::Method::PATCH,
            "/printers/1",
            Some(json!({"maintenance": true})),
        )
        .await;
    assert_eq!(status, 200, "{printer}");
    assert_eq!(printer["maintenance"], true);

    // A job for the printer in maintenance waits, and says why.
    let for_one = world
        .queued(json!({"archive_id": archive_id, "printer_id": 1}))
        .await;
    let waiting = world
        .job_where(for_one, "the reason", |j| j["waiting_reason"].is_string())
        .await;
    assert_eq!(waiting["waiting_reason"], "Printer 1 is in maintenance");
    // A job for any P1S goes to the other one.
    let for_any = world.queued(json!({"archive_id": archive_id})).await;
    let started = world
        .job_where(for_any, "the job started elsewhere", |j| {
            j["printer_assigned"].is_i64()
        })
        .await;
    assert_eq!(started["printer_assigned"], 2);
    assert_eq!(world.job(for_one).await["status"], "pending");
    assert!(world.printer(1).snapshot().started_jobs.is_empty());
    assert_eq!(
        world.get("/printers/1/status").await["connected"],
        true,
        "the connection stayed up through the change"
    );

    // Out of maintenance, it takes its job.
    let (status, _) = world
        .send(
            reqwest::Method::PATCH,
            "/printers/1",
            Some(json!({"maintenance": false})),
        )
        .await;
    assert_eq!(status, 200);
    let started = world
        .job_where(for_one, "the job started on printer 1", |j| {
            j["printer_assigned"] == 1
        })
        .await;
    assert_ne!(started["status"], "pending");
}

#[tokio::test]
async fn staggered_starts_keep_a_sites_jobs_that_far_apart() {
    let mut world = world(&[Model::P1S, Model::P1S, Model::P1S], 50.0, true, true).await;
    // The same farm's scheduler, staggering starts at the default site by 3 s.
    if let Some(scheduler) = world.scheduler.take() {
        scheduler.stop().await;
    }
    let mut config = scheduler_config(&world.env);
    config
        .scheduler
        .stagger_secs_by_site
        .insert("default".into(), 3.0);
    world.scheduler = Some(spawn_scheduler_with(config).await);
    let file = sliced_3mf(&Slicing {
        model_id: "C12",
        title: "Clip",
        ..Default::default()
    });
    let archive_id = world.upload(file, "clip.3mf").await["id"].as_i64().unwrap();
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(world.queued(json!({"archive_id": archive_id})).await);
    }
    let mut started = Vec::new();
    for job in &jobs {
        let running = world
            .job_where(*job, "the job started", |j| j["started_at"].is_string())
            .await;
        let at: chrono::DateTime<chrono::Utc> =
            running["started_at"].as_str().unwrap().parse().unwrap();
        started.push(at);
    }
    started.sort();
    let gaps: Vec<f64> = started
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds() as f64 / 1000.0)
        .collect();
    println!("starts {:?} s apart with a 3 s stagger", gaps);
    assert!(
        gaps.iter().all(|gap| *gap >= 2.5),
        "three idle printers started {gaps:?} s apart, not 3 s"
    );
    let printers: std::collections::BTreeSet<i64> = {
        let mut set = std::collections::BTreeSet::new();
        for job in &jobs {
            set.insert(world.job(*job).await["printer_assigned"].as_i64().unwrap());
        }
        set
    };
    assert_eq!(printers.len(), 3, "one job each");
}
