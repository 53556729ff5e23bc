//! Cameras: what `api` asks the gateway holding a printer, and how frames cross NATS.
//!
//! One upstream per printer, however many viewers: each `api` replica serving viewers of a
//! printer holds a lease on its camera ([`CameraRequest::Watch`], renewed while it serves them);
//! the holding gateway keeps the camera open while any lease lives and publishes its frames on
//! [`frames_subject`], where every serving replica listens. Frames larger than the connection's
//! max payload travel in parts ([`FRAME_PART_HEADER`]).

use serde::{Deserialize, Serialize};

use crate::farm::Site;
use crate::subjects::ROOT;

/// Where a printer's camera requests go: `printyard.printers.<site>.<id>.camera`. Only the
/// gateway holding the printer listens, so "no responders" means nobody holds it.
pub fn camera_subject(site: &Site, printer_id: i64) -> String {
    format!("{ROOT}.printers.{site}.{printer_id}.camera")
}

/// Where a watched camera's frames (and the notice of its end) are published:
/// `printyard.camera.<site>.<id>.frames`.
pub fn frames_subject(site: &Site, printer_id: i64) -> String {
    format!("{ROOT}.camera.{site}.{printer_id}.frames")
}

/// The frame's number in its upstream session (grows by one per frame published).
pub const FRAME_SEQ_HEADER: &str = "Printyard-Frame";
/// When the gateway received the frame: Unix time in microseconds.
pub const FRAME_AT_HEADER: &str = "Printyard-Frame-At";
/// `<index>/<count>` of a frame sent in parts (absent: the message is the whole frame).
pub const FRAME_PART_HEADER: &str = "Printyard-Frame-Part";
/// On a message without a frame: the camera's upstream ended, and why (streams end with it).
pub const CAMERA_END_HEADER: &str = "Printyard-Camera-End";

/// The default frame rate of a stream, and the bounds a viewer may ask for.
pub const DEFAULT_FPS: u32 = 5;
pub const MAX_FPS: u32 = 30;

/// A request to the gateway holding a printer, on [`camera_subject`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CameraRequest {
    /// Keep the camera open for `viewer` (an api replica) for `lease_ms` more, at up to `fps`.
    /// Answered once frames flow (or with the reason they cannot).
    Watch {
        viewer: String,
        fps: u32,
        lease_ms: u64,
    },
    /// `viewer` has no viewers left for this printer.
    Release { viewer: String },
    /// The newest frame, sent to the reply subject as frames are (in parts when large): at once
    /// when the camera is open, else after opening it for that one frame.
    Snapshot,
    /// End every stream of the printer and close the upstream.
    Stop,
}

/// The gateway's answer to a [`CameraRequest`] (a snapshot's frame comes as a frame message;
/// this answer only when there is none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CameraReply {
    /// Frames flow on [`frames_subject`].
    Watching,
    /// Done (a release, a stop).
    Done,
    /// The camera cannot be watched now: the printer is offline, the camera unreachable,
    /// refusing the access code, or silent past the first frame's deadline.
    Unavailable { reason: String },
}

/// One frame's parts: `payload` split to fit `max_payload`, each with `(index, count)`.
pub fn frame_parts(
    payload: &[u8],
    max_payload: usize,
) -> impl Iterator<Item = (usize, usize, &[u8])> {
    // Headers travel in the same message: leave them room.
    let size = max_payload.saturating_sub(1024).max(1024);
    let count = payload.len().div_ceil(size).max(1);
    (0..count).map(move |i| {
        let end = ((i + 1) * size).min(payload.len());
        (i, count, &payload[(i * size).min(payload.len())..end])
    })
}

/// Reads `<index>/<count>`.
pub fn parse_part(value: &str) -> Option<(usize, usize)> {
    let (index, count) = value.split_once('/')?;
    let (index, count) = (index.parse().ok()?, count.parse().ok()?);
    (index < count && count <= 1024).then_some((index, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_carry_site_and_printer() {
        let site = Site::parse("north").unwrap();
        assert_eq!(
            camera_subject(&site, 7),
            "printyard.printers.north.7.camera"
        );
        assert_eq!(frames_subject(&site, 7), "printyard.camera.north.7.frames");
    }

    #[test]
    fn a_frame_splits_into_parts_that_join_back() {
        let frame: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let parts: Vec<_> = frame_parts(&frame, 4096).collect();
        assert_eq!(parts.len(), 4, "3,072 bytes a part");
        assert!(parts.iter().all(|(_, count, _)| *count == 4));
        let joined: Vec<u8> = parts
            .iter()
            .flat_map(|(_, _, p)| p.iter().copied())
            .collect();
        assert_eq!(joined, frame);
        let whole: Vec<_> = frame_parts(&frame, 1024 * 1024).collect();
        assert_eq!(whole.len(), 1);
        assert_eq!(parse_part("2/4"), Some((2, 4)));
        assert_eq!(parse_part("4/4"), None);
        assert_eq!(parse_part("x/4"), None);
    }

    #[test]
    fn requests_read_as_tagged_json() {
        let watch: CameraRequest =
            serde_json::from_str(r#"{"op":"watch","viewer":"api-1","fps":15,"lease_ms":10000}"#)
                .unwrap();
        assert_eq!(
            watch,
            CameraRequest::Watch {
                viewer: "api-1".into(),
                fps: 15,
                lease_ms: 10_000
            }
        );
        let reply = serde_json::to_value(CameraReply::Unavailable {
            reason: "offline".into(),
        })
        .unwrap();
        assert_eq!(reply["outcome"], "unavailable");
    }
}
