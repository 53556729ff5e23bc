//! One task per held printer: connect (MQTT over TLS with the printer's trust policy), merge
//! its reports, and act on what they mean; reconnect with backoff and jitter (a wrong access
//! code slowly; 60 s without a report is a dead connection). The task is the session loop; what
//! it drives lives in rooms of their own, each owning its state:
//!
//! - [`status`]: the status as known, written to the bucket and told to the camera;
//! - [`crate::tracker`]: which prints the statuses mean, and the events they make;
//! - [`commands`]: the printer's command subject (pause, resume, stop, refresh);
//! - [`dispatch`]: print requests from the scheduler (upload, start, confirm);
//! - [`crate::capture`] and [`crate::outbox`]: the print's file, and the printer's events.

mod commands;
mod dispatch;
mod status;

use std::sync::Arc;
use std::time::Duration;

use async_nats::Subscriber;
use chrono::Utc;
use futures::StreamExt;
use printyard_bambu::codes::PRINT_ERROR_CANCELLED;
use printyard_bambu::commands::{Command, SIGNATURE_REQUIRED_HMS};
use printyard_bambu::lifecycle::{cleared_hms_errors, new_hms_errors};
use printyard_bambu::mqtt::{
    AccessCode, Endpoint, Incoming, Session, SessionError, SessionOptions,
};
use printyard_bambu::report::{Message, ReportState};
use printyard_bambu::tls::{Acceptance, PrinterCertVerifier, client_config, fingerprint_hex};
use printyard_bambu::{models, status as normalize};
use printyard_contracts::farm::{COMMAND, CommandOutcome, EventKind, PinLearned, PrinterRecord};
use printyard_contracts::printer::{HmsEntry, PrinterState, PrinterStatus};
use printyard_contracts::printer_errors::ErrorSource;
use printyard_contracts::queue::PRINT;
use printyard_service::backoff::Backoff;
use tokio_util::sync::CancellationToken;

use self::commands::Commands;
use self::status::StatusBoard;
use crate::outbox::farm_event;
use crate::settings::Settings;
use crate::store::FarmStore;
use crate::tracker::{Act, Tracker};

/// How late a silence deadline may fire before the lateness is taken as the gateway's own.
const BUSY_LATENESS: Duration = Duration::from_secs(1);

/// Sleeps until `at`; never wakes without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether a report changes what a print's lifecycle turns on (state, stage, errors, HMS, the
/// job), so that it is never merged away unseen, and is written at once.
fn decisive(
    state: &serde_json::Map<String, serde_json::Value>,
    report: &serde_json::Map<String, serde_json::Value>,
) -> bool {
    [
        "gcode_state",
        "print_error",
        "hms",
        "mc_print_stage",
        "stg_cur",
        "subtask_name",
    ]
    .iter()
    .any(|key| {
        report
            .get(*key)
            .is_some_and(|value| state.get(*key) != Some(value))
    })
}

/// What a held printer's task listens to on NATS besides its printer.
struct Inbox {
    commands: Option<Subscriber>,
    prints: Option<Subscriber>,
}

pub struct Connection {
    record: PrinterRecord,
    store: Arc<FarmStore>,
    settings: Arc<Settings>,
    status: StatusBoard,
    /// The printer's prints: which events its statuses mean.
    tracker: Tracker,
    /// The HMS entries of the last status (a new serious one is an event, and one gone).
    hms: Vec<HmsEntry>,
    /// The print error of the last status (raised and cleared are events).
    print_error: Option<String>,
    commands: Commands,
    /// Queued jobs being printed.
    dispatches: dispatch::Dispatches,
    /// Cancelled when this gateway lets the printer go (captures still queued are dropped).
    released: CancellationToken,
    /// The printer's events on their way to `FARM_EVENTS`, in order (from `run`).
    events: Option<crate::outbox::EventOutbox>,
}

/// What one session keeps between the messages of its loop.
struct SessionState {
    /// The printer's merged reports.
    reports: ReportState,
    /// When the printer last spoke (silence is measured from it), and whether it was asked
    /// for a full report since.
    heard: Option<tokio::time::Instant>,
    probed: bool,
    /// A merged report not looked at yet (the next report or flush tick does).
    unobserved: bool,
}

impl Connection {
    pub fn new(record: PrinterRecord, store: Arc<FarmStore>, settings: Arc<Settings>) -> Self {
        Self {
            status: StatusBoard::new(&record, settings.status_interval),
            commands: Commands::new(record.id, store.client.clone(), settings.command_deadline),
            dispatches: dispatch::Dispatches::new(
                record.clone(),
                settings.clone(),
                store.client.clone(),
            ),
            record,
            store,
            settings,
            tracker: Tracker::new(),
            hms: Vec::new(),
            print_error: None,
            released: CancellationToken::new(),
            events: None,
        }
    }

