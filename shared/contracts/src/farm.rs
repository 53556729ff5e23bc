//! What flows between the gateway and the central services about printers: the KV buckets,
//! the event stream, the registry record a gateway connects from, and the events it publishes.
//!
//! Subjects carry the site, so that a site's NATS credentials can be limited to its own printers.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::printer::PrinterStatus;
use crate::rpc::PrinterEndpoint;
pub use crate::site::{InvalidSite, Site};
use crate::subjects::ROOT;

/// KV bucket: printer id → [`PrinterRecord`], written by `api`, watched by gateways.
pub const PRINTER_REGISTRY_BUCKET: &str = "printer_registry";
/// KV bucket: `<site>.<id>` → owning gateway instance; entries expire unless renewed (the
/// lease).
pub const PRINTER_OWNERS_BUCKET: &str = "printer_owners";
/// KV bucket: `<site>.<id>` → latest status, written by the owning gateway.
pub const PRINTER_STATUS_BUCKET: &str = "printer_status";
/// KV bucket: `<site>.<gateway instance>` → printers it holds; entries expire unless renewed.
pub const GATEWAY_MEMBERS_BUCKET: &str = "gateway_members";
/// How long a gateway's claim on a printer lasts without renewal, unless configured (the
/// owners bucket's max age; `api` creates the bucket with it for gateways that may not).
pub const DEFAULT_LEASE_SECS: u64 = 15;
/// JetStream stream of [`FarmEvent`]s.
pub const FARM_EVENTS_STREAM: &str = "FARM_EVENTS";

/// The stream at a site's NATS leaf node (in the site's JetStream domain) that keeps the
/// site's events first, when the site runs JetStream: `FARM_EVENTS` sources it, so events of
/// an uplink outage reach the central services once the link is back.
pub fn site_events_stream(site: &Site) -> String {
    format!("SITE_EVENTS_{site}")
}

/// `api`: make `FARM_EVENTS` source the site's own event stream (sent by the site's gateway
/// on `printyard.api.site-stream.<site>` when it keeps events at the site; idempotent).
pub const SITE_STREAM: crate::rpc::Endpoint<crate::rpc::Empty, crate::rpc::Empty> =
    crate::rpc::Endpoint::new(crate::ServiceName::Api, "site-stream");

/// The subject of an event: `printyard.events.<site>.<printer id>.<kind>`.
pub fn event_subject(site: &Site, printer_id: i64, kind: EventKind) -> String {
    format!("{ROOT}.events.{site}.{printer_id}.{}", kind.as_str())
}

/// The subjects of `kind` events of one site (or any) and one printer (or any).
pub fn event_filter(site: Option<&Site>, printer_id: Option<i64>, kind: EventKind) -> String {
    let site = site.map_or("*", Site::as_str);
    let printer = printer_id.map_or_else(|| "*".to_owned(), |id| id.to_string());
    format!("{ROOT}.events.{site}.{printer}.{}", kind.as_str())
}

/// Every event subject (the stream's filter).
pub fn all_events() -> String {
    format!("{ROOT}.events.>")
}

/// Every event subject of one site.
pub fn all_events_of(site: &Site) -> String {
    format!("{ROOT}.events.{site}.>")
}

/// A printer's key in every farm bucket (registry, owners, status): `<site>.<id>`, so a
/// gateway watches `<site>.*` and a site's NATS credentials can be limited to its own keys.
pub fn registry_key(site: &Site, printer_id: i64) -> String {
    format!("{site}.{printer_id}")
}

/// The printer id of a farm bucket key: `<site>.<id>`, or `<id>` as owners and status keys
/// were before they carried the site.
pub fn printer_of_key(key: &str) -> Option<i64> {
    key.rsplit('.').next()?.parse().ok()
}

/// Whether `key` is an owners or status key of the layout before sites (`<id>` alone):
/// `api` purges those once at start (see docs/sites.md).
pub fn is_legacy_key(key: &str) -> bool {
    !key.contains('.') && key.parse::<i64>().is_ok()
}

/// The prefix of the inboxes of a site's gateways (replies to their requests), so a site's
/// credentials can receive replies on their own inboxes and no other connection's.
pub fn site_inbox_prefix(site: &Site) -> String {
    format!("_INBOX_{site}")
}

