//! Telemetry (DESIGN §12): structured logs, OpenTelemetry traces carried across partners with
//! W3C trace context in gRPC metadata, and metrics on a Prometheus endpoint and over OTLP.
//!
//! Nothing here may carry a worker's ID number, phone or bank card: spans and log lines name
//! partners, RPCs, case ids, log indexes and rule ids — never payload fields.

pub mod metrics;
pub mod tracecontext;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

/// Keeps the trace pipeline alive; flushes the spans still buffered when dropped.
pub struct TelemetryGuard {
    tracer: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.tracer.shutdown() {
            eprintln!("warning: flushing the last spans failed: {e}");
        }
    }
}

/// The resource every span and metric is reported under.
pub fn resource(config: &TelemetryConfig) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

/// Installs the process-wide subscriber: the `WAGELINK_LOG` filter (default `info`), log lines
/// to `writer` (text, or JSON with one line per finished span), and OpenTelemetry spans —
/// exported over OTLP/gRPC when `otlp_endpoint` is set, and always given W3C trace ids so trace
/// context reaches partners. Call once, inside the tokio runtime.
pub fn install<W>(config: &TelemetryConfig, writer: W) -> Result<TelemetryGuard, String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_env("WAGELINK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    install_with_filter(config, writer, filter)
}

/// As [`install`], with an explicit filter (e.g. `debug`, to check what every level writes).
pub fn install_with_filter<W>(
    config: &TelemetryConfig,
    writer: W,
    filter: EnvFilter,
) -> Result<TelemetryGuard, String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let mut builder = SdkTracerProvider::builder().with_resource(resource(config));
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| format!("the OTLP span exporter for {endpoint}: {e}"))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("wagelink"));
    let lines = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_span_list(true)
            .with_span_events(FmtSpan::CLOSE)
            .with_writer(writer)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(otel)
        .try_init()
        .map_err(|e| format!("a tracing subscriber is already installed: {e}"))?;
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(TelemetryGuard { tracer: provider })
}
