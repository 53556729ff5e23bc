//! Cameras through the API, the gateway and the simulator's port-6000 camera: a stream shows
//! the printer's frames untouched and in order, any number of viewers on any number of api
//! replicas cost the printer one connection, a snapshot is the newest frame, `stop` ends every
//! stream and closes the camera, the camera closes after its last viewer, and what cannot be
//! watched is said fast. An RTSPS camera (GStreamer's RTSP server with the printer's
//! certificate) arrives as MJPEG through the gateway's ffmpeg, which is gone soon after the
//! last viewer; the simulator's own X1C camera (RTSPS too) gives a snapshot.

use std::time::{Duration, Instant};

use printyard_api::auth::Permission;
use printyard_printer_sim::Model;
use printyard_printer_sim::camera::{CameraConfig, render, seed_of};
use printyard_printer_sim::printer::Printer;
use printyard_tests::mjpeg::MjpegReader;
use printyard_tests::{
    Running, SimFarm, TestEnv, add_printer, eventually, keyed_http, spawn_api, spawn_gateway_with,
    wait_connected,
};
use serde_json::{Value, json};

const WIDTH: u16 = 160;
const HEIGHT: u16 = 90;

struct Setup {
    env: TestEnv,
    sim: SimFarm,
    apis: Vec<Running>,
    client: reqwest::Client,
    /// For streams: no deadline on the whole response, only on each read.
    streams: reqwest::Client,
    _gateway: Running,
}

async fn setup(replicas: usize, linger_secs: u64) -> Setup {
    setup_with(Model::A1Mini, replicas, linger_secs, |_| {}).await
}

