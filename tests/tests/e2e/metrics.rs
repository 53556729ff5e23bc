//! The gateway's metrics and the dashboard of them: a gateway holding a simulated printer
//! reports it held and connected, counts what the printer sends, status writes, events,
//! commands and dropped sessions by cause on `/metrics`; every metric the Grafana dashboard in
//! `k8s/grafana/` queries is one the gateway exports.

use std::collections::BTreeSet;
use std::time::Duration;

use printyard_api::auth::Permission;
use printyard_printer_sim::Model;
use printyard_tests::{
    SimFarm, TestEnv, add_printer, eventually, http, keyed_http, spawn_api, spawn_gateway_with,
};
use serde_json::Value;

/// The value of the sample `name{labels}` (labels as rendered, `""` for none), summed over
/// samples whose labels contain every `label` given.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, rendered) = key.split_once('{').unwrap_or((key, ""));
        if metric == name && labels.iter().all(|l| rendered.contains(l)) {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    found
}

#[tokio::test]
async fn the_gateway_reports_its_printers_and_the_dashboard_reads_what_it_exports() {
    let env = TestEnv::new().await;
    let sim = SimFarm::start(&[Model::P1S], 1.0).await;
    let api = spawn_api(&env).await;
    let gateway = spawn_gateway_with(sim.gateway_config(&env)).await;
    let key = env
        .api_key(&[Permission::Write, Permission::Control, Permission::Read])
        .await;
    let client = keyed_http(&key);
    let printer = &sim.farm.printers[0];
    let code = &printer.spec.access_code;
    add_printer(&client, &api.api_url(""), printer, "Metered", code).await;
    let metrics = || async {
        http()
            .get(gateway.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    eventually(Duration::from_secs(60), "held and connected", || async {
        let m = metrics().await;
        (sample(&m, "printyard_gateway_printers_held", &[]) == Some(1.0)
            && sample(&m, "printyard_gateway_printers_connected", &[]) == Some(1.0))
        .then_some(())
    })
    .await;
    // A command, answered by the printer.
    let (status, body) = api
        .send_json(&client, reqwest::Method::POST, "/printers/1/pause", None)
        .await;
    assert!(status == 200 || status == 409, "{status} {body}");
    // A dropped session, counted by its cause, and the printer back.
    printer.drop_connections();
    // Generous: under a loaded CI machine the reconnect once took over 20 s.
    eventually(Duration::from_secs(60), "the session counted", || async {
        let m = metrics().await;
        (sample(&m, "printyard_gateway_reconnects_total", &["cause=\"io\""]).unwrap_or(0.0) >= 1.0
            && sample(&m, "printyard_gateway_printers_connected", &[]) == Some(1.0))
        .then_some(())
    })
    .await;
    let m = metrics().await;
    assert!(sample(&m, "printyard_gateway_messages_received_total", &[]).unwrap() >= 2.0);
    assert!(
        sample(&m, "printyard_gateway_bytes_received_total", &[]).unwrap() > 1000.0,
        "full reports are kilobytes"
    );
    assert!(sample(&m, "printyard_gateway_status_writes_total", &[]).unwrap() >= 2.0);
    assert!(
        sample(
            &m,
            "printyard_gateway_events_published_total",
            &["kind=\"printer_online\""]
        )
        .unwrap()
            >= 2.0,
        "online twice"
    );
    assert!(
        sample(
            &m,
            "printyard_gateway_command_duration_seconds_count",
            &["command=\"pause\""]
        )
        .unwrap()
            >= 1.0
    );

    // Every gateway metric the dashboard queries is exported (histograms and labelled
    // counters once they have a sample: the ones this test did not cause are named in
    // `observe`, the gateway's list).
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../k8s/grafana/printyard-gateway.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut queried = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_i64().unwrap()),
            "panel ids are unique"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}");
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("printyard_") {
                    let name = ["_bucket", "_count", "_sum"]
                        .iter()
                        .find_map(|s| word.strip_suffix(s))
                        .unwrap_or(word);
                    queried.insert(name.to_owned());
                }
            }
        }
    }
    let exported: BTreeSet<String> = m
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|name| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name)
                .to_owned()
        })
        .collect();
    let listed: BTreeSet<String> = printyard_gateway::observe::ALL
        .iter()
        .map(|s| s.to_string())
        .collect();
    for name in &queried {
        assert!(
            exported.contains(name) || listed.contains(name),
            "the dashboard queries {name}, which the gateway does not export"
        );
    }
    assert!(queried.len() >= 12, "{queried:?}");
}
