//! Cameras under load: the gateway and the api each in a child process (this binary re-run), so
//! their CPU time is their own, read from `/proc`; the simulator (which draws and encodes every
//! frame), NATS, Postgres and the viewers run beside them on the same cores.
//!
//! 1. `BENCH_VIEWERS` (100) viewers of one port-6000 camera at 15 fps (1280×720 frames, as
//!    printers send), all through one api process: CPU of gateway and api, frames delivered,
//!    and frame latency (from the gateway receiving a frame to a viewer reading it: the
//!    `X-Frame-Timestamp` of each part against the viewer's clock, the same machine's).
//! 2. `BENCH_PRINTERS` (50) printers streamed at once, one viewer each, at 5 fps (640×360).

use std::sync::Arc;
use std::time::{Duration, Instant};

use printyard_api::auth::Permission;
use printyard_printer_sim::Model;
use printyard_printer_sim::camera::CameraConfig;
use printyard_tests::mjpeg::MjpegReader;
use printyard_tests::nats_server::free_port;
use printyard_tests::{
    ChildService, SimFarm, TestEnv, add_printer, keyed_http, keyed_stream_http, process_usage,
    run_child_api, run_child_gateway, wait_connected,
};

const WINDOW: Duration = Duration::from_secs(20);

fn main() {
    if std::env::var_os("PRINTYARD_CHILD_GATEWAY").is_some() {
        return run_child_gateway();
    }
    if std::env::var_os("PRINTYARD_CHILD_API").is_some() {
        return run_child_api();
    }
    printyard_service::runtime::install_crypto_provider();
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(run(1, number("BENCH_VIEWERS", 100), 15, (1280, 720)));
    runtime.block_on(run(number("BENCH_PRINTERS", 50), 1, 5, (640, 360)));
}

/// User+system CPU seconds of `pid`.
fn cpu_seconds(pid: u32) -> f64 {
    process_usage(pid).0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn run(printers: usize, viewers_each: usize, fps: u32, (width, height): (u16, u16)) {
    // What drawing a frame costs the simulator (it draws and encodes every frame it sends).
    let started = Instant::now();
    for n in 0..10 {
        printyard_printer_sim::camera::render(n, 7, width, height);
    }
    println!(
        "simulator: drawing and encoding one {width}×{height} frame takes {:.1} ms",
        started.elapsed().as_secs_f64() * 100.0
    );
    let env = TestEnv::new().await;
    let sim = SimFarm::start_with_camera(
        &vec![Model::A1Mini; printers],
        1.0,
        CameraConfig {
            fps: f64::from(fps),
            width,
            height,
        },
    )
    .await;
    // The simulator's own rate, read straight from its camera (no gateway).
    {
        let printer = &sim.farm.printers[0];
        let anchors = printyard_bambu::tls::trust_anchors(&[sim.farm.ca_pem()]);
        let (tls, _) = printyard_bambu::tls::client_config(
            &printer.spec.serial,
            Arc::new(anchors),
            printyard_bambu::tls::TrustMode::Verify { pin: None },
        )
        .unwrap();
        let code = printyard_bambu::mqtt::AccessCode::parse(&printer.spec.access_code).unwrap();
        let mut camera = printyard_bambu::camera::JpegCamera::connect(
            &printer.spec.ip.to_string(),
            6000,
            &code,
            tls,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let started = Instant::now();
        let mut n = 0;
        while started.elapsed() < Duration::from_secs(3) {
            camera.next_frame(Duration::from_secs(5)).await.unwrap();
            n += 1;
        }
        println!(
            "simulator camera read directly: {:.1} frames/s",
            n as f64 / started.elapsed().as_secs_f64()
        );
    }
    let gateway = ChildService::spawn("child_gateway", &sim.gateway_config(&env));
    let mut config = env.api_config();
    config.rate_limits.enabled = false;
    let port = free_port();
    config.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let api = ChildService::spawn_api("child_api", &config);
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let key = env.api_key(&[Permission::Admin]).await;
    let client = keyed_http(&key);
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the api starts");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut ids = Vec::new();
    for printer in &sim.farm.printers {
        let code = &printer.spec.access_code;
        ids.push(add_printer(&client, &base, printer, &printer.spec.name, code).await);
    }
    for id in &ids {
        wait_connected(&client, &base, *id, Duration::from_secs(60)).await;
    }
    // One connection per viewer, as browsers on different machines.
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let frames = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for id in &ids {
        for _ in 0..viewers_each {
            let url = format!("{base}/printers/{id}/camera/stream?fps={fps}");
            let key = key.clone();
            let (latencies, frames, measuring) =
                (latencies.clone(), frames.clone(), measuring.clone());
            tasks.push(tokio::spawn(async move {
                let client = keyed_stream_http(&key);
                let response = client.get(url).send().await.unwrap();
                assert_eq!(response.status(), 200, "a stream");
                let mut reader = MjpegReader::new(response);
                while let Some(part) = reader.next().await {
                    if !measuring.load(std::sync::atomic::Ordering::Relaxed) {
                        continue;
                    }
                    let now = chrono::Utc::now().timestamp_micros();
                    if let (Some(at), Ok(mut all)) = (part.timestamp_us, latencies.lock()) {
                        all.push((now - at) as f64 / 1000.0);
                    }
                    frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
    }
    // Let every viewer join, then measure a window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Frames the gateway publishes (parts of large frames counted once each part).
    let published = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut frames_sub = env
        .nats
        .client()
        .await
        .subscribe("printyard.camera.>")
        .await
        .unwrap();
    let counting = tokio::spawn({
        let (published, measuring) = (published.clone(), measuring.clone());
        async move {
            use futures::StreamExt;
            while frames_sub.next().await.is_some() {
                if measuring.load(std::sync::atomic::Ordering::Relaxed) {
                    published.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    });
    let pids = (gateway.pid().unwrap(), api.pid().unwrap());
    let before = (cpu_seconds(pids.0), cpu_seconds(pids.1));
    measuring.store(true, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(WINDOW).await;
    measuring.store(false, std::sync::atomic::Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let after = (cpu_seconds(pids.0), cpu_seconds(pids.1));
    let delivered = frames.load(std::sync::atomic::Ordering::Relaxed);
    let upstreams: usize = sim
        .farm
        .printers
        .iter()
        .map(|p| p.snapshot().camera_connections_total)
        .sum();
    counting.abort();
    for task in &tasks {
        task.abort();
    }
    let mut latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    latencies.sort_by(f64::total_cmp);
    let viewers = printers * viewers_each;
    println!(
        "{printers:>3} printer(s) × {viewers_each:>3} viewer(s) at {fps:>2} fps ({width}×{height}): \
         gateway {:5.1} % + api {:5.1} % of a core = {:5.1} %; {:.1} frames/s per viewer; \
         latency p50 {:.1} p99 {:.1} max {:.1} ms; camera connections {upstreams}; \
         {:.1} frame messages/s per printer on NATS",
        (after.0 - before.0) / elapsed * 100.0,
        (after.1 - before.1) / elapsed * 100.0,
        (after.0 - before.0 + after.1 - before.1) / elapsed * 100.0,
        delivered as f64 / elapsed / viewers as f64,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        published.load(std::sync::atomic::Ordering::Relaxed) as f64 / elapsed / printers as f64,
    );
    gateway.kill().await;
    api.kill().await;
}
