//! The seven services and their names as they appear on NATS (discovery, queue groups).

use std::fmt;

/// A Printyard service. Its `as_str` is its NATS service name and queue group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceName {
    Gateway,
    Api,
    Archive,
    Scheduler,
    Stats,
    Notifier,
    Filament,
}

impl ServiceName {
    /// Every service, in the order health reports list them.
    pub const ALL: [ServiceName; 7] = [
        ServiceName::Api,
        ServiceName::Gateway,
        ServiceName::Archive,
        ServiceName::Scheduler,
        ServiceName::Stats,
        ServiceName::Notifier,
        ServiceName::Filament,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ServiceName::Gateway => "gateway",
            ServiceName::Api => "api",
            ServiceName::Archive => "archive",
            ServiceName::Scheduler => "scheduler",
            ServiceName::Stats => "stats",
            ServiceName::Notifier => "notifier",
            ServiceName::Filament => "filament",
        }
    }

    /// The Postgres schema that holds this service's tables; `None` for the gateway, which
    /// runs at a site with no database.
    pub const fn schema(self) -> Option<&'static str> {
        match self {
            ServiceName::Gateway => None,
            ServiceName::Api => Some("api"),
            ServiceName::Archive => Some("archive"),
            ServiceName::Scheduler => Some("queue"),
            ServiceName::Stats => Some("stats"),
            ServiceName::Notifier => Some("notifier"),
            ServiceName::Filament => Some("filament"),
        }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_central_service_has_a_distinct_schema_and_the_gateway_none() {
        let mut schemas: Vec<_> = ServiceName::ALL.iter().filter_map(|s| s.schema()).collect();
        schemas.sort();
        schemas.dedup();
        assert_eq!(schemas.len(), 6);
        assert_eq!(ServiceName::Gateway.schema(), None);
    }
}
