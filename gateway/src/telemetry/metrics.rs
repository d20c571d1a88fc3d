//! The gateway's metrics, as OpenTelemetry instruments of one meter provider per gateway: read
//! on demand for the Prometheus endpoint (text exposition format 0.0.4) and, when an OTLP
//! endpoint is configured, pushed there periodically.
//!
//! - `wagelink_rpc_requests_total{rpc, partner_kind, code}`: calls by RPC, caller kind, status;
//! - `wagelink_rpc_duration_seconds{rpc, code}`: latency histogram (to the response headers);
//! - `wagelink_mailbox_depth{partner, partner_kind}`, `wagelink_mailbox_dead_letters{partner}`;
//! - `wagelink_overdue_cases{district}`: open cases with a clock that ran out;
//! - `wagelink_certificate_expiry_seconds{partner, sha256}`: time left on each active
//!   certificate of an active partner (negative once expired);
//! - `wagelink_log_entries`: the evidence log's size.
//!
//! Labels name partners, RPCs, regions and certificates — never anything from a payload.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _, ObservableGauge};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::config::TelemetryConfig;
use crate::identity::{PartnerStatus, Registry};
use crate::store::{CertificateStatus, Store, StoreError};

/// Latency buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A manual reader shared between the meter provider and the Prometheus endpoint.
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// Values sampled from the store for the observable gauges.
#[derive(Debug, Default)]
struct Samples {
    /// (partner, partner kind, pending, dead-lettered)
    mailboxes: Vec<(String, String, u64, u64)>,
    /// (district code, open overdue cases)
    overdue: Vec<(String, u64)>,
    /// (partner, certificate SHA-256, seconds until not_after)
    certificates: Vec<(String, String, i64)>,
    log_entries: u64,
}

/// The instruments the gateway records into, and the readers that take them out.
pub struct Metrics {
    provider: SdkMeterProvider,
    reader: SharedReader,
    samples: Arc<Mutex<Samples>>,
    pub rpc_requests: Counter<u64>,
    pub rpc_duration: Histogram<f64>,
    _gauges: Vec<ObservableGauge<u64>>,
    _signed_gauges: Vec<ObservableGauge<i64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn lock(samples: &Mutex<Samples>) -> std::sync::MutexGuard<'_, Samples> {
    samples.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// A meter provider for this gateway: always readable by the Prometheus endpoint, and
    /// pushed over OTLP every `export_interval` when `otlp_endpoint` is set.
    pub fn new(config: &TelemetryConfig) -> Result<Arc<Self>, String> {
        let reader = SharedReader(Arc::new(
            ManualReader::builder()
                .with_temporality(Temporality::Cumulative)
                .build(),
        ));
        let mut builder = SdkMeterProvider::builder()
            .with_resource(super::resource(config))
            .with_reader(reader.clone());
        if let Some(endpoint) = &config.otlp_endpoint {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()
                .map_err(|e| format!("the OTLP metric exporter for {endpoint}: {e}"))?;
            builder = builder.with_reader(
                opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
                    .with_interval(Duration::from_secs(config.metrics_interval_secs.max(1)))
                    .build(),
            );
        }
        let provider = builder.build();
        let meter = provider.meter("wagelink");
        let samples = Arc::new(Mutex::new(Samples::default()));
        let s = samples.clone();
        let mailbox_depth = meter
            .u64_observable_gauge("wagelink_mailbox_depth")
            .with_description("Messages waiting in a partner's mailbox (not yet acknowledged)")
            .with_callback(move |o| {
                for (partner, kind, pending, _) in &lock(&s).mailboxes {
                    o.observe(
                        *pending,
                        &[
                            KeyValue::new("partner", partner.clone()),
                            KeyValue::new("partner_kind", kind.clone()),
                        ],
                    );
                }
            })
            .build();
        let s = samples.clone();
        let dead_letters = meter
            .u64_observable_gauge("wagelink_mailbox_dead_letters")
            .with_description("Messages dead-lettered after too many delivery attempts")
            .with_callback(move |o| {
                for (partner, _, _, dead) in &lock(&s).mailboxes {
                    o.observe(*dead, &[KeyValue::new("partner", partner.clone())]);
                }
            })
            .build();
        let s = samples.clone();
        let overdue = meter
            .u64_observable_gauge("wagelink_overdue_cases")
            .with_description("Open cases with a clock that ran out, by district")
            .with_callback(move |o| {
                for (district, n) in &lock(&s).overdue {
                    o.observe(*n, &[KeyValue::new("district", district.clone())]);
                }
            })
            .build();
        let s = samples.clone();
        let log_entries = meter
            .u64_observable_gauge("wagelink_log_entries")
            .with_description("Entries in the evidence log")
            .with_callback(move |o| o.observe(lock(&s).log_entries, &[]))
            .build();
        let s = samples.clone();
        let expiry = meter
            .i64_observable_gauge("wagelink_certificate_expiry_seconds")
            .with_description(
                "Seconds until each active partner certificate expires (negative: expired)",
            )
            .with_unit("s")
            .with_callback(move |o| {
                for (partner, sha256, left) in &lock(&s).certificates {
                    o.observe(
                        *left,
                        &[
                            KeyValue::new("partner", partner.clone()),
                            KeyValue::new("sha256", sha256.clone()),
                        ],
                    );
                }
            })
            .build();
        Ok(Arc::new(Self {
            rpc_requests: meter
                .u64_counter("wagelink_rpc_requests")
                .with_description("Calls by RPC, caller's partner kind and gRPC status")
                .build(),
            rpc_duration: meter
                .f64_histogram("wagelink_rpc_duration_seconds")
                .with_description("Time from request to response headers, by RPC and status")
                .with_unit("s")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            provider,
            reader,
            samples,
            _gauges: vec![mailbox_depth, dead_letters, overdue, log_entries],
            _signed_gauges: vec![expiry],
        }))
    }

