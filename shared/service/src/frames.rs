//! Camera frames on NATS: published whole, or in parts when larger than the server's max
//! payload (headers in `printyard_contracts::camera`), and put back together by the reader.

use bytes::{Bytes, BytesMut};
use printyard_contracts::camera::{
    CAMERA_END_HEADER, FRAME_AT_HEADER, FRAME_PART_HEADER, FRAME_SEQ_HEADER, frame_parts,
    parse_part,
};

/// One camera frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its number in its upstream session.
    pub seq: u64,
    /// When the gateway received it (Unix microseconds).
    pub at_us: i64,
    pub jpeg: Bytes,
}

/// Publishes `frame` on `subject`, in parts if it does not fit the server's max payload.
pub async fn publish_frame(
    client: &async_nats::Client,
    subject: async_nats::Subject,
    frame: &Frame,
) -> Result<(), async_nats::PublishError> {
    let max = client.server_info().max_payload;
    for (index, count, part) in frame_parts(&frame.jpeg, max) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(FRAME_SEQ_HEADER, frame.seq.to_string().as_str());
        headers.insert(FRAME_AT_HEADER, frame.at_us.to_string().as_str());
        if count > 1 {
            headers.insert(FRAME_PART_HEADER, format!("{index}/{count}").as_str());
        }
        client
            .publish_with_headers(subject.clone(), headers, frame.jpeg.slice_ref(part))
            .await?;
    }
    Ok(())
}

/// Tells the readers of `subject` that the camera's upstream ended, and why.
pub async fn publish_end(
    client: &async_nats::Client,
    subject: async_nats::Subject,
    reason: &str,
) -> Result<(), async_nats::PublishError> {
    let mut headers = async_nats::HeaderMap::new();
    // Header values cannot hold line breaks.
    headers.insert(
        CAMERA_END_HEADER,
        reason.replace(['\r', '\n'], " ").as_str(),
    );
    client
        .publish_with_headers(subject, headers, Bytes::new())
        .await
}

/// What a message on a frames subject (or a snapshot's reply inbox) carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A whole frame (the last of its parts, if it came in parts).
    Frame(Frame),
    /// Part of a frame: wait for the rest.
    Partial,
    /// The upstream ended.
    End(String),
    /// Not a frame message (a JSON answer, say): the payload as is.
    Other(Bytes),
}

/// Puts frames sent in parts back together; parts of an older frame are dropped when a newer
/// one starts (a slow reader sees whole frames or none, never a mix).
#[derive(Default)]
pub struct Assembler {
    seq: Option<u64>,
    parts: Vec<Option<Bytes>>,
}

impl Assembler {
    pub fn push(&mut self, message: &async_nats::Message) -> Received {
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        if let Some(reason) = header(CAMERA_END_HEADER) {
            return Received::End(reason);
        }
        let (Some(seq), Some(at_us)) = (
            header(FRAME_SEQ_HEADER).and_then(|v| v.parse::<u64>().ok()),
            header(FRAME_AT_HEADER).and_then(|v| v.parse::<i64>().ok()),
        ) else {
            return Received::Other(message.payload.clone());
        };
        let Some((index, count)) = header(FRAME_PART_HEADER)
            .as_deref()
            .map(parse_part)
            .unwrap_or(Some((0, 1)))
        else {
            return Received::Partial;
        };
        if count == 1 {
            return Received::Frame(Frame {
                seq,
                at_us,
                jpeg: message.payload.clone(),
            });
        }
        if self.seq != Some(seq) || self.parts.len() != count {
            self.seq = Some(seq);
            self.parts = vec![None; count];
        }
        self.parts[index] = Some(message.payload.clone());
        if self.parts.iter().any(Option::is_none) {
            return Received::Partial;
        }
        let mut jpeg = BytesMut::new();
        for part in self.parts.drain(..).flatten() {
            jpeg.extend_from_slice(&part);
        }
        self.seq = None;
        Received::Frame(Frame {
            seq,
            at_us,
            jpeg: jpeg.freeze(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(headers: &[(&str, &str)], payload: &[u8]) -> async_nats::Message {
        let mut map = async_nats::HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, *v);
        }
        async_nats::Message {
            subject: "s".into(),
            reply: None,
            payload: Bytes::copy_from_slice(payload),
            headers: Some(map),
            status: None,
            description: None,
            length: payload.len(),
        }
    }

    #[test]
    fn parts_join_and_a_newer_frame_drops_an_unfinished_one() {
        let mut assembler = Assembler::default();
        let part = |seq: &str, p: &str, body: &[u8]| {
            message(
                &[
                    (FRAME_SEQ_HEADER, seq),
                    (FRAME_AT_HEADER, "5"),
                    (FRAME_PART_HEADER, p),
                ],
                body,
            )
        };
        assert_eq!(assembler.push(&part("1", "0/2", b"ab")), Received::Partial);
        // Frame 1's second part was lost: frame 2 starts over.
        assert_eq!(assembler.push(&part("2", "0/2", b"cd")), Received::Partial);
        assert_eq!(
            assembler.push(&part("2", "1/2", b"ef")),
            Received::Frame(Frame {
                seq: 2,
                at_us: 5,
                jpeg: Bytes::from_static(b"cdef")
            })
        );
        let whole = message(&[(FRAME_SEQ_HEADER, "3"), (FRAME_AT_HEADER, "6")], b"xy");
        assert!(matches!(assembler.push(&whole), Received::Frame(f) if f.seq == 3));
        let end = message(&[(CAMERA_END_HEADER, "stopped")], b"");
        assert_eq!(assembler.push(&end), Received::End("stopped".into()));
        let json = message(&[], b"{}");
        assert_eq!(
            assembler.push(&json),
            Received::Other(Bytes::from_static(b"{}"))
        );
    }
}
