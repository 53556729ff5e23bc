//! Statistics end to end: the `stats` service keeps its numbers from the archive's events, and
//! they always equal what `/archives` shows. With the real services, NATS, Postgres, the
//! object store and (for the prints) the printer simulator.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use printyard_api::auth::Permission;
use printyard_contracts::farm::{EventKind, FarmEvent, Site, event_id};
use printyard_contracts::stats::CostSettings;
use printyard_printer_sim::Model;
use printyard_printer_sim::farm::{DEMO_3MF, DEMO_PATH};
use printyard_printer_sim::printer::GcodeState;
use printyard_tests::threemf::{Slicing, sliced_3mf};
use printyard_tests::{
    Running, SimFarm, TestEnv, eventually, keyed_http, spawn_api_with, spawn_archive,
    spawn_gateway_with, spawn_stats, upload_file,
};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

struct Setup {
    env: TestEnv,
    api: Running,
    _archive: Running,
    stats: Option<Running>,
    client: reqwest::Client,
}

async fn setup() -> Setup {
    let env = TestEnv::new().await;
    let archive = spawn_archive(&env).await;
    let stats = spawn_stats(&env).await;
    let mut config = env.api_config();
    config.rate_limits.enabled = false;
    let api = spawn_api_with(config).await;
    let key = env.api_key(&[Permission::Admin]).await;
    Setup {
        env,
        api,
        _archive: archive,
        stats: Some(stats),
        client: keyed_http(&key),
    }
}

impl Setup {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api.send_json(&self.client, method, path, body).await
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn upload(&self, file: Vec<u8>, name: &str) -> i64 {
        upload_file(&self.client, &self.api.api_url(""), file, name).await["id"]
            .as_i64()
            .unwrap()
    }

