//! NATS subjects, built by functions so that no service spells one by hand.
//!
//! Service calls live under `printyard.<service>.<endpoint>` (see [`crate::rpc::Endpoint`]);
//! discovery uses the NATS micro-service protocol's `$SRV.*` subjects.

use crate::ServiceName;

/// Root of every Printyard subject.
pub const ROOT: &str = "printyard";

/// The subject group under which a service's request/reply endpoints live.
pub fn service_group(service: ServiceName) -> String {
    format!("{ROOT}.{}", service.as_str())
}

/// The NATS micro-service discovery ping for every instance of `service`.
pub fn discovery_ping(service: ServiceName) -> String {
    format!("$SRV.PING.{}", service.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_built_from_the_service_name() {
        assert_eq!(service_group(ServiceName::Archive), "printyard.archive");
        assert_eq!(discovery_ping(ServiceName::Stats), "$SRV.PING.stats");
    }
}
