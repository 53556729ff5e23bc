//! What the benchmarks share: `wrk` runs read back as figures, and per-process CPU and memory.

use std::time::{Duration, Instant};

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
