//! Reports keep the field names and JSON types of real captures: for each simulated model, its
//! full report holds every field that the real fixture of its family holds, among the fields
//! Printyard reads, with the same JSON type, idle and mid-print.

use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::Bytes;
use printyard_printer_sim::Model;
use printyard_printer_sim::farm::{DEMO_3MF, DEMO_PATH};
use printyard_printer_sim::printer::{Printer, PrinterSpec};
use serde_json::{Map, Value};

/// The fields of `print` that Printyard reads.
const READ: &[&str] = &[
    "gcode_state",
    "mc_percent",
    "mc_remaining_time",
    "layer_num",
    "total_layer_num",
    "nozzle_temper",
    "nozzle_target_temper",
    "bed_temper",
    "bed_target_temper",
    "chamber_temper",
    "hms",
    "ams",
    "vt_tray",
    "gcode_file",
    "subtask_name",
    "subtask_id",
    "task_id",
    "job_id",
    "gcode_file_prepare_percent",
    "print_error",
    "spd_lvl",
    "wifi_signal",
    "msg",
    "sequence_id",
    "command",
    "cooling_fan_speed",
    "big_fan1_speed",
    "big_fan2_speed",
    "mc_print_stage",
    "fun",
];

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn fixture(name: &str) -> Map<String, Value> {
    let text = std::fs::read_to_string(format!(
        "{}/../fixtures/printers/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc.pointer("/pushall/print")
        .or_else(|| doc.get("push_all"))
        .or_else(|| doc.pointer("/message/print"))
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

fn assert_conforms(model: Model, fixture_name: &str, report: &Map<String, Value>, when: &str) {
    let real = fixture(fixture_name);
    for field in READ {
        let Some(expected) = real.get(*field) else {
            continue;
        };
        let got = report.get(*field).unwrap_or_else(|| {
            panic!("{model:?} {when}: `{field}` is missing (the {fixture_name} capture has it)")
        });
        assert_eq!(
            kind(got),
            kind(expected),
            "{model:?} {when}: `{field}` is {got} but the capture sends {expected}"
        );
    }
    // AMS trays: same keys, same types as the capture's first tray.
    let tray = |m: &Map<String, Value>| {
        m.get("ams")?
            .get("ams")?
            .get(0)?
            .get("tray")?
            .get(0)
            .cloned()
    };
    if let (Some(real_tray), Some(our_tray)) = (tray(&real), tray(report)) {
        for (key, value) in real_tray.as_object().unwrap() {
            let ours = our_tray
                .get(key)
                .unwrap_or_else(|| panic!("{model:?}: tray field `{key}` missing"));
            assert_eq!(kind(ours), kind(value), "{model:?}: tray `{key}`");
        }
    }
}

fn printer(model: Model) -> Printer {
    Printer::new(
        PrinterSpec {
            name: "t".into(),
            serial: printyard_printer_sim::model::serial_for(model, 1),
            access_code: "12345678".into(),
            model,
            ip: Ipv4Addr::LOCALHOST,
        },
        600.0,
    )
}

#[test]
fn every_models_full_report_matches_its_real_capture_idle_and_printing() {
    for model in Model::ALL {
        let printer = printer(model);
        let idle = printer.full_report();
        assert_conforms(model, model.fixture(), &idle, "idle");
        assert_eq!(idle["msg"], 0);
        assert_eq!(idle["gcode_state"], "IDLE");

        printer.store(DEMO_PATH, Bytes::from_static(DEMO_3MF));
        printer.start_from_touchscreen(DEMO_PATH, 1).unwrap();
        printer.tick(Duration::from_millis(200)); // 120 simulated seconds: prepared (60 s)
        printer.tick(Duration::from_millis(500)); // and 300 s into the print
        let printing = printer.full_report();
        assert_conforms(model, model.fixture(), &printing, "printing");
        assert_eq!(printing["gcode_state"], "RUNNING", "{model:?}");
        assert!(printing["mc_percent"].as_i64().unwrap() > 0);
        assert_eq!(printing["total_layer_num"], 90);
    }
}

#[test]
fn p1_reports_also_match_the_p1p_capture_without_ams() {
    let report = printer(Model::P1P).full_report();
    assert_conforms(Model::P1P, "p1p-no-ams.json", &report, "idle");
}

#[test]
fn sequence_ids_are_the_printers_own_counter_as_strings() {
    let printer = printer(Model::A1);
    let a = printer.full_report();
    let b = printer.full_report();
    let n = |r: &Map<String, Value>| r["sequence_id"].as_str().unwrap().parse::<u64>().unwrap();
    assert!(n(&b) > n(&a));
}
