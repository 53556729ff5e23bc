//! The endpoints `api` calls for `/webhooks`: create (the secret shown once), list, get,
//! update, delete, test, and the delivery log.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use printyard_contracts::farm::Site;
use printyard_contracts::webhooks::{
    CreatedWebhook, Delivery, DeliveryList, DeliveryStatus, ListDeliveries, NewWebhook,
    UpdateWebhook, Webhook, WebhookDeleted, WebhookEvent, WebhookFormat, WebhookId, WebhookList,
};
use printyard_contracts::{ErrorBody, ErrorCode, rpc::Empty};
use sqlx::PgPool;

use crate::config::NotifierConfig;
use crate::delivery::{self, Claimed, Outcome, claimed_select};
use crate::signing::new_secret;
use crate::targets::check_url;

/// The most webhooks a farm has.
pub const MAX_WEBHOOKS: i64 = 10_000;
/// The most deliveries one page of the log has.
pub const MAX_DELIVERIES: i64 = 1000;

#[derive(Clone)]
pub struct Subscriptions {
    pub pool: PgPool,
    pub config: Arc<NotifierConfig>,
    pub client: reqwest::Client,
}

fn unavailable(err: sqlx::Error) -> ErrorBody {
    printyard_service::db::error_body(&err, "notifier")
}

fn invalid(detail: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::ValidationError, detail)
}

fn not_found(id: i64) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, format!("Webhook {id} not found"))
}

#[derive(Debug, sqlx::FromRow)]
struct WebhookRow {
    id: i64,
    url: String,
    events: Vec<String>,
    printer_ids: Option<Vec<i64>>,
    site: Option<String>,
    enabled: bool,
    format: String,
    created_at: DateTime<Utc>,
    failing_since: Option<DateTime<Utc>>,
    disabled_reason: Option<String>,
}

/// A query on webhooks returning the columns [`WebhookRow`] reads.
macro_rules! webhooks {
    ($head:literal, $tail:literal) => {
        concat!(
            $head,
            " id, url, events, printer_ids, site, enabled, format, created_at, \
              failing_since, disabled_reason ",
            $tail
        )
    };
}

