//! Peers that lie, over real TLS sockets: an MQTT server pushing a report of tens of megabytes
//! or nested thousands deep, and a camera announcing a 2 GB frame. Each is cut off with a
//! clear error after a bounded read (docs/operations.md, "Limits"); nothing panics.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use printyard_bambu::camera::{CameraError, MAX_FRAME_BYTES, read_frame};
use printyard_bambu::mqtt::{AccessCode, Endpoint, Incoming, Session, SessionError};
use printyard_bambu::report::ParseError;
use printyard_bambu::tls::{TrustMode, client_config, trust_anchors};
use printyard_printer_sim::certs::{Ca, server_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const SERIAL: &str = "01S00A000000001";

/// A TLS listener with a certificate the client trusts (the simulator's CA, `CN = SERIAL`).
async fn tls_listener() -> (TcpListener, TlsAcceptor, Arc<rustls::ClientConfig>) {
    let ca = Ca::generate().unwrap();
    let identity = ca.issue(SERIAL, IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
    let acceptor = TlsAcceptor::from(server_config(&identity).unwrap());
    let (tls, _) = client_config(
        SERIAL,
        Arc::new(trust_anchors(&[ca.pem()])),
        TrustMode::Verify { pin: None },
    )
    .unwrap();
    (
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        acceptor,
        tls,
    )
}

fn remaining_length(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        out.push(if n > 0 { byte | 0x80 } else { byte });
        if n == 0 {
            return out;
        }
    }
}

/// An MQTT server that accepts the client, then publishes a report of `payload_len` bytes
/// whose bytes `fill` makes, written until the client hangs up; how many bytes went out.
async fn hostile_broker(
    payload_len: usize,
    fill: fn(usize) -> Vec<u8>,
) -> (Session, Arc<AtomicU64>) {
    let (listener, acceptor, tls) = tls_listener().await;
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let Ok(mut stream) = acceptor.accept(socket).await else {
            return;
        };
        let mut connect = [0u8; 1024];
        let _ = stream.read(&mut connect).await; // CONNECT (and maybe SUBSCRIBE)
        let _ = stream.write_all(&[0x20, 0x02, 0x00, 0x00]).await; // CONNACK
        let topic = format!("device/{SERIAL}/report");
        let mut head = vec![0x30];
        head.extend(remaining_length(2 + topic.len() + payload_len));
        head.extend((topic.len() as u16).to_be_bytes());
        head.extend(topic.as_bytes());
        if stream.write_all(&head).await.is_err() {
            return;
        }
        let payload = fill(payload_len);
        for block in payload.chunks(64 * 1024) {
            if stream.write_all(block).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            counter.fetch_add(block.len() as u64, Ordering::Relaxed);
        }
        // Keep the connection while the client reads.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port,
        serial: SERIAL.into(),
        access_code: AccessCode::parse("12345678").unwrap(),
    };
    (Session::new(&endpoint, tls, Duration::from_secs(5)), sent)
}

/// `{"print": {"junk": "xxx…"}}`, `len` bytes.
fn huge_report(len: usize) -> Vec<u8> {
    let mut json = br#"{"print": {"junk": ""#.to_vec();
    json.resize(len - 3, b'x');
    json.extend_from_slice(br#""}}"#);
    json
}

/// `[[[[…]]]]`, `len` bytes.
fn deep_report(len: usize) -> Vec<u8> {
    let mut json = vec![b'['; len / 2];
    json.resize(len, b']');
    json
}

async fn next(session: &mut Session) -> Result<Incoming, SessionError> {
    tokio::time::timeout(Duration::from_secs(20), session.next())
        .await
        .expect("the session says something within 20 s")
}

#[tokio::test]
async fn a_report_of_thirty_megabytes_ends_the_session_after_a_bounded_read() {
    let (mut session, sent) = hostile_broker(30 << 20, huge_report).await;
    assert_eq!(next(&mut session).await, Ok(Incoming::Connected));
    let ended = next(&mut session).await;
    assert!(
        matches!(&ended, Err(SessionError::Io(why)) if why.contains("size")),
        "{ended:?}"
    );
    drop(session);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = sent.load(Ordering::Relaxed);
    // The packet's length is refused from its header: what got out is socket buffers.
    assert!(sent < 16 << 20, "{sent} bytes of the report were taken");
}

#[tokio::test]
async fn a_report_nested_half_a_million_deep_is_unreadable_not_a_crash() {
    let (mut session, _) = hostile_broker(1_000_000, deep_report).await;
    assert_eq!(next(&mut session).await, Ok(Incoming::Connected));
    let unreadable = next(&mut session).await;
    assert!(
        matches!(&unreadable, Ok(Incoming::Unreadable(ParseError::NotJson(why))) if why.contains("recursion")),
        "{unreadable:?}"
    );
}

#[tokio::test]
async fn a_camera_announcing_a_two_gigabyte_frame_is_refused_before_it_is_read() {
    let (listener, acceptor, tls) = tls_listener().await;
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut stream = acceptor.accept(socket).await.unwrap();
        let mut login = [0u8; 80];
        stream.read_exact(&mut login).await.unwrap();
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&(2u32 << 30).to_le_bytes());
        stream.write_all(&header).await.unwrap();
        // Then bytes for as long as anyone reads.
        let block = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        while sent < 2 << 30 {
            if stream.write_all(&block).await.is_err() {
                break;
            }
            sent += block.len() as u64;
        }
        sent
    });
    let connector = tokio_rustls::TlsConnector::from(tls);
    let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = connector.connect(name, socket).await.unwrap();
    stream.write_all(&[0u8; 80]).await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut stream))
        .await
        .expect("refused at once");
    assert!(
        matches!(&refused, Err(CameraError::Malformed(why)) if why.contains("2147483648")),
        "{refused:?} (frames are at most {MAX_FRAME_BYTES} bytes)"
    );
    drop(stream);
    let sent = tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the camera sees the hang-up")
        .unwrap();
    assert!(sent < 16 << 20, "{sent} bytes of the frame were taken");
}
