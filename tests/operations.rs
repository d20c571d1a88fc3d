//! Operations: metrics scraped from the Prometheus endpoint; a case followed across agencies is
//! one trace (W3C trace context in gRPC metadata and in deliveries); no worker's ID number,
//! phone or bank card in any log line or span; nothing acknowledged is lost across a graceful
//! shutdown under load.
//!
//! The tests of this file share one process-wide telemetry pipeline (JSON log lines and span
//! records captured in memory, at debug level), installed once.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prost::Message;
use tonic::Code;
use wagelink_adapters::kit::traced;
use wagelink_gateway::config::{LogFormat, TelemetryConfig};
use wagelink_gateway::telemetry::tracecontext::trace_id;
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::case_action::Action;
use wagelink_proto::v1::cases_client::CasesClient;
use wagelink_tests::{TestDb, TestGateway, header};

/// Everything the telemetry pipeline wrote: log lines and finished spans, as JSON lines.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// The process's telemetry capture, installed on first use.
fn capture() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            let writer = capture.clone();
            let config = TelemetryConfig {
                log_format: LogFormat::Json,
                ..TelemetryConfig::default()
            };
            let guard = wagelink_gateway::telemetry::install_with_filter(
                &config,
                move || writer.clone(),
                tracing_subscriber::EnvFilter::new("debug"),
            )
            .expect("installing telemetry once");
            // Kept for the whole process.
            std::mem::forget(guard);
            capture
        })
        .clone()
}

fn lead(region: &str, employer: &str) -> pb::Lead {
    pb::Lead {
        channel: pb::LeadChannel::Hotline as i32,
        lead_type: pb::LeadType::Arrears as i32,
        region_code: region.into(),
        sector: pb::Sector::Construction as i32,
        project_industry: pb::Industry::HousingMunicipal as i32,
        project_name: format!("{employer}安置房项目"),
        employer_name: format!("重庆{employer}建筑工程有限公司"),
        worker_count: 12,
        amount_fen: 36_000_000,
        reporter_name: "李四".into(),
        reporter_phone: PHONE.into(),
        reporter_id_number: ID_NUMBER.into(),
        occurred_on: "2026-11-20".into(),
        ..Default::default()
    }
}

/// A reporter's phone and ID number (valid forms), seeded so their absence can be checked.
const PHONE: &str = "13912345678";
const ID_NUMBER: &str = "11010519491231002X";
/// A worker's bank card (passes the Luhn check) put where a careless log line would echo it.
const CARD: &str = "6222021234567890128";

/// Fetches the Prometheus endpoint.
async fn scrape(gw: &TestGateway) -> String {
    let addr = gw.running.metrics_addr.expect("a metrics endpoint");
    let (status, body) =
        wagelink_adapters::http::request(&addr.to_string(), "GET", "/metrics", None)
            .await
            .expect("scraping /metrics");
    assert_eq!(status, 200);
    String::from_utf8(body).expect("UTF-8 metrics")
}

