//! The print record's rules on generated histories (proptest): a printer that starts, runs,
//! pauses, finishes, fails, is stopped or aborted, prints from its storage, from its own
//! memory (no file the gateway can fetch) or from the cloud (a task id of its own); gateways that watch it, lose their session, die
//! (their captures with them) and are replaced; the archive handling the events in order or a
//! few out of order, some twice; the printer deleted at the end or seen again. The gateway's
//! real [`Tracker`] makes the events, the archive's real rules ([`decide`]) take them, over a
//! model of the archive table that writes what `steps.rs` writes. Whatever the history:
//!
//! - a printer never has two open archives;
//! - an archive is closed (and so announced) at most once, and every print a gateway saw
//!   start is archived;
//! - a file goes only to an archive of the print of that name;
//! - an end a gateway saw gives the archive that print's own outcome;
//! - once the printer is seen again or deleted, no archive is left open but the one of what it
//!   prints now.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use printyard_archive::print_data::{PrintData, input_of};
use printyard_archive::record::{Known, Step, Target, decide};
use printyard_contracts::archive::ArchiveStatus;
use printyard_contracts::farm::{EventKind, FarmEvent, Site, event_id};
use printyard_contracts::printer::{HmsStatus, PrinterState, PrinterStatus, Temperatures};
use printyard_contracts::prints::EndWitness;
use printyard_gateway::tracker::{Act, CaptureSpec, Tracker};
use proptest::prelude::*;
use serde_json::json;

const PRINTER: i64 = 1;
const SERIAL: &str = "SIM00000001";
const NAMES: [&str; 3] = ["cube", "gear", "bracket"];

/// How a print on the printer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Complete,
    Failed,
    Stopped,
}

#[derive(Debug, Clone)]
struct WorldPrint {
    name: String,
    /// The printer's task id: prints sent through the cloud have one.
    task: Option<String>,
    outcome: Option<Outcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Preparing,
    Printing,
    Paused,
    Finished,
    Failed { cancelled: bool },
}

#[derive(Debug, Clone)]
enum Action {
    StartFromStorage(usize),
    StartFromMemory(usize),
    StartFromCloud(usize),
    Run,
    Progress(u8),
    Pause,
    Resume,
    Finish,
    Fail {
        cancelled: bool,
    },
    Abort,
    /// A report that changes nothing.
    Observe,
    /// The gateway's session drops (reports are missed until it is back).
    Disconnect,
    Connect,
    GatewayDies,
    GatewayStarts,
    CaptureDone,
    Deliver(usize),
    Redeliver(usize),
    /// A pending event is never handled (its publish was lost).
    Lose(usize),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        2 => (0..NAMES.len()).prop_map(Action::StartFromStorage),
        1 => (0..NAMES.len()).prop_map(Action::StartFromMemory),
        1 => (0..NAMES.len()).prop_map(Action::StartFromCloud),
        3 => Just(Action::Run),
        2 => (0u8..=100).prop_map(Action::Progress),
        1 => Just(Action::Pause),
        1 => Just(Action::Resume),
        2 => Just(Action::Finish),
        1 => any::<bool>().prop_map(|cancelled| Action::Fail { cancelled }),
        1 => Just(Action::Abort),
        1 => Just(Action::Observe),
        2 => Just(Action::Disconnect),
        3 => Just(Action::Connect),
        1 => Just(Action::GatewayDies),
        2 => Just(Action::GatewayStarts),
        2 => Just(Action::CaptureDone),
        6 => (0usize..3).prop_map(Action::Deliver),
        1 => (0usize..8).prop_map(Action::Redeliver),
        1 => (0usize..4).prop_map(Action::Lose),
    ]
}

/// An archive row, as far as the rules and the checks need it.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    key: Option<String>,
    aliases: Vec<String>,
    job: Option<String>,
    task: Option<String>,
    open: bool,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    /// The name of the job whose file it got.
    file_of: Option<String>,
    status: ArchiveStatus,
    witness: Option<EndWitness>,
    /// The events that made and closed it.
    made_by: String,
    closed_by: Option<String>,
    /// When its end is to be announced, until it is.
    announce_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct Archive {
    rows: Vec<Row>,
    applied: HashSet<String>,
    /// Archives whose end was announced, in order.
    announced: Vec<i64>,
    /// A gateway's end came after the grace of an `unknown` it would have replaced.
    late_end: bool,
    /// An event was applied, out of patience, before one it follows.
    forced: bool,
}