impl From<WebhookRow> for Webhook {
    fn from(row: WebhookRow) -> Self {
        Webhook {
            id: row.id,
            url: row.url,
            events: row
                .events
                .iter()
                .filter_map(|e| WebhookEvent::parse(e))
                .collect(),
            printer_ids: row.printer_ids,
            site: row.site,
            enabled: row.enabled,
            format: WebhookFormat::parse(&row.format).unwrap_or_default(),
            created_at: row.created_at,
            failing_since: row.failing_since,
            disabled_reason: row.disabled_reason,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    kind: String,
    event_id: String,
    printer_id: i64,
    state: String,
    attempts: i32,
    response_code: Option<i32>,
    latency_ms: Option<i64>,
    last_error: Option<String>,
    next_attempt_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

/// Deliveries with the columns [`DeliveryRow`] reads, then `$tail`.
macro_rules! deliveries {
    ($tail:literal) => {
        concat!(
            "SELECT d.id, ev.kind, ev.event_id, ev.printer_id, d.state, d.attempts, \
                    d.response_code, d.latency_ms, d.last_error, d.next_attempt_at, d.created_at, \
                    d.finished_at \
             FROM notifier.deliveries d JOIN notifier.events ev ON ev.id = d.event ",
            $tail
        )
    };
}

impl From<DeliveryRow> for Delivery {
    fn from(row: DeliveryRow) -> Self {
        let status = DeliveryStatus::parse(&row.state).unwrap_or(DeliveryStatus::Pending);
        Delivery {
            id: row.id,
            event: row.kind,
            message_id: row.event_id,
            printer_id: (row.printer_id > 0).then_some(row.printer_id),
            status,
            attempts: row.attempts,
            response_code: row.response_code,
            latency_ms: row.latency_ms,
            last_error: row.last_error,
            next_retry: (status == DeliveryStatus::Pending).then_some(row.next_attempt_at),
            created_at: row.created_at,
            finished_at: row.finished_at,
        }
    }
}

/// Event names, each once, in a stable order; every event when `None`.
fn event_names(events: Option<&[WebhookEvent]>) -> Result<Vec<String>, ErrorBody> {
    let mut events = events.map_or_else(|| WebhookEvent::ALL.to_vec(), <[_]>::to_vec);
    if events.is_empty() {
        return Err(invalid(
            "events: name at least one event, or leave it out for every event",
        ));
    }
    events.sort();
    events.dedup();
    Ok(events.iter().map(|e| e.as_str().to_owned()).collect())
}

fn check_printers(ids: Option<&[i64]>) -> Result<(), ErrorBody> {
    match ids {
        Some(ids) if ids.len() > 10_000 => Err(invalid("printer_ids: at most 10000 printers")),
        Some(ids) if ids.iter().any(|&id| id <= 0) => {
            Err(invalid("printer_ids: printer ids are positive"))
        }
        _ => Ok(()),
    }
}

fn check_site(site: Option<&str>) -> Result<(), ErrorBody> {
    match site {
        Some(site) => Site::parse(site)
            .map(drop)
            .map_err(|e| invalid(format!("site: {e}"))),
        None => Ok(()),
    }
}

impl Subscriptions {
    async fn row(&self, id: i64) -> Result<WebhookRow, ErrorBody> {
        sqlx::query_as(webhooks!("SELECT", "FROM notifier.webhooks WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| not_found(id))
    }

    async fn checked_url(&self, url: &str) -> Result<String, ErrorBody> {
        check_url(url, self.config.targets)
            .await
            .map(|u| u.to_string())
            .map_err(invalid)
    }

    pub async fn create(&self, new: NewWebhook) -> Result<CreatedWebhook, ErrorBody> {
        let url = self.checked_url(&new.url).await?;
        let events = event_names(new.events.as_deref())?;
        check_printers(new.printer_ids.as_deref())?;
        check_site(new.site.as_deref())?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM notifier.webhooks")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        if count >= MAX_WEBHOOKS {
            return Err(ErrorBody::new(
                ErrorCode::Conflict,
                format!("A farm has at most {MAX_WEBHOOKS} webhooks"),
            ));
        }
        let secret = new_secret();
        let row: WebhookRow = sqlx::query_as(webhooks!(
            "INSERT INTO notifier.webhooks (url, events, printer_ids, site, enabled, format, secret) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING",
            ""
        ))
        .bind(&url)
        .bind(&events)
        .bind(&new.printer_ids)
        .bind(&new.site)
        .bind(new.enabled.unwrap_or(true))
        .bind(new.format.unwrap_or_default().as_str())
        .bind(&secret)
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        // Not the URL: chat services put their token in it (Discord, Slack).
        tracing::info!(webhook = row.id, format = %row.format, "webhook created");
        Ok(CreatedWebhook {
            webhook: row.into(),
            secret,
        })
    }

    pub async fn list(&self, _: Empty) -> Result<WebhookList, ErrorBody> {
        let rows: Vec<WebhookRow> =
            sqlx::query_as(webhooks!("SELECT", "FROM notifier.webhooks ORDER BY id"))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(WebhookList {
            webhooks: rows.into_iter().map(Webhook::from).collect(),
        })
    }

    pub async fn get(&self, id: WebhookId) -> Result<Webhook, ErrorBody> {
        self.row(id.id).await.map(Webhook::from)
    }

    pub async fn update(&self, request: UpdateWebhook) -> Result<Webhook, ErrorBody> {
        let current = self.row(request.id).await?;
        let patch = request.patch;
        let url = match &patch.url {
            Some(url) => self.checked_url(url).await?,
            None => current.url,
        };
        let events = match &patch.events {
            Some(events) => event_names(Some(events))?,
            None => current.events,
        };
        let printer_ids = patch.printer_ids.unwrap_or(current.printer_ids);
        check_printers(printer_ids.as_deref())?;
        let site = patch.site.unwrap_or(current.site);
        check_site(site.as_deref())?;
        let enabled = patch.enabled.unwrap_or(current.enabled);
        let format = patch
            .format
            .map_or(current.format, |f| f.as_str().to_owned());
        // Enabling clears the failure that disabled it: its deliveries start afresh.
        let row: WebhookRow = sqlx::query_as(webhooks!(
            "UPDATE notifier.webhooks SET url = $2, events = $3, printer_ids = $4, site = $5, \
                 enabled = $6, format = $7, \
                 failing_since = CASE WHEN $6 AND NOT enabled THEN NULL ELSE failing_since END, \
                 disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END \
             WHERE id = $1 RETURNING",
            ""
        ))
        .bind(request.id)
        .bind(&url)
        .bind(&events)
        .bind(&printer_ids)
        .bind(&site)
        .bind(enabled)
        .bind(&format)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| not_found(request.id))?;
        Ok(row.into())
    }

    pub async fn delete(&self, id: WebhookId) -> Result<WebhookDeleted, ErrorBody> {
        let deleted = sqlx::query("DELETE FROM notifier.webhooks WHERE id = $1")
            .bind(id.id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?
            .rows_affected();
        if deleted == 0 {
            return Err(not_found(id.id));
        }
        Ok(WebhookDeleted { deleted: true })
    }

    /// Sends a `test` event now (one attempt, recorded in the log) and answers with how it went.
    pub async fn test(&self, id: WebhookId) -> Result<Delivery, ErrorBody> {
        self.row(id.id).await?;
        // The event first: rows a statement inserts are not visible to its own joins.
        let event: i64 = sqlx::query_scalar(
            "INSERT INTO notifier.events (event_id, kind, site, printer_id, at) \
             VALUES ('test_' || md5(random()::text || clock_timestamp()::text), 'test', '', 0, now()) \
             RETURNING id",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        let claimed: Claimed = sqlx::query_as(concat!(
            "WITH claimed AS ( \
                 INSERT INTO notifier.deliveries (webhook_id, event, printer_id, attempts, next_attempt_at) \
                 VALUES ($1, $2, -$2, 1, now() + make_interval(secs => $3)) \
                 RETURNING id, webhook_id, event, attempts, created_at) ",
            claimed_select!()
        ))
        .bind(id.id)
        .bind(event)
        .bind(self.config.lease().as_secs_f64())
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        let attempt = delivery::attempt(&self.client, &self.config, &claimed).await;
        let outcome = Outcome {
            delivery_id: claimed.id,
            webhook_id: claimed.webhook_id,
            attempts: claimed.attempts,
            created_at: claimed.created_at,
            attempt,
            retry: false,
        };
        delivery::record(&self.pool, &self.config, &[outcome])
            .await
            .map_err(unavailable)?;
        let row: DeliveryRow = sqlx::query_as(deliveries!("WHERE d.id = $1"))
            .bind(claimed.id)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.into())
    }

    pub async fn deliveries(&self, request: ListDeliveries) -> Result<DeliveryList, ErrorBody> {
        if !(1..=MAX_DELIVERIES).contains(&request.limit) {
            return Err(invalid(format!("limit: 1 to {MAX_DELIVERIES}")));
        }
        self.row(request.webhook_id).await?;
        let rows: Vec<DeliveryRow> = sqlx::query_as(deliveries!(
            "WHERE d.webhook_id = $1 \
               AND ($2::bigint IS NULL OR d.id < $2) \
               AND ($3::text IS NULL OR d.state = $3) \
             ORDER BY d.id DESC LIMIT $4"
        ))
        .bind(request.webhook_id)
        .bind(request.before)
        .bind(request.status.map(DeliveryStatus::as_str))
        .bind(request.limit)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(DeliveryList {
            deliveries: rows.into_iter().map(Delivery::from).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_default_to_all_and_are_kept_once_in_order() {
        assert_eq!(event_names(None).unwrap().len(), WebhookEvent::ALL.len());
        let names = event_names(Some(&[
            WebhookEvent::PrintFailed,
            WebhookEvent::PrintStarted,
            WebhookEvent::PrintFailed,
        ]))
        .unwrap();
        assert_eq!(names, ["print_started", "print_failed"]);
        assert!(event_names(Some(&[])).is_err());
    }

    #[test]
    fn filters_are_checked() {
        assert!(check_printers(Some(&[1, 2])).is_ok());
        assert!(check_printers(Some(&[0])).is_err());
        assert!(check_site(Some("Bad Site")).is_err());
        assert!(check_site(Some("lab-2")).is_ok());
    }
}
