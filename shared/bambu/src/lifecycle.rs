//! Print lifecycle as clients read it (protocol notes): a print starts when `gcode_state`
//! becomes `RUNNING` with a job, not because the first report after connecting says `RUNNING`
//! (that print was already running); it ends on `FINISH` (complete), `FAILED` (failed, or stopped
//! when `print_error` is 0300_400C), or `IDLE` straight after running (aborted, stopped).
//! Progress milestones are 25, 50 and 75 %, each reported once per print.
//!
//! A print is one job: a printer that shows another job (`subtask_name`, or another `task_id`
//! where it names one) while one is under way went on to another print unseen (a reconnect, a coalesced report): the first is ended as
//! [`PrintEvent::Replaced`] before the second starts, so no end is ever left out.

use printyard_contracts::printer::{HmsEntry, HmsSeverity, PrinterState, PrinterStatus};

use crate::codes::print_error_code;

/// What a status change means for the farm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrintEvent {
    Started,
    Progress(u8),
    Completed,
    Failed {
        print_error: Option<String>,
    },
    Stopped,
    /// The printer shows another job: this print's end was not seen.
    Replaced,
}

const MILESTONES: [u8; 3] = [25, 50, 75];

/// Follows one printer's statuses and says which print events they mean.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    /// A print is under way (seen running, not yet ended).
    active: bool,
    /// The job of the print under way (name, task id), when the printer named it.
    job: Job,
    /// The highest milestone reported for the active print.
    milestone: u8,
    /// No status seen since (re)connecting.
    fresh: bool,
    seen_any: bool,
}

impl Lifecycle {
    pub fn new() -> Self {
        Self {
            fresh: true,
            ..Self::default()
        }
    }

    /// The connection was re-established: the next status is a first look, not a transition.
    pub fn reconnected(&mut self) {
        self.fresh = true;
    }

    /// Whether a print is under way.
    pub fn active(&self) -> bool {
        self.active
    }

    /// Feeds the latest status; returns the events it means, in order.
    pub fn observe(&mut self, status: &PrinterStatus) -> Vec<PrintEvent> {
        let mut events = Vec::new();
        let first_look = self.fresh || !self.seen_any;
        self.fresh = false;
        self.seen_any = true;
        let busy = matches!(status.state, PrinterState::Printing | PrinterState::Paused);
        let job = Job::of(status);
        if self.active && self.job.is_another(&job) {
            // Whatever the other job is doing, this one ended unseen. Then as for a printer
            // not printing: the other job is followed from a first look, and starts when it
            // runs (its end, if it shows ended, is not this print's).
            self.active = false;
            events.push(PrintEvent::Replaced);
        }
        if first_look && !self.active {
            // Already printing when we connected: follow it without announcing a start, and
            // without re-announcing milestones it has passed.
            if busy {
                self.active = true;
                self.job = job;
                self.milestone = passed_milestone(status.progress);
            }
            return events;
        }
        match status.state {
            PrinterState::Printing if !self.active => self.start(job.clone(), &mut events),
            PrinterState::Finished if self.active => {
                self.milestones_up_to(100, &mut events);
                self.active = false;
                events.push(PrintEvent::Completed);
            }
            PrinterState::Failed if self.active => {
                self.active = false;
                let cancelled = status.print_error.as_deref()
                    == Some(&print_error_code(crate::codes::PRINT_ERROR_CANCELLED));
                events.push(if cancelled {
                    PrintEvent::Stopped
                } else {
                    PrintEvent::Failed {
                        print_error: status.print_error.clone(),
                    }
                });
            }
            PrinterState::Idle if self.active => {
                self.active = false;
                events.push(PrintEvent::Stopped);
            }
            _ => {}
        }
        if self.active {
            // A job named only after the print began is still that print.
            self.job.fill(job);
        }
        if self.active && status.state == PrinterState::Printing {
            self.milestones_up_to(status.progress, &mut events);
        }
        events
    }

    fn start(&mut self, job: Job, events: &mut Vec<PrintEvent>) {
        self.active = true;
        self.job = job;
        self.milestone = 0;
        events.push(PrintEvent::Started);
    }

    fn milestones_up_to(&mut self, progress: u8, events: &mut Vec<PrintEvent>) {
        for m in MILESTONES {
            if progress >= m && self.milestone < m {
                self.milestone = m;
                events.push(PrintEvent::Progress(m));
            }
        }
    }
}

/// What tells one print from another: its job name and the printer's task id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Job {
    name: Option<String>,
    task: Option<String>,
}

impl Job {
    fn of(status: &PrinterStatus) -> Self {
        Self {
            name: status.job_name.clone().filter(|j| !j.is_empty()),
            task: status.task_id.clone().filter(|t| !t.is_empty()),
        }
    }

