//! One task per held printer: connect (MQTT over TLS with the printer's trust policy), merge
//! its reports, put the normalised status into the KV bucket when it changes (coalesced), and
//! publish lifecycle events. Reconnects with backoff and jitter; a wrong access code is retried
//! slowly; 60 s without a report is a dead connection.
//!
//! While it holds the printer, the task also answers the printer's command subject: a command
//! is sent on the live session and answered when the printer acknowledges it (matched by
//! `sequence_id`), refuses it, or lets the deadline pass; without a live session the answer is
//! "not connected" with the last connection error.
//!
//! Print requests from the scheduler arrive on the printer's print subject ([`dispatch`]).

mod dispatch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Subject, Subscriber};
use chrono::Utc;
use futures::StreamExt;
use printyard_bambu::commands::{Command, SIGNATURE_REQUIRED_HMS, is_signature_refusal};
use printyard_bambu::lifecycle::new_hms_errors;
use printyard_bambu::mqtt::{
    AccessCode, Endpoint, Incoming, Session, SessionError, SessionOptions,
};
use printyard_bambu::report::{Ack, Message, ReportState};
use printyard_bambu::tls::{
    Acceptance, TrustMode, client_config, fingerprint_hex, parse_fingerprint,
};
use printyard_bambu::{models, status};
use printyard_contracts::farm::{
    COMMAND, CommandOutcome, CommandRequest, EventKind, PinLearned, PrinterCommand, PrinterRecord,
    StatusRecord, registry_key,
};
use printyard_contracts::printer::{HmsEntry, PrinterState};
use printyard_contracts::queue::PRINT;
use printyard_service::backoff::Backoff;
use tokio_util::sync::CancellationToken;

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
    status: StatusRecord,
    published: Option<StatusRecord>,
    published_at: Option<Instant>,
    /// The printer's prints: which events its statuses mean.
    tracker: Tracker,
    hms: Vec<HmsEntry>,
    /// Commands sent and not yet acknowledged.
    pending: Vec<Pending>,
    /// Queued jobs being printed.
    dispatches: dispatch::Dispatches,
    uploads: (dispatch::UploadSender, dispatch::UploadReceiver),
    /// What the printer's camera task knows of it.
    camera: tokio::sync::watch::Sender<crate::camera::Target>,
    /// Cancelled when this gateway lets the printer go (captures still queued are dropped).
    released: CancellationToken,
    /// The printer's events on their way to `FARM_EVENTS`, in order (from `run`).
    events: Option<crate::outbox::EventOutbox>,
}

/// Where a command's answer goes, and the span that carries the caller's trace (from the
/// request's `traceparent`) until the answer is sent.
struct Reply {
    to: Subject,
    span: tracing::Span,
}

/// A command waiting for the printer's acknowledgement.
struct Pending {
    sequence_id: String,
    reply: Reply,
    deadline: Instant,
    command: &'static str,
    sent: Instant,
}

impl Pending {
    fn answered(&self, outcome: &CommandOutcome) {
        let label = outcome_label(outcome);
        crate::observe::command_answered(self.command, label, self.sent.elapsed());
    }
}

fn outcome_label(outcome: &CommandOutcome) -> &'static str {
    match outcome {
        CommandOutcome::Accepted => "accepted",
        CommandOutcome::Refused { .. } => "refused",
        CommandOutcome::TimedOut { .. } => "timed_out",
        _ => "not_connected",
    }
}

impl Connection {
    pub fn new(record: PrinterRecord, store: Arc<FarmStore>, settings: Arc<Settings>) -> Self {
        let status = StatusRecord {
            printer_id: record.id,
            serial: record.serial.clone(),
            connected: false,
            last_seen: None,
            connection_error: None,
            model: record
                .model
                .clone()
                .or_else(|| models::from_serial(&record.serial).map(str::to_owned)),
            tls_pin: record.tls_pin.clone(),
            status: None,
        };
        Self {
            record,
            store,
            settings,
            status,
            published: None,
            published_at: None,
            tracker: Tracker::new(),
            hms: Vec::new(),
            pending: Vec::new(),
            dispatches: dispatch::Dispatches::default(),
            uploads: dispatch::upload_channel(),
            camera: tokio::sync::watch::Sender::new(crate::camera::Target {
                online: Err("not connected yet".into()),
                trust: TrustMode::Insecure,
                model: None,
            }),
            released: CancellationToken::new(),
            events: None,
        }
    }

    /// Marks the session up or down (and counts connected printers).
    fn set_connected(&mut self, connected: bool) {
        if self.status.connected != connected {
            crate::observe::connected(connected);
        }
        self.status.connected = connected;
    }