/// How long an inferred end waits before it is announced (the migration's).
const GRACE: i64 = 10;

fn inferred(witness: EndWitness) -> bool {
    matches!(
        witness,
        EndWitness::NextPrint | EndWitness::PrinterSeenAgain
    )
}

impl Archive {
    fn has_key(row: &Row, key: Option<&str>) -> bool {
        key.is_some_and(|k| row.key.as_deref() == Some(k) || row.aliases.iter().any(|a| a == k))
    }

    fn known(&self, keys: &[String]) -> Vec<Known> {
        self.rows
            .iter()
            .filter(|r| r.open || keys.iter().any(|k| Self::has_key(r, Some(k))))
            .map(|r| Known {
                id: r.id,
                key: r.key.clone(),
                aliases: r.aliases.clone(),
                job_name: r.job.clone(),
                task_id: r.task.clone(),
                open: r.open,
                since: r.started_at.unwrap_or(r.created_at),
                has_file: r.file_of.is_some(),
                provisional: !r.open && r.witness.is_some_and(inferred) && r.announce_at.is_some(),
            })
            .collect()
    }

    /// The relay: announces the ends that are due.
    fn publish(&mut self, now: DateTime<Utc>) {
        for row in &mut self.rows {
            if row.announce_at.is_some_and(|at| at <= now) {
                row.announce_at = None;
                self.announced.push(row.id);
            }
        }
    }

    fn row(&mut self, id: i64) -> &mut Row {
        self.rows.iter_mut().find(|r| r.id == id).expect("a row")
    }

    /// Applies one event as `events::write` and `steps` do, at `now`; `false` when it waits.
    fn apply(&mut self, event: &FarmEvent, patient: bool, now: DateTime<Utc>) -> bool {
        if self.applied.contains(&event.id) {
            return true;
        }
        let data: PrintData = serde_json::from_value(event.data.clone()).unwrap_or_default();
        let Some((input, key)) = input_of(event, &data) else {
            return true;
        };
        let known = self.known(&input.keys());
        let steps = decide(&input, &known, patient);
        if steps == [Step::Wait] {
            return false;
        }
        self.forced |= !patient && decide(&input, &known, true) == [Step::Wait];
        if event.kind == EventKind::PrintEnded
            && steps.is_empty()
            && known.iter().any(|k| {
                let row = self.rows.iter().find(|r| r.id == k.id);
                Self::has_key(row.expect("a row"), key.as_deref())
                    && row.is_some_and(|r| r.witness.is_some_and(inferred))
            })
        {
            self.late_end = true;
        }
        self.applied.insert(event.id.clone());
        let mut created = None;
        for step in steps {
            let target = |t: Target| match t {
                Target::Existing(id) => Some(id),
                Target::Created => created,
            };
            match step {
                Step::Create { unseen_start } => {
                    let existing = key
                        .as_deref()
                        .and_then(|k| self.rows.iter().find(|r| r.key.as_deref() == Some(k)));
                    assert!(
                        !self
                            .rows
                            .iter()
                            .any(|r| Self::has_key(r, key.as_deref()) && r.key != key),
                        "a print created again under an alias of another"
                    );
                    created = Some(match existing {
                        Some(row) => row.id,
                        None => {
                            let id = self.rows.len() as i64 + 1;
                            let started = unseen_start || event.kind == EventKind::PrintStarted;
                            self.rows.push(Row {
                                id,
                                key: key.clone(),
                                aliases: vec![],
                                job: data.job_name.clone(),
                                task: data.task_id.clone(),
                                open: true,
                                created_at: event.at,
                                started_at: started.then_some(event.at),
                                file_of: None,
                                status: ArchiveStatus::Printing,
                                witness: None,
                                made_by: event.id.clone(),
                                closed_by: None,
                                announce_at: None,
                            });
                            id
                        }
                    });
                }
                Step::FillStart(id) => {
                    let row = self.row(id);
                    row.started_at = row.started_at.or(Some(event.at));
                    row.created_at = row.created_at.min(event.at);
                    row.job = row.job.clone().or(data.job_name.clone());
                    row.task = row.task.clone().or(data.task_id.clone());
                }
                Step::Close(on, ending) => {
                    let Some(id) = target(on) else { continue };
                    let row = self.row(id);
                    if row.open {
                        row.open = false;
                        row.status = ending.status;
                        row.witness = Some(ending.witness);
                        row.closed_by = Some(event.id.clone());
                        let grace = inferred(ending.witness);
                        row.announce_at =
                            Some(now + Duration::seconds(if grace { GRACE } else { 0 }));
                    }
                }
                Step::Correct(id, ending) => {
                    let row = self.row(id);
                    assert!(
                        row.announce_at.is_some(),
                        "a correction of an end announced"
                    );
                    if row.witness.is_some_and(inferred) {
                        row.status = ending.status;
                        row.witness = Some(ending.witness);
                        row.closed_by = Some(event.id.clone());
                        row.announce_at = Some(now);
                    }
                }
                Step::AttachFile(on) => {
                    let Some(id) = target(on) else { continue };
                    if data.object.is_some() {
                        self.row(id).file_of = data.job_name.clone();
                    }
                }
                Step::Alias(id) => {
                    if let Some(key) = &key
                        && !self.rows.iter().any(|r| Self::has_key(r, Some(key)))
                    {
                        self.row(id).aliases.push(key.clone());
                    }
                }
                Step::Wait => {}
            }
        }
        true
    }
}

