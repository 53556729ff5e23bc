//! Answers kept until the facts change: every transaction that changes a print's facts (or the
//! cost settings, whose currency an answer tells) bumps `stats.generation`, and an answer is
//! reused only while the generation it was computed at is still the current one. A dashboard asking the same question every few seconds then costs
//! one row read until a print ends, on every replica (each keeps its own answers).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use printyard_contracts::stats::{Statistics, StatsFilter};
use sqlx::{PgPool, Postgres, Transaction};

/// Answers kept per replica; past this the cache starts over.
const CAPACITY: usize = 256;

/// An answer and the generation it was summed at.
type Kept = (i64, Arc<Statistics>);

#[derive(Clone, Default)]
pub struct AnswerCache {
    entries: Arc<Mutex<HashMap<String, Kept>>>,
}

/// The key of an answer: its filter.
pub fn key(filter: &StatsFilter) -> String {
    serde_json::to_string(filter).unwrap_or_default()
}

impl AnswerCache {
    pub fn get(&self, key: &str, generation: i64) -> Option<Arc<Statistics>> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(kept, _)| *kept == generation)
            .map(|(_, answer)| answer.clone())
    }

    pub fn put(&self, key: String, generation: i64, answer: Arc<Statistics>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CAPACITY {
                entries.clear();
            }
            entries.insert(key, (generation, answer));
        }
    }
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
        let answer = Arc::new(Statistics {
            totals: Default::default(),
            by_printer: vec![],
            by_day: vec![],
            by_filament_type: vec![],
            currency: "EUR".into(),
        });
        cache.put(key(&filter), 7, answer.clone());
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
}
