//! Which prints a held printer's statuses mean, and what the farm is told of them: the print
//! events (`print_started`, `print_progress`, `print_ended`), what the printer shows when a
//! session begins (`printer_state`), and where the print's 3MF comes from (the library file
//! of a job this gateway sent, else fetched from the printer). Pure: the connection publishes
//! and fetches what it is told, so the rules can be tried on generated sequences.
//!
//! Every print this tracker follows gets exactly one `print_ended` (complete, failed, stopped,
//! or replaced when the printer went on to another job unseen), under the key it was followed
//! by, before the next print's `print_started`. The next `print_started` names that print as
//! `previous`, and `printer_state` as `ended`: the archive applies them after that end, and
//! never closes that print from the state.

use chrono::{DateTime, Utc};
use printyard_bambu::lifecycle::{Lifecycle, PrintEvent};
use printyard_contracts::farm::EventKind;
use printyard_contracts::printer::{HmsSeverity, PrinterStatus};
use printyard_contracts::prints::{PrintEndSeen, SeenOutcome};
use printyard_contracts::queue::job_of;
use serde_json::{Value, json};

/// The library file of a queued job this gateway sent (or is sending) to the printer.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub archive_id: i64,
    pub plate: u32,
    pub file_name: String,
    /// The AMS mapping the print was sent with (empty: fed from the external spool).
    pub ams_mapping: Vec<i32>,
}

/// What to fetch from the printer for the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureSpec {
    pub print_key: String,
    pub subtask_name: Option<String>,
    /// The printer's task id of the print, when it has one.
    pub task_id: Option<String>,
    pub gcode_file: Option<String>,
    /// The plate printed, when the printer says (`…/plate_2.gcode`).
    pub plate: Option<u32>,
    /// Resumed by a gateway that found the print already running: the archive fills the open
    /// print's file only if it has none.
    pub resumed: bool,
}

/// What the connection does for an observation, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    Publish {
        kind: EventKind,
        /// With the printer's serial and the kind, the event's id.
        occurrence: String,
        data: Value,
    },
    Capture(CaptureSpec),
}

/// A print followed: its key (the same in all its events), job name and task id.
#[derive(Debug, Clone, Default)]
struct Followed {
    key: String,
    job: Option<String>,
    task: Option<String>,
}

impl Followed {
    fn of(status: &PrinterStatus, now: DateTime<Utc>) -> Self {
        Self {
            key: print_key(status, now),
            job: status.job_name.clone(),
            task: status.task_id.clone(),
        }
    }
}

/// Follows one printer's prints.
#[derive(Debug, Default)]
pub struct Tracker {
    lifecycle: Lifecycle,
    /// The print followed.
    print: Option<Followed>,
    /// The key of the last print whose end this tracker published.
    last_ended: Option<String>,
    /// Whether this session's first full report was announced (`printer_state`).
    announced: bool,
}

impl Tracker {
    pub fn new() -> Self {
        Self {
            lifecycle: Lifecycle::new(),
            ..Self::default()
        }
    }

    /// The session ended: the next status is a first look, announced as `printer_state`.
    pub fn reconnected(&mut self) {
        self.lifecycle.reconnected();
        self.announced = false;
    }

    /// The key of the print followed, if one is under way.
    pub fn following(&self) -> Option<&str> {
        self.print
            .as_ref()
            .filter(|_| self.lifecycle.active())
            .map(|p| p.key.as_str())
    }

    /// What the latest full status means. `sent` gives the library file of a job this gateway
    /// sent; `now` stamps the key of a print seen for the first time.
    pub fn observe(
        &mut self,
        status: &PrinterStatus,
        now: DateTime<Utc>,
        printer_name: &str,
        sent: impl Fn(i64) -> Option<Sent>,
    ) -> Vec<Act> {
        let mut acts = Vec::new();
        for event in self.lifecycle.observe(status) {
            self.print_event(event, status, now, printer_name, &sent, &mut acts);
        }
        let knew_the_print = self.print.is_some();
        if self.lifecycle.active() && self.print.is_none() {
            self.print = Some(Followed::of(status, now));
        }
        if !self.announced {
            self.announced = true;
            self.announce_state(status, now, printer_name, knew_the_print, &sent, &mut acts);
        }
        acts
    }

