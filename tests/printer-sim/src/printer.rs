//! One simulated printer: its state, its print lifecycle, the reports it pushes and how it
//! answers commands. Network listeners (MQTT, FTPS, camera) talk to it through this type; the
//! state is behind a plain mutex that is never held across an `.await`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, watch};

use crate::model::Model;
use crate::threemf::{self, PlateJob};

/// `print_error` of a print stopped by the user: 0300_400C.
pub const PRINT_ERROR_CANCELLED: u32 = 50_348_044;
/// `print_error` used when a fault fails the current print: 0300_8003 (a nozzle clog family code).
pub const PRINT_ERROR_FAULT: u32 = 0x0300_8003;

const AMBIENT: f64 = 25.0;
/// Simulated seconds that PREPARE takes (file download into the printer, heating, levelling).
const PREPARE_SECS: f64 = 60.0;

/// What identifies a printer on the network.
#[derive(Debug, Clone, Serialize)]
pub struct PrinterSpec {
    pub name: String,
    pub serial: String,
    pub access_code: String,
    pub model: Model,
    pub ip: Ipv4Addr,
}

/// Faults a test or the control API can inject.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Accept TCP connections and close them at once.
    pub refuse_connections: bool,
    /// Keep sockets open but send nothing and answer nothing (a hung printer).
    pub silent: bool,
    /// Delay per 64 KiB block of FTPS data, in milliseconds (printers write slowly).
    pub ftps_delay_ms: u64,
    /// Refuse control commands like firmware that wants signed commands.
    pub require_signed: bool,
    /// Push no reports of its own (no heartbeat, no changes), but answer requests (`pushall`,
    /// commands): an idle printer that reports only when asked.
    pub quiet: bool,
    /// No storage card: uploads are refused (`553`).
    pub no_sd_card: bool,
    /// Delay before a new connection's TLS handshake is answered, in milliseconds: a printer
    /// slow to accept (the P1 and A1 series' ESP32 takes about a second per handshake, more
    /// while printing).
    pub handshake_delay_ms: u64,
}

/// Live connection counts, for tests that must prove "never two connections to one printer".
#[derive(Debug, Default)]
pub struct Counters {
    pub mqtt_clients: AtomicUsize,
    pub mqtt_connections_total: AtomicUsize,
    pub camera_clients: AtomicUsize,
    /// Camera logins accepted since the start.
    pub camera_connections_total: AtomicUsize,
    pub ftps_sessions: AtomicUsize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum GcodeState {
    Idle,
    Prepare,
    Running,
    Pause,
    Finish,
    Failed,
}

impl GcodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            GcodeState::Idle => "IDLE",
            GcodeState::Prepare => "PREPARE",
            GcodeState::Running => "RUNNING",
            GcodeState::Pause => "PAUSE",
            GcodeState::Finish => "FINISH",
            GcodeState::Failed => "FAILED",
        }
    }

    fn busy(self) -> bool {
        matches!(
            self,
            GcodeState::Prepare | GcodeState::Running | GcodeState::Pause
        )
    }
}

#[derive(Debug, Clone)]
struct Job {
    plan: PlateJob,
    file: String,
    subtask_name: String,
    task_id: String,
    subtask_id: String,
    elapsed: f64,
    prepare: f64,
    /// AMS `remain` (percent) of each tray when the print started.
    remain_at_start: BTreeMap<u16, f64>,
    /// Which tray feeds how many grams of the plate (from the AMS mapping it was sent with, or
    /// chosen by type and colour as the printer does for a print started on its screen).
    feeds: Vec<(u16, f64)>,
}

/// A spool a person put in a tray.
#[derive(Debug, Clone, PartialEq)]
pub struct Spool {
    pub kind: String,
    /// `RRGGBBAA`.
    pub color: String,
    /// A Bambu spool's RFID tag (`tray_uuid`); `None` for a spool without one.
    pub tag: Option<String>,
    /// Grams on the full spool, as its tag says (0 without a tag).
    pub weight_g: u32,
    pub sub_brand: Option<String>,
    /// Percent left, as the AMS reads it from the tag.
    pub remain: f64,
}

#[derive(Debug)]
struct State {
    gcode_state: GcodeState,
    job: Option<Job>,
    nozzle: f64,
    nozzle_target: f64,
    bed: f64,
    bed_target: f64,
    print_error: u32,
    hms: Vec<(u32, u32)>,
    spd_lvl: u8,
    /// AMS `remain` (percent) per global tray id.
    remain: BTreeMap<u16, f64>,
    /// What a person did to a tray, by global tray id (`ams * 4 + slot`, 254 for the external
    /// spool): a spool loaded in place of the capture's, or the tray emptied (`None`).
    loaded: BTreeMap<u16, Option<Spool>>,
    /// Every print started, by job name, oldest first (a test proves "printed once" with it).
    started: Vec<String>,
    /// The last `project_file` request accepted, as sent.
    last_project_file: Option<Value>,
    wifi: i32,
    sequence: u64,
    /// The full `print` object clients saw last, for deltas.
    last_sent: Option<Map<String, Value>>,
}

/// A snapshot for the control API and tests.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub serial: String,
    pub model: Model,
    pub ip: Ipv4Addr,
    pub gcode_state: GcodeState,
    pub progress: u32,
    pub layer: u32,
    pub total_layers: u32,
    pub file: Option<String>,
    pub print_error: u32,
    pub hms: Vec<(u32, u32)>,
    pub mqtt_clients: usize,
    pub mqtt_connections_total: usize,
    pub camera_clients: usize,
    pub camera_connections_total: usize,
    pub ftps_sessions: usize,
    pub faults: Faults,
    /// Job names of every print started, oldest first.
    pub started_jobs: Vec<String>,
    /// The last `project_file` accepted (its `ams_mapping`, `use_ams`, `md5`, …).
    pub last_project_file: Option<Value>,
}

