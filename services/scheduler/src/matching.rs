//! Which printer can take which job, and why a job waits. Pure functions over the farm view:
//! the dispatcher asks them before it claims, the queue list asks them for `waiting_reason`.
//!
//! A printer can take a job when it is the job's target (the printer asked for, or any printer
//! of the model and site asked for), is of the model the plate was sliced for, is connected,
//! idle, not already given a job, has its plate cleared, and has the plate's filament types
//! loaded (AMS trays, or the external spool). The AMS mapping is built from the loaded trays by
//! type, preferring the slicer's colour.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use printyard_bambu::models;
use printyard_contracts::printer::LoadedFilament;
use serde::{Deserialize, Serialize};

use crate::farm::PrinterView;

/// A filament a plate needs (`id` is 1-based and indexes the AMS mapping).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Need {
    pub id: u32,
    #[serde(rename = "type")]
    pub kind: String,
    /// `#RRGGBB` as the slicer wrote it.
    pub color: String,
}

/// What a job asks of a printer.
#[derive(Debug, Clone)]
pub struct Wants<'a> {
    pub printer_id: Option<i64>,
    /// Marketing name.
    pub model: Option<&'a str>,
    pub site: Option<&'a str>,
    /// The plate's `printer_model_id`.
    pub model_id: Option<&'a str>,
    pub filaments: &'a [Need],
    pub use_ams: Option<bool>,
}

/// How a job's filaments are fed on one printer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub use_ams: bool,
    /// One entry per filament id (1-based, so index id - 1): the global tray id, or -1.
    pub ams_mapping: Vec<i32>,
}

/// Where each of `needs` comes from on a printer with `loaded` filaments, or what is missing
/// ("PETG not loaded").
pub fn map_filaments(
    needs: &[Need],
    loaded: &[LoadedFilament],
    has_ams: bool,
    use_ams: Option<bool>,
) -> Result<Mapping, String> {
    let ams_loaded = loaded.iter().any(|f| !f.external);
    let use_ams = use_ams.unwrap_or(has_ams && ams_loaded);
    if use_ams && !has_ams {
        return Err("the printer has no AMS".into());
    }
    let sources: Vec<&LoadedFilament> = loaded.iter().filter(|f| f.external != use_ams).collect();
    let mut mapping = vec![-1; needs.iter().map(|n| n.id as usize).max().unwrap_or(0)];
    let mut used: HashSet<u16> = HashSet::new();
    let mut missing: Vec<String> = Vec::new();
    for need in needs {
        let fits: Vec<&&LoadedFilament> = sources
            .iter()
            .filter(|f| f.kind.eq_ignore_ascii_case(need.kind.trim()))
            .collect();
        let same_color =
            |f: &&&LoadedFilament| f.color.as_deref().is_some_and(|c| same_rgb(c, &need.color));
        let pick = fits
            .iter()
            .find(|f| same_color(f) && !used.contains(&f.tray))
            .or_else(|| fits.iter().find(|f| !used.contains(&f.tray)))
            .or_else(|| fits.first());
        match pick {
            Some(f) => {
                used.insert(f.tray);
                if let Some(slot) = mapping.get_mut(need.id.saturating_sub(1) as usize) {
                    *slot = i32::from(f.tray);
                }
            }
            None if !use_ams && sources.is_empty() => {
                // No type set on the external spool: the printer does not know what is loaded,
                // so neither can we. Printed as sliced.
            }
            None => {
                if !missing.iter().any(|m| m.eq_ignore_ascii_case(&need.kind)) {
                    missing.push(need.kind.clone());
                }
            }
        }
    }
    if !missing.is_empty() {
        return Err(format!("{} not loaded", missing.join(", ")));
    }
    if !use_ams {
        mapping.clear();
    }
    Ok(Mapping {
        use_ams,
        ams_mapping: mapping,
    })
}

