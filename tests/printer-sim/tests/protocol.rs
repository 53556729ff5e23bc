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

/// A TLS connection to the first printer's `port`, verified against the farm's CA.
async fn tls_connect(
    farm: &printyard_printer_sim::Farm,
    port: u16,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let printer = &farm.printers[0];
    let connector = tokio_rustls::TlsConnector::from(printyard_printer_sim::certs::client_config(
        farm.ca_pem(),
    ));
    let tcp = tokio::net::TcpStream::connect((printer.spec.ip, port))
        .await
        .unwrap();
    let name =
        rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::V4(printer.spec.ip).into());
    connector.connect(name, tcp).await.unwrap()
}

async fn camera_connect(
    farm: &printyard_printer_sim::Farm,
    code: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut tls = tls_connect(farm, 6000).await;
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

/// One RTSP exchange on `tls`: `request` (with its CSeq) sent, the reply's status line and
/// headers read (a body of Content-Length too).
async fn rtsp(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    request: &str,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut byte))
            .await
            .expect("a reply")
            .unwrap();
        reply.push(byte[0]);
    }
    let head = String::from_utf8(reply).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    tls.read_exact(&mut body).await.unwrap();
    head + &String::from_utf8(body).unwrap()
}

/// Debian's ffmpeg reading `url` as the gateway does (RTSP interleaved over the TLS connection).
fn ffmpeg_reading(url: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("ffmpeg");
    command
        .args(["-nostdin", "-hide_banner", "-loglevel", "error"])
        .args(["-rtsp_transport", "tcp", "-i", url])
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn ffmpeg_decodes_the_x1_rtsps_camera_and_the_session_keeps_to_rtsp() {
    use base64::Engine as _;
    let farm = farm(&[Model::X1C], 1.0, Some(4)).await;
    let printer = farm.printers[0].clone();
    let url = |code: &str| {
        format!(
            "rtsps://bblp:{code}@{}:322/streaming/live/1",
            printer.spec.ip
        )
    };
    // Debian's ffmpeg, as the gateway runs it: three frames of the configured size, H.264.
    let dir = std::env::temp_dir().join(format!("rtsps-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut decode = ffmpeg_reading(&url(&printer.spec.access_code));
    let decoded = decode
        .args(["-frames:v", "3", "-fps_mode", "passthrough", "-f", "image2"])
        .arg(dir.join("frame-%d.ppm"))
        .output();
    let decoded = tokio::time::timeout(Duration::from_secs(30), decoded)
        .await
        .expect("ffmpeg decodes within 30 s")
        .unwrap();
    assert!(
        decoded.status.success(),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    let frames: Vec<Vec<u8>> = (1..=3)
        .map(|n| std::fs::read(dir.join(format!("frame-{n}.ppm"))).unwrap())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    for frame in &frames {
        assert!(frame.starts_with(b"P6\n320 180\n255\n"), "320x180 RGB");
    }
    assert_ne!(frames[0], frames[1], "each frame shows its number");
    assert_ne!(frames[1], frames[2]);

    // A wrong access code: 401, as ffmpeg says it.
    let mut refuse = ffmpeg_reading(&url("00000000"));
    let refused = refuse.args(["-frames:v", "1", "-f", "null", "-"]).output();
    let refused = tokio::time::timeout(Duration::from_secs(20), refused)
        .await
        .unwrap()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Request by request, from RFC 2326: what needs the code asks for it, UDP is refused (the
    // printer is reached over its one TLS connection), PLAY needs the session SETUP gave.
    let mut tls = tls_connect(&farm, 322).await;
    let base = format!("rtsp://{}:322/streaming/live/1", printer.spec.ip);
    let auth = format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD
            .encode(format!("bblp:{}", printer.spec.access_code))
    );
    let reply = rtsp(
        &mut tls,
        &format!("DESCRIBE {base} RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
    )
    .await;
    assert!(reply.starts_with("RTSP/1.0 401 "), "{reply}");
    assert!(reply.contains("WWW-Authenticate: Basic"), "{reply}");
    let reply = rtsp(
        &mut tls,
        &format!("DESCRIBE {base} RTSP/1.0\r\nCSeq: 2\r\n{auth}\r\n"),
    )
    .await;
    assert!(reply.starts_with("RTSP/1.0 200 "), "{reply}");
    assert!(reply.contains("CSeq: 2"));
    assert!(
        reply.contains("m=video 0 RTP/AVP 96") && reply.contains("H264/90000"),
        "{reply}"
    );
    let reply = rtsp(
        &mut tls,
        &format!("PLAY {base} RTSP/1.0\r\nCSeq: 3\r\n{auth}Session: 1\r\n\r\n"),
    )
    .await;
    assert!(
        reply.starts_with("RTSP/1.0 454 "),
        "no session yet: {reply}"
    );
    let reply = rtsp(
        &mut tls,
        &format!(
            "SETUP {base}/trackID=1 RTSP/1.0\r\nCSeq: 4\r\n{auth}Transport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n"
        ),
    )
    .await;
    assert!(reply.starts_with("RTSP/1.0 461 "), "{reply}");
    let reply = rtsp(
        &mut tls,
        &format!(
            "SETUP {base}/trackID=1 RTSP/1.0\r\nCSeq: 5\r\n{auth}Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        ),
    )
    .await;
    assert!(reply.starts_with("RTSP/1.0 200 "), "{reply}");
    assert!(reply.contains("interleaved=0-1"), "{reply}");
    let session = reply
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    let reply = rtsp(
        &mut tls,
        &format!("PLAY {base} RTSP/1.0\r\nCSeq: 6\r\n{auth}Session: {session}\r\n\r\n"),
    )
    .await;
    assert!(reply.starts_with("RTSP/1.0 200 "), "{reply}");
    // Then RTP on channel 0: the first packet starts a frame with its SPS.
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut header))
        .await
        .expect("RTP within 5 s")
        .unwrap();
    assert_eq!((header[0], header[1]), (b'$', 0));
    let mut packet = vec![0u8; u16::from_be_bytes([header[2], header[3]]) as usize];
    tls.read_exact(&mut packet).await.unwrap();
    assert_eq!(packet[0] >> 6, 2, "RTP version 2");
    assert_eq!(packet[1] & 0x7F, 96);
    assert_eq!(packet[12] & 0x1F, 7, "an SPS first");
    assert_eq!(printer.snapshot().camera_clients, 1);
}
