//! Camera viewers on this replica. All viewers of one printer share one tap: one subscription
//! to the printer's frames subject and one lease on its camera at the holding gateway, renewed
//! while any of them watches and released when the last leaves. Each viewer reads the newest
//! frame from the tap (a `watch` channel: a slow viewer skips frames, nothing queues up) and
//! thins it to the frame rate it asked for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{Client, Subject};
use bytes::Bytes;
use futures::StreamExt;
use printyard_contracts::ErrorCode;
use printyard_contracts::camera::{CameraReply, CameraRequest, camera_subject, frames_subject};
use printyard_contracts::farm::Site;
use printyard_service::frames::{Assembler, Frame, Received};
use tokio::sync::{Notify, watch};

use crate::error::ApiError;

/// How long a lease on a camera lasts; it is renewed at a third of that.
const LEASE: Duration = Duration::from_secs(10);
/// A frame this young on a tap answers a snapshot without asking the gateway.
const FRESH: Duration = Duration::from_secs(2);

/// A printer, by its site and id.
type PrinterKey = (Site, i64);

/// What a tap has to say.
#[derive(Debug, Clone)]
pub enum TapState {
    /// No frame yet.
    Waiting,
    Frame(Frame),
    /// The camera ended (stopped, printer offline, camera failed): why.
    Ended(String),
}

/// The viewers of one printer's camera on this replica.
struct Tap {
    state: watch::Sender<TapState>,
    /// Viewer → the frame rate it asked for.
    viewers: Mutex<HashMap<u64, u32>>,
    /// Rings when a viewer comes or leaves.
    changed: Notify,
    /// The frame rate of the lease held (a viewer asking for more renews it at once).
    leased_fps: AtomicU32,
    received_at: Mutex<Option<Instant>>,
}

impl Tap {
    /// The highest frame rate its viewers ask for (`None` without viewers).
    fn wanted_fps(&self) -> Option<u32> {
        self.viewers.lock().ok()?.values().copied().max()
    }
}

#[derive(Clone)]
pub struct Cameras {
    client: Client,
    /// This replica's name in the gateways' leases.
    replica: Arc<str>,
    /// How long a camera may take to answer and send its first frame.
    first_frame: Duration,
    taps: Arc<Mutex<HashMap<PrinterKey, Arc<Tap>>>>,
    next_viewer: Arc<AtomicU64>,
}

/// One viewer: reads the tap's frames until dropped.
pub struct Viewer {
    tap: Arc<Tap>,
    id: u64,
    pub frames: watch::Receiver<TapState>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        if let Ok(mut viewers) = self.tap.viewers.lock() {
            viewers.remove(&self.id);
        }
        self.tap.changed.notify_one();
    }
}

fn unavailable(id: i64, reason: &str) -> ApiError {
    ApiError::new(
        ErrorCode::CameraUnavailable,
        format!("The camera of printer {id} is unavailable: {reason}"),
    )
}

impl Cameras {
    pub fn new(client: Client, first_frame: Duration) -> Self {
        Self {
            client,
            replica: format!("api-{:016x}", rand::random::<u64>()).into(),
            first_frame,
            taps: Default::default(),
            next_viewer: Default::default(),
        }
    }

