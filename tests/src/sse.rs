//! A reader of the api's live event stream (`GET /events`, server-sent events), as a browser's
//! `EventSource` reads it: for tests that check what a client of the stream sees.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::Running;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// Reads server-sent events from `/events` until `until` says stop; then drops the connection.
pub async fn read_events(
    client: &reqwest::Client,
    api: &Running,
    query: &str,
    last_event_id: Option<&str>,
    until: impl Fn(&[Sse]) -> bool,
) -> Vec<Sse> {
    let mut request = client
        .get(api.api_url(&format!("/events{query}")))
        .timeout(Duration::from_secs(120));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut reader = SseReader::new(response);
    let mut events = Vec::new();
    while let Some(sse) = reader.next().await {
        events.push(sse);
        if until(&events) {
            return events;
        }
    }
    events
}

/// Reads the events of one `/events` answer as they arrive.
pub struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped), or `None` once the stream ends.
    pub async fn next(&mut self) -> Option<Sse> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut sse = Sse {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id:") {
                        sse.id = Some(id.trim().to_owned());
                    } else if let Some(event) = line.strip_prefix("event:") {
                        sse.event = event.trim().to_owned();
                    } else if let Some(data) = line.strip_prefix("data:") {
                        sse.data = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                    }
                }
                if !sse.data.is_null() {
                    return Some(sse);
                }
            }
            let chunk = self.body.next().await?.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