    /// Re-reads the sampled values (mailboxes, overdue cases, certificates, log size).
    pub async fn sample(
        &self,
        store: &Store,
        registry: &Registry,
        log_entries: u64,
    ) -> Result<(), StoreError> {
        let now = crate::store::now_unix();
        let kind_of = |id: &str| {
            id.parse()
                .ok()
                .and_then(|id| registry.partner(&id))
                .map(|p| p.kind.to_string())
                .unwrap_or_else(|| "gateway".into())
        };
        // Every registered partner has a depth, 0 when its mailbox is empty; the store counts
        // only mailboxes holding something (and the gateway's own, if it ever has one).
        let mut depths: std::collections::BTreeMap<String, (u64, u64)> = registry
            .partners()
            .into_iter()
            .map(|p| (p.id.to_string(), (0, 0)))
            .collect();
        for (partner, pending, dead) in store.mailbox_depths().await? {
            depths.insert(partner, (pending, dead));
        }
        let mailboxes = depths
            .into_iter()
            .map(|(partner, (pending, dead))| {
                let kind = kind_of(&partner);
                (partner, kind, pending, dead)
            })
            .collect();
        let overdue = store.overdue_by_region().await?;
        let certificates = store
            .certificates()
            .await?
            .into_iter()
            .filter(|c| c.status == CertificateStatus::Active)
            .filter(|c| {
                registry
                    .partner(&c.facts.partner_id)
                    .is_some_and(|p| p.status == PartnerStatus::Active)
            })
            .map(|c| {
                (
                    c.facts.partner_id.to_string(),
                    c.facts.sha256,
                    c.facts.not_after - now,
                )
            })
            .collect();
        *lock(&self.samples) = Samples {
            mailboxes,
            overdue,
            certificates,
            log_entries,
        };
        Ok(())
    }

