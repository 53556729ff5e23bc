//! The print record's rules: which archive a print event concerns, and what becomes of it.
//! Pure (the event consumer loads a printer's archives under the printer's lock, asks
//! [`decide`], and writes the steps), so the rules are tried on generated sequences.
//!
//! The invariants they keep, whatever the order and repetition of the events:
//! - at most one archive per printer is open (`printing`): a new print closes any other open
//!   archive of its printer that no gateway will end, as `unknown` with the reason;
//! - a print is one archive: the gateway's key finds it, then (after a takeover, when the new
//!   gateway has a key of its own) the printer's open archive of the same job; a print found
//!   already running is archived under the key the gateway follows it by, and a printer found
//!   preparing is not archived until its print runs (its start is then seen);
//! - a file goes only to its own print: by key, or for a capture resumed after a takeover, to
//!   the open archive of the same job that has none;
//! - an archive is closed at most once (closing is what announces the end, see the migration
//!   `print_ends`).
//!
//! Events of a printer normally come in the order its gateway published them (the consumer's
//! lanes keep it). When two replicas handle two of them at once, the later one can come first:
//! an event that follows one not applied yet (a print's start after the previous print's end,
//! a print's file or end after its start, a printer's state after the end its gateway saw in
//! the same report) asks to be tried again ([`Step::Wait`]) while the delivery is `patient`,
//! and after that is applied with what is known (the event it followed may be lost).

use chrono::{DateTime, Utc};
use printyard_contracts::archive::ArchiveStatus;
use printyard_contracts::prints::{EndWitness, SeenOutcome};

/// An archive of the printer, as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    pub id: i64,
    /// `<printer id>/<gateway key>`.
    pub key: Option<String>,
    /// Keys other gateways follow the same print by (after a takeover).
    pub aliases: Vec<String>,
    /// The job name the printer reported at its start.
    pub job_name: Option<String>,
    /// The printer's task id of the print, when it has one.
    pub task_id: Option<String>,
    pub open: bool,
    /// When it started (or was created).
    pub since: DateTime<Utc>,
    pub has_file: bool,
    /// Closed from what was seen after it (the printer seen again, another print), and not
    /// announced yet: the gateway's own report of its end, handled late, still replaces it.
    pub provisional: bool,
}

/// What the printer showed when a gateway saw it again (`printer_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    Idle,
    Preparing,
    Printing,
    Paused,
    Finished,
    Failed,
    Other,
}

impl Shown {
    pub fn parse(state: &str) -> Shown {
        match state {
            "idle" => Shown::Idle,
            "preparing" => Shown::Preparing,
            "printing" => Shown::Printing,
            "paused" => Shown::Paused,
            "finished" => Shown::Finished,
            "failed" => Shown::Failed,
            _ => Shown::Other,
        }
    }

    fn busy(self) -> bool {
        matches!(self, Shown::Preparing | Shown::Printing | Shown::Paused)
    }

    fn as_str(self) -> &'static str {
        match self {
            Shown::Idle => "idle",
            Shown::Preparing => "preparing",
            Shown::Printing => "printing",
            Shown::Paused => "paused",
            Shown::Finished => "finished",
            Shown::Failed => "failed",
            Shown::Other => "in another state",
        }
    }
}

/// A print event, as the rules need it. Keys are archive keys (`<printer id>/<gateway key>`).
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// `print_started`. `previous`: the print before it whose end the same gateway published.
    Started {
        key: String,
        job: Option<String>,
        at: DateTime<Utc>,
        previous: Option<String>,
    },
    /// `print_ended`: a gateway saw the end.
    Ended {
        key: String,
        job: Option<String>,
        task: Option<String>,
        at: DateTime<Utc>,
        outcome: SeenOutcome,
        progress: Option<f64>,
        print_error: Option<String>,
    },
    /// `print_file`: the print's 3MF, or why there is none.
    File {
        key: String,
        job: Option<String>,
        task: Option<String>,
        at: DateTime<Utc>,
        resumed: bool,
    },
    /// `printer_state`: what a printer showed when a gateway started holding it. `key`: the
    /// print the gateway follows; `ended`: the last print whose end it published.
    Seen {
        state: Shown,
        job: Option<String>,
        task: Option<String>,
        key: Option<String>,
        ended: Option<String>,
        progress: Option<f64>,
        print_error: Option<String>,
        at: DateTime<Utc>,
    },
    /// `printer_removed`.
    Removed { at: DateTime<Utc> },
}

