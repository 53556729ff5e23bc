//! The printer's MQTT 3.1.1 server on port 8883, TLS 1.2: user `bblp`, password = access code
//! (CONNACK 5 otherwise), reports on `device/<serial>/report`, commands on
//! `device/<serial>/request`, and a cap on concurrent clients as real printers have.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Error as MqttError, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::printer::Printer;

/// Largest packet accepted or sent (full reports are tens of KiB).
const MAX_PACKET: usize = 1024 * 1024;
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Serves MQTT for `printer` on `listener` until the task is dropped.
pub async fn serve(
    printer: Arc<Printer>,
    listener: TcpListener,
    tls: TlsAcceptor,
    client_cap: Option<usize>,
) {
    crate::accept::serve_tls(printer, listener, tls, move |printer, stream| {
        session(printer, stream, client_cap)
    })
    .await
}

struct Conn<S> {
    stream: S,
    read: BytesMut,
    write: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn next(&mut self) -> Option<Packet> {
        loop {
            match Packet::read(&mut self.read, MAX_PACKET) {
                Ok(packet) => return Some(packet),
                Err(MqttError::InsufficientBytes(_)) => {}
                Err(_) => return None,
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.read.extend_from_slice(&chunk[..n]),
            }
        }
    }

    async fn send(&mut self, packet: Packet) -> bool {
        self.write.clear();
        if packet.write(&mut self.write, MAX_PACKET).is_err() {
            return false;
        }
        self.stream.write_all(&self.write).await.is_ok() && self.stream.flush().await.is_ok()
    }
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    printer: Arc<Printer>,
    stream: S,
    client_cap: Option<usize>,
) {
    let mut conn = Conn {
        stream,
        read: BytesMut::with_capacity(4096),
        write: BytesMut::with_capacity(4096),
    };
    let connect = match tokio::time::timeout(HANDSHAKE_DEADLINE, conn.next()).await {
        Ok(Some(Packet::Connect(connect))) => connect,
        _ => return,
    };
    let authorised = connect
        .login
        .as_ref()
        .is_some_and(|l| l.username == "bblp" && l.password == printer.spec.access_code);
    if !authorised {
        conn.send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::NotAuthorized,
            false,
        )))
        .await;
        return;
    }
    let counters = &printer.counters;
    let admitted = counters
        .mqtt_clients
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (client_cap.is_none_or(|cap| n < cap)).then_some(n + 1)
        })
        .is_ok();
    if !admitted {
        conn.send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::ServiceUnavailable,
            false,
        )))
        .await;
        return;
    }
    counters
        .mqtt_connections_total
        .fetch_add(1, Ordering::SeqCst);
    struct Release<'a>(&'a Printer);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.counters.mqtt_clients.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _release = Release(&printer);

    if !conn
        .send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        )))
        .await
    {
        return;
    }
    let keep_alive = Duration::from_secs(u64::from(connect.keep_alive));
    let idle_limit = if keep_alive.is_zero() {
        Duration::from_secs(3600)
    } else {
        keep_alive * 3 / 2
    };
    let report_topic = printer.report_topic();
    let request_topic = printer.request_topic();
    let mut reports = printer.subscribe_reports();
    let mut subscribed = false;
    let mut kicks = printer.kicks();

    loop {
        tokio::select! {
            _ = kicks.changed() => return,
            packet = tokio::time::timeout(idle_limit, conn.next()) => {
                let Ok(Some(packet)) = packet else { return };
                let silent = printer.faults().silent;
                match packet {
                    Packet::Subscribe(subscribe) => {
                        let codes = subscribe
                            .filters
                            .iter()
                            .map(|f| {
                                if topic_matches(&f.path, &report_topic) {
                                    subscribed = true;
                                }
                                SubscribeReasonCode::Success(QoS::AtMostOnce)
                            })
                            .collect();
                        if !silent && !conn.send(Packet::SubAck(SubAck::new(subscribe.pkid, codes))).await {
                            return;
                        }
                    }
                    Packet::Unsubscribe(unsubscribe) => {
                        if unsubscribe.topics.iter().any(|t| topic_matches(t, &report_topic)) {
                            subscribed = false;
                        }
                        if !silent && !conn.send(Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid))).await {
                            return;
                        }
                    }
                    Packet::Publish(publish) => {
                        if silent {
                            continue;
                        }
                        if publish.qos != QoS::AtMostOnce
                            && !conn.send(Packet::PubAck(PubAck::new(publish.pkid))).await
                        {
                            return;
                        }
                        if publish.topic == request_topic {
                            printer.handle_request(&publish.payload);
                        }
                    }
                    Packet::PingReq => {
                        if silent {
                            continue;
                        }
                        if !conn.send(Packet::PingResp).await {
                            return;
                        }
                    }
                    Packet::Disconnect => return,
                    _ => {}
                }
            }
            report = reports.recv(), if subscribed => {
                match report {
                    Ok(payload) => {
                        if printer.faults().silent {
                            continue;
                        }
                        let publish = Publish::from_bytes(report_topic.clone(), QoS::AtMostOnce, payload);
                        if !conn.send(Packet::Publish(publish)).await {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        }
    }
}

/// MQTT topic filter matching (`+` one level, `#` the rest).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn filters_match_like_mqtt() {
        assert!(topic_matches("device/S1/report", "device/S1/report"));
        assert!(topic_matches("device/+/report", "device/S1/report"));
        assert!(topic_matches("#", "device/S1/report"));
        assert!(topic_matches("device/#", "device/S1/report"));
        assert!(!topic_matches("device/S2/report", "device/S1/report"));
        assert!(!topic_matches("device/S1", "device/S1/report"));
    }
}
