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

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

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
    #[error("the connection was not accepted within {0:?}")]
    ConnectTimeout(Duration),
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
            SessionError::ConnectTimeout(_) => "connect_timeout",
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

/// Where a session waits for its turn to connect: a gateway bounds how many TLS handshakes
/// run at once, so that thousands of printers starting together connect in a steady stream
/// instead of all timing out together.
pub type ConnectPacer = Arc<Semaphore>;

/// How a session connects and waits.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// How long a command's acknowledgement is waited for (see [`Session::deadline`]).
    pub deadline: Duration,
    /// TCP connect, TLS handshake and CONNACK together, counted from this session's turn.
    pub connect_timeout: Duration,
    /// Taken before connecting, given back at the CONNACK (or the failure).
    pub pacer: Option<ConnectPacer>,
}

impl SessionOptions {
    pub fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            connect_timeout: Duration::from_secs(10),
            pacer: None,
        }
    }
}

/// One thing the printer sent (or the end of the session), as the session's driver took it
/// off the socket.
struct Received {
    incoming: Result<Incoming, SessionError>,
    /// The payload's size in bytes (0 for the CONNACK).
    len: usize,
    at: Instant,
    /// With the CONNACK: how long the session waited for its turn, and how long the
    /// connection then took.
    timing: Option<ConnectTiming>,
}

/// How a session's connection went: waiting for its turn (the pacer), then TCP, TLS and
/// CONNACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectTiming {
    pub waited: Duration,
    pub connected_in: Duration,
}

/// How many received messages wait for the owner before the driver stops reading the socket
/// (TCP then pushes back on the printer).
const QUEUE: usize = 64;

pub struct Session {
    client: AsyncClient,
    incoming: mpsc::Receiver<Received>,
    driver: Option<JoinHandle<()>>,
    request_topic: String,
    sequence: u64,
    deadline: Duration,
    /// The size of the last report payload received.
    last_payload: usize,
    /// When the last thing yielded was taken off the socket.
    heard: Option<Instant>,
    timing: Option<ConnectTiming>,
}

impl Session {
    /// Starts a session: connects, subscribes to the reports and asks for a full report and
    /// the versions. Must be called within a Tokio runtime.
    pub fn new(endpoint: &Endpoint, tls: Arc<rustls::ClientConfig>, deadline: Duration) -> Self {
        Self::start(endpoint, tls, SessionOptions::new(deadline))
    }