impl Input {
    /// The keys of the prints the event names: its own, and the print before it.
    pub fn keys(&self) -> Vec<String> {
        let (own, before) = match self {
            Input::Started { key, previous, .. } => (Some(key), previous.as_ref()),
            Input::Ended { key, .. } | Input::File { key, .. } => (Some(key), None),
            Input::Seen { key, ended, .. } => (key.as_ref(), ended.as_ref()),
            Input::Removed { .. } => (None, None),
        };
        own.into_iter().chain(before).cloned().collect()
    }
}

/// Which archive a step acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Existing(i64),
    /// The one the step [`Step::Create`] before it made.
    Created,
}

/// How an open archive ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    pub status: ArchiveStatus,
    pub at: DateTime<Utc>,
    /// Progress reached, 0 to 1, when known.
    pub fraction: Option<f64>,
    pub print_error: Option<String>,
    pub witness: EndWitness,
    /// How an end no gateway saw was learned.
    pub reason: Option<String>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A new archive of the event's print (`unseen_start`: found running, its start not seen).
    Create { unseen_start: bool },
    /// The start's fields onto an archive that exists (made by an event handled before it).
    FillStart(i64),
    /// Ends the archive if it is still open.
    Close(Target, Ending),
    /// Replaces a provisional (inferred) end with the end the gateway saw (nothing was
    /// announced yet).
    Correct(i64, Ending),
    /// The event's file (or the reason it has none) goes to the archive.
    AttachFile(Target),
    /// The event's key is another name of this archive's print (a gateway that took over
    /// follows it by a key of its own).
    Alias(i64),
    /// The event came before one it follows: nothing is done, it is to be tried again.
    Wait,
}

/// The `cancelled by the user` print error.
const CANCELLED: &str = "0300_400C";

const SEEN: &str =
    "it ended while no gateway watched the printer; the end is when it was seen again";

/// The steps `input` means for a printer whose archives (its open ones, and those of the keys
/// the event names: [`Input::keys`]) are `known`. `patient`: an event early for what is known
/// waits.
pub fn decide(input: &Input, known: &[Known], patient: bool) -> Vec<Step> {
    // A print the gateway ended before this event: not applied yet while its archive is
    // missing (its start is on its way) or open (its end is).
    let not_ended = |key: &Option<String>| {
        key.as_deref()
            .is_some_and(|k| by_key(known, k).is_none_or(|a| a.open))
    };
    match input {
        Input::Started {
            key,
            job,
            at,
            previous,
        } => {
            if patient && not_ended(previous) {
                // The end its gateway published just before is on its way.
                return vec![Step::Wait];
            }
            let mut steps = match by_key(known, key) {
                Some(archive) => vec![Step::FillStart(archive.id)],
                None => created(known, *at, None),
            };
            steps.extend(close_older(known, key, job.as_deref(), *at));
            steps
        }
        Input::Ended {
            key,
            job,
            task,
            at,
            outcome,
            progress,
            print_error,
        } => {
            let ending = seen_end(*outcome, *at, *progress, print_error);
            let job = (job.as_deref(), task.as_deref());
            ended(known, patient, key, job, *at, ending)
        }
        Input::File {
            key,
            job,
            task,
            at,
            resumed,
        } => match by_key(known, key) {
            Some(archive) if !resumed || !archive.has_file => {
                vec![Step::AttachFile(Target::Existing(archive.id))]
            }
            Some(_) => vec![],
            // Its print's start (or the state that showed it) is on its way.
            None if patient => vec![Step::Wait],
            // A capture resumed after a takeover: the open print of that job, if it has none.
            None if *resumed => open_of_job(known, job.as_deref(), task.as_deref(), key, *at)
                .filter(|a| a.open && !a.has_file && same_job(a, job.as_deref(), task.as_deref()))
                .map(|a| vec![Step::AttachFile(Target::Existing(a.id))])
                .unwrap_or_default(),
            // The file of a print whose start was lost: the print is archived from it.
            None => {
                let mut steps = created(known, *at, Some(Step::AttachFile(Target::Created)));
                steps.extend(close_older(known, key, job.as_deref(), *at));
                steps
            }
        },
        Input::Seen {
            state,
            job,
            task,
            key,
            ended,
            progress,
            print_error,
            at,
        } => {
            if patient && not_ended(ended) {
                // The end its gateway published before is on its way.
                return vec![Step::Wait];
            }
            let job = (job.as_deref(), task.as_deref());
            let ending = |same| seen_again(*state, same, job.0, *progress, print_error, *at);
            seen(known, *at, *state, job, key.as_deref(), ending)
        }
        Input::Removed { at } => removed(known, *at),
    }
}

