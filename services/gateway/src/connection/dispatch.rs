//! Printing a library file on the held printer, for the scheduler: upload it by FTPS (streamed
//! from the archive, never whole in memory), start it with `project_file`, and answer once the
//! printer shows the print. The upload runs beside the MQTT session; the start and the
//! confirmation go through it.
//!
//! A request is idempotent per job: a second one for a job in flight waits for the first's
//! outcome, one for a job finished here gets the same outcome again, and a printer that already
//! shows the job's tag (after a restart of the gateway or a takeover) is answered "started"
//! without sending anything. So a scheduler that retries after a crash never prints a job twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Subject;
use futures::StreamExt;
use printyard_bambu::commands::{Command, ProjectFile, is_signature_refusal};
use printyard_bambu::ftps::{self, FTPS_PORT};
use printyard_bambu::mqtt::{AccessCode, Session};
use printyard_bambu::report::Ack;
use printyard_bambu::tls::{TrustMode, client_config};
use printyard_contracts::farm::PrinterRecord;
use printyard_contracts::printer::PrinterState;
use printyard_contracts::queue::{PrintOutcome, PrintRequest, job_of};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use async_nats::Client;
use printyard_contracts::printer::PrinterStatus;

use crate::settings::Settings;
use crate::tracker::Sent;

/// Bytes read from the archive per request while uploading, and requests ahead: a slow
/// printer (75–150 KB/s) holds at most this much of a file in the gateway.
const UPLOAD_CHUNK: u64 = 128 * 1024;
const CHUNKS_AHEAD: usize = 2;
/// How long an outcome is kept for a repeated request.
const REMEMBER: Duration = Duration::from_secs(15 * 60);
/// Jobs whose library file is remembered for their `print_file` event.
const SENT_KEPT: usize = 1024;

/// An upload that ended: the file's MD5 (upper-case hex), or why it failed.
pub(crate) struct UploadDone {
    job_id: i64,
    result: Result<String, PrintOutcome>,
}

type UploadSender = mpsc::Sender<UploadDone>;
type UploadReceiver = mpsc::Receiver<UploadDone>;

/// The printer's print requests: those in flight, the outcomes of those done (for a repeated
/// request), and the library files of the jobs started here.
pub(crate) struct Dispatches {
    record: PrinterRecord,
    settings: Arc<Settings>,
    client: Client,
    active: HashMap<i64, Dispatch>,
    finished: VecDeque<(i64, PrintOutcome, Instant)>,
    sent: HashMap<i64, Sent>,
    sent_order: VecDeque<i64>,
    uploads: (UploadSender, UploadReceiver),
}

/// What the connection knows of the printer now, as a dispatch needs it.
pub(crate) struct Printer<'a> {
    pub status: Option<&'a PrinterStatus>,
    /// Why it cannot be reached now; `None` while its session is up.
    pub not_connected: Option<String>,
    pub trust: TrustMode,
}

impl Printer<'_> {
    /// Whether the printer's own state answers a request for `job`: already its print
    /// (started), or busy with another.
    fn shows(&self, job: i64) -> Option<PrintOutcome> {
        let status = self.status?;
        let ours = status.job_name.as_deref().and_then(job_of) == Some(job)
            || status.gcode_file.as_deref().and_then(job_of) == Some(job);
        match status.state {
            PrinterState::Idle | PrinterState::Offline => None,
            _ if ours => Some(PrintOutcome::Started),
            PrinterState::Preparing | PrinterState::Printing | PrinterState::Paused => {
                Some(PrintOutcome::Busy {
                    state: format!("{:?}", status.state).to_lowercase(),
                })
            }
            // Finished or failed: the plate is the scheduler's business; the printer accepts.
            PrinterState::Finished | PrinterState::Failed => None,
        }
    }
}

struct Dispatch {
    request: PrintRequest,
    waiters: Vec<Subject>,
    phase: Phase,
    deadline: Instant,
}

enum Phase {
    Uploading(AbortHandle),
    /// `project_file` sent; waiting for the acknowledgement with this sequence id.
    Starting(String),
    /// Acknowledged; waiting for the printer to show the print.
    Confirming,
}

impl Dispatches {
    pub fn new(record: PrinterRecord, settings: Arc<Settings>, client: Client) -> Self {
        Self {
            record,
            settings,
            client,
            active: HashMap::new(),
            finished: VecDeque::new(),
            sent: HashMap::new(),
            sent_order: VecDeque::new(),
            uploads: mpsc::channel(64),
        }
    }

    /// The next upload that ended (never resolves while none runs).
    pub async fn next_upload(&mut self) -> Option<UploadDone> {
        self.uploads.1.recv().await
    }