pub struct Printer {
    pub spec: PrinterSpec,
    template: Map<String, Value>,
    state: Mutex<State>,
    reports: broadcast::Sender<Bytes>,
    files: Mutex<BTreeMap<String, Bytes>>,
    faults: Mutex<Faults>,
    /// The firmware it runs, when not the captured one (a farm's printers differ).
    firmware: Mutex<Option<String>>,
    pub counters: Counters,
    kick: watch::Sender<u64>,
    /// Simulated seconds per real second (an `f64`'s bits): a knob of the simulation, not of
    /// the printer, that a test may turn mid-run.
    speed: std::sync::atomic::AtomicU64,
}

impl Printer {
    pub fn new(spec: PrinterSpec, speed: f64) -> Self {
        let mut template = spec.model.report_template();
        // A fresh printer: idle, no job, no errors, whatever the capture was doing.
        for (key, value) in [
            ("gcode_state", json!("IDLE")),
            ("gcode_file", json!("")),
            ("subtask_name", json!("")),
            ("print_type", json!("idle")),
            ("hms", json!([])),
        ] {
            if template.contains_key(key) {
                template.insert(key.to_owned(), value);
            }
        }
        // Every printer has spools of its own: the capture's tags made this printer's.
        for tray in trays_mut(&mut template) {
            for (key, len) in [("tray_uuid", 32), ("tag_uid", 16)] {
                if let Some(tag) = tray.get(key).and_then(Value::as_str)
                    && tag.bytes().any(|b| b != b'0')
                {
                    let own = md5_hex(format!("{}{tag}", spec.serial).as_bytes());
                    tray[key] = json!(own[..len].to_ascii_uppercase());
                }
            }
        }
        let remain = global_trays(&template)
            .filter_map(|(id, t)| {
                let r = t.get("remain").and_then(Value::as_i64)?;
                Some((
                    id,
                    if r < 0 {
                        -1.0
                    } else {
                        (100 - (r % 7) * 5) as f64
                    },
                ))
            })
            .collect();
        let (reports, _) = broadcast::channel(256);
        let (kick, _) = watch::channel(0);
        let mut files = BTreeMap::new();
        for dir in ["/cache/", "/model/", "/timelapse/"] {
            files.insert(dir.to_owned(), Bytes::new());
        }
        Self {
            template,
            state: Mutex::new(State {
                gcode_state: GcodeState::Idle,
                job: None,
                nozzle: AMBIENT,
                nozzle_target: 0.0,
                bed: AMBIENT,
                bed_target: 0.0,
                print_error: 0,
                hms: Vec::new(),
                spd_lvl: 2,
                remain,
                loaded: BTreeMap::new(),
                started: Vec::new(),
                last_project_file: None,
                wifi: -48,
                sequence: 0,
                last_sent: None,
            }),
            spec,
            reports,
            files: Mutex::new(files),
            faults: Mutex::new(Faults::default()),
            firmware: Mutex::new(None),
            counters: Counters::default(),
            kick,
            speed: std::sync::atomic::AtomicU64::new(speed.to_bits()),
        }
    }