struct Sim {
    clock: DateTime<Utc>,
    prints: Vec<WorldPrint>,
    current: Option<usize>,
    phase: Phase,
    progress: u8,
    /// Names with a file in the printer's storage.
    stored: HashSet<String>,
    /// The gateway holding the printer, and whether its session is up (then it sees every
    /// report: a session misses nothing).
    gateway: Option<(Tracker, bool)>,
    captures: Vec<CaptureSpec>,
    log: Vec<FarmEvent>,
    delivered: usize,
    /// Events not handled yet (indexes into `log`), with the times each waited.
    pending: Vec<(usize, u32)>,
    /// The print the printer showed when each event was published.
    showing: HashMap<String, Option<usize>>,
    /// Gateways started so far; each event's gateway, and the newest one whose event the
    /// archive handled.
    epoch: usize,
    epochs: HashMap<String, usize>,
    newest_handled: usize,
    /// Keys of prints whose start the archive handled.
    started: HashSet<String>,
    /// Whether an event was lost, or applied without waiting for one it follows: then an end
    /// a gateway saw may be lost too.
    uncertain: bool,
    archive: Archive,
}

impl Sim {
    fn new() -> Self {
        Sim {
            clock: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            prints: Vec::new(),
            current: None,
            phase: Phase::Idle,
            progress: 0,
            stored: HashSet::new(),
            gateway: None,
            captures: Vec::new(),
            log: Vec::new(),
            delivered: 0,
            pending: Vec::new(),
            showing: HashMap::new(),
            epoch: 0,
            epochs: HashMap::new(),
            newest_handled: 0,
            started: HashSet::new(),
            uncertain: false,
            archive: Archive::default(),
        }
    }

    fn busy(&self) -> bool {
        matches!(
            self.phase,
            Phase::Preparing | Phase::Printing | Phase::Paused
        )
    }

