//! Helpers for the simulator's tests: a farm on addresses of its own, and real clients.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::time::Duration;

use printyard_printer_sim::camera::CameraConfig;
use printyard_printer_sim::{Farm, FarmConfig, Model};
use rand::Rng;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::Value;

/// A farm on a loopback range no other test uses (127.A.B.1 with random A, B).
pub async fn farm(models: &[Model], speed: f64, cap: Option<usize>) -> Farm {
    let mut rng = rand::rng();
    let first_ip = Ipv4Addr::new(127, rng.random_range(20..250), rng.random_range(0..250), 1);
    Farm::start(FarmConfig {
        count: models.len(),
        models: models.to_vec(),
        first_ip,
        speed,
        tick: Duration::from_millis(100),
        idle_report: Duration::from_secs(1),
        mqtt_client_cap: cap,
        camera: CameraConfig {
            fps: 10.0,
            width: 320,
            height: 180,
        },
        control: Some("127.0.0.1:0".parse().unwrap()),
        ..FarmConfig::default()
    })
    .await
    .expect("the farm starts")
}

/// An MQTT client of `printer`, connected over TLS and subscribed to its reports.
pub async fn mqtt(farm: &Farm, serial: &str, code: Option<&str>) -> (AsyncClient, EventLoop) {
    let printer = farm.printer(serial).unwrap();
    let id = format!("test-{}", rand::rng().random::<u32>());
    let mut options = MqttOptions::new(id, printer.spec.ip.to_string(), 8883);
    options.set_credentials("bblp", code.unwrap_or(&printer.spec.access_code));
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(1 << 20, 1 << 20);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        printyard_printer_sim::certs::client_config(farm.ca_pem()),
    )));
    let (client, eventloop) = AsyncClient::new(options, 64);
    client
        .subscribe(printer.report_topic(), QoS::AtMostOnce)
        .await
        .unwrap();
    (client, eventloop)
}

/// The next report payload (parsed), skipping other events; `None` on timeout.
pub async fn next_message(
    eventloop: &mut EventLoop,
    within: Duration,
) -> Option<Result<Value, Vec<u8>>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .ok()?;
        match event {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let text = String::from_utf8_lossy(&publish.payload).into_owned();
                return Some(
                    serde_json::from_str(text.trim_end_matches('\0'))
                        .map_err(|_| publish.payload.to_vec()),
                );
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

pub async fn next_report(eventloop: &mut EventLoop, within: Duration) -> Option<Value> {
    loop {
        match next_message(eventloop, within).await? {
            Ok(value) => return Some(value),
            Err(_) => continue,
        }
    }
}

pub async fn send(client: &AsyncClient, serial: &str, request: Value) {
    client
        .publish(
            format!("device/{serial}/request"),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&request).unwrap(),
        )
        .await
        .unwrap();
}

/// Merges reports into one `print` state, as a client does, until `until` holds.
pub async fn watch_until(
    eventloop: &mut EventLoop,
    state: &mut serde_json::Map<String, Value>,
    within: Duration,
    mut seen: impl FnMut(&serde_json::Map<String, Value>),
    until: impl Fn(&serde_json::Map<String, Value>) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        let Some(report) = next_report(eventloop, deadline - tokio::time::Instant::now()).await
        else {
            return false;
        };
        if let Some(print) = report.get("print").and_then(Value::as_object) {
            if print.get("command").and_then(Value::as_str) != Some("push_status") {
                continue;
            }
            for (k, v) in print {
                state.insert(k.clone(), v.clone());
            }
            seen(state);
            if until(state) {
                return true;
            }
        }
    }
    false
}

pub fn write_ca(farm: &Farm) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("sim-ca-{}.pem", rand::rng().random::<u64>()));
    std::fs::write(&path, farm.ca_pem()).unwrap();
    path
}