    fn print_event(
        &mut self,
        event: PrintEvent,
        status: &PrinterStatus,
        now: DateTime<Utc>,
        printer_name: &str,
        sent: &impl Fn(i64) -> Option<Sent>,
        acts: &mut Vec<Act>,
    ) {
        if event == PrintEvent::Started || self.print.is_none() {
            self.print = Some(Followed::of(status, now));
        }
        let Followed { key, job, task } = self.print.clone().unwrap_or_default();
        let queue_job = job.as_deref().and_then(job_of);
        let outcome = match &event {
            PrintEvent::Started => {
                let data = json!({
                    "print": key,
                    "printer_name": printer_name,
                    "job_name": status.job_name,
                    "gcode_file": status.gcode_file,
                    "task_id": status.task_id,
                    "queue_job": queue_job,
                    "plate": plate_of(status),
                    // The print before it on this printer, whose end this gateway published.
                    "previous": self.last_ended,
                    // Which tray feeds each filament, for a print this gateway sent.
                    "ams_mapping": queue_job.and_then(sent).map(|s| s.ams_mapping),
                });
                acts.push(publish(EventKind::PrintStarted, format!("{key}."), data));
                acts.push(file_of(
                    &key,
                    status,
                    queue_job.and_then(sent),
                    printer_name,
                ));
                return;
            }
            PrintEvent::Progress(p) => {
                let data = json!({
                    "print": key,
                    "printer_name": printer_name,
                    "progress": p,
                    "job_name": status.job_name,
                    "queue_job": queue_job,
                });
                acts.push(publish(
                    EventKind::PrintProgress,
                    format!("{key}.{p}"),
                    data,
                ));
                return;
            }
            PrintEvent::Completed => SeenOutcome::Complete,
            PrintEvent::Failed { .. } => SeenOutcome::Failed,
            PrintEvent::Stopped => SeenOutcome::Stopped,
            PrintEvent::Replaced => SeenOutcome::Replaced,
        };
        let replaced = outcome == SeenOutcome::Replaced;
        let seen = PrintEndSeen {
            print: key.clone(),
            printer_name: Some(printer_name.to_owned()),
            job_name: job.clone(),
            task_id: task,
            // What the printer shows belongs to the print that replaced this one.
            gcode_file: status.gcode_file.clone().filter(|_| !replaced),
            outcome: Some(outcome),
            progress: (!replaced).then_some(f64::from(status.progress)),
            print_error: match event {
                PrintEvent::Failed { print_error } => print_error,
                _ => None,
            },
            queue_job,
        };
        acts.push(publish(
            EventKind::PrintEnded,
            format!("{key}."),
            serde_json::to_value(seen).unwrap_or_default(),
        ));
        self.last_ended = Some(key);
        self.print = None;
    }

    /// The first full report of a session: what the printer shows (`printer_state`), so that a
    /// print that ended while no gateway watched is closed from it. A print already running
    /// that this tracker did not follow (a gateway start or a takeover) may have lost its
    /// capture with the gateway that held it: the capture is resumed while the file is still on
    /// the printer (the archive keeps a file it already has).
    fn announce_state(
        &mut self,
        status: &PrinterStatus,
        now: DateTime<Utc>,
        printer_name: &str,
        knew_the_print: bool,
        sent: &impl Fn(i64) -> Option<Sent>,
        acts: &mut Vec<Act>,
    ) {
        let following = self.following().map(str::to_owned);
        let queue_job = status.job_name.as_deref().and_then(job_of);
        let data = json!({
            "state": status.state,
            "job_name": status.job_name,
            "gcode_file": status.gcode_file,
            "task_id": status.task_id,
            "print_error": status.print_error,
            // The HMS errors it shows (errors kept open elsewhere and not among them are gone).
            "hms_errors": status.hms.iter()
                .filter(|e| matches!(e.severity, HmsSeverity::Fatal | HmsSeverity::Serious))
                .map(|e| e.code.as_str()).collect::<Vec<_>>(),
            "progress": status.progress,
            "printer_name": printer_name,
            // The key this gateway follows a running print under.
            "print": following,
            // The last print whose end this gateway published (from this same report, or before).
            "ended": self.last_ended,
            "queue_job": queue_job,
        });
        let occurrence = format!("seen.{}", now.timestamp_millis());
        acts.push(publish(EventKind::PrinterState, occurrence, data));
        if let Some(key) = following
            && !knew_the_print
        {
            let source = queue_job.and_then(sent);
            acts.push(match source {
                Some(_) => file_of(&key, status, source, printer_name),
                None => Act::Capture(CaptureSpec {
                    print_key: key,
                    subtask_name: status.job_name.clone(),
                    task_id: status.task_id.clone(),
                    gcode_file: status.gcode_file.clone(),
                    plate: plate_of(status),
                    resumed: true,
                }),
            });
        }
    }
}

