//! Webhooks and the live event stream end to end: the real notifier, api, NATS and Postgres,
//! real HTTP receivers on loopback (one correct, one slow, one answering 500 then 200, one
//! closing the connection), signatures checked by the Standard Webhooks library from PyPI, a
//! notifier killed mid-delivery, and a print on the simulator.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use printyard_api::auth::Permission;
use printyard_contracts::farm::{EventKind, FarmEvent, Site, event_id};
use printyard_printer_sim::Model;
use printyard_printer_sim::farm::{DEMO_3MF, DEMO_PATH};
use printyard_printer_sim::printer::GcodeState;
use printyard_tests::receiver::{Behaviour, Received, Receiver};
use printyard_tests::sse::{Sse, read_events};
use printyard_tests::{
    ChildService, Running, SimFarm, TestEnv, eventually, keyed_http, spawn_api_with, spawn_archive,
    spawn_gateway_with, spawn_notifier, spawn_notifier_with,
};
use serde_json::{Value, json};

struct Setup {
    env: TestEnv,
    api: Running,
    client: reqwest::Client,
}

async fn setup() -> Setup {
    let env = TestEnv::new().await;
    let mut config = env.api_config();
    config.rate_limits.enabled = false;
    let api = spawn_api_with(config).await;
    let key = env.api_key(&[Permission::Admin]).await;
    Setup {
        env,
        api,
        client: keyed_http(&key),
    }
}

