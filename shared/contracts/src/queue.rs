//! The print queue: what `api` asks the `scheduler`, and what the scheduler asks the gateway
//! holding a printer (print a library 3MF).
//!
//! A dispatched print is recognised wherever it is seen by the tag in its job name
//! ([`subtask_name`]): the gateway puts it into `project_file`, the printer reports it back in
//! every status, and so the gateway's events, the archive and the scheduler all know which job a
//! print belongs to, even after a restart or a takeover.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ServiceName;
use crate::archive::FileLocation;
use crate::rpc::Endpoint;
use crate::subjects::ROOT;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for its time and a compatible, idle, cleared printer.
    Pending,
    /// Claimed by a scheduler: the file is on its way to the printer.
    Dispatching,
    Printing,
    Completed,
    /// The print failed, or the dispatch failed for good (`error` says why).
    Failed,
    /// The print was stopped on the printer or through the API.
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Pending,
        JobStatus::Dispatching,
        JobStatus::Printing,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Dispatching => "dispatching",
            JobStatus::Printing => "printing",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the job holds its printer (one such job per printer at a time).
    pub fn holds_printer(self) -> bool {
        matches!(self, JobStatus::Dispatching | JobStatus::Printing)
    }
}

/// A job as the API shows it: the reference's fields, then Printyard's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueJob {
    pub id: i64,
    pub archive_id: i64,
    /// The printer asked for; `null`: any compatible printer.
    pub printer_id: Option<i64>,
    /// Queue order: lower starts first.
    pub position: i64,
    pub status: JobStatus,
    /// Not started before this instant.
    pub scheduled_time: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The plate of the 3MF to print.
    pub plate: i32,
    /// Only printers of this model ("P1S").
    pub model: Option<String>,
    /// Only printers of this site.
    pub site: Option<String>,
    /// Use the AMS (`null`: when the printer has one).
    pub use_ams: Option<bool>,
    pub bed_leveling: bool,
    pub timelapse: bool,
    /// The printer the job went to.
    pub printer_assigned: Option<i64>,
    /// The archive its print produced.
    pub result_archive_id: Option<i64>,
    /// Why a pending job has not started ("no idle P1S", "plate not cleared", …).
    pub waiting_reason: Option<String>,
    /// Why the last dispatch failed, or how the print ended badly.
    pub error: Option<String>,
    /// Dispatches tried.
    pub attempts: i32,
    /// The library archive's name and file.
    pub name: String,
    pub filename: String,
    /// `/api/v1/archives/{archive_id}/thumbnail`, when the file has one.
    pub thumbnail_url: Option<String>,
    /// The name of the printer asked for, or of the one the job went to.
    pub printer_name: Option<String>,
    /// The model the plate was sliced for ("A1 mini"), when the file says.
    pub sliced_for: Option<String>,
    /// Filament types the plate needs, in filament order.
    pub filament_types: Vec<String>,
}

/// `POST /queue`: the reference's fields plus Printyard's targets and print options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    pub archive_id: i64,
    /// A printer; omit (or `null`) for any compatible printer.
    pub printer_id: Option<i64>,
    /// Not before this instant (RFC 3339).
    pub scheduled_time: Option<DateTime<Utc>>,
    /// The plate to print, default 1.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 64))]
    #[serde(default, deserialize_with = "crate::archive::integral")]
    pub plate: Option<i32>,
    /// Any printer of this model ("P1S", "X1 Carbon", or a model id such as "C12").
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub model: Option<String>,
    /// Any printer of this site.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9_-]{1,32}$"))]
    pub site: Option<String>,
    /// Feed from the AMS; default: when the printer has one.
    pub use_ams: Option<bool>,
    /// Default true.
    pub bed_leveling: Option<bool>,
    /// Default false.
    pub timelapse: Option<bool>,
}

/// The printer a new job asks for, as `api` (which owns the registry) found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetPrinter {
    pub id: i64,
    pub name: String,
    /// Marketing name, given or detected.
    pub model: Option<String>,
    pub site: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddJob {
    pub job: NewJob,
    pub printer: Option<TargetPrinter>,
}

