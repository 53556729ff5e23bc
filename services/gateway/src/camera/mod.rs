//! A held printer's camera: one upstream however many viewers. `api` replicas serving viewers
//! hold leases ([`CameraRequest::Watch`], renewed while they serve); while any lease lives the
//! camera is open and its frames go to the printer's frames subject, thinned to the highest
//! frame rate a lease asks for. It closes `linger` after the last lease ends, at once on
//! `Stop`, when the printer goes offline, or when the gateway lets the printer go. It is never
//! opened for nobody: only a watch or a snapshot opens it, and a snapshot's upstream closes as
//! soon as its frame is taken.
//!
//! JPEG cameras (A1, P1) are read directly and their frames pass through untouched. RTSPS
//! cameras (X1, P2S, H2) are decoded by an ffmpeg child process at the leases' frame rate;
//! ffmpeg reaches the printer through a loopback relay whose TLS side the gateway opens with
//! the printer's own trust policy (ffmpeg cannot pin a certificate, and the access code must
//! not go to an unverified peer).

mod source;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, Subject};
use bytes::Bytes;
use futures::StreamExt;
use printyard_bambu::camera::{CameraKind, JPEG_PORT, RTSPS_PORT, kind_of};
use printyard_bambu::tls::TrustMode;
use printyard_contracts::camera::{
    CameraReply, CameraRequest, MAX_FPS, camera_subject, frames_subject,
};
use printyard_contracts::farm::PrinterRecord;
use printyard_service::backoff::Backoff;
use printyard_service::frames::{Frame, publish_end, publish_frame};
use rustls::pki_types::TrustAnchor;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use self::source::Source;

/// `gateway.camera_*`: how cameras are opened and kept.
#[derive(Debug, Clone)]
pub struct CameraSettings {
    /// How long an upstream stays open after its last lease ends (a viewer reloading a page
    /// does not reconnect the camera).
    pub linger: Duration,
    /// How long a camera has to deliver its first frame.
    pub first_frame: Duration,
    /// How long an open camera may go without a frame before it is taken as dead.
    pub stall: Duration,
    /// The ffmpeg program RTSPS cameras are decoded with.
    pub ffmpeg: String,
    /// Test hook: the ports of the two kinds of camera (6000 and 322 on printers).
    pub jpeg_port: u16,
    pub rtsps_port: u16,
}

impl Default for CameraSettings {
    fn default() -> Self {
        Self {
            linger: Duration::from_secs(5),
            first_frame: Duration::from_secs(10),
            stall: Duration::from_secs(30),
            ffmpeg: "ffmpeg".into(),
            jpeg_port: JPEG_PORT,
            rtsps_port: RTSPS_PORT,
        }
    }
}

/// What the camera needs to know of its printer, kept current by the printer's connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// `Err(reason)` while the printer is offline.
    pub online: Result<(), String>,
    pub trust: TrustMode,
    pub model: Option<String>,
}

/// How often leases and deadlines are looked at.
const TICK: Duration = Duration::from_millis(250);
/// A kept frame younger than this answers a snapshot at once.
const FRESH: Duration = Duration::from_secs(5);

/// Runs the camera of a held printer until `stop`.
pub async fn run(
    record: PrinterRecord,
    mut target: watch::Receiver<Target>,
    client: Client,
    anchors: Arc<Vec<TrustAnchor<'static>>>,
    settings: CameraSettings,
    stop: CancellationToken,
) {
    let mut requests = match client
        .subscribe(camera_subject(&record.site, record.id))
        .await
    {
        Ok(subscriber) => subscriber,
        Err(err) => {
            tracing::error!(printer = record.id, error = %err, "camera subscription failed");
            return;
        }
    };
    let mut camera = Camera {
        frames: Subject::from(frames_subject(&record.site, record.id)),
        record,
        client,
        anchors,
        settings,
        leases: HashMap::new(),
        keep_until: None,
        upstream: None,
        latest: None,
        seq: 0,
        published_at: None,
        watches: Vec::new(),
        snapshots: Vec::new(),
        backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
        failed: None,
        reopen_at: None,
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            request = requests.next() => match request {
                Some(message) => {
                    let now = target.borrow().clone();
                    camera.request(message, &now).await
                }
                None => break,
            },
            frame = next_frame(&mut camera.upstream) => camera.upstream_said(frame).await,
            changed = target.changed() => {
                if changed.is_err() {
                    break;
                }
                let online = target.borrow().online.clone();
                if let Err(reason) = online {
                    camera.end(&format!("the printer went offline: {reason}")).await;
                }
            }
            // A camera nobody watches has nothing to look at: a farm's idle cameras do not wake.
            _ = tick.tick(), if camera.busy() => {
                let now = target.borrow().clone();
                camera.tick(&now).await
            }
        }
    }
    let _ = requests.unsubscribe().await;
    camera.end("the gateway let the printer go").await;
}

