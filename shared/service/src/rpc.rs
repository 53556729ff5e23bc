//! Typed service calls over NATS request/reply (the NATS micro-service protocol).
//!
//! Callers use [`RpcClient::call`] with an [`Endpoint`] from contracts: it carries the trace
//! context, has a deadline, and turns "no responders" and time-outs into
//! [`RpcError::Unavailable`] at once, never a hang. Handlers are served by
//! [`crate::Runtime::serve`], which answers failures in the reference's `{detail, code}` terms.

use std::time::{Duration, Instant};

use async_nats::Client;
use async_nats::client::RequestErrorKind;
use async_nats::service::NATS_SERVICE_ERROR;
use bytes::Bytes;
use printyard_contracts::rpc::{ERROR_CODE_HEADER, PrinterEndpoint};
use printyard_contracts::site::Site;
use printyard_contracts::{Endpoint, ErrorBody, ErrorCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::nats::traced_headers;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// No instance answered in time, or none is running.
    #[error("{service} is unavailable: {reason}")]
    Unavailable {
        service: &'static str,
        reason: String,
    },
    /// The service answered with an error.
    #[error("{0}")]
    Remote(ErrorBody),
    /// The answer could not be understood (a version skew between services).
    #[error("{service} answered something unreadable: {reason}")]
    BadReply {
        service: &'static str,
        reason: String,
    },
}

impl RpcError {
    /// The `{detail, code}` to show a client.
    pub fn to_body(&self) -> ErrorBody {
        match self {
            RpcError::Unavailable { service, .. } => ErrorBody::new(
                ErrorCode::ServiceUnavailable,
                format!("The {service} service is unavailable, try again shortly"),
            ),
            RpcError::Remote(body) => body.clone(),
            RpcError::BadReply { .. } => {
                ErrorBody::new(ErrorCode::InternalError, "Internal server error")
            }
        }
    }
}

/// Why a call to a printer's gateway brought no answer (what the printer answered, accepted or
/// refused, is the call's answer).
#[derive(Debug, thiserror::Error)]
pub enum PrinterCallError {
    /// No gateway of the site holds the printer (NATS "no responders").
    #[error("no gateway of site `{site}` holds it")]
    NoGateway { site: Site },
    #[error("no answer within {} s", .0.as_secs())]
    TimedOut(Duration),
    #[error("the gateway could not be reached: {0}")]
    Unreachable(String),
    /// The answer could not be understood (a version skew between services).
    #[error("the gateway's answer was unreadable: {0}")]
    Unreadable(String),
}

/// A NATS client with a deadline for every call.
#[derive(Clone, Debug)]
pub struct RpcClient {
    client: Client,
    timeout: Duration,
}

impl RpcClient {
    pub fn new(client: Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    pub fn nats(&self) -> &Client {
        &self.client
    }

    /// Calls `endpoint` with `request` and decodes its answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        endpoint: Endpoint<Req, Resp>,
        request: &Req,
    ) -> Result<Resp, RpcError> {
        self.call_within(endpoint, request, self.timeout).await
    }

