//! Which printer can take which job, and why a job waits. Pure functions over the farm view:
//! the dispatcher asks them before it claims, the queue list asks them for `waiting_reason`.
//!
//! A printer can take a job when it is the job's target (the printer asked for, or any printer
//! of the model and site asked for), is of the model the plate was sliced for, is connected,
//! idle, not already given a job, has its plate cleared, and has the plate's filament types
//! loaded (AMS trays, or the external spool). The AMS mapping is built from the loaded trays by
//! type, preferring the slicer's colour.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use printyard_bambu::models;
use printyard_contracts::printer::LoadedFilament;
use serde::{Deserialize, Serialize};

use crate::farm::{PrinterView, Stock};

/// A filament a plate needs (`id` is 1-based and indexes the AMS mapping).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Need {
    pub id: u32,
    #[serde(rename = "type")]
    pub kind: String,
    /// `#RRGGBB` as the slicer wrote it.
    pub color: String,
    /// Grams the plate takes of it (0: not known, as for jobs queued before it was kept).
    #[serde(default)]
    pub grams: f64,
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

/// Why a printer's filaments cannot feed a job, in the order of how close it came.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shortfall {
    /// No AMS where one is asked for, or types not loaded ("PETG not loaded").
    Missing(String),
    /// The type is loaded, but no tray of it holds what the plate needs plus the margin; the
    /// fullest of them is told of (grams rounded up).
    Short {
        kind: String,
        tray: u16,
        spool: Option<i64>,
        have_g: i64,
        need_g: i64,
        margin_g: i64,
    },
}

impl Shortfall {
    /// For a person, naming the printer.
    pub fn describe(&self, printer: &str) -> String {
        match self {
            Shortfall::Missing(what) => format!("{what} on {printer}"),
            Shortfall::Short {
                kind,
                tray,
                spool,
                have_g,
                need_g,
                margin_g,
            } => {
                let spool = spool.map(|id| format!(" (spool {id})")).unwrap_or_default();
                let missing = need_g + margin_g - have_g;
                format!(
                    "not enough {kind} on {printer}: {}{spool} holds {have_g} g, the plate \
                     needs {need_g} g + {margin_g} g margin ({missing} g missing)",
                    tray_name(*tray)
                )
            }
        }
    }
}

/// A global tray id as the printer's screen shows it: `A1`–`D4` for AMS trays, `HT1`… for
/// single-slot units, the external spool.
pub fn tray_name(tray: u16) -> String {
    match tray {
        0..=15 => format!(
            "tray {}{}",
            char::from(b'A' + (tray / 4) as u8),
            tray % 4 + 1
        ),
        128..=253 => format!("tray HT{}", tray - 127),
        _ => "the external spool".into(),
    }
}