/// A running upstream: its frames (or why it ended) arrive on `frames`.
struct Upstream {
    frames: mpsc::Receiver<Result<Bytes, String>>,
    /// The frame rate it was opened at (RTSPS decodes at it).
    fps: u32,
    kind: CameraKind,
    /// Ends the reader (and its ffmpeg) when dropped.
    _stop: tokio_util::sync::DropGuard,
    /// Whether a frame came yet.
    flowing: bool,
    opened_at: Instant,
}

struct Camera {
    record: PrinterRecord,
    client: Client,
    anchors: Arc<Vec<TrustAnchor<'static>>>,
    settings: CameraSettings,
    frames: Subject,
    /// Viewer (an api replica) → (lease end, fps asked).
    leases: HashMap<String, (Instant, u32)>,
    /// The upstream may close after this (and when no lease lives).
    keep_until: Option<Instant>,
    upstream: Option<Upstream>,
    latest: Option<(Instant, Frame)>,
    seq: u64,
    published_at: Option<Instant>,
    /// Watches waiting for the first frame: (reply subject, deadline).
    watches: Vec<(Subject, Instant)>,
    /// Snapshots waiting for a frame.
    snapshots: Vec<(Subject, Instant)>,
    backoff: Backoff,
    /// The last failure, and until when no new attempt is made.
    failed: Option<(String, Instant)>,
    /// When a lost upstream is reopened for its viewers.
    reopen_at: Option<Instant>,
}

async fn next_frame(upstream: &mut Option<Upstream>) -> Option<Result<Bytes, String>> {
    match upstream {
        Some(upstream) => upstream.frames.recv().await,
        None => std::future::pending().await,
    }
}

impl Camera {
    /// The frame rate the leases ask for (the highest).
    fn wanted_fps(&self) -> u32 {
        self.leases
            .values()
            .map(|(_, fps)| *fps)
            .max()
            .unwrap_or(1)
            .clamp(1, MAX_FPS)
    }

    async fn request(&mut self, message: async_nats::Message, target: &Target) {
        let Some(reply) = message.reply.clone() else {
            return;
        };
        let request = match serde_json::from_slice::<CameraRequest>(&message.payload) {
            Ok(request) => request,
            Err(err) => {
                let reason = format!("unreadable camera request: {err}");
                return self
                    .answer(reply, &CameraReply::Unavailable { reason })
                    .await;
            }
        };
        let now = Instant::now();
        match request {
            CameraRequest::Watch {
                viewer,
                fps,
                lease_ms,
            } => {
                if let Err(reason) = self.can_open(target) {
                    return self
                        .answer(reply, &CameraReply::Unavailable { reason })
                        .await;
                }
                let until = now + Duration::from_millis(lease_ms.clamp(1_000, 120_000));
                self.leases.insert(viewer, (until, fps.clamp(1, MAX_FPS)));
                self.keep(until + self.settings.linger);
                if self.upstream.as_ref().is_some_and(|u| u.flowing) {
                    return self.answer(reply, &CameraReply::Watching).await;
                }
                self.open(target);
                self.watches.push((reply, now + self.settings.first_frame));
            }
            CameraRequest::Release { viewer } => {
                self.leases.remove(&viewer);
                if self.leases.is_empty() {
                    self.keep_until = Some(now + self.settings.linger);
                }
                self.answer(reply, &CameraReply::Done).await;
            }
            CameraRequest::Snapshot => {
                let fresh = self
                    .latest
                    .as_ref()
                    .filter(|(at, _)| at.elapsed() < FRESH && self.upstream.is_some());
                if let Some((_, frame)) = fresh {
                    let frame = frame.clone();
                    return self.send_frame(reply, &frame).await;
                }
                if let Err(reason) = self.can_open(target) {
                    return self
                        .answer(reply, &CameraReply::Unavailable { reason })
                        .await;
                }
                self.keep(now);
                self.open(target);
                self.snapshots
                    .push((reply, now + self.settings.first_frame));
            }
            CameraRequest::Stop => {
                self.end("stopped through the API").await;
                self.answer(reply, &CameraReply::Done).await;
            }
        }
    }

