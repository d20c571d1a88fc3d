//! OTLP export: with `[telemetry] otlp_endpoint` set, the gateway's spans and metrics reach an
//! OpenTelemetry collector over OTLP/gRPC. The collector is outside the product, so a stand-in
//! that speaks OTLP's real gRPC services on a real socket receives them here. The spans carry
//! the caller's trace id (W3C trace context) and no worker identifiers.
//!
//! This file is its own process: it installs the process-wide trace pipeline with OTLP export.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use wagelink_adapters::kit::traced;
use wagelink_gateway::config::TelemetryConfig;
use wagelink_proto::v1 as pb;
use wagelink_tests::{TestDb, TestGateway, header};

/// One span as received: its name, trace id and attributes (with the service name) as text.
type SpanSeen = (String, Vec<u8>, String);

/// What the stand-in collector received.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<SpanSeen>>>,
    metrics: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{v:?}"))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let attrs = format!("{service} {:?}", s.attributes);
                    spans.push((s.name, s.trace_id, attrs));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut metrics = self.metrics.lock().unwrap();
        for rm in request.into_inner().resource_metrics {
            for sm in rm.scope_metrics {
                metrics.extend(sm.metrics.into_iter().map(|m| m.name));
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_an_otlp_collector() {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(received.clone()))
            .add_service(MetricsServiceServer::new(received.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let telemetry = TelemetryConfig {
        otlp_endpoint: Some(endpoint.clone()),
        service_name: "wagelink-otlp-test".into(),
        metrics_interval_secs: 1,
        ..TelemetryConfig::default()
    };
    let guard = wagelink_gateway::telemetry::install(&telemetry, std::io::sink).unwrap();
    let gw =
        TestGateway::start_with(TestDb::sqlite().await, move |c| c.telemetry = telemetry).await;

    let caller_trace = "0af7651916cd43dd8448eb211c80319c";
    let source = "source-national-platform";
    let lead = pb::Lead {
        channel: pb::LeadChannel::NationalPlatform as i32,
        lead_type: pb::LeadType::Arrears as i32,
        region_code: "500112".into(),
        sector: pb::Sector::Manufacturing as i32,
        employer_name: "重庆某机械厂".into(),
        worker_count: 3,
        amount_fen: 1_200_000,
        reporter_phone: "13912345678".into(),
        ..Default::default()
    };
    pb::cases_client::CasesClient::new(gw.channel_as(source).await)
        .submit_lead(traced(
            gw.signer(source).seal(header(source), &lead).unwrap(),
            Some(&format!("00-{caller_trace}-b7ad6b7169203331-01")),
        ))
        .await
        .unwrap();

    // Metrics are pushed every second; spans when the pipeline flushes (at the latest on exit).
    let mut metrics_seen = false;
    for _ in 0..100 {
        metrics_seen = received
            .metrics
            .lock()
            .unwrap()
            .iter()
            .any(|m| m == "wagelink_rpc_requests");
        if metrics_seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metrics_seen, "no metrics reached the collector");
    gw.stop().await;
    drop(guard); // flushes the spans still buffered
    let spans = received.spans.lock().unwrap().clone();
    let rpc = spans
        .iter()
        .find(|(name, _, _)| name == "/wagelink.v1.Cases/SubmitLead")
        .unwrap_or_else(|| panic!("no SubmitLead span among {} spans", spans.len()));
    assert_eq!(
        hex::encode(&rpc.1),
        caller_trace,
        "the span continues the caller's trace"
    );
    assert!(rpc.2.contains("wagelink-otlp-test"), "{}", rpc.2);
    // The domain steps are spans of the same trace.
    assert!(
        spans
            .iter()
            .any(|(name, trace, _)| name == "route" && hex::encode(trace) == caller_trace),
        "{:?}",
        spans.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    // Nothing of the reporter travels with them.
    assert!(
        spans
            .iter()
            .all(|(_, _, attrs)| !attrs.contains("13912345678"))
    );
}
