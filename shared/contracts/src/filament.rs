//! What `api` asks the `filament` service (the spool inventory), what it keeps in the
//! `tray_spools` bucket for the scheduler, and the `spool_low` event.
//!
//! A spool is known by its id, and a Bambu spool also by its RFID tag (`tray_uuid`): the same
//! tag seen in another tray or on another printer is the same spool.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ServiceName;
use crate::archive::present;
use crate::rpc::{Empty, Endpoint};

/// A spool of filament, on a shelf or loaded in a printer's tray.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Spool {
    pub id: i64,
    /// `PLA`, `PETG`, `ABS`, … (upper case, as printers report it).
    pub material: String,
    /// `RRGGBBAA`, upper case.
    pub color: Option<String>,
    pub brand: Option<String>,
    /// The product line (`PLA Matte`), as a Bambu spool's tag says.
    pub sub_brand: Option<String>,
    /// Millimetres.
    pub diameter: f64,
    /// Grams of filament on a full spool.
    pub nominal_g: f64,
    /// Grams left.
    pub remaining_g: f64,
    /// What the spool cost (in the cost settings' currency).
    pub price: Option<f64>,
    /// `price / nominal_g`, when the price is known.
    pub price_per_g: Option<f64>,
    /// The RFID tag (`tray_uuid`) of a Bambu spool.
    pub tag: Option<String>,
    /// Where it is loaded: the printer and its global tray id (`ams * 4 + slot`, 128 and up
    /// for single-slot units, 254/255 for the external holder).
    pub printer_id: Option<i64>,
    pub tray: Option<i32>,
    /// Where it is kept when not loaded ("shelf B2").
    pub location: Option<String>,
    /// `remaining_g` follows the printer's own measure (a Bambu spool in an AMS that reports
    /// `remain`), rather than the prints' planned grams.
    pub measured: bool,
    /// Under the low-stock threshold of its material.
    pub low: bool,
    pub archived: bool,
    pub first_used: Option<DateTime<Utc>>,
    pub last_used: Option<DateTime<Utc>>,
    pub notes: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Its id in Spoolman, for a spool Spoolman keeps (`filament.spoolman.url`).
    pub spoolman_id: Option<i64>,
}

/// `POST /spools`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewSpool {
    #[cfg_attr(feature = "openapi", schema(max_length = 32))]
    pub material: String,
    /// `RRGGBB` or `RRGGBBAA`, with or without `#`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^#?[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$")
    )]
    pub color: Option<String>,
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub brand: Option<String>,
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub sub_brand: Option<String>,
    /// Default 1.75.
    pub diameter: Option<f64>,
    /// Default 1000.
    pub nominal_g: Option<f64>,
    /// Default: `nominal_g` (a new spool).
    pub remaining_g: Option<f64>,
    pub price: Option<f64>,
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub tag: Option<String>,
    #[cfg_attr(feature = "openapi", schema(max_length = 128))]
    pub location: Option<String>,
    /// Load it at once: the printer and tray (both or neither).
    pub printer_id: Option<i64>,
    pub tray: Option<i32>,
    #[cfg_attr(feature = "openapi", schema(max_length = 2000))]
    pub notes: Option<String>,
}

/// `PATCH /spools/{id}`: absent fields stay, `null` clears. `printer_id` and `tray` load the
/// spool into that tray (unloading whatever spool was there); both `null` unload it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SpoolPatch {
    pub material: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub color: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub brand: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub sub_brand: Option<Option<String>>,
    pub diameter: Option<f64>,
    pub nominal_g: Option<f64>,
    pub remaining_g: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub price: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub location: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub printer_id: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i32>))]
    pub tray: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub notes: Option<Option<String>>,
    pub archived: Option<bool>,
}

