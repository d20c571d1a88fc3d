//! Banks over real sockets: a bank pushes signed account events (alone, or a batch under one
//! signature) on a stream and gets a receipt per envelope once durable, or a per-envelope
//! rejection while the stream goes on; the events reach the project's district labour
//! inspection office and industry authority; each event of a batch is provable alone; only the
//! bank holding an account reports on it; a month without payroll raises exactly one R2 warning
//! lead, routed like any lead — on SQLite and PostgreSQL.

use std::time::Duration;

use prost::{Message, Name};
use tonic::Code;
use wagelink_gateway::ledger::merkle::{Hash, leaf_hash, verify_inclusion};
use wagelink_proto::envelope::sha256;
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::account_event::Kind;
use wagelink_proto::v1::banks_client::BanksClient;
use wagelink_proto::v1::cases_client::CasesClient;
use wagelink_proto::v1::delivery_client::DeliveryClient;
use wagelink_tests::{TestGateway, each_backend, header, now};

const BANK: &str = "bank-102";
const PROJECT: &str = "500105-2026-0042";
const USCC: &str = "91350100M000100Y43";

fn event(id: &str, account: &str, kind: Kind) -> pb::AccountEvent {
    pb::AccountEvent {
        event_id: id.into(),
        account_number: account.into(),
        account_kind: pb::AccountKind::WageAccount as i32,
        bank_id: BANK.into(),
        branch_code: "102653000011".into(),
        project_code: PROJECT.into(),
        contractor_uscc: USCC.into(),
        region_code: "500105".into(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: now(),
            nanos: 0,
        }),
        kind: Some(kind),
    }
}

fn opened(on: &str) -> Kind {
    Kind::AccountOpened(pb::account_event::AccountOpened {
        account_name: "重庆某建筑公司农民工工资专用账户".into(),
        project_name: "江北区某安置房项目".into(),
        developer_uscc: String::new(),
        opened_on: on.into(),
        contract_value_fen: 5_000_000_000,
    })
}

fn credited(amount_fen: i64) -> Kind {
    Kind::LabourCostCredited(pb::account_event::LabourCostCredited {
        amount_fen,
        payer_name: "重庆某置业有限公司".into(),
        value_date: "2026-11-20".into(),
        remittance_info: "人工费用 2026-10".into(),
    })
}

fn payroll(month: &str) -> Kind {
    Kind::PayrollPaid(pb::account_event::PayrollPaid {
        payroll_month: month.into(),
        count: 86,
        total_fen: 51_600_000,
        batch_reference: "B20261125-01".into(),
    })
}

/// The first day of the month whose next month ended before today (the month R2 checks).
fn r2_month() -> jiff::civil::Date {
    wagelink_gateway::banks::warnings::r2_month(wagelink_gateway::cases::china_today())
}

async fn push(
    gw: &TestGateway,
    who: &str,
    envelopes: Vec<pb::SignedEnvelope>,
) -> Vec<pb::PushEventsResponse> {
    let n = envelopes.len();
    let mut answers = BanksClient::new(gw.channel_as(who).await)
        .push_events(tokio_stream::iter(envelopes))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), answers.message()).await {
            Ok(Ok(Some(a))) => out.push(a),
            other => panic!("stream ended early: {other:?}"),
        }
    }
    out
}

fn single(gw: &TestGateway, who: &str, e: &pb::AccountEvent) -> pb::SignedEnvelope {
    gw.signer(who).seal(header(who), e).unwrap()
}

fn batch(gw: &TestGateway, who: &str, events: &[pb::AccountEvent]) -> pb::SignedEnvelope {
    let b = pb::AccountEventBatch {
        events: events.iter().map(|e| e.encode_to_vec()).collect(),
    };
    gw.signer(who).seal(header(who), &b).unwrap()
}

fn receipt(a: &pb::PushEventsResponse) -> pb::Receipt {
    match &a.result {
        Some(pb::push_events_response::Result::Receipt(r)) => {
            pb::Receipt::decode(r.payload.as_slice()).unwrap()
        }
        other => panic!("{}: {other:?}", a.message_id),
    }
}

