//! Bounded resources under hostile clients: what one offender may hold (a connection, its
//! buffers, a stream) has a limit, the offender gets a clear error or is cut off, and everyone
//! else keeps being served. The bounds themselves are in docs/operations.md ("Limits").

use std::time::{Duration, Instant};

use printyard_api::auth::Permission;
use printyard_tests::{TestEnv, http, spawn_api_with};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `within` passes): what it said.
async fn read_to_close<R: AsyncRead + Unpin>(stream: &mut R, within: Duration) -> Option<Vec<u8>> {
    let mut said = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => said.extend_from_slice(&buffer[..n]),
            }
        }
    });
    read.await.ok().map(|()| said)
}

/// Sends `bytes` one at a time, `every` apart, until the server stops taking them.
async fn trickle<W: AsyncWrite + Unpin>(stream: &mut W, bytes: &[u8], every: Duration) {
    for byte in bytes {
        if stream.write_all(&[*byte]).await.is_err() {
            return;
        }
        tokio::time::sleep(every).await;
    }
}

#[tokio::test]
async fn a_client_sending_headers_or_a_body_a_byte_at_a_time_is_cut_off_and_others_served() {
    let env = TestEnv::new().await;
    let mut config = env.api_config();
    config.http.header_timeout_ms = 1_000;
    config.http.body_grace_ms = 1_000;
    config.http.body_min_rate = 500;
    let api = spawn_api_with(config).await;
    let key = env.api_key(&[Permission::Admin]).await;
    let addr = api
        .api_url("")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    // Headers, a byte every 200 ms: the connection is closed once a second has passed, though
    // bytes keep coming.
    let mut slow_head = TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    let head = format!("GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n\r\n");
    let sender = async {
        trickle(&mut slow_head, head.as_bytes(), Duration::from_millis(200)).await;
        started.elapsed()
    };
    // Meanwhile others are served.
    let others = async {
        let mut answered = 0;
        while started.elapsed() < Duration::from_millis(800) {
            let status = http()
                .get(api.api_url("/health"))
                .send()
                .await
                .unwrap()
                .status();
            assert!(status.is_success(), "{status}");
            answered += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        answered
    };
    let (gave_up_after, answered) = tokio::join!(sender, others);
    assert!(
        answered >= 3,
        "others were served while the slow client sent its head"
    );
    assert!(
        gave_up_after < Duration::from_secs(4),
        "the server took the slow head for {gave_up_after:?} (it is {} bytes, 200 ms each)",
        head.len()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "cut off before its deadline: {:?}",
        started.elapsed()
    );

    // A body, a byte every 200 ms, against a grace of a second and 500 bytes a second: 408
    // with the reference's error, then the connection closed.
    let mut slow_body = TcpStream::connect(&addr).await.unwrap();
    let body = br#"{"name": "slow", "permissions": ["read"]}"#;
    let head = format!(
        "POST /api/v1/api-keys HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow_body.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut read, mut write) = slow_body.split();
    let trickled = trickle(&mut write, body, Duration::from_millis(200));
    let answer = async {
        let said = read_to_close(&mut read, Duration::from_secs(6))
            .await
            .expect("the slow body's connection closed within 6 s");
        (said, started.elapsed())
    };
    let ((said, took), ()) = tokio::join!(answer, trickled);
    let said = String::from_utf8_lossy(&said);
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(said.contains(r#""code":"REQUEST_TIMEOUT""#), "{said}");
    assert!(
        took < Duration::from_secs(5),
        "the slow body was answered and closed after {took:?}"
    );
    // The key was not created.
    let keys: serde_json::Value = http()
        .get(api.api_url("/api-keys"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!keys.to_string().contains("\"slow\""), "{keys}");

    // A body that arrives at once is never refused, however late the server reads it.
    let mut quick = TcpStream::connect(&addr).await.unwrap();
    let body = br#"{"name": "quick", "permissions": ["read"]}"#;
    let request = format!(
        "POST /api/v1/api-keys HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        String::from_utf8_lossy(body)
    );
    quick.write_all(request.as_bytes()).await.unwrap();
    let said = read_to_close(&mut quick, Duration::from_secs(10))
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&said);
    assert!(said.starts_with("HTTP/1.1 201"), "{said}");
}

/// The api process of the event-stream test below (run only by it).
#[test]
#[ignore = "a child process of a_thousand_event_streams_hold_bounded_memory_and_one_more_is_refused"]
fn child_api() {
    printyard_tests::run_child_api();
}

/// Opens `GET /events` on a connection of its own and waits for the response head.
async fn open_stream(addr: &str, key: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /api/v1/events HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buffer = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buffer))
            .await
            .expect("a response head within 20 s")
            .unwrap();
        assert!(n > 0, "closed before the head");
        head.extend_from_slice(&buffer[..n]);
    }
    (stream, String::from_utf8_lossy(&head).into_owned())
}

#[tokio::test]
async fn a_thousand_event_streams_hold_bounded_memory_and_one_more_is_refused() {
    const STREAMS: usize = 1_000;
    /// The bound docs/operations.md gives for one open stream.
    const KIB_PER_STREAM: u64 = 64;
    let env = TestEnv::new().await;
    let mut config = env.api_config();
    let port = printyard_tests::nats_server::free_port();
    config.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    config.http.max_event_streams = STREAMS;
    config.rate_limits.enabled = false;
    let api = printyard_tests::ChildService::spawn_api("bounded::child_api", &config);
    let pid = api.pid().unwrap();
    let key = env.api_key(&[Permission::Read]).await;
    let addr = format!("127.0.0.1:{port}");
    let health = format!("http://{addr}/api/v1/health");
    printyard_tests::eventually(Duration::from_secs(30), "the api serving", || async {
        let response = http().get(&health).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    let (_, before, _) = printyard_tests::process_usage(pid);

    let mut open = Vec::with_capacity(STREAMS);
    for chunk in 0..STREAMS / 50 {
        let opened = futures::future::join_all((0..50).map(|_| open_stream(&addr, &key))).await;
        for (stream, head) in opened {
            assert!(head.starts_with("HTTP/1.1 200"), "stream {chunk}: {head}");
            open.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, after, _) = printyard_tests::process_usage(pid);
    let per_stream = after.saturating_sub(before) / STREAMS as u64;
    eprintln!(
        "{STREAMS} open streams: RSS {before} KiB before, {after} KiB after, {per_stream} KiB each"
    );
    assert!(
        per_stream <= KIB_PER_STREAM,
        "{per_stream} KiB per open stream (bound {KIB_PER_STREAM} KiB)"
    );

    // One more is refused with the reference's error, and the replica serves everyone else.
    let (_, head) = open_stream(&addr, &key).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let refused = http()
        .get(format!("http://{addr}/api/v1/events"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let error: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(error["code"], "SERVICE_UNAVAILABLE", "{error}");
    let started = Instant::now();
    let status = http().get(&health).send().await.unwrap().status();
    assert!(status.is_success() && started.elapsed() < Duration::from_secs(2));

    // A closed stream frees its place once the server notices, at the latest when the second
    // keep-alive comment after it fails to be sent (15 s apart).
    drop(open.pop());
    printyard_tests::eventually(Duration::from_secs(45), "a place freed", || async {
        let (_, head) = open_stream(&addr, &key).await;
        head.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
    drop(open);
    api.kill().await;
}

/// The notifier process of the webhook test below (run only by it).
#[test]
#[ignore = "a child process of a_webhook_receiver_answering_a_gigabyte_is_cut_off_after_a_little"]
fn child_notifier() {
    printyard_tests::run_child_notifier();
}

#[tokio::test]
async fn a_webhook_receiver_answering_a_gigabyte_is_cut_off_after_a_little() {
    use printyard_contracts::farm::{EventKind, FarmEvent, Site, event_id};
    use printyard_tests::receiver::{Behaviour, Receiver};
    let env = TestEnv::new().await;
    let mut config = env.api_config();
    config.rate_limits.enabled = false;
    let api = spawn_api_with(config).await;
    let client = printyard_tests::keyed_http(&env.api_key(&[Permission::Admin]).await);
    let notifier = printyard_tests::ChildService::spawn_notifier(
        "bounded::child_notifier",
        &env.notifier_config(),
    );
    let pid = notifier.pid().unwrap();
    // One receiver answers 200 and a gigabyte, one 500 and a gigabyte, one correctly.
    let ok_flood = Receiver::start(Behaviour::Flood(200)).await;
    let failing_flood = Receiver::start(Behaviour::Flood(500)).await;
    let correct = Receiver::start(Behaviour::Correct).await;
    let mut hooks = Vec::new();
    for receiver in [&ok_flood, &failing_flood, &correct] {
        // The notifier process answers once it has started.
        let body = serde_json::json!({"url": receiver.url("/hook")});
        let created =
            printyard_tests::eventually(Duration::from_secs(30), "the webhook created", || async {
                let (status, created) = api
                    .send_json(
                        &client,
                        reqwest::Method::POST,
                        "/webhooks",
                        Some(body.clone()),
                    )
                    .await;
                (status == 201).then_some(created)
            })
            .await;
        hooks.push(created["id"].as_i64().unwrap());
    }
    let started = Instant::now();
    let js = async_nats::jetstream::new(env.nats.client().await);
    let serial = "SERIAL1".to_owned();
    let event = FarmEvent {
        id: event_id(&serial, EventKind::PrinterOnline, "online.flood"),
        kind: EventKind::PrinterOnline,
        site: Site::default(),
        printer_id: 1,
        serial,
        at: chrono::Utc::now(),
        data: serde_json::Value::Null,
    };
    printyard_service::farm_events::publish(&js, &event)
        .await
        .unwrap();

    // The 200 is a delivery; the 500 a failure whose reason quotes a little of the answer.
    let log = |hook: i64| {
        let client = client.clone();
        let url = api.api_url(&format!("/webhooks/{hook}/deliveries"));
        async move {
            let log: serde_json::Value = client.get(url).send().await.ok()?.json().await.ok()?;
            log.as_array()?.first().cloned()
        }
    };
    let delivered =
        printyard_tests::eventually(Duration::from_secs(30), "the 200 delivered", || async {
            log(hooks[0]).await.filter(|d| d["status"] == "delivered")
        })
        .await;
    assert_eq!(delivered["response_code"], 200, "{delivered}");
    let failed =
        printyard_tests::eventually(Duration::from_secs(30), "the 500 recorded", || async {
            log(hooks[1])
                .await
                .filter(|d| d["response_code"] == 500 || d["last_error"].is_string())
        })
        .await;
    let error = failed.to_string();
    assert!(
        error.len() < 2_000,
        "the failure's record is small: {error}"
    );
    assert!(error.contains("HTTP 500"), "{error}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(correct.delivered_ids(), vec![event.id.clone()]);

    // What the flooders got out before the notifier hung up: kernel buffers, not a gigabyte.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (name, flooder) in [("200", &ok_flood), ("500", &failing_flood)] {
        let sent = flooder.flooded();
        eprintln!(
            "the {name} flooder sent {} KiB before it was cut off",
            sent / 1024
        );
        assert!(sent < 64 << 20, "the {name} flooder sent {sent} bytes");
    }
    let (_, _, peak) = printyard_tests::process_usage(pid);
    eprintln!("notifier peak RSS {peak} KiB");
    assert!(peak < 128 * 1024, "notifier peak RSS {peak} KiB");
    notifier.kill().await;
}

#[tokio::test]
async fn an_event_stream_opens_with_every_status_of_a_farm_larger_than_its_buffer() {
    use printyard_contracts::farm::{Site, StatusRecord, registry_key};
    // More printers than the stream's buffer (`BUFFER` events may wait for a client): the
    // snapshot a stream opens with is every one of them.
    let printers = printyard_api::routes::events::BUFFER as i64 * 3 / 2;
    let env = TestEnv::new().await;
    let api = spawn_api_with(env.api_config()).await;
    let key = env.api_key(&[Permission::Admin]).await;
    let js = async_nats::jetstream::new(env.nats.client().await);
    let bucket = printyard_tests::eventually(Duration::from_secs(5), "the status bucket", || {
        let js = js.clone();
        async move { js.get_key_value("printer_status").await.ok() }
    })
    .await;
    for id in 1..=printers {
        let record = StatusRecord {
            printer_id: id,
            serial: format!("01P00A{id:09}"),
            connected: true,
            last_seen: None,
            connection_error: None,
            model: Some("P1S".into()),
            tls_pin: None,
            status: None,
            firmware: None,
        };
        bucket
            .put(
                registry_key(&Site::default(), id),
                serde_json::to_vec(&record).unwrap().into(),
            )
            .await
            .unwrap();
    }
    // The api's copy of the bucket follows it within milliseconds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let streams = printyard_tests::keyed_stream_http(&key);
    let response = streams.get(api.api_url("/events")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut reader = printyard_tests::sse::SseReader::new(response);
    let mut seen = std::collections::HashSet::new();
    let took = Instant::now();
    while seen.len() < printers as usize {
        let event = tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {printers} statuses, then nothing", seen.len()))
            .unwrap_or_else(|| {
                panic!(
                    "the stream ended after {} of {printers} statuses",
                    seen.len()
                )
            });
        if event.event == "printer_status" {
            seen.insert(event.data["printer_id"].as_i64().unwrap());
        }
    }
    eprintln!("{printers} statuses in {:?}", took.elapsed());
}
