//! A printer's normalised live status, as the gateway puts it in the `printer_status` KV bucket
//! and the API shows it. Units are the API's: seconds, degrees Celsius, percent.

use serde::{Deserialize, Serialize};

/// The normalised printer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PrinterState {
    Idle,
    Preparing,
    Printing,
    Paused,
    Finished,
    Failed,
    Offline,
}

/// Health of the printer by its HMS entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum HmsStatus {
    Ok,
    Warning,
    Error,
}

/// HMS severity, from the high half of the entry's `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum HmsSeverity {
    Fatal,
    Serious,
    Common,
    Info,
    Unknown,
}

/// One HMS entry: `HMS_0300_0100_0001_0001`, its severity, and the catalog's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HmsEntry {
    pub code: String,
    pub severity: HmsSeverity,
    pub text: Option<String>,
}

/// Temperatures in °C; targets are 0 when the heater is off.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Temperatures {
    pub nozzle: f64,
    pub nozzle_target: f64,
    pub bed: f64,
    pub bed_target: f64,
    /// `None` where the printer reports no chamber sensor (A1 and P1 send a placeholder).
    pub chamber: Option<f64>,
}

/// The normalised status of one printer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrinterStatus {
    pub state: PrinterState,
    /// Percent, 0 to 100.
    pub progress: u8,
    /// Seconds (printers send minutes).
    pub remaining_time: u64,
    pub current_layer: u32,
    pub total_layers: u32,
    pub temperatures: Temperatures,
    pub hms_status: HmsStatus,
    pub hms: Vec<HmsEntry>,
    /// The job's name (`subtask_name`) and file (`gcode_file`), while there is one.
    pub job_name: Option<String>,
    pub gcode_file: Option<String>,
    /// The printer's id of the print (`task_id`), when it has one: prints sent through Bambu's
    /// cloud; LAN prints have none (`0`).
    #[serde(default)]
    pub task_id: Option<String>,
    /// `print_error` as `XXXX_XXXX`, when not zero.
    pub print_error: Option<String>,
    /// The filament loaded in each AMS tray and on the external spool holder.
    #[serde(default)]
    pub filaments: Vec<LoadedFilament>,
    /// Whether an AMS is attached.
    #[serde(default)]
    pub has_ams: bool,
}

/// A filament the printer has loaded, where a print can take it from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoadedFilament {
    /// The global tray id `project_file`'s `ams_mapping` uses: `ams * 4 + slot` for AMS units
    /// 0–3, the unit id for single-slot units (AMS HT, 128 and up), 254 or 255 for the
    /// external spool.
    pub tray: u16,
    /// `PLA`, `PETG`, `ABS`, … as the printer reports it.
    #[serde(rename = "type")]
    pub kind: String,
    /// `RRGGBBAA`, upper case.
    pub color: Option<String>,
    /// Percent left, when the AMS knows.
    pub remain: Option<i32>,
    /// On the external spool holder, not in an AMS.
    pub external: bool,
    /// The RFID tag of a Bambu spool (`tray_uuid`; absent for spools without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The product line a Bambu spool's tag names (`tray_sub_brands`: "PLA Matte").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_brand: Option<String>,
    /// Grams on a full spool, as its tag says (`tray_weight`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_g: Option<u32>,
    /// Millimetres, as its tag says (`tray_diameter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diameter: Option<f64>,
}

impl LoadedFilament {
    /// Grams left by the printer's own measure: a tagged spool's `remain` percent of its
    /// weight (`None` for spools the AMS cannot measure).
    pub fn measured_g(&self) -> Option<f64> {
        let weight = f64::from(self.weight_g?);
        self.tag.as_ref()?;
        Some(weight * f64::from(self.remain?) / 100.0)
    }
}