fn rejection(a: &pb::PushEventsResponse) -> (Code, String) {
    match &a.result {
        Some(pb::push_events_response::Result::Rejected(r)) => {
            (Code::from_i32(r.code), r.message.clone())
        }
        other => panic!("{}: not rejected: {other:?}", a.message_id),
    }
}

async fn inbox(gw: &TestGateway, who: &str, at_least: usize) -> Vec<pb::Header> {
    inbox_within(gw, who, at_least, Duration::from_secs(10)).await
}

async fn inbox_within(
    gw: &TestGateway,
    who: &str,
    at_least: usize,
    within: Duration,
) -> Vec<pb::Header> {
    let mut stream = DeliveryClient::new(gw.channel_as(who).await)
        .subscribe(pb::SubscribeRequest {
            from_cursor: 0,
            window: 100,
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while out.len() < at_least {
        let Ok(Ok(Some(d))) = tokio::time::timeout(within, stream.message()).await else {
            break;
        };
        out.push(pb::Header::decode(d.envelope.unwrap().header.as_slice()).unwrap());
    }
    out
}

#[tokio::test]
async fn bank_events_reach_the_district_and_warnings_follow_silence() {
    for db in each_backend().await {
        let gw = TestGateway::start_with(db, |c| c.banks.warning_scan_ms = 100).await;
        events_and_warnings(&gw).await;
        gw.stop().await;
    }
}

async fn events_and_warnings(gw: &TestGateway) {
    // A lead names the project and its industry: housing (a project record).
    let lead = pb::Lead {
        channel: pb::LeadChannel::CityApp as i32,
        lead_type: pb::LeadType::Arrears as i32,
        region_code: "500105".into(),
        sector: pb::Sector::Construction as i32,
        project_industry: pb::Industry::HousingMunicipal as i32,
        project_code: PROJECT.into(),
        project_name: "江北区某安置房项目".into(),
        worker_count: 3,
        ..Default::default()
    };
    let env = gw
        .signer("source-national-platform")
        .seal(header("source-national-platform"), &lead)
        .unwrap();
    CasesClient::new(gw.channel_as("source-national-platform").await)
        .submit_lead(env)
        .await
        .unwrap();

    // The account opened before the month R2 checks, labour cost credited, and a batch with a
    // payroll for another month and a balance; then the rejections, on the same stream.
    let account = "3100021109024888888";
    let opened_on = r2_month().to_string();
    let open = single(gw, BANK, &event("E-1", account, opened(&opened_on)));
    let credit = single(gw, BANK, &event("E-2", account, credited(120_000_000)));
    let paid_month = r2_month()
        .checked_sub(jiff::Span::new().months(1))
        .unwrap()
        .strftime("%Y-%m")
        .to_string();
    let balance = event(
        "E-4",
        account,
        Kind::BalanceReported(pb::account_event::BalanceReported {
            balance_type: "CLAV".into(),
            amount_fen: 68_400_000,
            as_of_date: "2026-11-27".into(),
        }),
    );
    let both = batch(
        gw,
        BANK,
        &[event("E-3", account, payroll(&paid_month)), balance.clone()],
    );
    let mut negative = event("E-5", account, credited(-1));
    negative.event_id = "E-5".into();
    let bad_batch = batch(gw, BANK, &[event("E-6", account, credited(5)), negative]);
    let mut reused = event("E-2", account, credited(999));
    reused.branch_code = "other".into();
    let reuse = single(gw, BANK, &reused);
    let mut foreign = event("E-7", account, credited(5));
    foreign.bank_id = "bank-105".into();
    let not_mine = single(gw, BANK, &foreign);
    let answers = push(
        gw,
        BANK,
        vec![
            open.clone(),
            credit,
            both.clone(),
            bad_batch,
            reuse,
            not_mine,
            open.clone(),
        ],
    )
    .await;
    let first = receipt(&answers[0]);
    assert_eq!(first.kind(), pb::ReceiptKind::Accepted);
    let routed: Vec<_> = first
        .routed_to
        .iter()
        .map(|r| r.partner_id.as_str())
        .collect();
    assert_eq!(routed, ["hrss-500105", "housing-500000"]);
    receipt(&answers[1]);
    let batch_receipt = receipt(&answers[2]);
    let (code, message) = rejection(&answers[3]);
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        message.contains("events[1].labour_cost_credited.amount_fen"),
        "{message}"
    );
    let (code, message) = rejection(&answers[4]);
    assert_eq!(code, Code::AlreadyExists, "{message}");
    assert!(message.contains("E-2"), "{message}");
    let (code, message) = rejection(&answers[5]);
    assert_eq!(code, Code::PermissionDenied, "{message}");
    // The identical envelope again: the same receipt.
    assert_eq!(receipt(&answers[6]), first);
    // Nothing of the refused batch was stored (E-6 was valid, its batch was not).
    let store = gw.running.log.store();
    assert!(store.event_proof(BANK, "E-6").await.unwrap().is_none());

    // Another bank may not report on this account.
    let mut theirs = event("X-1", account, credited(5));
    theirs.bank_id = "bank-105".into();
    let answers = push(gw, "bank-105", vec![single(gw, "bank-105", &theirs)]).await;
    let (code, message) = rejection(&answers[0]);
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert!(message.contains("held by bank-102"), "{message}");

    // hrss-500105 and the housing authority receive the three accepted envelopes.
    for who in ["hrss-500105", "housing-500000"] {
        let got = inbox(gw, who, 5).await;
        let from_bank: Vec<_> = got.iter().filter(|h| h.sender == BANK).collect();
        assert_eq!(from_bank.len(), 3, "{who}: {got:?}");
        assert_eq!(
            from_bank[2].payload_type,
            pb::AccountEventBatch::full_name()
        );
    }
    assert!(
        inbox_within(gw, "hrss-500103", 1, Duration::from_millis(700))
            .await
            .is_empty()
    );

    // Each event of the batch is provable alone against the signed header's digest.
    let header = pb::Header::decode(both.header.as_slice()).unwrap();
    let (index, at, size, path, bytes) = store.event_proof(BANK, "E-4").await.unwrap().unwrap();
    assert_eq!((index, at, size), (batch_receipt.log_index, 1, 2));
    assert_eq!(bytes, balance.encode_to_vec());
    let path: Vec<Hash> = path.chunks(32).map(|c| c.try_into().unwrap()).collect();
    let root: Hash = header.payload_sha256.as_slice().try_into().unwrap();
    verify_inclusion(1, 2, &leaf_hash(&bytes), &path, &root).unwrap();
    assert_ne!(header.payload_sha256, sha256(&both.payload).to_vec());

    // No payroll for the R2 month: exactly one R2 warning lead, whatever the scans.
    let period = r2_month().strftime("%Y-%m").to_string();
    let mut warnings = Vec::new();
    for _ in 0..100 {
        warnings = store.warnings("R2").await.unwrap();
        if !warnings.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let warnings_after = store.warnings("R2").await.unwrap();
    assert_eq!(warnings_after, warnings);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let (subject, p, case_id) = &warnings[0];
    assert_eq!((subject.as_str(), p.as_str()), (PROJECT, period.as_str()));
    let view = CasesClient::new(gw.channel_as("hrss-500105").await)
        .get_case(pb::GetCaseRequest {
            case_id: case_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.holder, "hrss-500105");
    assert_eq!(view.source, "gateway");
    let lead = view.lead.unwrap();
    assert_eq!(lead.warning_rule, "R2");
    assert_eq!(lead.lead_type(), pb::LeadType::RiskWarning);

    // The whole log, batches included, verifies offline.
    let size = gw.running.log.size();
    for _ in 0..100 {
        if gw.running.log.latest_checkpoint().tree_size >= size {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut out = Vec::new();
    wagelink_gateway::ledger::export::export(
        store,
        gw.running.log.keys(),
        "wagelink.dev",
        true,
        &mut out,
    )
    .await
    .unwrap();
    let trusted = gw.running.log.keys().log_key.verifier().to_text();
    wagelink_gateway::ledger::export::verify(out.as_slice(), Some(&trusted), |_, _| {}).unwrap();

    // Only banks push.
    let e = BanksClient::new(gw.channel_as("hrss-500105").await)
        .push_events(tokio_stream::iter(Vec::<pb::SignedEnvelope>::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
}
