//! Printers' cameras. A1 and P1 serve JPEG frames on port 6000: TLS (the printer's own trust
//! policy), an 80-byte login from the client, no answer (a wrong access code is a silent
//! close), then frames of a 16-byte header (payload length, `0`, `1`, `0` as u32 LE) and one
//! baseline JPEG each. X1, X1E, P2S and H2 serve H.264 over RTSPS on port 322: the gateway has
//! ffmpeg turn that into JPEG frames ([`JpegSplitter`] cuts its output into frames).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::mqtt::AccessCode;

/// The JPEG camera's port (A1, P1).
pub const JPEG_PORT: u16 = 6000;
/// The RTSPS camera's port (X1, X1E, P2S, H2).
pub const RTSPS_PORT: u16 = 322;
/// The largest frame accepted (real frames are 1280×720 baseline JPEGs of 50–250 KB).
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// How a model's camera is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraKind {
    /// JPEG frames on port 6000.
    Jpeg,
    /// H.264 over RTSPS on port 322.
    Rtsps,
}

/// The camera of a model (its marketing name); an unknown model is tried as RTSPS, the
/// protocol of every model since the P1 series.
pub fn kind_of(model: Option<&str>) -> CameraKind {
    match model {
        Some("P1P" | "P1S" | "A1" | "A1 mini") => CameraKind::Jpeg,
        _ => CameraKind::Rtsps,
    }
}

/// The RTSPS address of a printer's camera, with its credentials (a secret: never log it).
pub fn rtsps_url(host: &str, port: u16, code: &AccessCode) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    format!(
        "rtsps://bblp:{}@{host}:{port}/streaming/live/1",
        code.expose()
    )
}

#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("the camera is unreachable: {0}")]
    Connect(String),
    #[error("the camera did not answer within {0:?}")]
    Timeout(Duration),
    #[error(
        "the camera closed the connection before its first frame (the printer does so when the access code is wrong)"
    )]
    ClosedBeforeFrame,
    #[error("the camera closed the connection")]
    Closed,
    #[error("the camera sent something that is not a frame: {0}")]
    Malformed(String),
}

/// The client's login: 0x40, 0x3000, 0, 0 (u32 LE), then `bblp` and the access code, each
/// NUL-padded to 32 bytes.
pub fn login_packet(code: &AccessCode) -> [u8; 80] {
    let mut packet = [0u8; 80];
    packet[0..4].copy_from_slice(&0x40u32.to_le_bytes());
    packet[4..8].copy_from_slice(&0x3000u32.to_le_bytes());
    packet[16..20].copy_from_slice(b"bblp");
    let code = code.expose().as_bytes();
    let len = code.len().min(32);
    packet[48..48 + len].copy_from_slice(&code[..len]);
    packet
}

/// A TLS connection to a printer's camera port (the printer's trust policy is in `tls`).
/// Without a deadline of its own: callers bound it.
pub async fn connect_tls(
    host: &str,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>, CameraError> {
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| CameraError::Connect(e.to_string()))?;
    tcp.set_nodelay(true).ok();
    // The name only feeds SNI: the verifier checks the certificate against the serial.
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| CameraError::Connect(format!("bad host name: {e}")))?;
    TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| CameraError::Connect(format!("TLS: {e}")))
}

/// A JPEG camera's frames, one at a time.
pub struct JpegCamera {
    stream: TlsStream<TcpStream>,
    frames: u64,
}

impl JpegCamera {
    /// Connects and logs in, within `deadline`.
    pub async fn connect(
        host: &str,
        port: u16,
        code: &AccessCode,
        tls: Arc<rustls::ClientConfig>,
        deadline: Duration,
    ) -> Result<Self, CameraError> {
        let attempt = async {
            let mut stream = connect_tls(host, port, tls).await?;
            stream
                .write_all(&login_packet(code))
                .await
                .map_err(|e| CameraError::Connect(e.to_string()))?;
            stream
                .flush()
                .await
                .map_err(|e| CameraError::Connect(e.to_string()))?;
            Ok(Self { stream, frames: 0 })
        };
        tokio::time::timeout(deadline, attempt)
            .await
            .map_err(|_| CameraError::Timeout(deadline))?
    }

    /// The next frame, waiting at most `deadline` for it.
    pub async fn next_frame(&mut self, deadline: Duration) -> Result<Bytes, CameraError> {
        let first = self.frames == 0;
        let frame = tokio::time::timeout(deadline, read_frame(&mut self.stream))
            .await
            .map_err(|_| CameraError::Timeout(deadline))?
            .map_err(|err| match err {
                CameraError::Closed if first => CameraError::ClosedBeforeFrame,
                other => other,
            })?;
        self.frames += 1;
        Ok(frame)
    }
}

/// Reads one framed JPEG: the 16-byte header, then its payload.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Bytes, CameraError> {
    let mut header = [0u8; 16];
    if let Err(err) = reader.read_exact(&mut header).await {
        return Err(match err.kind() {
            std::io::ErrorKind::UnexpectedEof => CameraError::Closed,
            _ => CameraError::Connect(err.to_string()),
        });
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if !(4..=MAX_FRAME_BYTES).contains(&len) {
        return Err(CameraError::Malformed(format!("a frame of {len} bytes")));
    }
    let mut frame = BytesMut::zeroed(len);
    reader
        .read_exact(&mut frame)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => CameraError::Closed,
            _ => CameraError::Connect(e.to_string()),
        })?;
    if !is_jpeg(&frame) {
        return Err(CameraError::Malformed("not a JPEG".into()));
    }
    Ok(frame.freeze())
}

