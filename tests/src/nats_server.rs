//! A private `nats-server` with JetStream for one test, on a free loopback port, killed when
//! dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub struct NatsServer {
    port: u16,
    child: Child,
    /// How it was started, to start it again (same port, same store).
    binary: String,
    args: Vec<String>,
    /// The user and password clients of this server log in with, when it has users.
    pub login: Option<(String, String)>,
    dir: TempDir,
}

impl NatsServer {
    pub async fn start() -> Self {
        Self::spawn(|port, dir| {
            vec![
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                "-js".into(),
                "-sd".into(),
                dir.display().to_string(),
            ]
        })
        .await
    }

    /// A server started from a configuration file: `config(port, dir)` writes its text for
    /// a client port and a private directory (JetStream store, logs). Its log is kept in
    /// `dir/nats.log`.
    pub async fn start_with_config(
        config: impl Fn(u16, &std::path::Path) -> String,
        login: Option<(String, String)>,
    ) -> Self {
        let mut server = Self::spawn(|port, dir| {
            let path = dir.join("nats.conf");
            std::fs::write(&path, config(port, dir)).expect("writing the NATS configuration");
            vec![
                "-c".into(),
                path.display().to_string(),
                "-l".into(),
                dir.join("nats.log").display().to_string(),
            ]
        })
        .await;
        server.login = login;
        server
    }

    async fn spawn(args: impl Fn(u16, &std::path::Path) -> Vec<String>) -> Self {
        let binary =
            std::env::var("PRINTYARD_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        for _ in 0..5 {
            let port = free_port();
            let dir = TempDir::new("nats");
            let args = args(port, &dir.0);
            let child = Command::new(&binary)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {binary} (scripts/test installs it): {e}"));
            let mut server = NatsServer {
                port,
                child,
                binary: binary.clone(),
                args,
                login: None,
                dir,
            };
            if server.wait_ready().await {
                return server;
            }
        }
        panic!("nats-server did not start on any of 5 free ports");
    }

    /// The server's log, when it was started with [`NatsServer::start_with_config`].
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("nats.log")).unwrap_or_default()
    }

    async fn wait_ready(&mut self) -> bool {
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false; // exited: most likely the port was taken meanwhile
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// SIGKILL, as a crash would; then [`NatsServer::restart`].
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts it again on the same port with the same JetStream store.
    pub async fn restart(&mut self) {
        for _ in 0..20 {
            self.child = Command::new(&self.binary)
                .args(&self.args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("restarting nats-server");
            if self.wait_ready().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("nats-server did not start again on port {}", self.port);
    }

    /// The server's process id (for benchmarks that read its CPU and memory).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub async fn client(&self) -> async_nats::Client {
        let mut options = async_nats::ConnectOptions::new();
        if let Some((user, password)) = &self.login {
            options = options.user_and_password(user.clone(), password.clone());
        }
        options
            .connect(self.url())
            .await
            .expect("connecting to the test NATS")
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "printyard-{prefix}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&path).expect("creating a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