/// The filters of `GET /queue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListJobs {
    pub printer_id: Option<i64>,
    pub status: Option<JobStatus>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<QueueJob>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobId {
    pub id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobRemoved {
    pub id: i64,
    pub deleted: bool,
}

/// `POST /queue/reorder`: the given jobs take the positions they hold, in this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Reorder {
    #[cfg_attr(feature = "openapi", schema(max_items = 10000))]
    pub order: Vec<i64>,
}

/// A printer's plate was cleared by a person (or needs no clearing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearPlate {
    pub printer_id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlateCleared {
    /// `plate_cleared`.
    pub status: String,
    pub printer_id: i64,
    pub cleared_at: DateTime<Utc>,
}

/// Queue a print that failed or was stopped again, first in line (from an error it hit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPrint {
    /// The print's archive (the job's `result_archive_id`).
    pub archive_id: i64,
    pub printer_id: i64,
}

const fn endpoint<Req, Resp>(name: &'static str) -> Endpoint<Req, Resp> {
    Endpoint::new(ServiceName::Scheduler, name)
}

pub const LIST: Endpoint<ListJobs, JobList> = endpoint("list");
pub const ADD: Endpoint<AddJob, QueueJob> = endpoint("add");
pub const REMOVE: Endpoint<JobId, JobRemoved> = endpoint("remove");
pub const REORDER: Endpoint<Reorder, JobList> = endpoint("reorder");
pub const CLEAR_PLATE: Endpoint<ClearPlate, PlateCleared> = endpoint("clear-plate");
pub const RETRY: Endpoint<RetryPrint, QueueJob> = endpoint("retry");

/// Core NATS subject on which a change to the queue (a job added, a plate cleared) wakes every
/// scheduler replica's dispatcher at once instead of at its next tick.
pub fn queue_changed_subject() -> String {
    format!("{ROOT}.queue.changed")
}

// ---- the print a scheduler asks of a gateway ----

/// A print request to a printer (`printyard.printers.<site>.<id>.print`), answered by the
/// gateway holding its lease.
pub const PRINT: crate::rpc::PrinterEndpoint<PrintRequest, PrintOutcome> =
    crate::rpc::PrinterEndpoint::new("print");

/// Print a library 3MF: upload it by FTPS, start it with `project_file`, answer once the
/// printer shows the print. Idempotent per `job_id`: a second request for a job being (or
/// already) dispatched waits for, or repeats, the first one's outcome, and a printer that is
/// already printing the job's tag is taken as started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrintRequest {
    pub job_id: i64,
    /// The library archive the file comes from.
    pub archive_id: i64,
    /// The stored 3MF, read through `archive.file-chunk`.
    pub file: FileLocation,
    /// Lower-case hex SHA-256 of the file, checked after the upload's reads.
    pub sha256: Option<String>,
    pub plate: u32,
    /// The job name the printer shows and reports back, with the job's tag.
    pub subtask_name: String,
    pub use_ams: bool,
    /// One entry per filament of the project: global tray id, or -1.
    pub ams_mapping: Vec<i32>,
    pub bed_leveling: bool,
    pub timelapse: bool,
}

/// What became of a print request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PrintOutcome {
    /// The printer shows the job's print (preparing or running).
    Started,
    /// The printer is busy with something else: nothing was sent.
    Busy { state: String },
    /// No live connection: nothing was sent.
    NotConnected { reason: Option<String> },
    /// The printer refused `project_file` with this reason.
    Refused {
        reason: String,
        signed_required: bool,
    },
    /// The upload by FTPS failed (the printer's storage, the connection, a deadline).
    UploadFailed { reason: String },
    /// The file could not be read from the archive.
    FileUnavailable { reason: String },
    /// The printer neither acknowledged nor showed the print in time.
    TimedOut { after_ms: u64 },
}

