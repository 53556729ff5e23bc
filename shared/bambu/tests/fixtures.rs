//! Every real capture in `tests/fixtures/printers/` parses, merges and normalises.

use printyard_bambu::report::{Message, ReportState, parse};
use printyard_bambu::status::normalize;
use printyard_contracts::printer::{HmsStatus, PrinterState};

mod support;
use support::{full_payload, load};

fn state_of(name: &str) -> ReportState {
    let doc = load(name);
    let mut state = ReportState::default();
    match parse(&full_payload(&doc)).unwrap() {
        Message::Status { full, print } => {
            assert!(full, "{name}: the capture is a full report (msg 0)");
            state.apply(full, &print);
        }
        other => panic!("{name}: {other:?}"),
    }
    state
}

#[test]
fn every_capture_is_a_full_report_that_normalises() {
    let dir = format!(
        "{}/../../tests/fixtures/printers",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.contains("get-version") {
            continue;
        }
        let state = state_of(&name);
        let status = normalize(state.fields(), None, None);
        assert!(status.progress <= 100, "{name}");
        seen += 1;
    }
    assert!(seen >= 7);
}

#[test]
fn captures_normalise_to_what_the_printers_were_doing() {
    let x1c = normalize(
        state_of("x1c-multi-ams.json").fields(),
        Some("BL-P001"),
        None,
    );
    assert_eq!(x1c.state, PrinterState::Finished);
    assert_eq!(
        (x1c.progress, x1c.current_layer, x1c.total_layers),
        (100, 480, 480)
    );
    assert_eq!(
        x1c.job_name.as_deref(),
        Some("Garden Hose Healer: Male fitting")
    );

    let p1p = normalize(state_of("p1p.json").fields(), Some("C11"), None);
    assert_eq!(p1p.state, PrinterState::Failed);
    assert_eq!(p1p.remaining_time, 759 * 60, "minutes become seconds");
    assert_eq!(p1p.temperatures.chamber, None);

    let a1mini = normalize(
        state_of("a1mini-pushall-idle.json").fields(),
        Some("N1"),
        None,
    );
    assert_eq!(a1mini.state, PrinterState::Idle);

    let misc = normalize(state_of("misc-with-hms.json").fields(), None, None);
    assert_eq!(misc.hms.len(), 1);
    assert_eq!(misc.hms[0].code, "HMS_0C00_0300_0003_0007");
    assert_eq!(misc.hms_status, HmsStatus::Warning);
    assert!(misc.hms[0].text.as_deref().unwrap().contains("first layer"));
}

#[test]
fn the_h2d_deltas_merge_onto_its_full_report() {
    let doc = load("h2d.json");
    let mut state = state_of("h2d.json");
    let before = state.fields().len();
    for key in [
        "push_door_opened",
        "push_left_extruder",
        "push_alt_nozzle_info",
    ] {
        let delta = doc[key].as_object().unwrap().clone();
        state.apply(false, &delta);
    }
    assert!(state.fields().len() >= before, "deltas only add or replace");
    let device = &state.fields()["device"];
    assert!(device.is_object(), "nested objects merge");
}

#[test]
fn version_answers_parse_as_versions() {
    for (name, pointer) in [
        ("a1mini-get-version.json", "/message"),
        ("x1c-multi-ams.json", "/get_version"),
    ] {
        let doc = load(name);
        let payload = if pointer.is_empty() {
            // p1p.json keeps the answer's body under `get_version`, without the `info` envelope.
            serde_json::to_vec(&serde_json::json!({ "info": doc["get_version"] })).unwrap()
        } else {
            serde_json::to_vec(doc.pointer(pointer).unwrap()).unwrap()
        };
        assert!(
            matches!(parse(&payload).unwrap(), Message::Version(_)),
            "{name}"
        );
    }
}

#[test]
fn loaded_filaments_come_from_the_ams_trays_and_the_external_spool() {
    let loaded = |name: &str| normalize(state_of(name).fields(), None, None);

    // A1 mini with its AMS lite: four trays, one of them PETG, and a PLA external spool.
    let a1mini = loaded("a1mini-pushall-idle.json");
    assert!(a1mini.has_ams);
    let kinds: Vec<(u16, &str, bool)> = a1mini
        .filaments
        .iter()
        .map(|f| (f.tray, f.kind.as_str(), f.external))
        .collect();
    assert_eq!(
        kinds,
        [
            (0, "PLA", false),
            (1, "PLA", false),
            (2, "PETG", false),
            (3, "PLA", false),
            (254, "PLA", true)
        ]
    );
    assert_eq!(a1mini.filaments[2].color.as_deref(), Some("D6ABFF80"));

    // X1C with three AMS units and an AMS HT (unit 128): an empty slot is left out, tray ids
    // are global (unit 1 slot 0 is 4), the HT tray is 128, and the unset spool holder is absent.
    let x1c = loaded("x1c-multi-ams.json");
    let trays: Vec<u16> = x1c.filaments.iter().map(|f| f.tray).collect();
    assert_eq!(trays, [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 128]);
    assert_eq!(x1c.filaments[4].kind, "ABS");
    assert_eq!(x1c.filaments.last().unwrap().kind, "PA-CF");
    assert_eq!(x1c.filaments[0].remain, Some(93));
    // Bambu spools carry their tag, product line and weight; 93 % of 1 kg is measured.
    let first = &x1c.filaments[0];
    assert_eq!(
        first.tag.as_deref(),
        Some("5F3D8925633343C29FB9A97FA9125971")
    );
    assert_eq!(first.sub_brand.as_deref(), Some("PLA Matte"));
    assert_eq!((first.weight_g, first.diameter), (Some(1000), Some(1.75)));
    assert_eq!(first.measured_g(), Some(930.0));
    let tags: std::collections::HashSet<_> =
        x1c.filaments.iter().filter_map(|f| f.tag.clone()).collect();
    assert_eq!(
        tags.len(),
        x1c.filaments.len(),
        "every tag is its own spool"
    );

    // An A1's AMS lite with third-party spools: no tag (all zeros), nothing measured.
    let a1 = loaded("a1.json");
    assert!(!a1.filaments.is_empty());
    assert!(
        a1.filaments
            .iter()
            .all(|f| f.tag.is_none() && f.sub_brand.is_none() && f.measured_g().is_none()),
        "{:?}",
        a1.filaments
    );

    // P1P without an AMS: the external spool only.
    let p1p = loaded("p1p-no-ams.json");
    assert!(!p1p.has_ams, "{:?}", p1p.filaments);
    assert_eq!(p1p.filaments.len(), 1);
    assert_eq!(
        (p1p.filaments[0].tray, p1p.filaments[0].kind.as_str()),
        (254, "PETG")
    );
}
