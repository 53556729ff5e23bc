//! The printer TLS policy against the simulator's real TLS endpoints.

use std::net::Ipv4Addr;
use std::sync::Arc;

use printyard_bambu::tls::{Acceptance, BAMBU_CA_BUNDLE, TrustMode, client_config, trust_anchors};
use printyard_printer_sim::{Farm, FarmConfig, Model};
use rand::Rng;
use rustls::pki_types::ServerName;

async fn farm() -> Farm {
    let mut rng = rand::rng();
    Farm::start(FarmConfig {
        count: 1,
        models: vec![Model::P1S],
        first_ip: Ipv4Addr::new(127, rng.random_range(20..250), rng.random_range(0..250), 1),
        ..FarmConfig::default()
    })
    .await
    .unwrap()
}

/// A TLS handshake with the printer's MQTT port under `mode`; how the certificate was judged.
async fn handshake(
    farm: &Farm,
    serial: &str,
    extra_ca: Option<&str>,
    mode: TrustMode,
) -> (bool, Option<Acceptance>) {
    let printer = &farm.printers[0];
    let mut pems = vec![BAMBU_CA_BUNDLE];
    pems.extend(extra_ca);
    let (config, verifier) = client_config(serial, Arc::new(trust_anchors(&pems)), mode).unwrap();
    let tcp = tokio::net::TcpStream::connect((printer.spec.ip, 8883))
        .await
        .unwrap();
    let name = ServerName::IpAddress(std::net::IpAddr::V4(printer.spec.ip).into());
    let connected = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .is_ok();
    (connected, verifier.outcome())
}

#[tokio::test]
async fn a_certificate_from_a_trusted_ca_with_cn_equal_to_the_serial_is_accepted() {
    let farm = farm().await;
    let serial = farm.printers[0].spec.serial.clone();
    let (ok, outcome) = handshake(
        &farm,
        &serial,
        Some(farm.ca_pem()),
        TrustMode::Verify { pin: None },
    )
    .await;
    assert!(ok);
    assert_eq!(outcome, Some(Acceptance::ChainedToCa));
}

#[tokio::test]
async fn an_unknown_ca_is_trusted_on_first_use_then_held_to_its_pin() {
    let farm = farm().await;
    let serial = farm.printers[0].spec.serial.clone();

    let (ok, outcome) = handshake(&farm, &serial, None, TrustMode::Verify { pin: None }).await;
    assert!(ok);
    let Some(Acceptance::FirstUse(pin)) = outcome else {
        panic!("{outcome:?}")
    };

    let (ok, outcome) = handshake(&farm, &serial, None, TrustMode::Verify { pin: Some(pin) }).await;
    assert!(ok);
    assert_eq!(outcome, Some(Acceptance::Pinned));

    let (ok, outcome) = handshake(
        &farm,
        &serial,
        None,
        TrustMode::Verify { pin: Some([7; 32]) },
    )
    .await;
    assert!(!ok, "a changed certificate is refused");
    let Some(Acceptance::Refused(reason)) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        reason.contains("changed") && reason.contains(&serial),
        "{reason}"
    );
}

#[tokio::test]
async fn a_trusted_ca_certificate_for_another_serial_is_not_taken_as_this_printer() {
    let farm = farm().await;
    let (ok, outcome) = handshake(
        &farm,
        "01P999999999999",
        Some(farm.ca_pem()),
        TrustMode::Verify { pin: Some([1; 32]) },
    )
    .await;
    assert!(!ok);
    assert!(
        matches!(outcome, Some(Acceptance::Refused(_))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn insecure_accepts_anything_when_chosen() {
    let farm = farm().await;
    let (ok, outcome) = handshake(&farm, "whatever", None, TrustMode::Insecure).await;
    assert!(ok);
    assert_eq!(outcome, Some(Acceptance::Insecure));
}
