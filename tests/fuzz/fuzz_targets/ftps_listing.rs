//! A printer's FTPS directory listing (`LIST`, Unix format) and the names a report gives,
//! as the gateway uses them to find a print's 3MF. Input: the job name, a NUL, the file
//! name, a NUL, then the listing's lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use printyard_bambu::ftps::{candidates, newest_listed};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let job = parts.next().unwrap_or_default();
    let file = parts.next().unwrap_or_default();
    let listing = parts.next().unwrap_or_default();
    for path in candidates(Some(job), Some(file)) {
        // A candidate becomes an FTP command line: it must not be able to end it.
        assert!(!path.chars().any(char::is_control), "{path:?}");
    }
    if let Some(found) = newest_listed("/cache", listing.lines(), job) {
        assert!(found.path.starts_with("/cache/"));
        assert!(found.path.to_lowercase().ends_with(".3mf"));
    }
});
