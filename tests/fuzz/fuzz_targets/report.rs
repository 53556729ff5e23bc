//! A printer's report payloads, one after another as the gateway's connection takes them:
//! told apart, merged into the state, normalised, followed by the print lifecycle and the HMS
//! raise/clear. The input is payloads separated by 0x1E; the seeds are the real captures.
#![no_main]

use libfuzzer_sys::fuzz_target;
use printyard_bambu::report::{Message, ReportState, parse};
use printyard_bambu::{commands, lifecycle, models, status};

fuzz_target!(|data: &[u8]| {
    let mut state = ReportState::default();
    let mut life = lifecycle::Lifecycle::new();
    let mut shown = Vec::new();
    for payload in data.split(|b| *b == 0x1E) {
        match parse(payload) {
            Ok(Message::Status { full, print }) => {
                state.apply(full, &print);
                if full {
                    assert_eq!(state.fields(), &print, "a full report is the state");
                }
                let status = status::normalize(state.fields(), Some("C12"), Some("P1S"));
                assert!(status.progress <= 100);
                // What the gateway publishes must serialise.
                serde_json::to_vec(&status).expect("a status serialises");
                let _ = life.observe(&status);
                let _ = lifecycle::new_hms_errors(&shown, &status.hms);
                let _ = lifecycle::cleared_hms_errors(&shown, &status.hms);
                shown = status.hms;
            }
            Ok(Message::Version(version)) => {
                let _ = models::firmware(&version);
                let _ = models::product_name(&version).and_then(models::from_product_name);
            }
            Ok(Message::Ack(ack)) => {
                let _ = ack.succeeded();
                if let Some(reason) = &ack.reason {
                    let _ = commands::is_signature_refusal(reason);
                }
            }
            Ok(Message::Other) | Err(_) => {}
        }
    }
});
