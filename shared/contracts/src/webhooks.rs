//! What `api` asks the `notifier` service: webhook subscriptions, their test and their delivery
//! log; and the events a subscription can name.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ServiceName;
use crate::archive::present;
use crate::farm::EventKind;
use crate::rpc::{Empty, Endpoint};

/// The events a webhook (or a client of the live event stream) can ask for: the reference's,
/// then Printyard's. The farm's internal events (file transfers, archive facts) are not among
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    PrintStarted,
    /// At 25, 50 and 75 %.
    PrintProgress,
    PrintComplete,
    PrintFailed,
    PrintStopped,
    /// A print ended and nothing tells how (`end_reason` says why).
    PrintUnknown,
    PrinterOnline,
    PrinterOffline,
    /// A new HMS error on a printer (`code`, `severity`, `text`).
    PrinterError,
    ArchiveCreated,
    QueueJobStarted,
    QueueJobCompleted,
    QueueJobFailed,
    /// A spool went under its material's low-stock threshold.
    SpoolLow,
    /// A maintenance task fell due on a printer.
    MaintenanceDue,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 15] = [
        WebhookEvent::PrintStarted,
        WebhookEvent::PrintProgress,
        WebhookEvent::PrintComplete,
        WebhookEvent::PrintFailed,
        WebhookEvent::PrintStopped,
        WebhookEvent::PrintUnknown,
        WebhookEvent::PrinterOnline,
        WebhookEvent::PrinterOffline,
        WebhookEvent::PrinterError,
        WebhookEvent::ArchiveCreated,
        WebhookEvent::QueueJobStarted,
        WebhookEvent::QueueJobCompleted,
        WebhookEvent::QueueJobFailed,
        WebhookEvent::SpoolLow,
        WebhookEvent::MaintenanceDue,
    ];

    /// The farm event it is.
    pub fn kind(self) -> EventKind {
        match self {
            WebhookEvent::PrintStarted => EventKind::PrintStarted,
            WebhookEvent::PrintProgress => EventKind::PrintProgress,
            WebhookEvent::PrintComplete => EventKind::PrintComplete,
            WebhookEvent::PrintFailed => EventKind::PrintFailed,
            WebhookEvent::PrintStopped => EventKind::PrintStopped,
            WebhookEvent::PrintUnknown => EventKind::PrintUnknown,
            WebhookEvent::PrinterOnline => EventKind::PrinterOnline,
            WebhookEvent::PrinterOffline => EventKind::PrinterOffline,
            WebhookEvent::PrinterError => EventKind::PrinterError,
            WebhookEvent::ArchiveCreated => EventKind::ArchiveCreated,
            WebhookEvent::QueueJobStarted => EventKind::QueueJobStarted,
            WebhookEvent::QueueJobCompleted => EventKind::QueueJobCompleted,
            WebhookEvent::QueueJobFailed => EventKind::QueueJobFailed,
            WebhookEvent::SpoolLow => EventKind::SpoolLow,
            WebhookEvent::MaintenanceDue => EventKind::MaintenanceDue,
        }
    }

    /// The public event a farm event is, if it is one.
    pub fn of(kind: EventKind) -> Option<WebhookEvent> {
        WebhookEvent::ALL.into_iter().find(|e| e.kind() == kind)
    }

    pub fn as_str(self) -> &'static str {
        self.kind().as_str()
    }

    pub fn parse(name: &str) -> Option<WebhookEvent> {
        WebhookEvent::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// What a delivery's body looks like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The reference's payload: `{event, timestamp, data}`.
    #[default]
    Printyard,
    /// A Discord incoming webhook message (`{"content": ...}`).
    Discord,
    /// A Slack incoming webhook message (`{"text": ...}`).
    Slack,
    /// An ntfy topic URL: the message as the body, `Title`, `Tags` and `Priority` headers.
    Ntfy,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Printyard => "printyard",
            WebhookFormat::Discord => "discord",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Ntfy => "ntfy",
        }
    }

    pub fn parse(name: &str) -> Option<WebhookFormat> {
        [
            WebhookFormat::Printyard,
            WebhookFormat::Discord,
            WebhookFormat::Slack,
            WebhookFormat::Ntfy,
        ]
        .into_iter()
        .find(|f| f.as_str() == name)
    }
}

/// `POST /webhooks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `http` or `https`. Loopback and link-local targets are refused unless the notifier's
    /// `notifier.targets` allows them.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 2000))]
    pub url: String,
    /// The events to send; every event when absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub events: Option<Vec<WebhookEvent>>,
    /// Only these printers' events (events of no printer, such as a test, always pass).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 10000))]
    pub printer_ids: Option<Vec<i64>>,
    /// Only this site's events.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 32, pattern = "^[a-z0-9_-]+$")
    )]
    pub site: Option<String>,
    /// `true` when absent.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `printyard` when absent.
    #[serde(default)]
    pub format: Option<WebhookFormat>,
}