async fn setup_with(
    model: Model,
    replicas: usize,
    linger_secs: u64,
    configure: impl FnOnce(&mut printyard_gateway::Config),
) -> Setup {
    let env = TestEnv::new().await;
    let sim = SimFarm::start_with_camera(
        &[model],
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
    configure(&mut config);
    let gateway = spawn_gateway_with(config).await;
    let key = env
        .api_key(&[Permission::Read, Permission::Write, Permission::Control])
        .await;
    Setup {
        env,
        sim,
        apis,
        client: keyed_http(&key),
        streams: printyard_tests::keyed_stream_http(&key),
        _gateway: gateway,
    }
}

impl Setup {
    fn printer(&self) -> &Printer {
        &self.sim.farm.printers[0]
    }

    async fn add_printer(&self, access_code: &str) -> i64 {
        let base = self.apis[0].api_url("");
        add_printer(&self.client, &base, self.printer(), "Watched", access_code).await
    }

    async fn online_printer(&self) -> i64 {
        let id = self.add_printer(&self.printer().spec.access_code).await;
        let base = self.apis[0].api_url("");
        wait_connected(&self.client, &base, id, Duration::from_secs(20)).await;
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
            .streams
            .get(self.apis[replica].api_url(&format!("/printers/{id}/camera/stream?fps={fps}")))
            .send()
            .await
            .unwrap();
        let status = response.status();
        if status != 200 {
            panic!(
                "stream {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
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
        match tokio::time::timeout(left, reader.next()).await {
            Ok(Some(_)) => frames += 1,
            Ok(None) => panic!("the stream ended"),
            Err(_) => {}
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

/// GStreamer's RTSP server speaking for a printer's RTSPS camera (`tests/rtsps_server.py`).
struct RtspsCamera {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    clients: usize,
    _dir: printyard_tests::nats_server::TempDir,
}

impl RtspsCamera {
    async fn start(sim: &SimFarm, printer: &Printer, port: u16) -> Self {
        use tokio::io::AsyncBufReadExt;
        let dir = printyard_tests::nats_server::TempDir::new("rtsps");
        let (cert, key) = sim.farm.identity_pem(printer).unwrap();
        let (cert_path, key_path) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/rtsps_server.py");
        let mut child = tokio::process::Command::new("/usr/bin/python3")
            .arg(script)
            .arg(printer.spec.ip.to_string())
            .arg(port.to_string())
            .arg(&cert_path)
            .arg(&key_path)
            .arg(&printer.spec.access_code)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with GStreamer's RTSP server (scripts/test installs them)");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the RTSPS server starts")
            .unwrap();
        assert_eq!(first.as_deref(), Some("listening"));
        Self {
            child,
            lines,
            clients: 0,
            _dir: dir,
        }
    }

    /// Waits until the server counts `n` clients.
    async fn clients(&mut self, n: usize, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.clients != n {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("{} RTSPS clients, not {n}", self.clients))
                .unwrap()
                .expect("the RTSPS server runs");
            if let Some(count) = line.strip_prefix("clients ") {
                self.clients = count.parse().unwrap();
            }
        }
    }
}

impl Drop for RtspsCamera {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// How many of [`transcoder_pids`] there are.
fn transcoders(access_code: &str) -> usize {
    transcoder_pids(access_code).len()
}

/// The ffmpeg processes this test's gateway runs for the printer with `access_code`, zombies
/// aside: children of this process (the gateway runs in it) whose command line (the relay's
/// URL) carries the code. Other tests of this binary run gateways, and ffmpegs, of their own.
fn transcoder_pids(access_code: &str) -> Vec<i32> {
    let me = std::process::id().to_string();
    let credentials = format!(":{access_code}@");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let dir = entry.ok()?.path();
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
            Some((stat, String::from_utf8_lossy(&cmdline).into_owned()))
        })
        .filter(|(stat, cmdline)| {
            // pid (comm) state ppid ...
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let fields: Vec<&str> = rest.split(' ').collect();
            stat.contains("(ffmpeg)")
                && fields.first() != Some(&"Z")
                && fields.get(1) == Some(&me.as_str())
                && cmdline.contains(&credentials)
        })
        .filter_map(|(stat, _)| stat.split(' ').next()?.parse().ok())
        .collect()
}

/// The width and height in a baseline JPEG's SOF0 segment.
fn jpeg_size(jpeg: &[u8]) -> Option<(u16, u16)> {
    let at = jpeg.windows(2).position(|w| w == [0xFF, 0xC0])?;
    let sof = jpeg.get(at + 5..at + 9)?;
    Some((
        u16::from_be_bytes([sof[2], sof[3]]),
        u16::from_be_bytes([sof[0], sof[1]]),
    ))
}

#[tokio::test]
async fn an_rtsps_camera_arrives_as_mjpeg_and_its_transcoder_goes_with_the_last_viewer() {
    let port = printyard_tests::nats_server::free_port();
    let setup = setup_with(Model::X1C, 1, 1, |config| {
        config.gateway.camera_rtsps_port = port;
        // The RTSPS handshake and ffmpeg's start took over 3 s once under the full suite's
        // load; the deadline is not what this test is about.
        config.gateway.camera_first_frame_secs = 10;
    })
    .await;
    let mut camera = RtspsCamera::start(&setup.sim, setup.printer(), port).await;
    let id = setup.online_printer().await;
    let code = setup.printer().spec.access_code.clone();
    assert_eq!(transcoders(&code), 0, "nobody watches: no transcoder");
    let mut viewer = setup.viewer(0, id, 5).await;
    camera.clients(1, Duration::from_secs(10)).await;
    assert_eq!(transcoders(&code), 1);
    let started = Instant::now();
    for _ in 0..10 {
        let part = viewer.next().await.expect("a frame");
        assert!(part.jpeg.starts_with(&[0xFF, 0xD8]) && part.jpeg.ends_with(&[0xFF, 0xD9]));
        assert_eq!(
            jpeg_size(&part.jpeg),
            Some((320, 180)),
            "the camera's H.264 decoded"
        );
    }
    let rate = 10.0 / started.elapsed().as_secs_f64();
    assert!((2.5..=8.0).contains(&rate), "about 5 fps: {rate:.1}");
    // A transcoder that dies is noticed and restarted; the viewer keeps its stream.
    let pids = transcoder_pids(&code);
    assert_eq!(pids.len(), 1);
    std::process::Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .unwrap();
    for _ in 0..5 {
        let part = tokio::time::timeout(Duration::from_secs(10), viewer.next())
            .await
            .expect("frames again after the restart")
            .expect("the stream goes on");
        assert_eq!(jpeg_size(&part.jpeg), Some((320, 180)));
    }
    let restarted = transcoder_pids(&code);
    assert_eq!(restarted.len(), 1);
    assert_ne!(restarted, pids, "a new transcoder");
    // A second viewer shares the transcoder.
    let mut second = setup.viewer(0, id, 5).await;
    second.next().await.expect("a frame");
    assert_eq!(transcoders(&code), 1);
    drop(viewer);
    drop(second);
    camera.clients(0, Duration::from_secs(8)).await;
    eventually(Duration::from_secs(5), "the transcoder gone", || async {
        (transcoders(&code) == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_simulated_x1cs_own_rtsps_camera_gives_a_snapshot_through_the_gateway() {
    simulated_rtsps_snapshot(Model::X1C).await;
}

#[tokio::test]
async fn the_simulated_h2ds_own_rtsps_camera_gives_a_snapshot_through_the_gateway() {
    simulated_rtsps_snapshot(Model::H2D).await;
}

/// A demo farm printer with an RTSPS camera: the simulator serves its H.264 on port 322 (no
/// stand-in server), the gateway's defaults reach it.
async fn simulated_rtsps_snapshot(model: Model) {
    let setup = setup_with(model, 1, 1, |config| {
        config.gateway.camera_first_frame_secs = 10;
    })
    .await;
    let id = setup.online_printer().await;
    let response = setup
        .get(0, &format!("/printers/{id}/camera/snapshot"))
        .await;
    assert_eq!(response.status(), 200, "{model:?}");
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    let jpeg = response.bytes().await.unwrap();
    assert!(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]));
    assert_eq!(
        jpeg_size(&jpeg),
        Some((WIDTH, HEIGHT)),
        "{model:?}: decoded from the camera's H.264"
    );
    assert_eq!(
        setup.camera_connections(),
        1,
        "{model:?}: the simulator's camera served it"
    );
}

#[tokio::test]
async fn a_stream_outlives_the_lease_its_replica_renews() {
    let setup = setup(1, 1).await;
    let id = setup.online_printer().await;
    let mut viewer = setup.viewer(0, id, 10).await;
    // The api's lease on the camera lasts 10 s, renewed every 3.3 s while it has viewers.
    for window in 0..4 {
        let frames = count(&mut viewer, Duration::from_secs(3)).await;
        assert!(frames >= 20, "10 fps in window {window}: {frames} frames");
    }
    assert_eq!(setup.camera_connections(), 1);
}

#[tokio::test]
async fn a_camera_that_sends_nothing_is_given_up_at_its_deadline() {
    let setup = setup(1, 1).await;
    let id = setup.online_printer().await;
    // A hung printer: its sockets stay open, nothing comes (the MQTT session is not yet taken
    // as dead: that takes `gateway.silence_secs`).
    let printer = setup.printer();
    printer.set_faults(printyard_printer_sim::Faults {
        silent: true,
        ..Default::default()
    });
    let started = Instant::now();
    let response = setup.get(0, &format!("/printers/{id}/camera/stream")).await;
    let took = started.elapsed();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "CAMERA_UNAVAILABLE");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("no frame within 3 s"), "{detail}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(6),
        "at the gateway's 3 s deadline: {took:?}"
    );
    // The printer recovers: after the backoff the camera is opened again.
    printer.set_faults(Default::default());
    eventually(Duration::from_secs(10), "a stream again", || async {
        let response = setup
            .get(0, &format!("/printers/{id}/camera/snapshot"))
            .await;
        (response.status() == 200).then_some(())
    })
    .await;
}