impl Setup {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api.send_json(&self.client, method, path, body).await
    }

    /// Creates a webhook; its id and secret.
    async fn subscribe(&self, body: Value) -> (i64, String) {
        let (status, created) = self
            .send(reqwest::Method::POST, "/webhooks", Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        (
            created["id"].as_i64().unwrap(),
            created["secret"].as_str().unwrap().to_owned(),
        )
    }

    async fn deliveries(&self, webhook: i64) -> Vec<Value> {
        let (status, log) = self
            .send(
                reqwest::Method::GET,
                &format!("/webhooks/{webhook}/deliveries"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{log}");
        log.as_array().unwrap().clone()
    }
}

async fn publish(env: &TestEnv, event: &FarmEvent) {
    let js = async_nats::jetstream::new(env.nats.client().await);
    printyard_service::farm_events::publish(&js, event)
        .await
        .expect("the event is stored");
}

fn event(kind: EventKind, printer_id: i64, occurrence: &str, data: Value) -> FarmEvent {
    let serial = format!("SERIAL{printer_id}");
    FarmEvent {
        id: event_id(&serial, kind, occurrence),
        kind,
        site: Site::default(),
        printer_id,
        serial,
        at: Utc::now(),
        data,
    }
}

/// Checks every request's signature with the Standard Webhooks library (PyPI), given the
/// secret; answers how many verified. A request whose body was altered must not verify.
async fn verified_by_standard_webhooks(secret: &str, requests: &[Received]) -> usize {
    let python = std::env::var("PRINTYARD_TEST_PYTHON")
        .expect("PRINTYARD_TEST_PYTHON is not set: run the suite with scripts/test");
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
hook = Webhook(sys.argv[1])
verified = 0
for line in sys.stdin:
    request = json.loads(line)
    try:
        hook.verify(request["body"], request["headers"])
        verified += 1
    except Exception as err:
        print("refused:", err, file=sys.stderr)
print(verified)
"#;
    let lines: String = requests
        .iter()
        .map(|r| {
            let headers: HashMap<&str, &str> =
                ["webhook-id", "webhook-timestamp", "webhook-signature"]
                    .into_iter()
                    .map(|h| (h, r.headers.get(h).map_or("", String::as_str)))
                    .collect();
            let body = String::from_utf8_lossy(&r.body);
            format!("{}\n", json!({"body": body, "headers": headers}))
        })
        .collect();
    let mut child = tokio::process::Command::new(python)
        .args(["-c", script, secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, lines.as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "the verifier failed");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn webhooks_are_for_admins_and_reach_only_allowed_addresses() {
    let setup = setup().await;
    // The notifier as shipped: loopback and link-local refused, the LAN allowed.
    let mut config = setup.env.notifier_config();
    config.notifier.targets = Default::default();
    let _notifier = spawn_notifier_with(config).await;
    let read = keyed_http(&setup.env.api_key(&[Permission::Read]).await);
    let response = read
        .get(setup.api.api_url("/webhooks"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    for (url, why) in [
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://localhost:9/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::1]/hook", "loopback"),
        ("ftp://192.168.1.9/hook", "http or https"),
        ("not a url", "not a URL"),
    ] {
        let (status, body) = setup
            .send(
                reqwest::Method::POST,
                "/webhooks",
                Some(json!({"url": url})),
            )
            .await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["code"], "VALIDATION_ERROR");
        assert!(
            body["detail"].as_str().unwrap().contains(why),
            "{url}: {body}"
        );
    }
    let (status, body) = setup
        .send(
            reqwest::Method::POST,
            "/webhooks",
            Some(json!({"url": "http://192.168.1.9/hook", "events": ["print_done"]})),
        )
        .await;
    assert_eq!(status, 422, "an unknown event: {body}");

    let (status, created) = setup
        .send(
            reqwest::Method::POST,
            "/webhooks",
            Some(json!({"url": "http://192.168.1.9/hook", "events": ["print_failed", "print_complete"], "format": "discord"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["events"], json!(["print_complete", "print_failed"]));
    assert_eq!(created["enabled"], true);
    let id = created["id"].as_i64().unwrap();
    let (_, list) = setup.send(reqwest::Method::GET, "/webhooks", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("secret").is_none(), "the secret is shown once");
    let (_, one) = setup
        .send(reqwest::Method::GET, &format!("/webhooks/{id}"), None)
        .await;
    assert!(one.get("secret").is_none());
    assert_eq!(one["format"], "discord");

    let path = format!("/webhooks/{id}");
    let (status, patched) = setup
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"site": "lab-2", "printer_ids": [3, 4], "enabled": false})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["site"], "lab-2");
    assert_eq!(patched["printer_ids"], json!([3, 4]));
    assert_eq!(patched["enabled"], false);
    let (_, cleared) = setup
        .send(reqwest::Method::PATCH, &path, Some(json!({"site": null})))
        .await;
    assert_eq!(cleared["site"], Value::Null);
    assert_eq!(cleared["printer_ids"], json!([3, 4]), "absent stays");
    let (status, _) = setup
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"url": "http://127.0.0.1/x"})),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = setup
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"secret": "mine"})),
        )
        .await;
    assert_eq!(status, 422, "unknown fields are refused");

    let (status, _) = setup.send(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 200);
    for (method, path) in [
        (reqwest::Method::GET, path.clone()),
        (reqwest::Method::DELETE, path.clone()),
        (reqwest::Method::POST, format!("{path}/test")),
        (reqwest::Method::GET, format!("{path}/deliveries")),
    ] {
        let (status, body) = setup.send(method, &path, None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["code"], "NOT_FOUND");
    }
}