    /// The library file of a job this gateway started, or is starting: a printer may show
    /// the print running before the start is confirmed here.
    pub fn sent(&self, job_id: i64) -> Option<Sent> {
        self.sent.get(&job_id).cloned().or_else(|| {
            self.active
                .get(&job_id)
                .filter(|d| !matches!(d.phase, Phase::Uploading(_)))
                .map(|d| sent_of(&d.request))
        })
    }

    fn remember_sent(&mut self, request: &PrintRequest) {
        if self.sent.contains_key(&request.job_id) {
            return;
        }
        self.sent.insert(request.job_id, sent_of(request));
        self.sent_order.push_back(request.job_id);
        while self.sent_order.len() > SENT_KEPT {
            if let Some(old) = self.sent_order.pop_front() {
                self.sent.remove(&old);
            }
        }
    }

    fn finished_outcome(&mut self, job_id: i64) -> Option<PrintOutcome> {
        let now = Instant::now();
        self.finished
            .retain(|(_, _, at)| now.duration_since(*at) < REMEMBER);
        self.finished
            .iter()
            .rev()
            .find(|(id, ..)| *id == job_id)
            .map(|(_, outcome, _)| outcome.clone())
    }
}

fn sent_of(request: &PrintRequest) -> Sent {
    Sent {
        archive_id: request.archive_id,
        plate: request.plate,
        file_name: file_name(request),
        ams_mapping: request.ams_mapping.clone(),
    }
}

/// The file a job is uploaded as: `<subtask name>.gcode.3mf`, in the storage root (where LAN
/// uploads go on A1 and P1; the capture looks there too).
pub(crate) fn file_name(request: &PrintRequest) -> String {
    format!("{}.gcode.3mf", request.subtask_name)
}

/// How long an upload of `size` bytes may take: printers write 75–150 KB/s, so allow 32 KB/s
/// plus a minute.
fn upload_deadline(size: u64) -> Duration {
    Duration::from_secs(60 + size / (32 * 1024))
}

impl Dispatches {
    /// Handles a print request; `session` is `None` while disconnected.
    pub async fn print_request(
        &mut self,
        printer: &Printer<'_>,
        session: Option<&mut Session>,
        message: async_nats::Message,
    ) {
        let Some(reply) = message.reply.clone() else {
            return;
        };
        let Ok(request) = serde_json::from_slice::<PrintRequest>(&message.payload) else {
            metrics::counter!("printyard_gateway_unreadable_commands_total").increment(1);
            let outcome = PrintOutcome::Refused {
                reason: "the print request could not be read".into(),
                signed_required: false,
            };
            return self.reply_print(reply, &outcome).await;
        };
        let job = request.job_id;
        if let Some(dispatch) = self.active.get_mut(&job) {
            dispatch.waiters.push(reply);
            return;
        }
        if let Some(outcome) = self.finished_outcome(job) {
            return self.reply_print(reply, &outcome).await;
        }
        let session_up = session.is_some() && printer.not_connected.is_none();
        if !session_up {
            let reason = printer.not_connected.clone();
            return self
                .reply_print(reply, &PrintOutcome::NotConnected { reason })
                .await;
        }
        if let Some(outcome) = printer.shows(job) {
            if outcome == PrintOutcome::Started {
                self.remember_sent(&request);
            }
            return self.reply_print(reply, &outcome).await;
        }
        let deadline = Instant::now()
            + upload_deadline(request.file.size)
            + self.settings.print_start
            + Duration::from_secs(30);
        tracing::info!(
            printer = self.record.id,
            job,
            bytes = request.file.size,
            "uploading a queued job"
        );
        let task = tokio::spawn(upload(
            self.record.clone(),
            printer.trust.clone(),
            self.settings.clone(),
            request.clone(),
            self.uploads.0.clone(),
        ));
        self.active.insert(
            job,
            Dispatch {
                request,
                waiters: vec![reply],
                phase: Phase::Uploading(task.abort_handle()),
                deadline,
            },
        );
    }

    /// An upload ended: start the print, or answer with the failure.
    pub async fn upload_done(
        &mut self,
        printer: &Printer<'_>,
        session: Option<&mut Session>,
        done: UploadDone,
    ) {
        let job = done.job_id;
        if !self.active.contains_key(&job) {
            return;
        }
        let md5 = match done.result {
            Ok(md5) => md5,
            Err(outcome) => return self.finish_print(job, outcome).await,
        };
        let Some(session) = session.filter(|_| printer.not_connected.is_none()) else {
            let reason = Some("the connection to the printer was lost during the upload".into());
            return self
                .finish_print(job, PrintOutcome::NotConnected { reason })
                .await;
        };
        if let Some(outcome) = printer.shows(job) {
            return self.finish_print(job, outcome).await;
        }
        let Some(dispatch) = self.active.get_mut(&job) else {
            return;
        };
        let request = &dispatch.request;
        let command = Command::ProjectFile(ProjectFile {
            file_name: file_name(request),
            plate: request.plate,
            subtask_name: request.subtask_name.clone(),
            ams_mapping: request.ams_mapping.clone(),
            use_ams: request.use_ams,
            bed_leveling: request.bed_leveling,
            timelapse: request.timelapse,
            md5,
        });
        match session.send(&command) {
            Ok(sequence) => {
                dispatch.phase = Phase::Starting(sequence.to_string());
                dispatch.deadline = Instant::now() + self.settings.print_start;
                tracing::info!(printer = self.record.id, job, "project_file sent");
            }
            Err(err) => {
                let reason = Some(format!("the start could not be sent: {err}"));
                self.finish_print(job, PrintOutcome::NotConnected { reason })
                    .await
            }
        }
    }