/// The filters of `GET /spools`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListSpools {
    pub material: Option<String>,
    pub printer_id: Option<i64>,
    /// Loaded in a printer (`true`) or not (`false`).
    pub loaded: Option<bool>,
    /// Under its material's low-stock threshold.
    pub low: Option<bool>,
    /// Archived spools are listed only when asked for (`true`).
    pub archived: Option<bool>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpoolList {
    pub spools: Vec<Spool>,
    pub total: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolId {
    pub id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateSpool {
    pub id: i64,
    pub patch: SpoolPatch,
}

/// Grams on hand of one material and colour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaterialStock {
    pub material: String,
    pub color: Option<String>,
    pub spools: i64,
    /// Spools loaded in a printer.
    pub in_use: i64,
    pub remaining_g: f64,
    /// Used in the last 30 days, grams.
    pub used_30d_g: f64,
    /// `remaining_g` at the last 30 days' rate; `null` when nothing was used.
    pub days_left: Option<f64>,
    /// Spools under the threshold.
    pub low: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaterialSummary {
    pub materials: Vec<MaterialStock>,
}

/// What one filament of a print took from which spool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpoolUsage {
    pub archive_id: i64,
    /// The 3MF's filament id (1-based).
    pub slot: i32,
    pub material: String,
    pub color: Option<String>,
    /// Grams: the plate's for a finished print, its share of progress otherwise.
    pub grams: f64,
    /// The tray it was fed from, when known.
    pub tray: Option<i32>,
    /// The spool in that tray; `null` when no known spool was there.
    pub spool_id: Option<i64>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageList {
    pub usage: Vec<SpoolUsage>,
}

/// Which usage to list: of one archive, or of one spool (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListUsage {
    pub archive_id: Option<i64>,
    pub spool_id: Option<i64>,
    pub limit: i64,
}

/// KV bucket: [`tray_key`] → [`TraySpool`], the spool known in each loaded tray, kept by the
/// `filament` service for the scheduler (shortage-aware dispatch).
pub const TRAY_SPOOLS_BUCKET: &str = "tray_spools";

/// A tray's key in [`TRAY_SPOOLS_BUCKET`].
pub fn tray_key(printer_id: i64, tray: i32) -> String {
    format!("{printer_id}.{tray}")
}

/// The printer and tray of a [`TRAY_SPOOLS_BUCKET`] key.
pub fn parse_tray_key(key: &str) -> Option<(i64, i32)> {
    let (printer, tray) = key.split_once('.')?;
    Some((printer.parse().ok()?, tray.parse().ok()?))
}

/// The spool in a tray, as the scheduler needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraySpool {
    pub spool_id: i64,
    pub material: String,
    pub remaining_g: f64,
}

/// `spool_low`: a spool went under its material's threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpoolLow {
    pub spool_id: i64,
    pub material: String,
    pub color: Option<String>,
    pub brand: Option<String>,
    pub remaining_g: f64,
    pub threshold_g: f64,
    pub printer_id: Option<i64>,
    pub tray: Option<i32>,
}

/// The event id of a spool's `n`-th fall under its threshold (a refill and a new fall is a
/// new event; a redelivery of the same fall is not).
pub fn spool_low_id(spool_id: i64, fall: i64) -> String {
    format!("filament.spool_low.{spool_id}.{fall}")
}

/// `filament_used`: what a print's filament cost by the spools it came from, after the
/// archive's revision `revision` was applied: `priced_g` grams came from spools with a price,
/// costing `cost` (in the cost settings' currency); statistics price the rest of the print's
/// grams per kg. A newer revision replaces an older one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilamentUsed {
    pub archive_id: i64,
    pub revision: i64,
    pub priced_g: f64,
    pub cost: f64,
}

/// The event id of archive `archive_id`'s `filament_used` after revision `revision`.
pub fn filament_used_id(archive_id: i64, revision: i64) -> String {
    format!("filament.used.{archive_id}.{revision}")
}

/// Whether `tray` is a tray id printers use: AMS trays 0–15, single-slot units 128–135, the
/// external holders 254 and 255.
pub fn valid_tray(tray: i32) -> bool {
    matches!(tray, 0..=15 | 128..=135 | 254 | 255)
}

const fn endpoint<Req, Resp>(name: &'static str) -> Endpoint<Req, Resp> {
    Endpoint::new(ServiceName::Filament, name)
}

pub const LIST: Endpoint<ListSpools, SpoolList> = endpoint("spool-list");
pub const GET: Endpoint<SpoolId, Spool> = endpoint("spool-get");
pub const CREATE: Endpoint<NewSpool, Spool> = endpoint("spool-create");
pub const UPDATE: Endpoint<UpdateSpool, Spool> = endpoint("spool-update");
/// Archives the spool (it leaves its tray; its usage stays).
pub const ARCHIVE: Endpoint<SpoolId, Spool> = endpoint("spool-archive");
pub const SUMMARY: Endpoint<Empty, MaterialSummary> = endpoint("spool-summary");
pub const USAGE: Endpoint<ListUsage, UsageList> = endpoint("spool-usage");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tray_keys_round_trip_and_trays_are_the_printers_ids() {
        assert_eq!(parse_tray_key(&tray_key(42, 254)), Some((42, 254)));
        assert_eq!(parse_tray_key("42"), None);
        for tray in [0, 15, 128, 135, 254, 255] {
            assert!(valid_tray(tray), "{tray}");
        }
        for tray in [-1, 16, 127, 136, 253, 256] {
            assert!(!valid_tray(tray), "{tray}");
        }
    }

    #[test]
    fn a_patch_tells_unload_from_absent() {
        let patch: SpoolPatch =
            serde_json::from_str(r#"{"printer_id": null, "tray": null}"#).unwrap();
        assert_eq!(patch.printer_id, Some(None));
        assert_eq!(patch.location, None);
        assert!(serde_json::from_str::<SpoolPatch>(r#"{"weight": 3}"#).is_err());
    }
}
