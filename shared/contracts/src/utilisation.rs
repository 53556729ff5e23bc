//! Utilisation: where each printer's hours go. The scheduler, which alone knows a printer's
//! state together with its plate, its maintenance mode and the queue's work for it, publishes a
//! `printer_activity` fact on `FARM_EVENTS` whenever a printer's [`Activity`] changes; `stats`
//! keeps the transitions and sums them into hours by state.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ServiceName;
use crate::rpc::Endpoint;

/// What a printer's hour is spent on. Exactly one at any instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// Printing (or preparing to: heating, levelling).
    Printing,
    /// Paused by someone, with no error.
    Paused,
    /// A print ended (finished or failed) and its plate is not marked cleared.
    AwaitingClear,
    /// Idle while a queued job waits that it is a target of (the printer asked for, or any
    /// printer of its model and site), whatever the job still lacks (filament, a start time).
    IdleQueued,
    /// Idle with nothing in the queue for it.
    Idle,
    /// Stopped on an error: paused with a print error or an HMS error, or idle with an HMS
    /// error.
    Error,
    /// Not connected.
    Offline,
    /// In maintenance mode (counted apart whatever else it does).
    Maintenance,
    /// Deleted from the farm: counts nowhere from then on.
    Removed,
}

impl Activity {
    /// Every state hours are counted in (not `Removed`), in the order answers list them.
    pub const COUNTED: [Activity; 8] = [
        Activity::Printing,
        Activity::Paused,
        Activity::AwaitingClear,
        Activity::IdleQueued,
        Activity::Idle,
        Activity::Error,
        Activity::Offline,
        Activity::Maintenance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Printing => "printing",
            Activity::Paused => "paused",
            Activity::AwaitingClear => "awaiting_clear",
            Activity::IdleQueued => "idle_queued",
            Activity::Idle => "idle",
            Activity::Error => "error",
            Activity::Offline => "offline",
            Activity::Maintenance => "maintenance",
            Activity::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<Activity> {
        Activity::COUNTED
            .into_iter()
            .chain([Activity::Removed])
            .find(|a| a.as_str() == s)
    }
}

/// The data of a `printer_activity` event: the state the printer is in from the event's `at`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActivityChanged {
    pub activity: Activity,
}

/// The data of a `plate_cleared` event: the print's end and the clearing (the event's `at`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlateCleared {
    pub ended_at: DateTime<Utc>,
}

/// `GET /statistics/utilisation`: the range (default: the 30 days to now) and which printers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UtilisationRequest {
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub printer_id: Option<i64>,
    /// Only these printers (a caller limited to some printers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printer_ids: Option<Vec<i64>>,
    pub site: Option<String>,
    /// Marketing name ("P1S").
    pub model: Option<String>,
}

/// Hours in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateHours {
    pub printing: f64,
    pub paused: f64,
    pub awaiting_clear: f64,
    pub idle_queued: f64,
    pub idle: f64,
    pub error: f64,
    pub offline: f64,
    pub maintenance: f64,
}

impl StateHours {
    pub fn get_mut(&mut self, activity: Activity) -> Option<&mut f64> {
        Some(match activity {
            Activity::Printing => &mut self.printing,
            Activity::Paused => &mut self.paused,
            Activity::AwaitingClear => &mut self.awaiting_clear,
            Activity::IdleQueued => &mut self.idle_queued,
            Activity::Idle => &mut self.idle,
            Activity::Error => &mut self.error,
            Activity::Offline => &mut self.offline,
            Activity::Maintenance => &mut self.maintenance,
            Activity::Removed => return None,
        })
    }

    pub fn get(&self, activity: Activity) -> f64 {
        let mut copy = *self;
        copy.get_mut(activity).map_or(0.0, |v| *v)
    }

    /// Every state's hours.
    pub fn total(&self) -> f64 {
        Activity::COUNTED.iter().map(|a| self.get(*a)).sum()
    }

    pub fn add(&mut self, other: &StateHours) {
        for a in Activity::COUNTED {
            if let Some(v) = self.get_mut(a) {
                *v += other.get(a);
            }
        }
    }
}

/// Hours by state of one printer, model, site or the farm, and what they come to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UtilisationRow {
    /// The printer's id (printer rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printer_id: Option<i64>,
    /// The printer's, model's or site's name; `null` for the farm.
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Printers summed (1 for a printer).
    pub printers: i64,
    pub hours: StateHours,
    /// Printing hours over the hours online (every state but offline), percent, two decimals.
    pub utilisation: f64,
    /// Prints that started in the range and ended.
    pub prints: i64,
    /// `prints` over the range's days.
    pub prints_per_day: f64,
}

/// Durations in seconds: how many, the median and the 90th percentile (within 5 %: read from
/// summaries of logarithmic buckets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Waits {
    pub count: i64,
    pub median_secs: Option<f64>,
    pub p90_secs: Option<f64>,
}

/// The farm's hours by state over one period of the trend (a day, or a month for ranges over
/// 92 days).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UtilisationPeriod {
    /// The period's first day.
    pub period: NaiveDate,
    pub hours: StateHours,
    pub utilisation: f64,
}

/// The answer of `GET /statistics/utilisation`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Utilisation {
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// `day` or `month`: the trend's period.
    pub trend_period: String,
    pub farm: UtilisationRow,
    pub printers: Vec<UtilisationRow>,
    pub models: Vec<UtilisationRow>,
    pub sites: Vec<UtilisationRow>,
    /// From a print's end to its plate marked cleared (plates cleared in the range).
    pub plate_clear: Waits,
    /// From a job queued to its print started (jobs started in the range).
    pub queue_wait: Waits,
    pub trend: Vec<UtilisationPeriod>,
}

/// `stats`: hours by state.
pub const UTILISATION: Endpoint<UtilisationRequest, Utilisation> =
    Endpoint::new(ServiceName::Stats, "utilisation");