/// Starts with SOI and ends with EOI.
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.len() >= 4 && bytes.starts_with(&[0xFF, 0xD8]) && bytes.ends_with(&[0xFF, 0xD9])
}

/// Cuts a stream of concatenated JPEGs (ffmpeg's `-f mjpeg` output) into frames: each runs
/// from an SOI to the next EOI (entropy-coded data never holds `FF D9`: a stuffed `FF` is
/// followed by `00`). Bytes before an SOI are dropped; a frame past [`MAX_FRAME_BYTES`] is cut
/// off and skipped.
#[derive(Default)]
pub struct JpegSplitter {
    buffer: BytesMut,
    /// Where the search for EOI resumes (everything before was searched).
    scanned: usize,
}

impl JpegSplitter {
    /// Takes `chunk`, and returns the frames it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        self.buffer.extend_from_slice(chunk);
        let mut frames = Vec::new();
        loop {
            // Align on an SOI.
            match self.buffer.windows(2).position(|w| w == [0xFF, 0xD8]) {
                Some(0) => {}
                Some(at) => {
                    let _ = self.buffer.split_to(at);
                    self.scanned = 0;
                }
                None => {
                    // Keep a trailing FF: it may be half an SOI.
                    let keep = usize::from(self.buffer.last() == Some(&0xFF));
                    let drop = self.buffer.len() - keep;
                    let _ = self.buffer.split_to(drop);
                    self.scanned = 0;
                    return frames;
                }
            }
            let from = self.scanned.max(2);
            match self.buffer[from..]
                .windows(2)
                .position(|w| w == [0xFF, 0xD9])
            {
                Some(at) => {
                    let end = from + at + 2;
                    frames.push(self.buffer.split_to(end).freeze());
                    self.scanned = 0;
                }
                None => {
                    if self.buffer.len() > MAX_FRAME_BYTES {
                        // Not a frame we keep: skip past this SOI and look again.
                        let _ = self.buffer.split_to(2);
                        self.scanned = 0;
                        continue;
                    }
                    self.scanned = self.buffer.len().saturating_sub(1).max(2);
                    return frames;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(body: &[u8]) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend_from_slice(body);
        j.extend_from_slice(&[0xFF, 0xD9]);
        j
    }

    #[test]
    fn models_have_their_camera() {
        assert_eq!(kind_of(Some("P1S")), CameraKind::Jpeg);
        assert_eq!(kind_of(Some("A1 mini")), CameraKind::Jpeg);
        assert_eq!(kind_of(Some("X1 Carbon")), CameraKind::Rtsps);
        assert_eq!(kind_of(Some("H2D")), CameraKind::Rtsps);
        assert_eq!(kind_of(None), CameraKind::Rtsps);
    }

    #[test]
    fn the_login_packet_has_the_documented_layout() {
        let code = AccessCode::parse("12345678").unwrap();
        let p = login_packet(&code);
        assert_eq!(&p[0..4], &0x40u32.to_le_bytes());
        assert_eq!(&p[4..8], &0x3000u32.to_le_bytes());
        assert_eq!(&p[8..16], &[0; 8]);
        assert_eq!(&p[16..20], b"bblp");
        assert_eq!(&p[20..48], &[0; 28]);
        assert_eq!(&p[48..56], b"12345678");
        assert_eq!(&p[56..80], &[0; 24]);
    }

    #[test]
    fn an_ipv6_host_is_bracketed_in_the_url() {
        let code = AccessCode::parse("12345678").unwrap();
        assert_eq!(
            rtsps_url("fd00::2", 322, &code),
            "rtsps://bblp:12345678@[fd00::2]:322/streaming/live/1"
        );
        assert_eq!(
            rtsps_url("10.0.0.5", 322, &code),
            "rtsps://bblp:12345678@10.0.0.5:322/streaming/live/1"
        );
    }

    #[tokio::test]
    async fn framed_jpegs_are_read_and_bad_lengths_refused() {
        let frame = jpeg(b"abc");
        let mut wire = Vec::new();
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        header[8..12].copy_from_slice(&1u32.to_le_bytes());
        wire.extend_from_slice(&header);
        wire.extend_from_slice(&frame);
        let mut reader = &wire[..];
        assert_eq!(read_frame(&mut reader).await.unwrap(), frame);
        assert!(matches!(
            read_frame(&mut reader).await,
            Err(CameraError::Closed)
        ));
        let mut huge = [0u8; 16];
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            read_frame(&mut &huge[..]).await,
            Err(CameraError::Malformed(_))
        ));
        let mut not_jpeg = [0u8; 16 + 8];
        not_jpeg[0..4].copy_from_slice(&8u32.to_le_bytes());
        assert!(matches!(
            read_frame(&mut &not_jpeg[..]).await,
            Err(CameraError::Malformed(_))
        ));
    }

    #[test]
    fn the_splitter_cuts_frames_across_any_chunking() {
        let a = jpeg(&[1, 2, 0xFF, 0x00, 3]);
        let b = jpeg(&[4, 5, 6]);
        let mut stream = vec![9, 9];
        stream.extend_from_slice(&a);
        stream.extend_from_slice(&b);
        for size in 1..stream.len() {
            let mut splitter = JpegSplitter::default();
            let mut frames = Vec::new();
            for chunk in stream.chunks(size) {
                frames.extend(splitter.push(chunk));
            }
            assert_eq!(
                frames,
                vec![Bytes::from(a.clone()), Bytes::from(b.clone())],
                "{size}"
            );
        }
    }
}
