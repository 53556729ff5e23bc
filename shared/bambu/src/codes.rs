//! How printers' numeric codes are shown to people.
//!
//! `print_error` is a 32-bit number shown as `XXXX_XXXX` (upper-case hex); HMS entries are a
//! pair of 32-bit `attr` and `code` shown as `HMS_AAAA_AAAA_CCCC_CCCC`. Source:
//! the protocol notes in `shared/design/BAMBU-PROTOCOL.md`.

use printyard_contracts::printer::HmsSeverity;

/// `print_error` as printers and the Bambu wiki show it, e.g. 50348044 → `0300_400C`.
pub fn print_error_code(value: u32) -> String {
    format!("{:04X}_{:04X}", value >> 16, value & 0xFFFF)
}

/// `print_error` 0300_400C: the print was cancelled by the user.
pub const PRINT_ERROR_CANCELLED: u32 = 0x0300_400C;

/// An HMS entry's code, e.g. attr 0x0C00_0300, code 0x0002_0001 → `HMS_0C00_0300_0002_0001`.
pub fn hms_code(attr: u32, code: u32) -> String {
    format!(
        "HMS_{:04X}_{:04X}_{:04X}_{:04X}",
        attr >> 16,
        attr & 0xFFFF,
        code >> 16,
        code & 0xFFFF
    )
}

/// HMS severity, from the high half of `code`: 1 fatal, 2 serious, 3 common, 4 info.
pub fn hms_severity(code: u32) -> HmsSeverity {
    match code >> 16 {
        1 => HmsSeverity::Fatal,
        2 => HmsSeverity::Serious,
        3 => HmsSeverity::Common,
        4 => HmsSeverity::Info,
        _ => HmsSeverity::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelled_print_error_is_shown_as_0300_400c() {
        assert_eq!(PRINT_ERROR_CANCELLED, 50348044);
        assert_eq!(print_error_code(50348044), "0300_400C");
    }

    #[test]
    fn hms_code_is_four_upper_case_groups() {
        assert_eq!(
            hms_code(0x0C00_0300, 0x0002_0001),
            "HMS_0C00_0300_0002_0001"
        );
        assert_eq!(
            hms_code(0x0500_0100, 0x0003_000A),
            "HMS_0500_0100_0003_000A"
        );
    }

    #[test]
    fn severity_is_the_high_half_of_code() {
        assert_eq!(hms_severity(0x0001_0000), HmsSeverity::Fatal);
        assert_eq!(hms_severity(0x0002_0001), HmsSeverity::Serious);
        assert_eq!(hms_severity(0x0003_000A), HmsSeverity::Common);
        assert_eq!(hms_severity(0x0004_0000), HmsSeverity::Info);
        assert_eq!(hms_severity(0x0009_0000), HmsSeverity::Unknown);
    }
}