    fn status(&self) -> PrinterStatus {
        let print = self.current.map(|i| &self.prints[i]);
        PrinterStatus {
            state: match self.phase {
                Phase::Idle => PrinterState::Idle,
                Phase::Preparing => PrinterState::Preparing,
                Phase::Printing => PrinterState::Printing,
                Phase::Paused => PrinterState::Paused,
                Phase::Finished => PrinterState::Finished,
                Phase::Failed { .. } => PrinterState::Failed,
            },
            progress: self.progress,
            remaining_time: 0,
            current_layer: 0,
            total_layers: 0,
            temperatures: Temperatures::default(),
            hms_status: HmsStatus::Ok,
            hms: vec![],
            job_name: print.map(|p| p.name.clone()),
            gcode_file: print.map(|p| format!("{}.gcode.3mf", p.name)),
            task_id: print.and_then(|p| p.task.clone()),
            print_error: match self.phase {
                Phase::Failed { cancelled: true } => Some("0300_400C".into()),
                Phase::Failed { cancelled: false } => Some("0300_8003".into()),
                _ => None,
            },
            filaments: vec![],
            has_ams: false,
        }
    }

    /// A print of `NAMES[name]`: from storage (its file there), from the cloud (its file there
    /// too, and a task id), or from the printer's memory.
    fn start(&mut self, name: usize, stored: bool, cloud: bool) {
        if self.busy() {
            return;
        }
        let name = NAMES[name].to_owned();
        if stored || cloud {
            self.stored.insert(name.clone());
        }
        let task = cloud.then(|| format!("{}", 700_000_000 + self.prints.len()));
        self.prints.push(WorldPrint {
            name,
            task,
            outcome: None,
        });
        self.current = Some(self.prints.len() - 1);
        self.phase = Phase::Preparing;
        self.progress = 0;
    }

    fn end(&mut self, phase: Phase, outcome: Outcome) {
        if !matches!(self.phase, Phase::Printing | Phase::Paused) {
            return;
        }
        if let Some(i) = self.current {
            self.prints[i].outcome = Some(outcome);
        }
        self.phase = phase;
    }

    fn publish(&mut self, kind: EventKind, occurrence: &str, data: serde_json::Value) {
        let id = event_id(SERIAL, kind, occurrence);
        self.showing.entry(id.clone()).or_insert(self.current);
        self.epochs.entry(id.clone()).or_insert(self.epoch);
        self.log.push(FarmEvent {
            id,
            kind,
            site: Site::default(),
            printer_id: PRINTER,
            serial: SERIAL.into(),
            at: self.clock,
            data,
        });
        // The archive's consumer takes the others (progress) and does nothing with them.
        if kind != EventKind::PrintProgress {
            self.pending.push((self.log.len() - 1, 0));
        }
    }

    /// The holding gateway gets the printer's report, if its session is up.
    fn observe(&mut self) {
        let status = self.status();
        let Some((tracker, true)) = self.gateway.as_mut() else {
            return;
        };
        for act in tracker.observe(&status, self.clock, "P", |_| None) {
            match act {
                Act::Publish {
                    kind,
                    occurrence,
                    data,
                } => self.publish(kind, &occurrence, data),
                Act::Capture(spec) => self.captures.push(spec),
            }
        }
    }

    /// The oldest capture finds the file of its job's name, if the storage has one.
    fn capture_done(&mut self) {
        if self.captures.is_empty() {
            return;
        }
        let spec = self.captures.remove(0);
        let job = spec.subtask_name.clone().unwrap_or_default();
        let data = if self.stored.contains(&job) {
            json!({"print": spec.print_key, "object": "capture/o", "filename": format!("{job}.gcode.3mf"),
                   "resumed": spec.resumed, "job_name": spec.subtask_name, "task_id": spec.task_id})
        } else {
            json!({"print": spec.print_key, "error": "not on the printer",
                   "resumed": spec.resumed, "job_name": spec.subtask_name, "task_id": spec.task_id})
        };
        let occurrence = format!("{}.", spec.print_key);
        self.publish(EventKind::PrintFile, &occurrence, data);
    }

