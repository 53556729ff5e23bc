//! From a merged report to the normalised [`PrinterStatus`]: states named for people,
//! remaining time in seconds (printers send minutes), HMS entries decoded with severity and text.

use printyard_contracts::printer::{
    HmsEntry, HmsSeverity, HmsStatus, LoadedFilament, PrinterState, PrinterStatus, Temperatures,
};
use serde_json::{Map, Value};

use crate::codes::{hms_code, hms_severity, print_error_code};
use crate::hms::hms_text;

/// A number, whether the printer sent it as a number or a numeric string.
pub fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `gcode_state` to the API's state.
pub fn state_of(gcode_state: Option<&str>) -> PrinterState {
    match gcode_state.map(str::to_ascii_uppercase).as_deref() {
        Some("PREPARE" | "SLICING" | "INIT") => PrinterState::Preparing,
        Some("RUNNING") => PrinterState::Printing,
        Some("PAUSE") => PrinterState::Paused,
        Some("FINISH") => PrinterState::Finished,
        Some("FAILED") => PrinterState::Failed,
        _ => PrinterState::Idle,
    }
}

/// Whether the model has a real chamber sensor (A1 and P1 send a placeholder value).
fn has_chamber_sensor(model_id: Option<&str>) -> bool {
    matches!(
        model_id,
        Some("BL-P001" | "BL-P002" | "C13" | "O1D" | "O1S" | "N7")
    )
}

/// The HMS entries of a report: `[{attr, code}]`.
pub fn hms_entries(fields: &Map<String, Value>, catalog_model: Option<&str>) -> Vec<HmsEntry> {
    fields
        .get("hms")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let attr = u32::try_from(e.get("attr")?.as_u64()?).ok()?;
            let code = u32::try_from(e.get("code")?.as_u64()?).ok()?;
            Some(HmsEntry {
                code: hms_code(attr, code),
                severity: hms_severity(code),
                text: hms_text(attr, code, catalog_model),
            })
        })
        .collect()
}

/// Normalises a merged report. `model_id` is the printer's model id (`N1`, `C12`, `BL-P001`);
/// `catalog_model` the HMS catalog's model name where texts differ by model.
pub fn normalize(
    fields: &Map<String, Value>,
    model_id: Option<&str>,
    catalog_model: Option<&str>,
) -> PrinterStatus {
    let state = state_of(fields.get("gcode_state").and_then(Value::as_str));
    let hms = hms_entries(fields, catalog_model);
    let hms_status = if hms
        .iter()
        .any(|h| matches!(h.severity, HmsSeverity::Fatal | HmsSeverity::Serious))
    {
        HmsStatus::Error
    } else if hms
        .iter()
        .any(|h| matches!(h.severity, HmsSeverity::Common | HmsSeverity::Unknown))
    {
        HmsStatus::Warning
    } else {
        HmsStatus::Ok
    };
    let int = |key: &str| number(fields.get(key)).unwrap_or(0.0).max(0.0);
    let print_error = int("print_error") as u32;
    PrinterStatus {
        state,
        progress: int("mc_percent").min(100.0) as u8,
        remaining_time: (int("mc_remaining_time") as u64).saturating_mul(60),
        current_layer: int("layer_num") as u32,
        total_layers: int("total_layer_num") as u32,
        temperatures: Temperatures {
            nozzle: number(fields.get("nozzle_temper")).unwrap_or(0.0),
            nozzle_target: number(fields.get("nozzle_target_temper")).unwrap_or(0.0),
            bed: number(fields.get("bed_temper")).unwrap_or(0.0),
            bed_target: number(fields.get("bed_target_temper")).unwrap_or(0.0),
            chamber: if has_chamber_sensor(model_id) {
                number(fields.get("chamber_temper"))
            } else {
                None
            },
        },
        hms_status,
        hms,
        job_name: text(fields.get("subtask_name")),
        gcode_file: text(fields.get("gcode_file")),
        // LAN prints say `0`: no id.
        task_id: text(fields.get("task_id")).filter(|t| t != "0"),
        print_error: (print_error != 0).then(|| print_error_code(print_error)),
        filaments: loaded_filaments(fields),
        has_ams: ams_units(fields).next().is_some(),
    }
}