/// The value of the sample named `series` (with its labels exactly), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn start(db: TestDb) -> TestGateway {
    TestGateway::start_with(db, |c| {
        c.telemetry.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
}

#[tokio::test]
async fn metrics_are_scraped_from_the_prometheus_endpoint() {
    capture();
    let gw = start(TestDb::sqlite().await).await;
    let receipt =
        wagelink_tests::submit_lead(&gw, "source-national-platform", &lead("500112", "渝北")).await;
    assert_eq!(receipt.routed_to[0].partner_id, "hrss-500112");
    let refused = CasesClient::new(gw.channel_as("bank-102").await)
        .submit_lead(
            gw.signer("bank-102")
                .seal(header("bank-102"), &lead("500112", "某"))
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let metrics = scrape(&gw).await;
    let submit = "rpc=\"/wagelink.v1.Cases/SubmitLead\"";
    // Labels are written in name order.
    assert_eq!(
        sample(
            &metrics,
            &format!(
                "wagelink_rpc_requests_total{{code=\"Ok\",partner_kind=\"lead-source\",{submit}}}"
            )
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!(
                "wagelink_rpc_requests_total{{code=\"PermissionDenied\",partner_kind=\"bank\",{submit}}}"
            )
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("wagelink_rpc_duration_seconds_count{{code=\"Ok\",{submit}}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("wagelink_rpc_duration_seconds_bucket{{code=\"Ok\",{submit},le=\"+Inf\"}}")
        ),
        Some(1.0)
    );
    // The lead waits in the handler's and the co-handler's mailboxes.
    assert_eq!(
        sample(
            &metrics,
            "wagelink_mailbox_depth{partner=\"hrss-500112\",partner_kind=\"hrss\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "wagelink_log_entries"), Some(1.0));
    // Every roster certificate has about a year left.
    let admin_cert = wagelink_tests::who_am_i(gw.channel_as("admin-ops").await)
        .await
        .unwrap()
        .certificate_sha256;
    let left = sample(
        &metrics,
        &format!(
            "wagelink_certificate_expiry_seconds{{partner=\"admin-ops\",sha256=\"{admin_cert}\"}}"
        ),
    )
    .expect("the admin's certificate expiry");
    assert!((364.0 * 86400.0..366.0 * 86400.0).contains(&left), "{left}");
    assert!(metrics.contains("# TYPE wagelink_rpc_duration_seconds histogram"));
    assert!(metrics.contains("# TYPE wagelink_rpc_requests_total counter"));

    // Anything but GET /metrics is not served.
    let addr = gw.running.metrics_addr.unwrap().to_string();
    let (status, _) = wagelink_adapters::http::request(&addr, "GET", "/", None)
        .await
        .unwrap();
    assert_eq!(status, 404);
    gw.stop().await;
}

#[tokio::test]
async fn overdue_cases_are_counted_by_district() {
    capture();
    let gw = TestGateway::start_with(TestDb::sqlite().await, |c| {
        wagelink_tests::use_drill_rules(c);
        c.cases.overdue_scan_ms = 100;
        c.telemetry.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    wagelink_tests::submit_lead(&gw, "source-national-platform", &lead("500101", "万州")).await;
    let mut counted = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        counted = sample(
            &scrape(&gw).await,
            "wagelink_overdue_cases{district=\"500101\"}",
        );
        if counted.is_some() {
            break;
        }
    }
    assert_eq!(counted, Some(1.0));
    gw.stop().await;
}

#[tokio::test]
async fn a_case_followed_across_agencies_is_one_trace() {
    capture();
    let gw = start(TestDb::sqlite().await).await;
    let source = "source-national-platform";
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let envelope = gw
        .signer(source)
        .seal(header(source), &lead("500112", "两江"))
        .unwrap();
    let response = CasesClient::new(gw.channel_as(source).await)
        .submit_lead(traced(
            envelope,
            Some(&format!("00-{caller_trace}-00f067aa0ba902b7-01")),
        ))
        .await
        .unwrap();
    let returned = response
        .metadata()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .expect("the gateway returns its traceparent")
        .to_owned();
    assert_eq!(trace_id(&returned), Some(caller_trace), "{returned}");
    let receipt =
        pb::Receipt::decode(response.into_inner().receipt.unwrap().payload.as_slice()).unwrap();

    // The handler receives the lead with the trace context, and its step continues the trace.
    let handler = "hrss-500112";
    let mut feed = pb::delivery_client::DeliveryClient::new(gw.channel_as(handler).await)
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let delivery = feed.message().await.unwrap().unwrap();
    assert_eq!(trace_id(&delivery.traceparent), Some(caller_trace));
    let mut h = header(handler);
    h.subject = receipt.case_id.clone();
    let step = gw
        .signer(handler)
        .seal(
            h,
            &pb::CaseAction {
                case_id: receipt.case_id.clone(),
                action: Some(Action::SignFor(pb::case_action::SignFor {
                    note: "监察一科".into(),
                })),
            },
        )
        .unwrap();
    let response = CasesClient::new(gw.channel_as(handler).await)
        .act_on_case(traced(step, Some(&delivery.traceparent)))
        .await
        .unwrap();
    let returned = response
        .metadata()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap()
        .to_owned();
    assert_eq!(trace_id(&returned), Some(caller_trace));
    // …and so does the co-handler's delivery of that step.
    let mut co_feed =
        pb::delivery_client::DeliveryClient::new(gw.channel_as("housing-500000").await)
            .subscribe(pb::SubscribeRequest::default())
            .await
            .unwrap()
            .into_inner();
    let mut traces = Vec::new();
    for _ in 0..2 {
        let d = co_feed.message().await.unwrap().unwrap();
        traces.push(trace_id(&d.traceparent).map(str::to_owned));
    }
    assert_eq!(
        traces,
        vec![Some(caller_trace.to_owned()), Some(caller_trace.to_owned())]
    );
    // A malformed traceparent is ignored, not refused: a new trace starts.
    let envelope = gw
        .signer(source)
        .seal(header(source), &lead("500112", "北碚"))
        .unwrap();
    let response = CasesClient::new(gw.channel_as(source).await)
        .submit_lead(traced(envelope, Some("00-not-a-trace-01")))
        .await
        .unwrap();
    let fresh = response
        .metadata()
        .get("traceparent")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        trace_id(fresh).is_some_and(|t| t != caller_trace),
        "{fresh}"
    );
    gw.stop().await;
}

/// Digit runs standing alone (not inside a longer word such as a hash).
fn digit_runs(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_digit() || bytes[i] == b'X' || bytes[i] == b'x')
            {
                i += 1;
            }
            let alone_before = start == 0 || !bytes[start - 1].is_ascii_alphanumeric();
            let alone_after = i == bytes.len() || !bytes[i].is_ascii_alphanumeric();
            if alone_before && alone_after {
                runs.push(&text[start..i]);
            }
        } else {
            i += 1;
        }
    }
    runs
}

fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// What in `text` looks like a worker's ID number, phone or bank card.
fn identifiers(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for needle in [PHONE, ID_NUMBER, CARD] {
        if text.contains(needle) {
            found.push(format!("the seeded {needle}"));
        }
    }
    for run in digit_runs(text) {
        let id_number =
            run.len() == 18 && wagelink_gateway::cases::lead::check_id_number(run).is_ok();
        let phone = run.len() == 11
            && run.starts_with('1')
            && run.as_bytes()[1].is_ascii_digit()
            && (b'3'..=b'9').contains(&run.as_bytes()[1])
            && run.chars().all(|c| c.is_ascii_digit());
        let card =
            (16..=19).contains(&run.len()) && run.chars().all(|c| c.is_ascii_digit()) && luhn(run);
        if id_number || phone || card {
            found.push(run.to_owned());
        }
    }
    found
}

#[tokio::test]
async fn no_worker_identifiers_in_any_log_line_or_span() {
    let capture = capture();
    let gw = start(TestDb::sqlite().await).await;
    let source = "source-national-platform";

    // A full case: lead, sign-for, resolution, feedback; every delivery acknowledged.
    let receipt = wagelink_tests::submit_lead(&gw, source, &lead("500112", "悦来")).await;
    let case_id = receipt.case_id.clone();
    let act = |who: &'static str, action: Action| {
        let gw = &gw;
        let case_id = case_id.clone();
        async move {
            let mut h = header(who);
            h.subject = case_id.clone();
            let step = gw
                .signer(who)
                .seal(
                    h,
                    &pb::CaseAction {
                        case_id,
                        action: Some(action),
                    },
                )
                .unwrap();
            CasesClient::new(gw.channel_as(who).await)
                .act_on_case(step)
                .await
        }
    };
    act(
        "hrss-500112",
        Action::SignFor(pb::case_action::SignFor {
            note: String::new(),
        }),
    )
    .await
    .unwrap();
    act(
        "hrss-500112",
        Action::Resolve(pb::case_action::Resolve {
            conclusion: pb::CaseConclusion::ArrearsPaid as i32,
            channel: pb::ResolutionChannel::InspectionOrder as i32,
            amount_recovered_fen: 36_000_000,
            workers_paid: 12,
            resolved_on: "2026-11-27".into(),
            summary: "责令限期支付，已全额支付".into(),
        }),
    )
    .await
    .unwrap();
    act(
        source,
        Action::Feedback(pb::case_action::Feedback {
            text: "已全额支付".into(),
            reporter_contacted: true,
            reporter_satisfied: Some(true),
        }),
    )
    .await
    .ok();
    // Bad inputs that carry identifiers, to exercise the refusal paths.
    let mut bad = lead("500112", "错号");
    bad.reporter_phone = format!("{PHONE}9");
    bad.reporter_id_number = "110105194912310021".into();
    let status = CasesClient::new(gw.channel_as(source).await)
        .submit_lead(gw.signer(source).seal(header(source), &bad).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(identifiers(status.message()).is_empty(), "{status:?}");
    let status = act(
        "hrss-500112",
        Action::Progress(pb::case_action::Progress {
            note: format!("工人银行卡 {CARD}，电话 {PHONE}"),
            ..Default::default()
        }),
    )
    .await;
    if let Err(status) = status {
        assert!(identifiers(status.message()).is_empty(), "{status:?}");
    }
    for partner in ["hrss-500112", "housing-500000", source] {
        let mut feed = pb::delivery_client::DeliveryClient::new(gw.channel_as(partner).await)
            .subscribe(pb::SubscribeRequest::default())
            .await
            .unwrap()
            .into_inner();
        while let Ok(Ok(Some(d))) =
            tokio::time::timeout(Duration::from_millis(300), feed.message()).await
        {
            let env = d.envelope.clone().unwrap();
            let h = pb::Header::decode(env.header.as_slice()).unwrap();
            let ack = pb::Acknowledgement {
                message_id: h.message_id,
                cursor: d.cursor,
                header_sha256: wagelink_proto::envelope::sha256(&env.header).to_vec(),
                case_id: String::new(),
            };
            let sealed = gw.signer(partner).seal(header(partner), &ack).unwrap();
            pb::delivery_client::DeliveryClient::new(gw.channel_as(partner).await)
                .acknowledge(sealed)
                .await
                .unwrap();
        }
    }
    gw.stop().await;

    // The scanner finds what it looks for, and passes hashes and ids.
    assert_eq!(identifiers("电话 13700001111。").len(), 1);
    assert_eq!(
        identifiers("id=110105194912310021,").len(),
        0,
        "a bad checksum"
    );
    assert_eq!(identifiers("id 440301199001010012.").len(), 1);
    assert_eq!(identifiers("card \"4111111111111111\"").len(), 1);
    assert!(identifiers("sha256 a13812345678b0c4111111111111111e, index 13812").is_empty());
    let written = capture.text();
    assert!(
        written.contains("\"rpc.method\":\"SubmitLead\"") || written.contains("SubmitLead"),
        "the capture holds the spans of this test"
    );
    let found = identifiers(&written);
    assert!(
        found.is_empty(),
        "worker identifiers in the logs or spans: {found:?}"
    );
}

#[tokio::test]
async fn nothing_acknowledged_is_lost_across_a_graceful_shutdown() {
    capture();
    for db in wagelink_tests::each_backend().await {
        let gw = start(db).await;
        let name = gw.db_name;
        let source = "source-national-platform";
        let channel = gw.channel_as(source).await;
        let signer = Arc::new(gw.signer(source));
        // Four senders keep submitting until the gateway goes away under them.
        let mut senders = Vec::new();
        for sender in 0..4 {
            let (channel, signer) = (channel.clone(), signer.clone());
            senders.push(tokio::spawn(async move {
                let mut receipts = Vec::new();
                let mut refusals = Vec::new();
                for n in 0..400 {
                    let envelope = signer
                        .seal(
                            header(source),
                            &lead("500112", &format!("压力{sender}-{n}")),
                        )
                        .unwrap();
                    match CasesClient::new(channel.clone())
                        .submit_lead(envelope)
                        .await
                    {
                        Ok(r) => receipts.push(r.into_inner().receipt.unwrap()),
                        Err(status) => {
                            refusals.push(status);
                            break;
                        }
                    }
                }
                (receipts, refusals)
            }));
        }
        // Let the load build, then stop gracefully in the middle of it.
        while gw.running.log.size() < 20 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stopped = gw.shutdown_keeping_data().await;
        // The last checkpoint, signed at shutdown, covers every entry committed before it.
        let (store, _) = wagelink_gateway::server::open(&stopped.config)
            .await
            .unwrap();
        let head = store.latest_checkpoint().await.unwrap().unwrap();
        let stored = store.entries(0, u64::MAX / 2, false).await.unwrap().len() as u64;
        assert_eq!(head.tree_size, stored, "{name}");
        store.close().await;
        let gw = stopped.start().await;
        let mut receipts = Vec::new();
        for s in senders {
            let (mut r, refusals) = s.await.unwrap();
            receipts.append(&mut r);
            for status in refusals {
                // The calls the shutdown cut are retryable: nothing was half-done.
                assert!(
                    matches!(
                        status.code(),
                        Code::Unavailable | Code::Cancelled | Code::Unknown
                    ),
                    "{name}: {status:?}"
                );
            }
        }
        assert!(receipts.len() >= 20, "{name}: {} receipts", receipts.len());
        // Every receipt a sender holds is in the log after the restart, with its header.
        let log = &gw.running.log;
        let entries = log.store().entries(0, log.size(), false).await.unwrap();
        for r in &receipts {
            let body = pb::Receipt::decode(r.payload.as_slice()).unwrap();
            let entry = entries
                .get(body.log_index as usize)
                .unwrap_or_else(|| panic!("{name}: receipt for index {} lost", body.log_index));
            let Some(pb::entry_body::Kind::Accepted(a)) =
                pb::EntryBody::decode(entry.entry.as_slice()).unwrap().kind
            else {
                panic!(
                    "{name}: entry {} is not an accepted envelope",
                    body.log_index
                );
            };
            assert_eq!(
                wagelink_proto::envelope::sha256(&a.header).to_vec(),
                body.header_sha256,
                "{name}: entry {} holds another envelope",
                body.log_index
            );
        }
        gw.stop().await;
    }
}
