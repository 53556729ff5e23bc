//! Rate limits shared by every `api` replica, without a database write per request. Each
//! replica counts the requests it admits per key and class in fixed windows aligned on the
//! epoch (`window_secs`; the reference's `X-RateLimit-Reset` is the window's end), and every
//! `sync_ms` tells the others what it admitted since ([`rate_limit_subject`], core NATS); a
//! decision counts this replica's requests and those the others reported. So 100 reads a
//! minute mean 100 across the replicas behind a load balancer, within a bound: a key may
//! exceed its budget by what the other replicas admitted for it in the last `sync_ms` plus
//! NATS's delivery time (milliseconds). Replicas' clocks must agree to well under a window
//! (NTP); a replica started mid-window counts from what it hears from then on. Nothing here
//! waits on Postgres or on NATS: a request costs a lock and a map lookup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use printyard_contracts::api::{RateLimitCounts, rate_limit_subject};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The rate-limit budget a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateClass {
    Read,
    Write,
    Control,
}

impl RateClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RateClass::Read => "read",
            RateClass::Write => "write",
            RateClass::Control => "control",
        }
    }
}

/// `rate_limits.*`: requests per window for each class.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    /// Turn limits off entirely (benchmarks, trusted networks).
    pub enabled: bool,
    pub window_secs: u32,
    pub read: u32,
    pub write: u32,
    pub control: u32,
    /// How often a replica tells the others what it admitted (the sharing bound).
    pub sync_ms: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window_secs: 60,
            read: 100,
            write: 30,
            control: 10,
            sync_ms: 10,
        }
    }
}

impl RateLimitConfig {
    pub fn limit(&self, class: RateClass) -> u32 {
        match class {
            RateClass::Read => self.read,
            RateClass::Write => self.write,
            RateClass::Control => self.control,
        }
    }
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Epoch second at which the current window ends.
    pub reset_epoch: i64,
    /// How long until the next window (meaningful when refused).
    pub retry_after: Duration,
}

