//! A 3MF as it arrives from a printer or an upload: the central directory checked against the
//! caps, the slice info, model title and plate thumbnail read. The seeds are the fixtures.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use printyard_bambu::threemf::{Limits, inspect};

fuzz_target!(|data: &[u8]| {
    // Small caps, so that the fuzzer reaches them with small inputs.
    let limits = Limits {
        max_entries: 64,
        max_entry_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
        max_ratio: 200,
        max_metadata_bytes: 256 * 1024,
    };
    let wanted = data.first().map(|b| u32::from(*b % 4));
    if let Ok((file, thumbnail)) = inspect(Cursor::new(data), &limits, wanted) {
        assert!(
            !file.plates.is_empty(),
            "a printable 3MF has a sliced plate"
        );
        if let Some(png) = thumbnail {
            assert!(png.len() as u64 <= limits.max_metadata_bytes);
        }
        let _ = file.printed_plate(wanted);
    }
});
