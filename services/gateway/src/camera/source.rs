//! Where an upstream's frames come from: a JPEG camera read directly, or an RTSPS camera
//! decoded by an ffmpeg child that reaches the printer through a loopback relay whose TLS side
//! is opened here with the printer's trust policy.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use printyard_bambu::camera::{
    CameraError, CameraKind, JpegCamera, JpegSplitter, connect_tls, rtsps_url,
};
use printyard_bambu::mqtt::AccessCode;
use printyard_bambu::tls::{TrustMode, client_config};
use rustls::pki_types::TrustAnchor;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::sync::mpsc;

use super::CameraSettings;

/// Where and how an upstream reads its camera.
pub(super) struct Source {
    pub host: String,
    pub serial: String,
    pub code: String,
    pub trust: TrustMode,
    pub anchors: Arc<Vec<TrustAnchor<'static>>>,
    pub settings: CameraSettings,
}

impl Source {
    /// Reads frames into `tx` until the camera fails; returns why.
    pub async fn read(
        &self,
        kind: CameraKind,
        fps: u32,
        tx: &mpsc::Sender<Result<Bytes, String>>,
    ) -> String {
        let Some(code) = AccessCode::parse(&self.code) else {
            return "the access code is not 8 letters or digits".into();
        };
        let tls = match client_config(&self.serial, self.anchors.clone(), self.trust.clone()) {
            Ok((tls, _)) => tls,
            Err(err) => return format!("TLS: {err}"),
        };
        match kind {
            CameraKind::Jpeg => self.read_jpeg(&code, tls, tx).await,
            CameraKind::Rtsps => self.read_rtsps(&code, tls, fps, tx).await,
        }
    }

    async fn read_jpeg(
        &self,
        code: &AccessCode,
        tls: Arc<rustls::ClientConfig>,
        tx: &mpsc::Sender<Result<Bytes, String>>,
    ) -> String {
        let settings = &self.settings;
        let mut camera = match JpegCamera::connect(
            &self.host,
            settings.jpeg_port,
            code,
            tls,
            settings.first_frame,
        )
        .await
        {
            Ok(camera) => camera,
            Err(err) => return err.to_string(),
        };
        loop {
            match camera.next_frame(settings.stall).await {
                Ok(frame) => {
                    if tx.send(Ok(frame)).await.is_err() {
                        return "closed".into();
                    }
                }
                Err(err) => return err.to_string(),
            }
        }
    }

    /// Decodes the RTSPS camera with ffmpeg at `fps`. ffmpeg talks plain RTSP to a loopback
    /// relay that carries the bytes over TLS opened here with the printer's trust policy.
    async fn read_rtsps(
        &self,
        code: &AccessCode,
        tls: Arc<rustls::ClientConfig>,
        fps: u32,
        tx: &mpsc::Sender<Result<Bytes, String>>,
    ) -> String {
        let settings = &self.settings;
        let relay = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
            Ok(listener) => listener,
            Err(err) => return format!("no loopback port for the camera relay: {err}"),
        };
        let relay_port = match relay.local_addr() {
            Ok(addr) => addr.port(),
            Err(err) => return format!("camera relay: {err}"),
        };
        // The printer first: a camera that cannot be reached is said so without ffmpeg.
        let deadline = settings.first_frame;
        let printer = connect_tls(&self.host, settings.rtsps_port, tls);
        let mut upstream = match tokio::time::timeout(deadline, printer).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return err.to_string(),
            Err(_) => return CameraError::Timeout(deadline).to_string(),
        };
        let url = rtsps_url("127.0.0.1", relay_port, code).replacen("rtsps://", "rtsp://", 1);
        let mut child = match self.transcoder(&url, fps) {
            Ok(child) => child,
            Err(err) => return err,
        };
        metrics::counter!(crate::observe::TRANSCODERS).increment(1);
        // One connection, ffmpeg's, relayed to the printer.
        let relayed = async {
            let (mut local, _) = tokio::time::timeout(settings.first_frame, relay.accept())
                .await
                .map_err(|_| "the transcoder did not connect".to_owned())?
                .map_err(|e| format!("camera relay: {e}"))?;
            drop(relay);
            tokio::io::copy_bidirectional(&mut local, &mut upstream)
                .await
                .map(drop)
                .map_err(|e| format!("the camera connection failed: {e}"))?;
            Err::<(), String>("the camera closed the connection".into())
        };
        let Some(stdout) = child.stdout.take() else {
            return "the transcoder has no output".into();
        };
        let last_words = last_words(child.stderr.take(), code.expose().to_owned());
        let frames = split_frames(stdout, tx);
        tokio::pin!(relayed, frames, last_words);
        let reason = tokio::select! {
            outcome = &mut relayed => outcome.err().unwrap_or_default(),
            _ = &mut frames => String::new(),
        };
        // ffmpeg, having said why it failed, exits; give it a moment to, then make sure.
        let status = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
        let _ = child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        let words = tokio::time::timeout(Duration::from_secs(1), last_words)
            .await
            .unwrap_or_default();
        transcoder_ended(&words, &reason, status.ok().and_then(Result::ok))
    }
}