    /// The archive handles one of the first `within + 1` pending events (another replica
    /// may take the one before), patiently the first three times it comes early.
    fn deliver(&mut self, within: usize, patient: bool) {
        if self.pending.is_empty() {
            return;
        }
        let at = within.min(self.pending.len() - 1);
        let (index, waited) = self.pending[at];
        let event = self.log[index].clone();
        let patient = patient && waited < 3;
        if self.archive.apply(&event, patient, self.clock) {
            // An event of a gateway handled after one of the gateway that replaced it: the
            // takeover raced the old gateway's last events (two replicas at once), and a print
            // of the same job name may take the other's end (the documented limit).
            let epoch = self.epochs.get(&event.id).copied().unwrap_or(0);
            self.uncertain |= epoch < self.newest_handled;
            self.newest_handled = self.newest_handled.max(epoch);
            self.pending.remove(at);
            self.delivered += 1;
            if event.kind == EventKind::PrintStarted {
                self.started.insert(format!(
                    "{PRINTER}/{}",
                    event.data["print"].as_str().unwrap_or("")
                ));
            }
        } else {
            self.pending[at].1 += 1;
        }
    }

    fn act(&mut self, action: &Action) {
        self.clock += Duration::seconds(1);
        let before = (self.phase, self.current, self.progress);
        match *action {
            Action::StartFromStorage(name) => self.start(name, true, false),
            Action::StartFromMemory(name) => self.start(name, false, false),
            Action::StartFromCloud(name) => self.start(name, false, true),
            Action::Run if self.phase == Phase::Preparing => self.phase = Phase::Printing,
            Action::Progress(p) if self.phase == Phase::Printing => {
                self.progress = self.progress.max(p)
            }
            Action::Pause if self.phase == Phase::Printing => self.phase = Phase::Paused,
            Action::Resume if self.phase == Phase::Paused => self.phase = Phase::Printing,
            Action::Finish => {
                self.end(Phase::Finished, Outcome::Complete);
                if self.phase == Phase::Finished {
                    self.progress = 100;
                }
            }
            Action::Fail { cancelled } => self.end(
                Phase::Failed { cancelled },
                if cancelled {
                    Outcome::Stopped
                } else {
                    Outcome::Failed
                },
            ),
            Action::Abort => self.end(Phase::Idle, Outcome::Stopped),
            Action::Observe => self.observe(),
            Action::Disconnect => {
                if let Some((tracker, up)) = self.gateway.as_mut()
                    && *up
                {
                    *up = false;
                    tracker.reconnected();
                }
            }
            Action::Connect => {
                if let Some((_, up)) = self.gateway.as_mut()
                    && !*up
                {
                    *up = true;
                    self.observe();
                }
            }
            Action::GatewayDies => {
                self.gateway = None;
                self.captures.clear();
            }
            Action::GatewayStarts if self.gateway.is_none() => {
                self.epoch += 1;
                self.gateway = Some((Tracker::new(), true));
                self.observe();
            }
            Action::CaptureDone => self.capture_done(),
            Action::Deliver(within) => self.deliver(within, true),
            Action::Redeliver(back) => {
                let handled: Vec<usize> = (0..self.log.len())
                    .filter(|i| self.archive.applied.contains(&self.log[*i].id))
                    .collect();
                if !handled.is_empty() {
                    let index = handled[handled.len() - 1 - back % handled.len()];
                    let event = self.log[index].clone();
                    self.archive.apply(&event, false, self.clock);
                }
            }
            Action::Lose(at) if !self.pending.is_empty() => {
                let at = at.min(self.pending.len() - 1);
                self.pending.remove(at);
                self.uncertain = true;
            }
            _ => {}
        }
        // A live session sees every change of the printer.
        if (self.phase, self.current, self.progress) != before {
            self.observe();
        }
        self.archive.publish(self.clock);
        self.check();
    }

    /// Every event handled, in order.
    fn settle(&mut self) {
        while !self.captures.is_empty() {
            self.capture_done();
        }
        while !self.pending.is_empty() {
            self.deliver(0, false);
            self.check();
        }
    }