    /// Everything recorded so far, in the Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut rm = ResourceMetrics::default();
        if let Err(e) = self.reader.collect(&mut rm) {
            tracing::warn!(error = %e, "collecting metrics failed");
        }
        render(&rm)
    }

    /// Flushes the OTLP exporter, if any, and stops the readers.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "stopping the metrics pipeline");
        }
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels<'a>(
    attributes: impl Iterator<Item = &'a KeyValue>,
    extra: Option<(&str, &str)>,
) -> String {
    // Sorted by name: the SDK does not keep the order attributes were recorded in.
    let mut sorted: Vec<&KeyValue> = attributes.collect();
    sorted.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
    let mut pairs: Vec<String> = sorted
        .iter()
        .map(|kv| format!("{}=\"{}\"", kv.key.as_str(), escape(&kv.value.as_str())))
        .collect();
    if let Some((k, v)) = extra {
        pairs.push(format!("{k}=\"{v}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

/// A number as Prometheus writes it.
trait Sample: Copy {
    fn text(self) -> String;
}

impl Sample for u64 {
    fn text(self) -> String {
        self.to_string()
    }
}

impl Sample for i64 {
    fn text(self) -> String {
        self.to_string()
    }
}

impl Sample for f64 {
    fn text(self) -> String {
        if self.is_infinite() {
            if self > 0.0 { "+Inf" } else { "-Inf" }.into()
        } else {
            format!("{self}")
        }
    }
}

fn render_data<T: Sample>(out: &mut String, name: &str, help: &str, data: &MetricData<T>) {
    match data {
        MetricData::Gauge(g) => {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for p in g.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(p.attributes(), None),
                    p.value().text()
                );
            }
        }
        MetricData::Sum(s) => {
            let (kind, series) = if s.is_monotonic() {
                ("counter", format!("{name}_total"))
            } else {
                ("gauge", name.to_owned())
            };
            let _ = writeln!(out, "# HELP {series} {help}\n# TYPE {series} {kind}");
            for p in s.data_points() {
                let _ = writeln!(
                    out,
                    "{series}{} {}",
                    labels(p.attributes(), None),
                    p.value().text()
                );
            }
        }
        MetricData::Histogram(h) => {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for p in h.data_points() {
                let mut cumulative = 0u64;
                let bounds: Vec<f64> = p.bounds().collect();
                for (i, count) in p.bucket_counts().enumerate() {
                    cumulative += count;
                    let le = bounds.get(i).map_or("+Inf".to_owned(), |b| b.text());
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {cumulative}",
                        labels(p.attributes(), Some(("le", &le)))
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_sum{} {}",
                    labels(p.attributes(), None),
                    p.sum().text()
                );
                let _ = writeln!(
                    out,
                    "{name}_count{} {}",
                    labels(p.attributes(), None),
                    p.count()
                );
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// Renders collected metrics in the Prometheus text exposition format.
fn render(rm: &ResourceMetrics) -> String {
    let mut out = String::new();
    for scope in rm.scope_metrics() {
        for metric in scope.metrics() {
            let help = escape(metric.description());
            match metric.data() {
                AggregatedMetrics::U64(d) => render_data(&mut out, metric.name(), &help, d),
                AggregatedMetrics::I64(d) => render_data(&mut out, metric.name(), &help, d),
                AggregatedMetrics::F64(d) => render_data(&mut out, metric.name(), &help, d),
            }
        }
    }
    out
}

/// Serves `GET /metrics` (plain HTTP, for Prometheus) on `listener` until shutdown; each scrape
/// samples the store first.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: Store,
    registry: Arc<Registry>,
    log_size: impl Fn() -> u64 + Send + Sync + 'static,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let log_size = Arc::new(log_size);
    loop {
        let (mut socket, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::server::stopped(shutdown.clone()) => return,
        };
        let (metrics, store, registry, log_size) = (
            metrics.clone(),
            store.clone(),
            registry.clone(),
            log_size.clone(),
        );
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => request.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            let line = String::from_utf8_lossy(&request);
            let (status, body) = if line.starts_with("GET /metrics ") {
                if let Err(e) = metrics.sample(&store, &registry, log_size()).await {
                    tracing::warn!(error = %e, "metrics endpoint: sampling the store failed");
                }
                ("200 OK", metrics.prometheus())
            } else {
                (
                    "404 Not Found",
                    "only GET /metrics is served here\n".to_owned(),
                )
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

/// Samples the store every `every` so the OTLP export carries fresh gauges, until shutdown.
pub async fn sample_loop(
    metrics: Arc<Metrics>,
    store: Store,
    registry: Arc<Registry>,
    log_size: impl Fn() -> u64,
    every: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::server::stopped(shutdown.clone()) => return,
        }
        if let Err(e) = metrics.sample(&store, &registry, log_size()).await {
            tracing::warn!(error = %e, "sampling metrics from the store failed");
        }
    }
}

/// Binds the metrics endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