    fn keep(&mut self, until: Instant) {
        self.keep_until = Some(self.keep_until.map_or(until, |k| k.max(until)));
    }

    /// Whether the camera may be opened now, else why not.
    fn can_open(&self, target: &Target) -> Result<(), String> {
        target
            .online
            .as_ref()
            .map_err(|reason| format!("the printer is offline: {reason}"))?;
        if self.upstream.is_none()
            && let Some((reason, until)) = &self.failed
            && Instant::now() < *until
        {
            return Err(reason.clone());
        }
        Ok(())
    }

    /// Opens the upstream unless it is open at the frame rate wanted.
    fn open(&mut self, target: &Target) {
        let fps = self.wanted_fps();
        let kind = kind_of(target.model.as_deref());
        if let Some(upstream) = &self.upstream
            && (upstream.kind == CameraKind::Jpeg || upstream.fps == fps)
        {
            return;
        }
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::channel(2);
        let source = Source {
            host: self.record.host.clone(),
            serial: self.record.serial.clone(),
            code: self.record.access_code.clone(),
            trust: target.trust.clone(),
            anchors: self.anchors.clone(),
            settings: self.settings.clone(),
        };
        let printer = self.record.id;
        tracing::info!(printer, ?kind, fps, "camera opened");
        metrics::counter!(crate::observe::CAMERA_OPENS).increment(1);
        tokio::spawn({
            let stop = stop.clone();
            async move {
                let reason = tokio::select! {
                    _ = stop.cancelled() => return,
                    reason = source.read(kind, fps, &tx) => reason,
                };
                let _ = tx.send(Err(reason)).await;
            }
        });
        self.upstream = Some(Upstream {
            frames: rx,
            fps,
            kind,
            _stop: stop.drop_guard(),
            flowing: false,
            opened_at: Instant::now(),
        });
    }

    /// A frame from the upstream, or its end.
    async fn upstream_said(&mut self, said: Option<Result<Bytes, String>>) {
        let jpeg = match said {
            Some(Ok(jpeg)) => jpeg,
            Some(Err(reason)) => return self.lost(reason).await,
            None => return self.lost("the camera reader ended".into()).await,
        };
        let now = Instant::now();
        if let Some(upstream) = self.upstream.as_mut() {
            upstream.flowing = true;
        }
        self.backoff.reset();
        self.failed = None;
        self.seq += 1;
        let frame = Frame {
            seq: self.seq,
            at_us: chrono::Utc::now().timestamp_micros(),
            jpeg,
        };
        for (reply, _) in std::mem::take(&mut self.watches) {
            self.answer(reply, &CameraReply::Watching).await;
        }
        for (reply, _) in std::mem::take(&mut self.snapshots) {
            self.send_frame(reply, &frame).await;
        }
        // Thinned to the highest rate asked (a little early is on time: frames jitter).
        let interval = Duration::from_secs_f64(0.9 / f64::from(self.wanted_fps()));
        let due = self.published_at.is_none_or(|at| now - at >= interval);
        if !self.leases.is_empty() && due {
            self.published_at = Some(now);
            if let Err(err) = publish_frame(&self.client, self.frames.clone(), &frame).await {
                tracing::warn!(printer = self.record.id, error = %err, "frame not published");
            }
            metrics::counter!(crate::observe::CAMERA_FRAMES).increment(1);
        }
        self.latest = Some((now, frame));
        if self.leases.is_empty() && self.snapshots.is_empty() && self.idle(now) {
            self.close("no viewer left");
        }
    }

    /// Whether anything is open, leased or waiting (the tick has work).
    fn busy(&self) -> bool {
        self.upstream.is_some()
            || !self.leases.is_empty()
            || !self.watches.is_empty()
            || !self.snapshots.is_empty()
            || self.reopen_at.is_some()
    }

    fn idle(&self, now: Instant) -> bool {
        self.keep_until.is_none_or(|k| now >= k)
    }