    /// [`RpcClient::call`] with its own deadline, for calls known to take long (a large file).
    pub async fn call_within<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        endpoint: Endpoint<Req, Resp>,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        let service = endpoint.service.as_str();
        let raw = endpoint.raw();
        let payload = self.call_bytes_within(raw, request, timeout).await?;
        serde_json::from_slice(&payload).map_err(|e| RpcError::BadReply {
            service,
            reason: e.to_string(),
        })
    }

    /// Calls the gateway holding printer `printer_id` of `site` (in the caller's trace), within
    /// `deadline`: every printer call, from `api` and the scheduler alike, goes through here.
    pub async fn call_printer<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        endpoint: PrinterEndpoint<Req, Resp>,
        site: &Site,
        printer_id: i64,
        request: &Req,
        deadline: Duration,
    ) -> Result<Resp, PrinterCallError> {
        let subject = endpoint.subject(site, printer_id);
        let span = tracing::info_span!(
            "printer.call",
            otel.kind = "client",
            rpc.subject = %subject,
            printyard.printer = printer_id
        );
        async {
            let payload = serde_json::to_vec(request)
                .map_err(|e| PrinterCallError::Unreadable(e.to_string()))?;
            let asked = async_nats::client::Request::new()
                .payload(payload.into())
                .headers(traced_headers())
                .timeout(Some(deadline));
            let answer =
                tokio::time::timeout(deadline, self.client.send_request(subject, asked)).await;
            let message = match answer {
                Err(_) => return Err(PrinterCallError::TimedOut(deadline)),
                Ok(Err(err)) if err.kind() == RequestErrorKind::NoResponders => {
                    return Err(PrinterCallError::NoGateway { site: site.clone() });
                }
                Ok(Err(err)) if err.kind() == RequestErrorKind::TimedOut => {
                    return Err(PrinterCallError::TimedOut(deadline));
                }
                Ok(Err(err)) => return Err(PrinterCallError::Unreachable(err.to_string())),
                Ok(Ok(message)) => message,
            };
            serde_json::from_slice(&message.payload)
                .map_err(|e| PrinterCallError::Unreadable(e.to_string()))
        }
        .instrument(span)
        .await
    }

    /// Calls `endpoint` for one site (see `Runtime::serve_per_site`).
    pub async fn call_site<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        endpoint: Endpoint<Req, Resp>,
        site: &Site,
        request: &Req,
    ) -> Result<Resp, RpcError> {
        let service = endpoint.service.as_str();
        let subject = endpoint.site_subject(site);
        let span = tracing::info_span!("rpc.call", otel.kind = "client", rpc.subject = %subject);
        let payload = self
            .call_inner(endpoint.raw(), subject, request, self.timeout)
            .instrument(span)
            .await?;
        serde_json::from_slice(&payload).map_err(|e| RpcError::BadReply {
            service,
            reason: e.to_string(),
        })
    }

    /// Calls an endpoint that answers raw bytes (see `Runtime::serve_bytes`).
    pub async fn call_bytes<Req: Serialize>(
        &self,
        endpoint: Endpoint<Req, ()>,
        request: &Req,
    ) -> Result<Bytes, RpcError> {
        self.call_bytes_within(endpoint, request, self.timeout)
            .await
    }

    async fn call_bytes_within<Req: Serialize>(
        &self,
        endpoint: Endpoint<Req, ()>,
        request: &Req,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let subject = endpoint.subject();
        let span = tracing::info_span!("rpc.call", otel.kind = "client", rpc.subject = %subject);
        self.call_inner(endpoint, subject, request, timeout)
            .instrument(span)
            .await
    }

    async fn call_inner<Req: Serialize>(
        &self,
        endpoint: Endpoint<Req, ()>,
        subject: String,
        request: &Req,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let service = endpoint.service.as_str();
        let payload = serde_json::to_vec(request).map_err(|e| RpcError::BadReply {
            service,
            reason: format!("request not encodable: {e}"),
        })?;
        let started = Instant::now();
        // The client's own request timeout (10 s by default) would cut a longer call short.
        let request = async_nats::client::Request::new()
            .payload(Bytes::from(payload))
            .headers(traced_headers())
            .timeout(Some(timeout));
        let sent = self.client.send_request(subject, request);
        let outcome = tokio::time::timeout(timeout, sent).await;
        metrics::histogram!("printyard_rpc_client_duration_seconds", "service" => service)
            .record(started.elapsed().as_secs_f64());
        let message = match outcome {
            Err(_) => {
                return Err(RpcError::Unavailable {
                    service,
                    reason: format!("no answer within {} ms", timeout.as_millis()),
                });
            }
            Ok(Err(err)) => {
                let reason = match err.kind() {
                    RequestErrorKind::NoResponders => "no instance is running".to_owned(),
                    RequestErrorKind::TimedOut => "timed out".to_owned(),
                    RequestErrorKind::Other => err.to_string(),
                    _ => err.to_string(),
                };
                return Err(RpcError::Unavailable { service, reason });
            }
            Ok(Ok(message)) => message,
        };
        if let Some(headers) = &message.headers
            && let Some(detail) = headers.get(NATS_SERVICE_ERROR)
        {
            let code = headers
                .get(ERROR_CODE_HEADER)
                .and_then(|c| ErrorCode::parse(c.as_str()))
                .unwrap_or(ErrorCode::InternalError);
            return Err(RpcError::Remote(ErrorBody::new(code, detail.as_str())));
        }
        Ok(message.payload)
    }
}

/// Builds the error reply of a failed handler: NATS micro-service error headers (so `$SRV.STATS`
/// counts it) plus our own code header.
pub(crate) fn error_reply(
    body: &ErrorBody,
) -> (async_nats::service::error::Error, async_nats::HeaderMap) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(ERROR_CODE_HEADER, body.code.as_str());
    // Header values cannot hold line breaks.
    let status = body.detail.replace(['\r', '\n'], " ");
    (
        async_nats::service::error::Error {
            status,
            code: body.code.http_status() as usize,
        },
        headers,
    )
}