impl PrintOutcome {
    /// Whether trying again later may succeed (the job goes back to pending); otherwise the
    /// job fails with the reason.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PrintOutcome::Busy { .. }
                | PrintOutcome::NotConnected { .. }
                | PrintOutcome::UploadFailed { .. }
                | PrintOutcome::TimedOut { .. }
        )
    }

    /// The reason for a person.
    pub fn describe(&self) -> String {
        match self {
            PrintOutcome::Started => "started".into(),
            PrintOutcome::Busy { state } => format!("the printer is busy ({state})"),
            PrintOutcome::NotConnected { reason } => format!(
                "the printer is not connected: {}",
                reason.as_deref().unwrap_or("no live connection")
            ),
            PrintOutcome::Refused {
                signed_required: true,
                ..
            } => "the printer's firmware accepts only signed control commands: turn on \
                  Developer Mode (LAN only mode) to print from Printyard"
                .into(),
            PrintOutcome::Refused { reason, .. } => format!("the printer refused: {reason}"),
            PrintOutcome::UploadFailed { reason } => format!("the upload failed: {reason}"),
            PrintOutcome::FileUnavailable { reason } => {
                format!("the file could not be read: {reason}")
            }
            PrintOutcome::TimedOut { after_ms } => {
                format!(
                    "the printer did not start the print within {} s",
                    after_ms / 1000
                )
            }
        }
    }
}

/// The marker a dispatched job's name carries: `-pyq<job id>`.
const TAG: &str = "-pyq";

/// The job name a dispatched print gets: the library name made safe for the printer's storage
/// (letters, digits, ` `, `_`, `-`, `.`; at most 64 characters), then the job's tag. The file
/// uploaded is `<subtask name>.gcode.3mf`.
pub fn subtask_name(name: &str, job_id: i64) -> String {
    let mut safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    safe = safe.trim_matches([' ', '.']).to_owned();
    if safe.is_empty() {
        safe = "job".into();
    }
    format!("{safe}{TAG}{job_id}")
}

/// The job a print belongs to, from its job name or file name (`cube-pyq42`,
/// `cube-pyq42.gcode.3mf`, `/sdcard/cube-pyq42.3mf`); `None` for prints the queue did not send.
pub fn job_of(name: &str) -> Option<i64> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let stem = base
        .strip_suffix(".3mf")
        .map(|s| s.strip_suffix(".gcode").unwrap_or(s))
        .unwrap_or(base);
    let at = stem.rfind(TAG)?;
    let digits = &stem[at + TAG.len()..];
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|id| *id > 0)
}

/// A job name without the queue's tag (`cube-pyq42` → `cube`), for showing to people.
pub fn untagged(name: &str) -> &str {
    match (job_of(name), name.rfind(TAG)) {
        (Some(_), Some(at)) => &name[..at],
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_found_again_from_its_name_or_file() {
        let name = subtask_name("Benchy 3DBenchy", 42);
        assert_eq!(name, "Benchy 3DBenchy-pyq42");
        assert_eq!(job_of(&name), Some(42));
        assert_eq!(job_of(&format!("{name}.gcode.3mf")), Some(42));
        assert_eq!(job_of(&format!("/sdcard/{name}.3mf")), Some(42));
        assert_eq!(job_of("benchy"), None);
        assert_eq!(job_of("benchy-pyq"), None);
        assert_eq!(job_of("benchy-pyq12x"), None);
        assert_eq!(job_of("benchy-pyq0"), None);
        assert_eq!(untagged(&name), "Benchy 3DBenchy");
        assert_eq!(untagged("gear-pyqx"), "gear-pyqx");
    }

    #[test]
    fn names_are_made_safe_for_the_printer() {
        assert_eq!(subtask_name("a/b\\c:*?\"<>|\r\n", 1), "a_b_c_________-pyq1");
        assert_eq!(subtask_name("...", 2), "job-pyq2");
        assert_eq!(subtask_name(&"x".repeat(200), 3).len(), 64 + 5);
    }

    #[test]
    fn statuses_round_trip_and_outcomes_are_tagged() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        let refused = PrintOutcome::Refused {
            reason: "the printer is busy".into(),
            signed_required: false,
        };
        let json = serde_json::to_value(&refused).unwrap();
        assert_eq!(json["outcome"], "refused");
        assert!(!refused.is_transient());
        assert!(
            PrintOutcome::Busy {
                state: "RUNNING".into()
            }
            .is_transient()
        );
    }

    #[test]
    fn a_new_job_refuses_unknown_fields_and_reads_whole_numbers() {
        let job: NewJob = serde_json::from_str(r#"{"archive_id": 3, "plate": 2.0}"#).unwrap();
        assert_eq!(job.plate, Some(2));
        assert!(serde_json::from_str::<NewJob>(r#"{"archive_id": 3, "colour": 1}"#).is_err());
    }
}
