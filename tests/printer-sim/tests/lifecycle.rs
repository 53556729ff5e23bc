//! Prints on a simulated printer, driven as Printyard will drive one: upload by FTPS, start with
//! `project_file` over MQTT, follow the reports; pause, resume, stop; refusals; faults.

mod common;

use std::time::Duration;

use common::*;
use printyard_printer_sim::Model;
use printyard_printer_sim::farm::DEMO_3MF;
use serde_json::{Map, Value, json};

fn project_file(sequence: &str, file: &str) -> Value {
    json!({"print": {
        "sequence_id": sequence, "command": "project_file", "param": "Metadata/plate_1.gcode",
        "url": format!("ftp:///{file}"), "subtask_name": "Cube", "md5": "",
        "project_id": "0", "profile_id": "0", "task_id": "0", "subtask_id": "0",
        "timelapse": false, "bed_leveling": true, "flow_cali": false, "vibration_cali": false,
        "layer_inspect": false, "use_ams": true, "ams_mapping": [0], "bed_type": "auto"
    }})
}

/// Waits for the ack of `sequence`: (result, reason).
async fn ack(eventloop: &mut rumqttc::EventLoop, sequence: &str) -> (String, String) {
    loop {
        let report = next_report(eventloop, Duration::from_secs(5))
            .await
            .expect("an acknowledgement");
        let print = &report["print"];
        if print["sequence_id"] == sequence && print.get("result").is_some() {
            return (
                print["result"].as_str().unwrap().to_owned(),
                print["reason"].as_str().unwrap_or("").to_owned(),
            );
        }
    }
}

#[tokio::test]
async fn a_project_file_print_goes_prepare_running_finish_with_rising_progress() {
    // 600x: the 1095 s cube prints in about two seconds.
    let farm = farm(&[Model::A1Mini], 600.0, Some(4)).await;
    let printer = farm.printers[0].clone();
    let serial = printer.spec.serial.clone();
    printer.store("/cube.gcode.3mf", bytes::Bytes::from_static(DEMO_3MF));
    let (client, mut eventloop) = mqtt(&farm, &serial, None).await;
    let mut state = Map::new();
    send(
        &client,
        &serial,
        json!({"pushing": {"sequence_id": "0", "command": "pushall"}}),
    )
    .await;
    assert!(
        watch_until(
            &mut eventloop,
            &mut state,
            Duration::from_secs(5),
            |_| {},
            |s| s.contains_key("gcode_state")
        )
        .await
    );

    send(&client, &serial, project_file("101", "cube.gcode.3mf")).await;
    assert_eq!(ack(&mut eventloop, "101").await.0, "success");

    let mut states = Vec::new();
    let mut progress = Vec::new();
    let mut prepare = Vec::new();
    let finished = watch_until(
        &mut eventloop,
        &mut state,
        Duration::from_secs(20),
        |s| {
            let g = s["gcode_state"].as_str().unwrap().to_owned();
            if states.last() != Some(&g) {
                states.push(g);
            }
            progress.push(s["mc_percent"].as_i64().unwrap());
            prepare.push(
                s["gcode_file_prepare_percent"]
                    .as_str()
                    .unwrap()
                    .parse::<i64>()
                    .unwrap(),
            );
        },
        |s| s["gcode_state"] == "FINISH",
    )
    .await;

    assert!(finished, "the print finished: {states:?}");
    assert_eq!(states, ["PREPARE", "RUNNING", "FINISH"]);
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress only rises: {progress:?}"
    );
    assert!(prepare.contains(&100));
    assert_eq!(state["mc_percent"], 100);
    assert_eq!(state["layer_num"], 90);
    assert_eq!(state["total_layer_num"], 90);
    assert_eq!(state["subtask_name"], "Cube");
    assert_eq!(state["mc_remaining_time"], 0);
}