/// What a gateway needs to connect to a printer. Holds the access code: never log it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct PrinterRecord {
    pub id: i64,
    pub name: String,
    pub site: Site,
    /// IP address or host name.
    pub host: String,
    pub serial: String,
    pub access_code: String,
    /// Marketing name once known ("P1S").
    pub model: Option<String>,
    /// SHA-256 of the certificate trusted on first use, lower-case hex.
    pub tls_pin: Option<String>,
    /// Accept any certificate (explicit choice only).
    #[serde(default)]
    pub tls_insecure: bool,
    /// The printer removes finished parts itself: the queue does not wait for a person to
    /// clear its plate.
    #[serde(default)]
    pub auto_clear_plate: bool,
    /// Being serviced: the queue sends it nothing.
    #[serde(default)]
    pub maintenance: bool,
}

impl fmt::Debug for PrinterRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrinterRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("site", &self.site)
            .field("host", &self.host)
            .field("serial", &self.serial)
            .field("access_code", &"[redacted]")
            .field("model", &self.model)
            .field("tls_pin", &self.tls_pin)
            .field("tls_insecure", &self.tls_insecure)
            .field("auto_clear_plate", &self.auto_clear_plate)
            .field("maintenance", &self.maintenance)
            .finish()
    }
}

/// What the gateway puts in `printer_status` under the printer's id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    pub printer_id: i64,
    pub serial: String,
    pub connected: bool,
    pub last_seen: Option<DateTime<Utc>>,
    pub connection_error: Option<String>,
    /// Marketing name detected from the printer ("A1 mini").
    pub model: Option<String>,
    /// The certificate fingerprint trusted on first use, for the registry to keep.
    pub tls_pin: Option<String>,
    pub status: Option<PrinterStatus>,
    /// The firmware it runs (the `ota` module's version in `get_version`: `01.07.02.00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
}

/// The kinds of farm events (the webhook event names of the reference, and more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    PrintStarted,
    PrintProgress,
    /// The print ends, announced by the archive once it closed the print's record
    /// ([`crate::prints::PrintEnd`]), whichever witness saw the end.
    PrintComplete,
    PrintFailed,
    PrintStopped,
    /// A print ended and nothing tells how (its printer was deleted, or showed another print).
    PrintUnknown,
    /// A gateway saw a print end ([`crate::prints::PrintEndSeen`]); the archive closes the
    /// record and announces it.
    PrintEnded,
    PrinterOnline,
    PrinterOffline,
    PrinterError,
    /// The gateway fetched the print's 3MF into the transfer bucket, or says why it could not.
    PrintFile,
    /// What a printer shows when a gateway starts holding it (its first full report of a
    /// connection): lets the archive close prints that ended while no gateway watched.
    PrinterState,
    /// `api` deleted the printer: prints still open on it are ended.
    PrinterRemoved,
    /// `archive` created the archive of a print (`archive_id`, and `queue_job` for a job).
    ArchiveCreated,
    /// An archive changed: its facts ([`crate::archive::ArchiveFacts`]) after the change.
    ArchiveUpdated,
    /// An archive was deleted ([`crate::archive::ArchiveGone`]).
    ArchiveDeleted,
    /// The scheduler's jobs: started printing, completed, failed (or cancelled).
    QueueJobStarted,
    QueueJobCompleted,
    QueueJobFailed,
    /// `filament`: a spool went under its material's low-stock threshold
    /// ([`crate::filament::SpoolLow`]).
    SpoolLow,
    /// `filament`: the part of a print's filament priced by its spools
    /// ([`crate::filament::FilamentUsed`]; statistics price the rest per kg).
    FilamentUsed,
    /// `stats`: a maintenance task fell due on a printer
    /// ([`crate::maintenance::MaintenanceDue`]).
    MaintenanceDue,
    /// `scheduler`: a printer's [`crate::utilisation::Activity`] changed (utilisation's facts;
    /// not a public event).
    PrinterActivity,
    /// `scheduler`: a person marked a printer's plate cleared after a print ended
    /// ([`crate::utilisation::PlateCleared`]; not a public event).
    PlateCleared,
    /// A gateway saw a print error raised (the report's `print_error`;
    /// [`crate::printer_errors::ErrorRaised`]; not a public event: HMS errors are
    /// `printer_error`).
    PrintError,
    /// A gateway saw an HMS error or a print error go
    /// ([`crate::printer_errors::ErrorCleared`]; not a public event).
    PrinterErrorCleared,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PrintStarted => "print_started",
            EventKind::PrintProgress => "print_progress",
            EventKind::PrintComplete => "print_complete",
            EventKind::PrintFailed => "print_failed",
            EventKind::PrintStopped => "print_stopped",
            EventKind::PrintUnknown => "print_unknown",
            EventKind::PrintEnded => "print_ended",
            EventKind::PrinterOnline => "printer_online",
            EventKind::PrinterOffline => "printer_offline",
            EventKind::PrinterError => "printer_error",
            EventKind::PrintFile => "print_file",
            EventKind::PrinterState => "printer_state",
            EventKind::PrinterRemoved => "printer_removed",
            EventKind::ArchiveCreated => "archive_created",
            EventKind::ArchiveUpdated => "archive_updated",
            EventKind::ArchiveDeleted => "archive_deleted",
            EventKind::QueueJobStarted => "queue_job_started",
            EventKind::QueueJobCompleted => "queue_job_completed",
            EventKind::QueueJobFailed => "queue_job_failed",
            EventKind::SpoolLow => "spool_low",
            EventKind::FilamentUsed => "filament_used",
            EventKind::MaintenanceDue => "maintenance_due",
            EventKind::PrinterActivity => "printer_activity",
            EventKind::PlateCleared => "plate_cleared",
            EventKind::PrintError => "print_error",
            EventKind::PrinterErrorCleared => "printer_error_cleared",
        }
    }
}

