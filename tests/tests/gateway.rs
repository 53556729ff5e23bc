//! The gateway against the simulator: a printer put in the registry is claimed, connected, its
//! status published to `printer_status`, its print turned into events on `FARM_EVENTS`; a wrong
//! access code shows as such; two gateways share a site without a second connection to a printer.

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use printyard_contracts::farm::{FarmEvent, PrinterRecord, Site, registry_key};
use printyard_printer_sim::Model;
use printyard_printer_sim::farm::{DEMO_3MF, DEMO_PATH};
use printyard_tests::{Running, SimFarm, TestEnv, eventually, spawn_gateway_with};
use serde_json::Value;

struct Setup {
    env: TestEnv,
    sim: SimFarm,
}

async fn setup(model: Model, speed: f64) -> Setup {
    let env = TestEnv::new().await;
    let sim = SimFarm::start(&[model], speed).await;
    Setup { env, sim }
}

async fn gateway(setup: &Setup, lease_secs: u64) -> Running {
    let mut config = setup.sim.gateway_config(&setup.env);
    config.gateway.lease_secs = lease_secs;
    spawn_gateway_with(config).await
}

async fn register(setup: &Setup, access_code: Option<&str>) -> PrinterRecord {
    let printer = &setup.sim.farm.printers[0];
    let record = PrinterRecord {
        id: 1,
        name: "Sim".into(),
        site: Site::default(),
        host: printer.spec.ip.to_string(),
        serial: printer.spec.serial.clone(),
        access_code: access_code.unwrap_or(&printer.spec.access_code).to_owned(),
        model: None,
        tls_pin: None,
        tls_insecure: false,
    };
    let js = jetstream::new(setup.env.nats.client().await);
    let registry = eventually(Duration::from_secs(5), "the registry bucket", || {
        let js = js.clone();
        async move { js.get_key_value("printer_registry").await.ok() }
    })
    .await;
    registry
        .put(
            registry_key(&record.site, record.id),
            serde_json::to_vec(&record).unwrap().into(),
        )
        .await
        .unwrap();
    record
}

async fn status(setup: &Setup) -> Option<Value> {
    let js = jetstream::new(setup.env.nats.client().await);
    let bucket = js.get_key_value("printer_status").await.ok()?;
    let bytes = bucket.get("1").await.ok()??;
    serde_json::from_slice(&bytes).ok()
}

#[tokio::test]
async fn a_registered_printer_gets_live_status_and_its_print_becomes_ordered_events() {
    let setup = setup(Model::P1S, 600.0).await;
    let _gateway = gateway(&setup, 5).await;
    register(&setup, None).await;

    let live = eventually(
        Duration::from_secs(15),
        "a connected idle status",
        || async {
            status(&setup)
                .await
                .filter(|s| s["connected"] == true && s["status"]["state"] == "idle")
        },
    )
    .await;
    assert_eq!(live["model"], "P1S");
    assert!(live["connection_error"].is_null());
    assert!(live["last_seen"].is_string());

    let js = jetstream::new(setup.env.nats.client().await);
    let stream = js.get_stream("FARM_EVENTS").await.unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            filter_subject: "printyard.events.default.1.>".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();

    let printer = &setup.sim.farm.printers[0];
    printer.store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
    printer.start_from_touchscreen(DEMO_PATH, 1).unwrap();

    let mut kinds = Vec::new();
    while kinds.last().map(String::as_str) != Some("print_complete") {
        let message = tokio::time::timeout(Duration::from_secs(20), messages.next())
            .await
            .unwrap_or_else(|_| panic!("events so far: {kinds:?}"))
            .unwrap()
            .unwrap();
        let event: FarmEvent = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(
            message
                .headers
                .as_ref()
                .unwrap()
                .get("Nats-Msg-Id")
                .unwrap()
                .as_str(),
            event.id
        );
        message.ack().await.unwrap();
        kinds.push(
            serde_json::to_value(event.kind)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        kinds,
        [
            "printer_online",
            "print_started",
            "print_progress",
            "print_progress",
            "print_progress",
            "print_complete"
        ]
    );
    assert_eq!(printer.snapshot().mqtt_clients, 1);
}

#[tokio::test]
async fn a_wrong_access_code_shows_as_an_authorisation_error() {
    let setup = setup(Model::A1, 1.0).await;
    let _gateway = gateway(&setup, 5).await;
    register(&setup, Some("wR0ngC0d")).await;

    let refused = eventually(Duration::from_secs(15), "an error status", || async {
        status(&setup)
            .await
            .filter(|s| !s["connection_error"].is_null())
    })
    .await;
    assert_eq!(refused["connected"], false);
    assert!(
        refused["connection_error"]
            .as_str()
            .unwrap()
            .contains("not authorised"),
        "{refused}"
    );
    assert!(
        !refused.to_string().contains("wR0ngC0d"),
        "the code is never published"
    );
}

#[tokio::test]
async fn two_gateways_share_a_site_and_the_survivor_takes_over_without_a_second_connection() {
    let setup = setup(Model::A1Mini, 1.0).await;
    let first = gateway(&setup, 3).await;
    let second = gateway(&setup, 3).await;
    let printer = setup.sim.farm.printers[0].clone();
    // Sampled every 25 ms for the whole test: never two connections at once.
    let done = tokio_util::sync::CancellationToken::new();
    let watch = {
        let printer = printer.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut most = 0;
            while !done.is_cancelled() {
                most = most.max(printer.snapshot().mqtt_clients);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            most
        })
    };
    register(&setup, None).await;

    eventually(Duration::from_secs(15), "a connection", || async {
        (printer.snapshot().mqtt_clients == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        printer.snapshot().mqtt_clients,
        1,
        "only the owner is connected"
    );

    // Stop each gateway in turn; whichever held the printer, the other takes it over.
    first.stop().await;
    eventually(
        Duration::from_secs(20),
        "a connection after the first gateway stopped",
        || async { (printer.snapshot().mqtt_clients == 1).then_some(()) },
    )
    .await;
    let third = gateway(&setup, 3).await;
    second.stop().await;
    eventually(
        Duration::from_secs(20),
        "the third gateway connected",
        || async { (printer.snapshot().mqtt_clients == 1).then_some(()) },
    )
    .await;
    done.cancel();
    assert_eq!(
        watch.await.unwrap(),
        1,
        "never two connections to one printer"
    );
    assert!(
        printer.snapshot().mqtt_connections_total >= 2,
        "the printer was handed over"
    );
    drop(third);
}