#[tokio::test]
async fn pause_resume_stop_act_and_a_stopped_print_fails_with_0300_400c() {
    let farm = farm(&[Model::P1S], 5.0, Some(4)).await;
    let printer = farm.printers[0].clone();
    let serial = printer.spec.serial.clone();
    printer.store("/cube.gcode.3mf", bytes::Bytes::from_static(DEMO_3MF));
    let (client, mut eventloop) = mqtt(&farm, &serial, None).await;
    let mut state = Map::new();
    send(
        &client,
        &serial,
        json!({"pushing": {"sequence_id": "0", "command": "pushall"}}),
    )
    .await;
    assert!(
        watch_until(
            &mut eventloop,
            &mut state,
            Duration::from_secs(5),
            |_| {},
            |s| s.contains_key("gcode_state")
        )
        .await
    );
    send(&client, &serial, project_file("1", "cube.gcode.3mf")).await;
    assert_eq!(ack(&mut eventloop, "1").await.0, "success");

    let busy = project_file("2", "cube.gcode.3mf");
    send(&client, &serial, busy).await;
    let (result, reason) = ack(&mut eventloop, "2").await;
    assert_eq!(result, "failed", "a start while busy is refused");
    assert!(reason.contains("busy"), "{reason}");

    for (sequence, command, expected) in [
        ("3", "pause", "PAUSE"),
        ("4", "resume", "PREPARE|RUNNING"),
        ("5", "stop", "FAILED"),
    ] {
        send(
            &client,
            &serial,
            json!({"print": {"sequence_id": sequence, "command": command, "param": ""}}),
        )
        .await;
        assert_eq!(
            ack(&mut eventloop, sequence).await.0,
            "success",
            "{command}"
        );
        let reached = watch_until(
            &mut eventloop,
            &mut state,
            Duration::from_secs(5),
            |_| {},
            |s| expected.split('|').any(|e| s["gcode_state"] == e),
        )
        .await;
        assert!(
            reached,
            "{command} → {expected}, state {:?}",
            state.get("gcode_state")
        );
    }
    assert_eq!(state["print_error"], 50348044);
    assert_eq!(printer.snapshot().print_error, 50348044);
}