/// An event on `FARM_EVENTS`. `id` is also the message's `Nats-Msg-Id`, so a re-published
/// event is stored once; consumers record the ids they applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FarmEvent {
    pub id: String,
    pub kind: EventKind,
    pub site: Site,
    pub printer_id: i64,
    pub serial: String,
    pub at: DateTime<Utc>,
    /// Kind-specific details (job name and file, progress, print error, HMS code, reason).
    #[serde(default)]
    pub data: serde_json::Value,
}

/// A deterministic event id: the same occurrence (printer, kind, print, detail) always gets the
/// same id, whichever gateway publishes it, so JetStream's dedupe keeps one.
pub fn event_id(serial: &str, kind: EventKind, occurrence: &str) -> String {
    format!("{serial}.{}.{occurrence}", kind.as_str())
}

/// A gateway's key for one print: its job name and file made safe as a subject token, and
/// when it was first seen, in milliseconds (`cube@cube_gcode_3mf.1767000000123`: two prints of
/// one file started within a second are two prints). The archive recognises a print by it,
/// and by its job name in keys made before the job name was recorded.
pub fn print_key(job_name: Option<&str>, gcode_file: Option<&str>, seen: DateTime<Utc>) -> String {
    format!(
        "{}@{}.{}",
        key_token(job_name.unwrap_or_default()),
        key_token(gcode_file.unwrap_or_default()),
        seen.timestamp_millis()
    )
}

/// `text` with the characters a subject token or a key cannot hold replaced by `_`.
pub fn key_token(text: &str) -> String {
    text.replace(['.', ' ', '*', '>'], "_")
}

/// A certificate a gateway trusted on first use, for `api` to keep with the printer so the
/// pin survives restarts and moves with the printer to another gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinLearned {
    pub printer_id: i64,
    /// The address the certificate was seen at (a pin is dropped when the address changes).
    pub host: String,
    /// SHA-256 of the certificate, lower-case hex.
    pub pin: String,
}

/// Whether the pin was stored (`false` when the printer already has one, moved or is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinStored {
    pub stored: bool,
}

/// `api`: keep a pin learned on first use (one printer; gateways of this version send
/// [`PINS_LEARNED`], this stays for those of the previous one during a rolling upgrade).
pub const PIN_LEARNED: crate::rpc::Endpoint<PinLearned, PinStored> =
    crate::rpc::Endpoint::new(crate::ServiceName::Api, "printer-pin");

/// Pins learned on first use by one gateway within a short window, kept in one transaction:
/// a farm connecting for the first time costs a handful of round trips, not one per printer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinsLearned {
    pub pins: Vec<PinLearned>,
}

/// The printers whose pin was stored (the others already had one, moved or are gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinsStored {
    pub stored: Vec<i64>,
}

/// `api`: keep pins learned on first use, many at once (gateways of the version before sites
/// had credentials of their own; see [`SITE_PINS_LEARNED`]).
pub const PINS_LEARNED: crate::rpc::Endpoint<PinsLearned, PinsStored> =
    crate::rpc::Endpoint::new(crate::ServiceName::Api, "printer-pins");

/// `api`: keep pins learned on first use by a gateway of one site, sent to
/// `printyard.api.site-pins.<site>`: `api` keeps only pins of that site's printers, so a
/// site's credentials (which reach that subject alone) cannot pin another site's printer.
pub const SITE_PINS_LEARNED: crate::rpc::Endpoint<PinsLearned, PinsStored> =
    crate::rpc::Endpoint::new(crate::ServiceName::Api, "site-pins");

