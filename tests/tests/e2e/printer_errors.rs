//! Printer errors end to end: a fatal HMS error raised on a simulated printer during a queued
//! print is kept with the print it hit and the actions the printer allows (resume and stop while
//! paused on it); stopped and cleared, it offers retry, which queues the job again ahead of the
//! queue and prints it; a print error is kept too, and `/statistics/errors` counts both codes.

use std::time::Duration;

use printyard_printer_sim::Model;
use printyard_printer_sim::printer::GcodeState;
use printyard_tests::threemf::{Slicing, sliced_3mf};
use printyard_tests::{
    SimFarm, TestEnv, eventually, get_json, post_printer, spawn_api_and_client, spawn_archive,
    spawn_gateway_with, spawn_scheduler, spawn_stats, upload_file, wait_connected,
};
use serde_json::{Value, json};

const HMS_FATAL: (u32, u32) = (0x0300_0100, 0x0001_0001);
const HMS_CODE: &str = "HMS_0300_0100_0001_0001";

#[tokio::test]
async fn an_hms_error_is_kept_with_its_print_and_a_retry_from_it_requeues_the_job_first() {
    let env = TestEnv::new().await;
    let sim = SimFarm::start(&[Model::A1Mini], 5.0).await;
    let _archive = spawn_archive(&env).await;
    let _stats = spawn_stats(&env).await;
    let _scheduler = spawn_scheduler(&env).await;
    let (api, client) = spawn_api_and_client(&env).await;
    let _gateway = spawn_gateway_with(sim.gateway_config(&env)).await;
    let base = api.api_url("");
    let printer = &sim.farm.printers[0];
    let id = post_printer(
        &client,
        &base,
        &json!({"name": "Desk A1", "ip_address": printer.spec.ip.to_string(),
                "access_code": printer.spec.access_code, "serial_number": printer.spec.serial,
                "auto_clear_plate": true}),
    )
    .await;
    wait_connected(&client, &base, id, Duration::from_secs(20)).await;
    let url = |path: &str| api.api_url(path);
    let post = |path: String, body: Value| {
        let client = client.clone();
        let url = url(&path);
        async move {
            let answer = client.post(url).json(&body).send().await.unwrap();
            let status = answer.status().as_u16();
            (status, answer.json::<Value>().await.unwrap_or_default())
        }
    };
    let errors = || async {
        get_json(&client, &url(&format!("/printers/{id}/errors")))
            .await
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };

    // A queued print, and a job behind it (held for an hour).
    let library = upload_file(&client, &base, sliced_3mf(&Slicing::default()), "cube.3mf").await;
    let archive_id = library["id"].as_i64().unwrap();
    let (status, first) = post(
        "/queue".into(),
        json!({"archive_id": archive_id, "printer_id": id}),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (_, held) = post(
        "/queue".into(),
        json!({"archive_id": archive_id, "printer_id": id, "scheduled_time": later}),
    )
    .await;
    eventually(Duration::from_secs(60), "the job printing", || async {
        (printer.snapshot().gcode_state == GcodeState::Running).then_some(())
    })
    .await;

    // A fatal HMS error, and the printer paused on it.
    printer.raise_hms(HMS_FATAL.0, HMS_FATAL.1);
    let (status, _) = post(format!("/printers/{id}/pause"), json!({})).await;
    assert_eq!(status, 200);
    let raised = eventually(
        Duration::from_secs(20),
        "the error kept with its print",
        || async {
            let list = errors().await;
            let first = list.first()?.clone();
            (first["print_status"] == "printing" && first["actions"] == json!(["resume", "stop"]))
                .then_some(first)
        },
    )
    .await;
    assert_eq!(raised["source"], "hms", "{raised}");
    assert_eq!(raised["code"], HMS_CODE);
    assert_eq!(raised["severity"], "fatal");
    assert!(raised["cleared_at"].is_null());
    let print_archive = raised["archive_id"].as_i64().expect("the print it hit");
    let error_id = raised["id"].as_i64().unwrap();
    // Retry is refused while the print is under way.
    let (status, refused) =
        post(format!("/printers/{id}/errors/{error_id}/retry"), json!({})).await;
    assert_eq!(status, 409, "{refused}");

    // Stopped, then the error cleared: retry is what remains.
    let (status, _) = post(format!("/printers/{id}/stop"), json!({})).await;
    assert_eq!(status, 200);
    printer.clear_hms();
    let cleared = eventually(
        Duration::from_secs(30),
        "the error cleared, its print stopped",
        || async {
            let list = errors().await;
            let first = list.first()?.clone();
            (!first["cleared_at"].is_null() && first["print_status"] == "stopped").then_some(first)
        },
    )
    .await;
    assert_eq!(cleared["id"], error_id);
    assert_eq!(cleared["actions"], json!(["retry"]));
    assert_eq!(
        errors().await.len(),
        1,
        "one error, however often it was reported"
    );

    // Retry: the job again, ahead of the one held, and printed.
    let (status, again) = post(format!("/printers/{id}/errors/{error_id}/retry"), json!({})).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(
        again["archive_id"], archive_id,
        "the library file, as queued"
    );
    assert_ne!(again["id"], first["id"]);
    let queue = get_json(&client, &url("/queue")).await.unwrap();
    let order: Vec<&Value> = queue
        .as_array()
        .unwrap()
        .iter()
        .map(|j| &j["id"])
        .filter(|j| **j == again["id"] || **j == held["id"])
        .collect();
    assert_eq!(
        order,
        vec![&again["id"], &held["id"]],
        "the retry goes first"
    );
    let (status, twice) = post(format!("/printers/{id}/errors/{error_id}/retry"), json!({})).await;
    assert_eq!(status, 409, "{twice}");
    eventually(
        Duration::from_secs(60),
        "the retried job printing",
        || async {
            let jobs = get_json(&client, &url("/queue?status=printing")).await?;
            jobs.as_array()?
                .iter()
                .any(|j| j["id"] == again["id"])
                .then_some(())
        },
    )
    .await;

    // A print error: kept with its code and print.
    eventually(
        Duration::from_secs(30),
        "the retried print running",
        || async { (printer.snapshot().gcode_state == GcodeState::Running).then_some(()) },
    )
    .await;
    printer.fail_print(Some(0x0300_8003)).unwrap();
    let failed = eventually(Duration::from_secs(30), "the print error kept", || async {
        let list = errors().await;
        let first = list.first()?.clone();
        (first["source"] == "print" && first["print_status"] == "failed").then_some(first)
    })
    .await;
    assert_eq!(failed["code"], "0300_8003", "{failed}");
    assert_ne!(
        failed["archive_id"], print_archive,
        "the retried print's own archive"
    );

    // Counts by code.
    let counts = get_json(&client, &url("/statistics/errors")).await.unwrap();
    assert_eq!(counts["total"], 2, "{counts}");
    let codes: Vec<&str> = counts["by_code"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["code"].as_str())
        .collect();
    assert!(
        codes.contains(&HMS_CODE) && codes.contains(&"0300_8003"),
        "{counts}"
    );

    // Unknown errors and printers.
    let (status, _) = post(format!("/printers/{id}/errors/999999/retry"), json!({})).await;
    assert_eq!(status, 404);
    let unknown = client
        .get(url("/printers/999/errors"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}