    pub async fn run(mut self, stop: CancellationToken) {
        self.released = stop.child_token();
        self.events = Some(crate::outbox::EventOutbox::start(
            self.store.clone(),
            self.released.clone(),
        ));
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let camera_stop = stop.child_token();
        tokio::spawn(crate::camera::run(
            self.record.clone(),
            self.status.camera(),
            self.store.client.clone(),
            self.settings.anchors.clone(),
            self.settings.camera.clone(),
            camera_stop.clone(),
        ));
        let _camera = camera_stop.drop_guard();
        let mut inbox = Inbox {
            commands: self
                .subscribe(COMMAND.subject(&self.record.site, self.record.id))
                .await,
            prints: self
                .subscribe(PRINT.subject(&self.record.site, self.record.id))
                .await,
        };
        loop {
            let outcome = tokio::select! {
                _ = stop.cancelled() => break,
                outcome = self.session(&mut inbox) => outcome,
            };
            self.session_ended(&outcome, &mut backoff).await;
            let delay = match outcome {
                SessionError::NotAuthorized => Duration::from_secs(60),
                _ => backoff.next_delay(),
            };
            self.wait_to_reconnect(delay, &stop, &mut inbox).await;
            if stop.is_cancelled() {
                break;
            }
        }
        for subscriber in [inbox.commands, inbox.prints].into_iter().flatten() {
            let mut subscriber = subscriber;
            let _ = subscriber.unsubscribe().await;
        }
        self.commands
            .answer_all(CommandOutcome::NotConnected {
                reason: Some("the gateway released the printer".into()),
            })
            .await;
        self.dispatches.prints_released().await;
        self.status.set_connected(false);
        self.status.flush(&self.store.status, true).await;
    }

    async fn subscribe(&self, subject: String) -> Option<Subscriber> {
        match self.store.client.subscribe(subject).await {
            Ok(subscriber) => Some(subscriber),
            Err(err) => {
                tracing::error!(printer = self.record.id, error = %err, "subscription failed");
                None
            }
        }
    }

    /// A session ended with `outcome`: what waited on it is answered, the printer shows offline.
    async fn session_ended(&mut self, outcome: &SessionError, backoff: &mut Backoff) {
        let why = outcome.to_string();
        self.commands
            .answer_all(CommandOutcome::NotConnected {
                reason: Some(format!(
                    "the connection ended before the printer answered: {why}"
                )),
            })
            .await;
        self.dispatches.prints_disconnected(&why).await;
        crate::observe::session_ended(outcome.cause());
        let was_connected = self.status.now.connected;
        self.status.set_connected(false);
        self.status.now.connection_error = Some(why.clone());
        if let Some(s) = self.status.now.status.as_mut() {
            s.state = PrinterState::Offline;
        }
        self.status.flush(&self.store.status, true).await;
        if was_connected {
            self.event(
                EventKind::PrinterOffline,
                "offline",
                serde_json::json!({"reason": why}),
            )
            .await;
            backoff.reset();
        }
        self.tracker.reconnected();
    }