    /// What the camera task should know now.
    fn camera_target(&self) -> crate::camera::Target {
        crate::camera::Target {
            online: if self.status.connected {
                Ok(())
            } else {
                Err(self
                    .status
                    .connection_error
                    .clone()
                    .unwrap_or_else(|| "not connected yet".into()))
            },
            trust: self.trust_mode(),
            model: self.status.model.clone(),
        }
    }

    pub async fn run(mut self, stop: CancellationToken) {
        self.released = stop.child_token();
        self.events = Some(crate::outbox::EventOutbox::start(
            self.store.clone(),
            self.released.clone(),
        ));
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let subscribe = |subject: String| {
            let client = self.store.client.clone();
            let printer = self.record.id;
            async move {
                match client.subscribe(subject).await {
                    Ok(subscriber) => Some(subscriber),
                    Err(err) => {
                        tracing::error!(printer, error = %err, "subscription failed");
                        None
                    }
                }
            }
        };
        self.camera.send_replace(self.camera_target());
        let camera_stop = stop.child_token();
        tokio::spawn(crate::camera::run(
            self.record.clone(),
            self.camera.subscribe(),
            self.store.client.clone(),
            self.settings.anchors.clone(),
            self.settings.camera.clone(),
            camera_stop.clone(),
        ));
        let _camera = camera_stop.drop_guard();
        let mut inbox = Inbox {
            commands: subscribe(COMMAND.subject(&self.record.site, self.record.id)).await,
            prints: subscribe(PRINT.subject(&self.record.site, self.record.id)).await,
        };
        loop {
            let outcome = tokio::select! {
                _ = stop.cancelled() => break,
                outcome = self.session(&mut inbox) => outcome,
            };
            self.answer_pending(CommandOutcome::NotConnected {
                reason: Some(format!(
                    "the connection ended before the printer answered: {outcome}"
                )),
            })
            .await;
            self.prints_disconnected(&outcome.to_string()).await;
            crate::observe::session_ended(outcome.cause());
            let was_connected = self.status.connected;
            self.set_connected(false);
            self.status.connection_error = Some(outcome.to_string());
            if let Some(s) = self.status.status.as_mut() {
                s.state = PrinterState::Offline;
            }
            self.flush(true).await;
            if was_connected {
                self.event(
                    EventKind::PrinterOffline,
                    "offline",
                    serde_json::json!({"reason": outcome.to_string()}),
                )
                .await;
                backoff.reset();
            }
            self.tracker.reconnected();
            let delay = match outcome {
                SessionError::NotAuthorized => Duration::from_secs(60),
                _ => backoff.next_delay(),
            };
            let retry = tokio::time::sleep(delay);
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = &mut retry => break,
                    message = next_message(&mut inbox.commands) => {
                        match decode_command(message, self.record.id) {
                            Some((None, reply)) => self.refuse_unreadable(reply).await,
                            Some((Some(_), reply)) => {
                                let reason = self.status.connection_error.clone();
                                self.reply(reply, &CommandOutcome::NotConnected { reason }).await;
                            }
                            None => {}
                        }
                    }
                    message = next_message(&mut inbox.prints) => {
                        if let Some(message) = message {
                            self.print_request(None, message).await;
                        }
                    }
                    Some(done) = self.uploads.1.recv() => self.upload_done(None, done).await,
                }
            }
            if stop.is_cancelled() {
                break;
            }
        }
        for subscriber in [inbox.commands, inbox.prints].into_iter().flatten() {
            let mut subscriber = subscriber;
            let _ = subscriber.unsubscribe().await;
        }
        self.answer_pending(CommandOutcome::NotConnected {
            reason: Some("the gateway released the printer".into()),
        })
        .await;
        self.prints_released().await;
        self.set_connected(false);
        self.flush(true).await;
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

    /// Acts on a command while the session is live.
    async fn command(
        &mut self,
        session: &mut Session,
        command: Option<PrinterCommand>,
        reply: Reply,
    ) {
        let Some(command) = command else {
            return self.refuse_unreadable(reply).await;
        };
        if !self.status.connected {
            let reason = self.status.connection_error.clone();
            self.reply(reply, &CommandOutcome::NotConnected { reason })
                .await;
            return;
        }
        let wire = match command {
            PrinterCommand::Refresh => Command::PushAll,
            PrinterCommand::Pause => Command::Pause,
            PrinterCommand::Resume => Command::Resume,
            PrinterCommand::Stop => Command::Stop,
        };
        match session.send(&wire) {
            // Printers do not acknowledge pushall: the full report is the answer.
            Ok(_) if command == PrinterCommand::Refresh => {
                self.reply(reply, &CommandOutcome::Accepted).await
            }
            Ok(sequence) => {
                reply.span.in_scope(|| {
                    tracing::info!(
                        printer = self.record.id,
                        command = command.as_str(),
                        "command sent"
                    )
                });
                self.pending.push(Pending {
                    sequence_id: sequence.to_string(),
                    reply,
                    deadline: Instant::now() + session.deadline(),
                    command: command.as_str(),
                    sent: Instant::now(),
                });
            }
            Err(err) => {
                let reason = Some(format!("the command could not be sent: {err}"));
                self.reply(reply, &CommandOutcome::NotConnected { reason })
                    .await
            }
        }
    }

    /// Answers the command an acknowledgement belongs to.
    async fn acknowledged(&mut self, ack: &Ack) {
        let Some(at) = ack
            .sequence_id
            .as_ref()
            .and_then(|seq| self.pending.iter().position(|p| &p.sequence_id == seq))
        else {
            return;
        };
        let pending = self.pending.swap_remove(at);
        let outcome = if ack.succeeded() {
            CommandOutcome::Accepted
        } else {
            let reason = ack.reason.clone().unwrap_or_else(|| ack.result.clone());
            CommandOutcome::Refused {
                signed_required: is_signature_refusal(&reason),
                reason,
            }
        };
        pending.answered(&outcome);
        self.reply(pending.reply, &outcome).await;
    }

    /// Answers the commands whose deadline passed.
    async fn expire_pending(&mut self) {
        let now = Instant::now();
        let (late, waiting): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|p| p.deadline <= now);
        self.pending = waiting;
        let after_ms = self.settings.command_deadline.as_millis() as u64;
        for pending in late {
            let outcome = CommandOutcome::TimedOut { after_ms };
            pending.answered(&outcome);
            self.reply(pending.reply, &outcome).await;
        }
    }

    async fn answer_pending(&mut self, outcome: CommandOutcome) {
        for pending in std::mem::take(&mut self.pending) {
            pending.answered(&outcome);
            self.reply(pending.reply, &outcome).await;
        }
    }

    async fn refuse_unreadable(&self, reply: Reply) {
        metrics::counter!("printyard_gateway_unreadable_commands_total").increment(1);
        let outcome = CommandOutcome::Refused {
            reason: "the command request could not be read".into(),
            signed_required: false,
        };
        self.reply(reply, &outcome).await;
    }

    /// Sends a command's answer (in its caller's trace), which ends the command's span.
    async fn reply(&self, reply: Reply, outcome: &CommandOutcome) {
        let Ok(payload) = serde_json::to_vec(outcome) else {
            return;
        };
        reply
            .span
            .record("printyard.outcome", outcome_label(outcome));
        let headers = reply.span.in_scope(printyard_service::nats::traced_headers);
        let sent = self
            .store
            .client
            .publish_with_headers(reply.to, headers, payload.into())
            .await;
        if let Err(err) = sent {
            tracing::warn!(printer = self.record.id, error = %err, "command reply not sent");
        }
    }

    fn trust_mode(&self) -> TrustMode {
        if self.record.tls_insecure {
            TrustMode::Insecure
        } else {
            TrustMode::Verify {
                pin: self.status.tls_pin.as_deref().and_then(parse_fingerprint),
            }
        }
    }

    /// One connection, until it fails.
    async fn session(&mut self, inbox: &mut Inbox) -> SessionError {
        let Some(code) = AccessCode::parse(&self.record.access_code) else {
            return SessionError::Refused("the access code is not 8 letters or digits".into());
        };
        let (tls, verifier) = match client_config(
            &self.record.serial,
            self.settings.anchors.clone(),
            self.trust_mode(),
        ) {
            Ok(pair) => pair,
            Err(err) => return SessionError::Tls(err.to_string()),
        };
        let endpoint = Endpoint {
            host: self.record.host.clone(),
            port: 8883,
            serial: self.record.serial.clone(),
            access_code: code,
        };
        let mut session = Session::start(
            &endpoint,
            tls,
            SessionOptions {
                deadline: self.settings.command_deadline,
                connect_timeout: self.settings.connect_timeout,
                pacer: Some(self.settings.connect_pacer.clone()),
            },
        );
        let mut state = ReportState::default();
        let mut flush = tokio::time::interval(self.settings.status_interval);
        // Silence is measured once connected (the connect has its own deadline, counted from
        // this printer's turn to connect), from when the printer's last message was taken off
        // the socket, not from when this task got to it. When it has lasted `silence`, the
        // printer is asked for a full report (an idle printer may say nothing for a long
        // while: Home Assistant's integration asks at 60 s), and the connection is taken as
        // dead only if it still says nothing for `silence_probe`.
        let mut heard: Option<tokio::time::Instant> = None;
        let mut probed = false;
        // A merged report not looked at yet (the next report or flush tick does).
        let mut unobserved = false;
        loop {
            let quiet_until = heard.map(|heard| {
                heard
                    + self.settings.silence
                    + if probed {
                        self.settings.silence_probe
                    } else {
                        Duration::ZERO
                    }
            });
            let incoming = tokio::select! {
                // What the printer sent first: a gateway behind on its work must not time out
                // a printer whose reports wait in the queue.
                biased;
                incoming = session.next() => Ok(incoming),
                _ = sleep_until(quiet_until) => {
                    let now = tokio::time::Instant::now();
                    let late = quiet_until.map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
                    if late > BUSY_LATENESS || session.queued() > 0 {
                        // This task woke far past its deadline: the gateway, not the printer,
                        // was slow. Measure again from now rather than blame the printer.
                        crate::observe::silence_forgiven();
                        heard = Some(now);
                        continue;
                    }
                    if probed {
                        Err(())
                    } else {
                        probed = true;
                        crate::observe::silence_probed();
                        if let Err(err) = session.send(&Command::PushAll) {
                            return err;
                        }
                        continue;
                    }
                }
                _ = flush.tick() => {
                    if std::mem::take(&mut unobserved) && state.has_full() {
                        self.observe(&state).await;
                    }
                    self.expire_pending().await;
                    self.expire_prints().await;
                    self.flush(false).await;
                    continue;
                }
                message = next_message(&mut inbox.commands) => {
                    if let Some((command, reply)) = decode_command(message, self.record.id) {
                        self.command(&mut session, command, reply).await;
                    }
                    continue;
                }
                message = next_message(&mut inbox.prints) => {
                    if let Some(message) = message {
                        self.print_request(Some(&mut session), message).await;
                    }
                    continue;
                }
                Some(done) = self.uploads.1.recv() => {
                    self.upload_done(Some(&mut session), done).await;
                    continue;
                }
            };
            let incoming = match incoming {
                Err(_) => {
                    return SessionError::Timeout(
                        self.settings.silence + self.settings.silence_probe,
                    );
                }
                Ok(Err(SessionError::Tls(reason))) => {
                    if let Some(Acceptance::Refused(why)) = verifier.outcome() {
                        return SessionError::Tls(why);
                    }
                    return SessionError::Tls(reason);
                }
                Ok(Err(err)) => return err,
                Ok(Ok(incoming)) => incoming,
            };
            if matches!(incoming, Incoming::Message(_) | Incoming::Unreadable(_)) {
                let waited = session
                    .heard_at()
                    .map(|at| at.elapsed())
                    .unwrap_or_default();
                crate::observe::received(session.last_payload_len(), waited);
            }
            heard = session
                .heard_at()
                .or_else(|| Some(tokio::time::Instant::now()));
            probed = false;
            self.status.last_seen = Some(Utc::now());
            match incoming {
                Incoming::Connected => {
                    if let Some(timing) = session.connect_timing() {
                        crate::observe::connected_after(timing);
                    }
                    if let Some(Acceptance::FirstUse(fp)) = verifier.outcome() {
                        let pin = fingerprint_hex(&fp);
                        self.status.tls_pin = Some(pin.clone());
                        self.keep_pin(pin);
                    }
                    self.set_connected(true);
                    self.status.connection_error = None;
                    self.event(EventKind::PrinterOnline, "online", serde_json::Value::Null)
                        .await;
                }
                Incoming::Message(Message::Status { full, print }) => {
                    let decisive = !state.has_full() || decisive(state.fields(), &print);
                    state.apply_owned(full, print);
                    // Behind (more reports queued): a report that changes nothing the print's
                    // lifecycle follows is merged into the next rather than looked at alone.
                    let coalesce = session.queued() > 0 && !decisive;
                    if coalesce {
                        crate::observe::coalesced();
                    }
                    unobserved = coalesce;
                    if state.has_full() && !coalesce {
                        self.observe(&state).await;
                        // Written at once unless written within the interval (then the
                        // interval's tick writes the latest): a change reaches the bucket in
                        // milliseconds, and a chatty printer costs one write per interval.
                        // A change of state, error or HMS is written at once regardless.
                        self.flush(decisive).await;
                    }
                }
                Incoming::Message(Message::Version(info)) => {
                    if self.record.model.is_none()
                        && let Some(name) =
                            models::product_name(&info).and_then(models::from_product_name)
                    {
                        self.status.model = Some(name.to_owned());
                    }
                }
                Incoming::Message(Message::Ack(ack)) => {
                    if !self.print_acknowledged(&ack).await {
                        self.acknowledged(&ack).await;
                    }
                }
                Incoming::Message(Message::Other) => {}
                Incoming::Unreadable(err) => {
                    metrics_unreadable();
                    tracing::debug!(printer = self.record.id, error = %err, "unreadable payload");
                }
            }
        }
    }

    async fn observe(&mut self, state: &ReportState) {
        let model_id = self.status.model.as_deref().and_then(models::model_id);
        let normalized = status::normalize(state.fields(), model_id, None);
        let signature_refused =
            |hms: &[HmsEntry]| hms.iter().any(|e| e.code == SIGNATURE_REQUIRED_HMS);
        if signature_refused(&normalized.hms) && !signature_refused(&self.hms) {
            // Some firmware refuses an unsigned command with this HMS entry instead of an ack.
            self.answer_pending(CommandOutcome::Refused {
                reason: "mqtt message verify failed".into(),
                signed_required: true,
            })
            .await;
            self.print_refused_unsigned().await;
        }
        for entry in new_hms_errors(&self.hms, &normalized.hms) {
            let data = serde_json::json!({"code": entry.code, "severity": entry.severity, "text": entry.text});
            let occurrence = format!("{}.{}", entry.code, Utc::now().timestamp());
            self.event(EventKind::PrinterError, &occurrence, data).await;
        }
        self.hms = normalized.hms.clone();
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
                Act::Capture(spec) => {
                    let Some(events) = self.events.clone() else {
                        continue;
                    };
                    let job = crate::capture::CaptureJob {
                        record: self.record.clone(),
                        trust: self.trust_mode(),
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
            }
        }
        self.status.status = Some(normalized);
        self.print_observed().await;
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

    /// Puts the status into the KV bucket if it changed, at most every `status_interval`
    /// (`force` for connection changes, which are always written at once).
    async fn flush(&mut self, force: bool) {
        if self.published.as_ref() == Some(&self.status) {
            return;
        }
        // What the camera knows derives from the status: only a changed status can change it.
        let target = self.camera_target();
        self.camera.send_if_modified(|kept| {
            let changed = *kept != target;
            *kept = target;
            changed
        });
        let due = self
            .published_at
            .is_none_or(|at| at.elapsed() >= self.settings.status_interval);
        // Compared without copying: the kept record takes the new time for the comparison.
        let changed_beyond_time = match self.published.as_mut() {
            None => true,
            Some(published) => {
                let kept = std::mem::replace(&mut published.last_seen, self.status.last_seen);
                let changed = *published != self.status;
                published.last_seen = kept;
                changed
            }
        };
        if !(force || (due && changed_beyond_time)) {
            return;
        }
        let Ok(value) = serde_json::to_vec(&self.status) else {
            return;
        };
        match self
            .store
            .status
            .put(
                registry_key(&self.record.site, self.record.id),
                value.into(),
            )
            .await
        {
            Ok(_) => {
                crate::observe::status_written();
                self.published = Some(self.status.clone());
                self.published_at = Some(Instant::now());
            }
            Err(err) => tracing::warn!(printer = self.record.id, error = %err, "status not stored"),
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

/// A command and where to answer it (`None` for an unreadable request).
/// A command request: what it asks (`None`: unreadable) and where its answer goes, with a
/// span for it in the caller's trace.
fn decode_command(
    message: Option<async_nats::Message>,
    printer: i64,
) -> Option<(Option<PrinterCommand>, Reply)> {
    let message = message?;
    let to = message.reply?;
    let command = serde_json::from_slice::<CommandRequest>(&message.payload)
        .ok()
        .map(|r| r.command);
    let span = tracing::info_span!(
        "printer.command",
        otel.kind = "server",
        printyard.printer = printer,
        printyard.command = command.map_or("unreadable", PrinterCommand::as_str),
        printyard.outcome = tracing::field::Empty,
    );
    printyard_service::nats::adopt_context(&span, message.headers.as_ref());
    Some((command, Reply { to, span }))
}

fn metrics_unreadable() {
    crate::observe::unreadable();
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
