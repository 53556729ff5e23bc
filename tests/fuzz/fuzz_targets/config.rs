//! The configuration loader as every service runs it: a file (TOML) and `PRINTYARD__…`
//! environment variables, deserialised into each service's configuration. Input: the file's
//! text, a NUL, then `KEY=VALUE` lines (the key without its `PRINTYARD__` prefix).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use printyard_service::config::{Loaded, load_from};

fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("printyard-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        dir.join("printyard.toml")
    })
}

fn load<T: serde::de::DeserializeOwned>(env: &[(String, String)]) {
    if let Ok(Loaded { unknown_keys, .. }) = load_from::<T>(Some(file()), env.iter().cloned()) {
        let _ = unknown_keys;
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (toml, vars) = text.split_once('\0').unwrap_or((&text, ""));
    std::fs::write(file(), toml).expect("the file written");
    let env: Vec<(String, String)> = vars
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (format!("PRINTYARD__{}", k.to_uppercase()), v.to_owned()))
        .collect();
    load::<printyard_api::Config>(&env);
    load::<printyard_gateway::Config>(&env);
    load::<printyard_archive::Config>(&env);
    load::<printyard_scheduler::Config>(&env);
    load::<printyard_stats::Config>(&env);
    load::<printyard_notifier::Config>(&env);
    load::<printyard_filament::Config>(&env);
});