    /// Whether `shown` is another job. A printer that names no job does not tell; one that
    /// names a job tells by its name, and by its task id (a print's task id never changes: a
    /// LAN print has none, a cloud print its own).
    fn is_another(&self, shown: &Job) -> bool {
        let Some(name) = &shown.name else {
            return false;
        };
        self.name.as_ref().is_some_and(|followed| followed != name) || self.task != shown.task
    }

    fn fill(&mut self, shown: Job) {
        self.name = self.name.take().or(shown.name);
        self.task = self.task.take().or(shown.task);
    }
}

fn passed_milestone(progress: u8) -> u8 {
    MILESTONES
        .into_iter()
        .filter(|m| progress >= *m)
        .max()
        .unwrap_or(0)
}

/// HMS errors (fatal or serious) in `current` that were not in `previous`.
pub fn new_hms_errors<'a>(previous: &[HmsEntry], current: &'a [HmsEntry]) -> Vec<&'a HmsEntry> {
    current
        .iter()
        .filter(|e| matches!(e.severity, HmsSeverity::Fatal | HmsSeverity::Serious))
        .filter(|e| !previous.iter().any(|p| p.code == e.code))
        .collect()
}

/// HMS errors (fatal or serious) in `previous` that are not in `current`: cleared.
pub fn cleared_hms_errors<'a>(previous: &'a [HmsEntry], current: &[HmsEntry]) -> Vec<&'a HmsEntry> {
    new_hms_errors(current, previous)
}

#[cfg(test)]
mod tests {
    use super::*;
    use printyard_contracts::printer::{HmsStatus, Temperatures};

    fn status(state: PrinterState, progress: u8, print_error: Option<&str>) -> PrinterStatus {
        of_job("job", state, progress, print_error)
    }

