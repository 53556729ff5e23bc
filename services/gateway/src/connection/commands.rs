//! The printer's command subject: a command (refresh, pause, resume, stop) is sent on the live
//! session and answered when the printer acknowledges it (matched by `sequence_id`), refuses
//! it, or lets the deadline pass; without a live session the answer is "not connected" with the
//! last connection error. Each answer goes back in its caller's trace.

use std::time::{Duration, Instant};

use async_nats::{Client, Subject};
use printyard_bambu::commands::{Command, is_signature_refusal};
use printyard_bambu::mqtt::Session;
use printyard_bambu::report::Ack;
use printyard_contracts::farm::{CommandOutcome, CommandRequest, PrinterCommand};

/// Where a command's answer goes, and the span that carries the caller's trace (from the
/// request's `traceparent`) until the answer is sent.
pub(super) struct Reply {
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

/// The commands of one printer: those waiting for the printer's answer, and how to answer.
pub(super) struct Commands {
    printer: i64,
    client: Client,
    /// How long the printer has to acknowledge (answered "timed out" after).
    deadline: Duration,
    pending: Vec<Pending>,
}

impl Commands {
    pub fn new(printer: i64, client: Client, deadline: Duration) -> Self {
        Self {
            printer,
            client,
            deadline,
            pending: Vec::new(),
        }
    }

    /// Acts on a command: sent on the live `session`, or answered "not connected" (with the
    /// reason) when there is none.
    pub async fn handle(
        &mut self,
        session: Option<&mut Session>,
        command: Option<PrinterCommand>,
        reply: Reply,
        not_connected: Option<String>,
    ) {
        let Some(command) = command else {
            return self.refuse_unreadable(reply).await;
        };
        let Some(session) = session.filter(|_| not_connected.is_none()) else {
            let outcome = CommandOutcome::NotConnected {
                reason: not_connected,
            };
            return self.reply(reply, &outcome).await;
        };
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
                        printer = self.printer,
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
    pub async fn acknowledged(&mut self, ack: &Ack) {
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
    pub async fn expire(&mut self) {
        let now = Instant::now();
        let (late, waiting): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|p| p.deadline <= now);
        self.pending = waiting;
        let after_ms = self.deadline.as_millis() as u64;
        for pending in late {
            let outcome = CommandOutcome::TimedOut { after_ms };
            pending.answered(&outcome);
            self.reply(pending.reply, &outcome).await;
        }
    }

    /// Answers every waiting command with `outcome` (the session ended, the printer refused).
    pub async fn answer_all(&mut self, outcome: CommandOutcome) {
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
            .client
            .publish_with_headers(reply.to, headers, payload.into())
            .await;
        if let Err(err) = sent {
            tracing::warn!(printer = self.printer, error = %err, "command reply not sent");
        }
    }
}

/// A command request: what it asks (`None`: unreadable) and where its answer goes, with a
/// span for it in the caller's trace; `None` for a message nobody waits an answer to.
pub(super) fn decode(
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