fn publish(kind: EventKind, occurrence: String, data: Value) -> Act {
    Act::Publish {
        kind,
        occurrence,
        data,
    }
}

/// Where a started print's file comes from: the library file of a job this gateway sent (no
/// need to fetch the same bytes back), else the printer.
fn file_of(key: &str, status: &PrinterStatus, sent: Option<Sent>, printer_name: &str) -> Act {
    match sent {
        Some(sent) => publish(
            EventKind::PrintFile,
            format!("{key}."),
            json!({
                "print": key,
                "printer_name": printer_name,
                "source_archive": sent.archive_id,
                "plate": sent.plate,
                "filename": sent.file_name,
                "job_name": status.job_name,
                "task_id": status.task_id,
                "queue_job": status.job_name.as_deref().and_then(job_of),
            }),
        ),
        None => Act::Capture(CaptureSpec {
            print_key: key.to_owned(),
            subtask_name: status.job_name.clone(),
            task_id: status.task_id.clone(),
            gcode_file: status.gcode_file.clone(),
            plate: plate_of(status),
            resumed: false,
        }),
    }
}

/// The plate a printer says it prints: X1 printers report `/data/Metadata/plate_2.gcode`.
fn plate_of(status: &PrinterStatus) -> Option<u32> {
    status
        .gcode_file
        .as_deref()
        .and_then(printyard_bambu::commands::plate_of_gcode)
}

