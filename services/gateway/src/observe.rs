//! What the gateway tells an operator on `/metrics`: printers held and connected, sessions
//! ended by cause, what the printers send, status writes, events, command and capture times,
//! cameras. `k8s/grafana/printyard-gateway.json` is a dashboard of them. Every metric is
//! registered at start (at zero), so a dashboard shows a quiet gateway as zero, not as missing.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

pub const HELD: &str = "printyard_gateway_printers_held";
pub const CONNECTED: &str = "printyard_gateway_printers_connected";
pub const RECONNECTS: &str = "printyard_gateway_reconnects_total";
pub const MESSAGES: &str = "printyard_gateway_messages_received_total";
pub const BYTES: &str = "printyard_gateway_bytes_received_total";
pub const UNREADABLE: &str = "printyard_gateway_unreadable_payloads_total";
pub const STATUS_WRITES: &str = "printyard_gateway_status_writes_total";
pub const EVENTS: &str = "printyard_gateway_events_published_total";
pub const COMMANDS: &str = "printyard_gateway_command_duration_seconds";
pub const CAPTURES: &str = "printyard_gateway_capture_duration_seconds";
pub const CAMERA_OPENS: &str = "printyard_gateway_camera_opens_total";
pub const CAMERA_FRAMES: &str = "printyard_gateway_camera_frames_total";
pub const CAMERA_REOPENS: &str = "printyard_gateway_camera_reopens_total";
pub const TRANSCODERS: &str = "printyard_gateway_camera_transcoders_total";
pub const COALESCED: &str = "printyard_gateway_reports_coalesced_total";
pub const SILENCE_PROBES: &str = "printyard_gateway_silence_probes_total";
pub const SILENCE_FORGIVEN: &str = "printyard_gateway_silence_forgiven_total";
pub const PINS_STORED: &str = "printyard_gateway_pins_stored_total";
pub const CONNECTS: &str = "printyard_gateway_connect_duration_seconds";
pub const REPORT_WAIT: &str = "printyard_gateway_report_wait_seconds";
pub const RENEWALS: &str = "printyard_gateway_lease_renewal_seconds";
pub const LEASES_LOST: &str = "printyard_gateway_leases_lost_total";

/// Every metric of the gateway's own (RPC timings come from the shared runtime).
pub const ALL: [&str; 22] = [
    HELD,
    CONNECTED,
    RECONNECTS,
    MESSAGES,
    BYTES,
    UNREADABLE,
    STATUS_WRITES,
    EVENTS,
    COMMANDS,
    CAPTURES,
    CAMERA_OPENS,
    CAMERA_FRAMES,
    CAMERA_REOPENS,
    TRANSCODERS,
    COALESCED,
    SILENCE_PROBES,
    SILENCE_FORGIVEN,
    PINS_STORED,
    CONNECTS,
    REPORT_WAIT,
    RENEWALS,
    LEASES_LOST,
];

