//! What a delivery says: the reference's payload (`{event, timestamp, data}`), or the same event
//! as a Discord, Slack or ntfy message.

use chrono::{DateTime, SecondsFormat, Utc};
use printyard_contracts::webhooks::WebhookFormat;
use serde_json::{Value, json};

/// An event as the notifier stored it, with what it learned of its print.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFacts {
    /// The event name (`test` for a test delivery).
    pub kind: String,
    pub site: String,
    pub printer_id: i64,
    pub printer_name: Option<String>,
    pub at: DateTime<Utc>,
    pub data: Value,
    pub archive_id: Option<i64>,
    pub filename: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
}

/// A request body and the headers that go with it (beside the signature's).
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

fn text(data: &Value, key: &str) -> Option<String> {
    data.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Whether an event of `kind` is about one print (and so has an archive).
pub fn is_print_event(kind: &str) -> bool {
    matches!(kind, "print_started" | "print_progress") || is_print_end(kind)
}

/// Whether an event of `kind` is a print's end, which the archive announces with everything a
/// receiver needs (`archive_id`, `filename`, `duration`, …) in its data.
pub fn is_print_end(kind: &str) -> bool {
    matches!(
        kind,
        "print_complete" | "print_failed" | "print_stopped" | "print_unknown"
    )
}

impl EventFacts {
    fn is_print_event(&self) -> bool {
        is_print_event(&self.kind)
    }

    /// The print's status as the archive says it.
    fn status(&self) -> Option<&'static str> {
        Some(match self.kind.as_str() {
            "print_started" | "print_progress" | "archive_created" => "printing",
            "print_complete" => "success",
            "print_failed" => "failed",
            "print_stopped" => "stopped",
            "print_unknown" => "unknown",
            "printer_online" => "online",
            "printer_offline" => "offline",
            "printer_error" => "error",
            _ => return None,
        })
    }

    fn filename(&self) -> Option<String> {
        let announced = text(&self.data, "filename").filter(|_| is_print_end(&self.kind));
        announced
            .or_else(|| self.filename.clone())
            .or_else(|| text(&self.data, "filename"))
            .or_else(|| {
                text(&self.data, "gcode_file")
                    .map(|f| f.rsplit('/').next().unwrap_or(&f).to_owned())
                    .filter(|f| !f.is_empty())
            })
            .or_else(|| text(&self.data, "job_name").map(|j| format!("{j}.3mf")))
    }

    /// Seconds since the print started, for the events that end it.
    fn duration(&self) -> Option<i64> {
        let ended = is_print_end(&self.kind);
        if ended && let Some(duration) = self.data.get("duration").and_then(Value::as_i64) {
            return Some(duration);
        }
        let started = self.started_at.or_else(|| {
            text(&self.data, "started_at")
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc))
        })?;
        (ended || self.kind == "print_progress").then(|| (self.at - started).num_seconds().max(0))
    }

    fn printer_id(&self) -> Option<i64> {
        (self.printer_id > 0).then_some(self.printer_id)
    }

    /// The reference's `data`, and Printyard's additions for the events it adds.
    pub fn data(&self) -> Value {
        let mut data = json!({
            "printer_id": self.printer_id(),
            "printer_name": self.printer_name,
            "site": self.site,
        });
        let fields = data.as_object_mut().expect("an object");
        let mut put = |key: &str, value: Value| {
            fields.insert(key.to_owned(), value);
        };
        if self.is_print_event() || self.kind == "archive_created" {
            let announced = self.data.get("archive_id").and_then(Value::as_i64);
            put("archive_id", announced.or(self.archive_id).into());
            put("filename", self.filename().into());
            put("duration", self.duration().into());
        }
        if let Some(status) = self.status() {
            put("status", status.into());
        }
        match self.kind.as_str() {
            "print_progress" => put("progress", self.data.get("progress").cloned().into()),
            "print_failed" => put("print_error", self.data.get("print_error").cloned().into()),
            "print_unknown" => put("end_reason", self.data.get("end_reason").cloned().into()),
            "printer_error" => {
                for key in ["code", "severity", "text"] {
                    put(key, self.data.get(key).cloned().into());
                }
            }
            "printer_offline" => put("reason", self.data.get("reason").cloned().into()),
            kind if kind.starts_with("queue_job_") => {
                let keys = [
                    "job_id",
                    "archive_id",
                    "result_archive_id",
                    "name",
                    "filename",
                ];
                for key in keys.into_iter().chain(["status", "error", "reason"]) {
                    if let Some(value) = self.data.get(key) {
                        put(key, value.clone());
                    }
                }
            }
            "spool_low" => {
                let keys = [
                    "spool_id",
                    "material",
                    "color",
                    "brand",
                    "remaining_g",
                    "threshold_g",
                    "tray",
                ];
                for key in keys {
                    put(key, self.data.get(key).cloned().into());
                }
            }
            "maintenance_due" => {
                for key in ["task_id", "task", "progress", "since"] {
                    put(key, self.data.get(key).cloned().into());
                }
            }
            "test" => put("message", "A test delivery from Printyard".into()),
            _ => {}
        }
        if let Some(job) = self.data.get("queue_job").filter(|j| !j.is_null()) {
            put("queue_job", job.clone());
        }
        data
    }

    /// One line for a person: what happened, on which printer, to which file.
    pub fn summary(&self) -> (String, String) {
        let printer = self
            .printer_name
            .clone()
            .unwrap_or_else(|| format!("printer {}", self.printer_id));
        let file = self.filename().unwrap_or_else(|| "a print".into());
        let minutes = |s: i64| format!("{}h {:02}m", s / 3600, (s % 3600) / 60);
        let took = self
            .duration()
            .map(|s| format!(" after {}", minutes(s)))
            .unwrap_or_default();
        let title = match self.kind.as_str() {
            "print_started" => "Print started",
            "print_progress" => "Print progress",
            "print_complete" => "Print complete",
            "print_failed" => "Print failed",
            "print_stopped" => "Print stopped",
            "print_unknown" => "Print ended unseen",
            "printer_online" => "Printer online",
            "printer_offline" => "Printer offline",
            "printer_error" => "Printer error",
            "archive_created" => "Archived",
            "queue_job_started" => "Queue job started",
            "queue_job_completed" => "Queue job completed",
            "queue_job_failed" => "Queue job failed",
            "spool_low" => "Filament low",
            "maintenance_due" => "Maintenance due",
            "test" => "Test",
            _ => "Event",
        };
        let line = match self.kind.as_str() {
            "print_started" => format!("{printer} started {file}"),
            "print_progress" => format!(
                "{printer}: {file} at {}%",
                self.data
                    .get("progress")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            ),
            "print_complete" => format!("{printer} finished {file}{took}"),
            "print_failed" => format!("{printer} failed printing {file}{took}"),
            "print_stopped" => format!("{printer}: {file} was stopped{took}"),
            "print_unknown" => format!("{printer}: how {file} ended was not seen"),
            "printer_online" => format!("{printer} is online"),
            "printer_offline" => format!("{printer} went offline"),
            "printer_error" => format!(
                "{printer}: {} ({})",
                text(&self.data, "text").unwrap_or_else(|| "HMS error".into()),
                text(&self.data, "code").unwrap_or_default()
            ),
            "archive_created" => format!("{printer}: {file} archived"),
            "spool_low" => format!(
                "spool {} ({} {}) has {:.0} g left",
                self.data
                    .get("spool_id")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                text(&self.data, "brand").unwrap_or_default(),
                text(&self.data, "material").unwrap_or_default(),
                self.data
                    .get("remaining_g")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
            ),
            "maintenance_due" => format!(
                "{printer}: {} is due",
                text(&self.data, "task").unwrap_or_else(|| "maintenance".into())
            ),
            "test" => "A test delivery from Printyard".into(),
            _ => format!("{printer}: {title}"),
        };
        (format!("Printyard: {title}"), line)
    }

    fn urgent(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "print_failed"
                | "print_unknown"
                | "printer_error"
                | "printer_offline"
                | "queue_job_failed"
                | "spool_low"
        )
    }

    /// The request body in `format`.
    pub fn body(&self, format: WebhookFormat) -> Body {
        let json = |value: Value| Body {
            content_type: "application/json",
            bytes: serde_json::to_vec(&value).unwrap_or_default(),
            headers: Vec::new(),
        };
        match format {
            WebhookFormat::Printyard => json(json!({
                "event": self.kind,
                "timestamp": self.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                "data": self.data(),
            })),
            WebhookFormat::Discord => {
                let (title, line) = self.summary();
                json(json!({"username": "Printyard", "content": format!("**{title}**\n{line}")}))
            }
            WebhookFormat::Slack => {
                let (title, line) = self.summary();
                json(json!({"text": format!("*{title}*\n{line}")}))
            }
            WebhookFormat::Ntfy => {
                let (title, line) = self.summary();
                let (priority, tags) = if self.urgent() {
                    ("high", "warning")
                } else {
                    ("default", "printer")
                };
                Body {
                    content_type: "text/plain; charset=utf-8",
                    bytes: line.into_bytes(),
                    headers: vec![
                        ("title", title),
                        ("priority", priority.into()),
                        ("tags", tags.into()),
                    ],
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn complete() -> EventFacts {
        let started = Utc.with_ymd_and_hms(2024, 1, 15, 12, 15, 0).unwrap();
        EventFacts {
            kind: "print_complete".into(),
            site: "default".into(),
            printer_id: 1,
            printer_name: Some("Workshop X1C".into()),
            at: started + chrono::Duration::seconds(8100),
            data: json!({"job_name": "benchy", "gcode_file": "/cache/benchy.gcode.3mf", "print": "k"}),
            archive_id: Some(123),
            filename: Some("benchy.3mf".into()),
            started_at: Some(started),
        }
    }

    #[test]
    fn the_reference_payload_is_what_the_reference_shows() {
        let body = complete().body(WebhookFormat::Printyard);
        assert_eq!(body.content_type, "application/json");
        let value: Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(value["event"], "print_complete");
        assert_eq!(value["timestamp"], "2024-01-15T14:30:00Z");
        let data = &value["data"];
        assert_eq!(data["printer_id"], 1);
        assert_eq!(data["printer_name"], "Workshop X1C");
        assert_eq!(data["archive_id"], 123);
        assert_eq!(data["filename"], "benchy.3mf");
        assert_eq!(data["duration"], 8100);
        assert_eq!(data["status"], "success");
    }

    #[test]
    fn errors_and_progress_carry_their_details() {
        let mut progress = complete();
        progress.kind = "print_progress".into();
        progress.data = json!({"progress": 50});
        assert_eq!(progress.data()["progress"], 50);
        assert_eq!(progress.data()["status"], "printing");
        let mut error = complete();
        error.kind = "printer_error".into();
        error.data =
            json!({"code": "0300_0100_0001_0007", "severity": "serious", "text": "Heatbed"});
        let data = error.data();
        assert_eq!(data["code"], "0300_0100_0001_0007");
        assert_eq!(data["severity"], "serious");
        assert_eq!(data["text"], "Heatbed");
        assert!(data.get("archive_id").is_none());
    }

    #[test]
    fn an_end_announced_by_the_archive_says_everything_itself() {
        let started = Utc.with_ymd_and_hms(2024, 1, 15, 12, 15, 0).unwrap();
        let unknown = EventFacts {
            kind: "print_unknown".into(),
            site: "default".into(),
            printer_id: 1,
            printer_name: None,
            at: started + chrono::Duration::seconds(60),
            data: json!({
                "archive_id": 9, "filename": "gear.gcode.3mf", "duration": 42,
                "started_at": started, "status": "unknown",
                "end_reason": "the printer was deleted while it printed"
            }),
            archive_id: None,
            filename: Some("a learned name.3mf".into()),
            started_at: None,
        };
        let data = unknown.data();
        assert_eq!(data["archive_id"], 9);
        assert_eq!(data["filename"], "gear.gcode.3mf");
        assert_eq!(data["duration"], 42);
        assert_eq!(data["status"], "unknown");
        assert_eq!(
            data["end_reason"],
            "the printer was deleted while it printed"
        );
        assert!(unknown.summary().1.contains("gear.gcode.3mf"));
    }

    #[test]
    fn chat_formats_say_it_in_words() {
        let facts = complete();
        let discord: Value =
            serde_json::from_slice(&facts.body(WebhookFormat::Discord).bytes).unwrap();
        let content = discord["content"].as_str().unwrap();
        assert!(
            content.contains("Workshop X1C finished benchy.3mf after 2h 15m"),
            "{content}"
        );
        let slack: Value = serde_json::from_slice(&facts.body(WebhookFormat::Slack).bytes).unwrap();
        assert!(slack["text"].as_str().unwrap().contains("benchy.3mf"));
        let ntfy = facts.body(WebhookFormat::Ntfy);
        assert!(ntfy.content_type.starts_with("text/plain"));
        assert!(String::from_utf8(ntfy.bytes).unwrap().contains("finished"));
        assert!(
            ntfy.headers
                .iter()
                .any(|(k, v)| *k == "title" && v.contains("Print complete"))
        );
    }
}
