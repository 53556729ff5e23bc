//! Sending deliveries: each replica claims due deliveries (a lease as their next attempt time,
//! so a replica that dies mid-delivery leaves them to another once the lease ends: at least
//! once), posts them signed, and records how each went in batches. Per webhook and printer,
//! deliveries go out in event order; per webhook, at most `per_endpoint` are in flight, so a slow
//! or dead receiver holds only its own slots and its deadline, never the others'. A failed
//! attempt is retried with exponential backoff and jitter for `retry_for_secs`, then the
//! delivery fails; a webhook failing for longer than `disable_after_secs` is disabled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use printyard_contracts::webhooks::WebhookFormat;
use reqwest::Url;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::NotifierConfig;
use crate::payload::EventFacts;
use crate::signing::sign;
use crate::targets::{GuardedResolver, check_literal};

/// A claimed delivery, with its webhook and event. Holds the signing secret: no `Debug`.
#[derive(Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub webhook_id: i64,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub url: String,
    pub format: String,
    pub secret: String,
    pub event_id: String,
    pub kind: String,
    pub site: String,
    pub printer_id: i64,
    pub at: DateTime<Utc>,
    pub data: Value,
    pub archive_id: Option<i64>,
    pub filename: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
}

/// The columns [`Claimed`] reads, given the claimed deliveries as `c`.
macro_rules! claimed_select {
    () => {
        "SELECT c.id, c.webhook_id, c.attempts, c.created_at, w.url, w.format, w.secret, \
                ev.event_id, ev.kind, ev.site, ev.printer_id, ev.at, ev.data, \
                p.archive_id, p.filename, p.started_at \
         FROM claimed c \
         JOIN notifier.webhooks w ON w.id = c.webhook_id \
         JOIN notifier.events ev ON ev.id = c.event \
         LEFT JOIN notifier.prints p \
           ON p.print_key = ev.printer_id::text || '/' || (ev.data->>'print')"
    };
}
pub(crate) use claimed_select;

impl Claimed {
    pub fn facts(&self) -> EventFacts {
        EventFacts {
            kind: self.kind.clone(),
            site: self.site.clone(),
            printer_id: self.printer_id,
            printer_name: self
                .data
                .get("printer_name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            at: self.at,
            data: self.data.clone(),
            archive_id: self.archive_id,
            filename: self.filename.clone(),
            started_at: self.started_at,
        }
    }

    /// A print event whose archive is not known yet, young enough to wait for it (an end
    /// names its archive itself).
    fn waits_for_archive(&self, wait: Duration) -> bool {
        let print_event = crate::payload::is_print_event(&self.kind);
        let young = (Utc::now() - self.at).to_std().unwrap_or_default() < wait;
        let named = self.data.get("archive_id").is_some_and(Value::is_i64);
        print_event
            && !named
            && self.archive_id.is_none()
            && young
            && self.data.get("print").is_some()
    }
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Delivered {
        code: u16,
        latency_ms: i64,
    },
    Failed {
        code: Option<u16>,
        latency_ms: Option<i64>,
        error: String,
    },
    /// Not sent: its print's archive is awaited (the attempt does not count).
    Postponed,
}

/// An attempt to record.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivery_id: i64,
    pub webhook_id: i64,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub attempt: Attempt,
    /// A failure is retried (not for test deliveries).
    pub retry: bool,
}

/// The HTTP client deliveries go through: no redirects followed, deadlines on everything,
/// names resolved through the target guard.
pub fn client(config: &NotifierConfig) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.timeout())
        .connect_timeout(config.connect_timeout())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(32)
        .user_agent(concat!("Printyard-Webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver {
            policy: config.targets,
        }))
        .build()
}

/// The text of an error and its causes (reqwest's top level says only "error sending request").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text.chars().take(500).collect()
}