/// (key id, class) → requests.
type Tally = HashMap<(i64, &'static str), u32>;

#[derive(Default)]
struct Counts {
    /// The window counted, its start in Unix seconds.
    window: i64,
    /// Every replica's requests this window, this one's included.
    all: Tally,
    /// This replica's, not yet told to the others.
    unsent: Tally,
}

impl Counts {
    /// Moves to `window` if it is newer than the one counted.
    fn roll(&mut self, window: i64) {
        if window > self.window {
            self.window = window;
            self.all.clear();
            self.unsent.clear();
        }
    }
}

/// Cheap to clone (every request clones the api's state).
#[derive(Clone)]
pub struct RateLimiter {
    config: Arc<RateLimitConfig>,
    replica: Arc<str>,
    counts: Arc<Mutex<Counts>>,
}

fn class_name(class: &str) -> Option<&'static str> {
    [RateClass::Read, RateClass::Write, RateClass::Control]
        .into_iter()
        .map(RateClass::as_str)
        .find(|c| *c == class)
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config: Arc::new(config),
            replica: format!("api-{:016x}", rand::random::<u64>()).into(),
            counts: Arc::default(),
        }
    }

    fn window_secs(&self) -> i64 {
        i64::from(self.config.window_secs.max(1))
    }

    /// Counts one request of `key_id` in `class` and says whether it may proceed.
    pub fn check(&self, key_id: i64, class: RateClass) -> Decision {
        let limit = self.config.limit(class);
        if !self.config.enabled {
            return Decision {
                allowed: true,
                limit,
                remaining: limit,
                reset_epoch: 0,
                retry_after: Duration::ZERO,
            };
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let window_secs = self.window_secs();
        let window = now.as_secs() as i64 / window_secs * window_secs;
        let reset_epoch = window + window_secs;
        let retry_after = Duration::from_secs(reset_epoch as u64).saturating_sub(now);
        let Ok(mut counts) = self.counts.lock() else {
            // A poisoned lock (a panic elsewhere): admit rather than refuse everyone.
            return Decision {
                allowed: true,
                limit,
                remaining: limit,
                reset_epoch,
                retry_after,
            };
        };
        counts.roll(window);
        let entry = (key_id, class.as_str());
        let used = counts.all.get(&entry).copied().unwrap_or(0);
        if used >= limit {
            return Decision {
                allowed: false,
                limit,
                remaining: 0,
                reset_epoch,
                retry_after,
            };
        }
        *counts.all.entry(entry).or_default() += 1;
        *counts.unsent.entry(entry).or_default() += 1;
        Decision {
            allowed: true,
            limit,
            remaining: limit - used - 1,
            reset_epoch,
            retry_after,
        }
    }

    /// Takes another replica's report.
    fn heard(&self, report: RateLimitCounts) {
        if *report.replica == *self.replica {
            return;
        }
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        counts.roll(report.window);
        if report.window != counts.window {
            return; // an older window's report
        }
        for (key, class, n) in report.counts {
            if let Some(class) = class_name(&class) {
                let total = counts.all.entry((key, class)).or_default();
                *total = total.saturating_add(n);
            }
        }
    }

    /// What this replica admitted since it last said, to tell the others.
    fn take_unsent(&self) -> Option<RateLimitCounts> {
        let mut counts = self.counts.lock().ok()?;
        if counts.unsent.is_empty() {
            return None;
        }
        let window = counts.window;
        let unsent = std::mem::take(&mut counts.unsent);
        Some(RateLimitCounts {
            replica: self.replica.to_string(),
            window,
            counts: unsent
                .into_iter()
                .map(|((key, class), n)| (key, class.to_owned(), n))
                .collect(),
        })
    }

    /// Shares the counts with the other replicas until `stop`: says what this one admitted
    /// every `sync_ms`, and adds what the others say.
    pub async fn share(self, client: async_nats::Client, stop: CancellationToken) {
        if !self.config.enabled {
            return;
        }
        let mut heard = match client.subscribe(rate_limit_subject()).await {
            Ok(subscriber) => subscriber,
            Err(err) => {
                tracing::error!(error = %err, "rate limits not shared: subscription failed");
                return;
            }
        };
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.sync_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                message = heard.next() => match message {
                    Some(message) => {
                        if let Ok(report) = serde_json::from_slice(&message.payload) {
                            self.heard(report);
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    if let Some(report) = self.take_unsent()
                        && let Ok(payload) = serde_json::to_vec(&report)
                        && let Err(err) = client.publish(rate_limit_subject(), payload.into()).await
                    {
                        tracing::warn!(error = %err, "rate-limit counts not shared");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(read: u32) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            read,
            window_secs: 3600,
            ..Default::default()
        })
    }

    #[test]
    fn a_budget_counts_down_then_refuses_until_the_window_ends() {
        let limiter = limiter(3);
        let remaining: Vec<u32> = (0..3)
            .map(|_| limiter.check(1, RateClass::Read).remaining)
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limiter.check(1, RateClass::Read);
        assert!(!refused.allowed);
        assert!(refused.retry_after <= Duration::from_secs(3600));
        assert!(limiter.check(2, RateClass::Read).allowed, "another key");
        assert!(limiter.check(1, RateClass::Write).allowed, "another class");
    }

    #[test]
    fn replicas_share_one_budget_through_their_reports() {
        let (a, b) = (limiter(4), limiter(4));
        assert!(a.check(1, RateClass::Read).allowed);
        assert!(a.check(1, RateClass::Read).allowed);
        b.heard(a.take_unsent().unwrap());
        assert!(a.take_unsent().is_none(), "said once");
        assert_eq!(b.check(1, RateClass::Read).remaining, 1);
        assert!(b.check(1, RateClass::Read).allowed);
        assert!(!b.check(1, RateClass::Read).allowed, "4 across both");
        // Its own report is ignored; an older window's too.
        let mut own = b.take_unsent().unwrap();
        b.heard(own.clone());
        assert!(!b.check(1, RateClass::Read).allowed);
        own.replica = "other".into();
        own.window -= 3600;
        a.heard(own);
        assert_eq!(a.check(1, RateClass::Read).remaining, 1);
    }
}