    /// Starts watching printer `id`'s camera at `fps`: answers once the first frame is here,
    /// or with why it will not come.
    pub async fn watch(&self, site: Site, id: i64, fps: u32) -> Result<Viewer, ApiError> {
        let viewer = {
            let mut taps = self.taps.lock().map_err(|_| unavailable(id, "internal"))?;
            let tap = taps
                .entry((site.clone(), id))
                .or_insert_with(|| {
                    let tap = Arc::new(Tap {
                        state: watch::Sender::new(TapState::Waiting),
                        viewers: Mutex::new(HashMap::new()),
                        changed: Notify::new(),
                        leased_fps: AtomicU32::new(0),
                        received_at: Mutex::new(None),
                    });
                    tokio::spawn(self.clone().run_tap(site.clone(), id, tap.clone()));
                    tap
                })
                .clone();
            let viewer_id = self.next_viewer.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut viewers) = tap.viewers.lock() {
                viewers.insert(viewer_id, fps);
            }
            tap.changed.notify_one();
            Viewer {
                frames: tap.state.subscribe(),
                id: viewer_id,
                tap,
            }
        };
        let mut frames = viewer.frames.clone();
        let first = frames.wait_for(|s| !matches!(s, TapState::Waiting));
        // The gateway has `first_frame` for the camera; a little more for the round trips.
        match tokio::time::timeout(self.first_frame + Duration::from_secs(2), first).await {
            Err(_) => Err(unavailable(id, "no frame came in time")),
            Ok(Err(_)) => Err(unavailable(id, "the camera ended")),
            Ok(Ok(state)) => match &*state {
                TapState::Ended(reason) => Err(unavailable(id, reason)),
                _ => Ok(viewer),
            },
        }
    }

    /// The newest frame: from a tap of this replica if one is fresh, else from the gateway
    /// (which opens the camera for that one frame if nobody watches it).
    pub async fn snapshot(&self, site: Site, id: i64) -> Result<Frame, ApiError> {
        let kept = self.taps.lock().ok().and_then(|taps| {
            let tap = taps.get(&(site.clone(), id))?;
            let fresh = tap
                .received_at
                .lock()
                .ok()?
                .is_some_and(|at| at.elapsed() < FRESH);
            match &*tap.state.borrow() {
                TapState::Frame(frame) if fresh => Some(frame.clone()),
                _ => None,
            }
        });
        if let Some(frame) = kept {
            return Ok(frame);
        }
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|_| unavailable(id, "the message bus is unavailable"))?;
        let request = serde_json::to_vec(&CameraRequest::Snapshot).unwrap_or_default();
        self.client
            .publish_with_reply(camera_subject(&site, id), inbox, request.into())
            .await
            .map_err(|_| unavailable(id, "the message bus is unavailable"))?;
        let deadline = self.first_frame + Duration::from_secs(2);
        let answer = async {
            let mut assembler = Assembler::default();
            while let Some(message) = replies.next().await {
                if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                    return Err(unavailable(
                        id,
                        &format!("no gateway of site `{site}` holds the printer (offline?)"),
                    ));
                }
                match assembler.push(&message) {
                    Received::Frame(frame) => return Ok(frame),
                    Received::Partial => {}
                    Received::End(reason) => return Err(unavailable(id, &reason)),
                    Received::Other(payload) => {
                        return Err(match serde_json::from_slice::<CameraReply>(&payload) {
                            Ok(CameraReply::Unavailable { reason }) => unavailable(id, &reason),
                            _ => unavailable(id, "the gateway answered without a frame"),
                        });
                    }
                }
            }
            Err(unavailable(id, "the message bus is unavailable"))
        };
        let outcome = tokio::time::timeout(deadline, answer)
            .await
            .unwrap_or_else(|_| Err(unavailable(id, "no frame came in time")));
        let _ = replies.unsubscribe().await;
        outcome
    }

    /// Ends every stream of the printer, on every replica, and closes its camera.
    pub async fn stop(&self, site: Site, id: i64) -> Result<(), ApiError> {
        let asked = self.ask(&site, id, &CameraRequest::Stop, self.first_frame);
        match tokio::time::timeout(self.first_frame, asked).await {
            Ok(Ok(_)) => Ok(()),
            // Nobody holds the printer: no camera is open; end this replica's streams anyway
            // (the others' end when their lease renewal finds no gateway).
            Ok(Err(err)) if err.kind() == async_nats::client::RequestErrorKind::NoResponders => {
                if let Some(tap) = self
                    .taps
                    .lock()
                    .ok()
                    .and_then(|t| t.get(&(site, id)).cloned())
                {
                    tap.state
                        .send_replace(TapState::Ended("stopped through the API".into()));
                }
                Ok(())
            }
            _ => Err(ApiError::new(
                ErrorCode::ServiceUnavailable,
                "The printer gateway is unavailable, try again shortly",
            )),
        }
    }

    /// Leases the camera while the tap has viewers, and hands its frames to them.
    async fn run_tap(self, site: Site, id: i64, tap: Arc<Tap>) {
        let ended = self.tap_until_done(&site, id, &tap).await;
        if let Some(reason) = ended {
            tap.state.send_replace(TapState::Ended(reason));
        }
        if let Ok(mut taps) = self.taps.lock()
            && taps
                .get(&(site.clone(), id))
                .is_some_and(|t| Arc::ptr_eq(t, &tap))
        {
            taps.remove(&(site, id));
        }
    }

    /// `Some(reason)` when the camera ended, `None` when the last viewer left.
    async fn tap_until_done(&self, site: &Site, id: i64, tap: &Tap) -> Option<String> {
        let subject = Subject::from(frames_subject(site, id));
        let mut frames = match self.client.subscribe(subject).await {
            Ok(subscriber) => subscriber,
            Err(_) => return Some("the message bus is unavailable".into()),
        };
        if let Err(reason) = self.lease(site, id, tap).await {
            return Some(reason);
        }
        let mut assembler = Assembler::default();
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + LEASE / 3, LEASE / 3);
        let outcome = loop {
            tokio::select! {
                message = frames.next() => {
                    let Some(message) = message else {
                        break Some("the message bus is unavailable".to_owned());
                    };
                    match assembler.push(&message) {
                        Received::Frame(frame) => {
                            if let Ok(mut at) = tap.received_at.lock() {
                                *at = Some(Instant::now());
                            }
                            tap.state.send_replace(TapState::Frame(frame));
                        }
                        Received::End(reason) => break Some(reason),
                        Received::Partial | Received::Other(_) => {}
                    }
                }
                _ = renew.tick() => {
                    if let Err(reason) = self.lease(site, id, tap).await {
                        break Some(reason);
                    }
                }
                _ = tap.changed.notified() => {
                    if tap.wanted_fps().is_some_and(|fps| fps != tap.leased_fps.load(Ordering::Relaxed))
                        && let Err(reason) = self.lease(site, id, tap).await
                    {
                        break Some(reason);
                    }
                }
            }
            // The last viewer gone: leave, under the lock new viewers join by.
            let Ok(mut taps) = self.taps.lock() else {
                break None;
            };
            if tap.viewers.lock().map(|v| v.is_empty()).unwrap_or(true) {
                taps.remove(&(site.clone(), id));
                break None;
            }
        };
        let _ = frames.unsubscribe().await;
        if outcome.is_none() {
            let release = CameraRequest::Release {
                viewer: self.replica.to_string(),
            };
            let _ = self.ask(site, id, &release, Duration::from_secs(2)).await;
        }
        outcome
    }

    /// Asks the gateway holding the printer, with a deadline of its own (the connection's
    /// default request timeout is for quick service calls; opening a camera takes longer).
    async fn ask(
        &self,
        site: &Site,
        id: i64,
        request: &CameraRequest,
        deadline: Duration,
    ) -> Result<async_nats::Message, async_nats::RequestError> {
        let payload = serde_json::to_vec(request).unwrap_or_default();
        let request = async_nats::client::Request::new()
            .payload(payload.into())
            .timeout(Some(deadline));
        self.client
            .send_request(camera_subject(site, id), request)
            .await
    }

    /// Takes or renews this replica's lease at the highest rate its viewers ask for.
    async fn lease(&self, site: &Site, id: i64, tap: &Tap) -> Result<(), String> {
        let fps = tap.wanted_fps().unwrap_or(1);
        tap.leased_fps.store(fps, Ordering::Relaxed);
        let watch = CameraRequest::Watch {
            viewer: self.replica.to_string(),
            fps,
            lease_ms: LEASE.as_millis() as u64,
        };
        let deadline = self.first_frame + Duration::from_secs(1);
        let asked = self.ask(site, id, &watch, deadline);
        match tokio::time::timeout(deadline, asked).await {
            Err(_) => Err("the printer gateway did not answer in time".into()),
            Ok(Err(err)) if err.kind() == async_nats::client::RequestErrorKind::NoResponders => {
                Err(format!(
                    "no gateway of site `{site}` holds the printer (offline?)"
                ))
            }
            Ok(Err(err)) => Err(format!("the printer gateway is unavailable: {err}")),
            Ok(Ok(message)) => match serde_json::from_slice::<CameraReply>(&message.payload) {
                Ok(CameraReply::Watching | CameraReply::Done) => Ok(()),
                Ok(CameraReply::Unavailable { reason }) => Err(reason),
                Err(_) => Err("the printer gateway answered something unreadable".into()),
            },
        }
    }
}

/// The MJPEG part of one frame: its headers, then the JPEG itself (shared, not copied).
pub fn part(frame: &Frame, boundary: &str) -> [Bytes; 3] {
    let head = format!(
        "--{boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Frame-Timestamp: {}\r\n\r\n",
        frame.jpeg.len(),
        frame.at_us
    );
    [
        Bytes::from(head),
        frame.jpeg.clone(),
        Bytes::from_static(b"\r\n"),
    ]
}
