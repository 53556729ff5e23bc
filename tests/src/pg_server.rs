//! A private PostgreSQL cluster for one test that kills and restarts it (fault tests), on a
//! free loopback port, in a directory of its own; stopped when dropped. The suite's shared
//! cluster (`scripts/test`) is never killed: other tests use it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::nats_server::{TempDir, free_port};

pub struct PgServer {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
}

impl PgServer {
    /// `initdb` and start (a few seconds).
    pub async fn start() -> Self {
        let bin = postgres_bin();
        let dir = TempDir::new("postgres");
        let data = dir.0.join("data");
        std::fs::create_dir_all(&data).expect("creating the cluster's directory");
        if is_root() {
            for path in [&dir.0, &data] {
                let status = std::process::Command::new("chown")
                    .args(["postgres:", &path.display().to_string()])
                    .status()
                    .expect("chown");
                assert!(status.success(), "chown of {}", path.display());
            }
        }
        let status = as_postgres(&bin.join("initdb"))
            .args(["-D", &data.display().to_string(), "-U", "postgres"])
            .args(["--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .expect("running initdb");
        assert!(status.success(), "initdb failed");
        let server = Self {
            bin,
            dir,
            port: free_port(),
        };
        server.run().await;
        server
    }

    /// The superuser URL (databases are created through it).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    async fn run(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off",
            self.port,
            self.dir.0.display()
        );
        // After a kill, the old backends may hold shared memory for a moment: try again.
        for _ in 0..40 {
            let status = as_postgres(&self.bin.join("pg_ctl"))
                .args(["-D", &self.data().display().to_string()])
                .args(["-l", &self.dir.0.join("server.log").display().to_string()])
                .args(["-w", "-t", "30", "-o", &options, "start"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .expect("running pg_ctl");
            if status.success() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "Postgres did not start: {}",
            std::fs::read_to_string(self.dir.0.join("server.log")).unwrap_or_default()
        );
    }

    /// SIGKILL to the postmaster (its backends follow), as a crash would.
    pub async fn kill(&self) {
        let pid = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
        if let Some(pid) = pid {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .await;
            for _ in 0..100 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Starts it again (crash recovery) on the same port and data.
    pub async fn restart(&self) {
        self.run().await;
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new(if is_root() { "runuser" } else { "env" })
            .args(if is_root() {
                vec!["-u", "postgres", "--"]
            } else {
                vec![]
            })
            .arg(self.bin.join("pg_ctl"))
            .args([
                "-D",
                &self.data().display().to_string(),
                "-m",
                "immediate",
                "stop",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    std::env::var("USER").is_ok_and(|u| u == "root")
        || std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
        })
}

/// A command run as the `postgres` user when we are root (Postgres refuses to run as root).
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// The newest PostgreSQL server binaries on this machine (`scripts/test` installs them).
fn postgres_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.flatten()
                .map(|d| d.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .expect("no PostgreSQL server under /usr/lib/postgresql (scripts/test installs one)")
}
