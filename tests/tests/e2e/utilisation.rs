//! Utilisation end to end: a simulated printer goes through a run of every state (a job waiting
//! for it, a print with a pause, a plate left uncleared, an HMS error, an outage, maintenance
//! mode), and `/statistics/utilisation` gives hours by state that sum to the run's length and
//! match what happened, the same from the spells (a partial day) as from the summaries (a whole
//! day), with the plate's wait and the CSV export.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use printyard_printer_sim::Model;
use printyard_printer_sim::farm::{DEMO_3MF, DEMO_PATH};
use printyard_printer_sim::printer::{Faults, GcodeState};
use printyard_tests::threemf::{Slicing, sliced_3mf};
use printyard_tests::{
    SimFarm, TestEnv, add_printer, eventually, get_json, spawn_api_and_client, spawn_archive,
    spawn_gateway_with, spawn_scheduler, spawn_stats, upload_file, wait_connected,
};
use serde_json::{Value, json};

/// How long the run holds each state.
const HOLD: Duration = Duration::from_secs(3);

fn hours(answer: &Value, state: &str) -> f64 {
    answer["printers"][0]["hours"][state]
        .as_f64()
        .unwrap_or(0.0)
}

fn secs(answer: &Value, state: &str) -> f64 {
    hours(answer, state) * 3600.0
}