/// `PATCH /webhooks/{id}`: absent fields stay; `printer_ids: null` and `site: null` remove the
/// filter. Enabling a webhook the notifier disabled clears its failure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 2000))]
    pub url: Option<String>,
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub events: Option<Vec<WebhookEvent>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<i64>>, max_items = 10000))]
    pub printer_ids: Option<Option<Vec<i64>>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<String>, min_length = 1, max_length = 32, pattern = "^[a-z0-9_-]+$")
    )]
    pub site: Option<Option<String>>,
    pub enabled: Option<bool>,
    pub format: Option<WebhookFormat>,
}

/// A subscription, as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub printer_ids: Option<Vec<i64>>,
    pub site: Option<String>,
    pub enabled: bool,
    pub format: WebhookFormat,
    pub created_at: DateTime<Utc>,
    /// When its deliveries started failing (cleared by the next success).
    pub failing_since: Option<DateTime<Utc>>,
    /// Why the notifier disabled it (it failed for longer than `notifier.disable_after_secs`).
    pub disabled_reason: Option<String>,
}

/// `POST /webhooks` answers with the signing secret, shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The Standard Webhooks signing secret (`whsec_` and base64): shown only now.
    pub secret: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not sent yet, in flight, or waiting for its next attempt (`next_retry`).
    Pending,
    Delivered,
    /// Failed for good: retried for `notifier.retry_for_secs`, or its webhook was disabled.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(name: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// One event sent (or to be sent) to one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    pub id: i64,
    /// The event name (`test` for a test delivery).
    pub event: String,
    /// The `webhook-id` header: the same on every attempt, so a receiver can de-duplicate.
    pub message_id: String,
    pub printer_id: Option<i64>,
    pub status: DeliveryStatus,
    pub attempts: i32,
    /// The HTTP status of the last attempt, if an answer came.
    pub response_code: Option<i32>,
    /// How long the last attempt took, milliseconds.
    pub latency_ms: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due (pending deliveries).
    pub next_retry: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// When it was delivered or failed for good.
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookId {
    pub id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateWebhook {
    pub id: i64,
    pub patch: WebhookPatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// The delivery log of a webhook, newest first: `limit` rows with ids below `before`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListDeliveries {
    pub webhook_id: i64,
    pub status: Option<DeliveryStatus>,
    pub before: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookDeleted {
    pub deleted: bool,
}

/// Core NATS: "deliveries are due", published by the replica that stored them, so that every
/// replica's sender looks at once instead of at its next poll.
pub fn deliveries_due_subject() -> String {
    format!("{}.notifier.deliveries-due", crate::subjects::ROOT)
}

const fn endpoint<Req, Resp>(name: &'static str) -> Endpoint<Req, Resp> {
    Endpoint::new(ServiceName::Notifier, name)
}

pub const LIST: Endpoint<Empty, WebhookList> = endpoint("webhook-list");
pub const GET: Endpoint<WebhookId, Webhook> = endpoint("webhook-get");
pub const CREATE: Endpoint<NewWebhook, CreatedWebhook> = endpoint("webhook-create");
pub const UPDATE: Endpoint<UpdateWebhook, Webhook> = endpoint("webhook-update");
pub const DELETE: Endpoint<WebhookId, WebhookDeleted> = endpoint("webhook-delete");
/// Sends a test event now and answers with its delivery.
pub const TEST: Endpoint<WebhookId, Delivery> = endpoint("webhook-test");
pub const DELIVERIES: Endpoint<ListDeliveries, DeliveryList> = endpoint("webhook-deliveries");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_events_are_farm_events_by_the_same_name() {
        for event in WebhookEvent::ALL {
            let json = serde_json::to_value(event).unwrap();
            assert_eq!(json, event.as_str());
            assert_eq!(WebhookEvent::of(event.kind()), Some(event));
            assert_eq!(WebhookEvent::parse(event.as_str()), Some(event));
        }
        assert_eq!(WebhookEvent::of(EventKind::PrintFile), None);
        assert_eq!(WebhookEvent::of(EventKind::ArchiveUpdated), None);
    }

    #[test]
    fn a_patch_tells_null_from_absent() {
        let patch: WebhookPatch = serde_json::from_str(r#"{"site": null}"#).unwrap();
        assert_eq!(patch.site, Some(None));
        assert_eq!(patch.printer_ids, None);
        // And so does the patch as api passes it on.
        let passed: WebhookPatch =
            serde_json::from_str(&serde_json::to_string(&patch).unwrap()).unwrap();
        assert_eq!(passed, patch);
        assert!(serde_json::from_str::<WebhookPatch>(r#"{"secret": "x"}"#).is_err());
    }
}
