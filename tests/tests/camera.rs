//! Cameras through the API, the gateway and the simulator's port-6000 camera: a stream shows
//! the printer's frames untouched and in order, any number of viewers on any number of api
//! replicas cost the printer one connection, a snapshot is the newest frame, `stop` ends every
//! stream and closes the camera, the camera closes after its last viewer, and what cannot be
//! watched is said fast.

use std::time::{Duration, Instant};

use printyard_api::access::Permission;
use printyard_printer_sim::Model;
use printyard_printer_sim::camera::{CameraConfig, render, seed_of};
use printyard_printer_sim::printer::Printer;
use printyard_tests::mjpeg::MjpegReader;
use printyard_tests::{
    Running, SimFarm, TestEnv, eventually, keyed_http, spawn_api, spawn_gateway_with,
};
use serde_json::{Value, json};

const WIDTH: u16 = 160;
const HEIGHT: u16 = 90;

struct Setup {
    env: TestEnv,
    sim: SimFarm,
    apis: Vec<Running>,
    client: reqwest::Client,
    _gateway: Running,
}

async fn setup(replicas: usize, linger_secs: u64) -> Setup {
    let env = TestEnv::new().await;
    let sim = SimFarm::start_with_camera(
        &[Model::A1Mini],
        1.0,
        CameraConfig {
            fps: 10.0,
            width: WIDTH,
            height: HEIGHT,
        },
    )
    .await;
    let mut apis = Vec::new();
    for _ in 0..replicas {
        apis.push(spawn_api(&env).await);
    }
    let mut config = sim.gateway_config(&env);
    config.gateway.camera_linger_secs = linger_secs;
    config.gateway.camera_first_frame_secs = 3;
    let gateway = spawn_gateway_with(config).await;
    let key = env
        .api_key(&[Permission::Read, Permission::Write, Permission::Control])
        .await;
    Setup {
        env,
        sim,
        apis,
        client: keyed_http(&key),
        _gateway: gateway,
    }
}

impl Setup {
    fn printer(&self) -> &Printer {
        &self.sim.farm.printers[0]
    }

