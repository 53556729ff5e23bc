//! A camera's bytes: the P1/A1 framed JPEG stream (16-byte headers announcing each frame's
//! length, up to a 2 GB lie), and the splitter cutting ffmpeg's MJPEG output into frames,
//! fed in chunks whose size the first byte chooses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use printyard_bambu::camera::{JpegSplitter, MAX_FRAME_BYTES, is_jpeg, read_frame};

fuzz_target!(|data: &[u8]| {
    futures::executor::block_on(async {
        let mut reader = data;
        while let Ok(frame) = read_frame(&mut reader).await {
            assert!(is_jpeg(&frame) && frame.len() <= MAX_FRAME_BYTES);
        }
    });
    let Some((size, stream)) = data.split_first() else {
        return;
    };
    let mut splitter = JpegSplitter::default();
    for chunk in stream.chunks(usize::from(*size).max(1)) {
        for frame in splitter.push(chunk) {
            assert!(frame.starts_with(&[0xFF, 0xD8]) && frame.ends_with(&[0xFF, 0xD9]));
            assert!(frame.len() >= 4 && frame.len() <= MAX_FRAME_BYTES + chunk.len());
        }
    }
});