    /// Runs the simulation `speed` times faster than real time from now on.
    pub fn set_speed(&self, speed: f64) {
        self.speed
            .store(speed.to_bits(), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn report_topic(&self) -> String {
        format!("device/{}/report", self.spec.serial)
    }

    pub fn request_topic(&self) -> String {
        format!("device/{}/request", self.spec.serial)
    }

    /// Payloads published on the report topic.
    pub fn subscribe_reports(&self) -> broadcast::Receiver<Bytes> {
        self.reports.subscribe()
    }

    /// Changes when every connection must be dropped.
    pub fn kicks(&self) -> watch::Receiver<u64> {
        self.kick.subscribe()
    }

    pub fn faults(&self) -> Faults {
        self.faults.lock().unwrap().clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }

    /// Installs firmware `version` (`01.08.00.00`): as after a real update, the printer
    /// restarts (every connection closes) and `get_version` reports it from then on.
    pub fn update_firmware(&self, version: &str) {
        *self.firmware.lock().unwrap() = Some(version.to_owned());
        self.drop_connections();
    }

    /// The `ota` module's version it reports.
    pub fn firmware(&self) -> String {
        let info = self.version_info();
        info["module"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == "ota"))
            .and_then(|m| m["sw_ver"].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    fn version_info(&self) -> Value {
        let mut info = self.spec.model.version_template(&self.spec.serial);
        if let Some(version) = self.firmware.lock().unwrap().clone()
            && let Some(modules) = info.get_mut("module").and_then(Value::as_array_mut)
        {
            for module in modules.iter_mut().filter(|m| m["name"] == "ota") {
                module["sw_ver"] = Value::from(version.clone());
            }
        }
        info
    }

    /// Closes every open connection (MQTT, FTPS, camera) now.
    pub fn drop_connections(&self) {
        self.kick.send_modify(|g| *g += 1);
    }

    pub fn snapshot(&self) -> Snapshot {
        let state = self.state.lock().unwrap();
        let (progress, layer, total) = progress_of(&state);
        Snapshot {
            serial: self.spec.serial.clone(),
            model: self.spec.model,
            ip: self.spec.ip,
            gcode_state: state.gcode_state,
            progress,
            layer,
            total_layers: total,
            file: state.job.as_ref().map(|j| j.file.clone()),
            print_error: state.print_error,
            hms: state.hms.clone(),
            mqtt_clients: self.counters.mqtt_clients.load(Ordering::Relaxed),
            mqtt_connections_total: self.counters.mqtt_connections_total.load(Ordering::Relaxed),
            camera_clients: self.counters.camera_clients.load(Ordering::Relaxed),
            camera_connections_total: self
                .counters
                .camera_connections_total
                .load(Ordering::Relaxed),
            ftps_sessions: self.counters.ftps_sessions.load(Ordering::Relaxed),
            faults: self.faults(),
            started_jobs: state.started.clone(),
            last_project_file: state.last_project_file.clone(),
        }
    }

    // ---- storage (what FTPS serves) ----

    pub fn file(&self, path: &str) -> Option<Bytes> {
        self.files
            .lock()
            .unwrap()
            .get(path)
            .filter(|_| !path.ends_with('/'))
            .cloned()
    }

    pub fn store(&self, path: &str, data: Bytes) {
        self.files.lock().unwrap().insert(path.to_owned(), data);
    }

    pub fn delete(&self, path: &str) -> bool {
        self.files.lock().unwrap().remove(path).is_some()
    }

    pub fn make_dir(&self, dir: &str) {
        let dir = format!("{}/", dir.trim_end_matches('/'));
        self.files.lock().unwrap().entry(dir).or_default();
    }

    pub fn is_dir(&self, dir: &str) -> bool {
        dir == "/" || {
            let dir = format!("{}/", dir.trim_end_matches('/'));
            self.files.lock().unwrap().contains_key(&dir)
        }
    }

    /// Entries directly inside `dir`: (name, size, is_dir).
    pub fn list(&self, dir: &str) -> Vec<(String, usize, bool)> {
        let prefix = if dir == "/" {
            "/".to_owned()
        } else {
            format!("{}/", dir.trim_end_matches('/'))
        };
        let files = self.files.lock().unwrap();
        files
            .iter()
            .filter_map(|(path, data)| {
                let rest = path.strip_prefix(&prefix)?;
                if rest.is_empty() {
                    return None;
                }
                match rest.split_once('/') {
                    Some((name, "")) => Some((name.to_owned(), 0, true)),
                    Some(_) => None,
                    None => Some((rest.to_owned(), data.len(), false)),
                }
            })
            .collect()
    }

    // ---- commands ----

    /// Handles a payload published on the request topic. Malformed requests are ignored, as
    /// printers ignore them.
    pub fn handle_request(&self, payload: &[u8]) {
        let text = String::from_utf8_lossy(payload);
        let Ok(request) = serde_json::from_str::<Value>(text.trim_end_matches('\0')) else {
            return;
        };
        let Some((category, body)) = request.as_object().and_then(|o| o.iter().next()) else {
            return;
        };
        let command = body.get("command").and_then(Value::as_str).unwrap_or("");
        let sequence_id = body.get("sequence_id").cloned().unwrap_or(json!("0"));
        match (category.as_str(), command) {
            ("pushing", "pushall") => self.publish_full(),
            ("info", "get_version") => {
                let mut info = self.version_info();
                info["sequence_id"] = sequence_id;
                info["result"] = json!("success");
                info["reason"] = json!("");
                self.publish(json!({ "info": info }));
            }
            ("print", _) => self.print_command(command, body, sequence_id),
            _ => {}
        }
    }

    fn print_command(&self, command: &str, body: &Value, sequence_id: Value) {
        let controls = ["pause", "resume", "stop", "print_speed", "project_file"];
        let outcome = if controls.contains(&command) && self.faults().require_signed {
            Err("mqtt message verify failed".to_owned())
        } else {
            match command {
                "pause" => self.pause(),
                "resume" => self.resume(),
                "stop" => self.stop(),
                "print_speed" => {
                    let level = body
                        .get("param")
                        .and_then(Value::as_str)
                        .and_then(|p| p.parse().ok());
                    match level {
                        Some(level @ 1..=4) => {
                            self.state.lock().unwrap().spd_lvl = level;
                            Ok(())
                        }
                        _ => Err("invalid speed level".to_owned()),
                    }
                }
                "project_file" => self.project_file(body),
                _ => return,
            }
        };
        let (result, reason) = match &outcome {
            Ok(()) => ("success", String::new()),
            Err(reason) => ("failed", reason.clone()),
        };
        let mut ack = json!({
            "command": command,
            "sequence_id": sequence_id,
            "result": result,
            "reason": reason,
        });
        if let Some(param) = body.get("param") {
            ack["param"] = param.clone();
        }
        self.publish(json!({ "print": ack }));
        if outcome.is_ok() {
            self.publish_changes();
        }
    }

    fn pause(&self) -> Result<(), String> {
        let mut s = self.state.lock().unwrap();
        match s.gcode_state {
            GcodeState::Running | GcodeState::Prepare => {
                s.gcode_state = GcodeState::Pause;
                Ok(())
            }
            other => Err(format!("cannot pause while {}", other.as_str())),
        }
    }

    fn resume(&self) -> Result<(), String> {
        let mut s = self.state.lock().unwrap();
        match s.gcode_state {
            GcodeState::Pause => {
                let prepared = s.job.as_ref().is_some_and(|j| j.prepare >= 100.0);
                s.gcode_state = if prepared {
                    GcodeState::Running
                } else {
                    GcodeState::Prepare
                };
                Ok(())
            }
            other => Err(format!("cannot resume while {}", other.as_str())),
        }
    }

    fn stop(&self) -> Result<(), String> {
        let mut s = self.state.lock().unwrap();
        if !s.gcode_state.busy() {
            return Err(format!("nothing to stop while {}", s.gcode_state.as_str()));
        }
        s.gcode_state = GcodeState::Failed;
        s.print_error = PRINT_ERROR_CANCELLED;
        s.nozzle_target = 0.0;
        s.bed_target = 0.0;
        Ok(())
    }

    /// Fails the current print as a hardware fault would.
    pub fn fail_print(&self, print_error: Option<u32>) -> Result<(), String> {
        let mut s = self.state.lock().unwrap();
        if !s.gcode_state.busy() {
            return Err("no print to fail".to_owned());
        }
        s.gcode_state = GcodeState::Failed;
        s.print_error = print_error.unwrap_or(PRINT_ERROR_FAULT);
        s.nozzle_target = 0.0;
        s.bed_target = 0.0;
        drop(s);
        self.publish_changes();
        Ok(())
    }

    /// Raises an HMS entry (`attr`, `code` as the printer sends them).
    pub fn raise_hms(&self, attr: u32, code: u32) {
        self.state.lock().unwrap().hms.push((attr, code));
        self.publish_changes();
    }

    pub fn clear_hms(&self) {
        self.state.lock().unwrap().hms.clear();
        self.publish_changes();
    }

    /// Sends a payload that is not JSON on the report topic.
    /// Publishes `payload` on the report topic as it is (for clients' robustness tests).
    pub fn send_raw(&self, payload: Bytes) {
        let _ = self.reports.send(payload);
    }

    pub fn send_garbage(&self) {
        let _ = self.reports.send(Bytes::from_static(
            b"{\"print\": {\"gcode_state\": \x00\xff garbage",
        ));
    }

    fn project_file(&self, body: &Value) -> Result<(), String> {
        let url = body.get("url").and_then(Value::as_str).unwrap_or("");
        let path = storage_path(url).ok_or_else(|| format!("unsupported url {url:?}"))?;
        let plate = body
            .get("param")
            .and_then(Value::as_str)
            .and_then(plate_number)
            .unwrap_or(1);
        let subtask_name = body
            .get("subtask_name")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let text = |key: &str| {
            body.get(key)
                .and_then(Value::as_str)
                .unwrap_or("0")
                .to_owned()
        };
        // Printers check the file against the MD5 they are given (an empty one skips it).
        let md5 = body.get("md5").and_then(Value::as_str).unwrap_or("");
        if !md5.is_empty() {
            let data = self
                .file(&path)
                .ok_or_else(|| format!("file {path} not found on the printer"))?;
            let actual = md5_hex(&data);
            if !actual.eq_ignore_ascii_case(md5) {
                return Err("the file's MD5 does not match (the upload is damaged)".to_owned());
            }
        }
        let data = self.stored(&path)?;
        let use_ams = body.get("use_ams").and_then(Value::as_bool).unwrap_or(true);
        let ams_mapping = body
            .get("ams_mapping")
            .and_then(Value::as_array)
            .map(|m| m.iter().map(|t| t.as_i64().unwrap_or(-1)).collect())
            .unwrap_or_default();
        self.start_job(
            data,
            &path,
            plate,
            subtask_name,
            text("task_id"),
            text("subtask_id"),
            Some((use_ams, ams_mapping)),
        )?;
        self.state.lock().unwrap().last_project_file = Some(body.clone());
        Ok(())
    }

    /// A person loads filament into tray `tray` (global id, 254 for the external spool) and
    /// sets its type and colour (`RRGGBBAA`) on the printer.
    pub fn load_filament(&self, tray: u16, kind: &str, color: &str) {
        self.load_spool(
            tray,
            Spool {
                kind: kind.to_owned(),
                color: color.to_ascii_uppercase(),
                tag: None,
                weight_g: 0,
                sub_brand: None,
                remain: -1.0,
            },
        );
    }

    /// A person puts `spool` in tray `tray` (a Bambu spool's tag is read by the AMS, with its
    /// weight and what is left).
    pub fn load_spool(&self, tray: u16, spool: Spool) {
        let mut s = self.state.lock().unwrap();
        s.remain.insert(tray, spool.remain);
        s.loaded.insert(tray, Some(spool));
        drop(s);
        self.publish_changes();
    }

    /// A person takes the spool out of tray `tray`.
    pub fn unload(&self, tray: u16) {
        let mut s = self.state.lock().unwrap();
        s.remain.remove(&tray);
        s.loaded.insert(tray, None);
        drop(s);
        self.publish_changes();
    }

    /// What tray `tray` holds now: type, colour and grams on a full spool (1 kg when unknown).
    fn tray_filament(&self, s: &State, tray: u16) -> Option<(String, String, f64)> {
        let weight = |w: u32| if w == 0 { 1000.0 } else { f64::from(w) };
        if let Some(loaded) = s.loaded.get(&tray) {
            return loaded
                .as_ref()
                .map(|l| (l.kind.clone(), l.color.clone(), weight(l.weight_g)));
        }
        let captured = if tray >= 254 {
            self.template.get("vt_tray")
        } else {
            global_trays(&self.template)
                .find(|(id, _)| *id == tray)
                .map(|(_, t)| t)
        }?;
        let text = |key: &str| captured.get(key).and_then(Value::as_str).unwrap_or("");
        let kind = text("tray_type");
        (!kind.is_empty()).then(|| {
            let grams = text("tray_weight").parse::<f64>().unwrap_or(0.0) as u32;
            (
                kind.to_owned(),
                text("tray_color").to_owned(),
                weight(grams),
            )
        })
    }

    /// Which tray feeds each filament of `plan`: the mapping sent with the print, else (a
    /// print started on the screen) the tray of the filament's type and colour, else of its
    /// type, as the printer matches them.
    fn feeds(
        &self,
        s: &State,
        plan: &PlateJob,
        mapping: Option<(bool, Vec<i64>)>,
    ) -> Vec<(u16, f64)> {
        let mut feeds = Vec::new();
        for filament in &plan.filaments {
            let tray = match &mapping {
                Some((false, _)) => Some(254),
                Some((true, mapping)) => mapping
                    .get(filament.id as usize - 1)
                    .and_then(|t| u16::try_from(*t).ok()),
                None => {
                    let candidates: Vec<(u16, String, String)> = (0..16)
                        .chain(128..136)
                        .chain([254])
                        .filter_map(|t| self.tray_filament(s, t).map(|(k, c, _)| (t, k, c)))
                        .filter(|(_, k, _)| k.eq_ignore_ascii_case(&filament.kind))
                        .collect();
                    let rgb = filament.color.trim_start_matches('#').to_ascii_uppercase();
                    candidates
                        .iter()
                        .find(|(_, _, c)| c.starts_with(&rgb))
                        .or(candidates.first())
                        .map(|(t, _, _)| *t)
                }
            };
            if let Some(tray) = tray {
                feeds.push((tray, filament.grams));
            }
        }
        feeds
    }

    /// Starts a print of a file already in storage, as the touchscreen (or a slicer sending
    /// directly) would: prints the farm did not dispatch reach it this way.
    pub fn start_from_touchscreen(&self, path: &str, plate: u32) -> Result<(), String> {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let data = self.stored(&path)?;
        self.start_job(data, &path, plate, None, "0".into(), "0".into(), None)?;
        self.publish_changes();
        Ok(())
    }

    /// Prints again a file from the printer's own history, as an X1's touchscreen offers: the
    /// file is in the printer's internal memory, which FTPS does not serve, and the printer
    /// reports the job by its `name` (an X1's `gcode_file` points into that memory).
    pub fn reprint_from_history(&self, name: &str, data: Bytes, plate: u32) -> Result<(), String> {
        let path = format!("/data/{name}.gcode.3mf");
        self.start_job(
            data,
            &path,
            plate,
            Some(name.to_owned()),
            "0".into(),
            "0".into(),
            None,
        )?;
        self.publish_changes();
        Ok(())
    }

    /// A file in storage, under `path` or in `/cache`.
    fn stored(&self, path: &str) -> Result<Bytes, String> {
        self.file(path)
            .or_else(|| self.file(&format!("/cache{path}")))
            .ok_or_else(|| format!("file {path} not found on the printer"))
    }

    #[allow(clippy::too_many_arguments)]
    fn start_job(
        &self,
        data: Bytes,
        path: &str,
        plate: u32,
        subtask_name: Option<String>,
        task_id: String,
        subtask_id: String,
        mapping: Option<(bool, Vec<i64>)>,
    ) -> Result<(), String> {
        if self.state.lock().unwrap().gcode_state.busy() {
            return Err("the printer is busy".to_owned());
        }
        let plan = threemf::read_plate(&data, plate).map_err(|e| e.to_string())?;
        let file = path.rsplit('/').next().unwrap_or(path).to_owned();
        let subtask_name = subtask_name.unwrap_or_else(|| {
            file.trim_end_matches(".3mf")
                .trim_end_matches(".gcode")
                .to_owned()
        });
        let mut s = self.state.lock().unwrap();
        if s.gcode_state.busy() {
            return Err("the printer is busy".to_owned());
        }
        s.started.push(subtask_name.clone());
        let feeds = self.feeds(&s, &plan, mapping);
        s.job = Some(Job {
            plan,
            file,
            subtask_name,
            task_id,
            subtask_id,
            elapsed: 0.0,
            prepare: 0.0,
            remain_at_start: s.remain.clone(),
            feeds,
        });
        s.gcode_state = GcodeState::Prepare;
        s.print_error = 0;
        s.nozzle_target = 220.0;
        s.bed_target = 60.0;
        Ok(())
    }

    // ---- simulation ----

    /// Advances the simulation by `real` wall time (times the speed factor).
    pub fn tick(&self, real: Duration) {
        let speed = f64::from_bits(self.speed.load(std::sync::atomic::Ordering::Relaxed));
        let dt = real.as_secs_f64() * speed;
        let mut s = self.state.lock().unwrap();
        let heat = |current: f64, target: f64, rate: f64| {
            let goal = if target > 0.0 { target } else { AMBIENT };
            if (goal - current).abs() <= rate * dt {
                goal
            } else {
                current + rate * dt * (goal - current).signum()
            }
        };
        s.nozzle = heat(s.nozzle, s.nozzle_target, 3.0);
        s.bed = heat(s.bed, s.bed_target, 1.0);
        match s.gcode_state {
            GcodeState::Prepare => {
                if let Some(job) = s.job.as_mut() {
                    job.prepare = (job.prepare + dt / PREPARE_SECS * 100.0).min(100.0);
                    if job.prepare >= 100.0 {
                        s.gcode_state = GcodeState::Running;
                    }
                }
            }
            GcodeState::Running => {
                let factor = match s.spd_lvl {
                    1 => 0.5,
                    3 => 1.24,
                    4 => 1.66,
                    _ => 1.0,
                };
                let mut finished = false;
                let mut fraction = 0.0;
                if let Some(job) = s.job.as_mut() {
                    job.elapsed += dt * factor;
                    let total = job.plan.prediction_secs.max(1) as f64;
                    finished = job.elapsed >= total;
                    fraction = (job.elapsed / total).min(1.0);
                }
                // Each feeding tray's spool loses its share of the plate's grams as the print
                // goes; the AMS counts it down for the spools it measures.
                if let Some(job) = s.job.clone() {
                    let mut per_tray: BTreeMap<u16, f64> = BTreeMap::new();
                    for (tray, grams) in &job.feeds {
                        *per_tray.entry(*tray).or_default() += grams;
                    }
                    for (tray, grams) in per_tray {
                        let Some(start) = job.remain_at_start.get(&tray).filter(|r| **r >= 0.0)
                        else {
                            continue;
                        };
                        let weight = self.tray_filament(&s, tray).map_or(1000.0, |f| f.2);
                        let left = (start - fraction * grams / weight * 100.0).max(0.0);
                        s.remain.insert(tray, left);
                    }
                }
                if finished {
                    s.gcode_state = GcodeState::Finish;
                    s.nozzle_target = 0.0;
                    s.bed_target = 0.0;
                }
            }
            _ => {}
        }
    }

    /// Runs the printer: ticks, and pushes a report whenever something changed (and a small
    /// heartbeat delta every `idle_report` so that an idle printer is not mistaken for a dead one).
    pub async fn run(self: std::sync::Arc<Self>, tick: Duration, idle_report: Duration) {
        // Printers are separate machines: their reports do not fall on the same instant. A
        // random phase keeps a farm's thousands of reports spread over each tick rather than
        // in one burst.
        let phase = tick.mul_f64(rand::random::<f64>());
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + phase, tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut since_report = Duration::ZERO;
        loop {
            interval.tick().await;
            self.tick(tick);
            since_report += tick;
            let faults = self.faults();
            if faults.silent || faults.quiet {
                continue;
            }
            if self.publish_changes() {
                since_report = Duration::ZERO;
            } else if since_report >= idle_report {
                let mut s = self.state.lock().unwrap();
                s.wifi = if s.wifi == -48 { -47 } else { -48 };
                drop(s);
                self.publish_changes();
                since_report = Duration::ZERO;
            }
        }
    }

    /// The full `print` object as it stands.
    pub fn full_report(&self) -> Map<String, Value> {
        let mut s = self.state.lock().unwrap();
        s.sequence += 1;
        let mut rendered = s.last_sent.take().unwrap_or_else(|| self.template.clone());
        self.render_into(&s, &mut rendered);
        let mut report = rendered.clone();
        report.insert("msg".into(), json!(0));
        s.last_sent = Some(rendered);
        report
    }

    fn publish_full(&self) {
        if self.faults().silent {
            return;
        }
        let report = self.full_report();
        self.publish(json!({ "print": report }));
    }

    /// Publishes what changed since clients last heard; `false` when nothing did.
    fn publish_changes(&self) -> bool {
        let mut s = self.state.lock().unwrap();
        let Some(mut rendered) = s.last_sent.take() else {
            let mut first = self.template.clone();
            self.render_into(&s, &mut first);
            s.last_sent = Some(first);
            return false;
        };
        let mut changed = self.render_into(&s, &mut rendered);
        changed.remove("msg");
        if changed.is_empty() {
            s.last_sent = Some(rendered);
            return false;
        }
        s.sequence += 1;
        let report = if self.spec.model.sends_deltas() {
            let mut delta = changed;
            delta.insert("command".into(), json!("push_status"));
            delta.insert("msg".into(), json!(1));
            delta.insert("sequence_id".into(), json!(s.sequence.to_string()));
            delta
        } else {
            let mut full = rendered.clone();
            full.insert("msg".into(), json!(0));
            full.insert("sequence_id".into(), json!(s.sequence.to_string()));
            full
        };
        s.last_sent = Some(rendered);
        drop(s);
        self.publish(json!({ "print": report }));
        true
    }

    fn publish(&self, message: Value) {
        // X1 printers indent their JSON; the others do not.
        let text = if self.spec.model == Model::X1C {
            serde_json::to_vec_pretty(&message)
        } else {
            serde_json::to_vec(&message)
        };
        if let Ok(text) = text {
            let _ = self.reports.send(Bytes::from(text));
        }
    }

    /// Renders the state into `r` (the family's template as last rendered, or a fresh copy),
    /// keeping every field's JSON type, and returns the top-level fields that changed (an AMS
    /// or external spool change returns the whole object, as printers send it). Updating in
    /// place keeps a farm of thousands of printers from copying their whole report every tick.
    fn render_into(&self, s: &State, r: &mut Map<String, Value>) -> Map<String, Value> {
        let mut changed = Map::new();
        let (progress, layer, total) = progress_of(s);
        let remaining_min = s
            .job
            .as_ref()
            .filter(|_| s.gcode_state.busy())
            .map(|j| ((j.plan.prediction_secs as f64 - j.elapsed).max(0.0) / 60.0).ceil() as u64)
            .unwrap_or(0);
        let mut str_field = |r: &mut Map<String, Value>, key: &str, value: &str| {
            put(r, &mut changed, key, json!(value), false)
        };
        str_field(r, "gcode_state", s.gcode_state.as_str());
        str_field(r, "sequence_id", &s.sequence.to_string());
        if r.contains_key("wifi_signal") {
            str_field(r, "wifi_signal", &format!("{}dBm", s.wifi));
        }
        match &s.job {
            Some(job) => {
                let gcode_file = if self.spec.model.names_gcode_by_plate() {
                    format!("/data/Metadata/plate_{}.gcode", job.plan.plate)
                } else {
                    job.file.clone()
                };
                str_field(r, "gcode_file", &gcode_file);
                str_field(r, "subtask_name", &job.subtask_name);
                str_field(r, "task_id", &job.task_id);
                str_field(r, "subtask_id", &job.subtask_id);
                str_field(
                    r,
                    "gcode_file_prepare_percent",
                    &format!("{}", job.prepare.floor() as u32),
                );
                str_field(r, "print_type", "local");
            }
            None => {
                str_field(r, "gcode_file_prepare_percent", "0");
                // Without a job, the template's values.
                for key in [
                    "gcode_file",
                    "subtask_name",
                    "task_id",
                    "subtask_id",
                    "print_type",
                ] {
                    if let Some(value) = self.template.get(key) {
                        put(r, &mut changed, key, value.clone(), false);
                    }
                }
            }
        }
        for (key, value) in [
            ("mc_percent", f64::from(progress)),
            ("mc_remaining_time", remaining_min as f64),
            ("layer_num", layer.into()),
            ("total_layer_num", total.into()),
            ("nozzle_temper", (s.nozzle * 4.0).round() / 4.0),
            ("nozzle_target_temper", s.nozzle_target),
            ("bed_temper", (s.bed * 4.0).round() / 4.0),
            ("bed_target_temper", s.bed_target),
            ("print_error", s.print_error.into()),
            ("spd_lvl", s.spd_lvl.into()),
        ] {
            let Some(slot) = r.get(key) else { continue };
            let value = if slot.is_f64() {
                json!(value)
            } else {
                json!(value.round() as i64)
            };
            put(r, &mut changed, key, value, false);
        }
        let hms = Value::Array(
            s.hms
                .iter()
                .map(|(attr, code)| json!({"attr": attr, "code": code}))
                .collect(),
        );
        put(r, &mut changed, "hms", hms, true);
        let mut ams_changed = false;
        if let Some(units) = r
            .get_mut("ams")
            .and_then(|a| a.get_mut("ams"))
            .and_then(Value::as_array_mut)
        {
            for unit in units {
                let unit_id = unit
                    .get("id")
                    .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()))
                    .unwrap_or(0) as u16;
                for tray in unit
                    .get_mut("tray")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    let slot = tray
                        .get("id")
                        .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()))
                        .unwrap_or(0) as u16;
                    let global = if unit_id < 128 {
                        unit_id * 4 + slot
                    } else {
                        unit_id
                    };
                    match s.loaded.get(&global) {
                        Some(Some(spool)) => ams_changed |= show_spool(tray, spool),
                        Some(None) => ams_changed |= show_empty(tray),
                        None => {}
                    }
                    if let (Some(remain), Some(left)) =
                        (tray.get_mut("remain"), s.remain.get(&global))
                    {
                        ams_changed |= assign(remain, json!(left.round() as i64));
                    }
                }
            }
        }
        if ams_changed && let Some(ams) = r.get("ams") {
            changed.insert("ams".into(), ams.clone());
        }
        if let Some(loaded) = s.loaded.get(&254)
            && let Some(holder) = r.get_mut("vt_tray")
        {
            let spool_changed = match loaded {
                Some(spool) => show_spool(holder, spool),
                None => assign_field(holder, "tray_type", json!("")),
            };
            if spool_changed {
                changed.insert("vt_tray".into(), holder.clone());
            }
        }
        changed
    }
}