#[tokio::test]
async fn every_event_reaches_every_receiver_signed_in_order_and_a_slow_one_delays_nobody() {
    let setup = setup().await;
    let _notifier = spawn_notifier(&setup.env).await;
    let correct = Receiver::start(Behaviour::Correct).await;
    let slow = Receiver::start(Behaviour::Slow(Duration::from_millis(1200))).await;
    let flaky = Receiver::start(Behaviour::FailFirst).await;
    let closing = Receiver::start(Behaviour::CloseFirst).await;
    let mut secrets = Vec::new();
    let mut ids = Vec::new();
    for receiver in [&correct, &slow, &flaky, &closing] {
        let (id, secret) = setup.subscribe(json!({"url": receiver.url("/hook")})).await;
        ids.push(id);
        secrets.push(secret);
    }

    // The test delivery answers with its result.
    let (status, tested) = setup
        .send(
            reqwest::Method::POST,
            &format!("/webhooks/{}/test", ids[0]),
            None,
        )
        .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["status"], "delivered");
    assert_eq!(tested["response_code"], 200);
    assert_eq!(tested["event"], "test");
    let (_, tested_flaky) = setup
        .send(
            reqwest::Method::POST,
            &format!("/webhooks/{}/test", ids[2]),
            None,
        )
        .await;
    assert_eq!(tested_flaky["status"], "failed");
    assert_eq!(tested_flaky["response_code"], 500);
    assert!(
        tested_flaky["last_error"]
            .as_str()
            .unwrap()
            .contains("down for maintenance"),
        "{tested_flaky}"
    );

    // Redirects are not followed: a 3xx is a failure, said as such.
    let redirecting = Receiver::start(Behaviour::Redirect).await;
    let (moved, _) = setup
        .subscribe(json!({"url": redirecting.url("/hook"), "enabled": false}))
        .await;
    let (_, tested_moved) = setup
        .send(
            reqwest::Method::POST,
            &format!("/webhooks/{moved}/test"),
            None,
        )
        .await;
    assert_eq!(tested_moved["status"], "failed");
    assert_eq!(tested_moved["response_code"], 302);
    assert!(
        tested_moved["last_error"]
            .as_str()
            .unwrap()
            .contains("redirects are not followed"),
        "{tested_moved}"
    );
    assert_eq!(redirecting.requests().len(), 1);

    // Three printers, each starting, progressing and completing a print.
    let mut sent: HashMap<i64, Vec<String>> = HashMap::new();
    let published = Instant::now();
    for step in 0..5 {
        for printer in 1..=3 {
            // As the gateway and the archive send them: the print's key and the printer's name
            // in each. The three printers started the same job in the same millisecond: one
            // print key, three prints.
            let (kind, mut data) = match step {
                0 => (EventKind::PrintStarted, json!({"job_name": "cube"})),
                1 => (
                    EventKind::ArchiveCreated,
                    json!({"archive_id": 100 + printer, "filename": "cube.3mf"}),
                ),
                2 => (
                    EventKind::PrintProgress,
                    json!({"progress": 25, "job_name": "cube"}),
                ),
                3 => (
                    EventKind::PrintProgress,
                    json!({"progress": 50, "job_name": "cube"}),
                ),
                _ => (EventKind::PrintComplete, json!({"job_name": "cube"})),
            };
            data["printer_name"] = format!("P{printer}").into();
            data["print"] = "cube@cube_gcode_3mf.1767000000123".into();
            let event = event(kind, printer, &format!("job.{step}"), data);
            sent.entry(printer).or_default().push(event.id.clone());
            publish(&setup.env, &event).await;
        }
    }
    let all: usize = sent.values().map(Vec::len).sum();
    for (name, receiver) in [
        ("correct", &correct),
        ("slow", &slow),
        ("500 first", &flaky),
        ("closing", &closing),
    ] {
        eventually(Duration::from_secs(60), name, || async {
            let got = receiver
                .delivered_ids()
                .iter()
                .filter(|id| !id.starts_with("test_"))
                .count();
            (got == all).then_some(())
        })
        .await;
    }

    // In order per printer, at every receiver.
    for receiver in [&correct, &slow, &flaky, &closing] {
        let delivered = receiver.delivered_ids();
        for (printer, ids) in &sent {
            let order: Vec<&String> = delivered.iter().filter(|id| ids.contains(id)).collect();
            assert_eq!(order, ids.iter().collect::<Vec<_>>(), "printer {printer}");
        }
    }
    // The slow receiver (1.2 s a request, four in a row per printer) delayed nobody.
    let last = |r: &Receiver| r.requests().iter().map(|q| q.at).max().unwrap();
    assert!(
        last(&slow) - last(&correct) > Duration::from_secs(2),
        "the correct receiver had everything {:?} after publishing, the slow one {:?}",
        last(&correct) - published,
        last(&slow) - published
    );
    // The failed first attempts were retried after the backoff (200 ms, jitter 50-100 %).
    for receiver in [&flaky, &closing] {
        let requests = receiver.requests();
        for ids in sent.values() {
            for id in ids {
                let attempts: Vec<&Received> = requests.iter().filter(|r| r.id() == id).collect();
                assert_eq!(attempts.len(), 2, "{id}: one failure, one success");
                let gap = attempts[1].at - attempts[0].at;
                assert!(
                    gap >= Duration::from_millis(100),
                    "{id}: retried after {gap:?}"
                );
            }
        }
    }
    let log = setup.deliveries(ids[2]).await;
    let events: Vec<&Value> = log.iter().filter(|d| d["event"] != "test").collect();
    assert_eq!(events.len(), all);
    for delivery in events {
        assert_eq!(delivery["status"], "delivered", "{delivery}");
        assert_eq!(delivery["attempts"], 2);
        assert_eq!(delivery["response_code"], 200);
        assert!(delivery["latency_ms"].as_i64().is_some());
        assert_eq!(delivery["next_retry"], Value::Null);
    }

    // Every request, failed ones included, is signed as Standard Webhooks verifies it...
    for (receiver, secret) in [&correct, &slow, &flaky, &closing]
        .into_iter()
        .zip(&secrets)
    {
        let requests = receiver.requests();
        let verified = verified_by_standard_webhooks(secret, &requests).await;
        assert_eq!(verified, requests.len());
    }
    // ...and an altered body or another webhook's secret does not verify.
    let mut altered = correct.requests();
    altered[0].body.push(b' ');
    assert_eq!(
        verified_by_standard_webhooks(&secrets[0], &altered[..1]).await,
        0
    );
    assert_eq!(
        verified_by_standard_webhooks(&secrets[1], &altered[1..2]).await,
        0
    );

    // The reference's payload.
    let complete = correct
        .requests()
        .into_iter()
        .find(|r| r.id() == sent[&2][4])
        .unwrap()
        .json();
    assert_eq!(complete["event"], "print_complete");
    assert_eq!(complete["data"]["printer_id"], 2);
    assert_eq!(complete["data"]["printer_name"], "P2");
    assert_eq!(complete["data"]["status"], "success");
    assert_eq!(complete["data"]["filename"], "cube.3mf");
    assert!(
        complete["data"]["duration"].as_i64().is_some(),
        "from its start"
    );
    assert_eq!(
        complete["data"]["archive_id"], 102,
        "its own print's archive"
    );
    assert!(complete["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn filters_choose_what_a_webhook_gets_and_chat_formats_say_it_in_words() {
    let setup = setup().await;
    let _notifier = spawn_notifier(&setup.env).await;
    let (printer_two, site_lab, offline_only, discord, ntfy) = (
        Receiver::start(Behaviour::Correct).await,
        Receiver::start(Behaviour::Correct).await,
        Receiver::start(Behaviour::Correct).await,
        Receiver::start(Behaviour::Correct).await,
        Receiver::start(Behaviour::Correct).await,
    );
    setup
        .subscribe(json!({"url": printer_two.url("/"), "printer_ids": [2]}))
        .await;
    setup
        .subscribe(json!({"url": site_lab.url("/"), "site": "lab"}))
        .await;
    setup
        .subscribe(json!({"url": offline_only.url("/"), "events": ["printer_offline"]}))
        .await;
    setup
        .subscribe(json!({"url": discord.url("/"), "format": "discord", "printer_ids": [1]}))
        .await;
    setup
        .subscribe(json!({"url": ntfy.url("/"), "format": "ntfy", "printer_ids": [1]}))
        .await;
    let mut lab = event(
        EventKind::PrinterError,
        3,
        "hms.1",
        json!({"code": "0300_0100_0001_0007", "severity": "serious", "text": "Heatbed temperature abnormal"}),
    );
    lab.site = Site::parse("lab").unwrap();
    let events = [
        event(
            EventKind::PrinterOffline,
            1,
            "offline.1",
            json!({"reason": "no answer"}),
        ),
        event(EventKind::PrinterOnline, 2, "online.1", Value::Null),
        lab.clone(),
    ];
    for event in &events {
        publish(&setup.env, event).await;
    }
    eventually(Duration::from_secs(30), "the deliveries", || async {
        let counts = [&printer_two, &site_lab, &offline_only, &discord, &ntfy]
            .map(|r| r.delivered_ids().len());
        (counts == [1, 1, 1, 1, 1]).then_some(())
    })
    .await;
    // Nothing more comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(printer_two.delivered_ids(), [events[1].id.clone()]);
    assert_eq!(site_lab.delivered_ids(), [lab.id.clone()]);
    assert_eq!(offline_only.delivered_ids(), [events[0].id.clone()]);
    let error = site_lab.requests()[0].json();
    assert_eq!(error["event"], "printer_error");
    assert_eq!(error["data"]["code"], "0300_0100_0001_0007");
    assert_eq!(error["data"]["severity"], "serious");
    assert_eq!(error["data"]["text"], "Heatbed temperature abnormal");
    assert_eq!(error["data"]["site"], "lab");

    let message = discord.requests()[0].json();
    assert_eq!(message["username"], "Printyard");
    let content = message["content"].as_str().unwrap();
    assert!(content.contains("Printer offline"), "{content}");
    let pushed = &ntfy.requests()[0];
    assert!(pushed.headers["content-type"].starts_with("text/plain"));
    assert_eq!(pushed.headers["title"], "Printyard: Printer offline");
    assert_eq!(pushed.headers["priority"], "high");
    assert!(String::from_utf8_lossy(&pushed.body).contains("went offline"));
}

#[test]
#[ignore = "run by a_notifier_killed_mid_delivery_loses_nothing as its notifier process"]
fn child_notifier() {
    printyard_tests::run_child_notifier();
}

#[tokio::test]
async fn a_notifier_killed_mid_delivery_loses_nothing() {
    let setup = setup().await;
    let receiver = Receiver::start(Behaviour::Slow(Duration::from_millis(1500))).await;
    let config = setup.env.notifier_config();
    let child = ChildService::spawn_notifier("webhooks::child_notifier", &config);
    let body = json!({"url": receiver.url("/hook"), "events": ["printer_offline"]});
    let webhook = eventually(Duration::from_secs(30), "the notifier up", || async {
        let (status, created) = setup
            .send(reqwest::Method::POST, "/webhooks", Some(body.clone()))
            .await;
        (status == 201).then(|| created["id"].as_i64().unwrap())
    })
    .await;
    let mut sent = Vec::new();
    for printer in 1..=6 {
        let event = event(
            EventKind::PrinterOffline,
            printer,
            "offline.1",
            json!({"reason": "gone"}),
        );
        sent.push(event.id.clone());
        publish(&setup.env, &event).await;
    }
    eventually(Duration::from_secs(30), "deliveries in flight", || async {
        (!receiver.requests().is_empty()).then_some(())
    })
    .await;
    child.kill().await;
    let answered_before = receiver.delivered_ids().len();
    assert!(answered_before < sent.len(), "killed mid-delivery");
    let _notifier = spawn_notifier(&setup.env).await;
    eventually(Duration::from_secs(60), "every event delivered", || async {
        let delivered = receiver.delivered_ids();
        sent.iter().all(|id| delivered.contains(id)).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "the log says so", || async {
        let log = setup.deliveries(webhook).await;
        (log.len() == sent.len() && log.iter().all(|d| d["status"] == "delivered")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_webhook_failing_too_long_is_disabled_with_the_reason() {
    let setup = setup().await;
    let mut config = setup.env.notifier_config();
    config.notifier.retry_for_secs = 1;
    config.notifier.disable_after_secs = 0;
    let _notifier = spawn_notifier_with(config).await;
    let down = Receiver::start(Behaviour::AlwaysFail).await;
    let up = Receiver::start(Behaviour::Correct).await;
    let (dead, _) = setup.subscribe(json!({"url": down.url("/hook")})).await;
    let (alive, _) = setup.subscribe(json!({"url": up.url("/hook")})).await;
    publish(
        &setup.env,
        &event(EventKind::PrinterOnline, 1, "online.1", Value::Null),
    )
    .await;
    let disabled = eventually(Duration::from_secs(30), "the webhook disabled", || async {
        let (_, webhook) = setup
            .send(reqwest::Method::GET, &format!("/webhooks/{dead}"), None)
            .await;
        (webhook["enabled"] == false).then_some(webhook)
    })
    .await;
    let reason = disabled["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("HTTP 500"), "{reason}");
    assert!(disabled["failing_since"].is_string());
    let log = setup.deliveries(dead).await;
    assert_eq!(log[0]["status"], "failed");
    assert!(log[0]["attempts"].as_i64().unwrap() >= 2, "retried first");
    assert!(down.requests().len() >= 2);
    // The other webhook was not held up, and is not disabled.
    assert_eq!(up.delivered_ids().len(), 1);
    let (_, fine) = setup
        .send(reqwest::Method::GET, &format!("/webhooks/{alive}"), None)
        .await;
    assert_eq!(fine["enabled"], true);
    assert_eq!(fine["failing_since"], Value::Null);
    // Enabling it again clears the failure.
    let (_, enabled) = setup
        .send(
            reqwest::Method::PATCH,
            &format!("/webhooks/{dead}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(enabled["disabled_reason"], Value::Null);
    assert_eq!(enabled["failing_since"], Value::Null);
}

#[tokio::test]
async fn a_simulated_print_sends_its_events_in_order_and_the_stream_resumes_without_a_gap() {
    let setup = setup().await;
    let _archive = spawn_archive(&setup.env).await;
    let _notifier = spawn_notifier(&setup.env).await;
    let sim = SimFarm::start(&[Model::A1Mini], 100.0).await;
    let printer = sim.farm.printers[0].clone();
    let _gateway = spawn_gateway_with(sim.gateway_config(&setup.env)).await;
    let receiver = Receiver::start(Behaviour::Correct).await;
    let prints = "print_started,print_progress,print_complete";
    setup
        .subscribe(
            json!({"url": receiver.url("/hook"), "events": prints.split(',').collect::<Vec<_>>()}),
        )
        .await;
    let (status, _) = setup
        .send(
            reqwest::Method::POST,
            "/printers",
            Some(json!({
                "name": "Desk", "ip_address": printer.spec.ip.to_string(),
                "access_code": printer.spec.access_code, "serial_number": printer.spec.serial,
            })),
        )
        .await;
    assert_eq!(status, 201);
    eventually(Duration::from_secs(20), "the printer connected", || async {
        let (_, status) = setup
            .send(reqwest::Method::GET, "/printers/1/status", None)
            .await;
        (status["connected"] == true).then_some(())
    })
    .await;

    // One client reads the whole print; another leaves after two events and comes back.
    let query = format!("?events={prints}&printer_id=1");
    let done = |events: &[Sse]| events.iter().any(|e| e.event == "print_complete");
    let whole = read_events(&setup.client, &setup.api, &query, None, done);
    let first_part = read_events(&setup.client, &setup.api, &query, None, |events| {
        events.len() == 2
    });
    let start = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        printer.store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
        eventually(Duration::from_secs(10), "the printer free", || async {
            (printer.snapshot().gcode_state != GcodeState::Running).then_some(())
        })
        .await;
        printer.start_from_touchscreen(DEMO_PATH, 1).unwrap();
    };
    let (whole, first_part, ()) = tokio::join!(whole, first_part, start);
    let last_seen = first_part[1].id.clone().expect("farm events have ids");
    // The client comes back through another api replica.
    let mut config = setup.env.api_config();
    config.rate_limits.enabled = false;
    let replica = spawn_api_with(config).await;
    let rest = read_events(&setup.client, &replica, &query, Some(&last_seen), done).await;
    let resumed: Vec<Sse> = first_part.into_iter().chain(rest).collect();
    assert_eq!(resumed, whole, "nothing missed, nothing twice");
    let names: Vec<&str> = whole.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        names,
        [
            "print_started",
            "print_progress",
            "print_progress",
            "print_progress",
            "print_complete"
        ]
    );
    let progress: Vec<&Value> = whole.iter().map(|e| &e.data["data"]["progress"]).collect();
    assert_eq!(progress[1..4], [&json!(25), &json!(50), &json!(75)]);

    // The webhook got the same, in order, the end with its archive.
    eventually(
        Duration::from_secs(30),
        "the webhook deliveries",
        || async { (receiver.delivered_ids().len() == 5).then_some(()) },
    )
    .await;
    let bodies: Vec<Value> = receiver.requests().iter().map(Received::json).collect();
    let events: Vec<&str> = bodies
        .iter()
        .map(|b| b["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, names);
    let (_, archives) = setup.send(reqwest::Method::GET, "/archives", None).await;
    let archive_id = &archives["archives"][0]["id"];
    assert!(archive_id.is_i64());
    let complete = &bodies[4]["data"];
    assert_eq!(&complete["archive_id"], archive_id);
    assert_eq!(complete["printer_name"], "Desk");
    assert_eq!(complete["status"], "success");
    assert!(complete["duration"].as_i64().is_some());
    assert_eq!(
        &bodies[0]["data"]["archive_id"], archive_id,
        "waited for the archive"
    );
}
