//! Payloads from `device/<serial>/report`: told apart (status push, command acknowledgement,
//! version answer), and merged into one state. P1, A1 and H2D send deltas; X1 full reports;
//! either way the client keeps the last full state and applies what arrives, field by field,
//! with AMS units and trays merged by `id` (a tray sent as only `{id}` is an empty slot).
//!
//! Parsing is lenient (trailing NUL bytes, indentation) and never panics on what a printer or
//! anything pretending to be one sends.

use serde_json::{Map, Value};

/// One payload from the report topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A status push; `full` for `msg` 0.
    Status {
        full: bool,
        print: Map<String, Value>,
    },
    /// A command's acknowledgement (never merged into the state).
    Ack(Ack),
    /// The answer to `get_version`.
    Version(Value),
    /// Anything else a printer sends (other categories, unknown commands).
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub category: String,
    pub command: Option<String>,
    pub sequence_id: Option<String>,
    /// Lower-cased (`success`, `failed`; printers vary the case).
    pub result: String,
    pub reason: Option<String>,
}

impl Ack {
    pub fn succeeded(&self) -> bool {
        self.result == "success"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("payload is not a JSON object")]
    NotObject,
}

/// Parses one payload.
pub fn parse(payload: &[u8]) -> Result<Message, ParseError> {
    let end = payload
        .iter()
        .rposition(|b| *b != 0 && !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let value: Value =
        serde_json::from_slice(&payload[..end]).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let object = value.as_object().ok_or(ParseError::NotObject)?;
    for (category, body) in object {
        let Some(body) = body.as_object() else {
            continue;
        };
        let command = body.get("command").and_then(Value::as_str);
        // Version answers carry `result` too (the P1P capture): they are answers, not acks.
        if category == "info" && command == Some("get_version") {
            return Ok(Message::Version(Value::Object(body.clone())));
        }
        if let Some(result) = body.get("result").and_then(Value::as_str) {
            return Ok(Message::Ack(Ack {
                category: category.clone(),
                command: command.map(str::to_owned),
                sequence_id: body.get("sequence_id").map(text_of),
                result: result.to_ascii_lowercase(),
                reason: body
                    .get("reason")
                    .and_then(Value::as_str)
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned),
            }));
        }
        match (category.as_str(), command) {
            ("print", Some("push_status")) => {
                // `msg` 0 is a full report, 1 a delta. The H2D capture's pushall answer has no
                // `msg`: a push without it that carries the core fields is taken as full.
                let full = match body.get("msg").and_then(Value::as_i64) {
                    Some(msg) => msg == 0,
                    None => ["gcode_state", "mc_percent", "nozzle_temper", "bed_temper"]
                        .iter()
                        .all(|k| body.contains_key(*k)),
                };
                return Ok(Message::Status {
                    full,
                    print: body.clone(),
                });
            }
            ("info", Some("get_version")) => {
                return Ok(Message::Version(Value::Object(body.clone())));
            }
            _ => {}
        }
    }
    Ok(Message::Other)
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The merged `print` state of one printer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportState {
    print: Map<String, Value>,
    has_full: bool,
}

impl ReportState {
    /// Whether a full report has been seen (a delta before one asks for `pushall`).
    pub fn has_full(&self) -> bool {
        self.has_full
    }

    pub fn fields(&self) -> &Map<String, Value> {
        &self.print
    }

    /// Applies a status push: a full report replaces the state, a delta merges into it.
    pub fn apply(&mut self, full: bool, print: &Map<String, Value>) {
        if full {
            self.print = print.clone();
            self.has_full = true;
        } else {
            merge_object(&mut self.print, print);
        }
    }

    /// [`ReportState::apply`] taking the push: a full report (X1 printers send one every
    /// second) becomes the state without a copy.
    pub fn apply_owned(&mut self, full: bool, print: Map<String, Value>) {
        if full {
            self.print = print;
            self.has_full = true;
        } else {
            merge_object(&mut self.print, &print);
        }
    }
}

/// Merges `delta` into `state`: objects recursively, the AMS unit and tray lists by `id`,
/// every other value replaced.
pub fn merge_object(state: &mut Map<String, Value>, delta: &Map<String, Value>) {
    for (key, incoming) in delta {
        match (state.get_mut(key), incoming) {
            (Some(Value::Object(current)), Value::Object(incoming)) => {
                merge_object(current, incoming)
            }
            (Some(Value::Array(current)), Value::Array(incoming))
                if (key == "ams" || key == "tray") && all_have_ids(incoming) =>
            {
                merge_by_id(current, incoming, key == "tray");
            }
            _ => {
                state.insert(key.clone(), incoming.clone());
            }
        }
    }
}

fn all_have_ids(items: &[Value]) -> bool {
    items.iter().all(|i| i.get("id").is_some())
}

fn merge_by_id(current: &mut Vec<Value>, incoming: &[Value], trays: bool) {
    for item in incoming {
        let id = item.get("id");
        let only_id = item.as_object().is_some_and(|o| o.len() == 1);
        match current.iter_mut().find(|c| c.get("id") == id) {
            // A tray sent as only `{id}` is an empty slot: forget what was loaded there.
            Some(existing) if trays && only_id => *existing = item.clone(),
            Some(existing) => match (existing.as_object_mut(), item.as_object()) {
                (Some(existing), Some(item)) => merge_object(existing, item),
                _ => *existing = item.clone(),
            },
            None => current.push(item.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn payloads_are_told_apart_and_trailing_nul_is_tolerated() {
        let status =
            parse(b"{\"print\":{\"command\":\"push_status\",\"msg\":1,\"mc_percent\":5}}\0")
                .unwrap();
        assert!(matches!(status, Message::Status { full: false, .. }));
        let full = parse(br#"{"print":{"command":"push_status","msg":0}}"#).unwrap();
        assert!(matches!(full, Message::Status { full: true, .. }));
        let no_msg = parse(br#"{"print":{"command":"push_status","gcode_state":"IDLE","mc_percent":0,"nozzle_temper":20,"bed_temper":20}}"#).unwrap();
        assert!(
            matches!(no_msg, Message::Status { full: true, .. }),
            "H2D's pushall answer"
        );
        let small = parse(br#"{"print":{"command":"push_status","mc_percent":3}}"#).unwrap();
        assert!(matches!(small, Message::Status { full: false, .. }));
        let ack = parse(
            br#"{"print":{"command":"pause","sequence_id":"7","result":"SUCCESS","reason":""}}"#,
        )
        .unwrap();
        assert_eq!(
            ack,
            Message::Ack(Ack {
                category: "print".into(),
                command: Some("pause".into()),
                sequence_id: Some("7".into()),
                result: "success".into(),
                reason: None,
            })
        );
        let version = parse(br#"{"info":{"command":"get_version","module":[]}}"#).unwrap();
        assert!(matches!(version, Message::Version(_)));
        let with_result =
            parse(br#"{"info":{"command":"get_version","module":[],"result":"success"}}"#).unwrap();
        assert!(
            matches!(with_result, Message::Version(_)),
            "version answers with `result` are versions"
        );
        assert_eq!(
            parse(br#"{"system":{"command":"ledctrl"}}"#).unwrap(),
            Message::Other
        );
    }

    #[test]
    fn hostile_payloads_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"\0\0",
            b"{",
            b"[1,2]",
            b"\xff\xfe",
            b"{\"print\": {\"gcode_state\": \x00\xff garbage",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse(br#"{"print": 5}"#).unwrap(), Message::Other);
    }

    #[test]
    fn deltas_merge_field_by_field_and_trays_by_id() {
        let mut state = ReportState::default();
        state.apply(
            true,
            &obj(json!({
                "gcode_state": "RUNNING", "mc_percent": 10,
                "ams": {"tray_now": "1", "ams": [{"id": "0", "humidity": "4", "tray": [
                    {"id": "0", "tray_type": "PLA", "remain": 80},
                    {"id": "1", "tray_type": "PETG", "remain": 50}
                ]}]}
            })),
        );
        state.apply(
            false,
            &obj(json!({
                "mc_percent": 11,
                "ams": {"ams": [{"id": "0", "tray": [{"id": "0", "remain": 79}, {"id": "1"}]}]}
            })),
        );
        let f = state.fields();
        assert_eq!(f["mc_percent"], 11);
        assert_eq!(f["gcode_state"], "RUNNING", "untouched fields stay");
        let trays = &f["ams"]["ams"][0]["tray"];
        assert_eq!(
            trays[0],
            json!({"id": "0", "tray_type": "PLA", "remain": 79})
        );
        assert_eq!(
            trays[1],
            json!({"id": "1"}),
            "an `{{id}}` tray is an empty slot"
        );
        assert_eq!(f["ams"]["ams"][0]["humidity"], "4");
        assert_eq!(f["ams"]["tray_now"], "1");
    }

    #[test]
    fn a_new_ams_unit_is_added_and_a_full_report_replaces_everything() {
        let mut state = ReportState::default();
        state.apply(
            true,
            &obj(json!({"ams": {"ams": [{"id": "0", "tray": []}]}, "x": 1})),
        );
        state.apply(
            false,
            &obj(json!({"ams": {"ams": [{"id": "1", "tray": [{"id": "0"}]}]}})),
        );
        assert_eq!(state.fields()["ams"]["ams"].as_array().unwrap().len(), 2);
        state.apply(true, &obj(json!({"y": 2})));
        assert!(state.fields().get("x").is_none());
    }
}