    async fn add_printer(&self, access_code: &str) -> i64 {
        let printer = self.printer();
        let created: Value = self
            .client
            .post(self.apis[0].api_url("/printers"))
            .json(&json!({
                "name": "Watched", "ip_address": printer.spec.ip.to_string(),
                "access_code": access_code, "serial_number": printer.spec.serial,
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created["id"].as_i64().unwrap()
    }

    async fn online_printer(&self) -> i64 {
        let id = self.add_printer(&self.printer().spec.access_code).await;
        eventually(Duration::from_secs(20), "the printer connected", || async {
            let status: Value = self
                .client
                .get(self.apis[0].api_url(&format!("/printers/{id}/status")))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (status["connected"] == true).then_some(())
        })
        .await;
        id
    }

    async fn get(&self, replica: usize, path: &str) -> reqwest::Response {
        self.client
            .get(self.apis[replica].api_url(path))
            .send()
            .await
            .unwrap()
    }

    async fn viewer(&self, replica: usize, id: i64, fps: u32) -> MjpegReader {
        let response = self
            .get(replica, &format!("/printers/{id}/camera/stream?fps={fps}"))
            .await;
        assert_eq!(response.status(), 200);
        MjpegReader::new(response)
    }

    fn camera_clients(&self) -> usize {
        self.printer().snapshot().camera_clients
    }

    fn camera_connections(&self) -> usize {
        self.printer().snapshot().camera_connections_total
    }
}

/// How many frames `reader` gets in `window`.
async fn count(reader: &mut MjpegReader, window: Duration) -> usize {
    let started = Instant::now();
    let mut frames = 0;
    while let Some(left) = window.checked_sub(started.elapsed()) {
        if tokio::time::timeout(left, reader.next()).await.is_ok() {
            frames += 1;
        }
    }
    frames
}

/// The simulator's frame number of `jpeg` (it draws frames deterministically: the one that
/// renders to the same bytes), looked for from `from` on.
fn frame_number(printer: &Printer, jpeg: &[u8], from: u64) -> u64 {
    let seed = seed_of(&printer.spec.serial);
    (from..from + 200)
        .find(|&n| render(n, seed, WIDTH, HEIGHT).as_deref() == Some(jpeg))
        .unwrap_or_else(|| panic!("not a frame of this camera (from frame {from} on)"))
}

#[tokio::test]
async fn viewers_on_two_replicas_share_one_upstream_until_stop_ends_them_all() {
    let setup = setup(2, 30).await;
    let id = setup.online_printer().await;
    let printer = setup.printer();
    let mut viewers = vec![
        setup.viewer(0, id, 10).await,
        setup.viewer(0, id, 10).await,
        setup.viewer(1, id, 10).await,
    ];
    // Every viewer sees the camera's frames untouched (byte for byte what the printer sent)
    // and in order.
    for viewer in &mut viewers {
        let mut last = None;
        for _ in 0..5 {
            let part = viewer.next().await.expect("a frame");
            assert!(part.timestamp_us.is_some());
            let n = frame_number(printer, &part.jpeg, last.map_or(0, |l| l + 1));
            last = Some(n);
        }
    }
    assert_eq!(
        setup.camera_connections(),
        1,
        "three viewers on two replicas: one upstream"
    );
    assert_eq!(setup.camera_clients(), 1);

    // A snapshot while the camera is open is its newest frame, without a new connection.
    let snapshot = setup
        .get(1, &format!("/printers/{id}/camera/snapshot"))
        .await;
    assert_eq!(snapshot.status(), 200);
    assert_eq!(snapshot.headers()["content-type"], "image/jpeg");
    let jpeg = snapshot.bytes().await.unwrap();
    frame_number(printer, &jpeg, 0);
    assert_eq!(setup.camera_connections(), 1);

    // `stop` through one replica ends the streams of both and closes the camera.
    let stopped = setup
        .client
        .post(setup.apis[1].api_url(&format!("/printers/{id}/camera/stop")))
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.status(), 200);
    assert_eq!(
        stopped.json::<Value>().await.unwrap(),
        json!({"printer_id": id, "stopped": true})
    );
    for viewer in &mut viewers {
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            while viewer.next().await.is_some() {}
        })
        .await;
        assert!(ended.is_ok(), "the stream ended");
    }
    eventually(Duration::from_secs(5), "the camera closed", || async {
        (setup.camera_clients() == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_camera_closes_after_its_last_viewer_and_a_cold_snapshot_lets_go() {
    let setup = setup(1, 1).await;
    let id = setup.online_printer().await;
    assert_eq!(setup.camera_connections(), 0, "nobody watches: no camera");

    // Slow and fast viewers together: each gets its own rate from one upstream at the highest.
    let mut slow = setup.viewer(0, id, 2).await;
    let mut fast = setup.viewer(0, id, 10).await;
    let (slow_frames, fast_frames) = tokio::join!(
        count(&mut slow, Duration::from_secs(3)),
        count(&mut fast, Duration::from_secs(3))
    );
    assert!(
        (4..=9).contains(&slow_frames),
        "2 fps for 3 s: {slow_frames} frames"
    );
    assert!(fast_frames >= 15, "10 fps for 3 s: {fast_frames} frames");
    drop(slow);
    drop(fast);
    eventually(Duration::from_secs(6), "the camera closed", || async {
        (setup.camera_clients() == 0).then_some(())
    })
    .await;
    assert_eq!(setup.camera_connections(), 1);

    // A cold snapshot connects, takes a frame and lets go.
    let started = Instant::now();
    let snapshot = setup
        .get(0, &format!("/printers/{id}/camera/snapshot"))
        .await;
    assert_eq!(snapshot.status(), 200);
    let jpeg = snapshot.bytes().await.unwrap();
    assert!(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]));
    frame_number(setup.printer(), &jpeg, 0);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(setup.camera_connections(), 2);
    eventually(Duration::from_secs(3), "the camera let go", || async {
        (setup.camera_clients() == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn what_cannot_be_watched_is_said_fast() {
    let setup = setup(1, 1).await;
    let check = |response: reqwest::Response, status: u16, code: &'static str| async move {
        assert_eq!(response.status(), status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
        body["detail"].as_str().unwrap().to_owned()
    };
    // Unknown printers, bad rates.
    check(
        setup.get(0, "/printers/999/camera/stream").await,
        404,
        "NOT_FOUND",
    )
    .await;
    check(
        setup.get(0, "/printers/999/camera/snapshot").await,
        404,
        "NOT_FOUND",
    )
    .await;
    let id = setup.add_printer("00000000").await;
    for fps in ["0", "31", "x"] {
        let response = setup
            .get(0, &format!("/printers/{id}/camera/stream?fps={fps}"))
            .await;
        assert_eq!(response.status(), 422, "fps={fps}");
    }
    // A wrong access code: the printer refuses it, and the camera is unavailable for that.
    eventually(Duration::from_secs(20), "the refusal seen", || async {
        let status: Value = setup
            .get(0, &format!("/printers/{id}/status"))
            .await
            .json()
            .await
            .ok()?;
        status["connection_error"]
            .as_str()
            .is_some_and(|e| e.contains("access code"))
            .then_some(())
    })
    .await;
    for path in ["stream", "snapshot"] {
        let started = Instant::now();
        let detail = check(
            setup.get(0, &format!("/printers/{id}/camera/{path}")).await,
            503,
            "CAMERA_UNAVAILABLE",
        )
        .await;
        assert!(detail.contains("access code"), "{detail}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path} said fast"
        );
    }
    // An offline printer (nothing answers at its address).
    let (status, _) = setup.apis[0]
        .send_json(
            &setup.client,
            reqwest::Method::PATCH,
            &format!("/printers/{id}"),
            Some(json!({"ip_address": "127.0.0.1"})),
        )
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let detail = check(
        setup.get(0, &format!("/printers/{id}/camera/stream")).await,
        503,
        "CAMERA_UNAVAILABLE",
    )
    .await;
    assert!(detail.contains("offline"), "{detail}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(setup.camera_connections(), 0, "no camera was opened");
    let _ = &setup.env;
}