/// Posts one delivery, signed. Never longer than the client's timeout.
pub async fn attempt(
    client: &reqwest::Client,
    config: &NotifierConfig,
    delivery: &Claimed,
) -> Attempt {
    let failed = |error: String| Attempt::Failed {
        code: None,
        latency_ms: None,
        error,
    };
    let url = match Url::parse(&delivery.url) {
        Ok(url) => url,
        Err(err) => return failed(format!("not a URL: {err}")),
    };
    if let Err(why) = check_literal(&url, config.targets) {
        return failed(why);
    }
    let format = WebhookFormat::parse(&delivery.format).unwrap_or_default();
    let body = delivery.facts().body(format);
    let timestamp = Utc::now().timestamp();
    let Some(signature) = sign(&delivery.secret, &delivery.event_id, timestamp, &body.bytes) else {
        return failed("the webhook's secret is unreadable".into());
    };
    let mut request = client
        .post(url)
        .header("content-type", body.content_type)
        .header("webhook-id", &delivery.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature);
    for (name, value) in &body.headers {
        request = request.header(*name, value);
    }
    let started = Instant::now();
    let response = request.body(body.bytes).send().await;
    let elapsed = || started.elapsed().as_millis() as i64;
    match response {
        // The URL left out: the log shows it to whoever reads it, and a chat service's URL is
        // its token.
        Err(err) => Attempt::Failed {
            code: None,
            latency_ms: Some(elapsed()),
            error: error_chain(&err.without_url()),
        },
        Ok(mut response) => {
            let status = response.status();
            // A little of the answer, for the log (and so the connection can be reused).
            let mut said = Vec::new();
            while said.len() < 1024 {
                match response.chunk().await {
                    Ok(Some(chunk)) => said.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            let latency_ms = elapsed();
            if status.is_success() {
                Attempt::Delivered {
                    code: status.as_u16(),
                    latency_ms,
                }
            } else {
                let said = String::from_utf8_lossy(&said[..said.len().min(200)]).into_owned();
                let error = if status.is_redirection() {
                    format!("HTTP {status}: redirects are not followed")
                } else if said.trim().is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {}", said.trim())
                };
                Attempt::Failed {
                    code: Some(status.as_u16()),
                    latency_ms: Some(latency_ms),
                    error,
                }
            }
        }
    }
}

/// One replica's sender.
#[derive(Clone)]
pub struct Sender {
    pub pool: PgPool,
    pub client: reqwest::Client,
    pub config: Arc<NotifierConfig>,
    pub wake: Arc<Notify>,
}

impl Sender {
    /// Claims and sends due deliveries until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let (outcomes, records) = mpsc::channel::<Outcome>(4096);
        let recorder = tokio::spawn(record_outcomes(
            self.pool.clone(),
            self.config.clone(),
            records,
            self.wake.clone(),
        ));
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let in_flight: Arc<Mutex<HashMap<i64, usize>>> = Arc::default();
        let mut backoff = printyard_service::backoff::Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(10),
        );
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll()) => {}
            }
            loop {
                let free = slots.available_permits();
                if free == 0 {
                    break;
                }
                let busy: Vec<i64> = in_flight
                    .lock()
                    .map(|m| m.keys().copied().collect())
                    .unwrap_or_default();
                let claimed = match self.claim(free.min(1000) as i64, &busy).await {
                    Ok(claimed) => claimed,
                    Err(err) => {
                        tracing::warn!(error = %err, "deliveries not claimed");
                        tokio::time::sleep(backoff.next_delay()).await;
                        break;
                    }
                };
                backoff.reset();
                if claimed.is_empty() {
                    break;
                }
                for delivery in claimed {
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        break;
                    };
                    if let Ok(mut map) = in_flight.lock() {
                        *map.entry(delivery.webhook_id).or_default() += 1;
                    }
                    let sender = self.clone();
                    let outcomes = outcomes.clone();
                    let in_flight = in_flight.clone();
                    tokio::spawn(async move {
                        let outcome = sender.deliver(&delivery).await;
                        let _ = outcomes.send(outcome).await;
                        if let Ok(mut map) = in_flight.lock()
                            && let Some(count) = map.get_mut(&delivery.webhook_id)
                        {
                            *count -= 1;
                            if *count == 0 {
                                map.remove(&delivery.webhook_id);
                            }
                        }
                        drop(permit);
                        sender.wake.notify_one();
                    });
                }
            }
        }
        drop(outcomes);
        // Deliveries in flight finish (within their deadline) and are recorded.
        let _ = tokio::time::timeout(self.config.timeout() * 2, recorder).await;
    }

    async fn deliver(&self, delivery: &Claimed) -> Outcome {
        let wait = Duration::from_millis(self.config.archive_wait_ms);
        let attempt = if delivery.waits_for_archive(wait) {
            Attempt::Postponed
        } else {
            let attempt = attempt(&self.client, &self.config, delivery).await;
            let outcome = match &attempt {
                Attempt::Delivered { .. } => "delivered",
                _ => "failed",
            };
            metrics::counter!("notifier_attempts_total", "outcome" => outcome).increment(1);
            if let Attempt::Delivered { latency_ms, .. } = &attempt {
                metrics::histogram!("notifier_attempt_seconds").record(*latency_ms as f64 / 1e3);
            }
            attempt
        };
        Outcome {
            delivery_id: delivery.id,
            webhook_id: delivery.webhook_id,
            attempts: delivery.attempts,
            created_at: delivery.created_at,
            attempt,
            retry: true,
        }
    }

    /// Claims up to `limit` due deliveries, at most `per_endpoint` per webhook and the first
    /// pending one per webhook and printer, of webhooks with nothing in flight here (`busy`).
    async fn claim(&self, limit: i64, busy: &[i64]) -> Result<Vec<Claimed>, sqlx::Error> {
        sqlx::query_as(concat!(
            "WITH due AS ( \
                 SELECT d.id FROM notifier.webhooks w \
                 CROSS JOIN LATERAL ( \
                     SELECT d.id FROM notifier.deliveries d \
                     WHERE d.webhook_id = w.id AND d.state = 'pending' \
                       AND d.next_attempt_at <= now() \
                       AND NOT EXISTS ( \
                           SELECT 1 FROM notifier.deliveries e \
                           WHERE e.webhook_id = d.webhook_id AND e.printer_id = d.printer_id \
                             AND e.state = 'pending' AND e.event < d.event) \
                     ORDER BY d.event LIMIT $1 \
                     FOR UPDATE SKIP LOCKED) d \
                 WHERE w.enabled AND NOT (w.id = ANY ($2)) \
                 LIMIT $3), \
             claimed AS ( \
                 UPDATE notifier.deliveries d \
                 SET attempts = d.attempts + 1, \
                     next_attempt_at = now() + make_interval(secs => $4) \
                 FROM due WHERE d.id = due.id \
                 RETURNING d.id, d.webhook_id, d.event, d.attempts, d.created_at) ",
            claimed_select!()
        ))
        .bind(self.config.per_endpoint.max(1) as i64)
        .bind(busy)
        .bind(limit)
        .bind(self.config.lease().as_secs_f64())
        .fetch_all(&self.pool)
        .await
    }
}

