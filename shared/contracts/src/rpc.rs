//! Typed request/reply endpoints between services.
//!
//! An [`Endpoint`] names the service that answers, the endpoint's name within that service's
//! subject group, and (as types) what goes in and what comes back. Both sides use the same
//! constant, so a caller cannot send a request the handler does not expect.

use std::marker::PhantomData;

use crate::{ServiceName, subjects};

/// Header carrying the [`crate::ErrorCode`] of a failed service call, beside the NATS
/// micro-service error headers (`Nats-Service-Error`, `Nats-Service-Error-Code`).
pub const ERROR_CODE_HEADER: &str = "Printyard-Error-Code";

/// A request/reply endpoint of `service`, taking `Req` and answering `Resp` (both JSON).
pub struct Endpoint<Req, Resp> {
    pub service: ServiceName,
    pub name: &'static str,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> Endpoint<Req, Resp> {
    pub const fn new(service: ServiceName, name: &'static str) -> Self {
        Self {
            service,
            name,
            _types: PhantomData,
        }
    }

    /// The subject group the endpoint is registered under (`printyard.<service>`).
    pub fn group(&self) -> String {
        subjects::service_group(self.service)
    }

    /// The same endpoint with its answer as the bytes it travels as: for a handler that writes
    /// (or keeps) the answer's JSON itself, or a caller that passes it on unread.
    pub const fn raw(self) -> Endpoint<Req, ()> {
        Endpoint::new(self.service, self.name)
    }

    /// The full subject a caller sends to.
    pub fn subject(&self) -> String {
        format!("{}.{}", self.group(), self.name)
    }

    /// The subject of the endpoint for one site (`<group>.<name>.<site>`), for endpoints
    /// that answer per site so that a site's credentials can be limited to its own.
    pub fn site_subject(&self, site: &crate::site::Site) -> String {
        format!("{}.{}.{site}", self.group(), self.name)
    }
}

impl<Req, Resp> Clone for Endpoint<Req, Resp> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<Req, Resp> Copy for Endpoint<Req, Resp> {}

impl<Req, Resp> std::fmt::Debug for Endpoint<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.subject())
    }
}

/// A request/reply call to the gateway holding one printer, taking `Req` and answering `Resp`,
/// on a subject of that printer (`printyard.printers.<site>.<id>.<name>`): only the gateway
/// holding the printer's lease subscribes, so a printer no gateway holds answers NATS "no
/// responders" at once.
pub struct PrinterEndpoint<Req, Resp> {
    pub name: &'static str,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> PrinterEndpoint<Req, Resp> {
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _types: PhantomData,
        }
    }

    /// The subject of printer `printer_id` of `site`.
    pub fn subject(&self, site: &crate::site::Site, printer_id: i64) -> String {
        format!(
            "{}.printers.{site}.{printer_id}.{}",
            subjects::ROOT,
            self.name
        )
    }
}

impl<Req, Resp> Clone for PrinterEndpoint<Req, Resp> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<Req, Resp> Copy for PrinterEndpoint<Req, Resp> {}

/// A request that carries nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Empty {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_subject_is_group_dot_name() {
        const E: Endpoint<Empty, Empty> = Endpoint::new(ServiceName::Archive, "summary");
        assert_eq!(E.group(), "printyard.archive");
        assert_eq!(E.subject(), "printyard.archive.summary");
    }
}
