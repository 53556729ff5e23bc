//! `GET /events`: the farm's live event stream as server-sent events, for dashboards.
//!
//! Farm events come from the `FARM_EVENTS` stream through an ordered consumer of this replica,
//! each with its stream sequence as the SSE `id`, so a client that reconnects with
//! `Last-Event-ID` resumes right after the last event it saw (any replica can serve it: they
//! read the same stream). Printer status changes come as `printer_status` events without an id
//! (state, not history: a reconnecting client first gets every matching printer's current
//! status again; that snapshot, larger than the buffer on a farm of thousands, is sent as fast
//! as the client takes it). A client that does not keep up is disconnected once `BUFFER`
//! messages wait for it, rather than buffered without bound; it reconnects and resumes.

use std::convert::Infallible;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::StreamExt;
use printyard_contracts::farm::{FarmEvent, Site, StatusRecord, event_filter};
use printyard_contracts::webhooks::WebhookEvent;
use printyard_contracts::{ErrorBody, ErrorCode};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use crate::auth::access::Caller;
use crate::auth::scope::Reach;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

/// Messages that may wait for a client before it is disconnected.
pub const BUFFER: usize = 1024;
/// How long the status snapshot a stream opens with may wait for the client to take each event.
const SNAPSHOT_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this printer's events and status.
    pub printer_id: Option<i64>,
    /// Only this site's.
    #[param(pattern = "^[a-z0-9_-]{1,32}$")]
    pub site: Option<String>,
    /// Comma-separated event names (`print_started,print_complete`); every event when absent.
    /// `printer_status` asks for status changes (sent with every event list when absent).
    pub events: Option<String>,
}

/// What the stream is asked for.
#[derive(Debug, Clone)]
struct Filter {
    printer_id: Option<i64>,
    site: Option<Site>,
    events: Vec<WebhookEvent>,
    status: bool,
    /// What the caller may see: events of printers out of reach are never sent.
    reach: Reach,
}

impl Filter {
    fn parse(query: EventsQuery, reach: Reach) -> Result<Filter, ApiError> {
        let invalid = |detail: String| ApiError::new(ErrorCode::ValidationError, detail);
        let site = crate::extract::site_query(query.site.as_deref())?;
        if query.printer_id.is_some_and(|id| id <= 0) {
            return Err(invalid("Invalid query `printer_id`: a printer id".into()));
        }
        let (mut events, mut status) = (Vec::new(), false);
        match query.events.as_deref() {
            None => {
                events = WebhookEvent::ALL.to_vec();
                status = true;
            }
            Some(list) => {
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    if name == "printer_status" {
                        status = true;
                    } else {
                        let event = WebhookEvent::parse(name).ok_or_else(|| {
                            invalid(format!(
                                "Invalid query `events`: unknown event {name:?} (one of {}, printer_status)",
                                WebhookEvent::ALL.map(WebhookEvent::as_str).join(", ")
                            ))
                        })?;
                        if !events.contains(&event) {
                            events.push(event);
                        }
                    }
                }
                if events.is_empty() && !status {
                    return Err(invalid("Invalid query `events`: name at least one".into()));
                }
            }
        }
        Ok(Filter {
            printer_id: query.printer_id,
            site,
            events,
            status,
            reach,
        })
    }

    /// The stream subjects of the events asked for.
    fn subjects(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| event_filter(self.site.as_ref(), self.printer_id, e.kind()))
            .collect()
    }

    /// Whether a farm event is within the caller's reach (an event of no printer is the whole
    /// farm's: only a caller not limited sees it).
    fn wants_event(&self, event: &FarmEvent) -> bool {
        self.reach.is_unlimited()
            || (event.printer_id > 0
                && self
                    .reach
                    .allows(event.printer_id, Some(event.site.as_str())))
    }

    fn wants_status(&self, state: &AppState, record: &StatusRecord) -> bool {
        self.status
            && self.reach.allows_printer(state, record.printer_id)
            && self.printer_id.is_none_or(|id| id == record.printer_id)
            && self.site.as_ref().is_none_or(|site| {
                state.known.site(record.printer_id).as_deref() == Some(site.as_str())
            })
    }
}

fn farm_event(sequence: u64, event: &FarmEvent) -> Event {
    let body = serde_json::json!({
        "event": event.kind.as_str(),
        "timestamp": event.at,
        "id": event.id,
        "site": event.site,
        "printer_id": event.printer_id,
        "data": event.data,
    });
    Event::default()
        .id(sequence.to_string())
        .event(event.kind.as_str())
        .data(body.to_string())
}

fn status_event(record: &StatusRecord) -> Event {
    Event::default()
        .event("printer_status")
        .data(serde_json::to_string(record).unwrap_or_default())
}