    /// What must hold after every step.
    fn check(&self) {
        let open: Vec<&Row> = self.archive.rows.iter().filter(|r| r.open).collect();
        assert!(open.len() <= 1, "two open archives: {open:#?}");
        let mut seen = HashSet::new();
        for id in &self.archive.announced {
            assert!(seen.insert(id), "archive {id} announced twice");
        }
        for row in &self.archive.rows {
            if let Some(file) = &row.file_of {
                assert_eq!(
                    Some(file),
                    row.job.as_ref(),
                    "archive {} got the file of another print: {row:#?}",
                    row.id
                );
            }
            assert!(
                row.open || row.announce_at.is_some() || self.archive.announced.contains(&row.id),
                "archive {} closed and never announced",
                row.id
            );
            // An end a gateway saw is the end of the print the printer showed, of this job.
            if row.witness == Some(EndWitness::Gateway) && row.status != ArchiveStatus::Unknown {
                let event = row.closed_by.as_ref().expect("closed by an event");
                let index = self.showing[event].expect("an end of a print the printer showed");
                let print = &self.prints[index];
                // Prints that carry a task id are told apart even under one name: the end is
                // the one of the print the archive was made for.
                // (What a print's start or state showed; a file or an end may be published
                // after the printer moved on.)
                let made_at_start = ["print_started", "printer_state"]
                    .iter()
                    .any(|kind| row.made_by.contains(&format!(".{kind}.")));
                let made_for = self.showing.get(&row.made_by).copied().flatten();
                if print.task.is_some()
                    && made_at_start
                    && !self.uncertain
                    && !self.archive.forced
                    && !self.archive.late_end
                    && let Some(made_for) = made_for
                {
                    assert_eq!(made_for, index, "another print's end: {row:#?}");
                }
                let expected = match print.outcome {
                    Some(Outcome::Complete) => ArchiveStatus::Success,
                    Some(Outcome::Failed) => ArchiveStatus::Failed,
                    Some(Outcome::Stopped) => ArchiveStatus::Stopped,
                    None => ArchiveStatus::Printing,
                };
                assert_eq!(row.status, expected, "{row:#?} is {print:?}");
                assert_eq!(row.job.as_ref(), Some(&print.name), "{row:#?}");
            }
        }
    }

    /// After the history: a gateway sees the printer again (or it is deleted), and every
    /// event is handled.
    fn finish(&mut self, deleted: bool) {
        self.settle();
        if deleted {
            self.clock += Duration::seconds(1);
            let at = self.clock;
            self.log.push(FarmEvent {
                id: event_id(SERIAL, EventKind::PrinterRemoved, "removed"),
                kind: EventKind::PrinterRemoved,
                site: Site::default(),
                printer_id: PRINTER,
                serial: SERIAL.into(),
                at,
                data: json!({}),
            });
            self.pending.push((self.log.len() - 1, 0));
        } else {
            self.epoch += 1;
            self.gateway = Some((Tracker::new(), true));
            self.clock += Duration::seconds(1);
            self.observe();
        }
        self.settle();
        // The relay announces what is due, grace periods included.
        self.clock += Duration::seconds(GRACE);
        self.archive.publish(self.clock);
        for row in self.archive.rows.iter().filter(|r| !r.open) {
            assert!(
                self.archive.announced.contains(&row.id),
                "archive {} closed unannounced",
                row.id
            );
        }
        let open: Vec<&Row> = self.archive.rows.iter().filter(|r| r.open).collect();
        let shown = self.current.map(|i| self.prints[i].name.clone());
        for row in open {
            assert!(
                !deleted && self.busy() && row.job == shown,
                "left open: {row:#?}; the printer is {:?} with {shown:?}",
                self.phase
            );
        }
        // Nothing lost, nothing forced, nothing later than the grace: every end a gateway saw
        // is its print's record.
        if !self.uncertain && !self.archive.late_end && !self.archive.forced {
            for event in self.log.iter().filter(|e| e.kind == EventKind::PrintEnded) {
                let key = format!("{PRINTER}/{}", event.data["print"].as_str().unwrap_or(""));
                let expected = match event.data["outcome"].as_str() {
                    Some("complete") => ArchiveStatus::Success,
                    Some("failed") => ArchiveStatus::Failed,
                    Some("stopped") => ArchiveStatus::Stopped,
                    _ => ArchiveStatus::Unknown,
                };
                let row = self
                    .archive
                    .rows
                    .iter()
                    .find(|r| Archive::has_key(r, Some(&key)));
                let row = row.unwrap_or_else(|| panic!("no archive of {key}"));
                assert_eq!(row.status, expected, "the end a gateway saw: {row:#?}");
            }
        }
        for key in &self.started {
            assert!(
                self.archive
                    .rows
                    .iter()
                    .any(|r| Archive::has_key(r, Some(key))),
                "print {key} started and was never archived"
            );
        }
    }
}

