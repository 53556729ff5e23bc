//! Printer care end to end: a maintenance task counted from real prints (a simulated printer's
//! touchscreen prints, archived and counted by stats) falls due after N prints, is announced
//! once to a webhook and on `/events`, and `done` starts its next cycle.

use std::time::Duration;

use printyard_api::auth::Permission;
use printyard_printer_sim::Model;
use printyard_printer_sim::farm::{DEMO_3MF, DEMO_PATH};
use printyard_printer_sim::printer::GcodeState;
use printyard_tests::receiver::{Behaviour, Receiver};
use printyard_tests::{
    SimFarm, TestEnv, eventually, keyed_http, spawn_api_and_client, spawn_archive,
    spawn_gateway_with, spawn_notifier, spawn_stats, wait_connected,
};
use serde_json::{Value, json};

async fn get(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn a_task_falls_due_after_its_prints_is_announced_once_and_done_resets_it() {
    let env = TestEnv::new().await;
    let sim = SimFarm::start(&[Model::A1Mini], 300.0).await;
    let _archive = spawn_archive(&env).await;
    let _stats = spawn_stats(&env).await;
    let _notifier = spawn_notifier(&env).await;
    let (api, client) = spawn_api_and_client(&env).await;
    let _gateway = spawn_gateway_with(sim.gateway_config(&env)).await;
    let printer = &sim.farm.printers[0];
    let created: Value = client
        .post(api.api_url("/printers"))
        .json(
            &json!({"name": "Desk A1", "ip_address": printer.spec.ip.to_string(),
                      "access_code": printer.spec.access_code,
                      "serial_number": printer.spec.serial}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_i64().unwrap();
    wait_connected(&client, &api.api_url(""), id, Duration::from_secs(20)).await;
    let receiver = Receiver::start(Behaviour::Correct).await;
    let admin = keyed_http(&env.api_key(&[Permission::Admin]).await);
    let hook = admin
        .post(api.api_url("/webhooks"))
        .json(&json!({"url": receiver.url("/care"), "events": ["maintenance_due"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), 201);

    // Bad tasks are refused with the reason.
    for (body, why) in [
        (json!({"name": "x"}), "no interval"),
        (json!({"name": "x", "every_prints": 0}), "a zero interval"),
        (
            json!({"name": "x", "every_prints": 2, "printer_id": id, "model": "A1 mini"}),
            "both",
        ),
        (json!({"name": " ", "every_prints": 2}), "a blank name"),
    ] {
        let refused = client
            .post(api.api_url("/maintenance/tasks"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 422, "{why}");
    }
    let unknown = client
        .post(api.api_url("/maintenance/tasks"))
        .json(&json!({"name": "x", "every_prints": 2, "printer_id": 999}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // Two tasks: the model's every 2 prints, and a printer's every 30 days.
    let task: Value = client
        .post(api.api_url("/maintenance/tasks"))
        .json(&json!({"name": "Clean the nozzle", "model": "A1 mini", "every_prints": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task_id = task["id"].as_i64().unwrap();
    client
        .post(api.api_url("/maintenance/tasks"))
        .json(&json!({"name": "Check the belts", "printer_id": id, "every_days": 30}))
        .send()
        .await
        .unwrap();
    let items = get(&client, api.api_url("/maintenance")).await;
    assert_eq!(items.as_array().unwrap().len(), 2, "{items}");
    assert!(items.as_array().unwrap().iter().all(|i| i["state"] == "ok"));

    let print = || async {
        printer.store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
        printer.start_from_touchscreen(DEMO_PATH, 1).unwrap();
        eventually(Duration::from_secs(30), "the print finished", || async {
            (printer.snapshot().gcode_state == GcodeState::Finish).then_some(())
        })
        .await;
    };
    print().await;
    let after_one = eventually(Duration::from_secs(20), "one print counted", || async {
        let items = get(&client, api.api_url("/maintenance")).await;
        let nozzle = items
            .as_array()?
            .iter()
            .find(|i| i["task_id"] == task_id)?
            .clone();
        (nozzle["prints"] == 1).then_some(nozzle)
    })
    .await;
    assert_eq!(after_one["progress"], 0.5);
    assert_eq!(after_one["state"], "ok");
    assert_eq!(after_one["printer_name"], "Desk A1");
    assert!(receiver.requests().is_empty(), "not due yet");

    print().await;
    let due = eventually(Duration::from_secs(20), "two prints counted", || async {
        let items = get(&client, api.api_url("/maintenance")).await;
        let first = items.as_array()?.first()?.clone();
        (first["task_id"] == task_id && first["prints"] == 2).then_some(first)
    })
    .await;
    assert_eq!(due["state"], "due", "{due}");
    assert!(due["print_hours"].as_f64().unwrap() > 0.0);
    let delivered = eventually(
        Duration::from_secs(30),
        "maintenance_due delivered",
        || async { receiver.requests().into_iter().next() },
    )
    .await;
    let body = delivered.json();
    assert_eq!(body["event"], "maintenance_due", "{body}");
    assert_eq!(body["data"]["task"], "Clean the nozzle");
    assert_eq!(body["data"]["printer_id"], id);
    // Announced once, however many sweeps see it due.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(receiver.requests().len(), 1);

    // Done: who and when are kept, and the next cycle starts from nothing.
    let done = client
        .post(api.api_url(&format!("/maintenance/{task_id}/done")))
        .json(&json!({"printer_id": id, "notes": "new nozzle wiper"}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["state"], "ok");
    assert_eq!(done["prints"], 0);
    assert_eq!(done["last_notes"], "new nozzle wiper");
    assert!(
        done["last_done_by"]
            .as_str()
            .unwrap()
            .starts_with("key pyk_")
    );
    let elsewhere = client
        .post(api.api_url(&format!("/maintenance/{task_id}/done")))
        .json(&json!({"printer_id": 999}))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);

    // Two more prints: due again, announced again (a new cycle).
    print().await;
    print().await;
    eventually(
        Duration::from_secs(30),
        "the next cycle announced",
        || async { (receiver.requests().len() == 2).then_some(()) },
    )
    .await;
    let deleted = client
        .delete(api.api_url(&format!("/maintenance/tasks/{task_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let items = get(&client, api.api_url("/maintenance")).await;
    assert_eq!(items.as_array().unwrap().len(), 1);
}
