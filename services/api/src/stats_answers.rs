//! `/statistics` answers kept as the bytes they are sent as. The stats service sums an answer
//! once per change of the facts; this replica names its printers and writes its JSON once per
//! change of the facts or of the printers, and otherwise sends the kept bytes after a few-byte
//! round trip that tells it the facts have not moved (`StatsRequest::unless`). A dashboard
//! polling a farm's two years of statistics then costs neither side an encode or a decode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use printyard_contracts::stats::StatsFilter;
use sha2::{Digest, Sha256};

/// Answers kept per replica; past this the cache starts over.
const CAPACITY: usize = 256;

/// An answer as sent, and what it was made from.
#[derive(Clone, Debug)]
pub struct Kept {
    /// The generation of the facts it was summed at.
    pub generation: i64,
    /// The [`crate::status_cache::KnownPrinters::version`] its printers were named at.
    pub names: u64,
    pub body: Bytes,
    /// A strong entity tag of `body` (its content's hash: equal on every replica).
    pub etag: String,
}

impl Kept {
    pub fn new(generation: i64, names: u64, body: Bytes) -> Self {
        let digest = Sha256::digest(&body);
        let etag = format!(
            "\"{}\"",
            digest[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        Self {
            generation,
            names,
            body,
            etag,
        }
    }
}

#[derive(Clone, Default)]
pub struct StatsAnswers {
    entries: Arc<Mutex<HashMap<String, Kept>>>,
}

/// The key of an answer: its filter.
pub fn key(filter: &StatsFilter) -> String {
    serde_json::to_string(filter).unwrap_or_default()
}

impl StatsAnswers {
    /// The answer kept for `key` if its printers were named at `names`.
    pub fn get(&self, key: &str, names: u64) -> Option<Kept> {
        let entries = self.entries.lock().ok()?;
        entries.get(key).filter(|k| k.names == names).cloned()
    }

    pub fn put(&self, key: String, kept: Kept) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CAPACITY && !entries.contains_key(&key) {
                entries.clear();
            }
            entries.insert(key, kept);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_named_at_another_version_is_not_reused() {
        let answers = StatsAnswers::default();
        let filter = StatsFilter::default();
        answers.put(key(&filter), Kept::new(3, 1, Bytes::from_static(b"{}")));
        assert_eq!(answers.get(&key(&filter), 1).map(|k| k.generation), Some(3));
        assert!(answers.get(&key(&filter), 2).is_none(), "a printer renamed");
    }

    #[test]
    fn the_entity_tag_follows_the_content() {
        let a = Kept::new(1, 1, Bytes::from_static(b"{\"a\":1}"));
        let b = Kept::new(9, 4, Bytes::from_static(b"{\"a\":1}"));
        let c = Kept::new(1, 1, Bytes::from_static(b"{\"a\":2}"));
        assert_eq!(a.etag, b.etag, "the same bytes on another replica");
        assert_ne!(a.etag, c.etag);
        assert!(a.etag.starts_with('"') && a.etag.ends_with('"') && a.etag.len() == 34);
    }
}
