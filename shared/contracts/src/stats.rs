//! What `api` asks the `stats` service: statistics of the farm's prints, their export, and the
//! cost settings they are priced with.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ServiceName;
use crate::rpc::{Empty, Endpoint};

/// Which prints count: the `/statistics` filters (`from` inclusive, `until` exclusive; both are
/// instants, a date having been turned into its whole day by `api`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsFilter {
    pub printer_id: Option<i64>,
    /// Only these printers (a caller limited to some printers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printer_ids: Option<Vec<i64>>,
    pub site: Option<String>,
    pub project_id: Option<i64>,
    pub filament_type: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The reference's totals, then Printyard's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Totals {
    /// Prints with a known outcome: successful + failed + stopped, as in the reference.
    pub total_prints: i64,
    pub successful_prints: i64,
    pub failed_prints: i64,
    pub stopped_prints: i64,
    /// Prints that ended unseen with nothing telling how (archive status `unknown`: their
    /// printer was deleted mid-print, or showed another print when seen again). Not in
    /// `total_prints` nor in the success rate; their time and filament are in the sums.
    pub unknown_prints: i64,
    /// Successful prints over the prints with a known outcome (`total_prints`), percent, two
    /// decimals (0 with none).
    pub success_rate: f64,
    /// Seconds.
    pub total_print_time: i64,
    /// Grams.
    pub total_filament_used: f64,
    /// Filament and energy.
    pub total_cost: f64,
    pub filament_cost: f64,
    pub energy_kwh: f64,
    pub energy_cost: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrinterTotals {
    /// `null` for prints of no printer (none yet: uploads do not count).
    pub printer_id: Option<i64>,
    /// The printer's name, as `api` knows it now.
    pub printer_name: Option<String>,
    #[serde(flatten)]
    pub totals: Totals,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DayTotals {
    /// The day (UTC) the prints started.
    pub day: NaiveDate,
    #[serde(flatten)]
    pub totals: Totals,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FilamentTotals {
    /// As the archive has it (`PLA`, `PLA, PETG` for several); empty when unknown.
    pub filament_type: String,
    #[serde(flatten)]
    pub totals: Totals,
}

/// `GET /statistics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Statistics {
    #[serde(flatten)]
    pub totals: Totals,
    pub by_printer: Vec<PrinterTotals>,
    pub by_day: Vec<DayTotals>,
    pub by_filament_type: Vec<FilamentTotals>,
    pub currency: String,
}

/// A `/statistics` question. `unless` is the generation of an answer the caller keeps: when the
/// facts have not changed since, the answer is not sent again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsRequest {
    pub filter: StatsFilter,
    #[serde(default)]
    pub unless: Option<i64>,
}

/// The statistics, summed at `generation` of the facts (a number that grows with every change
/// of a print's facts or of the prices); `None` when that is the generation the caller keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsAnswer {
    pub generation: i64,
    pub statistics: Option<Statistics>,
}

/// One row of the export: a day and a printer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportRow {
    pub day: NaiveDate,
    pub printer_id: Option<i64>,
    pub totals: Totals,
}

/// A page of the export: the days after `after` (from the filter's start when `None`), up to
/// `days` of them. Pages are whole days, so a page reads only its own days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportPage {
    pub filter: StatsFilter,
    pub after: Option<NaiveDate>,
    pub days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportRows {
    /// In (day, printer) order.
    pub rows: Vec<ExportRow>,
    pub currency: String,
    /// Where the next page starts (`after`), or `None` at the end.
    pub next: Option<NaiveDate>,
}

/// How prints are priced: filament by type (per kg, `default` for types not listed), energy
/// (print time × the model's power × the price of a kWh).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CostSettings {
    /// ISO 4217 code (`EUR`, `USD`).
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Z]{3}$"))]
    pub currency: String,
    /// Price of a kilogram by filament type; `default` for the others.
    pub filament_cost_per_kg: BTreeMap<String, f64>,
    pub energy_cost_per_kwh: f64,
    /// Average power while printing, by model ("P1S", "X1 Carbon"); `default` for the others.
    pub printer_power_watts: BTreeMap<String, f64>,
}

impl Default for CostSettings {
    fn default() -> Self {
        let prices = [
            ("default", 25.0),
            ("PLA", 20.0),
            ("PETG", 22.0),
            ("ABS", 22.0),
            ("ASA", 28.0),
            ("TPU", 35.0),
            ("PA-CF", 70.0),
            ("PETG-CF", 40.0),
            ("PLA-CF", 35.0),
        ];
        let watts = [
            ("default", 150.0),
            ("A1 mini", 80.0),
            ("A1", 95.0),
            ("P1P", 110.0),
            ("P1S", 120.0),
            ("P2S", 150.0),
            ("X1", 180.0),
            ("X1 Carbon", 180.0),
            ("X1E", 200.0),
            ("H2D", 250.0),
            ("H2S", 220.0),
        ];
        Self {
            currency: "EUR".into(),
            filament_cost_per_kg: prices.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            energy_cost_per_kwh: 0.30,
            printer_power_watts: watts.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }
}

impl CostSettings {
    /// The price of a kilogram of `filament_type` (the first type of a list such as
    /// `PLA, PETG`), by exact type, else case-insensitively, else `default`.
    pub fn filament_price(&self, filament_type: &str) -> f64 {
        let first = filament_type.split(',').next().unwrap_or("").trim();
        self.filament_cost_per_kg
            .get(first)
            .or_else(|| {
                self.filament_cost_per_kg
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(first))
                    .map(|(_, v)| v)
            })
            .or_else(|| self.filament_cost_per_kg.get("default"))
            .copied()
            .unwrap_or(0.0)
    }

    /// The power of `model` in watts, else `default`.
    pub fn power(&self, model: Option<&str>) -> f64 {
        model
            .and_then(|m| {
                self.printer_power_watts
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(m))
                    .map(|(_, v)| *v)
            })
            .or_else(|| self.printer_power_watts.get("default").copied())
            .unwrap_or(0.0)
    }
}

const fn endpoint<Req, Resp>(name: &'static str) -> Endpoint<Req, Resp> {
    Endpoint::new(ServiceName::Stats, name)
}

pub const STATISTICS: Endpoint<StatsRequest, StatsAnswer> = endpoint("statistics");
pub const EXPORT: Endpoint<ExportPage, ExportRows> = endpoint("export");
pub const COSTS_GET: Endpoint<Empty, CostSettings> = endpoint("costs-get");
pub const COSTS_PUT: Endpoint<CostSettings, CostSettings> = endpoint("costs-put");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_fall_back_by_case_then_to_the_default() {
        let costs = CostSettings::default();
        assert_eq!(costs.filament_price("PLA"), 20.0);
        assert_eq!(costs.filament_price("pla"), 20.0);
        assert_eq!(costs.filament_price("PLA, PETG"), 20.0);
        assert_eq!(costs.filament_price("Unobtainium"), 25.0);
        assert_eq!(costs.power(Some("p1s")), 120.0);
        assert_eq!(costs.power(None), 150.0);
    }
}
