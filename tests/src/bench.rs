//! What the benchmarks share: the release binaries run as processes of their own, `wrk` runs
//! read back as figures, and per-process CPU and memory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// Where the release binaries are: `$CARGO_TARGET_DIR/release`, else beside this binary.
pub fn release_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("release");
    }
    let exe = std::env::current_exe().expect("this binary's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/release/deps/<bench>")
        .to_path_buf()
}

/// A release binary running for a benchmark; killed when dropped.
pub struct Process {
    pub name: String,
    pub child: Child,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

/// Starts `bin` with `args` and `env` added to this process's environment (less `RUST_LOG`,
/// so that a service logs at its configured level unless `env` says otherwise), its output
/// into `log`.
pub fn spawn(
    name: &str,
    bin: &Path,
    args: &[String],
    env: &[(String, String)],
    log: &Path,
) -> Process {
    let log = std::fs::File::create(log).expect("a log file");
    let child = Command::new(bin)
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("the log file"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} ({e}); run `scripts/bench`", bin.display()));
    Process {
        name: name.to_owned(),
        child,
    }
}

/// The release `printyard-api` as it is deployed (its own process and allocator, JSON logs at
/// its default level), on a free port of `env`'s NATS and Postgres, with `settings` added as
/// `PRINTYARD__…` variables; returned once healthy, with its `/api/v1` address.
pub async fn spawn_api_binary(
    env: &crate::TestEnv,
    settings: &[(&str, &str)],
    log: &Path,
) -> (Process, String) {
    let port = crate::nats_server::free_port();
    let mut vars: Vec<(String, String)> = vec![
        ("PRINTYARD__NATS__URL".into(), env.nats.url()),
        ("PRINTYARD__DATABASE__URL".into(), env.database_url.clone()),
        (
            "PRINTYARD__HTTP__LISTEN".into(),
            format!("127.0.0.1:{port}"),
        ),
        (
            "PRINTYARD__ADMIN__LISTEN".into(),
            format!("127.0.0.1:{}", crate::nats_server::free_port()),
        ),
    ];
    vars.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let api = spawn("api", &release_dir().join("printyard-api"), &[], &vars, log);
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let client = crate::http();
    let started = Instant::now();
    while !client
        .get(format!("{base}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the api never became healthy; its log: {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (api, base)
}

/// What one `wrk --latency` run measured.
#[derive(Debug, Clone, Default)]
pub struct WrkFigures {
    pub requests_per_sec: String,
    pub p50: String,
    pub p90: String,
    pub p99: String,
    /// `Non-2xx` and socket error lines, if any.
    pub errors: String,
}

/// Runs `wrk` (Debian's, installed by `scripts/bench`) with `load` (e.g. `-t2 -c32 -d15s`)
/// against `url` with `key` as `X-API-Key` and, if given, a Lua `script`; prints one line
/// starting with `what` and `label`, and returns the figures.
pub async fn wrk(
    what: &str,
    label: &str,
    url: &str,
    key: &str,
    load: &str,
    script: Option<&std::path::Path>,
) -> WrkFigures {
    let mut args: Vec<String> = load.split_whitespace().map(str::to_owned).collect();
    if let Some(script) = script {
        args.extend(["-s".into(), script.to_string_lossy().into_owned()]);
    }
    args.extend([
        "--latency".into(),
        "-H".into(),
        format!("X-API-Key: {key}"),
        url.to_owned(),
    ]);
    let output = tokio::process::Command::new("wrk")
        .args(&args)
        .output()
        .await
        .expect("running wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    let pick = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .map(|l| l.split_whitespace().last().unwrap_or("").to_owned())
            .unwrap_or_else(|| "?".into())
    };
    let figures = WrkFigures {
        requests_per_sec: pick("Requests/sec:"),
        p50: pick("50%"),
        p90: pick("90%"),
        p99: pick("99%"),
        errors: text
            .lines()
            .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
            .collect::<Vec<_>>()
            .join("; "),
    };
    println!(
        "{what}, {label} ({load}): {} req/s, p50 {}, p90 {}, p99 {}{}",
        figures.requests_per_sec,
        figures.p50,
        figures.p90,
        figures.p99,
        if figures.errors.is_empty() {
            String::new()
        } else {
            format!("; {}", figures.errors)
        }
    );
    figures
}

/// CPU time of a set of processes between two readings, as a share of one core.
pub struct CpuWindow {
    started: Instant,
    cpu: Vec<f64>,
}

impl CpuWindow {
    pub fn start(pids: &[Vec<u32>]) -> Self {
        Self {
            started: Instant::now(),
            cpu: pids.iter().map(|group| group_cpu(group)).collect(),
        }
    }

    /// Per group: percent of one core since [`CpuWindow::start`].
    pub fn percent(&self, pids: &[Vec<u32>]) -> Vec<f64> {
        let wall = self
            .started
            .elapsed()
            .max(Duration::from_millis(1))
            .as_secs_f64();
        pids.iter()
            .zip(&self.cpu)
            .map(|(group, before)| (group_cpu(group) - before).max(0.0) / wall * 100.0)
            .collect()
    }
}

fn group_cpu(pids: &[u32]) -> f64 {
    pids.iter().map(|pid| crate::process_usage(*pid).0).sum()
}

/// The ids of the processes whose command name (`/proc/<pid>/comm`) is `name`.
pub fn pids_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .collect()
}

/// A number from the environment (`BENCH_*`), else `default`.
pub fn env_number(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0 to 1) of `sorted` times, in milliseconds.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}
