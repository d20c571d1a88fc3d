//! The outermost layer: one span per call, continuing the caller's W3C trace context from the
//! request metadata and returning the span's own `traceparent` in the response headers; and the
//! call counted and timed in the metrics by RPC, caller kind and gRPC status.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use opentelemetry::KeyValue;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{HttpRequest, HttpResponse};
use crate::identity::Registry;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::tracecontext;
use crate::tls::PeerInfo;

/// The `traceparent` of the gateway's span for a call, for handlers that store it with what the
/// call puts in mailboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent(pub String);

#[derive(Clone)]
pub struct TraceLayer {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
}

impl TraceLayer {
    pub fn new(registry: Arc<Registry>, metrics: Arc<Metrics>) -> Self {
        Self { registry, metrics }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace {
            layer: self.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Trace<S> {
    layer: TraceLayer,
    inner: S,
}

/// The gRPC status of a response: in its headers for an error answered at once, otherwise OK
/// as far as the headers tell.
fn grpc_code(response: &HttpResponse) -> i32 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl<S> Service<HttpRequest> for Trace<S>
where
    S: Service<HttpRequest, Response = HttpResponse> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<HttpResponse, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: HttpRequest) -> Self::Future {
        let started = Instant::now();
        let rpc = request.uri().path().to_owned();
        let (service, method) = rpc
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((rpc.as_str(), ""));
        let partner = request.extensions().get::<PeerInfo>().and_then(|p| {
            self.layer
                .registry
                .check_pin(&p.certificate_sha256, crate::store::now_unix())
                .ok()
        });
        let (partner_id, partner_kind) = partner
            .map(|p| (p.id.to_string(), p.kind.to_string()))
            .unwrap_or_else(|| (String::new(), "unknown".to_owned()));
        let span = tracing::info_span!(
            "rpc",
            otel.name = %rpc,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            partner.id = %partner_id,
            partner.kind = %partner_kind,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let _ = span.set_parent(tracecontext::extract(request.headers()));
        if let Some(traceparent) = tracecontext::traceparent(&span) {
            request.extensions_mut().insert(TraceParent(traceparent));
        }
        let metrics = self.layer.metrics.clone();
        let fut = self.inner.call(request).instrument(span.clone());
        Box::pin(async move {
            let mut response = fut.await?;
            let code = grpc_code(&response);
            span.record("rpc.grpc.status_code", code);
            tracecontext::inject(&span, response.headers_mut());
            let code_name = format!("{:?}", tonic::Code::from_i32(code));
            metrics.rpc_requests.add(
                1,
                &[
                    KeyValue::new("rpc", rpc.clone()),
                    KeyValue::new("partner_kind", partner_kind),
                    KeyValue::new("code", code_name.clone()),
                ],
            );
            metrics.rpc_duration.record(
                started.elapsed().as_secs_f64(),
                &[KeyValue::new("rpc", rpc), KeyValue::new("code", code_name)],
            );
            Ok(response)
        })
    }
}