    /// Waits until `/statistics` satisfies `done`, and returns it.
    async fn stats_where(&self, what: &str, done: fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.get("/statistics").await;
            if done(&got) {
                return got;
            }
            if tokio::time::Instant::now() >= deadline {
                let archives = self.all_archives().await;
                let summary: Vec<(Value, Value)> = archives
                    .iter()
                    .map(|a| (a["id"].clone(), a["status"].clone()))
                    .collect();
                panic!("timed out waiting for {what}: statistics {got}; archives {summary:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn all_archives(&self) -> Vec<Value> {
        self.get("/archives?limit=1000").await["archives"]
            .as_array()
            .unwrap()
            .clone()
    }
}

/// A print's events as a gateway publishes them, at the times given.
async fn publish(js: &async_nats::jetstream::Context, event: FarmEvent) {
    printyard_service::farm_events::publish(js, &event)
        .await
        .expect("the event is stored");
}

fn event(
    kind: EventKind,
    printer: (i64, &str),
    key: &str,
    at: DateTime<Utc>,
    data: Value,
) -> FarmEvent {
    FarmEvent {
        id: event_id(&format!("S{}", printer.0), kind, key),
        kind,
        site: Site::parse(printer.1).unwrap(),
        printer_id: printer.0,
        serial: format!("S{}", printer.0),
        at,
        data,
    }
}

/// What `/statistics` should say, computed from archives the way a person would.
#[derive(Debug, Default, Clone, Copy)]
struct Expected {
    /// With a known outcome.
    prints: i64,
    unknown: i64,
    successful: i64,
    failed: i64,
    stopped: i64,
    time: i64,
    grams: f64,
    cost: f64,
}

impl Expected {
    fn add(&mut self, archive: &Value, costs: &CostSettings) {
        let status = archive["status"].as_str().unwrap();
        if status == "unknown" {
            self.unknown += 1;
        } else {
            self.prints += 1;
        }
        self.successful += (status == "success") as i64;
        self.failed += (status == "failed") as i64;
        self.stopped += (status == "stopped") as i64;
        let duration = archive["duration"].as_i64().unwrap_or(0);
        let grams = archive["filament_used"].as_f64().unwrap_or(0.0);
        self.time += duration;
        self.grams += grams;
        let kind = archive["filament_type"].as_str().unwrap_or("");
        let model = archive["printer_model_id"]
            .as_str()
            .and_then(printyard_bambu::models::name_of_model_id);
        self.cost += grams / 1000.0 * costs.filament_price(kind)
            + duration as f64 / 3600.0 * costs.power(model) / 1000.0 * costs.energy_cost_per_kwh;
    }

    fn check(&self, got: &Value, what: &str) {
        assert_eq!(got["total_prints"], self.prints, "{what}: {got}");
        assert_eq!(got["successful_prints"], self.successful, "{what}");
        assert_eq!(got["failed_prints"], self.failed, "{what}");
        assert_eq!(got["stopped_prints"], self.stopped, "{what}");
        assert_eq!(got["unknown_prints"], self.unknown, "{what}");
        assert_eq!(got["total_print_time"], self.time, "{what}");
        let rate = if self.prints > 0 {
            (self.successful as f64 * 10000.0 / self.prints as f64).round() / 100.0
        } else {
            0.0
        };
        assert_eq!(got["success_rate"].as_f64().unwrap(), rate, "{what}");
        let grams = got["total_filament_used"].as_f64().unwrap();
        assert!(
            (grams - self.grams).abs() < 0.011,
            "{what}: {grams} g, expected {}",
            self.grams
        );
        let cost = got["total_cost"].as_f64().unwrap();
        assert!(
            (cost - self.cost).abs() < 0.011,
            "{what}: cost {cost}, expected {}",
            self.cost
        );
    }
}

#[tokio::test]
async fn statistics_equal_the_sums_of_the_archives_for_random_filters() {
    let setup = setup().await;
    let js = async_nats::jetstream::new(setup.env.nats.client().await);
    // Printers of two sites, registered as a person would.
    let mut printers = Vec::new();
    for (i, site) in ["north", "north", "south", "south", "south"]
        .iter()
        .enumerate()
    {
        let (status, body) = setup
            .send(
                reqwest::Method::POST,
                "/printers",
                Some(json!({
                    "name": format!("P{i}"), "ip_address": format!("10.9.0.{}", i + 1),
                    "access_code": "12345678", "serial_number": format!("01P00A00000{i:04}"),
                    "site": site,
                })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        printers.push((body["id"].as_i64().unwrap(), *site));
    }
    // Library files of three filament types and weights: prints reuse them.
    let mut library = Vec::new();
    for (kind, weight) in [("PLA", 12.5), ("PETG", 30.0), ("ABS", 7.25)] {
        let file = sliced_3mf(&Slicing {
            model_id: "C12",
            filaments: &[(kind, "#FFFFFF")],
            title: kind,
            weight,
            ..Default::default()
        });
        library.push(setup.upload(file, &format!("{kind}.3mf")).await);
    }
    let (_, project) = setup
        .send(
            reqwest::Method::POST,
            "/projects",
            Some(json!({"name": "Order 7"})),
        )
        .await;
    let project = project["id"].as_i64().unwrap();

    // 240 prints over 40 days, from random printers and files, ending every way, unseen ones
    // too (or not yet: a printer prints one thing at a time, so only a printer's latest print
    // can be unended).
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let start = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap();
    let prints: Vec<_> = (0..240)
        .map(|i| {
            let printer = printers[rng.random_range(0..printers.len())];
            let began = start + Span::minutes(rng.random_range(0..40 * 24 * 60));
            (i, printer, began)
        })
        .collect();
    let latest = |printer: (i64, &str), began| {
        prints
            .iter()
            .all(|(_, other, at)| *other != printer || *at <= began)
    };
    let mut unended = 0;
    for &(i, printer, began) in &prints {
        let key = format!("job{i}@f.{i}");
        let base = json!({"print": key, "job_name": format!("job{i}"), "printer_name": "P"});
        publish(
            &js,
            event(
                EventKind::PrintStarted,
                printer,
                &format!("{key}."),
                began,
                base.clone(),
            ),
        )
        .await;
        let file = library[rng.random_range(0..library.len())];
        publish(
            &js,
            event(
                EventKind::PrintFile,
                printer,
                &format!("{key}.file"),
                began,
                json!({"print": key, "source_archive": file, "plate": 1}),
            ),
        )
        .await;
        let ended = began + Span::seconds(rng.random_range(60..20_000));
        let progress = rng.random_range(1..100);
        // As the gateway sends them, with the job's name.
        let job = format!("job{i}");
        let outcome = match rng.random_range(0..10) {
            0..=5 => "complete",
            6 | 7 => "failed",
            8 => "stopped",
            _ if latest(printer, began) => {
                unended += 1; // still printing: counts nowhere
                continue;
            }
            // The printer showed another job before this one's end was seen: `unknown`.
            _ => "replaced",
        };
        let data = json!({
            "print": key, "job_name": job, "outcome": outcome, "progress": progress,
            "print_error": (outcome == "failed").then_some("0300_8003"),
        });
        publish(
            &js,
            event(
                EventKind::PrintEnded,
                printer,
                &format!("{key}.end"),
                ended,
                data,
            ),
        )
        .await;
    }

    // Every archive settled (ends and files applied), then some linked to a project and some
    // deleted: edits reach statistics too.
    let last = std::sync::Mutex::new(String::new());
    let archives = eventually(Duration::from_secs(60), "the prints archived", || async {
        let archives = setup.all_archives().await;
        let prints: Vec<Value> = archives
            .into_iter()
            .filter(|a| a["status"] != "uploaded")
            .collect();
        let with_file = prints.iter().filter(|a| a["has_file"] == true).count();
        let printing = prints.iter().filter(|a| a["status"] == "printing").count();
        let settled = prints.len() == 240 && with_file == 240 && printing == unended;
        if !settled {
            let unsettled: Vec<&Value> = prints
                .iter()
                .filter(|a| a["has_file"] != true)
                .take(2)
                .collect();
            *last.lock().unwrap() = format!(
                "{} prints, {with_file} with a file, {printing} printing (of {unended}); e.g. {unsettled:?}",
                prints.len()
            );
            eprintln!("not settled yet: {}", last.lock().unwrap());
        }
        settled.then_some(prints)
    })
    .await;
    for archive in archives.iter().step_by(7) {
        let id = archive["id"].as_i64().unwrap();
        let (status, _) = setup
            .send(
                reqwest::Method::PATCH,
                &format!("/archives/{id}"),
                Some(json!({"project_id": project})),
            )
            .await;
        assert_eq!(status, 200);
    }
    for archive in archives.iter().skip(3).step_by(11) {
        let id = archive["id"].as_i64().unwrap();
        let (status, _) = setup
            .send(reqwest::Method::DELETE, &format!("/archives/{id}"), None)
            .await;
        assert_eq!(status, 200);
    }

    let costs = CostSettings::default();
    let expected_for = |archives: &[Value], keep: &dyn Fn(&Value) -> bool| {
        let mut expected = Expected::default();
        for archive in archives.iter().filter(|a| {
            matches!(
                a["status"].as_str(),
                Some("success" | "failed" | "stopped" | "unknown")
            ) && keep(a)
        }) {
            expected.add(archive, &costs);
        }
        expected
    };
    // Statistics catch up with the archive.
    let archives = setup.all_archives().await;
    let all = expected_for(&archives, &|_| true);
    eventually(Duration::from_secs(30), "statistics caught up", || async {
        let got = setup.get("/statistics").await;
        (got["total_prints"] == all.prints
            && (got["total_filament_used"].as_f64().unwrap() - all.grams).abs() < 0.011)
            .then_some(())
    })
    .await;

    // The export: a row per day and printer, in order, adding up to the same prints.
    let csv = setup
        .client
        .get(setup.api.api_url("/statistics/export?format=csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let keys: Vec<(String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_owned(), r[1].to_owned())
        })
        .collect();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let exported: i64 = reader
        .records()
        .map(|r| r.unwrap()[3].parse::<i64>().unwrap())
        .sum();
    assert_eq!(exported, all.prints, "the export adds up");
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| {
        (a.0.clone(), a.1.parse::<i64>().unwrap()).cmp(&(b.0.clone(), b.1.parse::<i64>().unwrap()))
    });
    sorted.dedup();
    assert_eq!(keys, sorted, "one row per day and printer, in order");
    assert!(keys.len() > 20, "{} rows", keys.len());

    // Random filters, each compared with the archives filtered the same way.
    let created = |a: &Value| {
        DateTime::parse_from_rfc3339(a["created_at"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    for round in 0..40 {
        let printer =
            (rng.random_range(0..3) == 0).then(|| printers[rng.random_range(0..printers.len())].0);
        let site = ["", "north", "south"][rng.random_range(0..3)];
        let with_project = rng.random_range(0..4) == 0;
        let kind = ["", "PLA", "petg"][rng.random_range(0..3)];
        let from = start + Span::minutes(rng.random_range(0..30 * 24 * 60));
        let until = from + Span::minutes(rng.random_range(60..20 * 24 * 60));
        let dates = rng.random_range(0..4);
        let mut query = Vec::new();
        if let Some(p) = printer {
            query.push(format!("printer_id={p}"));
        }
        if !site.is_empty() {
            query.push(format!("site={site}"));
        }
        if with_project {
            query.push(format!("project_id={project}"));
        }
        if !kind.is_empty() {
            query.push(format!("filament_type={kind}"));
        }
        // Whole days, instants, or both kinds of bound.
        let (lower, upper) = match dates {
            0 => (None, None),
            1 => (
                Some(from.date_naive().to_string()),
                Some(until.date_naive().to_string()),
            ),
            2 => (Some(from.to_rfc3339()), Some(until.to_rfc3339())),
            _ => (
                Some(from.to_rfc3339()),
                Some(until.date_naive().to_string()),
            ),
        };
        if let Some(lower) = &lower {
            query.push(format!("start_date={}", urlencode(lower)));
        }
        if let Some(upper) = &upper {
            query.push(format!("end_date={}", urlencode(upper)));
        }
        let path = format!("/statistics?{}", query.join("&"));
        let got = setup.get(&path).await;
        let lo = lower.as_deref().map(|v| bound(v, false));
        let hi = upper.as_deref().map(|v| bound(v, true));
        let keep = |a: &Value| {
            printer.is_none_or(|p| a["printer_id"] == p)
                && (site.is_empty() || a["site"] == site)
                && (!with_project || a["project_id"] == project)
                && (kind.is_empty()
                    || a["filament_type"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case(kind)))
                && lo.is_none_or(|l| created(a) >= l)
                && hi.is_none_or(|h| created(a) < h)
        };
        let expected = expected_for(&archives, &keep);
        expected.check(&got, &format!("round {round}: {path}"));
        // Breakdowns: each group equals the archives of that group.
        for row in got["by_printer"].as_array().unwrap() {
            let id = row["printer_id"].clone();
            expected_for(&archives, &|a| keep(a) && a["printer_id"] == id)
                .check(row, &format!("{path} printer {id}"));
        }
        for row in got["by_filament_type"].as_array().unwrap() {
            let t = row["filament_type"].clone();
            expected_for(&archives, &|a| keep(a) && a["filament_type"] == t)
                .check(row, &format!("{path} type {t}"));
        }
        let mut days: HashMap<String, i64> = HashMap::new();
        for a in archives.iter().filter(|a| {
            keep(a)
                && matches!(
                    a["status"].as_str(),
                    Some("success" | "failed" | "stopped" | "unknown")
                )
        }) {
            *days.entry(created(a).date_naive().to_string()).or_default() += 1;
        }
        let by_day: HashMap<String, i64> = got["by_day"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["day"].as_str().unwrap().to_owned(),
                    d["total_prints"].as_i64().unwrap() + d["unknown_prints"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(by_day, days, "{path}: prints by day");
    }
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

/// A bound as the API reads it.
fn bound(value: &str, end: bool) -> DateTime<Utc> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let day = if end { day.succ_opt().unwrap() } else { day };
        return day.and_hms_opt(0, 0, 0).unwrap().and_utc();
    }
    let instant = DateTime::parse_from_rfc3339(value)
        .unwrap()
        .with_timezone(&Utc);
    if end {
        instant + Span::microseconds(1)
    } else {
        instant
    }
}

/// A print's end handled before its own start (the stream has them the wrong way round: the
/// end waits for the start as long as it may, then goes on) archives its own print
/// and leaves the printer's earlier, still open print alone.
#[tokio::test]
async fn an_end_handled_before_its_start_ends_only_its_own_print() {
    let setup = setup().await;
    let js = async_nats::jetstream::new(setup.env.nats.client().await);
    let printer = (1, "default");
    let t0 = Utc::now() - Span::hours(3);
    let first = json!({"print": "a@a.1", "job_name": "a", "printer_name": "P"});
    publish(
        &js,
        event(EventKind::PrintStarted, printer, "a.", t0, first),
    )
    .await;
    let open = eventually(Duration::from_secs(20), "the first print", || async {
        let archives = setup.all_archives().await;
        archives.first().map(|a| a["id"].as_i64().unwrap())
    })
    .await;
    let second = json!({"print": "b@b.2", "job_name": "b", "printer_name": "P",
        "outcome": "complete"});
    let end = event(
        EventKind::PrintEnded,
        printer,
        "b.end",
        t0 + Span::hours(2),
        second.clone(),
    );
    publish(&js, end).await;
    let start = event(
        EventKind::PrintStarted,
        printer,
        "b.",
        t0 + Span::hours(1),
        second,
    );
    publish(&js, start).await;
    let archives = eventually(Duration::from_secs(20), "both prints", || async {
        let archives = setup.all_archives().await;
        // Both events of the second print applied, in whichever order.
        let settled = archives
            .iter()
            .any(|a| a["name"] == "b" && a["started_at"].is_string() && a["status"] != "printing");
        (archives.len() == 2 && settled).then_some(archives)
    })
    .await;
    let a = archives.iter().find(|a| a["id"] == open).unwrap();
    // The earlier print ended before the later one ran, unseen: not with the later one's end.
    assert_eq!(a["status"], "unknown", "{a}");
    assert!(
        a["end_reason"]
            .as_str()
            .unwrap()
            .contains("another print (b)"),
        "{a}"
    );
    let b = archives.iter().find(|a| a["name"] == "b").unwrap();
    assert_eq!(b["status"], "success", "{b}");
}

/// The end of a print whose start was not applied yet never goes to the printer's print known
/// only from its file (no job name yet, another key): it once ended that one, and its own
/// print then stayed `printing` for good.
#[tokio::test]
async fn an_end_before_its_start_leaves_a_print_known_only_by_its_file_alone() {
    let setup = setup().await;
    let js = async_nats::jetstream::new(setup.env.nats.client().await);
    let file = setup
        .upload(
            sliced_3mf(&Slicing {
                model_id: "C12",
                ..Default::default()
            }),
            "a.3mf",
        )
        .await;
    let printer = (1, "default");
    let t0 = Utc::now() - Span::hours(3);
    publish(
        &js,
        event(
            EventKind::PrintFile,
            printer,
            "a.file",
            t0,
            json!({"print": "a@a.1", "source_archive": file, "plate": 1}),
        ),
    )
    .await;
    let first = eventually(Duration::from_secs(20), "the print of the file", || async {
        let archives = setup.all_archives().await;
        archives
            .iter()
            .find(|a| a["id"].as_i64() != Some(file))
            .map(|a| a["id"].as_i64().unwrap())
    })
    .await;
    let second = json!({"print": "b@b.2", "job_name": "b", "printer_name": "P",
        "outcome": "complete"});
    publish(
        &js,
        event(
            EventKind::PrintEnded,
            printer,
            "b.end",
            t0 + Span::hours(2),
            second,
        ),
    )
    .await;
    let archives = eventually(Duration::from_secs(20), "the second print", || async {
        let archives = setup.all_archives().await;
        archives
            .iter()
            .any(|a| a["name"] == "b")
            .then_some(archives)
    })
    .await;
    let a = archives.iter().find(|a| a["id"] == first).unwrap();
    assert_eq!(
        a["status"], "unknown",
        "the first print ended before the second, unseen: {a}"
    );
    let b = archives.iter().find(|a| a["name"] == "b").unwrap();
    assert_eq!(b["status"], "success", "{b}");
}

#[tokio::test]
async fn prints_on_the_simulator_move_the_statistics_and_a_restarted_stats_catches_up() {
    let mut setup = setup().await;
    let sim = SimFarm::start(&[Model::A1Mini], 200.0).await;
    let printer = sim.farm.printers[0].clone();
    let _gateway = spawn_gateway_with(sim.gateway_config(&setup.env)).await;
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
        (setup.get("/printers/1/status").await["connected"] == true).then_some(())
    })
    .await;
    printer.store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
    print(&setup, &printer, None).await;
    let one = setup
        .stats_where("a success counted", |s| s["successful_prints"] == 1)
        .await;
    assert_eq!(one["total_prints"], 1);
    assert_eq!(one["total_filament_used"], 2.83, "the plate's grams");
    assert!(one["total_print_time"].as_i64().unwrap() > 0);
    assert!(one["total_cost"].as_f64().unwrap() > 0.0);
    assert_eq!(one["currency"], "EUR");
    assert_eq!(one["by_printer"][0]["printer_name"], "Desk");
    // A kept answer is named again when a printer is renamed, the facts unchanged.
    let (status, _) = setup
        .send(
            reqwest::Method::PATCH,
            "/printers/1",
            Some(json!({"name": "Bench"})),
        )
        .await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(10), "the new name", || async {
        (setup.get("/statistics").await["by_printer"][0]["printer_name"] == "Bench").then_some(())
    })
    .await;
    // An unchanged answer is 304 to its entity tag; a print later it is a new answer.
    let conditional = |tag: String| {
        let request = setup
            .client
            .get(setup.api.api_url("/statistics"))
            .header("If-None-Match", tag);
        async move { request.send().await.unwrap() }
    };
    let etag = conditional("\"none\"".into()).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let unchanged = conditional(etag.clone()).await;
    assert_eq!(unchanged.status(), 304);
    assert_eq!(unchanged.headers()["etag"].to_str().unwrap(), etag);
    assert!(unchanged.bytes().await.unwrap().is_empty());
    print(&setup, &printer, Some("fail")).await;
    setup
        .stats_where("a failure counted", |s| s["failed_prints"] == 1)
        .await;
    let changed = conditional(etag.clone()).await;
    assert_eq!(changed.status(), 200, "a print later the answer is new");
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
    print(&setup, &printer, Some("stop")).await;
    let three = setup
        .stats_where("a stop counted", |s| s["stopped_prints"] == 1)
        .await;
    assert_eq!(three["total_prints"], 3);
    assert_eq!(three["success_rate"], 33.33);

    // Deleting the successful print's archive takes it out.
    let success = setup.get("/archives?status=success").await["archives"][0]["id"]
        .as_i64()
        .unwrap();
    let (status, _) = setup
        .send(
            reqwest::Method::DELETE,
            &format!("/archives/{success}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let two = setup
        .stats_where("the deletion counted", |s| s["total_prints"] == 2)
        .await;
    assert_eq!(two["successful_prints"], 0);

    // A redelivered (older) archive event changes nothing.
    let js = async_nats::jetstream::new(setup.env.nats.client().await);
    let stale = FarmEvent {
        id: "test.redelivery.1".into(),
        kind: EventKind::ArchiveUpdated,
        site: Site::default(),
        printer_id: 1,
        serial: String::new(),
        at: Utc::now(),
        data: json!({
            "archive_id": success, "revision": 1, "status": "success", "name": "x",
            "printer_id": 1, "printer_name": "Desk", "site": "default", "project_id": null,
            "created_at": Utc::now(), "started_at": null, "completed_at": null,
            "duration": 100, "filament_used": 2.83, "filament_type": "PLA",
            "printer_model_id": "N1", "queue_job_id": null,
        }),
    };
    publish(&js, stale).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(setup.get("/statistics").await["total_prints"], 2);

    // stats down during a print: it catches up when it comes back.
    setup.stats.take().unwrap().stop().await;
    print(&setup, &printer, None).await;
    eventually(Duration::from_secs(60), "the print archived", || async {
        (setup.get("/archives?status=success").await["total"] == 1).then_some(())
    })
    .await;
    setup.stats = Some(spawn_stats(&setup.env).await);
    let caught_up = setup
        .stats_where("caught up", |s| s["total_prints"] == 3)
        .await;
    assert_eq!(caught_up["successful_prints"], 1);
}

/// A print "from the touchscreen", ended as asked: `None` runs to completion, `fail` fails it,
/// `stop` stops it through the API.
async fn print(setup: &Setup, printer: &printyard_printer_sim::Printer, end: Option<&str>) {
    eventually(Duration::from_secs(30), "the printer free", || async {
        let state = printer.snapshot().gcode_state;
        (state != GcodeState::Prepare && state != GcodeState::Running).then_some(())
    })
    .await;
    printer.start_from_touchscreen(DEMO_PATH, 1).unwrap();
    eventually(Duration::from_secs(30), "running", || async {
        (printer.snapshot().gcode_state == GcodeState::Running).then_some(())
    })
    .await;
    match end {
        Some("fail") => printer.fail_print(None).unwrap(),
        Some("stop") => {
            let (status, _) = setup
                .send(reqwest::Method::POST, "/printers/1/stop", None)
                .await;
            assert_eq!(status, 200);
        }
        _ => {}
    }
}

#[tokio::test]
async fn cost_settings_are_checked_and_a_change_prices_later_prints_only() {
    let setup = setup().await;
    let defaults = setup.get("/settings/costs").await;
    assert_eq!(defaults["currency"], "EUR");
    assert_eq!(defaults["filament_cost_per_kg"]["PLA"], 20.0);

    let (status, body) = setup
        .send(
            reqwest::Method::PUT,
            "/settings/costs",
            Some(json!({"currency": "euro", "filament_cost_per_kg": {}, "energy_cost_per_kwh": 0.3, "printer_power_watts": {}})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("VALIDATION_ERROR")),
        "{body}"
    );

    // A print priced with the defaults: 2.83 g of PLA at 20/kg, no time.
    let js = async_nats::jetstream::new(setup.env.nats.client().await);
    let library = setup
        .upload(sliced_3mf(&Slicing::default()), "cube.3mf")
        .await;
    let printed = |i: i64| {
        let js = js.clone();
        async move {
            let at = Utc::now();
            let key = format!("cost{i}@x.{i}");
            let data = json!({"print": key, "job_name": "cube"});
            publish(
                &js,
                event(
                    EventKind::PrintStarted,
                    (9, "default"),
                    &format!("{key}."),
                    at,
                    data,
                ),
            )
            .await;
            publish(
                &js,
                event(
                    EventKind::PrintFile,
                    (9, "default"),
                    &format!("{key}.f"),
                    at,
                    json!({"print": key, "source_archive": library, "plate": 1}),
                ),
            )
            .await;
            publish(
                &js,
                event(
                    EventKind::PrintEnded,
                    (9, "default"),
                    &format!("{key}.e"),
                    at,
                    json!({"print": key, "outcome": "complete"}),
                ),
            )
            .await;
        }
    };
    printed(1).await;
    let first = eventually(
        Duration::from_secs(30),
        "the first print counted",
        || async {
            let s = setup.get("/statistics").await;
            (s["total_prints"] == 1 && s["total_filament_used"] == 2.83).then_some(s)
        },
    )
    .await;
    assert_eq!(first["filament_cost"], 0.06, "2.83 g at 20/kg");

    let mut dearer = defaults.clone();
    dearer["currency"] = json!("USD");
    dearer["filament_cost_per_kg"]["PLA"] = json!(200.0);
    let (status, body) = setup
        .send(reqwest::Method::PUT, "/settings/costs", Some(dearer))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(setup.get("/settings/costs").await["currency"], "USD");
    let after = setup.get("/statistics").await;
    assert_eq!(after["filament_cost"], 0.06, "a print keeps its prices");
    assert_eq!(after["currency"], "USD");

    printed(2).await;
    let both = eventually(
        Duration::from_secs(30),
        "the second print counted",
        || async {
            let s = setup.get("/statistics").await;
            // Its filament comes with the archive's answer, which may follow the count (as
            // for the first print).
            (s["total_prints"] == 2 && s["total_filament_used"] == 5.66).then_some(s)
        },
    )
    .await;
    assert_eq!(
        both["filament_cost"], 0.62,
        "2.83 g at 20/kg, then 2.83 g at 200/kg"
    );

    // CSV export: one row per day and printer.
    let csv = setup
        .client
        .get(setup.api.api_url("/statistics/export?format=csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("day,printer_id,printer_name,prints"));
    assert!(
        lines[1].contains(",9,,2,2,0,0,0,100,0,5.66,0.62,"),
        "{text}"
    );
    let xlsx = setup
        .client
        .get(setup.api.api_url("/statistics/export?format=xlsx"))
        .send()
        .await
        .unwrap();
    assert_eq!(xlsx.status(), 200);
    assert_eq!(xlsx.headers()["content-type"], printyard_api::export::XLSX);
}
