//! A webhook receiver for tests and benchmarks: a plain HTTP/1.1 server on loopback that
//! records every request it gets (when, headers, body) and answers as told: at once, slowly,
//! with 500 the first time a message id comes, by closing the connection the first time, or
//! always with 500. One request per connection (`Connection: close`), unless `keep_alive`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Correct,
    /// Waits this long, then answers 200.
    Slow(Duration),
    /// 500 the first time a message id comes, 200 after.
    FailFirst,
    /// Closes the connection without answering the first time a message id comes.
    CloseFirst,
    /// 500, always.
    AlwaysFail,
    /// 302 to another URL, always.
    Redirect,
    /// Answers with this status and a body announced as 1 GiB, sent until the client hangs
    /// up ([`Receiver::flooded`] tells how much went).
    Flood(u16),
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    /// Lower-case header names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status answered; 0 when the connection was closed instead.
    pub answered: u16,
}

impl Received {
    pub fn id(&self) -> &str {
        self.headers.get("webhook-id").map_or("", String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
    flooded: Arc<std::sync::atomic::AtomicU64>,
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> Receiver {
        Self::start_with(behaviour, false).await
    }

    /// A receiver that keeps connections open between requests (as a production server does):
    /// for benchmarks.
    pub async fn start_keep_alive(behaviour: Behaviour) -> Receiver {
        Self::start_with(behaviour, true).await
    }

    async fn start_with(behaviour: Behaviour, keep_alive: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("an address");
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let flooded: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let shared = log.clone();
        let sent = flooded.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let log = shared.clone();
                let seen = seen.clone();
                let sent = sent.clone();
                tokio::spawn(async move {
                    let mut socket = socket;
                    if let Behaviour::Flood(status) = behaviour {
                        let _ = flood(&mut socket, status, &log, &sent).await;
                        return;
                    }
                    while let Ok(true) =
                        serve(&mut socket, behaviour, &log, &seen, keep_alive).await
                    {
                    }
                });
            }
        });
        Receiver { addr, log, flooded }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Body bytes a [`Behaviour::Flood`] receiver got out before the client hung up.
    pub fn flooded(&self) -> u64 {
        self.flooded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.log.lock().expect("the log").clone()
    }

    /// The message ids answered with a 2xx, each once, in the order first answered.
    pub fn delivered_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for request in self.requests() {
            if (200..300).contains(&request.answered) && !ids.iter().any(|i| i == request.id()) {
                ids.push(request.id().to_owned());
            }
        }
        ids
    }
}

/// Serves one request; `Ok(true)` when the connection stays open for the next.
async fn serve(
    socket: &mut TcpStream,
    behaviour: Behaviour,
    log: &Mutex<Vec<Received>>,
    seen: &Mutex<HashMap<String, usize>>,
    keep_alive: bool,
) -> std::io::Result<bool> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = socket.read(&mut chunk).await?;
        if n == 0 || buffer.len() > 1 << 20 {
            return Ok(false);
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(false);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let at = Instant::now();
    let id = headers.get("webhook-id").cloned().unwrap_or_default();
    let first = {
        let mut seen = seen.lock().expect("seen");
        let count = seen.entry(id).or_default();
        *count += 1;
        *count == 1
    };
    let answered = match behaviour {
        Behaviour::Correct => 200,
        Behaviour::Slow(wait) => {
            tokio::time::sleep(wait).await;
            200
        }
        Behaviour::FailFirst if first => 500,
        Behaviour::FailFirst => 200,
        Behaviour::CloseFirst if first => 0,
        Behaviour::CloseFirst => 200,
        Behaviour::AlwaysFail => 500,
        Behaviour::Redirect => 302,
        Behaviour::Flood(status) => status,
    };
    log.lock().expect("the log").push(Received {
        at,
        headers,
        body,
        answered,
    });
    if answered == 0 {
        return Ok(false);
    }
    let text = if answered == 200 {
        "OK"
    } else {
        "down for maintenance"
    };
    let response = format!(
        "HTTP/1.1 {answered} {}\r\ncontent-length: {}\r\nconnection: {}\r\n\r\n{text}",
        if answered == 200 {
            "OK"
        } else {
            "Internal Server Error"
        },
        text.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    socket.write_all(response.as_bytes()).await?;
    if !keep_alive {
        socket.shutdown().await?;
    }
    Ok(keep_alive)
}

/// Reads one request, then answers `status` with a body announced as 1 GiB and writes it until
/// the client hangs up, counting what went out.
async fn flood(
    socket: &mut TcpStream,
    status: u16,
    log: &Mutex<Vec<Received>>,
    sent: &std::sync::atomic::AtomicU64,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 8192];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    log.lock().expect("the log").push(Received {
        at: Instant::now(),
        headers: HashMap::new(),
        body: Vec::new(),
        answered: status,
    });
    let gigabyte: u64 = 1 << 30;
    socket
        .write_all(
            format!("HTTP/1.1 {status} Flood\r\ncontent-length: {gigabyte}\r\n\r\n").as_bytes(),
        )
        .await?;
    let block = vec![b'x'; 64 * 1024];
    let mut written = 0;
    while written < gigabyte {
        socket.write_all(&block).await?;
        written += block.len() as u64;
        sent.fetch_add(block.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}
