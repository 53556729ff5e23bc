//! The gateway's print events as the archive reads them: what their `data` carries
//! ([`PrintData`]), the print's key, the names a print shows before (or without) its file, and
//! the event as the print record's rules take it ([`input_of`]).

use printyard_contracts::farm::{EventKind, FarmEvent};
use printyard_contracts::prints::SeenOutcome;
use printyard_contracts::queue;

use crate::record::{Input, Shown};

/// What the gateway puts in a print event's `data`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct PrintData {
    /// The gateway's key for the print (same in all its events).
    pub print: Option<String>,
    pub printer_name: Option<String>,
    pub job_name: Option<String>,
    pub gcode_file: Option<String>,
    pub progress: Option<f64>,
    pub print_error: Option<String>,
    /// `print_file`: the transfer-bucket object (in the site's `bucket`; `archive_transfer`
    /// when none is named), and the file's name on the printer.
    pub object: Option<String>,
    pub bucket: Option<String>,
    /// The JetStream domain of the bucket: the site's, when it keeps its files at its leaf node.
    pub domain: Option<String>,
    pub filename: Option<String>,
    /// `print_file`: why the file could not be fetched.
    pub error: Option<String>,
    /// The plate printed, when known.
    pub plate: Option<u32>,
    /// `print_file` of a print the queue sent: the library archive whose file it is.
    pub source_archive: Option<i64>,
    /// The queue job of the print (also read from the job name's tag).
    pub queue_job: Option<i64>,
    /// `printer_state`: the printer's state (`idle`, `printing`, `finished`, …).
    pub state: Option<String>,
    /// `print_file` of a capture a gateway resumed after a takeover.
    pub resumed: bool,
    /// `print_started`: the print before it whose end the same gateway published.
    pub previous: Option<String>,
    /// `printer_state`: the last print whose end the gateway published.
    pub ended: Option<String>,
    /// `print_ended`: how it ended.
    pub outcome: Option<SeenOutcome>,
    /// The printer's task id of the print, when it has one.
    pub task_id: Option<String>,
    /// `print_started` of a print the queue sent: the AMS mapping it was sent with.
    pub ams_mapping: Option<Vec<i32>>,
}

impl PrintData {
    pub fn queue_job(&self) -> Option<i64> {
        self.queue_job
            .or_else(|| self.job_name.as_deref().and_then(queue::job_of))
            .or_else(|| self.filename.as_deref().and_then(queue::job_of))
    }
}

/// The archive's key of the event's print: `<printer id>/<gateway key>`.
pub fn print_key(event: &FarmEvent, data: &PrintData) -> Option<String> {
    data.print
        .as_deref()
        .filter(|k| !k.is_empty())
        .map(|k| archive_key(event.printer_id, k))
}

fn archive_key(printer_id: i64, gateway_key: &str) -> String {
    format!("{printer_id}/{gateway_key}")
}

/// The file name a print shows before (or without) its 3MF.
pub fn job_filename(data: &PrintData) -> String {
    let from_file = data
        .filename
        .as_deref()
        .or(data.gcode_file.as_deref())
        .map(|f| f.rsplit('/').next().unwrap_or(f).to_owned())
        .filter(|f| !f.is_empty() && !f.starts_with("plate_") && f.contains('.'));
    from_file
        .or_else(|| data.job_name.as_ref().map(|j| format!("{j}.3mf")))
        .unwrap_or_else(|| "unknown.3mf".to_owned())
}

pub fn job_name(data: &PrintData) -> String {
    let name = data
        .job_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| file_stem(&job_filename(data)));
    queue::untagged(&name).to_owned()
}

/// `cube.gcode.3mf` → `cube`.
pub fn file_stem(filename: &str) -> String {
    let base = filename.rsplit('/').next().unwrap_or(filename);
    let stem = base
        .strip_suffix(".3mf")
        .map(|s| s.strip_suffix(".gcode").unwrap_or(s))
        .unwrap_or(base);
    if stem.is_empty() {
        base.to_owned()
    } else {
        stem.to_owned()
    }
}

/// The event as the rules take it, with the key of its print (events of a print without one,
/// from a foreign publisher, are keyed by their own id); `None` for a kind the archive does
/// not act on.
pub fn input_of(event: &FarmEvent, data: &PrintData) -> Option<(Input, Option<String>)> {
    let key = print_key(event, data);
    let own_key = || {
        key.clone()
            .unwrap_or_else(|| archive_key(event.printer_id, &format!("event-{}", event.id)))
    };
    let job = data.job_name.clone().filter(|j| !j.is_empty());
    let task = data.task_id.clone().filter(|t| !t.is_empty());
    let at = event.at;
    let input = match event.kind {
        EventKind::PrintStarted => Input::Started {
            key: own_key(),
            job,
            at,
            previous: data
                .previous
                .as_deref()
                .map(|k| archive_key(event.printer_id, k)),
        },
        EventKind::PrintEnded => Input::Ended {
            key: own_key(),
            job,
            task,
            at,
            outcome: data.outcome.unwrap_or(SeenOutcome::Replaced),
            progress: data.progress,
            print_error: data.print_error.clone(),
        },
        EventKind::PrintFile => Input::File {
            key: own_key(),
            job,
            task,
            at,
            resumed: data.resumed,
        },
        EventKind::PrinterState => Input::Seen {
            state: Shown::parse(data.state.as_deref().unwrap_or("unknown")),
            job,
            task,
            key: key.clone(),
            ended: data
                .ended
                .as_deref()
                .map(|k| archive_key(event.printer_id, k)),
            progress: data.progress,
            print_error: data.print_error.clone(),
            at,
        },
        EventKind::PrinterRemoved => Input::Removed { at },
        _ => return None,
    };
    let key = match &input {
        Input::Started { key, .. } | Input::Ended { key, .. } | Input::File { key, .. } => {
            Some(key.clone())
        }
        Input::Seen { key, .. } => key.clone(),
        Input::Removed { .. } => None,
    };
    Some((input, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_file() {
        assert_eq!(file_stem("demo-cube.gcode.3mf"), "demo-cube");
        assert_eq!(file_stem("/cache/benchy.3mf"), "benchy");
        assert_eq!(file_stem("notes.txt"), "notes.txt");
        let data = PrintData {
            gcode_file: Some("/data/Metadata/plate_1.gcode".into()),
            job_name: Some("gear".into()),
            ..Default::default()
        };
        assert_eq!(
            job_filename(&data),
            "gear.3mf",
            "X1 internal paths are not file names"
        );
        let data = PrintData {
            gcode_file: Some("cube.gcode.3mf".into()),
            ..Default::default()
        };
        assert_eq!(job_name(&data), "cube");
    }
}