/// `RRGGBB[AA]` (printer) against `#RRGGBB[AA]` (slicer), ignoring alpha and case.
fn same_rgb(tray: &str, slicer: &str) -> bool {
    let a = tray.trim_start_matches('#');
    let b = slicer.trim_start_matches('#');
    a.len() >= 6 && b.len() >= 6 && a[..6].eq_ignore_ascii_case(&b[..6])
}

/// How far a printer got through a job's checks (the order the reasons are told in).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    NotTarget,
    WrongModel,
    Offline,
    Busy,
    PlateNotCleared,
    Filaments(String),
    Ready,
}

/// What the dispatcher knows beyond the farm view: printers whose plate holds a finished print,
/// and printers that already have a job dispatching or printing.
pub struct Occupancy<'a> {
    pub plates_to_clear: &'a HashSet<i64>,
    pub taken: &'a HashSet<i64>,
}

fn is_target(wants: &Wants, printer: &PrinterView) -> bool {
    match wants.printer_id {
        Some(id) => printer.id() == id,
        None => {
            wants.site.is_none_or(|s| printer.record.site.as_str() == s)
                && wants
                    .model
                    .is_none_or(|m| printer.model().is_some_and(|pm| pm.eq_ignore_ascii_case(m)))
        }
    }
}

fn stage(wants: &Wants, printer: &PrinterView, occupancy: &Occupancy) -> Stage {
    if !is_target(wants, printer) {
        return Stage::NotTarget;
    }
    if let (Some(wanted), Some(has)) = (wants.model_id, printer.model_id())
        && !wanted.eq_ignore_ascii_case(has)
    {
        return Stage::WrongModel;
    }
    if !printer.connected() {
        return Stage::Offline;
    }
    if !printer.free() || occupancy.taken.contains(&printer.id()) {
        return Stage::Busy;
    }
    if occupancy.plates_to_clear.contains(&printer.id()) && !printer.record.auto_clear_plate {
        return Stage::PlateNotCleared;
    }
    match map_filaments(
        wants.filaments,
        printer.filaments(),
        printer.has_ams(),
        wants.use_ams,
    ) {
        Ok(_) => Stage::Ready,
        Err(reason) => Stage::Filaments(reason),
    }
}

/// Whether `printer` can take the job now, and how its filaments are fed.
pub fn fits(wants: &Wants, printer: &PrinterView, occupancy: &Occupancy) -> Option<Mapping> {
    if stage(wants, printer, occupancy) != Stage::Ready {
        return None;
    }
    map_filaments(
        wants.filaments,
        printer.filaments(),
        printer.has_ams(),
        wants.use_ams,
    )
    .ok()
}

