//! The camera of X1, X1E, P2S and H2 printers on port 322: RTSP over TLS (the printer's
//! certificate), `rtsps://bblp:<access code>@<printer>:322/streaming/live/1`, Basic
//! authentication as `bblp`, one H.264 video track sent RTP-over-RTSP (interleaved on the TLS
//! connection; a client asking for UDP is refused with 461, as the printers' servers behind NAT
//! are only ever used so).
//!
//! The frames are the port-6000 camera's drawings (a per-printer tint and the frame number),
//! encoded as H.264 intra frames of PCM macroblocks (`less-avc`, pure Rust): a stream every
//! H.264 decoder reads, uncompressed where a printer's is compressed. Each frame carries its
//! SPS and PPS (as the printers' streams repeat them), so a decoder can start at any frame.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use less_avc::LessEncoder;
use less_avc::ycbcr_image::{DataPlane, Planes, YCbCrImage};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::camera::{CameraConfig, draw, seed_of};
use crate::printer::Printer;

/// The one stream a printer serves.
pub const PATH: &str = "/streaming/live/1";
/// The session timeout announced; a client silent for longer (no request, no RTCP) is dropped.
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest RTP packet sent: an Ethernet MTU's worth, as a camera on a LAN sends.
const RTP_PAYLOAD: usize = 1400;
/// A request's head (request line and headers) and body may be no larger.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;
const PAYLOAD_TYPE: u8 = 96;
/// The longest a reply or a frame may take to be written.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

pub async fn serve(
    printer: Arc<Printer>,
    listener: TcpListener,
    tls: TlsAcceptor,
    config: CameraConfig,
) {
    crate::accept::serve_tls(printer, listener, tls, move |printer, stream| {
        session(printer, stream, config)
    })
    .await
}

/// A request as read from the connection.
#[derive(Debug)]
struct Request {
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the reading half found next.
enum Incoming {
    Request(Request),
    /// An interleaved packet from the client (its RTCP receiver reports): only proof of life.
    Interleaved,
}

async fn session(printer: Arc<Printer>, stream: TlsStream<TcpStream>, config: CameraConfig) {
    let (read, mut write) = tokio::io::split(stream);
    let (incoming_tx, mut incoming) = mpsc::channel(8);
    // Reading apart from writing: a request may come while a frame is being sent.
    let reader = tokio::spawn(read_messages(BufReader::new(read), incoming_tx));
    let host = printer.spec.ip.to_string();
    let mut state = Session {
        printer: printer.clone(),
        base: format!("rtsp://{host}:{{port}}{PATH}"),
        id: format!("{:016X}", rand::random::<u64>()),
        ssrc: rand::random(),
        sequence: rand::random(),
        channel: None,
        playing: false,
        started: Instant::now(),
        width: config.width,
        height: config.height,
    };
    let interval = Duration::from_secs_f64(1.0 / config.fps.max(0.01));
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut kicks = printer.kicks();
    let mut counted = false;
    let seed = seed_of(&printer.spec.serial);
    let mut frame = 0u64;
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            message = incoming.recv() => {
                heard = tokio::time::Instant::now();
                let request = match message {
                    Some(Incoming::Request(request)) => request,
                    Some(Incoming::Interleaved) => continue,
                    // Closed, or not RTSP.
                    None => break,
                };
                let (reply, end) = state.answer(&request);
                if !sent(&mut write, reply.as_bytes()).await || end {
                    break;
                }
                if state.playing && !counted {
                    counted = true;
                    printer.counters.camera_clients.fetch_add(1, Ordering::SeqCst);
                    printer.counters.camera_connections_total.fetch_add(1, Ordering::SeqCst);
                }
            }
            _ = ticks.tick(), if state.playing => {
                if printer.faults().silent {
                    continue;
                }
                let (width, height) = (config.width, config.height);
                let encoded = tokio::task::spawn_blocking(move || encode(frame, seed, width, height)).await;
                let Ok(Some(units)) = encoded else { break };
                frame += 1;
                let packets = state.packetize(&units);
                if !sent(&mut write, &packets).await {
                    break;
                }
            }
            // Silent past the session's timeout: no request, no RTCP.
            _ = tokio::time::sleep_until(heard + SESSION_TIMEOUT) => break,
            _ = kicks.changed() => break,
        }
    }
    reader.abort();
    let _ = write.shutdown().await;
    if counted {
        printer
            .counters
            .camera_clients
            .fetch_sub(1, Ordering::SeqCst);
    }
}