fn ams_units(fields: &Map<String, Value>) -> impl Iterator<Item = &Value> {
    fields
        .get("ams")
        .and_then(|a| a.get("ams"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A tray's filament, when it has one (`{id}` alone, or an empty `tray_type`, is an empty slot).
fn filament(tray: &Value, id: u16, external: bool) -> Option<LoadedFilament> {
    let kind = text(tray.get("tray_type"))?;
    let color = text(tray.get("tray_color"))
        .map(|c| c.to_ascii_uppercase())
        .filter(|c| c.len() >= 6 && c.bytes().all(|b| b.is_ascii_hexdigit()));
    let remain = number(tray.get("remain"))
        .filter(|r| (0.0..=100.0).contains(r))
        .map(|r| r as i32);
    // Spools without a tag report zeros (`0000…`, weight `0`, diameter `0.00`).
    let tag = text(tray.get("tray_uuid")).filter(|t| t.bytes().any(|b| b != b'0'));
    let weight_g = number(tray.get("tray_weight"))
        .filter(|w| *w > 0.0 && *w <= 100_000.0)
        .map(|w| w as u32);
    let diameter = number(tray.get("tray_diameter")).filter(|d| *d > 0.0 && *d < 10.0);
    Some(LoadedFilament {
        tray: id,
        kind,
        color,
        remain,
        external,
        sub_brand: text(tray.get("tray_sub_brands")).filter(|_| tag.is_some()),
        tag,
        weight_g,
        diameter,
    })
}

/// What the printer has loaded: AMS trays by global tray id (`ams * 4 + slot`; single-slot
/// units such as the AMS HT, ids 128 and up, by their unit id), then the external spool
/// (`vt_tray`, or `vir_slot` on newer firmware, ids 254 and 255).
pub fn loaded_filaments(fields: &Map<String, Value>) -> Vec<LoadedFilament> {
    let mut loaded = Vec::new();
    for unit in ams_units(fields) {
        let Some(unit_id) = number(unit.get("id")).filter(|u| (0.0..255.0).contains(u)) else {
            continue;
        };
        let unit_id = unit_id as u16;
        for tray in unit
            .get("tray")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(slot) = number(tray.get("id")).filter(|s| (0.0..4.0).contains(s)) else {
                continue;
            };
            let id = if unit_id < 128 {
                unit_id * 4 + slot as u16
            } else {
                unit_id
            };
            loaded.extend(filament(tray, id, false));
        }
    }
    let external = fields
        .get("vir_slot")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| fields.get("vt_tray").cloned().into_iter().collect());
    for tray in &external {
        let id = number(tray.get("id"))
            .filter(|i| (254.0..=255.0).contains(i))
            .map_or(254, |i| i as u16);
        loaded.extend(filament(tray, id, true));
    }
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_running_report_normalises_to_the_api_units() {
        let fields = json!({
            "gcode_state": "RUNNING", "mc_percent": 45, "mc_remaining_time": 60,
            "layer_num": 120, "total_layer_num": 267, "nozzle_temper": 219.5,
            "nozzle_target_temper": 220, "bed_temper": "60.0", "bed_target_temper": 60,
            "chamber_temper": 5, "subtask_name": "Benchy", "gcode_file": "benchy.3mf",
            "print_error": 0, "hms": []
        });
        let status = normalize(fields.as_object().unwrap(), Some("C12"), None);
        assert_eq!(status.state, PrinterState::Printing);
        assert_eq!(status.progress, 45);
        assert_eq!(status.remaining_time, 3600);
        assert_eq!((status.current_layer, status.total_layers), (120, 267));
        assert_eq!(status.temperatures.bed, 60.0, "numeric strings are read");
        assert_eq!(
            status.temperatures.chamber, None,
            "P1S sends a placeholder chamber value"
        );
        assert_eq!(status.hms_status, HmsStatus::Ok);
        assert_eq!(status.job_name.as_deref(), Some("Benchy"));
        assert_eq!(status.print_error, None);
    }

    #[test]
    fn every_gcode_state_maps_and_unknown_ones_are_idle() {
        for (raw, state) in [
            ("IDLE", PrinterState::Idle),
            ("PREPARE", PrinterState::Preparing),
            ("SLICING", PrinterState::Preparing),
            ("RUNNING", PrinterState::Printing),
            ("PAUSE", PrinterState::Paused),
            ("FINISH", PrinterState::Finished),
            ("FAILED", PrinterState::Failed),
            ("weird", PrinterState::Idle),
        ] {
            assert_eq!(state_of(Some(raw)), state, "{raw}");
        }
    }

    #[test]
    fn hms_severity_sets_the_status_and_a_serious_entry_is_an_error() {
        let warn = json!({"hms": [{"attr": 0x0C00_0300u32, "code": 0x0003_0007u32}]});
        let status = normalize(warn.as_object().unwrap(), None, None);
        assert_eq!(status.hms_status, HmsStatus::Warning);
        assert_eq!(status.hms[0].code, "HMS_0C00_0300_0003_0007");
        assert!(status.hms[0].text.is_some());
        let error =
            json!({"hms": [{"attr": 0x0300_0100u32, "code": 0x0001_0001u32}, {"attr": "x"}]});
        let status = normalize(error.as_object().unwrap(), None, None);
        assert_eq!(status.hms_status, HmsStatus::Error);
        assert_eq!(status.hms.len(), 1, "malformed entries are skipped");
    }

    #[test]
    fn a_cancelled_print_shows_its_error_code() {
        let fields = json!({"gcode_state": "FAILED", "print_error": 50348044});
        let status = normalize(fields.as_object().unwrap(), None, None);
        assert_eq!(status.print_error.as_deref(), Some("0300_400C"));
    }
}