    /// Matches an acknowledgement to a print being started; `true` when it was one.
    pub async fn print_acknowledged(&mut self, printer: &Printer<'_>, ack: &Ack) -> bool {
        let Some(sequence) = ack.sequence_id.as_deref() else {
            return false;
        };
        let Some(job) = self
            .active
            .iter()
            .find(|(_, d)| matches!(&d.phase, Phase::Starting(s) if s == sequence))
            .map(|(job, _)| *job)
        else {
            return false;
        };
        if ack.succeeded() {
            if let Some(dispatch) = self.active.get_mut(&job) {
                dispatch.phase = Phase::Confirming;
                dispatch.deadline = Instant::now() + self.settings.print_start;
            }
            self.print_observed(printer).await;
        } else {
            let reason = ack.reason.clone().unwrap_or_else(|| ack.result.clone());
            let outcome = PrintOutcome::Refused {
                signed_required: is_signature_refusal(&reason),
                reason,
            };
            self.finish_print(job, outcome).await;
        }
        true
    }

    /// A status arrived: prints the printer now shows are started.
    pub async fn print_observed(&mut self, printer: &Printer<'_>) {
        let started: Vec<i64> = self
            .active
            .iter()
            .filter(|(_, d)| !matches!(d.phase, Phase::Uploading(_)))
            .filter(|(job, _)| printer.shows(**job) == Some(PrintOutcome::Started))
            .map(|(job, _)| *job)
            .collect();
        for job in started {
            self.finish_print(job, PrintOutcome::Started).await;
        }
    }

    /// Firmware that wants signed commands refused the start with an HMS entry, not an ack.
    pub async fn print_refused_unsigned(&mut self) {
        let starting: Vec<i64> = self
            .active
            .iter()
            .filter(|(_, d)| matches!(d.phase, Phase::Starting(_)))
            .map(|(job, _)| *job)
            .collect();
        for job in starting {
            let outcome = PrintOutcome::Refused {
                reason: "mqtt message verify failed".into(),
                signed_required: true,
            };
            self.finish_print(job, outcome).await;
        }
    }

    /// Answers the prints whose deadline passed.
    pub async fn expire_prints(&mut self) {
        let now = Instant::now();
        let late: Vec<(i64, u64)> = self
            .active
            .iter()
            .filter(|(_, d)| d.deadline <= now)
            .map(|(job, d)| {
                let waited = match d.phase {
                    Phase::Uploading(_) => upload_deadline(d.request.file.size),
                    _ => self.settings.print_start,
                };
                (*job, waited.as_millis() as u64)
            })
            .collect();
        for (job, after_ms) in late {
            self.finish_print(job, PrintOutcome::TimedOut { after_ms })
                .await;
        }
    }

    /// The MQTT session ended: starts in flight cannot be confirmed on it. Uploads go on (FTPS
    /// is a connection of its own) and find out at their end.
    pub async fn prints_disconnected(&mut self, why: &str) {
        let waiting: Vec<i64> = self
            .active
            .iter()
            .filter(|(_, d)| !matches!(d.phase, Phase::Uploading(_)))
            .map(|(job, _)| *job)
            .collect();
        for job in waiting {
            let reason = Some(format!(
                "the connection ended before the printer confirmed the print: {why}"
            ));
            self.finish_print(job, PrintOutcome::NotConnected { reason })
                .await;
        }
    }

    /// The gateway lets the printer go: every print in flight is answered.
    pub async fn prints_released(&mut self) {
        let jobs: Vec<i64> = self.active.keys().copied().collect();
        for job in jobs {
            let reason = Some("the gateway released the printer".into());
            self.finish_print(job, PrintOutcome::NotConnected { reason })
                .await;
        }
    }