/// Where each of `needs` comes from on a printer with `loaded` filaments, or what is missing
/// ("PETG not loaded") or short. `stock` tells what a tray holds when it is known; a tray of
/// unknown weight is taken to hold enough.
pub fn map_filaments(
    needs: &[Need],
    loaded: &[LoadedFilament],
    has_ams: bool,
    use_ams: Option<bool>,
    stock: impl Fn(u16) -> Option<Stock>,
    margin_g: f64,
) -> Result<Mapping, Shortfall> {
    let ams_loaded = loaded.iter().any(|f| !f.external);
    let use_ams = use_ams.unwrap_or(has_ams && ams_loaded);
    if use_ams && !has_ams {
        return Err(Shortfall::Missing("the printer has no AMS".into()));
    }
    let sources: Vec<&LoadedFilament> = loaded.iter().filter(|f| f.external != use_ams).collect();
    let mut mapping = vec![-1; needs.iter().map(|n| n.id as usize).max().unwrap_or(0)];
    let mut used: HashSet<u16> = HashSet::new();
    // Grams already planned from each tray by this job's other filaments.
    let mut planned: HashMap<u16, f64> = HashMap::new();
    let mut missing: Vec<String> = Vec::new();
    let mut short: Option<Shortfall> = None;
    for need in needs {
        let fits: Vec<&&LoadedFilament> = sources
            .iter()
            .filter(|f| f.kind.eq_ignore_ascii_case(need.kind.trim()))
            .collect();
        let enough = |f: &&&LoadedFilament| {
            need.grams <= 0.0
                || stock(f.tray).is_none_or(|s| {
                    s.grams - planned.get(&f.tray).copied().unwrap_or(0.0) >= need.grams + margin_g
                })
        };
        let same_color =
            |f: &&&LoadedFilament| f.color.as_deref().is_some_and(|c| same_rgb(c, &need.color));
        let pick = fits
            .iter()
            .find(|f| same_color(f) && !used.contains(&f.tray) && enough(f))
            .or_else(|| fits.iter().find(|f| !used.contains(&f.tray) && enough(f)))
            .or_else(|| fits.iter().find(|f| enough(f)));
        match pick {
            Some(f) => {
                used.insert(f.tray);
                *planned.entry(f.tray).or_default() += need.grams.max(0.0);
                if let Some(slot) = mapping.get_mut(need.id.saturating_sub(1) as usize) {
                    *slot = i32::from(f.tray);
                }
            }
            None if !use_ams && sources.is_empty() => {
                // No type set on the external spool: the printer does not know what is loaded,
                // so neither can we. Printed as sliced.
            }
            None if fits.is_empty() => {
                if !missing.iter().any(|m| m.eq_ignore_ascii_case(&need.kind)) {
                    missing.push(need.kind.clone());
                }
            }
            None => {
                let fullest = fits
                    .iter()
                    .filter_map(|f| stock(f.tray).map(|s| (f, s)))
                    .max_by(|a, b| a.1.grams.total_cmp(&b.1.grams));
                if let (None, Some((f, s))) = (&short, fullest) {
                    short = Some(Shortfall::Short {
                        kind: f.kind.clone(),
                        tray: f.tray,
                        spool: s.spool,
                        have_g: s.grams.max(0.0).floor() as i64,
                        need_g: need.grams.ceil() as i64,
                        margin_g: margin_g.max(0.0).ceil() as i64,
                    });
                }
            }
        }
    }
    if !missing.is_empty() {
        return Err(Shortfall::Missing(format!(
            "{} not loaded",
            missing.join(", ")
        )));
    }
    if let Some(short) = short {
        return Err(short);
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
    Maintenance,
    Offline,
    Busy,
    PlateNotCleared,
    Filaments(Shortfall),
    Ready,
}

/// What the dispatcher knows beyond the farm view: printers whose plate holds a finished print,
/// and printers that already have a job dispatching or printing.
pub struct Occupancy<'a> {
    pub plates_to_clear: &'a HashSet<i64>,
    pub taken: &'a HashSet<i64>,
    /// Grams a tray must hold beyond the plate's need.
    pub filament_margin_g: f64,
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

/// Whether the job is for this printer at all: it is the job's target and of the model the
/// plate was sliced for (whatever else it lacks now).
pub fn is_for(wants: &Wants, printer: &PrinterView) -> bool {
    stage(
        wants,
        printer,
        &Occupancy {
            plates_to_clear: &HashSet::new(),
            taken: &HashSet::new(),
            filament_margin_g: 0.0,
        },
    ) > Stage::WrongModel
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
    if printer.record.maintenance {
        return Stage::Maintenance;
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
    match feed(wants, printer, occupancy) {
        Ok(_) => Stage::Ready,
        Err(reason) => Stage::Filaments(reason),
    }
}

fn feed(wants: &Wants, printer: &PrinterView, occupancy: &Occupancy) -> Result<Mapping, Shortfall> {
    map_filaments(
        wants.filaments,
        printer.filaments(),
        printer.has_ams(),
        wants.use_ams,
        |tray| printer.stock(tray),
        occupancy.filament_margin_g,
    )
}

/// Whether `printer` can take the job now, and how its filaments are fed.
pub fn fits(wants: &Wants, printer: &PrinterView, occupancy: &Occupancy) -> Option<Mapping> {
    if stage(wants, printer, occupancy) != Stage::Ready {
        return None;
    }
    feed(wants, printer, occupancy).ok()
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
            Stage::Maintenance => format!("{name} is in maintenance"),
            Stage::Offline => format!("{name} is offline"),
            Stage::Busy => format!("{name} is busy ({})", state_word(printer)),
            Stage::PlateNotCleared => format!("plate not cleared on {name}"),
            Stage::Filaments(reason) => reason.describe(name),
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
        Stage::Maintenance => format!("{} in maintenance", names(&best)),
        Stage::Offline => format!("no {kind} online"),
        Stage::Busy => format!("no idle {kind}"),
        Stage::PlateNotCleared => format!("plate not cleared on {}", names(&best)),
        Stage::Filaments(Shortfall::Missing(what)) => what,
        Stage::Filaments(ref short) => match staged.iter().find(|(s, _)| *s == best) {
            Some((_, printer)) => short.describe(&printer.record.name),
            None => short.describe("a printer"),
        },
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
            ..Default::default()
        }
    }

    fn unknown(_: u16) -> Option<Stock> {
        None
    }

    fn need(id: u32, kind: &str, color: &str) -> Need {
        Need {
            id,
            kind: kind.into(),
            color: color.into(),
            grams: 0.0,
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
                maintenance: false,
            },
            status: Some(StatusRecord {
                printer_id: id,
                serial: serial.into(),
                connected: true,
                last_seen: None,
                connection_error: None,
                model: None,
                tls_pin: None,
                firmware: None,
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
            spools: Default::default(),
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
        let mapping = map_filaments(&needs, &loaded, true, None, unknown, 20.0).unwrap();
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
            map_filaments(&two, &loaded, true, None, unknown, 20.0)
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
            map_filaments(&needs, &loaded, true, None, unknown, 20.0).unwrap_err(),
            Shortfall::Missing("PETG not loaded".into())
        );
        let spool = map_filaments(&needs, &loaded, true, Some(false), unknown, 20.0).unwrap();
        assert_eq!(
            spool,
            Mapping {
                use_ams: false,
                ams_mapping: vec![]
            }
        );
        assert_eq!(
            map_filaments(&needs, &loaded[1..], false, Some(true), unknown, 20.0).unwrap_err(),
            Shortfall::Missing("the printer has no AMS".into())
        );
        // An external spool of unknown type cannot be checked: it is taken as sliced.
        assert!(map_filaments(&needs, &[], false, None, unknown, 20.0).is_ok());
    }

    #[test]
    fn reasons_name_what_the_candidate_printers_lack() {
        let none = HashSet::new();
        let occupancy = Occupancy {
            plates_to_clear: &none,
            taken: &none,
            filament_margin_g: 20.0,
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
            filament_margin_g: 20.0,
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

        // A printer in maintenance takes nothing, and the reason says so.
        let mut serviced = p1s.clone();
        serviced.record.maintenance = true;
        assert!(fits(&pla_p1s, &serviced, &occupancy).is_none());
        let reason = waiting_reason(
            &pla_p1s,
            None,
            None,
            None,
            now,
            std::slice::from_ref(&serviced),
            &occupancy,
        );
        assert_eq!(reason, "P1 in maintenance");
        let for_it = Wants {
            printer_id: Some(1),
            ..pla_p1s.clone()
        };
        let reason = waiting_reason(
            &for_it,
            None,
            None,
            None,
            now,
            std::slice::from_ref(&serviced),
            &occupancy,
        );
        assert_eq!(reason, "P1 is in maintenance");

        let later = now + chrono::Duration::hours(1);
        let reason = waiting_reason(&pla_p1s, Some(later), None, None, now, &[p1s], &occupancy);
        assert!(reason.starts_with("scheduled for "), "{reason}");
    }

    #[test]
    fn a_tray_short_of_the_plate_and_margin_is_passed_over_and_named() {
        let loaded = [tray(0, "PLA", "000000FF"), tray(1, "PLA", "FFFFFFFF")];
        let mut needs = [need(1, "PLA", "#000000")];
        needs[0].grams = 50.0;
        let stock = |grams: [f64; 2]| {
            move |tray: u16| {
                Some(Stock {
                    grams: grams[usize::from(tray)],
                    spool: Some(10 + i64::from(tray)),
                })
            }
        };
        // The black tray has 60 g (< 50 + 20): the white one with enough is taken instead.
        let mapping = map_filaments(&needs, &loaded, true, None, stock([60.0, 500.0]), 20.0);
        assert_eq!(mapping.unwrap().ams_mapping, vec![1]);
        // Exactly the need and margin is enough.
        let mapping = map_filaments(&needs, &loaded, true, None, stock([70.0, 0.0]), 20.0);
        assert_eq!(mapping.unwrap().ams_mapping, vec![0]);
        // Neither: the fullest is named with what is missing.
        let short = map_filaments(&needs, &loaded, true, None, stock([35.0, 12.0]), 20.0);
        assert_eq!(
            short.unwrap_err(),
            Shortfall::Short {
                kind: "PLA".into(),
                tray: 0,
                spool: Some(10),
                have_g: 35,
                need_g: 50,
                margin_g: 20
            }
        );
        // Two filaments from one tray need their sum.
        let mut two = [need(1, "PLA", "#000000"), need(2, "PLA", "#000000")];
        two[0].grams = 40.0;
        two[1].grams = 40.0;
        let one_tray = [tray(0, "PLA", "000000FF")];
        let stocked = |grams: f64| move |_: u16| Some(Stock { grams, spool: None });
        assert!(map_filaments(&two, &one_tray, true, None, stocked(85.0), 10.0).is_err());
        assert!(map_filaments(&two, &one_tray, true, None, stocked(90.0), 10.0).is_ok());
        // A tray of unknown weight, or a plate of unknown grams, is not held back.
        assert!(map_filaments(&needs, &loaded, true, None, unknown, 20.0).is_ok());
        needs[0].grams = 0.0;
        assert!(map_filaments(&needs, &loaded, true, None, stock([1.0, 1.0]), 20.0).is_ok());
    }

    #[test]
    fn a_short_tray_is_told_with_the_printer_tray_spool_and_grams() {
        let short = Shortfall::Short {
            kind: "PETG".into(),
            tray: 5,
            spool: Some(17),
            have_g: 35,
            need_g: 50,
            margin_g: 20,
        };
        assert_eq!(
            short.describe("Desk X1C"),
            "not enough PETG on Desk X1C: tray B2 (spool 17) holds 35 g, the plate needs 50 g \
             + 20 g margin (35 g missing)"
        );
        assert_eq!(tray_name(0), "tray A1");
        assert_eq!(tray_name(15), "tray D4");
        assert_eq!(tray_name(128), "tray HT1");
        assert_eq!(tray_name(254), "the external spool");
    }
}