/// A print's identity: its name and file, and when this gateway first saw it.
fn print_key(status: &PrinterStatus, now: DateTime<Utc>) -> String {
    printyard_contracts::farm::print_key(
        status.job_name.as_deref(),
        status.gcode_file.as_deref(),
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use printyard_contracts::printer::{HmsStatus, PrinterState, Temperatures};

    fn status(job: &str, state: PrinterState, progress: u8) -> PrinterStatus {
        PrinterStatus {
            state,
            progress,
            remaining_time: 0,
            current_layer: 0,
            total_layers: 0,
            temperatures: Temperatures::default(),
            hms_status: HmsStatus::Ok,
            hms: vec![],
            job_name: Some(job.into()),
            gcode_file: Some("/data/Metadata/plate_2.gcode".into()),
            task_id: None,
            print_error: None,
            filaments: vec![],
            has_ams: false,
        }
    }

    fn kinds(acts: &[Act]) -> Vec<String> {
        acts.iter()
            .map(|a| match a {
                Act::Publish { kind, .. } => kind.as_str().to_owned(),
                Act::Capture(c) if c.resumed => "capture (resumed)".to_owned(),
                Act::Capture(_) => "capture".to_owned(),
            })
            .collect()
    }

    fn data_of(acts: &[Act], wanted: EventKind) -> Value {
        acts.iter()
            .find_map(|a| match a {
                Act::Publish { kind, data, .. } if *kind == wanted => Some(data.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }

    use PrinterState::*;

    #[test]
    fn a_print_is_started_captured_and_ended_once_under_one_key() {
        let mut tracker = Tracker::new();
        let none = |_| None;
        let now = Utc::now();
        assert_eq!(
            kinds(&tracker.observe(&status("cube", Idle, 0), now, "P", none)),
            ["printer_state"]
        );
        let started = tracker.observe(&status("cube", Printing, 1), now, "P", none);
        assert_eq!(kinds(&started), ["print_started", "capture"]);
        let Act::Capture(capture) = &started[1] else {
            panic!("a capture")
        };
        assert_eq!(capture.plate, Some(2), "the plate the printer names");
        let key = data_of(&started, EventKind::PrintStarted)["print"].clone();
        let ended = tracker.observe(&status("cube", Finished, 100), now, "P", none);
        assert_eq!(
            kinds(&ended),
            [
                "print_progress",
                "print_progress",
                "print_progress",
                "print_ended"
            ]
        );
        let end = data_of(&ended, EventKind::PrintEnded);
        assert_eq!(end["print"], key);
        assert_eq!(end["outcome"], "complete");
        // The next print names the one before it.
        let next = tracker.observe(&status("gear", Printing, 1), now, "P", none);
        assert_eq!(data_of(&next, EventKind::PrintStarted)["previous"], key);
    }

    #[test]
    fn a_job_sent_here_takes_the_library_file_with_its_plate() {
        let mut tracker = Tracker::new();
        let sent = |job| {
            (job == 7).then(|| Sent {
                archive_id: 3,
                plate: 2,
                file_name: "cube-pyq7.gcode.3mf".into(),
                ams_mapping: vec![-1, 5],
            })
        };
        let now = Utc::now();
        tracker.observe(&status("cube-pyq7", Preparing, 0), now, "P", sent);
        let started = tracker.observe(&status("cube-pyq7", Printing, 1), now, "P", sent);
        assert_eq!(kinds(&started), ["print_started", "print_file"]);
        let file = data_of(&started, EventKind::PrintFile);
        assert_eq!(
            (file["source_archive"].clone(), file["plate"].clone()),
            (json!(3), json!(2))
        );
        assert_eq!(data_of(&started, EventKind::PrintStarted)["queue_job"], 7);
        assert_eq!(
            data_of(&started, EventKind::PrintStarted)["ams_mapping"],
            json!([-1, 5]),
            "the archive learns which tray fed each filament"
        );
    }

    #[test]
    fn a_print_found_running_is_followed_under_one_key_and_its_capture_resumed() {
        let mut tracker = Tracker::new();
        let seen = tracker.observe(&status("cube", Printing, 40), Utc::now(), "P", |_| None);
        assert_eq!(kinds(&seen), ["printer_state", "capture (resumed)"]);
        let state = data_of(&seen, EventKind::PrinterState);
        let Act::Capture(capture) = &seen[1] else {
            panic!("a capture")
        };
        assert_eq!(state["print"], json!(capture.print_key));
        let ended = tracker.observe(&status("cube", Finished, 100), Utc::now(), "P", |_| None);
        assert_eq!(
            data_of(&ended, EventKind::PrintEnded)["print"],
            state["print"]
        );
        // A printer found preparing is not followed yet: no key, nothing to capture.
        let mut tracker = Tracker::new();
        let seen = tracker.observe(&status("cube", Preparing, 0), Utc::now(), "P", |_| None);
        assert_eq!(kinds(&seen), ["printer_state"]);
        assert_eq!(
            data_of(&seen, EventKind::PrinterState)["print"],
            Value::Null
        );
    }

    #[test]
    fn an_end_seen_in_a_sessions_first_report_is_named_in_its_printer_state() {
        let mut tracker = Tracker::new();
        let now = Utc::now();
        tracker.observe(&status("cube", Idle, 0), now, "P", |_| None);
        let started = tracker.observe(&status("cube", Printing, 10), now, "P", |_| None);
        let key = data_of(&started, EventKind::PrintStarted)["print"].clone();
        tracker.reconnected();
        let seen = tracker.observe(&status("gear", Printing, 30), now, "P", |_| None);
        assert_eq!(
            kinds(&seen),
            ["print_ended", "printer_state", "capture (resumed)"]
        );
        let end = data_of(&seen, EventKind::PrintEnded);
        assert_eq!(end["outcome"], "replaced");
        assert_eq!(end["job_name"], "cube", "the replaced print's own job");
        let state = data_of(&seen, EventKind::PrinterState);
        assert_eq!(state["ended"], key);
        assert_ne!(state["print"], key, "the new print has a key of its own");
    }
}
