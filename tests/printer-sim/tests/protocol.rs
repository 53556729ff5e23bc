//! The simulator over real sockets, with real clients: rumqttc over TLS (as the gateway will
//! connect), mosquitto_sub and curl from Debian, and a camera client written from the protocol
//! notes.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use printyard_printer_sim::Model;
use printyard_printer_sim::farm::{DEMO_3MF, DEMO_PATH};
use serde_json::{Value, json};

#[tokio::test]
async fn mosquitto_sub_connects_over_tls_with_the_ca_file_and_receives_reports() {
    let farm = farm(&[Model::P1S], 60.0, Some(4)).await;
    let printer = &farm.printers[0];
    let ca = write_ca(&farm);
    let ip = printer.spec.ip.to_string();
    let topic = printer.report_topic();
    let child = tokio::process::Command::new("mosquitto_sub")
        .args([
            "-h",
            &ip,
            "-p",
            "8883",
            "--cafile",
            ca.to_str().unwrap(),
            "--tls-version",
            "tlsv1.2",
        ])
        .args([
            "-u",
            "bblp",
            "-P",
            &printer.spec.access_code,
            "-t",
            &topic,
            "-C",
            "1",
            "-W",
            "10",
        ])
        .output();
    // Something to report: an idle printer sends a heartbeat delta every second here.
    let output = child
        .await
        .expect("mosquitto_sub runs (scripts/test installs mosquitto-clients)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["print"]["command"], "push_status");

    // tokio's process API: a blocking wait would stall the simulator on this test's runtime.
    let refused = tokio::process::Command::new("mosquitto_sub")
        .args(["-h", &ip, "-p", "8883", "--cafile", ca.to_str().unwrap()])
        .args([
            "-u", "bblp", "-P", "00000000", "-t", &topic, "-C", "1", "-W", "5",
        ])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not authorised"),
        "{:?}",
        refused
    );
}

#[tokio::test]
async fn a_wrong_access_code_gets_connack_5_not_authorised() {
    let farm = farm(&[Model::A1], 1.0, Some(4)).await;
    let serial = farm.printers[0].spec.serial.clone();
    let (_client, mut eventloop) = mqtt(&farm, &serial, Some("99999999")).await;
    match eventloop.poll().await {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, rumqttc::ConnectReturnCode::NotAuthorized)
        }
        other => panic!("expected CONNACK 5, got {other:?}"),
    }
}

#[tokio::test]
async fn the_client_cap_refuses_one_client_too_many() {
    let farm = farm(&[Model::A1Mini], 1.0, Some(1)).await;
    let serial = farm.printers[0].spec.serial.clone();
    let (_first, mut first_loop) = mqtt(&farm, &serial, None).await;
    assert!(matches!(
        first_loop.poll().await,
        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))
    ));
    let (_second, mut second_loop) = mqtt(&farm, &serial, None).await;
    match second_loop.poll().await {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, rumqttc::ConnectReturnCode::ServiceUnavailable)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(farm.printers[0].snapshot().mqtt_clients, 1);
}

#[tokio::test]
async fn pushall_answers_a_full_report_and_get_version_names_the_product() {
    let farm = farm(&[Model::X1C, Model::A1], 1.0, Some(4)).await;
    for printer in &farm.printers {
        let serial = printer.spec.serial.clone();
        let (client, mut eventloop) = mqtt(&farm, &serial, None).await;
        send(&client, &serial, json!({"pushing": {"sequence_id": "0", "command": "pushall", "version": 1, "push_target": 1}})).await;
        let full = loop {
            let report = next_report(&mut eventloop, Duration::from_secs(5))
                .await
                .expect("a report");
            if report["print"]["msg"] == 0 {
                break report;
            }
        };
        assert_eq!(full["print"]["command"], "push_status");
        assert!(
            full["print"].get("ams").is_some(),
            "a full report has everything"
        );

        send(
            &client,
            &serial,
            json!({"info": {"sequence_id": "42", "command": "get_version"}}),
        )
        .await;
        let version = loop {
            let report = next_report(&mut eventloop, Duration::from_secs(5))
                .await
                .expect("an answer");
            if report.get("info").is_some() {
                break report;
            }
        };
        assert_eq!(version["info"]["sequence_id"], "42");
        let ota = version["info"]["module"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "ota")
            .unwrap();
        assert_eq!(ota["product_name"], printer.spec.model.product_name());
        assert_eq!(ota["sn"], serial.as_str());
    }
}

#[tokio::test]
async fn delta_models_send_msg_1_and_the_x1_full_reports_with_msg_0() {
    let farm = farm(&[Model::X1C, Model::P1P], 60.0, Some(4)).await;
    for printer in &farm.printers {
        printer.store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
        let serial = printer.spec.serial.clone();
        let (_client, mut eventloop) = mqtt(&farm, &serial, None).await;
        printer.start_from_touchscreen(DEMO_PATH, 1).unwrap();
        let report = next_report(&mut eventloop, Duration::from_secs(5))
            .await
            .unwrap();
        let msg = report["print"]["msg"].as_i64().unwrap();
        if printer.spec.model.sends_deltas() {
            assert_eq!(msg, 1, "{report}");
            assert!(
                report["print"].get("ams").is_none()
                    || report["print"].as_object().unwrap().len() < 30
            );
        } else {
            assert_eq!(msg, 0);
            assert!(
                report["print"].get("ams").is_some(),
                "X1 sends everything every time"
            );
        }
    }
}

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs")
}