/// Describes every metric and registers the unlabelled ones at zero.
pub fn describe() {
    describe_gauge!(HELD, "Printers whose ownership lease this gateway holds");
    describe_gauge!(CONNECTED, "Held printers with a live MQTT session");
    describe_counter!(
        RECONNECTS,
        "Printer sessions ended, by cause: not_authorized, refused, tls, connect_timeout, silence, io"
    );
    describe_counter!(MESSAGES, "MQTT messages received from printers");
    describe_counter!(BYTES, "Payload bytes received from printers over MQTT");
    describe_counter!(UNREADABLE, "MQTT payloads that could not be parsed");
    describe_counter!(
        STATUS_WRITES,
        "Printer statuses written to the printer_status bucket"
    );
    describe_counter!(EVENTS, "Farm events published, by kind");
    describe_histogram!(
        COMMANDS,
        metrics::Unit::Seconds,
        "From a command sent to a printer to its answer, by command and outcome"
    );
    describe_histogram!(
        CAPTURES,
        metrics::Unit::Seconds,
        "Fetching a print's 3MF from its printer, by outcome"
    );
    describe_counter!(CAMERA_OPENS, "Camera upstreams opened");
    describe_counter!(CAMERA_FRAMES, "Camera frames published to viewers");
    describe_counter!(
        CAMERA_REOPENS,
        "Camera upstreams lost and reopened for their viewers"
    );
    describe_counter!(TRANSCODERS, "ffmpeg processes started for RTSPS cameras");
    describe_counter!(
        COALESCED,
        "Reports merged into the next one because the gateway was behind on a printer"
    );
    describe_counter!(
        SILENCE_PROBES,
        "Silent printers asked for a full report before their connection is given up"
    );
    describe_counter!(
        SILENCE_FORGIVEN,
        "Silence deadlines that fired late (the gateway was busy) and were measured again"
    );
    describe_counter!(
        PINS_STORED,
        "Certificates trusted on first use and stored by api"
    );
    describe_histogram!(
        RENEWALS,
        metrics::Unit::Seconds,
        "How long one round renewing every held lease took (near gateway.lease_secs, leases expire)"
    );
    describe_counter!(
        LEASES_LOST,
        "Connections stopped because another gateway holds their printer's lease"
    );
    gauge!(HELD).set(0.0);
    gauge!(CONNECTED).set(0.0);
    for name in [
        MESSAGES,
        BYTES,
        UNREADABLE,
        STATUS_WRITES,
        CAMERA_OPENS,
        CAMERA_FRAMES,
        CAMERA_REOPENS,
        TRANSCODERS,
        COALESCED,
        SILENCE_PROBES,
        SILENCE_FORGIVEN,
        PINS_STORED,
        LEASES_LOST,
    ] {
        counter!(name).absolute(0);
    }
}

pub fn held(printers: usize) {
    gauge!(HELD).set(printers as f64);
}

/// A printer's session came up (`true`) or went down.
pub fn connected(up: bool) {
    let gauge = gauge!(CONNECTED);
    if up {
        gauge.increment(1.0);
    } else {
        gauge.decrement(1.0);
    }
}

pub fn session_ended(cause: &'static str) {
    counter!(RECONNECTS, "cause" => cause).increment(1);
}

pub fn received(bytes: usize, waited: Duration) {
    histogram!(REPORT_WAIT).record(waited.as_secs_f64());
    counter!(MESSAGES).increment(1);
    counter!(BYTES).increment(bytes as u64);
}

pub fn unreadable() {
    counter!(UNREADABLE).increment(1);
}

pub fn status_written() {
    counter!(STATUS_WRITES).increment(1);
}

pub fn event_published(kind: &'static str) {
    counter!(EVENTS, "kind" => kind).increment(1);
}

pub fn command_answered(command: &'static str, outcome: &'static str, took: Duration) {
    histogram!(COMMANDS, "command" => command, "outcome" => outcome).record(took.as_secs_f64());
}

pub fn capture_done(outcome: &'static str, took: Duration) {
    histogram!(CAPTURES, "outcome" => outcome).record(took.as_secs_f64());
}

pub fn coalesced() {
    counter!(COALESCED).increment(1);
}

pub fn silence_probed() {
    counter!(SILENCE_PROBES).increment(1);
}

pub fn silence_forgiven() {
    counter!(SILENCE_FORGIVEN).increment(1);
}

pub fn pins_stored(count: usize) {
    counter!(PINS_STORED).increment(count as u64);
}

pub fn connected_after(timing: printyard_bambu::mqtt::ConnectTiming) {
    histogram!(CONNECTS, "phase" => "wait").record(timing.waited.as_secs_f64());
    histogram!(CONNECTS, "phase" => "connect").record(timing.connected_in.as_secs_f64());
}

pub fn renewed_leases(took: Duration) {
    histogram!(RENEWALS).record(took.as_secs_f64());
}

pub fn lease_lost() {
    counter!(LEASES_LOST).increment(1);
}
