//! Reads a `multipart/x-mixed-replace` MJPEG stream as a viewer does: part by part, each an
//! `image/jpeg` with its `Content-Length`.

use bytes::{Buf, Bytes, BytesMut};

/// One part of the stream.
#[derive(Debug, Clone)]
pub struct Part {
    pub jpeg: Bytes,
    /// `X-Frame-Timestamp`: when the gateway received the frame (Unix microseconds).
    pub timestamp_us: Option<i64>,
}

pub struct MjpegReader {
    response: reqwest::Response,
    buffer: BytesMut,
    boundary: String,
    /// The current part's length and timestamp, once its headers are read.
    head: Option<(usize, Option<i64>)>,
}

impl MjpegReader {
    /// Takes a 200 response; panics if it is not an MJPEG stream.
    pub fn new(response: reqwest::Response) -> Self {
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("multipart/x-mixed-replace"),
            "{content_type}"
        );
        let boundary = content_type
            .split("boundary=")
            .nth(1)
            .expect("a boundary")
            .trim_matches('"')
            .to_owned();
        Self {
            response,
            buffer: BytesMut::new(),
            boundary,
            head: None,
        }
    }

    /// The next part, or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Part> {
        let delimiter = format!("--{}\r\n", self.boundary);
        loop {
            if let Some(part) = self.parse(&delimiter) {
                return Some(part);
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }

    /// A part, when the buffer holds a whole one (each byte is looked at once: the headers are
    /// searched for in the part's first bytes only, the body is counted, not scanned).
    fn parse(&mut self, delimiter: &str) -> Option<Part> {
        if self.head.is_none() {
            let window = &self.buffer[..self.buffer.len().min(1024)];
            let start = find(window, delimiter.as_bytes())?;
            assert_eq!(start, 0, "a part starts right after the previous one");
            let head_end = find(window, b"\r\n\r\n")?;
            let head = std::str::from_utf8(&window[delimiter.len()..head_end]).ok()?;
            let header = |name: &str| {
                head.lines().find_map(|line| {
                    let (k, v) = line.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_owned())
                })
            };
            assert_eq!(header("content-type").as_deref(), Some("image/jpeg"));
            let length: usize = header("content-length")?.parse().ok()?;
            let timestamp_us = header("x-frame-timestamp").and_then(|v| v.parse().ok());
            self.buffer.advance(head_end + 4);
            self.head = Some((length, timestamp_us));
        }
        let (length, timestamp_us) = self.head?;
        if self.buffer.len() < length + 2 {
            return None;
        }
        let jpeg = self.buffer.split_to(length).freeze();
        assert_eq!(&self.buffer[..2], b"\r\n", "each part ends with CRLF");
        self.buffer.advance(2);
        self.head = None;
        Some(Part { jpeg, timestamp_us })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