#[tokio::test]
async fn a_missing_file_or_an_unsliced_project_is_refused() {
    let farm = farm(&[Model::A1], 5.0, Some(4)).await;
    let printer = farm.printers[0].clone();
    let serial = printer.spec.serial.clone();
    let unsliced = std::fs::read(format!(
        "{}/../fixtures/3mf/x1c-2plates-unsliced.3mf",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    printer.store("/project.3mf", unsliced.into());
    let (client, mut eventloop) = mqtt(&farm, &serial, None).await;
    send(&client, &serial, project_file("7", "absent.3mf")).await;
    assert_eq!(ack(&mut eventloop, "7").await.0, "failed");
    send(&client, &serial, project_file("8", "project.3mf")).await;
    assert_eq!(ack(&mut eventloop, "8").await.0, "failed");
    assert_eq!(
        printer.snapshot().gcode_state,
        printyard_printer_sim::GcodeState::Idle
    );
}

async fn control(
    farm: &printyard_printer_sim::Farm,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let url = format!("http://{}{path}", farm.control_addr().unwrap());
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_control_api_starts_a_touchscreen_print_raises_hms_and_fails_the_print() {
    let farm = farm(&[Model::P1P], 2.0, Some(4)).await;
    let printer = farm.printers[0].clone();
    let serial = printer.spec.serial.clone();
    let (_client, mut eventloop) = mqtt(&farm, &serial, None).await;
    let mut state = Map::new();
    let _ = next_report(&mut eventloop, Duration::from_secs(3)).await;

    let put = control(
        &farm,
        reqwest::Method::PUT,
        &format!("/printers/{serial}/files/cache/job.gcode.3mf"),
        None,
    )
    .await;
    assert_eq!(put.status(), 201);
    let url = format!(
        "http://{}/printers/{serial}/files/cache/job.gcode.3mf",
        farm.control_addr().unwrap()
    );
    reqwest::Client::new()
        .put(url)
        .body(DEMO_3MF.to_vec())
        .send()
        .await
        .unwrap();
    let started = control(
        &farm,
        reqwest::Method::POST,
        &format!("/printers/{serial}/start"),
        Some(json!({"path": "/cache/job.gcode.3mf"})),
    )
    .await;
    assert_eq!(started.status(), 200);
    assert!(
        watch_until(
            &mut eventloop,
            &mut state,
            Duration::from_secs(5),
            |_| {},
            |s| s["gcode_state"] == "PREPARE"
        )
        .await
    );
    assert_eq!(state["subtask_name"], "job");

    let hms = control(
        &farm,
        reqwest::Method::POST,
        &format!("/printers/{serial}/hms"),
        Some(json!({"attr": 0x0700_2000u32, "code": 0x0002_0001u32})),
    )
    .await;
    assert_eq!(hms.status(), 204);
    assert!(
        watch_until(
            &mut eventloop,
            &mut state,
            Duration::from_secs(5),
            |_| {},
            |s| {
                s["hms"].as_array().is_some_and(|h| {
                    h.iter()
                        .any(|e| e["attr"] == 0x0700_2000u32 && e["code"] == 0x0002_0001u32)
                })
            }
        )
        .await
    );

    let failed = control(
        &farm,
        reqwest::Method::POST,
        &format!("/printers/{serial}/fail"),
        Some(json!({})),
    )
    .await;
    assert_eq!(failed.status(), 204);
    assert!(
        watch_until(
            &mut eventloop,
            &mut state,
            Duration::from_secs(5),
            |_| {},
            |s| s["gcode_state"] == "FAILED"
        )
        .await
    );
    assert_ne!(state["print_error"], 0);
    assert_ne!(state["print_error"], 50348044, "a fault is not a user stop");

    let snapshot: Value = control(
        &farm,
        reqwest::Method::GET,
        &format!("/printers/{serial}"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(snapshot["gcode_state"], "FAILED");
    assert_eq!(snapshot["mqtt_clients"], 1);
}

#[tokio::test]
async fn silent_drop_refuse_garbage_and_signed_command_faults() {
    let farm = farm(&[Model::A1], 2.0, Some(4)).await;
    let printer = farm.printers[0].clone();
    let serial = printer.spec.serial.clone();
    let faults_path = format!("/printers/{serial}/faults");
    let faults = |f: Value| control(&farm, reqwest::Method::PUT, &faults_path, Some(f));

    // Garbage: a payload that is not JSON reaches the client.
    let (client, mut eventloop) = mqtt(&farm, &serial, None).await;
    let _ = next_report(&mut eventloop, Duration::from_secs(3)).await;
    control(
        &farm,
        reqwest::Method::POST,
        &format!("/printers/{serial}/garbage"),
        None,
    )
    .await;
    let garbage = loop {
        match next_message(&mut eventloop, Duration::from_secs(3))
            .await
            .expect("a message")
        {
            Err(raw) => break raw,
            Ok(_) => continue,
        }
    };
    assert!(garbage.contains(&0), "{garbage:?}");

    // Signed commands required: control commands fail as recent firmware fails them.
    faults(json!({"require_signed": true})).await;
    send(
        &client,
        &serial,
        json!({"print": {"sequence_id": "9", "command": "pause", "param": ""}}),
    )
    .await;
    let reason = loop {
        let r = next_report(&mut eventloop, Duration::from_secs(3))
            .await
            .unwrap();
        if r["print"]["sequence_id"] == "9" && r["print"].get("result").is_some() {
            break r["print"]["reason"].as_str().unwrap().to_owned();
        }
    };
    assert_eq!(reason, "mqtt message verify failed");

    // Silent: the socket stays open and nothing arrives.
    faults(json!({"silent": true})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while next_message(&mut eventloop, Duration::from_millis(50))
        .await
        .is_some()
    {}
    assert!(
        next_report(&mut eventloop, Duration::from_secs(2))
            .await
            .is_none(),
        "silence"
    );
    assert_eq!(
        printer.snapshot().mqtt_clients,
        1,
        "the connection is still open"
    );
    faults(json!({})).await;

    // Drop: every connection is closed now.
    control(
        &farm,
        reqwest::Method::POST,
        &format!("/printers/{serial}/drop"),
        None,
    )
    .await;
    let mut closed = false;
    for _ in 0..20 {
        if eventloop.poll().await.is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed, "the client saw its connection closed");

    // Refuse: new connections are cut at once.
    faults(json!({"refuse_connections": true})).await;
    let (_c, mut refused) = mqtt(&farm, &serial, None).await;
    assert!(refused.poll().await.is_err());
    drop(client);
}
