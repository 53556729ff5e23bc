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

/// A frame as a baseline JPEG: [`draw`]'s picture.
pub fn render(frame: u64, seed: u32, width: u16, height: u16) -> Option<Vec<u8>> {
    let pixels = draw(frame, seed, width, height);
    let mut out = Vec::with_capacity(usize::from(width) * usize::from(height) / 10);
    let encoder = jpeg_encoder::Encoder::new(&mut out, 70);
    encoder
        .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
        .ok()?;
    Some(out)
}

/// A frame's picture, RGB: a background tinted per printer and `FRAME <n>` drawn large in a
/// 5×7 pixel font, so that a person (and a test) can tell frames apart at a glance.
pub fn draw(frame: u64, seed: u32, width: u16, height: u16) -> Vec<u8> {
    let (w, h) = (usize::from(width), usize::from(height));
    let mut pixels = vec![0u8; w * h * 3];
    let tint = [
        (seed & 0x3F) as u8 + 20,
        ((seed >> 8) & 0x3F) as u8 + 20,
        ((seed >> 16) & 0x3F) as u8 + 40,
    ];
    for (i, px) in pixels.chunks_exact_mut(3).enumerate() {
        // A gentle vertical gradient, top to bottom.
        let shade = (i / w * 48 / h.max(1)) as u8;
        px.copy_from_slice(&[tint[0], tint[1].saturating_add(shade), tint[2]]);
    }
    let text = format!("FRAME {frame}");
    let cells = text.len() * 6 - 1;
    // As large as fits: numbers up to a million across at most 90 % of the width (so the size
    // holds while the count grows), a third of the height.
    let scale = (w * 9 / 10 / cells.max(12 * 6 - 1)).min(h / 3 / 7).max(1);
    let x0 = w.saturating_sub(cells * scale) / 2;
    let y0 = h.saturating_sub(7 * scale) / 2;
    for (n, c) in text.chars().enumerate() {
        let rows = glyph(c);
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) == 0 {
                    continue;
                }
                let (x, y) = (x0 + (n * 6 + col) * scale, y0 + row * scale);
                for yy in y..(y + scale).min(h) {
                    for xx in x..(x + scale).min(w) {
                        let p = (yy * w + xx) * 3;
                        pixels[p..p + 3].copy_from_slice(&[250, 250, 250]);
                    }
                }
            }
        }
    }
    pixels
}

/// A character of `FRAME 0123456789` in a 5×7 font: seven rows, five bits each (the
/// leftmost the highest). Zero has its slash, so it is not taken for a missing glyph's box.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1E, 0x01, 0x01, 0x0E, 0x01, 0x01, 0x1E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        _ => [0; 7],
    }
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

    #[test]
    fn every_digit_has_a_glyph_of_its_own_and_zero_is_no_empty_box() {
        let glyphs: Vec<[u8; 7]> = "0123456789FRAME".chars().map(glyph).collect();
        for (i, a) in glyphs.iter().enumerate() {
            assert!(a.iter().any(|row| *row != 0), "glyph {i} is blank");
            for b in &glyphs[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // A hollow rectangle is what a missing glyph looks like: zero has its slash inside.
        let zero = glyph('0');
        assert!(zero[2..5].iter().any(|row| row & 0x0E != 0));
    }

    #[test]
    fn the_frame_number_is_drawn_where_a_viewer_reads_it() {
        let (w, h) = (320usize, 180usize);
        let lit = |pixels: &[u8]| {
            pixels
                .chunks_exact(3)
                .filter(|p| p == &[250, 250, 250])
                .count()
        };
        let one = draw(1, 7, w as u16, h as u16);
        let eight = draw(8, 7, w as u16, h as u16);
        // The text is there, large: across over a third of the width, over an eighth of the
        // height, in the middle; and it differs with the number.
        let (mut left, mut right, mut top, mut bottom) = (w, 0, h, 0);
        for (i, p) in one.chunks_exact(3).enumerate() {
            if p == [250, 250, 250] {
                let (x, y) = (i % w, i / w);
                (left, right, top, bottom) = (left.min(x), right.max(x), top.min(y), bottom.max(y));
            }
        }
        assert!(right - left > w / 3, "{left}..{right} across");
        assert!(bottom - top > h / 8, "{top}..{bottom} high");
        assert!(
            top > h / 4 && bottom < h * 3 / 4,
            "in the middle: {top}..{bottom}"
        );
        assert!(lit(&eight) > lit(&one));
    }
}