/// A print's end its gateway saw: closes its archive (or corrects one closed provisionally),
/// waits for its start when `patient`, or archives a print first heard of by its end.
fn ended(
    known: &[Known],
    patient: bool,
    key: &str,
    job: (Option<&str>, Option<&str>),
    at: DateTime<Utc>,
    ending: Ending,
) -> Vec<Step> {
    match by_key(known, key) {
        Some(archive) if archive.open => {
            vec![Step::Close(Target::Existing(archive.id), ending)]
        }
        // Closed from what happened after it, before this end was handled.
        Some(archive) if archive.provisional => vec![Step::Correct(archive.id, ending)],
        // Closed already by another witness: the end was announced then.
        Some(_) => vec![],
        // Its start (or the state that showed it) is on its way.
        None if patient => vec![Step::Wait],
        None => match open_of_job(known, job.0, job.1, key, at) {
            Some(archive) => vec![Step::Close(Target::Existing(archive.id), ending)],
            // A print first heard of by its end.
            None => {
                let mut steps = vec![
                    Step::Create {
                        unseen_start: false,
                    },
                    Step::Close(Target::Created, ending),
                ];
                steps.extend(close_older(known, key, job.0, at));
                steps
            }
        },
    }
}

/// What a printer showed when a gateway started holding it: the open archives it no longer
/// shows are closed (`ending` says how, given whether it shows the same job), the one it does
/// is followed, and a print running that none follows is archived.
fn seen(
    known: &[Known],
    at: DateTime<Utc>,
    state: Shown,
    job: (Option<&str>, Option<&str>),
    key: Option<&str>,
    ending: impl Fn(bool) -> Ending,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut followed = false;
    let open = known.iter().filter(|a| a.open && a.since <= at);
    for archive in open {
        let same = same_job(archive, job.0, job.1);
        if state.busy() && same {
            followed = true;
            // The gateway follows it by a key of its own: its events find it so.
            if let Some(key) = key
                && !archive.has_key(key)
            {
                steps.push(Step::Alias(archive.id));
            }
            continue;
        }
        steps.push(Step::Close(Target::Existing(archive.id), ending(same)));
    }
    // A print running that no archive follows started while no gateway watched: it is
    // archived under the key the gateway follows it by (its file and end come under
    // that key). One preparing is not: its start will be seen. Nor is one older than a
    // print already archived (this state was handled late: that one came after it).
    let running = matches!(state, Shown::Printing | Shown::Paused);
    let newer = known.iter().any(|a| a.open && a.since > at);
    if let Some(key) = key
        && running
        && !followed
        && !newer
        && by_key(known, key).is_none()
    {
        steps.push(Step::Create { unseen_start: true });
    }
    steps
}