    /// Waits `delay` before connecting again, answering requests meanwhile (not connected).
    async fn wait_to_reconnect(
        &mut self,
        delay: Duration,
        stop: &CancellationToken,
        inbox: &mut Inbox,
    ) {
        let retry = tokio::time::sleep(delay);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = &mut retry => return,
                message = next_message(&mut inbox.commands) => {
                    if let Some((command, reply)) = commands::decode(message, self.record.id) {
                        let why = self.status.not_connected();
                        self.commands.handle(None, command, reply, why).await;
                    }
                }
                message = next_message(&mut inbox.prints) => {
                    if let Some(message) = message {
                        let printer = self.status.printer();
                        self.dispatches.print_request(&printer, None, message).await;
                    }
                }
                Some(done) = self.dispatches.next_upload() => {
                    let printer = self.status.printer();
                    self.dispatches.upload_done(&printer, None, done).await;
                }
            }
        }
    }

    /// Has `api` store a pin learned on first use, batched with other printers' pins
    /// (until then the pin holds for this gateway's connection only).
    fn keep_pin(&self, pin: String) {
        self.settings.pins.keep(PinLearned {
            printer_id: self.record.id,
            host: self.record.host.clone(),
            pin,
        });
    }

    /// Starts a session with the printer (it connects in the background).
    fn connect(&self) -> Result<(Session, Arc<PrinterCertVerifier>), SessionError> {
        let Some(code) = AccessCode::parse(&self.record.access_code) else {
            return Err(SessionError::Refused(
                "the access code is not 8 letters or digits".into(),
            ));
        };
        let (tls, verifier) = client_config(
            &self.record.serial,
            self.settings.anchors.clone(),
            self.status.trust(),
        )
        .map_err(|err| SessionError::Tls(err.to_string()))?;
        let endpoint = Endpoint {
            host: self.record.host.clone(),
            port: 8883,
            serial: self.record.serial.clone(),
            access_code: code,
        };
        let session = Session::start(
            &endpoint,
            tls,
            SessionOptions {
                deadline: self.settings.command_deadline,
                connect_timeout: self.settings.connect_timeout,
                pacer: Some(self.settings.connect_pacer.clone()),
            },
        );
        Ok((session, verifier))
    }

    /// One connection, until it fails.
    async fn session(&mut self, inbox: &mut Inbox) -> SessionError {
        let (mut session, verifier) = match self.connect() {
            Ok(started) => started,
            Err(err) => return err,
        };
        let mut state = SessionState {
            reports: ReportState::default(),
            heard: None,
            probed: false,
            unobserved: false,
        };
        let mut flush = tokio::time::interval(self.settings.status_interval);
        loop {
            let quiet_until = self.quiet_until(&state);
            let incoming = tokio::select! {
                // What the printer sent first: a gateway behind on its work must not time out
                // a printer whose reports wait in the queue.
                biased;
                incoming = session.next() => incoming,
                _ = sleep_until(quiet_until) => {
                    match self.on_silence(&mut session, &mut state, quiet_until) {
                        Ok(()) => continue,
                        Err(err) => return err,
                    }
                }
                _ = flush.tick() => {
                    if std::mem::take(&mut state.unobserved) && state.reports.has_full() {
                        self.observe(&state.reports).await;
                    }
                    self.commands.expire().await;
                    self.dispatches.expire_prints().await;
                    self.status.flush(&self.store.status, false).await;
                    continue;
                }
                message = next_message(&mut inbox.commands) => {
                    if let Some((command, reply)) = commands::decode(message, self.record.id) {
                        let why = self.status.not_connected();
                        self.commands.handle(Some(&mut session), command, reply, why).await;
                    }
                    continue;
                }
                message = next_message(&mut inbox.prints) => {
                    if let Some(message) = message {
                        let printer = self.status.printer();
                        self.dispatches.print_request(&printer, Some(&mut session), message).await;
                    }
                    continue;
                }
                Some(done) = self.dispatches.next_upload() => {
                    let printer = self.status.printer();
                    self.dispatches.upload_done(&printer, Some(&mut session), done).await;
                    continue;
                }
            };
            match incoming {
                Err(SessionError::Tls(reason)) => {
                    if let Some(Acceptance::Refused(why)) = verifier.outcome() {
                        return SessionError::Tls(why);
                    }
                    return SessionError::Tls(reason);
                }
                Err(err) => return err,
                Ok(incoming) => {
                    self.on_incoming(&mut session, &mut state, &verifier, incoming)
                        .await
                }
            }
        }
    }

    /// When the printer's silence is too long: silence is measured once connected (the connect
    /// has its own deadline, counted from this printer's turn to connect), from when its last
    /// message was taken off the socket, not from when this task got to it. After `silence`
    /// the printer is asked for a full report (an idle printer may say nothing for a long
    /// while: Home Assistant's integration asks at 60 s), and the connection is taken as dead
    /// only if it still says nothing for `silence_probe`.
    fn quiet_until(&self, state: &SessionState) -> Option<tokio::time::Instant> {
        let probe = if state.probed {
            self.settings.silence_probe
        } else {
            Duration::ZERO
        };
        state
            .heard
            .map(|heard| heard + self.settings.silence + probe)
    }

    /// The silence deadline passed: forgiven when this task (not the printer) was late, else a
    /// request for a full report, and a dead connection if that one went unanswered.
    fn on_silence(
        &self,
        session: &mut Session,
        state: &mut SessionState,
        quiet_until: Option<tokio::time::Instant>,
    ) -> Result<(), SessionError> {
        let now = tokio::time::Instant::now();
        let late = quiet_until.map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        if late > BUSY_LATENESS || session.queued() > 0 {
            // This task woke far past its deadline: the gateway, not the printer, was slow.
            // Measure again from now rather than blame the printer.
            crate::observe::silence_forgiven();
            state.heard = Some(now);
            return Ok(());
        }
        if state.probed {
            return Err(SessionError::Timeout(
                self.settings.silence + self.settings.silence_probe,
            ));
        }
        state.probed = true;
        crate::observe::silence_probed();
        session.send(&Command::PushAll).map(|_| ())
    }

    /// What the printer sent.
    async fn on_incoming(
        &mut self,
        session: &mut Session,
        state: &mut SessionState,
        verifier: &PrinterCertVerifier,
        incoming: Incoming,
    ) {
        if matches!(incoming, Incoming::Message(_) | Incoming::Unreadable(_)) {
            let waited = session
                .heard_at()
                .map(|at| at.elapsed())
                .unwrap_or_default();
            crate::observe::received(session.last_payload_len(), waited);
        }
        state.heard = session
            .heard_at()
            .or_else(|| Some(tokio::time::Instant::now()));
        state.probed = false;
        self.status.now.last_seen = Some(Utc::now());
        match incoming {
            Incoming::Connected => {
                if let Some(timing) = session.connect_timing() {
                    crate::observe::connected_after(timing);
                }
                if let Some(Acceptance::FirstUse(fp)) = verifier.outcome() {
                    let pin = fingerprint_hex(&fp);
                    self.status.now.tls_pin = Some(pin.clone());
                    self.keep_pin(pin);
                }
                self.status.set_connected(true);
                self.status.now.connection_error = None;
                self.event(EventKind::PrinterOnline, "online", serde_json::Value::Null)
                    .await;
            }
            Incoming::Message(Message::Status { full, print }) => {
                let decisive =
                    !state.reports.has_full() || decisive(state.reports.fields(), &print);
                state.reports.apply_owned(full, print);
                // Behind (more reports queued): a report that changes nothing the print's
                // lifecycle follows is merged into the next rather than looked at alone.
                let coalesce = session.queued() > 0 && !decisive;
                if coalesce {
                    crate::observe::coalesced();
                }
                state.unobserved = coalesce;
                if state.reports.has_full() && !coalesce {
                    self.observe(&state.reports).await;
                    // Written at once unless written within the interval (then the interval's
                    // tick writes the latest): a change reaches the bucket in milliseconds, and
                    // a chatty printer costs one write per interval. A change of state, error
                    // or HMS is written at once regardless.
                    self.status.flush(&self.store.status, decisive).await;
                }
            }
            Incoming::Message(Message::Version(info)) => {
                self.status.now.firmware = models::firmware(&info).map(str::to_owned);
                if self.record.model.is_none()
                    && let Some(name) =
                        models::product_name(&info).and_then(models::from_product_name)
                {
                    self.status.now.model = Some(name.to_owned());
                }
            }
            Incoming::Message(Message::Ack(ack)) => {
                let printer = self.status.printer();
                if !self.dispatches.print_acknowledged(&printer, &ack).await {
                    self.commands.acknowledged(&ack).await;
                }
            }
            Incoming::Message(Message::Other) => {}
            Incoming::Unreadable(err) => {
                crate::observe::unreadable();
                tracing::debug!(printer = self.record.id, error = %err, "unreadable payload");
            }
        }
    }

    /// A full status: what it means for the printer's prints, errors and commands.
    async fn observe(&mut self, reports: &ReportState) {
        let model_id = self.status.now.model.as_deref().and_then(models::model_id);
        let normalized = normalize::normalize(reports.fields(), model_id, None);
        let signature_refused =
            |hms: &[HmsEntry]| hms.iter().any(|e| e.code == SIGNATURE_REQUIRED_HMS);
        if signature_refused(&normalized.hms) && !signature_refused(&self.hms) {
            // Some firmware refuses an unsigned command with this HMS entry instead of an ack.
            self.commands
                .answer_all(CommandOutcome::Refused {
                    reason: "mqtt message verify failed".into(),
                    signed_required: true,
                })
                .await;
            self.dispatches.print_refused_unsigned().await;
        }
        self.errors_raised_and_cleared(&normalized).await;
        let dispatches = &self.dispatches;
        let acts = self
            .tracker
            .observe(&normalized, Utc::now(), &self.record.name, |job| {
                dispatches.sent(job)
            });
        for act in acts {
            match act {
                Act::Publish {
                    kind,
                    occurrence,
                    data,
                } => self.event(kind, &occurrence, data).await,
                Act::Capture(spec) => self.capture(spec),
            }
        }
        self.status.now.status = Some(normalized);
        let printer = self.status.printer();
        self.dispatches.print_observed(&printer).await;
    }

    /// HMS errors and the print error: each raised and each cleared is an event (the
    /// printer's error history; an HMS error raised is also the public `printer_error`).
    async fn errors_raised_and_cleared(&mut self, normalized: &PrinterStatus) {
        let now = Utc::now();
        for entry in new_hms_errors(&self.hms, &normalized.hms) {
            let data = serde_json::json!({"code": entry.code, "severity": entry.severity,
                                          "text": entry.text, "source": ErrorSource::Hms});
            let occurrence = format!("{}.{}", entry.code, now.timestamp());
            self.event(EventKind::PrinterError, &occurrence, data).await;
        }
        for entry in cleared_hms_errors(&self.hms, &normalized.hms) {
            let data = serde_json::json!({"code": entry.code, "source": ErrorSource::Hms});
            let occurrence = format!("{}.{}", entry.code, now.timestamp_millis());
            self.event(EventKind::PrinterErrorCleared, &occurrence, data)
                .await;
        }
        self.hms = normalized.hms.clone();
        // A print stopped by a person shows as print error 0300_400C: not an error.
        let cancelled = printyard_bambu::codes::print_error_code(PRINT_ERROR_CANCELLED);
        let shown = normalized.print_error.clone().filter(|c| *c != cancelled);
        if self.print_error == shown {
            return;
        }
        if let Some(code) = self.print_error.take() {
            let data = serde_json::json!({"code": code, "source": ErrorSource::Print});
            let occurrence = format!("{code}.{}", now.timestamp_millis());
            self.event(EventKind::PrinterErrorCleared, &occurrence, data)
                .await;
        }
        if let Some(code) = &shown {
            let text = u32::from_str_radix(&code.replace('_', ""), 16)
                .ok()
                .and_then(|value| printyard_bambu::hms::print_error_text(value, None));
            let data =
                serde_json::json!({"code": code, "text": text, "source": ErrorSource::Print});
            let occurrence = format!("{code}.{}", now.timestamp_millis());
            self.event(EventKind::PrintError, &occurrence, data).await;
        }
        self.print_error = shown;
    }

    /// Fetches a print's file for the archive, beside the session.
    fn capture(&self, spec: crate::tracker::CaptureSpec) {
        let Some(events) = self.events.clone() else {
            return;
        };
        let job = crate::capture::CaptureJob {
            record: self.record.clone(),
            trust: self.status.trust(),
            spec,
            events,
        };
        tokio::spawn(crate::capture::run(
            job,
            self.store.clone(),
            self.settings.clone(),
            self.released.clone(),
        ));
    }

    async fn event(&self, kind: EventKind, occurrence: &str, data: serde_json::Value) {
        let occurrence = if matches!(kind, EventKind::PrinterOnline | EventKind::PrinterOffline) {
            format!("{occurrence}.{}", Utc::now().timestamp_millis())
        } else {
            occurrence.to_owned()
        };
        if let Some(events) = &self.events {
            events.push(farm_event(&self.record, kind, &occurrence, data));
        }
    }
}