#[utoipa::path(get, path = "/events", tag = "events", operation_id = "streamEvents",
    params(EventsQuery, ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event (the `id` of the last event received)")),
    responses((status = 200, description = "Server-sent events: each farm event as `event: <name>`, `id: <stream sequence>`, `data: {event, timestamp, id, site, printer_id, data}`; status changes as `event: printer_status` (no id) with the printer's status", content_type = "text/event-stream", body = String), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, description = "The event stream is unavailable", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let filter = Filter::parse(query, caller.reach)?;
    let last_id = last_event_id(&headers)?;
    let Ok(permit) = state.event_streams.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "Too many event streams are open on this replica; try again shortly",
        ));
    };
    // Status changes are subscribed to before the snapshot is taken: none falls in between.
    let statuses = state.statuses.subscribe();
    let messages = if filter.events.is_empty() {
        None
    } else {
        Some(farm_events_after(&state, &filter, last_id).await?)
    };
    let (sender, receiver) = mpsc::channel::<Result<Event, Infallible>>(BUFFER);
    let snapshot: Vec<StatusRecord> = state
        .statuses
        .all()
        .into_iter()
        .filter(|r| filter.wants_status(&state, r))
        .collect();
    tokio::spawn(forward(
        Client {
            state,
            filter,
            sender,
            _permit: permit,
        },
        snapshot,
        statuses,
        messages,
    ));
    let mut receiver = receiver;
    let events = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    super::unbuffered(response.headers_mut(), "no-cache");
    Ok(response)
}

/// The `Last-Event-ID` a reconnecting client sends: the stream sequence of its last event.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ValidationError,
                "Invalid header `Last-Event-ID`: the id of an event of this stream",
            )
        })
}

/// The farm events the filter wants, from after `last_id` (from now without one), through an
/// ordered consumer of this replica.
async fn farm_events_after(
    state: &AppState,
    filter: &Filter,
    last_id: Option<u64>,
) -> Result<pull::Ordered, ApiError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, "event stream not opened");
        ApiError::new(
            ErrorCode::ServiceUnavailable,
            "The event stream is unavailable",
        )
    };
    let stream = printyard_service::nats::farm_events_stream(&state.registry.jetstream)
        .await
        .map_err(|e| unavailable(&e))?;
    let deliver_policy = match last_id {
        Some(last) => DeliverPolicy::ByStartSequence {
            start_sequence: last.saturating_add(1),
        },
        None => DeliverPolicy::New,
    };
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subjects: filter.subjects(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(&e))?;
    consumer.messages().await.map_err(|e| unavailable(&e))
}

/// One client of the stream: what it asked for, and where its events go.
struct Client {
    state: AppState,
    filter: Filter,
    sender: mpsc::Sender<Result<Event, Infallible>>,
    /// Held while the stream is open.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Client {
    /// Queues an event; `false` once the client is gone or too slow (it is then let go).
    fn send(&self, event: Event) -> bool {
        match self.sender.try_send(Ok(event)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!("event stream client too slow: disconnected");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Sends the client the status snapshot, then farm events and status changes as they come,
/// until it goes away or falls behind.
async fn forward(
    client: Client,
    snapshot: Vec<StatusRecord>,
    mut statuses: broadcast::Receiver<StatusRecord>,
    mut messages: Option<pull::Ordered>,
) {
    // The snapshot is every matching printer's status at once, more than the buffer holds on a
    // farm of thousands: it waits for the client to take it (a client stalled on one event for
    // SNAPSHOT_DEADLINE is let go). What follows is dropped on a client that falls behind.
    for record in &snapshot {
        let sent = client
            .sender
            .send_timeout(Ok(status_event(record)), SNAPSHOT_DEADLINE)
            .await;
        if sent.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            _ = client.sender.closed() => return,
            message = async {
                match messages.as_mut() {
                    Some(messages) => messages.next().await,
                    None => std::future::pending().await,
                }
            } => {
                let Some(Ok(message)) = message else {
                    tracing::debug!("event stream consumer ended");
                    return;
                };
                let Ok(info) = message.info() else { continue };
                let sequence = info.stream_sequence;
                let Ok(event) = serde_json::from_slice::<FarmEvent>(&message.payload) else {
                    continue;
                };
                if !client.filter.wants_event(&event) {
                    continue;
                }
                if !client.send(farm_event(sequence, &event)) {
                    return;
                }
            }
            status = statuses.recv(), if client.filter.status => match status {
                Ok(record) => {
                    if client.filter.wants_status(&client.state, &record)
                        && !client.send(status_event(&record))
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    tracing::info!("event stream client lagged behind status changes: disconnected");
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}