    async fn finish_print(&mut self, job: i64, outcome: PrintOutcome) {
        let Some(dispatch) = self.active.remove(&job) else {
            return;
        };
        if let Phase::Uploading(task) = &dispatch.phase {
            task.abort();
        }
        if outcome == PrintOutcome::Started {
            self.remember_sent(&dispatch.request);
        }
        let label = match &outcome {
            PrintOutcome::Started => "started",
            o if o.is_transient() => "transient",
            _ => "failed",
        };
        metrics::counter!("printyard_gateway_prints_total", "outcome" => label).increment(1);
        tracing::info!(printer = self.record.id, job, outcome = %outcome.describe(), "queued job answered");
        // Only outcomes that are facts of the printer are repeated to a later request; a
        // transient one is tried afresh.
        if !outcome.is_transient() {
            self.finished
                .push_back((job, outcome.clone(), Instant::now()));
        }
        for waiter in dispatch.waiters {
            self.reply_print(waiter, &outcome).await;
        }
    }

    async fn reply_print(&self, reply: Subject, outcome: &PrintOutcome) {
        let Ok(payload) = serde_json::to_vec(outcome) else {
            return;
        };
        if let Err(err) = self.client.publish(reply, payload.into()).await {
            tracing::warn!(printer = self.record.id, error = %err, "print reply not sent");
        }
    }
}

/// Uploads the job's file to the printer by FTPS, reading it from the archive as it goes, and
/// reports the file's MD5 (or the failure) on `done`.
async fn upload(
    record: PrinterRecord,
    trust: TrustMode,
    settings: Arc<Settings>,
    request: PrintRequest,
    done: UploadSender,
) {
    let job_id = request.job_id;
    let result = match settings.uploads.acquire().await {
        Ok(_slot) => upload_file(&record, trust, &settings, &request).await,
        Err(_) => Err(PrintOutcome::UploadFailed {
            reason: "the gateway is stopping".into(),
        }),
    };
    let _ = done.send(UploadDone { job_id, result }).await;
}

async fn upload_file(
    record: &PrinterRecord,
    trust: TrustMode,
    settings: &Settings,
    request: &PrintRequest,
) -> Result<String, PrintOutcome> {
    let failed = |reason: String| PrintOutcome::UploadFailed { reason };
    let code = AccessCode::parse(&record.access_code)
        .ok_or_else(|| failed("the access code is not 8 letters or digits".into()))?;
    let (tls, _) = client_config(&record.serial, settings.anchors.clone(), trust)
        .map_err(|e| failed(e.to_string()))?;
    let mut ftp = ftps::connect(&record.host, FTPS_PORT, &code, tls, Duration::from_secs(15))
        .await
        .map_err(|e| failed(e.to_string()))?;
    let path = format!("/{}", file_name(request));
    let deadline = upload_deadline(request.file.size);
    let started = Instant::now();
    let sent = tokio::time::timeout(deadline, async {
        let mut stream = ftp
            .put_with_stream(&path)
            .await
            .map_err(|e| failed(format!("the printer refused to store {path}: {e}")))?;
        let mut chunks = Box::pin(printyard_service::files::object_stream(
            settings.rpc.clone(),
            &request.file,
            UPLOAD_CHUNK,
            CHUNKS_AHEAD,
        ));
        let mut md5 = <md5::Md5 as md5::Digest>::new();
        let mut sha = <sha2::Sha256 as sha2::Digest>::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| PrintOutcome::FileUnavailable {
                reason: e.to_string(),
            })?;
            md5::Digest::update(&mut md5, &chunk);
            sha2::Digest::update(&mut sha, &chunk);
            stream
                .write_all(&chunk)
                .await
                .map_err(|e| failed(format!("writing to the printer: {e}")))?;
        }
        stream
            .finish()
            .await
            .map_err(|e| failed(format!("the printer did not complete the upload: {e}")))?;
        let sha = hex::encode(sha2::Digest::finalize(sha));
        if request.sha256.as_ref().is_some_and(|want| *want != sha) {
            return Err(PrintOutcome::FileUnavailable {
                reason: "the file read from the archive does not match its checksum".into(),
            });
        }
        Ok(hex::encode_upper(md5::Digest::finalize(md5)))
    })
    .await
    .unwrap_or_else(|_| {
        Err(failed(format!(
            "the upload took longer than {} s",
            deadline.as_secs()
        )))
    });
    let md5 = match sent {
        Ok(md5) => md5,
        Err(outcome) => {
            let _ = ftp.quit().await;
            return Err(outcome);
        }
    };
    // What the printer kept, not what we sent, decides.
    let stored = tokio::time::timeout(Duration::from_secs(15), ftp.size(&path)).await;
    let _ = ftp.quit().await;
    match stored {
        Ok(Ok(size)) if size as u64 == request.file.size => {}
        Ok(Ok(size)) => {
            return Err(failed(format!(
                "the printer stored {size} of {} bytes",
                request.file.size
            )));
        }
        Ok(Err(err)) => return Err(failed(format!("checking the stored file: {err}"))),
        Err(_) => return Err(failed("checking the stored file timed out".into())),
    }
    metrics::histogram!("printyard_gateway_upload_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    Ok(md5)
}