/// The printer was deleted: its open prints end unknown.
fn removed(known: &[Known], at: DateTime<Utc>) -> Vec<Step> {
    known
        .iter()
        .filter(|a| a.open)
        .map(|a| {
            Step::Close(
                Target::Existing(a.id),
                Ending {
                    status: ArchiveStatus::Unknown,
                    at,
                    fraction: None,
                    print_error: None,
                    witness: EndWitness::PrinterDeleted,
                    reason: Some("the printer was deleted while it printed".into()),
                },
            )
        })
        .collect()
}

/// How a print ended that its gateway saw end.
fn seen_end(
    outcome: SeenOutcome,
    at: DateTime<Utc>,
    progress: Option<f64>,
    print_error: &Option<String>,
) -> Ending {
    let (status, fraction, reason) = match outcome {
        SeenOutcome::Complete => (ArchiveStatus::Success, Some(1.0), None),
        SeenOutcome::Failed => (ArchiveStatus::Failed, fraction_of(progress), None),
        SeenOutcome::Stopped => (ArchiveStatus::Stopped, fraction_of(progress), None),
        SeenOutcome::Replaced => (
            ArchiveStatus::Unknown,
            None,
            Some(
                "the printer showed another job before this one's end was seen; the end is when \
                 that was seen"
                    .to_owned(),
            ),
        ),
    };
    Ending {
        status,
        at,
        fraction,
        print_error: print_error
            .clone()
            .filter(|_| outcome == SeenOutcome::Failed),
        witness: EndWitness::Gateway,
        reason,
    }
}

/// How an open print ended that a gateway found ended when it saw the printer again (`same`:
/// the printer shows the same job).
fn seen_again(
    state: Shown,
    same: bool,
    job: Option<&str>,
    progress: Option<f64>,
    print_error: &Option<String>,
    at: DateTime<Utc>,
) -> Ending {
    let ending = |status, fraction, print_error, reason| Ending {
        status,
        at,
        fraction,
        print_error,
        witness: EndWitness::PrinterSeenAgain,
        reason: Some(reason),
    };
    match (state, same) {
        (Shown::Finished, true) => ending(
            ArchiveStatus::Success,
            Some(1.0),
            None,
            format!("{SEEN} (finished)"),
        ),
        (Shown::Failed, true) => {
            let stopped = print_error.as_deref() == Some(CANCELLED);
            ending(
                if stopped {
                    ArchiveStatus::Stopped
                } else {
                    ArchiveStatus::Failed
                },
                fraction_of(progress),
                print_error.clone().filter(|_| !stopped),
                format!("{SEEN} ({})", if stopped { "stopped" } else { "failed" }),
            )
        }
        _ => ending(
            ArchiveStatus::Unknown,
            None,
            None,
            match job.filter(|_| !same) {
                Some(other) => format!(
                    "the print ended while no gateway watched the printer; when it was seen \
                     again it showed another job ({other}, {})",
                    state.as_str()
                ),
                None => format!(
                    "the print ended while no gateway watched the printer; when it was seen \
                     again it was {}",
                    state.as_str()
                ),
            },
        ),
    }
}

fn fraction_of(progress: Option<f64>) -> Option<f64> {
    progress.map(|p| (p / 100.0).clamp(0.0, 1.0))
}

/// A new archive of a print running at `at`, with `then` done to it. A print older than an
/// open one (its events came late, after a later print's) has ended already: it is closed at
/// once, as `unknown` (its own end, if it still comes, finds it closed).
fn created(known: &[Known], at: DateTime<Utc>, then: Option<Step>) -> Vec<Step> {
    let mut steps = vec![Step::Create {
        unseen_start: false,
    }];
    steps.extend(then);
    if known.iter().any(|a| a.open && a.since > at) {
        steps.push(Step::Close(
            Target::Created,
            Ending {
                status: ArchiveStatus::Unknown,
                at,
                fraction: None,
                print_error: None,
                witness: EndWitness::NextPrint,
                reason: Some(
                    "a later print on the printer was archived first; this one's end was not \
                     seen"
                        .to_owned(),
                ),
            },
        ));
    }
    steps
}