/// The next message on a subscription; never resolves without one. A closed subscription is
/// dropped (the connection keeps running; requests then get "no responders").
async fn next_message(subscription: &mut Option<Subscriber>) -> Option<async_nats::Message> {
    let Some(subscriber) = subscription.as_mut() else {
        return std::future::pending().await;
    };
    let message = subscriber.next().await;
    if message.is_none() {
        *subscription = None;
    }
    message
}

#[cfg(test)]
mod tests {
    use super::decisive;
    use serde_json::{Map, Value, json};

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_report_is_decisive_only_when_it_changes_what_the_lifecycle_follows() {
        let state = map(json!({"gcode_state": "RUNNING", "mc_percent": 10, "hms": []}));
        // Progress and temperatures may be merged into the next report.
        assert!(!decisive(
            &state,
            &map(json!({"mc_percent": 11, "nozzle_temper": 220.5}))
        ));
        // The same state repeated (X1 printers send every field every second) is not a change.
        assert!(!decisive(
            &state,
            &map(json!({"gcode_state": "RUNNING", "hms": []}))
        ));
        assert!(decisive(&state, &map(json!({"gcode_state": "PAUSE"}))));
        assert!(decisive(
            &state,
            &map(json!({"hms": [{"attr": 1, "code": 2}]}))
        ));
        assert!(decisive(&state, &map(json!({"print_error": 50348044}))));
        assert!(decisive(&state, &map(json!({"subtask_name": "next"}))));
    }
}
