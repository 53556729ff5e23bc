//! The bytes of an MQTT connection from a printer, as the session reads them: packets decoded
//! with the gateway's packet cap (1 MiB), each PUBLISH's payload taken as a report.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use printyard_bambu::report::parse;
use rumqttc::{Error, Packet};

/// The cap `printyard_bambu::mqtt` sets on incoming packets.
const MAX_PACKET: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut stream = BytesMut::from(data);
    loop {
        match Packet::read(&mut stream, MAX_PACKET) {
            Ok(Packet::Publish(publish)) => {
                assert!(publish.payload.len() <= MAX_PACKET);
                let _ = parse(&publish.payload);
            }
            Ok(_) => {}
            Err(Error::InsufficientBytes(_)) | Err(_) => break,
        }
    }
});
