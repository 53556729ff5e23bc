//! Printer errors as history: each HMS error (fatal or serious) and each print error a printer
//! raised, when it was cleared, and the print it hit. The gateway tells raises (`printer_error`
//! for HMS, `print_error` for print errors) and clears (`printer_error_cleared`); `stats` keeps
//! them as facts and pairs them when asked.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ServiceName;
use crate::rpc::Endpoint;

/// What raised an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ErrorSource {
    /// An HMS entry of fatal or serious severity (`HMS_0300_0100_0001_0001`).
    Hms,
    /// The report's `print_error` (`0300_400C`).
    Print,
}

impl ErrorSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorSource::Hms => "hms",
            ErrorSource::Print => "print",
        }
    }
}

/// The data of `printer_error` (HMS) and `print_error`: what was raised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRaised {
    pub code: String,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    /// Absent in `printer_error` events of gateways before the history: HMS.
    #[serde(default = "hms")]
    pub source: ErrorSource,
}

fn hms() -> ErrorSource {
    ErrorSource::Hms
}

/// The data of `printer_error_cleared`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorCleared {
    pub code: String,
    pub source: ErrorSource,
}

/// What can be done about an error now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ErrorAction {
    /// The printer is paused on it (`POST /printers/{id}/resume`).
    Resume,
    /// The print is still under way or paused (`POST /printers/{id}/stop`).
    Stop,
    /// Its print ended failed or stopped: queue it again, first in line
    /// (`POST /printers/{id}/errors/{error_id}/retry`; a print from the queue only).
    Retry,
}

/// One error in a printer's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrinterError {
    pub id: i64,
    pub printer_id: i64,
    pub source: ErrorSource,
    pub code: String,
    /// `fatal`, `serious` (HMS); `null` for print errors.
    pub severity: Option<String>,
    /// In words, from Bambu's catalogue, when known.
    pub text: Option<String>,
    pub raised_at: DateTime<Utc>,
    /// `null` while it stands.
    pub cleared_at: Option<DateTime<Utc>>,
    /// The archive of the print it hit (printing when it was raised), if any.
    pub archive_id: Option<i64>,
    /// That print's status in the archive (`printing`, `failed`, `stopped`, …).
    pub print_status: Option<String>,
    /// What can be done about it now (set by `api` from the printer's state).
    #[serde(default)]
    pub actions: Vec<ErrorAction>,
}

/// `stats`: a printer's errors, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListErrors {
    pub printer_id: i64,
    /// Only errors raised before the one with this id (paging).
    pub before: Option<i64>,
    pub limit: i64,
}

/// `stats`: one error of a printer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GetError {
    pub printer_id: i64,
    pub id: i64,
}

/// `GET /statistics/errors`: which printers, when.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CountErrors {
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub printer_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printer_ids: Option<Vec<i64>>,
    pub site: Option<String>,
}

/// How often one code was raised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorCount {
    pub source: ErrorSource,
    pub code: String,
    pub text: Option<String>,
    pub severity: Option<String>,
    /// Times raised in the range.
    pub count: i64,
    /// Printers it was raised on.
    pub printers: i64,
    pub last_raised_at: DateTime<Utc>,
}

/// The answer of `GET /statistics/errors`: codes by how often they were raised.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorCounts {
    pub total: i64,
    pub by_code: Vec<ErrorCount>,
}

/// The most errors one page lists.
pub const MAX_PAGE: i64 = 500;

const fn endpoint<Req, Resp>(name: &'static str) -> Endpoint<Req, Resp> {
    Endpoint::new(ServiceName::Stats, name)
}

pub const LIST: Endpoint<ListErrors, Vec<PrinterError>> = endpoint("errors-list");
pub const GET: Endpoint<GetError, PrinterError> = endpoint("errors-get");
pub const COUNTS: Endpoint<CountErrors, ErrorCounts> = endpoint("errors-count");