/// Why a pending job has not started, for a person: its time, its retry wait, or what the
/// printers it could go to lack ("no idle P1S", "plate not cleared on Desk P1S", "PETG not
/// loaded").
#[allow(clippy::too_many_arguments)]
pub fn waiting_reason(
    wants: &Wants,
    scheduled_time: Option<DateTime<Utc>>,
    not_before: Option<DateTime<Utc>>,
    last_error: Option<&str>,
    now: DateTime<Utc>,
    printers: &[PrinterView],
    occupancy: &Occupancy,
) -> String {
    if let Some(at) = scheduled_time.filter(|t| *t > now) {
        return format!("scheduled for {}", at.to_rfc3339());
    }
    if let Some(at) = not_before.filter(|t| *t > now) {
        return match last_error {
            Some(error) => format!("retrying after {}: {error}", at.to_rfc3339()),
            None => format!("retrying after {}", at.to_rfc3339()),
        };
    }
    let sliced_for = wants
        .model_id
        .map(|id| models::name_of_model_id(id).unwrap_or(id));
    let kind = wants.model.or(sliced_for).unwrap_or("printer");
    if let Some(id) = wants.printer_id {
        let Some(printer) = printers.iter().find(|p| p.id() == id) else {
            return format!("printer {id} does not exist");
        };
        let name = &printer.record.name;
        return match stage(wants, printer, occupancy) {
            Stage::NotTarget => format!("printer {id} does not exist"),
            Stage::WrongModel => format!(
                "{name} is a {}; the file was sliced for the {}",
                printer.model().unwrap_or("printer of another model"),
                sliced_for.unwrap_or("another model")
            ),
            Stage::Offline => format!("{name} is offline"),
            Stage::Busy => format!("{name} is busy ({})", state_word(printer)),
            Stage::PlateNotCleared => format!("plate not cleared on {name}"),
            Stage::Filaments(reason) => format!("{reason} on {name}"),
            Stage::Ready => "next in line".into(),
        };
    }
    let staged: Vec<(Stage, &PrinterView)> = printers
        .iter()
        .map(|p| (stage(wants, p, occupancy), p))
        .filter(|(s, _)| *s != Stage::NotTarget)
        .collect();
    let Some(best) = staged.iter().map(|(s, _)| s.clone()).max() else {
        return match wants.site {
            Some(site) => format!("no {kind} in site {site}"),
            None => format!("no {kind}"),
        };
    };
    let names = |wanted: &Stage| {
        let names: Vec<&str> = staged
            .iter()
            .filter(|(s, _)| s == wanted)
            .map(|(_, p)| p.record.name.as_str())
            .take(3)
            .collect();
        names.join(", ")
    };
    match best {
        Stage::NotTarget | Stage::WrongModel => match sliced_for {
            Some(model) => format!("no {model} printer"),
            None => format!("no {kind}"),
        },
        Stage::Offline => format!("no {kind} online"),
        Stage::Busy => format!("no idle {kind}"),
        Stage::PlateNotCleared => format!("plate not cleared on {}", names(&best)),
        Stage::Filaments(reason) => reason,
        Stage::Ready => "next in line".into(),
    }
}

