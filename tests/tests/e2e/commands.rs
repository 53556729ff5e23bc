//! Printer commands through the API, the gateway and the simulator: refresh, pause, resume and
//! stop act on the simulated printer; what goes wrong is said plainly (not connected, not
//! authorised, refused by the printer, the signed-command refusal, timed out); a certificate
//! trusted on first use is kept with the printer.

use std::time::Duration;

use printyard_api::auth::Permission;
use printyard_printer_sim::Model;
use printyard_printer_sim::farm::{DEMO_3MF, DEMO_PATH};
use printyard_printer_sim::printer::{Faults, GcodeState, Printer};
use printyard_tests::{
    Running, SimFarm, TestEnv, add_printer, eventually, keyed_http, spawn_api, spawn_gateway_with,
    wait_connected,
};
use serde_json::{Value, json};

struct Setup {
    env: TestEnv,
    sim: SimFarm,
    api: Running,
    client: reqwest::Client,
}

async fn setup(speed: f64) -> Setup {
    let env = TestEnv::new().await;
    let sim = SimFarm::start(&[Model::P1S], speed).await;
    let api = spawn_api(&env).await;
    let key = env
        .api_key(&[Permission::Read, Permission::Write, Permission::Control])
        .await;
    Setup {
        env,
        sim,
        api,
        client: keyed_http(&key),
    }
}

impl Setup {
    fn printer(&self) -> &Printer {
        &self.sim.farm.printers[0]
    }

    async fn add_printer(&self) -> i64 {
        let printer = self.printer();
        let created: Value = self
            .client
            .post(self.api.api_url("/printers"))
            .json(&json!({
                "name": "Commanded", "ip_address": printer.spec.ip.to_string(),
                "access_code": printer.spec.access_code, "serial_number": printer.spec.serial,
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created["id"].as_i64().unwrap()
    }

    async fn gateway(&self, command_deadline_ms: u64) -> Running {
        let mut config = self.sim.gateway_config(&self.env);
        config.gateway.command_deadline_ms = command_deadline_ms;
        spawn_gateway_with(config).await
    }

    async fn command(&self, id: i64, command: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.api.api_url(&format!("/printers/{id}/{command}")))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn status(&self, id: i64) -> Value {
        self.client
            .get(self.api.api_url(&format!("/printers/{id}/status")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn wait_state(&self, id: i64, state: &str) -> Value {
        eventually(Duration::from_secs(15), state, || async {
            let s = self.status(id).await;
            (s["state"] == state).then_some(s)
        })
        .await
    }

    async fn wait_printer(&self, what: GcodeState) {
        eventually(
            Duration::from_secs(10),
            &format!("{what:?} on the printer"),
            || async { (self.printer().snapshot().gcode_state == what).then_some(()) },
        )
        .await;
    }
}

#[tokio::test]
async fn pause_resume_and_stop_act_on_the_simulated_printer() {
    let setup = setup(20.0).await;
    let (status, body) = setup.command(999, "pause").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND")));

    let _gateway = setup.gateway(5000).await;
    let id = setup.add_printer().await;
    setup.wait_state(id, "idle").await;

    let (status, body) = setup.command(id, "refresh-status").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"status": "refresh_requested"}));

    // The printer's own refusal comes back as it said it.
    let (status, body) = setup.command(id, "pause").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "PRINTER_REFUSED");
    assert!(
        body["detail"].as_str().unwrap().contains("cannot pause"),
        "{body}"
    );

    let printer = setup.printer();
    printer.store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
    printer.start_from_touchscreen(DEMO_PATH, 1).unwrap();
    setup.wait_printer(GcodeState::Running).await;

    let (status, body) = setup.command(id, "pause").await;
    assert_eq!(
        (status, &body),
        (200, &json!({"status": "pause_requested"}))
    );
    assert_eq!(printer.snapshot().gcode_state, GcodeState::Pause);
    setup.wait_state(id, "paused").await;

    let (status, _) = setup.command(id, "resume").await;
    assert_eq!(status, 200);
    assert_eq!(printer.snapshot().gcode_state, GcodeState::Running);
    setup.wait_state(id, "printing").await;

    // Recent firmware refuses unsigned control commands: said plainly, status keeps working.
    printer.set_faults(Faults {
        require_signed: true,
        ..Default::default()
    });
    let (status, body) = setup.command(id, "pause").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "PRINTER_REFUSED");
    assert!(
        body["detail"].as_str().unwrap().contains("Developer Mode"),
        "{body}"
    );
    assert_eq!(printer.snapshot().gcode_state, GcodeState::Running);
    printer.set_faults(Faults::default());

    let (status, _) = setup.command(id, "stop").await;
    assert_eq!(status, 200);
    assert_ne!(printer.snapshot().gcode_state, GcodeState::Running);

    // Commands need the control permission.
    let reader = keyed_http(
        &setup
            .env
            .api_key(&[Permission::Read, Permission::Write])
            .await,
    );
    let refused = reader
        .post(setup.api.api_url(&format!("/printers/{id}/resume")))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn commands_say_why_a_printer_cannot_be_reached() {
    let setup = setup(1.0).await;
    let id = setup.add_printer().await;

    // No gateway holds the printer: an answer at once, not a hang.
    let started = std::time::Instant::now();
    let (status, body) = setup.command(id, "refresh-status").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "PRINTER_NOT_CONNECTED");
    assert!(body["detail"].as_str().unwrap().contains("no gateway"));
    assert!(started.elapsed() < Duration::from_secs(2));

    let _gateway = setup.gateway(1000).await;
    setup.wait_state(id, "idle").await;

    // A printer that stops answering: the command times out with a clear error.
    let printer = setup.printer();
    printer.set_faults(Faults {
        silent: true,
        ..Default::default()
    });
    let (status, body) = setup.command(id, "stop").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["code"], "PRINTER_TIMEOUT");
    printer.set_faults(Faults::default());
    printer.drop_connections();

