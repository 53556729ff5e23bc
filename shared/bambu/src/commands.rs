//! Command payloads for `device/<serial>/request` (protocol notes, "Commands"). Each carries a
//! `sequence_id` the printer echoes in its acknowledgement.

use serde_json::{Value, json};

/// A print speed level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeedLevel {
    Silent = 1,
    Standard = 2,
    Sport = 3,
    Ludicrous = 4,
}

/// Starting a sliced plate of a 3MF already uploaded to the printer's storage.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectFile {
    /// File name in the printer's storage root (uploaded by FTPS).
    pub file_name: String,
    pub plate: u32,
    pub subtask_name: String,
    /// One entry per filament of the plate: global tray id, or -1.
    pub ams_mapping: Vec<i32>,
    pub use_ams: bool,
    pub bed_leveling: bool,
    pub timelapse: bool,
    /// MD5 of the uploaded file, upper-case hex (printers check it; empty skips the check).
    pub md5: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    PushAll,
    GetVersion,
    Pause,
    Resume,
    Stop,
    PrintSpeed(SpeedLevel),
    ProjectFile(ProjectFile),
}

impl Command {
    /// The command's name as acknowledgements carry it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::PushAll => "pushall",
            Command::GetVersion => "get_version",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Stop => "stop",
            Command::PrintSpeed(_) => "print_speed",
            Command::ProjectFile(_) => "project_file",
        }
    }

    /// The JSON payload, with `sequence_id`.
    pub fn payload(&self, sequence_id: u64) -> Value {
        let seq = sequence_id.to_string();
        match self {
            Command::PushAll => {
                json!({"pushing": {"sequence_id": seq, "command": "pushall", "version": 1, "push_target": 1}})
            }
            Command::GetVersion => json!({"info": {"sequence_id": seq, "command": "get_version"}}),
            Command::Pause | Command::Resume | Command::Stop => {
                json!({"print": {"sequence_id": seq, "command": self.name(), "param": ""}})
            }
            Command::PrintSpeed(level) => {
                json!({"print": {"sequence_id": seq, "command": "print_speed", "param": (*level as u8).to_string()}})
            }
            Command::ProjectFile(job) => json!({"print": {
                "sequence_id": seq,
                "command": "project_file",
                "param": format!("Metadata/plate_{}.gcode", job.plate),
                "url": format!("ftp:///{}", job.file_name),
                "subtask_name": job.subtask_name,
                "md5": job.md5,
                "project_id": "0", "profile_id": "0", "task_id": "0", "subtask_id": "0",
                "timelapse": job.timelapse,
                "bed_leveling": job.bed_leveling,
                "flow_cali": false,
                "vibration_cali": false,
                "layer_inspect": false,
                "use_ams": job.use_ams,
                "ams_mapping": job.ams_mapping,
                "bed_type": "auto",
            }}),
        }
    }
}

/// The plate a G-code path names, as `project_file`'s `param` does and X1 printers report in
/// `gcode_file` (`Metadata/plate_2.gcode`, `/data/Metadata/plate_2.gcode`): 2.
pub fn plate_of_gcode(path: &str) -> Option<u32> {
    let name = path.rsplit('/').next()?;
    let number = name.strip_prefix("plate_")?.strip_suffix(".gcode")?;
    number.parse().ok().filter(|n| *n > 0)
}

/// The HMS entry recent firmware raises when it refuses an unsigned control command.
pub const SIGNATURE_REQUIRED_HMS: &str = "HMS_0500_0500_0001_0007";

/// Whether a failed acknowledgement's reason is the refusal of an unsigned command (firmware
/// since 2025 outside developer mode says `mqtt message verify failed`).
pub fn is_signature_refusal(reason: &str) -> bool {
    reason.to_ascii_lowercase().contains("verify failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plate_of_a_gcode_path() {
        assert_eq!(plate_of_gcode("/data/Metadata/plate_2.gcode"), Some(2));
        assert_eq!(plate_of_gcode("Metadata/plate_11.gcode"), Some(11));
        for other in [
            "cube.gcode.3mf",
            "/data/Metadata/plate_.gcode",
            "plate_0.gcode",
            "plate_2.gcode.md5",
            "",
        ] {
            assert_eq!(plate_of_gcode(other), None, "{other}");
        }
    }

    #[test]
    fn the_signed_command_refusal_is_recognised() {
        assert!(is_signature_refusal("mqtt message verify failed"));
        assert!(is_signature_refusal("MQTT message verify failed"));
        assert!(!is_signature_refusal("cannot pause while IDLE"));
        assert_eq!(
            crate::codes::hms_code(0x0500_0500, 0x0001_0007),
            SIGNATURE_REQUIRED_HMS
        );
    }

    #[test]
    fn payloads_have_the_documented_shape() {
        assert_eq!(
            Command::PushAll.payload(0),
            json!({"pushing": {"sequence_id": "0", "command": "pushall", "version": 1, "push_target": 1}})
        );
        assert_eq!(Command::Stop.payload(12)["print"]["command"], "stop");
        assert_eq!(Command::Stop.payload(12)["print"]["sequence_id"], "12");
        assert_eq!(
            Command::PrintSpeed(SpeedLevel::Sport).payload(1)["print"]["param"],
            "3"
        );
        let job = Command::ProjectFile(ProjectFile {
            file_name: "cube.gcode.3mf".into(),
            plate: 2,
            subtask_name: "Cube".into(),
            ams_mapping: vec![0, -1],
            use_ams: true,
            bed_leveling: true,
            timelapse: false,
            md5: "0123456789ABCDEF0123456789ABCDEF".into(),
        });
        let p = &job.payload(5)["print"];
        assert_eq!(p["param"], "Metadata/plate_2.gcode");
        assert_eq!(p["url"], "ftp:///cube.gcode.3mf");
        assert_eq!(p["ams_mapping"], json!([0, -1]));
        assert_eq!(p["use_ams"], true);
        assert_eq!(p["md5"], "0123456789ABCDEF0123456789ABCDEF");
        assert_eq!(p["subtask_name"], "Cube");
    }
}
