//! The real captures in `tests/fixtures/printers/`, for the tests of this crate.

#![allow(dead_code)]

use serde_json::Value;

/// The directory of the captures.
pub fn dir() -> String {
    format!(
        "{}/../../tests/fixtures/printers",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// One capture, as JSON.
pub fn load(name: &str) -> Value {
    let path = format!("{}/{name}", dir());
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The full report of a capture (its `print` object).
pub fn full_print(doc: &Value) -> Value {
    doc.pointer("/pushall/print")
        .or_else(|| doc.get("push_all"))
        .or_else(|| doc.pointer("/message/print"))
        .expect("a full report")
        .clone()
}

/// The full report of a capture, as the payload a printer would send.
pub fn full_payload(doc: &Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "print": full_print(doc) })).unwrap()
}

/// The names of the captures holding a full report (not the `get_version` answers).
pub fn full_reports() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json") && !n.contains("get-version"))
        .collect();
    names.sort();
    names
}
