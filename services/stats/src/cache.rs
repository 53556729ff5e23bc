//! Answers kept until the facts change: every transaction that changes a print's facts (or the
//! cost settings, whose currency an answer tells) bumps `stats.generation`, and an answer is
//! reused only while the generation it was computed at is still the current one. A dashboard
//! asking the same question every few seconds then costs one row read until a print ends, on
//! every replica (each keeps its own answers). Answers are kept as the JSON they are sent as, so
//! that a reused one is not encoded again; a caller that keeps the answer of the current
//! generation itself (`api` does) is told so in a few bytes instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use printyard_contracts::stats::StatsFilter;
use sqlx::{PgPool, Postgres, Transaction};

/// Answers kept per replica; past this the cache starts over.
const CAPACITY: usize = 256;

/// An answer (its JSON) and the generation it was summed at.
type Kept = (i64, Bytes);

#[derive(Clone, Default)]
pub struct AnswerCache {
    entries: Arc<Mutex<HashMap<String, Kept>>>,
}

/// The key of an answer: its filter.
pub fn key(filter: &StatsFilter) -> String {
    serde_json::to_string(filter).unwrap_or_default()
}

impl AnswerCache {
    pub fn get(&self, key: &str, generation: i64) -> Option<Bytes> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(kept, _)| *kept == generation)
            .map(|(_, answer)| answer.clone())
    }

    pub fn put(&self, key: String, generation: i64, answer: Bytes) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CAPACITY {
                entries.clear();
            }
            entries.insert(key, (generation, answer));
        }
    }
}

/// The reply of [`printyard_contracts::stats::STATISTICS`]: a `StatsAnswer` written around the
/// kept JSON of the statistics (or `null`: the caller keeps this generation's answer).
pub fn reply(generation: i64, statistics: Option<&[u8]>) -> Bytes {
    let statistics = statistics.unwrap_or(b"null");
    let head = format!("{{\"generation\":{generation},\"statistics\":");
    let mut reply = Vec::with_capacity(head.len() + statistics.len() + 1);
    reply.extend_from_slice(head.as_bytes());
    reply.extend_from_slice(statistics);
    reply.push(b'}');
    reply.into()
}

/// The current generation of the facts.
pub async fn generation(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM stats.generation")
        .fetch_one(pool)
        .await
}

/// Marks the facts changed, in the transaction that changes them.
pub async fn bump(tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE stats.generation SET value = value + 1")
        .execute(&mut **tx)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_reused_only_at_its_generation() {
        let cache = AnswerCache::default();
        let filter = StatsFilter::default();
        cache.put(key(&filter), 7, Bytes::from_static(b"{}"));
        assert!(cache.get(&key(&filter), 7).is_some());
        // A print ended, or the prices (and their currency) changed.
        assert!(
            cache.get(&key(&filter), 8).is_none(),
            "stale after a change"
        );
        let other = StatsFilter {
            printer_id: Some(1),
            ..Default::default()
        };
        assert!(cache.get(&key(&other), 7).is_none());
    }

    #[test]
    fn a_reply_reads_as_the_contract_answer() {
        use printyard_contracts::stats::{Statistics, StatsAnswer};
        let statistics = Statistics {
            totals: Default::default(),
            by_printer: vec![],
            by_day: vec![],
            by_filament_type: vec![],
            currency: "EUR".into(),
        };
        let json = serde_json::to_vec(&statistics).unwrap();
        let full: StatsAnswer = serde_json::from_slice(&reply(12, Some(&json))).unwrap();
        assert_eq!(full.generation, 12);
        assert_eq!(full.statistics, Some(statistics));
        let unchanged: StatsAnswer = serde_json::from_slice(&reply(13, None)).unwrap();
        assert_eq!(unchanged.generation, 13);
        assert_eq!(unchanged.statistics, None);
    }
}