/// The printer prints one thing: a print running at `at` means every other archive of the
/// printer open since before then ended unseen.
fn close_older(known: &[Known], key: &str, job: Option<&str>, at: DateTime<Utc>) -> Vec<Step> {
    let shown = job.unwrap_or("unnamed");
    known
        .iter()
        .filter(|a| a.open && a.since <= at && !a.has_key(key))
        .map(|a| {
            Step::Close(
                Target::Existing(a.id),
                Ending {
                    status: ArchiveStatus::Unknown,
                    at,
                    fraction: None,
                    print_error: None,
                    witness: EndWitness::NextPrint,
                    reason: Some(format!(
                        "another print ({shown}) started on the printer before this one's end \
                         was seen; the end is when that one was seen"
                    )),
                },
            )
        })
        .collect()
}

impl Known {
    /// Whether the print is followed by `key` (its own or an alias).
    pub fn has_key(&self, key: &str) -> bool {
        self.key.as_deref() == Some(key) || self.aliases.iter().any(|a| a == key)
    }
}

fn by_key<'a>(known: &'a [Known], key: &str) -> Option<&'a Known> {
    known.iter().find(|a| a.has_key(key))
}

/// The printer's latest open archive of `job` that started before `at` (a gateway that took
/// over mid-print follows it under a key of its own). One without a job name matches only if it
/// has no key either, or this one: an archive known only from its file, under another key, is
/// another print's.
fn open_of_job<'a>(
    known: &'a [Known],
    job: Option<&str>,
    task: Option<&str>,
    key: &str,
    at: DateTime<Utc>,
) -> Option<&'a Known> {
    let job = job.filter(|j| !j.is_empty());
    known
        .iter()
        .filter(|a| a.open && a.since <= at && !other_task(a, task))
        .filter(|a| match (job, a.job_name.as_deref()) {
            (Some(job), Some(theirs)) => job == theirs,
            (_, Some(_)) => true,
            (_, None) => a.key.is_none() || a.has_key(key),
        })
        .max_by_key(|a| (a.since, a.id))
}

/// Whether the printer's task id says `archive` is another print than the one shown: a print's
/// task id never changes (a LAN print has none, a cloud print its own).
fn other_task(archive: &Known, shown: Option<&str>) -> bool {
    archive.task_id.as_deref() != shown
}

