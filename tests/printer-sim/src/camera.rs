//! The camera of A1 and P1 printers on port 6000: TLS, an 80-byte auth packet from the client
//! (silent close on a wrong code), then frames of a 16-byte header and one baseline JPEG each.
//! Every frame shows its number, so tests can tell frames apart.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::printer::Printer;

#[derive(Debug, Clone, Copy)]
pub struct CameraConfig {
    pub fps: f64,
    pub width: u16,
    pub height: u16,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            fps: 1.0,
            width: 1280,
            height: 720,
        }
    }
}

pub async fn serve(
    printer: Arc<Printer>,
    listener: TcpListener,
    tls: TlsAcceptor,
    config: CameraConfig,
) {
    crate::accept::serve_tls(printer, listener, tls, move |printer, stream| {
        stream_frames(printer, stream, config)
    })
    .await
}

async fn stream_frames(
    printer: Arc<Printer>,
    mut stream: TlsStream<TcpStream>,
    config: CameraConfig,
) {
    let mut auth = [0u8; 80];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut auth)).await;
    if !matches!(read, Ok(Ok(_))) || !authorised(&auth, &printer.spec.access_code) {
        return; // a wrong code: the printer closes without a word
    }
    printer
        .counters
        .camera_clients
        .fetch_add(1, Ordering::SeqCst);
    printer
        .counters
        .camera_connections_total
        .fetch_add(1, Ordering::SeqCst);
    let mut kicks = printer.kicks();
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / config.fps.max(0.01)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let seed = seed_of(&printer.spec.serial);
    for frame in 0u64.. {
        tokio::select! {
            _ = kicks.changed() => break,
            _ = interval.tick() => {}
        }
        if printer.faults().silent {
            continue;
        }
        // The camera is hardware of its own: drawing and encoding a frame (milliseconds at
        // 1280×720) does not hold up the printer's other connections.
        let (width, height) = (config.width, config.height);
        let drawn = tokio::task::spawn_blocking(move || render(frame, seed, width, height)).await;
        let Ok(Some(jpeg)) = drawn else {
            break;
        };
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&(jpeg.len() as u32).to_le_bytes());
        header[8..12].copy_from_slice(&1u32.to_le_bytes());
        if stream.write_all(&header).await.is_err() || stream.write_all(&jpeg).await.is_err() {
            break;
        }
    }
    printer
        .counters
        .camera_clients
        .fetch_sub(1, Ordering::SeqCst);
}

/// The tint of a printer's frames, from its serial (tests render the frames they expect).
pub fn seed_of(serial: &str) -> u32 {
    serial
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
}

/// Checks the 80-byte packet: 0x40, 0x3000, 0, 0 (u32 LE), then `bblp` and the access code,
/// each NUL-padded to 32 bytes.
pub fn authorised(packet: &[u8; 80], access_code: &str) -> bool {
    let word = |i: usize| u32::from_le_bytes(packet[i * 4..i * 4 + 4].try_into().unwrap());
    let text = |range: std::ops::Range<usize>| {
        let field = &packet[range];
        let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
        String::from_utf8_lossy(&field[..end]).into_owned()
    };
    word(0) == 0x40 && word(1) == 0x3000 && text(16..48) == "bblp" && text(48..80) == access_code
}

/// Builds the client's auth packet (used by tests and the farm's own checks).
pub fn auth_packet(access_code: &str) -> [u8; 80] {
    let mut packet = [0u8; 80];
    packet[0..4].copy_from_slice(&0x40u32.to_le_bytes());
    packet[4..8].copy_from_slice(&0x3000u32.to_le_bytes());
    packet[16..20].copy_from_slice(b"bblp");
    let code = access_code.as_bytes();
    packet[48..48 + code.len().min(32)].copy_from_slice(&code[..code.len().min(32)]);
    packet
}

/// Seven-segment patterns for 0-9 (a b c d e f g).
const SEGMENTS: [u8; 10] = [0x3F, 0x06, 0x5B, 0x4F, 0x66, 0x6D, 0x7D, 0x07, 0x7F, 0x6F];

/// A frame: a background tinted per printer, and the frame number drawn large.
pub fn render(frame: u64, seed: u32, width: u16, height: u16) -> Option<Vec<u8>> {
    let (w, h) = (width as usize, height as usize);
    let mut pixels = vec![0u8; w * h * 3];
    let tint = [
        (seed & 0x3F) as u8 + 20,
        ((seed >> 8) & 0x3F) as u8 + 20,
        ((seed >> 16) & 0x3F) as u8 + 40,
    ];
    for (i, px) in pixels.chunks_exact_mut(3).enumerate() {
        let y = (i / w) as u8;
        px.copy_from_slice(&[tint[0], tint[1].wrapping_add(y / 8), tint[2]]);
    }
    let digits = frame.to_string();
    let cell = (h / 3).max(8);
    let thick = (cell / 8).max(2);
    let mut x0 = w / 10;
    let y0 = h / 3;
    let mut rect = |x: usize, y: usize, rw: usize, rh: usize| {
        for yy in y..(y + rh).min(h) {
            for xx in x..(x + rw).min(w) {
                let p = (yy * w + xx) * 3;
                pixels[p..p + 3].copy_from_slice(&[250, 250, 250]);
            }
        }
    };
    for d in digits.bytes() {
        let seg = SEGMENTS[(d - b'0') as usize];
        let half = cell / 2;
        let width_d = half;
        if seg & 0x01 != 0 {
            rect(x0, y0, width_d, thick)
        }
        if seg & 0x02 != 0 {
            rect(x0 + width_d, y0, thick, half)
        }
        if seg & 0x04 != 0 {
            rect(x0 + width_d, y0 + half, thick, half)
        }
        if seg & 0x08 != 0 {
            rect(x0, y0 + cell, width_d + thick, thick)
        }
        if seg & 0x10 != 0 {
            rect(x0, y0 + half, thick, half)
        }
        if seg & 0x20 != 0 {
            rect(x0, y0, thick, half)
        }
        if seg & 0x40 != 0 {
            rect(x0, y0 + half, width_d, thick)
        }
        x0 += width_d + thick * 4;
    }
    let mut out = Vec::with_capacity(w * h / 10);
    let encoder = jpeg_encoder::Encoder::new(&mut out, 70);
    encoder
        .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
        .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auth_packet_round_trips_and_a_wrong_code_fails() {
        let packet = auth_packet("12345678");
        assert!(authorised(&packet, "12345678"));
        assert!(!authorised(&packet, "87654321"));
        let mut bad = packet;
        bad[0] = 0x41;
        assert!(!authorised(&bad, "12345678"));
    }

    #[test]
    fn frames_are_baseline_jpegs_that_differ() {
        let a = render(1, 7, 320, 180).unwrap();
        let b = render(2, 7, 320, 180).unwrap();
        assert_eq!(&a[..2], &[0xFF, 0xD8], "SOI");
        assert_eq!(&a[a.len() - 2..], &[0xFF, 0xD9], "EOI");
        assert!(a.windows(2).any(|w| w == [0xFF, 0xC0]), "baseline SOF0");
        assert_ne!(a, b);
    }
}
