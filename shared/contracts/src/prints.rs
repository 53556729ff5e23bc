//! A print's end, from both sides: what a gateway saw (`print_ended`, for the archive alone) and
//! what the archive announces once it has closed the print's record (`print_complete`,
//! `print_failed`, `print_stopped`, `print_unknown`, for everyone).
//!
//! The archive is the one announcer of print ends: a print can end under the eyes of a gateway,
//! or be found ended when a gateway sees its printer again, be replaced by another print, or
//! lose its printer; whichever witness closes the record, the archive publishes the end once,
//! with the same id whoever asks again ([`print_end_id`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::archive::ArchiveStatus;
use crate::farm::EventKind;

/// How a print ended, as the gateway holding its printer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeenOutcome {
    /// `FINISH`.
    Complete,
    /// `FAILED` with a print error other than "cancelled by the user".
    Failed,
    /// `FAILED` with 0300_400C, or `IDLE` straight after running.
    Stopped,
    /// The printer showed another job while this one was under way: its end was not seen.
    Replaced,
}

/// `print_ended`: a gateway saw a print end. Only the archive reads it; it closes the print's
/// record and announces the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrintEndSeen {
    /// The gateway's key of the print (as in its `print_started`).
    pub print: String,
    pub printer_name: Option<String>,
    pub job_name: Option<String>,
    /// The printer's task id of the print, when it has one.
    pub task_id: Option<String>,
    pub gcode_file: Option<String>,
    pub outcome: Option<SeenOutcome>,
    /// Percent reached.
    pub progress: Option<f64>,
    /// `XXXX_XXXX`, for a failure.
    pub print_error: Option<String>,
    pub queue_job: Option<i64>,
}

/// Who saw a print end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EndWitness {
    /// The gateway holding the printer saw the state change (the end time is exact).
    Gateway,
    /// The printer showed it ended when a gateway held it again (the end is when it was seen).
    PrinterSeenAgain,
    /// Another print started on the printer first (the end is when that one started).
    NextPrint,
    /// The printer was deleted while it printed.
    PrinterDeleted,
}

impl EndWitness {
    pub fn as_str(self) -> &'static str {
        match self {
            EndWitness::Gateway => "gateway",
            EndWitness::PrinterSeenAgain => "printer_seen_again",
            EndWitness::NextPrint => "next_print",
            EndWitness::PrinterDeleted => "printer_deleted",
        }
    }

    pub fn parse(s: &str) -> Option<EndWitness> {
        [
            EndWitness::Gateway,
            EndWitness::PrinterSeenAgain,
            EndWitness::NextPrint,
            EndWitness::PrinterDeleted,
        ]
        .into_iter()
        .find(|w| w.as_str() == s)
    }
}

/// `print_complete`, `print_failed`, `print_stopped` and `print_unknown`: the archive closed a
/// print's record. Everything a receiver needs is here (no need to have seen the start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrintEnd {
    pub archive_id: i64,
    /// The gateway's key of the print, when one followed it.
    pub print: Option<String>,
    pub printer_name: Option<String>,
    pub name: String,
    pub filename: String,
    pub job_name: Option<String>,
    pub queue_job: Option<i64>,
    /// `success`, `failed`, `stopped` or `unknown`.
    pub status: ArchiveStatus,
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended: exact when a gateway saw it (`end_time_known`), else when the end was
    /// learned (the printer seen again, the next print's start, the deletion).
    pub ended_at: DateTime<Utc>,
    pub end_time_known: bool,
    /// Seconds from start to end.
    pub duration: Option<i64>,
    /// Percent reached.
    pub progress: Option<i32>,
    pub print_error: Option<String>,
    pub observed: EndWitness,
    /// How an end no gateway saw was learned.
    pub end_reason: Option<String>,
}

/// The event that announces a print's end with `status`.
pub fn end_kind(status: ArchiveStatus) -> EventKind {
    match status {
        ArchiveStatus::Success => EventKind::PrintComplete,
        ArchiveStatus::Failed => EventKind::PrintFailed,
        ArchiveStatus::Stopped => EventKind::PrintStopped,
        _ => EventKind::PrintUnknown,
    }
}

/// The id of archive `archive_id`'s end announcement: one per archive, whatever the status, so
/// a repeated publish is stored once and consumers that record applied ids act once.
pub fn print_end_id(archive_id: i64) -> String {
    format!("archive.print_end.{archive_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ended_status_has_its_event_and_one_id_per_archive() {
        assert_eq!(end_kind(ArchiveStatus::Success), EventKind::PrintComplete);
        assert_eq!(end_kind(ArchiveStatus::Failed), EventKind::PrintFailed);
        assert_eq!(end_kind(ArchiveStatus::Stopped), EventKind::PrintStopped);
        assert_eq!(end_kind(ArchiveStatus::Unknown), EventKind::PrintUnknown);
        assert_eq!(print_end_id(7), print_end_id(7));
        assert_ne!(print_end_id(7), print_end_id(8));
        for witness in [
            EndWitness::Gateway,
            EndWitness::PrinterSeenAgain,
            EndWitness::NextPrint,
            EndWitness::PrinterDeleted,
        ] {
            assert_eq!(EndWitness::parse(witness.as_str()), Some(witness));
        }
    }
}