    fn of_job(
        job: &str,
        state: PrinterState,
        progress: u8,
        print_error: Option<&str>,
    ) -> PrinterStatus {
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
            gcode_file: None,
            task_id: None,
            print_error: print_error.map(str::to_owned),
            filaments: vec![],
            has_ams: false,
        }
    }

    fn run(steps: &[(PrinterState, u8, Option<&str>)]) -> Vec<PrintEvent> {
        let mut lifecycle = Lifecycle::new();
        steps
            .iter()
            .flat_map(|(s, p, e)| lifecycle.observe(&status(*s, *p, *e)))
            .collect()
    }

    use PrinterState::*;

    #[test]
    fn a_print_from_idle_starts_passes_milestones_once_and_completes() {
        let events = run(&[
            (Idle, 0, None),
            (Preparing, 0, None),
            (Printing, 1, None),
            (Printing, 30, None),
            (Printing, 31, None),
            (Paused, 31, None),
            (Printing, 60, None),
            (Printing, 80, None),
            (Finished, 100, None),
            (Idle, 0, None),
        ]);
        assert_eq!(
            events,
            vec![
                PrintEvent::Started,
                PrintEvent::Progress(25),
                PrintEvent::Progress(50),
                PrintEvent::Progress(75),
                PrintEvent::Completed,
            ]
        );
    }

    #[test]
    fn connecting_to_a_printer_already_printing_is_not_a_new_print() {
        let events = run(&[
            (Printing, 55, None),
            (Printing, 60, None),
            (Printing, 80, None),
            (Finished, 100, None),
        ]);
        assert_eq!(
            events,
            vec![PrintEvent::Progress(75), PrintEvent::Completed]
        );
    }

    #[test]
    fn a_reconnect_mid_print_does_not_restart_it_and_an_end_while_away_is_reported() {
        let mut lifecycle = Lifecycle::new();
        lifecycle.observe(&status(Idle, 0, None));
        assert_eq!(
            lifecycle.observe(&status(Printing, 10, None)),
            vec![PrintEvent::Started]
        );
        lifecycle.reconnected();
        assert!(lifecycle.observe(&status(Printing, 20, None)).is_empty());
        lifecycle.reconnected();
        assert_eq!(
            lifecycle.observe(&status(Finished, 100, None)),
            vec![
                PrintEvent::Progress(25),
                PrintEvent::Progress(50),
                PrintEvent::Progress(75),
                PrintEvent::Completed,
            ]
        );
    }

    #[test]
    fn stops_and_failures_are_told_apart() {
        let stopped = run(&[
            (Idle, 0, None),
            (Printing, 5, None),
            (Failed, 5, Some("0300_400C")),
        ]);
        assert_eq!(stopped, vec![PrintEvent::Started, PrintEvent::Stopped]);
        let failed = run(&[
            (Idle, 0, None),
            (Printing, 5, None),
            (Failed, 5, Some("0300_8003")),
        ]);
        assert_eq!(
            failed,
            vec![
                PrintEvent::Started,
                PrintEvent::Failed {
                    print_error: Some("0300_8003".into())
                }
            ]
        );
        let aborted = run(&[(Idle, 0, None), (Printing, 5, None), (Idle, 0, None)]);
        assert_eq!(aborted, vec![PrintEvent::Started, PrintEvent::Stopped]);
        let never_started = run(&[
            (Idle, 0, None),
            (Preparing, 0, None),
            (Failed, 0, Some("0300_400C")),
        ]);
        assert!(never_started.is_empty(), "{never_started:?}");
    }

    #[test]
    fn another_job_shown_mid_print_ends_the_first_unseen_before_the_second_starts() {
        let mut lifecycle = Lifecycle::new();
        lifecycle.observe(&of_job("cube", Idle, 0, None));
        assert_eq!(
            lifecycle.observe(&of_job("cube", Printing, 10, None)),
            [PrintEvent::Started]
        );
        // Seen live: the next print starts at once.
        assert_eq!(
            lifecycle.observe(&of_job("gear", Printing, 1, None)),
            [PrintEvent::Replaced, PrintEvent::Started]
        );
        assert_eq!(
            lifecycle.observe(&of_job("gear", Finished, 100, None)),
            [
                PrintEvent::Progress(25),
                PrintEvent::Progress(50),
                PrintEvent::Progress(75),
                PrintEvent::Completed
            ]
        );
    }

    #[test]
    fn another_job_seen_after_a_reconnect_is_followed_and_never_takes_the_first_ones_end() {
        let mut lifecycle = Lifecycle::new();
        lifecycle.observe(&of_job("cube", Idle, 0, None));
        lifecycle.observe(&of_job("cube", Printing, 10, None));
        lifecycle.reconnected();
        // Another job already running: followed from here, its start was not seen.
        assert_eq!(
            lifecycle.observe(&of_job("gear", Printing, 60, None)),
            [PrintEvent::Replaced]
        );
        assert!(lifecycle.active());
        assert_eq!(
            lifecycle.observe(&of_job("gear", Finished, 100, None)),
            [PrintEvent::Progress(75), PrintEvent::Completed]
        );
        // Another job that already finished: the first print's end was not seen, and the
        // finish is not its.
        let mut lifecycle = Lifecycle::new();
        lifecycle.observe(&of_job("cube", Idle, 0, None));
        lifecycle.observe(&of_job("cube", Printing, 10, None));
        lifecycle.reconnected();
        assert_eq!(
            lifecycle.observe(&of_job("gear", Finished, 100, None)),
            [PrintEvent::Replaced]
        );
        assert!(!lifecycle.active());
        // A job preparing: it starts when it runs.
        let mut lifecycle = Lifecycle::new();
        lifecycle.observe(&of_job("cube", Idle, 0, None));
        lifecycle.observe(&of_job("cube", Printing, 10, None));
        assert_eq!(
            lifecycle.observe(&of_job("gear", Preparing, 0, None)),
            [PrintEvent::Replaced]
        );
        assert_eq!(
            lifecycle.observe(&of_job("gear", Printing, 1, None)),
            [PrintEvent::Started]
        );
    }

    #[test]
    fn a_reprint_of_the_same_job_is_another_print_when_its_task_id_says_so() {
        let mut lifecycle = Lifecycle::new();
        let with_task = |task: &str, state, progress| PrinterStatus {
            task_id: Some(task.into()),
            ..of_job("cube", state, progress, None)
        };
        lifecycle.observe(&with_task("7001", Idle, 0));
        assert_eq!(
            lifecycle.observe(&with_task("7001", Printing, 10)),
            [PrintEvent::Started]
        );
        lifecycle.reconnected();
        // Same name, another cloud task, already running: the first ended unseen.
        assert_eq!(
            lifecycle.observe(&with_task("7002", Printing, 5)),
            [PrintEvent::Replaced]
        );
        // A LAN print of the same name (no task id) is another one too.
        lifecycle.reconnected();
        assert_eq!(
            lifecycle.observe(&of_job("cube", Printing, 5, None)),
            [PrintEvent::Replaced]
        );
    }

    #[test]
    fn only_new_serious_hms_entries_are_errors() {
        let e = |code: &str, severity| HmsEntry {
            code: code.into(),
            severity,
            text: None,
        };
        let before = vec![e("HMS_A", HmsSeverity::Serious)];
        let now = vec![
            e("HMS_A", HmsSeverity::Serious),
            e("HMS_B", HmsSeverity::Fatal),
            e("HMS_C", HmsSeverity::Info),
        ];
        let new: Vec<_> = new_hms_errors(&before, &now)
            .into_iter()
            .map(|h| h.code.as_str())
            .collect();
        assert_eq!(new, ["HMS_B"]);
    }
}