    /// Starts a session with `options` (a connection pacer, a connect deadline).
    ///
    /// The MQTT event loop runs in a task of its own and is never cancelled: rumqttc's
    /// `poll` drops a connection it is still establishing when its future is dropped, so an
    /// owner that polled it inside `select!` beside timers restarted every handshake slower
    /// than its shortest timer, forever, on a loaded machine.
    pub fn start(
        endpoint: &Endpoint,
        tls: Arc<rustls::ClientConfig>,
        options: SessionOptions,
    ) -> Self {
        let id = format!("printyard-{:08x}", rand::random::<u32>());
        let mut mqtt = MqttOptions::new(id, endpoint.host.clone(), endpoint.port);
        mqtt.set_credentials("bblp", endpoint.access_code.expose());
        mqtt.set_keep_alive(Duration::from_secs(30));
        mqtt.set_max_packet_size(1 << 20, 1 << 20);
        mqtt.set_clean_session(true);
        // A few commands at a time at most; rumqttc keeps a slot per in-flight publish.
        mqtt.set_inflight(16);
        mqtt.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        let (client, mut eventloop) = AsyncClient::new(mqtt, 32);
        let mut network = eventloop.network_options();
        network.set_connection_timeout(options.connect_timeout.as_secs().max(1));
        eventloop.set_network_options(network);
        let (tx, incoming) = mpsc::channel(QUEUE);
        let driver = tokio::spawn(drive(eventloop, tx, options.pacer, options.connect_timeout));
        let mut session = Self {
            client,
            incoming,
            driver: Some(driver),
            request_topic: format!("device/{}/request", endpoint.serial),
            sequence: 0,
            deadline: options.deadline,
            last_payload: 0,
            heard: None,
            timing: None,
        };
        let report = format!("device/{}/report", endpoint.serial);
        // Queued now, sent once connected (rumqttc keeps requests until the connection is up).
        let _ = session.client.try_subscribe(report, QoS::AtMostOnce);
        for command in [Command::PushAll, Command::GetVersion] {
            let _ = session.send(&command);
        }
        session
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

    /// When the last thing [`Session::next`] yielded arrived from the printer: what silence is
    /// measured from, so that time the owner spent busy is not counted against the printer.
    pub fn heard_at(&self) -> Option<Instant> {
        self.heard
    }

    /// How the connection went, once [`Session::next`] yielded [`Incoming::Connected`].
    pub fn connect_timing(&self) -> Option<ConnectTiming> {
        self.timing
    }

    /// How many received messages wait to be taken (the owner is behind by that many).
    pub fn queued(&self) -> usize {
        self.incoming.len()
    }

    /// How long a caller should wait for a command's acknowledgement.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The next thing that happens; an error ends the session. Cancel-safe.
    pub async fn next(&mut self) -> Result<Incoming, SessionError> {
        let received = self.incoming.recv().await;
        self.take(received)
    }

    fn take(&mut self, received: Option<Received>) -> Result<Incoming, SessionError> {
        let Some(received) = received else {
            return Err(SessionError::Io("the session ended".into()));
        };
        self.last_payload = received.len;
        self.heard = Some(received.at);
        if received.timing.is_some() {
            self.timing = received.timing;
        }
        received.incoming
    }

    /// Closes the session politely (DISCONNECT), within a second.
    pub async fn close(mut self) {
        let _ = self.client.try_disconnect();
        // The driver sends the DISCONNECT, then ends; what it still forwards is dropped.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while self.incoming.recv().await.is_some() {}
        })
        .await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }
}

/// Polls the event loop until the session fails or its owner is gone, forwarding what the
/// printer sends. The connection is established under a pacer permit, if any.
async fn drive(
    mut eventloop: EventLoop,
    tx: mpsc::Sender<Received>,
    pacer: Option<ConnectPacer>,
    connect_timeout: Duration,
) {
    let queued = Instant::now();
    let mut permit = match pacer {
        Some(pacer) => tokio::select! {
            permit = pacer.acquire_owned() => permit.ok(),
            _ = tx.closed() => return,
        },
        None => None,
    };
    let turn = Instant::now();
    let mut timing = None;
    loop {
        let event = tokio::select! {
            biased;
            _ = tx.closed() => return,
            event = eventloop.poll() => event,
        };
        let at = Instant::now();
        let (incoming, len) = match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                permit = None;
                timing = Some(ConnectTiming {
                    waited: turn - queued,
                    connected_in: at - turn,
                });
                (Ok(Incoming::Connected), 0)
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let message = match parse(&publish.payload) {
                    Ok(message) => Incoming::Message(message),
                    Err(err) => Incoming::Unreadable(err),
                };
                (Ok(message), publish.payload.len())
            }
            Ok(_) => continue,
            Err(err) => {
                drop(permit);
                let _ = tx
                    .send(Received {
                        incoming: Err(classify(err, connect_timeout)),
                        len: 0,
                        at,
                        timing: None,
                    })
                    .await;
                return;
            }
        };
        let timing = timing.take();
        if tx
            .send(Received {
                incoming,
                len,
                at,
                timing,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

fn classify(error: ConnectionError, connect_timeout: Duration) -> SessionError {
    match error {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword,
        ) => SessionError::NotAuthorized,
        ConnectionError::ConnectionRefused(code) => SessionError::Refused(format!("{code:?}")),
        ConnectionError::Tls(err) => SessionError::Tls(err.to_string()),
        ConnectionError::NetworkTimeout => SessionError::ConnectTimeout(connect_timeout),
        ConnectionError::FlushTimeout => SessionError::Timeout(connect_timeout),
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