impl Source {
    /// Starts ffmpeg decoding `url` to MJPEG on its stdout at `fps`.
    fn transcoder(&self, url: &str, fps: u32) -> Result<tokio::process::Child, String> {
        let ffmpeg = &self.settings.ffmpeg;
        tokio::process::Command::new(ffmpeg)
            .args(["-nostdin", "-hide_banner", "-loglevel", "error"])
            .args(["-rtsp_transport", "tcp", "-i"])
            .arg(url)
            .args(["-an", "-vf", &format!("fps={fps}"), "-q:v", "5"])
            .args(["-f", "mjpeg", "pipe:1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| format!("the camera's transcoder ({ffmpeg}) did not start: {err}"))
    }
}

/// ffmpeg's last line on stderr, without the access code.
async fn last_words(stderr: Option<tokio::process::ChildStderr>, secret: String) -> String {
    let mut last = String::new();
    if let Some(stderr) = stderr {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            last = line.replace(&secret, "[redacted]");
        }
    }
    last
}

/// Splits ffmpeg's MJPEG output into frames sent to `tx`, until either ends.
async fn split_frames(
    mut stdout: tokio::process::ChildStdout,
    tx: &mpsc::Sender<Result<Bytes, String>>,
) {
    let mut splitter = JpegSplitter::default();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match stdout.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for frame in splitter.push(&buffer[..n]) {
            if tx.send(Ok(frame)).await.is_err() {
                return;
            }
        }
    }
}

/// Why an RTSPS upstream ended, from ffmpeg's last words (without the access code), the
/// relay's reason, and ffmpeg's exit status.
fn transcoder_ended(words: &str, relay: &str, status: Option<std::process::ExitStatus>) -> String {
    if words.contains("401") || words.contains("authorization failed") {
        return format!("the camera refused the access code ({words})");
    }
    match (words.is_empty(), relay.is_empty()) {
        (false, _) => format!("the camera's transcoder ended: {words}"),
        (true, false) => relay.to_owned(),
        (true, true) => match status {
            Some(status) => format!("the camera's transcoder ended ({status})"),
            None => "the camera's transcoder ended".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_code_is_said_as_such() {
        let words = "rtsp://bblp:[redacted]@127.0.0.1:4/streaming/live/1: Server returned 401 \
                     Unauthorized (authorization failed)";
        assert!(
            transcoder_ended(words, "", None).starts_with("the camera refused the access code")
        );
        assert_eq!(
            transcoder_ended("", "the camera closed the connection", None),
            "the camera closed the connection"
        );
        assert!(transcoder_ended("Invalid data", "x", None).ends_with("Invalid data"));
    }
}