#[tokio::test]
async fn curl_uploads_lists_and_downloads_by_implicit_ftps_and_session_reuse_is_enforced() {
    let farm = farm(&[Model::P1S], 1.0, Some(4)).await;
    let printer = farm.printers[0].clone();
    let ca = write_ca(&farm);
    let ca = ca.to_str().unwrap().to_owned();
    let user = format!("bblp:{}", printer.spec.access_code);
    let url = format!("ftps://{}/cache/", printer.spec.ip);
    let local = std::env::temp_dir().join(format!("cube-{}.3mf", std::process::id()));
    std::fs::write(&local, DEMO_3MF).unwrap();

    let (ca2, user2, url2, local2) = (ca.clone(), user.clone(), url.clone(), local.clone());
    let upload = tokio::task::spawn_blocking(move || {
        curl(&[
            "--cacert",
            &ca2,
            "-u",
            &user2,
            "-T",
            local2.to_str().unwrap(),
            &format!("{url2}cube.gcode.3mf"),
        ])
    })
    .await
    .unwrap();
    assert!(
        upload.status.success(),
        "{}",
        String::from_utf8_lossy(&upload.stderr)
    );
    assert_eq!(
        printer.file("/cache/cube.gcode.3mf").unwrap().as_ref(),
        DEMO_3MF
    );

    let (ca2, user2, url2) = (ca.clone(), user.clone(), url.clone());
    let listing =
        tokio::task::spawn_blocking(move || curl(&["--cacert", &ca2, "-u", &user2, &url2]))
            .await
            .unwrap();
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(
        text.contains("cube.gcode.3mf") && text.contains(&DEMO_3MF.len().to_string()),
        "{text}"
    );

    let (ca2, user2, url2) = (ca.clone(), user.clone(), url.clone());
    let download = tokio::task::spawn_blocking(move || {
        curl(&[
            "--cacert",
            &ca2,
            "-u",
            &user2,
            &format!("{url2}cube.gcode.3mf"),
        ])
    })
    .await
    .unwrap();
    assert_eq!(download.stdout, DEMO_3MF, "byte-identical");

    let (ca2, user2, url2) = (ca.clone(), user.clone(), url.clone());
    let no_reuse = tokio::task::spawn_blocking(move || {
        curl(&["--no-sessionid", "--cacert", &ca2, "-u", &user2, &url2])
    })
    .await
    .unwrap();
    assert!(!no_reuse.status.success());
    assert!(
        String::from_utf8_lossy(&no_reuse.stderr).contains("522"),
        "{}",
        String::from_utf8_lossy(&no_reuse.stderr)
    );

    let wrong =
        tokio::task::spawn_blocking(move || curl(&["--cacert", &ca, "-u", "bblp:00000000", &url]))
            .await
            .unwrap();
    assert!(!wrong.status.success());
    let _ = std::fs::remove_file(local);
}

async fn camera_connect(
    farm: &printyard_printer_sim::Farm,
    code: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let printer = &farm.printers[0];
    let connector = tokio_rustls::TlsConnector::from(printyard_printer_sim::certs::client_config(
        farm.ca_pem(),
    ));
    let tcp = tokio::net::TcpStream::connect((printer.spec.ip, 6000))
        .await
        .unwrap();
    let name =
        rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::V4(printer.spec.ip).into());
    let mut tls = connector.connect(name, tcp).await.unwrap();
    use tokio::io::AsyncWriteExt;
    // The 80-byte auth packet, built here from the protocol notes rather than the simulator's helper.
    let mut packet = vec![];
    for word in [0x40u32, 0x3000, 0, 0] {
        packet.extend_from_slice(&word.to_le_bytes());
    }
    let mut field = |text: &str| {
        let mut f = [0u8; 32];
        f[..text.len()].copy_from_slice(text.as_bytes());
        packet.extend_from_slice(&f);
    };
    field("bblp");
    field(code);
    tls.write_all(&packet).await.unwrap();
    tls
}

#[tokio::test]
async fn a_camera_client_receives_distinct_jpeg_frames_and_a_wrong_code_is_closed_silently() {
    use tokio::io::AsyncReadExt;
    let farm = farm(&[Model::A1], 1.0, Some(4)).await;
    let code = farm.printers[0].spec.access_code.clone();
    let mut stream = camera_connect(&farm, &code).await;
    let mut frames = Vec::new();
    for _ in 0..2 {
        let mut header = [0u8; 16];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut header))
            .await
            .unwrap()
            .unwrap();
        let word = |i: usize| u32::from_le_bytes(header[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!((word(1), word(2), word(3)), (0, 1, 0));
        let mut jpeg = vec![0u8; word(0) as usize];
        stream.read_exact(&mut jpeg).await.unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9]);
        frames.push(jpeg);
    }
    assert_ne!(frames[0], frames[1], "each frame is visibly different");
    assert_eq!(farm.printers[0].snapshot().camera_clients, 1);

    let mut refused = camera_connect(&farm, "00000000").await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), refused.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed without a frame: {read:?}"
    );
}