fn state_word(printer: &PrinterView) -> String {
    format!("{:?}", printer.state()).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use printyard_contracts::farm::{PrinterRecord, Site, StatusRecord};
    use printyard_contracts::printer::{HmsStatus, PrinterState, PrinterStatus};

    fn tray(tray: u16, kind: &str, color: &str) -> LoadedFilament {
        LoadedFilament {
            tray,
            kind: kind.into(),
            color: Some(color.into()),
            remain: None,
            external: tray >= 254,
        }
    }

    fn need(id: u32, kind: &str, color: &str) -> Need {
        Need {
            id,
            kind: kind.into(),
            color: color.into(),
        }
    }

    fn printer(
        id: i64,
        serial: &str,
        state: PrinterState,
        loaded: Vec<LoadedFilament>,
    ) -> PrinterView {
        PrinterView {
            record: PrinterRecord {
                id,
                name: format!("P{id}"),
                site: Site::default(),
                host: "10.0.0.1".into(),
                serial: serial.into(),
                access_code: "12345678".into(),
                model: None,
                tls_pin: None,
                tls_insecure: false,
                auto_clear_plate: false,
            },
            status: Some(StatusRecord {
                printer_id: id,
                serial: serial.into(),
                connected: true,
                last_seen: None,
                connection_error: None,
                model: None,
                tls_pin: None,
                status: Some(PrinterStatus {
                    state,
                    progress: 0,
                    remaining_time: 0,
                    current_layer: 0,
                    total_layers: 0,
                    temperatures: Default::default(),
                    hms_status: HmsStatus::Ok,
                    hms: vec![],
                    job_name: None,
                    gcode_file: None,
                    task_id: None,
                    print_error: None,
                    has_ams: loaded.iter().any(|f| !f.external),
                    filaments: loaded,
                }),
            }),
        }
    }

    #[test]
    fn trays_are_mapped_by_type_preferring_the_colour() {
        let loaded = [
            tray(0, "PLA", "FF0000FF"),
            tray(1, "PLA", "000000FF"),
            tray(2, "PETG", "FFFFFFFF"),
            tray(254, "PLA", "FFFFFFFF"),
        ];
        let needs = [need(1, "PLA", "#000000"), need(3, "PETG", "#123456")];
        let mapping = map_filaments(&needs, &loaded, true, None).unwrap();
        assert_eq!(
            mapping,
            Mapping {
                use_ams: true,
                ams_mapping: vec![1, -1, 2]
            }
        );
        // Two PLA filaments take two trays when there are two.
        let two = [need(1, "PLA", "#000000"), need(2, "PLA", "#000000")];
        assert_eq!(
            map_filaments(&two, &loaded, true, None)
                .unwrap()
                .ams_mapping,
            vec![1, 0]
        );
    }

    #[test]
    fn a_missing_type_is_named_and_the_external_spool_is_used_without_an_ams() {
        let loaded = [tray(0, "PLA", "FF0000FF"), tray(254, "PETG", "FFFFFFFF")];
        let needs = [need(1, "PETG", "#FFFFFF")];
        assert_eq!(
            map_filaments(&needs, &loaded, true, None).unwrap_err(),
            "PETG not loaded"
        );
        let spool = map_filaments(&needs, &loaded, true, Some(false)).unwrap();
        assert_eq!(
            spool,
            Mapping {
                use_ams: false,
                ams_mapping: vec![]
            }
        );
        assert_eq!(
            map_filaments(&needs, &loaded[1..], false, Some(true)).unwrap_err(),
            "the printer has no AMS"
        );
        // An external spool of unknown type cannot be checked: it is taken as sliced.
        assert!(map_filaments(&needs, &[], false, None).is_ok());
    }

    #[test]
    fn reasons_name_what_the_candidate_printers_lack() {
        let none = HashSet::new();
        let occupancy = Occupancy {
            plates_to_clear: &none,
            taken: &none,
        };
        let now = Utc::now();
        let pla = [need(1, "PLA", "#FFFFFF")];
        let x1c = Wants {
            printer_id: None,
            model: None,
            site: None,
            model_id: Some("BL-P001"),
            filaments: &pla,
            use_ams: None,
        };
        let p1s = printer(
            1,
            "01P00A000000001",
            PrinterState::Idle,
            vec![tray(0, "PLA", "FFFFFFFF")],
        );
        let reason = waiting_reason(
            &x1c,
            None,
            None,
            None,
            now,
            std::slice::from_ref(&p1s),
            &occupancy,
        );
        assert_eq!(reason, "no X1 Carbon printer");

        let busy_x1 = printer(
            2,
            "00M00A000000002",
            PrinterState::Printing,
            vec![tray(0, "PLA", "FFFFFFFF")],
        );
        let reason = waiting_reason(
            &x1c,
            None,
            None,
            None,
            now,
            &[p1s.clone(), busy_x1],
            &occupancy,
        );
        assert_eq!(reason, "no idle X1 Carbon");

        let petg = [need(1, "PETG", "#FFFFFF")];
        let for_p1s = Wants {
            model_id: Some("C12"),
            filaments: &petg,
            ..x1c.clone()
        };
        let reason = waiting_reason(
            &for_p1s,
            None,
            None,
            None,
            now,
            std::slice::from_ref(&p1s),
            &occupancy,
        );
        assert_eq!(reason, "PETG not loaded");

        let cleared: HashSet<i64> = [1].into();
        let dirty = Occupancy {
            plates_to_clear: &cleared,
            taken: &none,
        };
        let pla_p1s = Wants {
            model_id: Some("C12"),
            ..x1c.clone()
        };
        let reason = waiting_reason(
            &pla_p1s,
            None,
            None,
            None,
            now,
            std::slice::from_ref(&p1s),
            &dirty,
        );
        assert_eq!(reason, "plate not cleared on P1");
        assert!(fits(&pla_p1s, &p1s, &occupancy).is_some());
        assert!(fits(&pla_p1s, &p1s, &dirty).is_none());

        let later = now + chrono::Duration::hours(1);
        let reason = waiting_reason(&pla_p1s, Some(later), None, None, now, &[p1s], &occupancy);
        assert!(reason.starts_with("scheduled for "), "{reason}");
    }
}
