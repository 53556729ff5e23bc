//! Live streams through a reverse proxy as farms put one in front of the api: nginx from
//! Debian with its defaults (`proxy_buffering on`, HTTP/1.0 to the upstream). The api marks
//! `/events` and the camera's MJPEG `X-Accel-Buffering: no`, so events and frames pass as they
//! come; a location told to ignore that header shows what a buffering proxy would do to them.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use printyard_api::auth::Permission;
use printyard_printer_sim::Model;
use printyard_printer_sim::camera::CameraConfig;
use printyard_tests::mjpeg::MjpegReader;
use printyard_tests::nats_server::{TempDir, free_port};
use printyard_tests::sse::{Sse, SseReader};
use printyard_tests::{
    SimFarm, TestEnv, add_printer, eventually, keyed_http, keyed_stream_http, spawn_api,
    spawn_gateway_with, wait_connected,
};

/// Debian's nginx in front of `upstream`, in the foreground, with a prefix of its own.
struct Nginx {
    child: tokio::process::Child,
    port: u16,
    _dir: TempDir,
}

impl Nginx {
    async fn start(upstream: SocketAddr) -> Self {
        let dir = TempDir::new("nginx");
        let port = free_port();
        let path = |name: &str| dir.0.join(name).display().to_string();
        // Only what a private instance needs (paths of its own, one process, no user switch);
        // every proxy setting is nginx's default. `/ignoring/` is the same proxy told to
        // ignore the api's `X-Accel-Buffering`.
        let config = format!(
            "daemon off;\nmaster_process off;\npid {pid};\nerror_log {log} warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n\
               fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n\
               server {{\n    listen 127.0.0.1:{port};\n\
                 location / {{ proxy_pass http://{upstream}; }}\n\
                 location /ignoring/ {{ proxy_pass http://{upstream}/; proxy_ignore_headers X-Accel-Buffering; }}\n\
               }}\n}}\n",
            pid = path("nginx.pid"),
            log = path("error.log"),
            tmp = dir.0.display(),
        );
        std::fs::write(dir.0.join("nginx.conf"), config).unwrap();
        let child = tokio::process::Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(dir.0.join("nginx.conf"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx from Debian (scripts/test installs it)");
        eventually(Duration::from_secs(10), "nginx listening", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(drop)
        })
        .await;
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The next `printer_status` event that `wanted` accepts, within `within`.
async fn status_event(
    reader: &mut SseReader,
    within: Duration,
    wanted: impl Fn(&Sse) -> bool,
) -> Option<Sse> {
    tokio::time::timeout(within, async {
        while let Some(event) = reader.next().await {
            if event.event == "printer_status" && wanted(&event) {
                return Some(event);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

fn hms_count(event: &Sse) -> usize {
    event.data["status"]["hms"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn events_and_camera_frames_pass_a_buffering_nginx_as_they_come() {
    let env = TestEnv::new().await;
    let sim = SimFarm::start_with_camera(
        &[Model::A1Mini],
        1.0,
        CameraConfig {
            fps: 10.0,
            width: 160,
            height: 90,
        },
    )
    .await;
    let _gateway = spawn_gateway_with(sim.gateway_config(&env)).await;
    let api = spawn_api(&env).await;
    let key = env
        .api_key(&[Permission::Read, Permission::Write, Permission::Control])
        .await;
    let client = keyed_http(&key);
    let streams = keyed_stream_http(&key);
    let printer = sim.farm.printers[0].clone();
    let base = api.api_url("");
    let id = add_printer(
        &client,
        &base,
        &printer,
        "Proxied",
        &printer.spec.access_code,
    )
    .await;
    wait_connected(&client, &base, id, Duration::from_secs(20)).await;
    let nginx = Nginx::start(api.http_addr.unwrap()).await;

    // The dashboard's stream through the proxy: the current status at once, then each change
    // within a second of the printer's report.
    let events = |prefix: &str| {
        streams
            .get(nginx.url(&format!("{prefix}/api/v1/events?printer_id={id}")))
            .header("accept", "text/event-stream")
            .send()
    };
    let response = events("").await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-transform"),
        "{:?}",
        response.headers()
    );
    let mut proxied = SseReader::new(response);
    status_event(&mut proxied, Duration::from_secs(2), |_| true)
        .await
        .expect("the printer's status through nginx within 2 s");
    for round in 0..3 {
        let raised = Instant::now();
        printer.raise_hms(0x0300_0100, 0x0001_0001 + round);
        status_event(&mut proxied, Duration::from_secs(5), |e| hms_count(e) > 0)
            .await
            .expect("the HMS through nginx");
        let took = raised.elapsed();
        assert!(took < Duration::from_secs(1), "round {round}: {took:?}");
        let cleared = Instant::now();
        printer.clear_hms();
        status_event(&mut proxied, Duration::from_secs(5), |e| hms_count(e) == 0)
            .await
            .expect("the clearing through nginx");
        let took = cleared.elapsed();
        assert!(took < Duration::from_secs(1), "round {round}: {took:?}");
    }

    // What the header prevents: the same proxy ignoring it holds the stream back (nothing,
    // not even the first status, while the same changes happen).
    // (Buffered, even the answer's head may wait: the request runs beside the changes.)
    let held = tokio::spawn(events("/ignoring"));
    let opened = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    printer.raise_hms(0x0300_0100, 0x0001_0009);
    let early = tokio::time::timeout(Duration::from_millis(1500), async {
        let response = held.await.unwrap().ok()?;
        let mut held = SseReader::new(response);
        status_event(&mut held, Duration::from_secs(10), |_| true).await
    })
    .await;
    printer.clear_hms();
    assert!(
        !matches!(early, Ok(Some(_))),
        "a buffering proxy held nothing back ({:?}): the control case proves nothing",
        opened.elapsed()
    );

    // The camera's MJPEG through the proxy: frames at the rate asked, from the first second.
    let response = streams
        .get(nginx.url(&format!("/api/v1/printers/{id}/camera/stream?fps=10")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut camera = MjpegReader::new(response);
    let opened = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), camera.next())
        .await
        .expect("a first frame through nginx")
        .expect("the stream goes on");
    let first = opened.elapsed();
    let started = Instant::now();
    for _ in 0..10 {
        tokio::time::timeout(Duration::from_secs(2), camera.next())
            .await
            .expect("frames keep coming through nginx")
            .expect("the stream goes on");
    }
    let rate = 10.0 / started.elapsed().as_secs_f64();
    assert!(
        rate > 6.0,
        "about 10 fps through nginx: {rate:.1} (first frame after {first:?})"
    );
}