/// Writes outcomes as they come, in batches (one transaction per batch), and wakes the sender
/// after each (a recorded delivery may free the next one of its printer).
async fn record_outcomes(
    pool: PgPool,
    config: Arc<NotifierConfig>,
    mut records: mpsc::Receiver<Outcome>,
    wake: Arc<Notify>,
) {
    let mut batch = Vec::new();
    while records.recv_many(&mut batch, 512).await > 0 {
        let mut backoff = printyard_service::backoff::Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(5),
        );
        for _ in 0..10 {
            match record(&pool, &config, &batch).await {
                Ok(()) => break,
                Err(err) => {
                    // Unrecorded, a delivery is sent again when its lease ends: at least once.
                    tracing::warn!(error = %err, count = batch.len(), "delivery outcomes not recorded; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
        batch.clear();
        wake.notify_one();
    }
}

/// A batch of outcomes as the columns of the statements that record them.
#[derive(Default)]
struct Columns {
    ids: Vec<i64>,
    states: Vec<&'static str>,
    next: Vec<Option<DateTime<Utc>>>,
    /// 1 where the attempt is not counted (postponed, never sent).
    undo: Vec<i32>,
    codes: Vec<Option<i32>>,
    latencies: Vec<Option<i64>>,
    errors: Vec<Option<String>>,
    /// Webhooks that answered, that failed, and that failed for good (with the last error).
    ok: Vec<i64>,
    failing: Vec<i64>,
    gave_up: Vec<i64>,
    gave_up_errors: Vec<String>,
}

impl Columns {
    /// What each outcome means at `now`: delivered, retried later (within `retry_for_secs`),
    /// or failed for good.
    fn of(batch: &[Outcome], config: &NotifierConfig, now: DateTime<Utc>) -> Self {
        let retry_for = chrono::Duration::from_std(Duration::from_secs(config.retry_for_secs))
            .unwrap_or(chrono::Duration::MAX);
        let mut c = Columns::default();
        for outcome in batch {
            c.ids.push(outcome.delivery_id);
            match &outcome.attempt {
                Attempt::Postponed => {
                    c.states.push("pending");
                    c.next.push(Some(now + chrono::Duration::milliseconds(250)));
                    c.undo.push(1);
                    c.codes.push(None);
                    c.latencies.push(None);
                    c.errors.push(None);
                }
                Attempt::Delivered { code, latency_ms } => {
                    c.states.push("delivered");
                    c.next.push(None);
                    c.undo.push(0);
                    c.codes.push(Some(*code as i32));
                    c.latencies.push(Some(*latency_ms));
                    c.errors.push(None);
                    if outcome.retry {
                        c.ok.push(outcome.webhook_id);
                    }
                }
                Attempt::Failed {
                    code,
                    latency_ms,
                    error,
                } => {
                    let delay = config.retry_delay(outcome.attempts);
                    let at = now + chrono::Duration::from_std(delay).unwrap_or_default();
                    let retried = outcome.retry && at - outcome.created_at <= retry_for;
                    c.states.push(if retried { "pending" } else { "failed" });
                    c.next.push(retried.then_some(at));
                    c.undo.push(0);
                    c.codes.push(code.map(i32::from));
                    c.latencies.push(*latency_ms);
                    c.errors.push(Some(error.clone()));
                    if outcome.retry {
                        c.failing.push(outcome.webhook_id);
                        if !retried {
                            c.gave_up.push(outcome.webhook_id);
                            c.gave_up_errors.push(error.clone());
                        }
                    }
                }
            }
        }
        c
    }
}

/// Records a batch of outcomes: delivered, retried later, or failed for good; and what they
/// say of their webhooks (failing since when; disabled when failing for too long).
pub async fn record(
    pool: &PgPool,
    config: &NotifierConfig,
    batch: &[Outcome],
) -> Result<(), sqlx::Error> {
    let Columns {
        ids,
        states,
        next,
        undo,
        codes,
        latencies,
        errors,
        ok,
        failing,
        gave_up,
        gave_up_errors,
    } = Columns::of(batch, config, Utc::now());
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE notifier.deliveries d \
         SET state = u.state, \
             next_attempt_at = coalesce(u.next_at, d.next_attempt_at), \
             attempts = d.attempts - u.undo, \
             response_code = CASE WHEN u.undo = 1 THEN d.response_code ELSE u.code END, \
             latency_ms = CASE WHEN u.undo = 1 THEN d.latency_ms ELSE u.latency END, \
             last_error = CASE WHEN u.undo = 1 THEN d.last_error ELSE u.error END, \
             finished_at = CASE WHEN u.state <> 'pending' THEN now() END \
         FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::int[], $5::int[], \
                     $6::bigint[], $7::text[]) AS u(id, state, next_at, undo, code, latency, error) \
         WHERE d.id = u.id AND d.state = 'pending'",
    )
    .bind(&ids)
    .bind(&states)
    .bind(&next)
    .bind(&undo)
    .bind(&codes)
    .bind(&latencies)
    .bind(&errors)
    .execute(&mut *tx)
    .await?;
    if !failing.is_empty() {
        sqlx::query(
            "UPDATE notifier.webhooks SET failing_since = coalesce(failing_since, now()) \
             WHERE id = ANY ($1)",
        )
        .bind(&failing)
        .execute(&mut *tx)
        .await?;
    }
    if !gave_up.is_empty() {
        let disable_after = config.disable_after_secs as f64;
        sqlx::query(
            "WITH off AS ( \
                 UPDATE notifier.webhooks w \
                 SET enabled = FALSE, \
                     disabled_reason = 'failing since ' \
                         || to_char(w.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') \
                         || ' UTC; last error: ' || u.error \
                 FROM (SELECT DISTINCT ON (id) id, error \
                       FROM unnest($1::bigint[], $2::text[]) AS g(id, error)) u \
                 WHERE w.id = u.id AND w.enabled \
                   AND w.failing_since <= now() - make_interval(secs => $3) \
                 RETURNING w.id) \
             UPDATE notifier.deliveries SET state = 'failed', finished_at = now(), \
                 last_error = coalesce(last_error || '; ', '') || 'webhook disabled' \
             WHERE state = 'pending' AND webhook_id IN (SELECT id FROM off)",
        )
        .bind(&gave_up)
        .bind(&gave_up_errors)
        .bind(disable_after)
        .execute(&mut *tx)
        .await?;
    }
    if !ok.is_empty() {
        sqlx::query(
            "UPDATE notifier.webhooks SET failing_since = NULL \
             WHERE id = ANY ($1) AND failing_since IS NOT NULL",
        )
        .bind(&ok)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}
