//! One MQTT session to one printer: TLS 1.2 on 8883 with the printer's trust policy, user
//! `bblp` and the access code, the report topic subscribed, commands at QoS 1. Full reports
//! exceed rumqttc's default 10 KiB packet limit, so the limit is 1 MiB.
//!
//! A session does not reconnect by itself: on an error the owner drops it and decides when to
//! try again (backoff with jitter; a wrong access code is retried slowly).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
    TlsConfiguration, Transport,
};

use crate::commands::Command;
use crate::report::{Message, ParseError, parse};

/// A printer's 8-character LAN access code; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessCode(String);

impl AccessCode {
    /// Eight ASCII letters or digits, as printers show them.
    pub fn parse(code: &str) -> Option<Self> {
        (code.len() == 8 && code.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| AccessCode(code.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessCode([redacted])")
    }
}

/// Where and how to reach a printer's MQTT server.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub serial: String,
    pub access_code: AccessCode,
}

/// Why a session ended or could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the printer refused the access code (not authorised)")]
    NotAuthorized,
    #[error("the printer refused the connection ({0})")]
    Refused(String),
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection lost: {0}")]
    Io(String),
}

impl SessionError {
    /// A short, bounded name of the cause (a metric label).
    pub fn cause(&self) -> &'static str {
        match self {
            SessionError::NotAuthorized => "not_authorized",
            SessionError::Refused(_) => "refused",
            SessionError::Tls(_) => "tls",
            SessionError::Timeout(_) => "silence",
            SessionError::Io(_) => "io",
        }
    }
}

/// What a session yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// The printer accepted us.
    Connected,
    Message(Message),
    /// A payload that could not be understood (counted, never fatal).
    Unreadable(ParseError),
}

pub struct Session {
    client: AsyncClient,
    eventloop: EventLoop,
    request_topic: String,
    sequence: u64,
    deadline: Duration,
    /// The size of the last report payload received.
    last_payload: usize,
}

impl Session {
    /// Prepares a session; nothing is sent until [`Session::next`] is polled. On connecting it
    /// subscribes to the reports and asks for a full report and the versions.
    pub fn new(endpoint: &Endpoint, tls: Arc<rustls::ClientConfig>, deadline: Duration) -> Self {
        let id = format!("printyard-{:08x}", rand::random::<u32>());
        let mut options = MqttOptions::new(id, endpoint.host.clone(), endpoint.port);
        options.set_credentials("bblp", endpoint.access_code.expose());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(1 << 20, 1 << 20);
        options.set_clean_session(true);
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        let (client, eventloop) = AsyncClient::new(options, 32);
        Self {
            client,
            eventloop,
            request_topic: format!("device/{}/request", endpoint.serial),
            sequence: 0,
            deadline,
            last_payload: 0,
        }
        .with_setup(&endpoint.serial)
    }

    fn with_setup(mut self, serial: &str) -> Self {
        let report = format!("device/{serial}/report");
        // Queued now, sent once connected (rumqttc keeps requests until the connection is up).
        let _ = self.client.try_subscribe(report, QoS::AtMostOnce);
        for command in [Command::PushAll, Command::GetVersion] {
            let _ = self.try_send(&command);
        }
        self
    }

    fn try_send(&mut self, command: &Command) -> Option<u64> {
        self.send(command).ok()
    }

    /// Queues a command for the printer without waiting (the session sends it as it is
    /// polled); returns its `sequence_id`, which the acknowledgement echoes. Fails only when
    /// the session's outgoing queue is full or closed.
    pub fn send(&mut self, command: &Command) -> Result<u64, SessionError> {
        self.sequence += 1;
        let payload = serde_json::to_vec(&command.payload(self.sequence))
            .map_err(|e| SessionError::Io(e.to_string()))?;
        self.client
            .try_publish(self.request_topic.clone(), QoS::AtLeastOnce, false, payload)
            .map_err(|e| SessionError::Io(e.to_string()))?;
        Ok(self.sequence)
    }

    /// The size in bytes of the last payload [`Session::next`] yielded (for metrics).
    pub fn last_payload_len(&self) -> usize {
        self.last_payload
    }

    /// How long a caller should wait for a command's acknowledgement.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The next thing that happens; an error ends the session. Must be polled continuously.
    pub async fn next(&mut self) -> Result<Incoming, SessionError> {
        loop {
            let event = self.eventloop.poll().await.map_err(classify)?;
            match event {
                Event::Incoming(Packet::ConnAck(_)) => return Ok(Incoming::Connected),
                Event::Incoming(Packet::Publish(publish)) => {
                    self.last_payload = publish.payload.len();
                    return Ok(match parse(&publish.payload) {
                        Ok(message) => Incoming::Message(message),
                        Err(err) => Incoming::Unreadable(err),
                    });
                }
                _ => {}
            }
        }
    }

    /// Closes the session politely (DISCONNECT), within the deadline.
    pub async fn close(mut self) {
        let _ = self.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while self.eventloop.poll().await.is_ok() {}
        })
        .await;
    }
}

fn classify(error: ConnectionError) -> SessionError {
    match error {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword,
        ) => SessionError::NotAuthorized,
        ConnectionError::ConnectionRefused(code) => SessionError::Refused(format!("{code:?}")),
        ConnectionError::Tls(err) => SessionError::Tls(err.to_string()),
        ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => {
            SessionError::Timeout(Duration::from_secs(30))
        }
        other => SessionError::Io(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_codes_are_eight_alphanumerics_and_never_printed() {
        assert!(AccessCode::parse("12345678").is_some());
        assert!(AccessCode::parse("abcD1234").is_some());
        assert!(AccessCode::parse("1234567").is_none());
        assert!(AccessCode::parse("1234 678").is_none());
        let code = AccessCode::parse("87654321").unwrap();
        assert!(!format!("{code:?}").contains("87654321"));
    }
}
