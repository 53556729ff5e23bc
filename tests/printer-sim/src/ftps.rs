//! The printer's storage over FTP with implicit TLS on port 990, as vsFTPd on the printers
//! serves it: TLS from the first byte, passive mode, and data connections that must resume the
//! control connection's TLS session (`522` otherwise).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::printer::Printer;

const CONTROL_IDLE: Duration = Duration::from_secs(300);
const DATA_ACCEPT: Duration = Duration::from_secs(15);
/// Uploads larger than this are refused (`552`).
const MAX_UPLOAD: usize = 1024 * 1024 * 1024;

pub async fn serve(printer: Arc<Printer>, listener: TcpListener, tls: TlsAcceptor) {
    let data_tls = tls.clone();
    crate::accept::serve_tls(printer, listener, tls, move |printer, stream| {
        let data_tls = data_tls.clone();
        async move {
            printer
                .counters
                .ftps_sessions
                .fetch_add(1, Ordering::SeqCst);
            let mut kicks = printer.kicks();
            tokio::select! {
                _ = session(&printer, stream, data_tls) => {}
                _ = kicks.changed() => {}
            }
            printer
                .counters
                .ftps_sessions
                .fetch_sub(1, Ordering::SeqCst);
        }
    })
    .await
}

struct Session<'a> {
    printer: &'a Printer,
    tls: TlsAcceptor,
    cwd: String,
    user_ok: bool,
    logged_in: bool,
    passive: Option<TcpListener>,
}

async fn session(printer: &Printer, stream: TlsStream<TcpStream>, tls: TlsAcceptor) {
    let ip = stream.get_ref().0.local_addr().map(|a| a.ip()).ok();
    let (reader, mut writer) = tokio::io::split(stream);
    let mut lines = BufReader::new(reader);
    let mut s = Session {
        printer,
        tls,
        cwd: "/".into(),
        user_ok: false,
        logged_in: false,
        passive: None,
    };
    if reply(&mut writer, "220 (vsFTPd 3.0.3)").await.is_err() {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        let read =
            tokio::time::timeout(CONTROL_IDLE, (&mut lines).take(4096).read_line(&mut line)).await;
        let Ok(Ok(n)) = read else { return };
        if n == 0 {
            return;
        }
        let text = line.trim_end_matches(['\r', '\n']);
        let (verb, arg) = match text.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.to_owned()),
            None => (text.to_ascii_uppercase(), String::new()),
        };
        let answer = s.command(&verb, &arg, ip, &mut writer).await;
        match answer {
            Some(text) => {
                if reply(&mut writer, &text).await.is_err() {
                    return;
                }
                if verb == "QUIT" {
                    return;
                }
            }
            None => return,
        }
    }
}

async fn reply<W: AsyncWrite + Unpin>(w: &mut W, text: &str) -> std::io::Result<()> {
    w.write_all(format!("{text}\r\n").as_bytes()).await?;
    w.flush().await
}

