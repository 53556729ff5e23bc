//! An MQTT session against the simulator: reports merged and normalised, versions, commands
//! acknowledged, and a wrong access code reported as such.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use printyard_bambu::commands::Command;
use printyard_bambu::mqtt::{AccessCode, Endpoint, Incoming, Session, SessionError};
use printyard_bambu::report::{Message, ReportState};
use printyard_bambu::tls::{TrustMode, client_config, trust_anchors};
use printyard_bambu::{models, status};
use printyard_contracts::printer::PrinterState;
use printyard_printer_sim::farm::{DEMO_3MF, DEMO_PATH};
use printyard_printer_sim::{Farm, FarmConfig, Model};
use rand::Rng;

async fn farm(model: Model, speed: f64) -> Farm {
    let mut rng = rand::rng();
    Farm::start(FarmConfig {
        count: 1,
        models: vec![model],
        speed,
        tick: Duration::from_millis(100),
        first_ip: Ipv4Addr::new(127, rng.random_range(20..250), rng.random_range(0..250), 1),
        ..FarmConfig::default()
    })
    .await
    .unwrap()
}

fn session(farm: &Farm, code: &str) -> Session {
    let printer = &farm.printers[0];
    let (tls, _) = client_config(
        &printer.spec.serial,
        Arc::new(trust_anchors(&[farm.ca_pem()])),
        TrustMode::Verify { pin: None },
    )
    .unwrap();
    let endpoint = Endpoint {
        host: printer.spec.ip.to_string(),
        port: 8883,
        serial: printer.spec.serial.clone(),
        access_code: AccessCode::parse(code).unwrap(),
    };
    Session::new(&endpoint, tls, Duration::from_secs(5))
}

async fn next(session: &mut Session) -> Incoming {
    tokio::time::timeout(Duration::from_secs(10), session.next())
        .await
        .expect("in time")
        .expect("no error")
}

#[tokio::test]
async fn a_session_gets_a_full_report_and_the_product_and_follows_a_print() {
    let farm = farm(Model::A1Mini, 300.0).await;
    let code = farm.printers[0].spec.access_code.clone();
    let mut session = session(&farm, &code);
    assert_eq!(next(&mut session).await, Incoming::Connected);

    let mut state = ReportState::default();
    let mut product = None;
    while !state.has_full() || product.is_none() {
        match next(&mut session).await {
            Incoming::Message(Message::Status { full, print }) => state.apply(full, &print),
            Incoming::Message(Message::Version(info)) => {
                product = models::product_name(&info).map(str::to_owned)
            }
            _ => {}
        }
    }
    assert_eq!(
        models::from_product_name(product.as_deref().unwrap()),
        Some("A1 mini")
    );
    assert_eq!(
        status::normalize(state.fields(), Some("N1"), None).state,
        PrinterState::Idle
    );

    farm.printers[0].store(DEMO_PATH, bytes::Bytes::from_static(DEMO_3MF));
    farm.printers[0]
        .start_from_touchscreen(DEMO_PATH, 1)
        .unwrap();
    let mut seen = Vec::new();
    let mut paused_sequence = None;
    let mut pause_ack = None;
    for _ in 0..500 {
        match next(&mut session).await {
            Incoming::Message(Message::Status { full, print }) => {
                state.apply(full, &print);
                let now = status::normalize(state.fields(), Some("N1"), None).state;
                if seen.last() != Some(&now) {
                    seen.push(now);
                }
                if now == PrinterState::Printing && paused_sequence.is_none() {
                    paused_sequence = Some(session.send(&Command::Pause).unwrap());
                }
                if now == PrinterState::Paused {
                    break;
                }
            }
            Incoming::Message(Message::Ack(ack)) => {
                let sequence = ack
                    .sequence_id
                    .as_deref()
                    .and_then(|s| s.parse::<u64>().ok());
                if sequence.is_some() && sequence == paused_sequence {
                    pause_ack = Some(ack);
                }
            }
            _ => {}
        }
    }
    let pause_ack = pause_ack.expect("the pause was acknowledged, echoing its sequence_id");
    assert!(pause_ack.succeeded(), "{pause_ack:?}");
    assert_eq!(pause_ack.command.as_deref(), Some("pause"));
    assert_eq!(seen.first(), Some(&PrinterState::Preparing));
    assert!(seen.contains(&PrinterState::Printing), "{seen:?}");
    assert_eq!(seen.last(), Some(&PrinterState::Paused));
    session.close().await;
}

#[tokio::test]
async fn a_wrong_access_code_is_reported_as_not_authorised() {
    let farm = farm(Model::P1S, 1.0).await;
    let mut session = session(&farm, "00000000");
    let result = tokio::time::timeout(Duration::from_secs(10), session.next())
        .await
        .unwrap();
    assert_eq!(result, Err(SessionError::NotAuthorized));
}