/// Whether an open archive is the print a printer shows: by the job name recorded at its
/// start (and the task id, when both have one), or (archives from before job names were
/// recorded) by its print key.
pub fn same_job(archive: &Known, shown: Option<&str>, task: Option<&str>) -> bool {
    let Some(shown) = shown.filter(|s| !s.is_empty()) else {
        return false;
    };
    if other_task(archive, task) {
        return false;
    }
    match archive.job_name.as_deref() {
        Some(job) => job == shown,
        None => archive.key.as_deref().is_some_and(|key| {
            key.split_once('/').is_some_and(|(_, gateway_key)| {
                gateway_key
                    .starts_with(&format!("{}@", printyard_contracts::farm::key_token(shown)))
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn open(id: i64, key: &str, job: &str, since: i64) -> Known {
        Known {
            id,
            key: Some(key.into()),
            aliases: vec![],
            job_name: Some(job.into()),
            task_id: None,
            open: true,
            since: at(since),
            has_file: false,
            provisional: false,
        }
    }

    #[test]
    fn a_printer_seen_again_is_matched_by_job_name_or_old_print_key() {
        let mut old = open(1, "3/my_cube@x.1", "", 0);
        old.job_name = None;
        assert!(same_job(&open(1, "3/k", "cube", 0), Some("cube"), None));
        assert!(!same_job(&open(1, "3/k", "cube", 0), Some("gear"), None));
        assert!(!same_job(&open(1, "3/k", "cube", 0), None, None));
        assert!(same_job(&old, Some("my cube"), None));
        assert!(!same_job(&old, Some("my"), None));
        // The same name under another cloud task id is another print.
        let mut tasked = open(1, "3/k", "cube", 0);
        tasked.task_id = Some("7001".into());
        assert!(same_job(&tasked, Some("cube"), Some("7001")));
        assert!(
            !same_job(&tasked, Some("cube"), None),
            "a LAN print of that name"
        );
        assert!(!same_job(&tasked, Some("cube"), Some("7002")));
    }

    #[test]
    fn a_printer_found_preparing_is_not_archived_and_one_found_running_is_under_its_key() {
        let seen = |state, key: Option<&str>| Input::Seen {
            state,
            job: Some("cube".into()),
            task: None,
            key: key.map(str::to_owned),
            ended: None,
            progress: Some(0.0),
            print_error: None,
            at: at(10),
        };
        assert!(decide(&seen(Shown::Preparing, None), &[], true).is_empty());
        assert_eq!(
            decide(&seen(Shown::Printing, Some("1/cube@.1")), &[], true),
            [Step::Create { unseen_start: true }]
        );
        // Its file, handled first, made it already.
        assert!(
            decide(
                &seen(Shown::Printing, Some("1/k")),
                &[open(4, "1/k", "cube", 0)],
                true
            )
            .is_empty()
        );
    }

    #[test]
    fn a_new_print_closes_the_open_one_its_gateway_did_not_end() {
        let started = |previous: Option<&str>| Input::Started {
            key: "1/gear".into(),
            job: Some("gear".into()),
            at: at(100),
            previous: previous.map(str::to_owned),
        };
        let known = [open(1, "1/cube", "cube", 0)];
        let steps = decide(&started(None), &known, true);
        assert_eq!(
            steps[0],
            Step::Create {
                unseen_start: false
            }
        );
        let Step::Close(Target::Existing(1), ending) = &steps[1] else {
            panic!("{steps:?}")
        };
        assert_eq!(ending.status, ArchiveStatus::Unknown);
        assert_eq!(ending.witness, EndWitness::NextPrint);
        // Its own gateway published the end: the start waits for it, and once patience is
        // over (the end was lost) closes it all the same.
        assert_eq!(decide(&started(Some("1/cube")), &known, true), [Step::Wait]);
        assert_eq!(decide(&started(Some("1/cube")), &known, false), steps);
    }

    #[test]
    fn an_end_after_a_takeover_finds_the_print_by_its_job_and_a_closed_one_stays_closed() {
        let ended = Input::Ended {
            key: "1/cube@.99".into(),
            job: Some("cube".into()),
            task: None,
            at: at(50),
            outcome: SeenOutcome::Complete,
            progress: Some(100.0),
            print_error: None,
        };
        // Found by the alias the new gateway's state gave it.
        let mut followed = open(7, "1/cube@.1", "cube", 0);
        followed.aliases = vec!["1/cube@.99".into()];
        let steps = decide(&ended, &[followed], true);
        assert!(
            matches!(&steps[..], [Step::Close(Target::Existing(7), e)] if e.status == ArchiveStatus::Success)
        );
        // Without one, by its job once patience is over.
        let known = [open(7, "1/cube@.1", "cube", 0)];
        assert_eq!(decide(&ended, &known, true), [Step::Wait]);
        assert!(matches!(
            &decide(&ended, &known, false)[..],
            [Step::Close(Target::Existing(7), _)]
        ));
        let mut closed = open(7, "1/cube@.99", "cube", 0);
        closed.open = false;
        assert!(decide(&ended, &[closed.clone()], true).is_empty());
        // Closed from what came after it, not announced yet: the real end wins.
        closed.provisional = true;
        assert!(matches!(
            &decide(&ended, &[closed], true)[..],
            [Step::Correct(7, e)] if e.status == ArchiveStatus::Success
        ));
    }

    #[test]
    fn a_resumed_capture_never_lands_on_another_jobs_print() {
        let file = Input::File {
            key: "1/gear@.5".into(),
            job: Some("gear".into()),
            task: None,
            at: at(50),
            resumed: true,
        };
        assert!(decide(&file, &[open(7, "1/cube@.1", "cube", 0)], false).is_empty());
        assert_eq!(
            decide(&file, &[open(8, "1/gear@.1", "gear", 0)], false),
            [Step::AttachFile(Target::Existing(8))]
        );
    }
}