    /// The upstream ended. One that worked (a transcoder that died, a camera that dropped the
    /// connection) is reopened after the backoff, its viewers kept; one that never sent a
    /// frame has failed.
    async fn lost(&mut self, reason: String) {
        let flowed = self.upstream.as_ref().is_some_and(|u| u.flowing);
        if flowed && !self.leases.is_empty() {
            let delay = self.backoff.next_delay();
            tracing::warn!(printer = self.record.id, reason = %reason, ?delay, "camera lost, reopening");
            metrics::counter!(crate::observe::CAMERA_REOPENS).increment(1);
            self.close(&reason);
            self.reopen_at = Some(Instant::now() + delay);
            return;
        }
        self.failed(reason).await
    }

    /// The upstream failed: waiting requests hear why, streams end, and the next attempt waits
    /// for the backoff.
    async fn failed(&mut self, reason: String) {
        let printer = self.record.id;
        tracing::warn!(printer, reason = %reason, "camera upstream ended");
        let retry = Instant::now() + self.backoff.next_delay();
        self.failed = Some((reason.clone(), retry));
        self.end(&reason).await;
    }

    /// Ends everything: the upstream, the leases, the waiting requests, the streams.
    async fn end(&mut self, reason: &str) {
        let was_open = self.upstream.is_some() || !self.leases.is_empty();
        self.close(reason);
        self.leases.clear();
        self.keep_until = None;
        self.reopen_at = None;
        let waiting: Vec<_> = self
            .watches
            .drain(..)
            .chain(self.snapshots.drain(..))
            .collect();
        for (reply, _) in waiting {
            let reason = reason.to_owned();
            self.answer(reply, &CameraReply::Unavailable { reason })
                .await;
        }
        if was_open && let Err(err) = publish_end(&self.client, self.frames.clone(), reason).await {
            tracing::warn!(printer = self.record.id, error = %err, "camera end not published");
        }
    }

    fn close(&mut self, reason: &str) {
        if self.upstream.take().is_some() {
            tracing::info!(printer = self.record.id, reason, "camera closed");
        }
        self.latest = None;
        self.published_at = None;
    }

    async fn tick(&mut self, target: &Target) {
        let now = Instant::now();
        self.leases.retain(|_, (until, _)| *until > now);
        let late = |waiting: &mut Vec<(Subject, Instant)>| {
            let (late, rest): (Vec<_>, Vec<_>) = waiting.drain(..).partition(|(_, d)| *d <= now);
            *waiting = rest;
            late
        };
        let late: Vec<_> = late(&mut self.watches)
            .into_iter()
            .chain(late(&mut self.snapshots))
            .collect();
        if !late.is_empty() {
            let reason = format!(
                "the camera sent no frame within {} s",
                self.settings.first_frame.as_secs()
            );
            for (reply, _) in late {
                let reason = reason.clone();
                self.answer(reply, &CameraReply::Unavailable { reason })
                    .await;
            }
            if self.watches.is_empty() && self.snapshots.is_empty() && self.leases.is_empty() {
                let reason = reason.clone();
                self.failed(reason).await;
                return;
            }
        }
        // Silence: past `stall` since the last frame, or past `first_frame` since opening.
        let silent = self.upstream.as_ref().and_then(|upstream| {
            let (since, allowed) = match &self.latest {
                Some((at, _)) if upstream.flowing => (*at, self.settings.stall),
                _ => (upstream.opened_at, self.settings.first_frame),
            };
            (now.duration_since(since) > allowed).then_some(allowed)
        });
        if let Some(allowed) = silent {
            let reason = format!("the camera sent no frame for {} s", allowed.as_secs());
            return self.lost(reason).await;
        }
        if self.upstream.is_none()
            && let Some(at) = self.reopen_at
            && now >= at
        {
            self.reopen_at = None;
            if !self.leases.is_empty() {
                self.open(target);
            }
        }
        if self.upstream.is_some() {
            if self.leases.is_empty() && self.snapshots.is_empty() && self.idle(now) {
                self.close("no viewer left");
            } else if !self.leases.is_empty() {
                // A viewer asking for more frames than an RTSPS upstream decodes: reopen.
                self.open(target);
            }
        }
    }

    async fn answer(&self, reply: Subject, answer: &CameraReply) {
        let Ok(payload) = serde_json::to_vec(answer) else {
            return;
        };
        if let Err(err) = self.client.publish(reply, payload.into()).await {
            tracing::warn!(printer = self.record.id, error = %err, "camera answer not sent");
        }
    }

    async fn send_frame(&self, reply: Subject, frame: &Frame) {
        if let Err(err) = publish_frame(&self.client, reply, frame).await {
            tracing::warn!(printer = self.record.id, error = %err, "snapshot not sent");
        }
    }
}