fn range(from: DateTime<Utc>, until: DateTime<Utc>) -> String {
    format!(
        "start_date={}&end_date={}",
        urlencode(&from.to_rfc3339()),
        urlencode(&until.to_rfc3339())
    )
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn a_printers_hours_by_state_sum_to_the_run_and_match_what_happened() {
    let env = TestEnv::new().await;
    let sim = SimFarm::start(&[Model::A1Mini], 100.0).await;
    let _archive = spawn_archive(&env).await;
    let _stats = spawn_stats(&env).await;
    let _scheduler = spawn_scheduler(&env).await;
    let (api, client) = spawn_api_and_client(&env).await;
    let _gateway = spawn_gateway_with(sim.gateway_config(&env)).await;
    let base = api.api_url("");
    let printer = &sim.farm.printers[0];
    let id = add_printer(
        &client,
        &base,
        printer,
        "Desk A1",
        &printer.spec.access_code,
    )
    .await;
    wait_connected(&client, &base, id, Duration::from_secs(20)).await;
    let url = |query: &str| api.api_url(&format!("/statistics/utilisation?{query}"));
    eventually(
        Duration::from_secs(20),
        "the printer's first fact",
        || async {
            let answer = get_json(&client, &url("")).await?;
            (hours(&answer, "idle") > 0.0).then_some(())
        },
    )
    .await;
    let t0 = Utc::now();
    let mut held = Vec::new();
    let hold = |what: &'static str, held: &mut Vec<(&'static str, Instant)>| {
        held.push((what, Instant::now()));
    };

    // Idle with a job waiting for it (scheduled an hour ahead), then with none.
    let file = sliced_3mf(&Slicing::default());
    let archive_id = upload_file(&client, &base, file, "cube.3mf").await["id"]
        .as_i64()
        .unwrap();
    let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let job: Value = client
        .post(api.api_url("/queue"))
        .json(&json!({"archive_id": archive_id, "printer_id": id, "scheduled_time": later}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    hold("idle_queued", &mut held);
    tokio::time::sleep(HOLD).await;
    let removed = client
        .delete(api.api_url(&format!("/queue/{}", job["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A print, paused for a while.
    printer.store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
    printer.start_from_touchscreen(DEMO_PATH, 1).unwrap();
    eventually(Duration::from_secs(10), "printing", || async {
        (printer.snapshot().gcode_state == GcodeState::Running).then_some(())
    })
    .await;
    let command = |what: &'static str| {
        let client = client.clone();
        let url = api.api_url(&format!("/printers/{id}/{what}"));
        async move {
            let answer = client.post(url).send().await.unwrap();
            assert!(answer.status().is_success(), "{what}: {}", answer.status());
        }
    };
    command("pause").await;
    hold("paused", &mut held);
    tokio::time::sleep(HOLD).await;
    command("resume").await;
    eventually(Duration::from_secs(60), "the print finished", || async {
        (printer.snapshot().gcode_state == GcodeState::Finish).then_some(())
    })
    .await;

    // Its plate left for a while, then cleared.
    hold("awaiting_clear", &mut held);
    tokio::time::sleep(HOLD).await;
    command("clear-plate").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A fatal HMS error, then cleared.
    printer.raise_hms(0x0300_0100, 0x0001_0001);
    hold("error", &mut held);
    tokio::time::sleep(HOLD).await;
    printer.clear_hms();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // An outage: the printer refuses connections, then is back.
    printer.set_faults(Faults {
        refuse_connections: true,
        ..Faults::default()
    });
    printer.drop_connections();
    hold("offline", &mut held);
    eventually(Duration::from_secs(30), "offline", || async {
        let status = get_json(&client, &api.api_url(&format!("/printers/{id}/status"))).await?;
        (status["connected"] == false).then_some(())
    })
    .await;
    tokio::time::sleep(HOLD).await;
    printer.set_faults(Faults::default());
    wait_connected(&client, &base, id, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Maintenance mode for a while.
    let maintenance = |on: bool| {
        let client = client.clone();
        let url = api.api_url(&format!("/printers/{id}"));
        async move {
            let answer = client
                .patch(url)
                .json(&json!({"maintenance": on}))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
        }
    };
    maintenance(true).await;
    hold("maintenance", &mut held);
    tokio::time::sleep(HOLD).await;
    maintenance(false).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t1 = Utc::now();
    let run = (t1 - t0).num_milliseconds() as f64 / 1000.0;

    // The run: every state it went through, summing to its length.
    let answer = eventually(Duration::from_secs(20), "the run's facts kept", || async {
        let answer = get_json(&client, &url(&range(t0, t1))).await?;
        (secs(&answer, "maintenance") >= 1.0 && secs(&answer, "idle") > 0.0).then_some(answer)
    })
    .await;
    let row = &answer["printers"][0];
    assert_eq!(row["printer_id"], id, "{answer}");
    assert_eq!(row["name"], "Desk A1");
    assert_eq!(row["model"], "A1 mini");
    let total: f64 = [
        "printing",
        "paused",
        "awaiting_clear",
        "idle_queued",
        "idle",
        "error",
        "offline",
        "maintenance",
    ]
    .iter()
    .map(|s| secs(&answer, s))
    .sum();
    assert!(
        (total - run).abs() < 2.0,
        "hours by state sum to {total} s over a run of {run} s: {answer}"
    );
    // Each state held about as long as the run held it (the scheduler looks every second).
    for (state, _) in &held {
        let s = secs(&answer, state);
        let bound = if *state == "offline" { 40.0 } else { 6.5 };
        assert!(
            (HOLD.as_secs_f64() - 1.5..bound).contains(&s),
            "{state}: {s} s, held {HOLD:?}: {answer}"
        );
    }
    assert!(secs(&answer, "printing") > 0.0, "{answer}");
    let utilisation = row["utilisation"].as_f64().unwrap();
    let online = run - secs(&answer, "offline");
    let expected = secs(&answer, "printing") / online * 100.0;
    assert!(
        (utilisation - expected).abs() < 1.0,
        "{utilisation} vs {expected}"
    );
    assert_eq!(answer["farm"]["printers"], 1);
    assert_eq!(answer["models"][0]["name"], "A1 mini");
    assert_eq!(answer["plate_clear"]["count"], 1, "{answer}");
    let plate = answer["plate_clear"]["median_secs"].as_f64().unwrap();
    assert!((2.0..8.0).contains(&plate), "plate waited {plate} s");

    // The whole day (from the summaries of ended spells and the spell going on) holds the
    // same time for the states the run alone went through.
    let today = t0.date_naive();
    let day = get_json(
        &client,
        &url(&format!("start_date={today}&end_date={today}")),
    )
    .await
    .unwrap();
    for state in [
        "paused",
        "awaiting_clear",
        "error",
        "maintenance",
        "idle_queued",
    ] {
        let (run_s, day_s) = (secs(&answer, state), secs(&day, state));
        assert!(
            (run_s - day_s).abs() < 0.5,
            "{state}: {run_s} s in the run, {day_s} s in the day"
        );
    }
    assert_eq!(
        day["plate_clear"]["count"], 1,
        "the plate's wait in the day's summaries"
    );
    assert_eq!(day["trend_period"], "day");
    assert_eq!(day["trend"][0]["period"], today.to_string());

    // The export: a row per printer, then model, site and farm.
    let csv = client
        .get(api.api_url(&format!("/statistics/utilisation/export?{}", range(t0, t1))))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("row,printer_id,name,model,site,printing_hours"));
    assert!(
        lines[1].starts_with(&format!("printer,{id},Desk A1,A1 mini,")),
        "{csv}"
    );
    assert!(lines.last().unwrap().starts_with("farm,"), "{csv}");

    // Bad ranges are refused.
    let backwards = client.get(url(&range(t1, t0))).send().await.unwrap();
    assert_eq!(backwards.status(), 422);
}