/// Writes `bytes` within [`WRITE_DEADLINE`]: a client that stops reading is let go.
async fn sent<W: tokio::io::AsyncWrite + Unpin>(write: &mut W, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(WRITE_DEADLINE, write.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// Reads requests and interleaved packets into `tx` until the connection ends or sends what
/// is not RTSP.
async fn read_messages<R: tokio::io::AsyncRead + Unpin>(
    mut reader: BufReader<R>,
    tx: mpsc::Sender<Incoming>,
) {
    loop {
        let first = match reader.fill_buf().await {
            Ok([]) | Err(_) => return,
            Ok(buffer) => buffer[0],
        };
        let message = if first == b'$' {
            let mut header = [0u8; 4];
            if reader.read_exact(&mut header).await.is_err() {
                return;
            }
            let length = u16::from_be_bytes([header[2], header[3]]) as u64;
            let mut skipped = (&mut reader).take(length);
            if tokio::io::copy(&mut skipped, &mut tokio::io::sink())
                .await
                .ok()
                != Some(length)
            {
                return;
            }
            Incoming::Interleaved
        } else {
            match read_request(&mut reader).await {
                Some(request) => Incoming::Request(request),
                None => return,
            }
        };
        if tx.send(message).await.is_err() {
            return;
        }
    }
}

/// One request: its head within [`MAX_HEAD`], a body (skipped) within [`MAX_BODY`].
async fn read_request<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> Option<Request> {
    let mut head = Vec::new();
    let mut limited = reader.take(MAX_HEAD as u64);
    loop {
        let before = head.len();
        if limited.read_until(b'\n', &mut head).await.ok()? == 0 {
            return None;
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let text = std::str::from_utf8(&head).ok()?;
    let mut lines = text.lines();
    let mut words = lines.next()?.split_whitespace();
    let (method, uri, version) = (words.next()?, words.next()?, words.next()?);
    if !version.starts_with("RTSP/1.") {
        return None;
    }
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let request = Request {
        method: method.to_owned(),
        uri: uri.to_owned(),
        headers,
    };
    let body: u64 = request
        .header("content-length")
        .map(|v| v.parse().ok())
        .unwrap_or(Some(0))?;
    if body > MAX_BODY as u64 {
        return None;
    }
    let mut skipped = reader.take(body);
    tokio::io::copy(&mut skipped, &mut tokio::io::sink())
        .await
        .ok()?;
    Some(request)
}

/// One client's RTSP session.
struct Session {
    printer: Arc<Printer>,
    /// The stream's URL, with `{port}` for the port the client named.
    base: String,
    id: String,
    ssrc: u32,
    sequence: u16,
    /// The interleaved channel the video goes on, once set up.
    channel: Option<u8>,
    playing: bool,
    started: Instant,
    /// The frames' size.
    width: u16,
    height: u16,
}

impl Session {
    /// The reply to `request`, and whether the connection ends after it.
    fn answer(&mut self, request: &Request) -> (String, bool) {
        let cseq = request.header("cseq").unwrap_or("0").to_owned();
        let reply = |status: &str, headers: &[(&str, String)], body: &str| {
            let mut text = format!("RTSP/1.0 {status}\r\nCSeq: {cseq}\r\nServer: printer-sim\r\n");
            for (name, value) in headers {
                text.push_str(&format!("{name}: {value}\r\n"));
            }
            if !body.is_empty() {
                text.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            text.push_str("\r\n");
            text.push_str(body);
            text
        };
        if request.method == "OPTIONS" {
            let public = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER";
            return (reply("200 OK", &[("Public", public.into())], ""), false);
        }
        if !self.authorised(request) {
            let challenge = ("WWW-Authenticate", "Basic realm=\"printer\"".to_owned());
            return (reply("401 Unauthorized", &[challenge], ""), false);
        }
        let Some(port) = stream_port(&request.uri) else {
            return (reply("404 Not Found", &[], ""), false);
        };
        let base = self.base.replace("{port}", &port.to_string());
        let session = (
            "Session",
            format!("{};timeout={}", self.id, SESSION_TIMEOUT.as_secs()),
        );
        match request.method.as_str() {
            "DESCRIBE" => {
                let sdp = self.sdp();
                let headers = [
                    ("Content-Base", format!("{base}/")),
                    ("Content-Type", "application/sdp".to_owned()),
                ];
                (reply("200 OK", &headers, &sdp), false)
            }
            "SETUP" => {
                let transport = request.header("transport").unwrap_or("");
                let Some(channel) = interleaved_channel(transport) else {
                    return (reply("461 Unsupported Transport", &[], ""), false);
                };
                self.channel = Some(channel);
                let transport = format!(
                    "RTP/AVP/TCP;unicast;interleaved={channel}-{};ssrc={:08X}",
                    channel.wrapping_add(1),
                    self.ssrc
                );
                (
                    reply("200 OK", &[("Transport", transport), session], ""),
                    false,
                )
            }
            "PLAY" | "PAUSE" | "GET_PARAMETER" | "SET_PARAMETER" | "TEARDOWN"
                if self.channel.is_none()
                    || request.header("session").map(session_id) != Some(self.id.as_str()) =>
            {
                (reply("454 Session Not Found", &[], ""), false)
            }
            "PLAY" => {
                self.playing = true;
                let info = format!(
                    "url={base}/trackID=1;seq={};rtptime={}",
                    self.sequence,
                    self.timestamp()
                );
                let headers = [
                    ("Range", "npt=0.000-".to_owned()),
                    session,
                    ("RTP-Info", info),
                ];
                (reply("200 OK", &headers, ""), false)
            }
            "PAUSE" => {
                self.playing = false;
                (reply("200 OK", &[session], ""), false)
            }
            "GET_PARAMETER" | "SET_PARAMETER" => (reply("200 OK", &[session], ""), false),
            "TEARDOWN" => (reply("200 OK", &[session], ""), true),
            _ => (reply("501 Not Implemented", &[], ""), false),
        }
    }

    fn authorised(&self, request: &Request) -> bool {
        let Some(encoded) = request
            .header("authorization")
            .and_then(|v| v.strip_prefix("Basic "))
        else {
            return false;
        };
        let expected = format!("bblp:{}", self.printer.spec.access_code);
        BASE64
            .decode(encoded.trim())
            .is_ok_and(|decoded| decoded == expected.as_bytes())
    }

    /// The session description: one H.264 track, its parameter sets inline.
    fn sdp(&self) -> String {
        let (sps, pps) = parameter_sets(self.width, self.height);
        let profile = sps
            .get(1..4)
            .map(|b| format!("{:02X}{:02X}{:02X}", b[0], b[1], b[2]))
            .unwrap_or_default();
        let ip = self.printer.spec.ip;
        format!(
            "v=0\r\no=- {id} 1 IN IP4 {ip}\r\ns=Stream\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
             a=control:*\r\na=range:npt=0-\r\nm=video 0 RTP/AVP {pt}\r\n\
             a=rtpmap:{pt} H264/90000\r\n\
             a=fmtp:{pt} packetization-mode=1;profile-level-id={profile};sprop-parameter-sets={sps},{pps}\r\n\
             a=control:trackID=1\r\n",
            id = u64::from_str_radix(&self.id, 16).unwrap_or(0),
            pt = PAYLOAD_TYPE,
            sps = BASE64.encode(&sps),
            pps = BASE64.encode(&pps),
        )
    }

    /// The 90 kHz RTP clock now.
    fn timestamp(&self) -> u32 {
        (self.started.elapsed().as_micros() * 9 / 100) as u32
    }

    /// A frame's NAL units as interleaved RTP packets (RFC 6184: a unit that fits alone, a
    /// larger one in FU-A fragments), the marker on the frame's last.
    fn packetize(&mut self, units: &[Vec<u8>]) -> Vec<u8> {
        let channel = self.channel.unwrap_or(0);
        let timestamp = self.timestamp();
        let total: usize = units.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(total + total / RTP_PAYLOAD * 20 + 64);
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        for unit in units.iter().filter(|u| !u.is_empty()) {
            if unit.len() <= RTP_PAYLOAD {
                payloads.push(unit.clone());
                continue;
            }
            let (header, body) = (unit[0], &unit[1..]);
            let chunks: Vec<&[u8]> = body.chunks(RTP_PAYLOAD - 2).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                let mut fu = Vec::with_capacity(chunk.len() + 2);
                fu.push((header & 0xE0) | 28);
                let start = if i == 0 { 0x80 } else { 0 };
                let end = if i + 1 == chunks.len() { 0x40 } else { 0 };
                fu.push(start | end | (header & 0x1F));
                fu.extend_from_slice(chunk);
                payloads.push(fu);
            }
        }
        let last = payloads.len().saturating_sub(1);
        for (i, payload) in payloads.iter().enumerate() {
            let length = (payload.len() + 12) as u16;
            out.extend_from_slice(&[b'$', channel]);
            out.extend_from_slice(&length.to_be_bytes());
            out.push(0x80);
            out.push(PAYLOAD_TYPE | if i == last { 0x80 } else { 0 });
            out.extend_from_slice(&self.sequence.to_be_bytes());
            out.extend_from_slice(&timestamp.to_be_bytes());
            out.extend_from_slice(&self.ssrc.to_be_bytes());
            out.extend_from_slice(payload);
            self.sequence = self.sequence.wrapping_add(1);
        }
        out
    }
}

/// The port of a request for the printer's stream (`rtsp://host:port/streaming/live/1`, the
/// track's URL under it, or `*`), or `None` for another path.
fn stream_port(uri: &str) -> Option<u16> {
    let rest = uri
        .strip_prefix("rtsp://")
        .or_else(|| uri.strip_prefix("rtsps://"))?;
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}")))?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = match host.rsplit_once(':') {
        Some((_, port)) => port.parse().ok()?,
        None => crate::farm::Ports::default().rtsps,
    };
    let path = path.trim_end_matches('/');
    (path == PATH || path.strip_prefix(PATH).is_some_and(|t| t.starts_with('/'))).then_some(port)
}

/// The first channel of `interleaved=a-b` in a TCP transport, or `None` for another transport.
fn interleaved_channel(transport: &str) -> Option<u8> {
    let choice = transport
        .split(',')
        .find(|t| t.trim_start().starts_with("RTP/AVP/TCP"))?;
    let channels = choice
        .split(';')
        .find_map(|p| p.trim().strip_prefix("interleaved="));
    match channels {
        Some(range) => range.split('-').next()?.trim().parse().ok(),
        None => Some(0),
    }
}

/// The session id of a `Session` header (`id;timeout=…`).
fn session_id(value: &str) -> &str {
    value.split(';').next().unwrap_or("").trim()
}

/// The stream's SPS and PPS (NAL units without start codes), as every frame of its size has.
fn parameter_sets(width: u16, height: u16) -> (Vec<u8>, Vec<u8>) {
    encode(0, 0, width, height)
        .map(|mut units| (std::mem::take(&mut units[0]), std::mem::take(&mut units[1])))
        .unwrap_or_default()
}

/// Frame `frame` as NAL units: SPS, PPS, and one IDR slice.
pub fn encode(frame: u64, seed: u32, width: u16, height: u16) -> Option<Vec<Vec<u8>>> {
    encode_units(&draw(frame, seed, width, height), width, height)
}

fn encode_units(rgb: &[u8], width: u16, height: u16) -> Option<Vec<Vec<u8>>> {
    let (w, h) = (usize::from(width & !1), usize::from(height & !1));
    if w == 0 || h == 0 {
        return None;
    }
    // Planes padded to whole macroblocks, as the encoder reads them.
    let (luma_w, luma_h) = (w.div_ceil(16) * 16, h.div_ceil(16) * 16);
    let (chroma_w, chroma_h) = (luma_w / 2, luma_h / 2);
    let mut y = vec![16u8; luma_w * luma_h];
    let mut cb = vec![128u8; chroma_w * chroma_h];
    let mut cr = vec![128u8; chroma_w * chroma_h];
    let stride = usize::from(width);
    for row in 0..h {
        for col in 0..w {
            let p = (row * stride + col) * 3;
            let (r, g, b) = (
                f32::from(rgb[p]),
                f32::from(rgb[p + 1]),
                f32::from(rgb[p + 2]),
            );
            // BT.601, studio range.
            y[row * luma_w + col] = (16.0 + 0.257 * r + 0.504 * g + 0.098 * b) as u8;
            if row % 2 == 0 && col % 2 == 0 {
                let c = (row / 2) * chroma_w + col / 2;
                cb[c] = (128.0 - 0.148 * r - 0.291 * g + 0.439 * b) as u8;
                cr[c] = (128.0 + 0.439 * r - 0.368 * g - 0.071 * b) as u8;
            }
        }
    }
    fn plane(data: &[u8], stride: usize) -> DataPlane<'_> {
        DataPlane {
            data,
            stride,
            bit_depth: less_avc::BitDepth::Depth8,
        }
    }
    let image = YCbCrImage {
        planes: Planes::YCbCr((
            plane(&y, luma_w),
            plane(&cb, chroma_w),
            plane(&cr, chroma_w),
        )),
        width: w as u32,
        height: h as u32,
    };
    let (units, _) = LessEncoder::new(&image).ok()?;
    Some(units.into_iter().map(|u| u.to_nal_unit()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_the_stream_and_its_track() {
        assert_eq!(
            stream_port("rtsp://127.0.1.1:322/streaming/live/1"),
            Some(322)
        );
        assert_eq!(
            stream_port("rtsp://127.0.1.1:4000/streaming/live/1/"),
            Some(4000)
        );
        assert_eq!(
            stream_port("rtsp://bblp@127.0.1.1:4000/streaming/live/1/trackID=1"),
            Some(4000)
        );
        assert_eq!(stream_port("rtsp://127.0.1.1/streaming/live/1"), Some(322));
        assert_eq!(stream_port("rtsp://127.0.1.1:322/streaming/live/12"), None);
        assert_eq!(stream_port("rtsp://127.0.1.1:322/other"), None);
        assert_eq!(stream_port("*"), None);
    }

    #[test]
    fn only_interleaved_transports_are_taken() {
        assert_eq!(
            interleaved_channel("RTP/AVP/TCP;unicast;interleaved=0-1"),
            Some(0)
        );
        assert_eq!(
            interleaved_channel("RTP/AVP/TCP;unicast;interleaved=4-5"),
            Some(4)
        );
        assert_eq!(
            interleaved_channel("RTP/AVP;unicast;client_port=5000-5001,RTP/AVP/TCP;unicast"),
            Some(0)
        );
        assert_eq!(
            interleaved_channel("RTP/AVP;unicast;client_port=5000-5001"),
            None
        );
    }

    #[test]
    fn a_frame_is_an_sps_a_pps_and_an_idr_slice_cut_into_fu_a_packets() {
        let units = encode(3, 7, 320, 180).expect("encodes");
        let types: Vec<u8> = units.iter().map(|u| u[0] & 0x1F).collect();
        assert_eq!(types, [7, 8, 5], "SPS, PPS, IDR slice");
        let mut session = Session {
            printer: Arc::new(Printer::new(
                crate::printer::PrinterSpec {
                    name: "x".into(),
                    serial: "00M00A000000001".into(),
                    access_code: "12345678".into(),
                    model: crate::Model::X1C,
                    ip: std::net::Ipv4Addr::LOCALHOST,
                },
                1.0,
            )),
            base: String::new(),
            id: "1".into(),
            ssrc: 9,
            sequence: u16::MAX,
            channel: Some(0),
            playing: true,
            started: Instant::now(),
            width: 320,
            height: 180,
        };
        let bytes = session.packetize(&units);
        // Walk the interleaved packets: every one within the MTU, sequence numbers consecutive
        // (wrapping), the marker only on the last, and the FU-A fragments rebuild the slice.
        let (mut at, mut sequences, mut markers, mut slice) =
            (0, Vec::new(), Vec::new(), Vec::new());
        while at < bytes.len() {
            assert_eq!(bytes[at], b'$');
            let length = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
            assert!(length <= RTP_PAYLOAD + 12);
            let packet = &bytes[at + 4..at + 4 + length];
            sequences.push(u16::from_be_bytes([packet[2], packet[3]]));
            markers.push(packet[1] & 0x80 != 0);
            let payload = &packet[12..];
            if payload[0] & 0x1F == 28 {
                if payload[1] & 0x80 != 0 {
                    slice.push((payload[0] & 0xE0) | (payload[1] & 0x1F));
                }
                slice.extend_from_slice(&payload[2..]);
            }
            at += 4 + length;
        }
        assert_eq!(slice, units[2]);
        assert_eq!(sequences[0], u16::MAX);
        assert!(sequences.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
        assert_eq!(markers.iter().filter(|m| **m).count(), 1);
        assert!(markers[markers.len() - 1]);
    }
}