/// Sets `r[key]` to `value` if `r` has the key (or always, with `insert`), recording it in
/// `changed` when it differs (`sequence_id` is never a change).
fn put(
    r: &mut Map<String, Value>,
    changed: &mut Map<String, Value>,
    key: &str,
    value: Value,
    insert: bool,
) {
    let differs = match r.get_mut(key) {
        Some(slot) => assign(slot, value.clone()),
        None if insert => {
            r.insert(key.into(), value.clone());
            true
        }
        None => false,
    };
    if differs && key != "sequence_id" {
        changed.insert(key.into(), value);
    }
}

/// `*slot = value`; whether it changed.
fn assign(slot: &mut Value, value: Value) -> bool {
    if *slot == value {
        return false;
    }
    *slot = value;
    true
}

/// `object[key] = value` (added if missing); whether it changed.
fn assign_field(object: &mut Value, key: &str, value: Value) -> bool {
    match object.get_mut(key) {
        Some(slot) => assign(slot, value),
        None => {
            object[key] = value;
            true
        }
    }
}

/// A tray shows a spool a person loaded: its type and colour, and a Bambu spool's tag, weight
/// and product line (zeros for a spool without a tag, as printers send them).
fn show_spool(tray: &mut Value, spool: &Spool) -> bool {
    let (uuid, uid) = match &spool.tag {
        Some(tag) => (tag.clone(), tag.chars().take(16).collect::<String>()),
        None => ("0".repeat(32), "0".repeat(16)),
    };
    let mut changed = false;
    for (key, value) in [
        ("tray_type", json!(spool.kind)),
        ("tray_color", json!(spool.color)),
        ("tray_uuid", json!(uuid)),
        ("tag_uid", json!(uid)),
        ("tray_weight", json!(spool.weight_g.to_string())),
        (
            "tray_sub_brands",
            json!(spool.sub_brand.clone().unwrap_or_default()),
        ),
        (
            "tray_diameter",
            json!(if spool.tag.is_some() { "1.75" } else { "0.00" }),
        ),
        ("remain", json!(spool.remain.round() as i64)),
    ] {
        changed |= assign_field(tray, key, value);
    }
    changed
}

