//! The printer endpoints with the gateway and the simulator: added through the API, a printer
//! shows live status within seconds; changes and deletes take effect without restarts; bad
//! input is refused; the access code is never returned.

use std::time::Duration;

use printyard_api::auth::Permission;
use printyard_printer_sim::Model;
use printyard_printer_sim::farm::{DEMO_3MF, DEMO_PATH};
use printyard_tests::{SimFarm, TestEnv, eventually, keyed_http, spawn_api, spawn_gateway_with};
use serde_json::{Value, json};

#[tokio::test]
async fn a_printer_added_through_the_api_goes_live_and_is_changed_and_deleted_without_restarts() {
    let env = TestEnv::new().await;
    let sim = SimFarm::start(&[Model::P1S], 60.0).await;
    let _gateway = spawn_gateway_with(sim.gateway_config(&env)).await;
    let farm = &sim.farm;
    let api = spawn_api(&env).await;
    let client = keyed_http(&env.api_key(&[Permission::Admin]).await);
    let printer = farm.printers[0].clone();

    let created = client
        .post(api.api_url("/printers"))
        .json(&json!({
            "name": "Bench P1S", "ip_address": printer.spec.ip.to_string(),
            "access_code": printer.spec.access_code, "serial_number": printer.spec.serial,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        created["model"], "P1S",
        "detected from the serial: the user never types it"
    );
    assert_eq!(created["site"], "default");
    assert!(
        !created.to_string().contains(&printer.spec.access_code),
        "the access code is never returned"
    );
    let id = created["id"].as_i64().unwrap();

    let live = eventually(Duration::from_secs(15), "live status", || async {
        let s: Value = client
            .get(api.api_url(&format!("/printers/{id}/status")))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (s["connected"] == true && s["state"] == "idle").then_some(s)
    })
    .await;
    assert!(live["last_seen"].is_string());
    assert!(live["temperatures"]["nozzle"].is_number());
    assert_eq!(live["hms_status"], "ok");

    printer.store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
    printer.start_from_touchscreen(DEMO_PATH, 1).unwrap();
    let printing = eventually(Duration::from_secs(15), "current_print", || async {
        let p: Value = client
            .get(api.api_url(&format!("/printers/{id}")))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (p["status"] == "printing").then_some(p)
    })
    .await;
    assert!(
        printing["current_print"]["progress"].is_number(),
        "{printing}"
    );
    assert!(
        printing["current_print"]["remaining_time"]
            .as_u64()
            .unwrap()
            > 0
    );

    let renamed = client
        .patch(api.api_url(&format!("/printers/{id}")))
        .json(&json!({"name": "Renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    let listed: Vec<Value> = client
        .get(api.api_url("/printers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "Renamed");
    assert_eq!(listed[0]["ip_address"], printer.spec.ip.to_string());
    assert_eq!(listed[0]["serial_number"], printer.spec.serial.as_str());

    let deleted = client
        .delete(api.api_url(&format!("/printers/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    eventually(
        Duration::from_secs(10),
        "the gateway to disconnect",
        || async { (printer.snapshot().mqtt_clients == 0).then_some(()) },
    )
    .await;
    let gone = client
        .get(api.api_url(&format!("/printers/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
}

#[tokio::test]
async fn invalid_and_duplicate_printers_are_refused_and_unknown_ids_are_404() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let client = keyed_http(&env.api_key(&[Permission::Write, Permission::Read]).await);
    let good = json!({"name": "A", "ip_address": "192.168.1.50", "access_code": "12345678", "serial_number": "01P00A000000002"});

    let first = client
        .post(api.api_url("/printers"))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let again = client
        .post(api.api_url("/printers"))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    assert_eq!(again.json::<Value>().await.unwrap()["code"], "CONFLICT");

    for (field, value) in [
        ("access_code", json!("1234")),
        ("ip_address", json!("not an address!")),
        ("serial_number", json!("x")),
        ("name", json!("")),
        ("site", json!("a.b")),
    ] {
        let mut body = good.clone();
        body[field] = value;
        body["serial_number"] = if field == "serial_number" {
            body["serial_number"].clone()
        } else {
            json!("01P00A000000099")
        };
        let response = client
            .post(api.api_url("/printers"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{field}");
        let error: Value = response.json().await.unwrap();
        assert!(error["detail"].as_str().unwrap().contains(field), "{error}");
    }

    assert_eq!(
        client
            .get(api.api_url("/printers/424242"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        client
            .get(api.api_url("/printers/abc/status"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let offline: Value = client
        .get(api.api_url(&format!(
            "/printers/{}/status",
            first.json::<Value>().await.unwrap()["id"]
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        offline["state"], "offline",
        "no gateway: the printer shows offline, at once"
    );
    assert_eq!(offline["connected"], false);
}

#[tokio::test]
async fn the_registry_mirror_is_reconciled_with_postgres() {
    use printyard_api::registry::Registry;
    let env = TestEnv::new().await;
    let _api = spawn_api(&env).await;
    let pool = env.pool().await;
    let js = async_nats::jetstream::new(env.nats.client().await);
    let kv = js.get_key_value("printer_registry").await.unwrap();
    let registry = Registry {
        db: pool.clone(),
        kv: kv.clone(),
        jetstream: js.clone(),
    };

    // A row the bucket lost, and an entry whose row never committed.
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api.printers (name, host, serial, access_code, site)
         VALUES ('Lost', '10.0.0.9', '01S00C000000009', '12345678', 'lab') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    kv.put("default.999", b"{}".to_vec().into()).await.unwrap();

    // A young orphan may be a create still committing: kept.
    assert_eq!(
        registry.reconcile(Duration::from_secs(60)).await.unwrap(),
        (1, 0)
    );
    assert!(kv.get("default.999").await.unwrap().is_some());
    let mirrored: Value =
        serde_json::from_slice(&kv.get(format!("lab.{id}")).await.unwrap().unwrap()).unwrap();
    assert_eq!(mirrored["serial"], "01S00C000000009");

    assert_eq!(registry.reconcile(Duration::ZERO).await.unwrap(), (0, 1));
    assert!(kv.get("default.999").await.unwrap().is_none());
    assert_eq!(
        registry.reconcile(Duration::ZERO).await.unwrap(),
        (0, 0),
        "nothing left to do"
    );
}

#[tokio::test]
async fn a_model_the_gateway_detected_is_shown_and_a_given_one_kept() {
    let env = TestEnv::new().await;
    let api = spawn_api(&env).await;
    let client = keyed_http(&env.api_key(&[Permission::Admin]).await);
    let add = |serial: &'static str, model: Option<&'static str>| {
        let client = client.clone();
        let url = api.api_url("/printers");
        async move {
            let mut body = json!({"name": "M", "ip_address": "10.1.2.3",
                                  "access_code": "12345678", "serial_number": serial});
            if let Some(model) = model {
                body["model"] = json!(model);
            }
            let created: Value = client
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            created
        }
    };
    // A serial prefix no table knows: no model until the printer says.
    let unknown = add("ZZZ00000000001", None).await;
    assert!(unknown["model"].is_null(), "{unknown}");
    let kept = add("ZZZ00000000002", Some("My custom X1")).await;
    assert_eq!(kept["model"], "My custom X1");

    // What the gateway writes once `get_version` names the product.
    let js = async_nats::jetstream::new(env.nats.client().await);
    let bucket = js.get_key_value("printer_status").await.unwrap();
    for printer in [&unknown, &kept] {
        let id = printer["id"].as_i64().unwrap();
        let record = json!({"printer_id": id, "serial": printer["serial_number"], "connected": true,
                            "last_seen": null, "connection_error": null, "model": "X1 Carbon",
                            "tls_pin": null, "status": null});
        bucket
            .put(
                format!("default.{id}"),
                serde_json::to_vec(&record).unwrap().into(),
            )
            .await
            .unwrap();
    }
    let shown = |id: i64| {
        let client = client.clone();
        let url = api.api_url(&format!("/printers/{id}"));
        async move {
            let p: Value = client.get(url).send().await.ok()?.json().await.ok()?;
            p["model"].as_str().map(str::to_owned)
        }
    };
    let detected = eventually(Duration::from_secs(5), "the detected model", || {
        shown(unknown["id"].as_i64().unwrap())
    })
    .await;
    assert_eq!(detected, "X1 Carbon");
    assert_eq!(
        shown(kept["id"].as_i64().unwrap()).await.as_deref(),
        Some("My custom X1"),
        "a model given in the request is kept"
    );
}

#[tokio::test]
async fn each_printers_firmware_is_read_from_it_and_the_ones_behind_their_model_are_named() {
    let env = TestEnv::new().await;
    let sim = SimFarm::start(&[Model::A1Mini, Model::A1Mini], 60.0).await;
    let _gateway = spawn_gateway_with(sim.gateway_config(&env)).await;
    let api = spawn_api(&env).await;
    let client = keyed_http(&env.api_key(&[Permission::Admin]).await);
    let mut ids = Vec::new();
    for (i, printer) in sim.farm.printers.iter().enumerate() {
        let created: Value = client
            .post(api.api_url("/printers"))
            .json(&json!({
                "name": format!("Mini {}", i + 1), "ip_address": printer.spec.ip.to_string(),
                "access_code": printer.spec.access_code, "serial_number": printer.spec.serial,
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(created["id"].as_i64().unwrap());
    }
    let captured = sim.farm.printers[0].firmware();
    assert_eq!(captured, "01.07.02.00", "the A1 mini capture's version");
    let firmware_of = |id: i64| {
        let client = client.clone();
        let url = api.api_url(&format!("/printers/{id}"));
        async move {
            let printer: Value = client.get(url).send().await.ok()?.json().await.ok()?;
            printer["firmware"].as_str().map(str::to_owned)
        }
    };
    for id in &ids {
        let version = eventually(Duration::from_secs(20), "the version read", || {
            firmware_of(*id)
        })
        .await;
        assert_eq!(version, captured);
    }
    let table: Value = client
        .get(api.api_url("/printers/firmware"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(table["behind"], json!([]), "one version: nobody behind");

    // The second printer is updated: it restarts and reports the new version.
    sim.farm.printers[1].update_firmware("01.08.00.00");
    eventually(Duration::from_secs(30), "the new version read", || async {
        (firmware_of(ids[1]).await.as_deref() == Some("01.08.00.00")).then_some(())
    })
    .await;
    let table: Value = client
        .get(api.api_url("/printers/firmware"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        table["groups"],
        json!([
            {"model": "A1 mini", "version": "01.08.00.00", "newest": true, "printer_ids": [ids[1]]},
            {"model": "A1 mini", "version": "01.07.02.00", "newest": false, "printer_ids": [ids[0]]},
        ])
    );
    assert_eq!(
        table["behind"],
        json!([{"printer_id": ids[0], "name": "Mini 1", "model": "A1 mini",
                "version": "01.07.02.00", "newest": "01.08.00.00"}])
    );
}