fn run(actions: &[Action], deleted: bool) -> Sim {
    let mut sim = Sim::new();
    for action in actions {
        sim.act(action);
    }
    sim.finish(deleted);
    sim
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_print_record_holds_whatever_happens(
        actions in prop::collection::vec(action(), 1..120),
        deleted in any::<bool>(),
    ) {
        run(&actions, deleted);
    }
}

/// The demo farm's start: a printer already preparing a print when first seen gets one
/// archive, which its start, file and end reach.
#[test]
fn a_print_found_preparing_is_one_archive() {
    use Action::*;
    let sim = run(
        &[
            StartFromStorage(0),
            GatewayStarts,
            Run,
            CaptureDone,
            Finish,
            Deliver(0),
        ],
        false,
    );
    let rows = &sim.archive.rows;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].status, ArchiveStatus::Success);
    assert_eq!(rows[0].file_of.as_deref(), Some("cube"));
    let kinds: BTreeMap<&str, usize> = sim.log.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e.kind.as_str()).or_default() += 1;
        m
    });
    assert_eq!(kinds["print_started"], 1);
    assert_eq!(kinds["print_ended"], 1);
}

/// Two replicas at once: the next print's start is handled before the previous print's end
/// (both from one gateway). The start waits for the end, which keeps its own outcome.
#[test]
fn a_start_handled_before_the_previous_end_waits_for_it() {
    use Action::*;
    let mut sim = Sim::new();
    for action in [
        GatewayStarts,
        StartFromStorage(0),
        Run,
        Fail { cancelled: false },
        StartFromStorage(1),
        Run,
    ] {
        sim.act(&action);
    }
    let kinds: Vec<&str> = sim
        .pending
        .iter()
        .map(|(i, _)| sim.log[*i].kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "printer_state",
            "print_started",
            "print_ended",
            "print_started"
        ]
    );
    sim.act(&Deliver(0));
    sim.act(&Deliver(0));
    // The second start comes first, and waits.
    sim.act(&Deliver(1));
    assert_eq!(sim.pending.len(), 2, "the start waits");
    assert_eq!(sim.archive.rows.len(), 1);
    sim.finish(false);
    assert!(!sim.uncertain && !sim.archive.forced);
    let first = &sim.archive.rows[0];
    assert_eq!(first.status, ArchiveStatus::Failed, "{first:#?}");
    assert_eq!(first.witness, Some(EndWitness::Gateway));
}

/// A takeover racing the previous gateway's last event: the new gateway's state (the printer
/// idle) is handled before the old gateway's end of the print. The inferred `unknown` waits
/// its grace unannounced, and the end the old gateway saw replaces it.
#[test]
fn an_end_handled_after_a_newer_gateways_state_replaces_the_inference() {
    use Action::*;
    let mut sim = Sim::new();
    for action in [
        GatewayStarts,
        StartFromStorage(0),
        Run,
        Deliver(0),
        Deliver(0),
        Finish,
        GatewayDies,
        Abort,
        GatewayStarts,
    ] {
        sim.act(&action);
    }
    let kinds: Vec<&str> = sim
        .pending
        .iter()
        .map(|(i, _)| sim.log[*i].kind.as_str())
        .collect();
    assert_eq!(kinds, ["print_ended", "printer_state"]);
    sim.act(&Deliver(1));
    let row = &sim.archive.rows[0];
    assert_eq!(row.status, ArchiveStatus::Success, "seen again: finished");
    assert_eq!(row.witness, Some(EndWitness::PrinterSeenAgain));
    assert!(
        row.announce_at.is_some() && sim.archive.announced.is_empty(),
        "in its grace"
    );
    sim.act(&Deliver(0));
    let row = &sim.archive.rows[0];
    assert_eq!(
        row.witness,
        Some(EndWitness::Gateway),
        "the gateway's end replaced it"
    );
    sim.finish(false);
    assert_eq!(sim.archive.announced, [1], "announced once");
}