/// An empty tray: the AMS reports its id alone.
fn show_empty(tray: &mut Value) -> bool {
    let Some(object) = tray.as_object_mut() else {
        return false;
    };
    let before = object.len();
    object.retain(|key, _| key == "id");
    object.len() != before
}

/// The AMS trays of a report with their global ids (`ams * 4 + slot`; the unit id for
/// single-slot units).
fn global_trays(template: &Map<String, Value>) -> impl Iterator<Item = (u16, &Value)> {
    let number = |v: Option<&Value>| {
        v.and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()))
            .unwrap_or(0) as u16
    };
    template
        .get("ams")
        .and_then(|a| a.get("ams"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(move |unit| {
            let unit_id = number(unit.get("id"));
            unit.get("tray")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(move |tray| {
                    let slot = number(tray.get("id"));
                    let id = if unit_id < 128 {
                        unit_id * 4 + slot
                    } else {
                        unit_id
                    };
                    (id, tray)
                })
        })
}

fn trays_mut(template: &mut Map<String, Value>) -> impl Iterator<Item = &mut Value> {
    template
        .get_mut("ams")
        .and_then(|a| a.get_mut("ams"))
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .flat_map(|unit| {
            unit.get_mut("tray")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
        })
}

fn progress_of(s: &State) -> (u32, u32, u32) {
    match (&s.job, s.gcode_state) {
        (Some(job), GcodeState::Finish) => (100, job.plan.total_layers, job.plan.total_layers),
        (Some(job), GcodeState::Prepare) => (0, 0, job.plan.total_layers),
        (Some(job), _) => {
            let fraction = (job.elapsed / job.plan.prediction_secs.max(1) as f64).clamp(0.0, 1.0);
            let total = job.plan.total_layers;
            let layer = ((fraction * total as f64).ceil() as u32).clamp(1, total);
            ((fraction * 100.0).floor() as u32, layer, total)
        }
        (None, _) => (0, 0, 0),
    }
}

/// Writes a number in the JSON type the template uses for `key` (integer or float).
/// MD5 of `data`, upper-case hex (as Bambu Studio sends it).
pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// `Metadata/plate_3.gcode` → 3.
fn plate_number(param: &str) -> Option<u32> {
    param
        .strip_prefix("Metadata/plate_")?
        .strip_suffix(".gcode")?
        .parse()
        .ok()
}

/// The storage path a `project_file` url names (`ftp:///x.3mf`, `ftp://x.3mf`,
/// `file:///sdcard/x.3mf`).
fn storage_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("ftp://")
        .or_else(|| url.strip_prefix("file:///sdcard"))
        .or_else(|| url.strip_prefix("file://"))?;
    let rest = rest.trim_start_matches('/');
    (!rest.is_empty() && !rest.split('/').any(|p| p == "..")).then(|| format!("/{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_file_urls_map_to_storage_paths() {
        assert_eq!(
            storage_path("ftp:///benchy.3mf").as_deref(),
            Some("/benchy.3mf")
        );
        assert_eq!(
            storage_path("ftp://benchy.3mf").as_deref(),
            Some("/benchy.3mf")
        );
        assert_eq!(
            storage_path("file:///sdcard/cache/a.3mf").as_deref(),
            Some("/cache/a.3mf")
        );
        assert_eq!(storage_path("http://x/a.3mf"), None);
        assert_eq!(storage_path("ftp:///../etc/passwd"), None);
        assert_eq!(plate_number("Metadata/plate_3.gcode"), Some(3));
    }

    /// The `remain` each AMS tray reports, by global tray id.
    fn remains(printer: &Printer) -> BTreeMap<u16, i64> {
        let report = printer.full_report();
        global_trays(&report)
            .filter_map(|(id, t)| Some((id, t.get("remain")?.as_i64()?)))
            .collect()
    }

    #[test]
    fn the_tray_the_mapping_names_loses_the_plates_grams_and_the_others_keep_theirs() {
        let printer = Printer::new(
            PrinterSpec {
                name: "A1 mini".into(),
                serial: "0309CA000000001".into(),
                access_code: "12345678".into(),
                model: Model::A1Mini,
                ip: Ipv4Addr::LOCALHOST,
            },
            1.0,
        );
        // A 10 g sample spool in A2, so the plate's 2.83 g show: 28.3 % of it.
        printer.load_spool(
            1,
            Spool {
                kind: "PLA".into(),
                color: "00AE42FF".into(),
                tag: Some("0123456789ABCDEF0123456789ABCDEF".into()),
                weight_g: 10,
                sub_brand: None,
                remain: 100.0,
            },
        );
        let before = remains(&printer);
        printer.store(
            crate::farm::DEMO_PATH,
            Bytes::from_static(crate::farm::DEMO_3MF),
        );
        let request = json!({"print": {"command": "project_file", "sequence_id": "1",
            "url": format!("file:///sdcard{}", crate::farm::DEMO_PATH),
            "param": "Metadata/plate_1.gcode", "use_ams": true, "ams_mapping": [1], "md5": ""}});
        printer.handle_request(request.to_string().as_bytes());
        for _ in 0..3000 {
            printer.tick(Duration::from_secs(1));
        }
        assert_eq!(printer.snapshot().gcode_state, GcodeState::Finish);
        let after = remains(&printer);
        assert_eq!(after[&1], 72, "100 % less 2.83 g of 10 g");
        for (tray, remain) in &before {
            if *tray != 1 {
                assert_eq!(after[tray], *remain, "tray {tray} did not feed");
            }
        }
        // Taken out: the tray reports its id alone; put back, what is left.
        printer.unload(1);
        assert!(!remains(&printer).contains_key(&1));
    }
}