impl Session<'_> {
    fn resolve(&self, arg: &str) -> String {
        let joined = if arg.starts_with('/') {
            arg.to_owned()
        } else {
            format!("{}/{arg}", self.cwd)
        };
        let mut parts: Vec<&str> = Vec::new();
        for part in joined.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                p => parts.push(p),
            }
        }
        format!("/{}", parts.join("/"))
    }

    /// Answers one command; `None` closes the session.
    async fn command<W: AsyncWrite + Unpin>(
        &mut self,
        verb: &str,
        arg: &str,
        ip: Option<IpAddr>,
        control: &mut W,
    ) -> Option<String> {
        let printer = self.printer;
        match verb {
            "USER" => {
                self.user_ok = arg == "bblp";
                return Some("331 Please specify the password.".into());
            }
            "PASS" => {
                return Some(if self.user_ok && arg == printer.spec.access_code {
                    self.logged_in = true;
                    "230 Login successful.".into()
                } else {
                    "530 Login incorrect.".into()
                });
            }
            "QUIT" => return Some("221 Goodbye.".into()),
            "FEAT" => return Some(
                "211-Features:\r\n EPSV\r\n PASV\r\n PBSZ\r\n PROT\r\n SIZE\r\n UTF8\r\n211 End"
                    .into(),
            ),
            "SYST" => return Some("215 UNIX Type: L8".into()),
            "NOOP" => return Some("200 NOOP ok.".into()),
            _ if !self.logged_in => return Some("530 Please login with USER and PASS.".into()),
            _ => {}
        }
        Some(match verb {
            "PBSZ" => "200 PBSZ set to 0.".into(),
            "PROT" if arg.eq_ignore_ascii_case("P") => "200 PROT now Private.".into(),
            "PROT" => "536 PROT C not allowed.".into(),
            "TYPE" => "200 Switching to Binary mode.".into(),
            "OPTS" => "200 Always in UTF8 mode.".into(),
            "PWD" | "XPWD" => format!("257 \"{}\" is the current directory", self.cwd),
            "CWD" | "CDUP" => {
                let target = self.resolve(if verb == "CDUP" { ".." } else { arg });
                if printer.is_dir(&target) {
                    self.cwd = target;
                    "250 Directory successfully changed.".into()
                } else {
                    "550 Failed to change directory.".into()
                }
            }
            "MKD" => {
                let target = self.resolve(arg);
                printer.make_dir(&target);
                format!("257 \"{target}\" created")
            }
            "PASV" | "EPSV" => {
                let ip = ip?;
                let Ok(listener) = TcpListener::bind(SocketAddr::new(ip, 0)).await else {
                    return Some("425 Could not open a data port.".into());
                };
                let port = listener.local_addr().ok()?.port();
                self.passive = Some(listener);
                if verb == "EPSV" {
                    format!("229 Entering Extended Passive Mode (|||{port}|)")
                } else {
                    let IpAddr::V4(v4) = ip else {
                        return Some("425 Use EPSV.".into());
                    };
                    let o = v4.octets();
                    format!(
                        "227 Entering Passive Mode ({},{},{},{},{},{}).",
                        o[0],
                        o[1],
                        o[2],
                        o[3],
                        port >> 8,
                        port & 0xFF
                    )
                }
            }
            "SIZE" => match printer.file(&self.resolve(arg)) {
                Some(data) => format!("213 {}", data.len()),
                None => "550 Could not get file size.".into(),
            },
            "DELE" => {
                if printer.delete(&self.resolve(arg)) {
                    "250 Delete operation successful.".into()
                } else {
                    "550 Delete operation failed.".into()
                }
            }
            "LIST" | "NLST" => {
                let target =
                    self.resolve(arg.trim_start_matches("-a").trim_start_matches("-l").trim());
                let mut text = String::new();
                for (name, size, dir) in printer.list(&target) {
                    if verb == "NLST" {
                        text.push_str(&format!("{name}\r\n"));
                    } else if dir {
                        text.push_str(&format!(
                            "drwxr-xr-x    2 0        0            4096 Jan 01 00:00 {name}\r\n"
                        ));
                    } else {
                        text.push_str(&format!(
                            "-rw-r--r--    1 0        0        {size:>8} Jan 01 00:00 {name}\r\n"
                        ));
                    }
                }
                return self
                    .transfer(
                        control,
                        "150 Here comes the directory listing.",
                        Transfer::Send(Bytes::from(text)),
                        "226 Directory send OK.",
                    )
                    .await;
            }
            "RETR" => {
                let Some(data) = printer.file(&self.resolve(arg)) else {
                    return Some("550 Failed to open file.".into());
                };
                let opening = format!(
                    "150 Opening BINARY mode data connection for {arg} ({} bytes).",
                    data.len()
                );
                return self
                    .transfer(
                        control,
                        &opening,
                        Transfer::Send(data),
                        "226 Transfer complete.",
                    )
                    .await;
            }
            // Without a storage card there is nowhere to write: vsFTPd's answer.
            "STOR" if self.printer.faults().no_sd_card => "553 Could not create file.".into(),
            "STOR" => {
                let path = self.resolve(arg);
                return self
                    .transfer(
                        control,
                        "150 Ok to send data.",
                        Transfer::Receive(path),
                        "226 Transfer complete.",
                    )
                    .await;
            }
            _ => "500 Unknown command.".into(),
        })
    }

    /// Runs one passive-mode data transfer over TLS that must resume the control session.
    async fn transfer<W: AsyncWrite + Unpin>(
        &mut self,
        control: &mut W,
        opening: &str,
        what: Transfer,
        done: &str,
    ) -> Option<String> {
        let Some(listener) = self.passive.take() else {
            return Some("425 Use PORT or PASV first.".into());
        };
        reply(control, opening).await.ok()?;
        let Ok(Ok((socket, _))) = tokio::time::timeout(DATA_ACCEPT, listener.accept()).await else {
            return Some("425 Failed to establish connection.".into());
        };
        let Ok(Ok(mut data)) = tokio::time::timeout(DATA_ACCEPT, self.tls.accept(socket)).await
        else {
            return Some("425 Failed to establish connection.".into());
        };
        let resumed = data.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        if !resumed {
            let _ = data.shutdown().await;
            return Some("522 SSL connection failed: session reuse required".into());
        }
        let delay = Duration::from_millis(self.printer.faults().ftps_delay_ms);
        match what {
            Transfer::Send(bytes) => {
                for chunk in bytes.chunks(64 * 1024) {
                    if data.write_all(chunk).await.is_err() {
                        return Some("426 Failure writing network stream.".into());
                    }
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                }
                let _ = data.shutdown().await;
            }
            Transfer::Receive(path) => {
                let mut received = Vec::new();
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    match data.read(&mut chunk).await {
                        Ok(0) => break,
                        Ok(n) => {
                            if received.len() + n > MAX_UPLOAD {
                                return Some("552 Exceeded storage allocation.".into());
                            }
                            received.extend_from_slice(&chunk[..n]);
                            // The delay is per 64 KiB, whatever size the reads come in (TLS
                            // records are 16 KiB): the printer writes at a rate, not per read.
                            if !delay.is_zero() {
                                tokio::time::sleep(delay.mul_f64(n as f64 / 65_536.0)).await;
                            }
                        }
                        // A peer that closes without close_notify still delivered its bytes.
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                        Err(_) => return Some("426 Failure reading network stream.".into()),
                    }
                }
                self.printer.store(&path, Bytes::from(received));
            }
        }
        Some(done.into())
    }
}

enum Transfer {
    Send(Bytes),
    Receive(String),
}