/// A command to a printer (`printyard.printers.<site>.<id>.command`), answered by the gateway
/// holding its lease.
pub const COMMAND: PrinterEndpoint<CommandRequest, CommandOutcome> =
    PrinterEndpoint::new("command");

/// A command to a printer, sent by request/reply with [`COMMAND`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrinterCommand {
    /// Ask for a full report (`pushall`); printers do not acknowledge it.
    Refresh,
    Pause,
    Resume,
    Stop,
}

impl PrinterCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            PrinterCommand::Refresh => "refresh",
            PrinterCommand::Pause => "pause",
            PrinterCommand::Resume => "resume",
            PrinterCommand::Stop => "stop",
        }
    }
}

/// The request body of [`COMMAND`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRequest {
    pub command: PrinterCommand,
}

/// What became of a command, as the owning gateway answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CommandOutcome {
    /// Sent (refresh) or acknowledged with success by the printer.
    Accepted,
    /// The gateway holds the printer but has no live connection; `reason` is the last
    /// connection error (a wrong access code shows as "not authorised").
    NotConnected { reason: Option<String> },
    /// The printer answered `failed`. `signed_required` when its firmware wants signed
    /// commands (developer mode off): status keeps working, control does not.
    Refused {
        reason: String,
        signed_required: bool,
    },
    /// The printer did not answer within the gateway's deadline.
    TimedOut { after_ms: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_are_subject_tokens() {
        assert!(Site::parse("workshop-2").is_ok());
        for bad in ["", "a.b", "a*", ">", "Upper", "x y", &"a".repeat(33)] {
            assert!(Site::parse(bad).is_err(), "{bad:?}");
        }
        let site: Result<Site, _> = serde_json::from_str("\"a.b\"");
        assert!(site.is_err(), "bad sites are refused when decoding too");
    }

    #[test]
    fn subjects_and_keys_carry_the_site() {
        let site = Site::parse("lab").unwrap();
        assert_eq!(
            event_subject(&site, 7, EventKind::PrintStarted),
            "printyard.events.lab.7.print_started"
        );
        assert_eq!(all_events(), "printyard.events.>");
        assert_eq!(
            event_filter(None, Some(7), EventKind::PrintStarted),
            "printyard.events.*.7.print_started"
        );
        assert_eq!(
            event_filter(Some(&site), None, EventKind::PrinterError),
            "printyard.events.lab.*.printer_error"
        );
        assert_eq!(registry_key(&site, 7), "lab.7");
        assert_eq!(
            COMMAND.subject(&site, 7),
            "printyard.printers.lab.7.command"
        );
    }

    #[test]
    fn command_outcomes_are_tagged() {
        let refused = CommandOutcome::Refused {
            reason: "mqtt message verify failed".into(),
            signed_required: true,
        };
        let json = serde_json::to_value(&refused).unwrap();
        assert_eq!(json["outcome"], "refused");
        assert_eq!(
            serde_json::from_value::<CommandOutcome>(json).unwrap(),
            refused
        );
        let request: CommandRequest = serde_json::from_str(r#"{"command":"pause"}"#).unwrap();
        assert_eq!(request.command, PrinterCommand::Pause);
    }

    #[test]
    fn a_record_never_shows_its_access_code_in_debug_output() {
        let record = PrinterRecord {
            id: 1,
            name: "X1".into(),
            site: Site::default(),
            host: "10.0.0.5".into(),
            serial: "00M000000000001".into(),
            access_code: "12345678".into(),
            model: None,
            tls_pin: None,
            tls_insecure: false,
            auto_clear_plate: false,
            maintenance: false,
        };
        assert!(!format!("{record:?}").contains("12345678"));
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(
            serde_json::from_str::<PrinterRecord>(&json).unwrap(),
            record
        );
    }

    #[test]
    fn events_round_trip_and_ids_are_deterministic() {
        let event = FarmEvent {
            id: event_id("S1", EventKind::PrintProgress, "task-9.50"),
            kind: EventKind::PrintProgress,
            site: Site::default(),
            printer_id: 3,
            serial: "S1".into(),
            at: Utc::now(),
            data: serde_json::json!({"progress": 50}),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["kind"], "print_progress");
        assert_eq!(serde_json::from_value::<FarmEvent>(json).unwrap(), event);
        assert_eq!(
            event_id("S1", EventKind::PrintProgress, "task-9.50"),
            "S1.print_progress.task-9.50"
        );
    }
}