    // A wrong access code: not connected, and the reason says not authorised.
    let patched = setup
        .client
        .patch(setup.api.api_url(&format!("/printers/{id}")))
        .json(&json!({"access_code": "wR0ngC0d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let refused = eventually(
        Duration::from_secs(15),
        "an authorisation error",
        || async {
            let s = setup.status(id).await;
            s["connection_error"]
                .as_str()
                .is_some_and(|e| e.contains("not authorised"))
                .then_some(s)
        },
    )
    .await;
    assert_eq!(refused["connected"], false);
    let (status, body) = setup.command(id, "pause").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "PRINTER_NOT_CONNECTED");
    assert!(
        body["detail"].as_str().unwrap().contains("not authorised"),
        "{body}"
    );
    assert!(!body.to_string().contains("wR0ngC0d"));
}

#[tokio::test]
async fn a_certificate_trusted_on_first_use_is_kept_with_the_printer() {
    let env = TestEnv::new().await;
    let sim = SimFarm::start(&[Model::A1, Model::P1S, Model::A1Mini], 1.0).await;
    // The gateway does not trust the simulator's CA: it pins the certificate on first use.
    let gateway = spawn_gateway_with(env.gateway_config()).await;
    let api = spawn_api(&env).await;
    let client = keyed_http(&env.api_key(&[Permission::Admin]).await);
    let mut ids = Vec::new();
    for (n, printer) in sim.farm.printers.iter().enumerate() {
        let (name, code) = (format!("Pinned {n}"), &printer.spec.access_code);
        ids.push(add_printer(&client, &api.api_url(""), printer, &name, code).await);
    }
    let (id, printer) = (ids[0], &sim.farm.printers[0]);

    // Every printer's pin is stored (the gateway sends the pins it learns together).
    let pool = env.pool().await;
    let pins: Vec<String> = eventually(Duration::from_secs(15), "three stored pins", || async {
        let pins: Vec<String> = sqlx::query_scalar(
            "SELECT tls_pin FROM api.printers WHERE id = ANY($1) AND tls_pin IS NOT NULL",
        )
        .bind(&ids)
        .fetch_all(&pool)
        .await
        .ok()?;
        (pins.len() == ids.len()).then_some(pins)
    })
    .await;
    let distinct: std::collections::HashSet<&String> = pins.iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "each printer its own certificate: {pins:?}"
    );
    let pin: String = sqlx::query_scalar("SELECT tls_pin FROM api.printers WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(pin.len(), 64, "a SHA-256 in hex");
    let connections = printer.snapshot().mqtt_connections_total;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        printer.snapshot().mqtt_connections_total,
        connections,
        "storing the pin does not reconnect"
    );

    // The pin outlives the gateway: a new one connects with it.
    gateway.stop().await;
    let _next = spawn_gateway_with(env.gateway_config()).await;
    wait_connected(&client, &api.api_url(""), id, Duration::from_secs(15)).await;
    let stored: Option<String> =
        sqlx::query_scalar("SELECT tls_pin FROM api.printers WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored.as_deref(), Some(pin.as_str()));
}
