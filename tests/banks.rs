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

/// A lead in 500105 naming a project and its industry (which makes a project record).
fn project_lead(code: &str, industry: pb::Industry, name: &str) -> pb::Lead {
    pb::Lead {
        channel: pb::LeadChannel::CityApp as i32,
        lead_type: pb::LeadType::Arrears as i32,
        region_code: "500105".into(),
        sector: pb::Sector::Construction as i32,
        project_industry: industry as i32,
        project_code: code.into(),
        project_name: name.into(),
        worker_count: 3,
        ..Default::default()
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
    let lead = project_lead(
        PROJECT,
        pb::Industry::HousingMunicipal,
        "江北区某安置房项目",
    );
    wagelink_tests::submit_lead(gw, "source-national-platform", &lead).await;

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
    // (Warning leads may come in between: an R1 can fire after the opening and before the
    // credit, depending on when the scan runs.)
    for who in ["hrss-500105", "housing-500000"] {
        let mut got = Vec::new();
        for n in 4..12 {
            got = inbox(gw, who, n).await;
            if got.iter().filter(|h| h.sender == BANK).count() >= 3 {
                break;
            }
        }
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
    // The R2 lead is its own case, or — when an R1 warning about the same project came first
    // (the scan may run between the opening and the credit) — linked to that open case.
    // Either way hrss-500105 holds it and received the gateway-signed R2 lead.
    let mut stream = DeliveryClient::new(gw.channel_as("hrss-500105").await)
        .subscribe(pb::SubscribeRequest {
            from_cursor: 0,
            window: 100,
        })
        .await
        .unwrap()
        .into_inner();
    let mut r2 = None;
    while let Ok(Ok(Some(d))) = tokio::time::timeout(Duration::from_secs(2), stream.message()).await
    {
        let env = d.envelope.unwrap();
        let h = pb::Header::decode(env.header.as_slice()).unwrap();
        if h.sender == "gateway" && h.payload_type == pb::Lead::full_name() {
            let lead = pb::Lead::decode(env.payload.as_slice()).unwrap();
            if lead.warning_rule == "R2" {
                r2 = Some(lead);
                break;
            }
        }
    }
    let lead = r2.expect("hrss-500105 received the R2 warning lead");
    assert_eq!(lead.lead_type(), pb::LeadType::RiskWarning);
    assert_eq!(lead.project_code, PROJECT);

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

/// A bank's own software on its Link stream: answers balance queries with its signature,
/// refuses payroll queries as not authorised, and counts what it was asked. With `then_close`
/// it closes its side of the stream right after its first answer and only reads on.
struct BankSide {
    asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    receipts: tokio::sync::mpsc::UnboundedReceiver<pb::LinkAnswerReceipt>,
}

async fn open_link(
    gw: &TestGateway,
    bank: &'static str,
    answer: bool,
    then_close: bool,
) -> BankSide {
    use std::sync::atomic::Ordering;
    let (up, rx) = tokio::sync::mpsc::unbounded_channel::<pb::BankLinkUp>();
    up.send(pb::BankLinkUp {
        msg: Some(pb::bank_link_up::Msg::Hello(pb::LinkHello {
            capacity: 4,
            software: "test bank core".into(),
        })),
    })
    .unwrap();
    let mut down = BanksClient::new(gw.channel_as(bank).await)
        .link(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (receipts_tx, receipts) = tokio::sync::mpsc::unbounded_channel();
    let signer = gw.signer(bank);
    let counter = asked.clone();
    tokio::spawn(async move {
        let mut open = Some(up);
        while let Ok(Some(m)) = down.message().await {
            let Some(up) = open.clone() else {
                if let Some(pb::bank_link_down::Msg::AnswerReceipt(r)) = m.msg {
                    let _ = receipts_tx.send(r);
                }
                continue;
            };
            match m.msg {
                Some(pb::bank_link_down::Msg::Query(q)) => {
                    counter.fetch_add(1, Ordering::SeqCst);
                    if !answer {
                        continue;
                    }
                    let env = q.query.unwrap();
                    let h = pb::Header::decode(env.header.as_slice()).unwrap();
                    let query = pb::AccountQuery::decode(env.payload.as_slice()).unwrap();
                    if query.kind() == pb::AccountQueryKind::Payroll {
                        let _ = up.send(pb::BankLinkUp {
                            msg: Some(pb::bank_link_up::Msg::Refusal(pb::LinkRefusal {
                                correlation_id: q.correlation_id,
                                reason: pb::RefusalReason::NotAuthorised as i32,
                                message: "payroll lines need the city's approval".into(),
                            })),
                        });
                        continue;
                    }
                    let mut header = header(bank);
                    header.in_reply_to = h.message_id.clone();
                    header.subject = query.account_number.clone();
                    let answer = pb::AccountQueryAnswer {
                        query_message_id: h.message_id,
                        account_number: query.account_number,
                        kind: query.kind,
                        answered_at: None,
                        result: Some(pb::account_query_answer::Result::Balance(
                            pb::AccountBalance {
                                balance_fen: 68_400_000,
                                available_fen: 68_400_000,
                                as_of: None,
                            },
                        )),
                    };
                    let _ = up.send(pb::BankLinkUp {
                        msg: Some(pb::bank_link_up::Msg::Answer(pb::LinkAnswer {
                            correlation_id: q.correlation_id,
                            answer: Some(signer.seal(header, &answer).unwrap()),
                        })),
                    });
                    if then_close {
                        open = None;
                    }
                }
                Some(pb::bank_link_down::Msg::AnswerReceipt(r)) => {
                    let _ = receipts_tx.send(r);
                }
                // A live bank answers pings; the silent one does not.
                Some(pb::bank_link_down::Msg::Ping(p)) if answer => {
                    let _ = up.send(pb::BankLinkUp {
                        msg: Some(pb::bank_link_up::Msg::Pong(pb::LinkPong { nonce: p.nonce })),
                    });
                }
                _ => {}
            }
        }
    });
    BankSide { asked, receipts }
}

fn query(
    gw: &TestGateway,
    who: &str,
    account: &str,
    kind: pb::AccountQueryKind,
    purpose: Option<pb::account_query::Purpose>,
) -> pb::SignedEnvelope {
    let q = pb::AccountQuery {
        account_number: account.into(),
        bank_id: String::new(),
        kind: kind as i32,
        period: (kind == pb::AccountQueryKind::Payroll)
            .then(|| pb::account_query::Period::Month("2026-10".into())),
        purpose,
    };
    gw.signer(who).seal(header(who), &q).unwrap()
}

fn order() -> Option<pb::account_query::Purpose> {
    Some(pb::account_query::Purpose::InspectionOrderNumber(
        "江北人社监查〔2026〕9号".into(),
    ))
}

async fn ask(
    gw: &TestGateway,
    who: &str,
    env: pb::SignedEnvelope,
    timeout: Duration,
) -> Result<pb::AccountQueryResult, tonic::Status> {
    let mut request = tonic::Request::new(env);
    request.set_timeout(timeout);
    wagelink_proto::v1::account_queries_client::AccountQueriesClient::new(gw.channel_as(who).await)
        .query(request)
        .await
        .map(|r| r.into_inner())
}

/// `who` asks for `account`'s balance under an inspection order, waiting up to 10 s.
async fn ask_balance(
    gw: &TestGateway,
    who: &str,
    account: &str,
) -> Result<pb::AccountQueryResult, tonic::Status> {
    let env = query(gw, who, account, pb::AccountQueryKind::Balance, order());
    ask(gw, who, env, Duration::from_secs(10)).await
}

#[tokio::test]
async fn account_queries_are_relayed_to_the_holding_bank() {
    for db in each_backend().await {
        let gw = TestGateway::start_with(db, |c| c.banks.link_ping_ms = 500).await;
        account_queries(&gw).await;
        gw.stop().await;
    }
}

async fn account_queries(gw: &TestGateway) {
    use std::sync::atomic::Ordering;
    // Accounts: one of bank-102 in 江北区 (a housing project), one of bank-105.
    let lead = project_lead(
        PROJECT,
        pb::Industry::HousingMunicipal,
        "江北区某安置房项目",
    );
    wagelink_tests::submit_lead(gw, "source-national-platform", &lead).await;
    let account = "3100021109024777777";
    let answers = push(
        gw,
        BANK,
        vec![single(
            gw,
            BANK,
            &event("Q-1", account, opened("2026-06-01")),
        )],
    )
    .await;
    receipt(&answers[0]);
    let other = "6217000000000000001";
    let mut e = event("Q-2", other, opened("2026-06-01"));
    e.bank_id = "bank-105".into();
    let answers = push(gw, "bank-105", vec![single(gw, "bank-105", &e)]).await;
    receipt(&answers[0]);

    // bank-105 has no link: UNAVAILABLE at once.
    let e = ask(
        gw,
        "hrss-500105",
        query(
            gw,
            "hrss-500105",
            other,
            pb::AccountQueryKind::Balance,
            order(),
        ),
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("bank-105"), "{}", e.message());

    // bank-102 keeps two links open; hrss-500105 asks for the balance.
    let mut first = open_link(gw, BANK, true, false).await;
    let mut second = open_link(gw, BANK, true, false).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let env = query(
        gw,
        "hrss-500105",
        account,
        pb::AccountQueryKind::Balance,
        order(),
    );
    let result = ask(gw, "hrss-500105", env.clone(), Duration::from_secs(10))
        .await
        .unwrap();
    let answer = result.answer.unwrap();
    let h = pb::Header::decode(answer.header.as_slice()).unwrap();
    assert_eq!(h.sender, BANK);
    assert_eq!(
        h.in_reply_to,
        pb::Header::decode(env.header.as_slice())
            .unwrap()
            .message_id
    );
    match pb::AccountQueryAnswer::decode(answer.payload.as_slice())
        .unwrap()
        .result
    {
        Some(pb::account_query_answer::Result::Balance(b)) => assert_eq!(b.balance_fen, 68_400_000),
        other => panic!("{other:?}"),
    }
    let query_receipt = pb::Receipt::decode(result.receipt.unwrap().payload.as_slice()).unwrap();
    assert_eq!(query_receipt.routed_to[0].partner_id, BANK);
    // The bank got the gateway's receipt for its answer.
    let r = tokio::time::timeout(Duration::from_secs(5), first.receipts.recv())
        .await
        .ok()
        .flatten();
    let r = match r {
        Some(r) => r,
        None => panic!("the first link was not used"),
    };
    assert!(
        matches!(r.result, Some(pb::link_answer_receipt::Result::Receipt(_))),
        "{r:?}"
    );
    // The identical envelope again: the same answer, the bank not asked again.
    let again = ask(gw, "hrss-500105", env, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(again.answer.unwrap(), answer);
    let asked = first.asked.load(Ordering::SeqCst) + second.asked.load(Ordering::SeqCst);
    assert_eq!(asked, 1);
    // Eight queries at once share the two links (four in flight on each, their capacity): each
    // asker gets the answer to its own query, and the bank a receipt for every answer, however
    // the answers on one link interleave.
    let envs: Vec<pb::SignedEnvelope> = (0..8)
        .map(|_| {
            query(
                gw,
                "leading-office-500000",
                account,
                pb::AccountQueryKind::Balance,
                order(),
            )
        })
        .collect();
    let results = futures::future::join_all(envs.iter().map(|env| {
        ask(
            gw,
            "leading-office-500000",
            env.clone(),
            Duration::from_secs(10),
        )
    }))
    .await;
    for (env, result) in envs.iter().zip(results) {
        let answer = result.unwrap().answer.unwrap();
        assert_eq!(
            pb::Header::decode(answer.header.as_slice())
                .unwrap()
                .in_reply_to,
            pb::Header::decode(env.header.as_slice())
                .unwrap()
                .message_id
        );
    }
    // The less loaded link is chosen each time: both take part, and no query was sent twice.
    let (a, b) = (
        first.asked.load(Ordering::SeqCst),
        second.asked.load(Ordering::SeqCst),
    );
    assert!(a >= 1 && b >= 1 && a + b == 9, "{a} and {b}");
    let mut receipts = 0;
    while receipts < 8 {
        let r = tokio::select! {
            Some(r) = first.receipts.recv() => r,
            Some(r) = second.receipts.recv() => r,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                panic!("the bank got {receipts} receipts for its 8 answers")
            }
        };
        assert!(
            matches!(r.result, Some(pb::link_answer_receipt::Result::Receipt(_))),
            "{r:?}"
        );
        receipts += 1;
    }
    // The bank's refusal reaches the asker with its code.
    let e = ask(
        gw,
        "hrss-500105",
        query(
            gw,
            "hrss-500105",
            account,
            pb::AccountQueryKind::Payroll,
            order(),
        ),
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("city's approval"), "{}", e.message());

    // Outside the asker's jurisdiction or industry; no purpose; a case without a role.
    for (who, purpose, code) in [
        ("hrss-500103", order(), Code::PermissionDenied),
        ("transport-500000", order(), Code::PermissionDenied),
        ("hrss-500105", None, Code::InvalidArgument),
        (
            "hrss-500105",
            Some(pb::account_query::Purpose::CaseId(
                "WL-20260101-000000".into(),
            )),
            Code::NotFound,
        ),
    ] {
        let e = ask(
            gw,
            who,
            query(gw, who, account, pb::AccountQueryKind::Balance, purpose),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), code, "{who}: {e:?}");
    }
    let e = ask(
        gw,
        "bank-105",
        query(
            gw,
            "bank-105",
            account,
            pb::AccountQueryKind::Balance,
            order(),
        ),
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // A bank that never answers: DEADLINE_EXCEEDED at the caller's deadline.
    let silent = open_link(gw, "bank-105", false, false).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = ask(
        gw,
        "hrss-500105",
        query(
            gw,
            "hrss-500105",
            other,
            pb::AccountQueryKind::Balance,
            order(),
        ),
        Duration::from_millis(800),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert_eq!(silent.asked.load(Ordering::SeqCst), 1);
    // It answers no pings either: after three it is closed, and bank-105 has no link again,
    // while bank-102's links, which answer them, stay.
    let mut closed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let e = ask(
            gw,
            "hrss-500105",
            query(
                gw,
                "hrss-500105",
                other,
                pb::AccountQueryKind::Balance,
                order(),
            ),
            // On PostgreSQL a query with no link here waits up to 1.5 s for another replica
            // to take it before it is refused as UNAVAILABLE: a shorter deadline would cut
            // every ask before that.
            Duration::from_millis(2500),
        )
        .await
        .unwrap_err();
        if e.code() == Code::Unavailable {
            closed = true;
            break;
        }
    }
    assert!(closed, "the silent link was never closed");
    ask(
        gw,
        "hrss-500105",
        query(
            gw,
            "hrss-500105",
            account,
            pb::AccountQueryKind::Balance,
            order(),
        ),
        Duration::from_secs(10),
    )
    .await
    .unwrap();

    // A bank that answers and closes its side of the link at once: the asker has the answer,
    // the bank still gets the receipt for it, and the link is then gone while bank-102's two
    // others serve on. (The new link, never used, is the one the next query goes to.)
    let mut closing = open_link(gw, BANK, true, true).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let result = ask_balance(gw, "hrss-500105", account).await.unwrap();
    assert!(result.answer.is_some());
    assert_eq!(closing.asked.load(Ordering::SeqCst), 1);
    let r = tokio::time::timeout(Duration::from_secs(5), closing.receipts.recv())
        .await
        .ok()
        .flatten()
        .expect("the closing bank got no receipt for its answer");
    assert!(
        matches!(r.result, Some(pb::link_answer_receipt::Result::Receipt(_))),
        "{r:?}"
    );
    for _ in 0..3 {
        ask_balance(gw, "hrss-500105", account).await.unwrap();
    }
    assert_eq!(closing.asked.load(Ordering::SeqCst), 1);
}

/// A camt.054 (version 4) as a bank's core would write it: a labour-cost credit and a payroll
/// batch debit on the project's dedicated account.
fn camt054(account: &str, amount: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.04">
  <BkToCstmrDbtCdtNtfctn>
    <GrpHdr><MsgId>ICBCCQ-20261127-0001</MsgId><CreDtTm>2026-11-27T18:00:00+08:00</CreDtTm></GrpHdr>
    <Ntfctn>
      <Id>N1</Id>
      <CreDtTm>2026-11-27T18:00:00+08:00</CreDtTm>
      <Acct><Id><Othr><Id>{account}</Id></Othr></Id><Ccy>CNY</Ccy></Acct>
      <Ntry>
        <Amt Ccy="CNY">{amount}</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd>
        <Sts>BOOK</Sts>
        <BookgDt><Dt>2026-11-20</Dt></BookgDt>
        <ValDt><Dt>2026-11-20</Dt></ValDt>
        <AcctSvcrRef>CQ20261120A0001</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>DMCT</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls><TxDtls>
          <RltdPties><Dbtr><Nm>重庆某置业有限公司</Nm></Dbtr></RltdPties>
          <RmtInf><Ustrd>人工费用 2026年10月</Ustrd></RmtInf>
        </TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="CNY">516000.00</Amt>
        <CdtDbtInd>DBIT</CdtDbtInd>
        <Sts>BOOK</Sts>
        <BookgDt><Dt>2026-11-25</Dt></BookgDt>
        <ValDt><Dt>2026-11-25</Dt></ValDt>
        <AcctSvcrRef>CQ20261125P0007</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>ICDT</Cd><SubFmlyCd>SALA</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls>
          <Btch><NbOfTxs>86</NbOfTxs><TtlAmt Ccy="CNY">516000.00</TtlAmt><CdtDbtInd>DBIT</CdtDbtInd></Btch>
          <TxDtls><RmtInf><Ustrd>代发工资 2026-10</Ustrd></RmtInf></TxDtls>
        </NtryDtls>
      </Ntry>
    </Ntfctn>
  </BkToCstmrDbtCdtNtfctn>
</Document>"#
    )
}

#[tokio::test]
async fn the_bank_adapter_turns_a_camt_file_into_events_for_the_district() {
    use wagelink_adapters::bank::events::{AccountInfo, IngestError, Mapping, ingest};
    let gw = TestGateway::start(wagelink_tests::TestDb::sqlite().await).await;
    let account = "3100021109025999999";
    let mapping = Mapping::new(
        BANK,
        vec![AccountInfo {
            account_number: account.into(),
            kind: "wage-account".into(),
            project_code: PROJECT.into(),
            contractor_uscc: USCC.into(),
            region_code: "500105".into(),
            branch_code: "102653000011".into(),
        }],
    );
    let signer = gw.signer(BANK);
    // A malformed file: refused naming the element; nothing reaches the gateway.
    let before = gw.running.log.size();
    let err = ingest(
        gw.channel_as(BANK).await,
        &signer,
        &mapping,
        &camt054(account, "1,200,000.00"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, IngestError::Camt(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("Document/BkToCstmrDbtCdtNtfctn/Ntfctn/Ntry[1]/Amt: \"1,200,000.00\""),
        "{err}"
    );
    assert_eq!(
        gw.running.log.size(),
        before,
        "nothing of a refused file is logged"
    );

    let (receipt, count) = ingest(
        gw.channel_as(BANK).await,
        &signer,
        &mapping,
        &camt054(account, "1200000.00"),
    )
    .await
    .unwrap();
    assert_eq!(count, 2);
    let r = pb::Receipt::decode(receipt.payload.as_slice()).unwrap();
    assert_eq!(r.routed_to[0].partner_id, "hrss-500105");

    // hrss-500105 receives both events, signed by the bank under one signature.
    let mut stream = DeliveryClient::new(gw.channel_as("hrss-500105").await)
        .subscribe(pb::SubscribeRequest {
            from_cursor: 0,
            window: 10,
        })
        .await
        .unwrap()
        .into_inner();
    let d = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let env = d.envelope.unwrap();
    let batch = pb::AccountEventBatch::decode(env.payload.as_slice()).unwrap();
    let kinds: Vec<_> = batch
        .events
        .iter()
        .map(|e| {
            pb::AccountEvent::decode(e.as_slice())
                .unwrap()
                .kind
                .unwrap()
        })
        .collect();
    match (&kinds[0], &kinds[1]) {
        (Kind::LabourCostCredited(c), Kind::PayrollPaid(p)) => {
            assert_eq!(c.amount_fen, 120_000_000);
            assert_eq!(c.payer_name, "重庆某置业有限公司");
            assert_eq!(
                (p.payroll_month.as_str(), p.count, p.total_fen),
                ("2026-10", 86, 51_600_000)
            );
        }
        other => panic!("{other:?}"),
    }
    // The same file again: logged again, its events stored once (the gateway de-duplicates).
    ingest(
        gw.channel_as(BANK).await,
        &signer,
        &mapping,
        &camt054(account, "1200000.00"),
    )
    .await
    .unwrap();
    let store = gw.running.log.store();
    let (index, ..) = store
        .event_proof(BANK, "CQ20261125P0007")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(index, r.log_index);
    assert!(store.payroll_paid(account, "2026-10").await.unwrap());
    gw.stop().await;
}

/// The bank core's account API, stood in for by a small HTTP server on loopback that speaks its
/// JSON: the balance of one account; 404 for any other.
async fn bank_core(account: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
                let (status, body) = if path == format!("/accounts/{account}/balance") {
                    (
                        "200 OK",
                        r#"{"balance_fen": 68400000, "available_fen": 60000000, "as_of": "2026-11-27T18:00:00+08:00"}"#,
                    )
                } else {
                    ("404 Not Found", r#"{"error": "no such account"}"#)
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn the_bank_adapter_answers_queries_from_the_bank_core() {
    use wagelink_adapters::bank::link::{CoreApi, serve_link};
    let gw = TestGateway::start(wagelink_tests::TestDb::sqlite().await).await;
    let account = "3100021109025111111";
    let answers = push(
        &gw,
        BANK,
        vec![single(
            &gw,
            BANK,
            &event("A-1", account, opened("2026-06-01")),
        )],
    )
    .await;
    receipt(&answers[0]);
    let mut unknown = event("A-2", "3100021109025222222", opened("2026-06-01"));
    unknown.event_id = "A-2".into();
    receipt(&push(&gw, BANK, vec![single(&gw, BANK, &unknown)]).await[0]);
    let core = CoreApi::from_url(&bank_core(account).await).unwrap();
    let channel = gw.channel_as(BANK).await;
    let signer = std::sync::Arc::new(gw.signer(BANK));
    tokio::spawn(serve_link(channel, signer, BANK.into(), core, 8));

    // Until the spawned link has said hello, the bank has no link: asked again.
    let mut tries = 0;
    let result = loop {
        tries += 1;
        match ask_balance(&gw, "hrss-500105", account).await {
            Err(e) if e.code() == Code::Unavailable && tries < 50 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => break other.unwrap(),
        }
    };
    let answer = result.answer.unwrap();
    assert_eq!(
        pb::Header::decode(answer.header.as_slice()).unwrap().sender,
        BANK
    );
    match pb::AccountQueryAnswer::decode(answer.payload.as_slice())
        .unwrap()
        .result
    {
        Some(pb::account_query_answer::Result::Balance(b)) => {
            assert_eq!((b.balance_fen, b.available_fen), (68_400_000, 60_000_000));
            assert!(b.as_of.is_some());
        }
        other => panic!("{other:?}"),
    }
    // The core does not know the other account: the asker hears NOT_FOUND from the bank.
    let e = ask(
        &gw,
        "hrss-500105",
        query(
            &gw,
            "hrss-500105",
            "3100021109025222222",
            pb::AccountQueryKind::Balance,
            order(),
        ),
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("bank-102 refused"), "{}", e.message());
    gw.stop().await;
}

#[tokio::test]
async fn each_warning_rule_fires_once_for_its_period() {
    let gw = TestGateway::start_with(wagelink_tests::TestDb::sqlite().await, |c| {
        c.banks.warning_scan_ms = 100
    })
    .await;
    let today = wagelink_gateway::cases::china_today();
    let days_ago = |n: i64| today.checked_sub(jiff::Span::new().days(n)).unwrap();
    let at = |d: jiff::civil::Date| prost_types::Timestamp {
        seconds: d
            .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
            .unwrap()
            .timestamp()
            .as_second()
            + 3600,
        nanos: 0,
    };
    let mut events = Vec::new();
    // R1: a wage account opened 40 days ago, never credited (and paid, so R2 stays quiet).
    let mut e = event(
        "W1-open",
        "1000000000000000001",
        opened(&days_ago(40).to_string()),
    );
    e.project_code = "P-R1".into();
    e.occurred_at = Some(at(days_ago(40)));
    events.push(e);
    // R3: payrolls of 1,000,000 yuan, an available balance of 100,000 yuan.
    let account3 = "1000000000000000003";
    let mut e = event("W3-open", account3, opened(&today.to_string()));
    e.project_code = "P-R3".into();
    events.push(e);
    let mut e = event("W3-credit", account3, credited(10_000_000));
    e.project_code = "P-R3".into();
    events.push(e);
    let mut e = event("W3-pay", account3, payroll("2026-10"));
    if let Some(Kind::PayrollPaid(p)) = e.kind.as_mut() {
        p.total_fen = 100_000_000;
    }
    e.project_code = "P-R3".into();
    events.push(e);
    let mut e = event(
        "W3-bal",
        account3,
        Kind::BalanceReported(pb::account_event::BalanceReported {
            balance_type: "CLAV".into(),
            amount_fen: 10_000_000,
            as_of_date: today.to_string(),
        }),
    );
    e.project_code = "P-R3".into();
    events.push(e);
    // R7: a guarantee letter expiring in 10 days; a deposit drawn 30 days ago, not topped up.
    let deposit = |id: &str, account: &str, kind: Kind, when: jiff::civil::Date| {
        let mut e = event(id, account, kind);
        e.account_kind = pb::AccountKind::GuaranteeDeposit as i32;
        e.project_code = String::new();
        e.occurred_at = Some(at(when));
        e
    };
    events.push(deposit(
        "G1",
        "2000000000000000001",
        Kind::GuaranteeLetterIssued(pb::account_event::GuaranteeLetterIssued {
            letter_number: "BH-2026-0099".into(),
            amount_fen: 50_000_000,
            valid_from: days_ago(355).to_string(),
            valid_to: today
                .checked_add(jiff::Span::new().days(10))
                .unwrap()
                .to_string(),
        }),
        days_ago(355),
    ));
    events.push(deposit(
        "G2-store",
        "2000000000000000002",
        Kind::DepositStored(pb::account_event::DepositStored {
            amount_fen: 80_000_000,
        }),
        days_ago(60),
    ));
    events.push(deposit(
        "G2-draw",
        "2000000000000000002",
        Kind::DepositDrawn(pb::account_event::DepositDrawn {
            amount_fen: 20_000_000,
            payment_notice_number: "垫付〔2026〕3号".into(),
            worker_count: 30,
        }),
        days_ago(30),
    ));
    let envelopes = events.iter().map(|e| single(&gw, BANK, e)).collect();
    for a in push(&gw, BANK, envelopes).await {
        receipt(&a);
    }
    // R8: three leads about one project from different employers.
    let me = "source-national-platform";
    for employer in ["甲", "乙", "丙"] {
        let lead = pb::Lead {
            channel: pb::LeadChannel::Hotline as i32,
            lead_type: pb::LeadType::Arrears as i32,
            region_code: "500105".into(),
            project_code: "P-R8".into(),
            employer_name: format!("重庆{employer}劳务有限公司"),
            worker_count: 2,
            ..Default::default()
        };
        wagelink_tests::submit_lead(&gw, me, &lead).await;
    }
    let store = gw.running.log.store();
    let expected = [("R1", "P-R1"), ("R3", "P-R3"), ("R8", "P-R8")];
    let mut all = Vec::new();
    for _ in 0..100 {
        all.clear();
        for rule in ["R1", "R3", "R7", "R8"] {
            for w in store.warnings(rule).await.unwrap() {
                all.push((rule, w.0, w.1));
            }
        }
        if all.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut again = Vec::new();
    for rule in ["R1", "R3", "R7", "R8"] {
        for w in store.warnings(rule).await.unwrap() {
            again.push((rule, w.0, w.1));
        }
    }
    assert_eq!(again, all, "a warning is raised once per period");
    for (rule, subject) in expected {
        assert!(
            all.iter().any(|(r, s, _)| *r == rule && s == subject),
            "{rule}: {all:?}"
        );
    }
    let r7: Vec<_> = all
        .iter()
        .filter(|(r, _, _)| *r == "R7")
        .map(|(_, s, p)| (s.as_str(), p.as_str()))
        .collect();
    assert_eq!(r7.len(), 2, "{r7:?}");
    assert!(r7.contains(&("2000000000000000001", "letter BH-2026-0099")));
    assert!(
        r7.iter()
            .any(|(s, p)| *s == "2000000000000000002" && p.starts_with("drawn "))
    );
    assert_eq!(all.len(), 5, "{all:?}");
    gw.stop().await;
}

#[tokio::test]
async fn the_adapter_runner_moves_each_camt_file_to_done_or_failed() {
    use wagelink_adapters::bank::runner::{AdapterConfig, run_bank};
    let gw = TestGateway::start(wagelink_tests::TestDb::sqlite().await).await;
    let dir = tempfile::tempdir().unwrap();
    let account = "3100021109025333333";
    let config = format!(
        r#"
[gateway]
address = "{}"
credentials = "{}"

[bank]
id = "{BANK}"
inbox = "inbox"
poll_ms = 100

[[bank.account]]
account_number = "{account}"
kind = "wage-account"
project_code = "{PROJECT}"
contractor_uscc = "{USCC}"
region_code = "500105"
"#,
        gw.address().uri,
        gw.partner_dir(BANK).display()
    );
    std::fs::write(dir.path().join("adapter.toml"), config).unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("a-good.xml"), camt054(account, "1200000.00")).unwrap();
    std::fs::write(inbox.join("b-bad.xml"), camt054(account, "12O0000.00")).unwrap();
    let config = AdapterConfig::load(&dir.path().join("adapter.toml")).unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(run_bank(config.gateway, config.bank.unwrap(), stop));
    let done = inbox.join("done/a-good.xml");
    let failed = inbox.join("failed/b-bad.xml");
    for _ in 0..100 {
        if done.exists() && failed.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        done.exists() && failed.exists(),
        "{:?}",
        std::fs::read_dir(&inbox).unwrap().collect::<Vec<_>>()
    );
    let reason = std::fs::read_to_string(inbox.join("failed/b-bad.xml.error.txt")).unwrap();
    assert!(reason.contains("Ntry[1]/Amt"), "{reason}");
    assert!(
        gw.running
            .log
            .store()
            .payroll_paid(account, "2026-10")
            .await
            .unwrap()
    );
    stop_tx.send(true).unwrap();
    runner.await.unwrap().unwrap();
    gw.stop().await;
}

/// A batch naming two projects reaches each project's industry authority; sent again after the
/// batch limit was lowered below its size, it gets its original receipt, while a new batch of
/// that size is refused.
#[tokio::test]
async fn a_batch_reaches_each_projects_authority_and_keeps_its_receipt_under_a_lower_limit() {
    for db in each_backend().await {
        let gw = TestGateway::start(db).await;
        for (code, industry, name) in [
            (
                PROJECT,
                pb::Industry::HousingMunicipal,
                "江北区某安置房项目",
            ),
            (
                "500105-2026-0077",
                pb::Industry::Transport,
                "江北区某道路工程",
            ),
        ] {
            let lead = project_lead(code, industry, name);
            wagelink_tests::submit_lead(&gw, "source-national-platform", &lead).await;
        }

        let mut road = event("R-2", "3100021109024777777", credited(5_000));
        road.project_code = "500105-2026-0077".into();
        let events = [
            event("R-1", "3100021109024888888", credited(1_000)),
            road,
            event("R-3", "3100021109024888888", credited(2_000)),
        ];
        let env = batch(&gw, BANK, &events);
        let first = receipt(&push(&gw, BANK, vec![env.clone()]).await[0]);
        let routed: Vec<_> = first
            .routed_to
            .iter()
            .map(|r| r.partner_id.as_str())
            .collect();
        assert_eq!(
            routed,
            ["hrss-500105", "housing-500000", "transport-500000"],
            "{}",
            gw.db_name
        );

        let mut stopped = gw.shutdown_keeping_data().await;
        stopped.config.banks.max_batch = 2;
        let gw = stopped.start().await;
        let again = receipt(&push(&gw, BANK, vec![env]).await[0]);
        assert_eq!(again, first, "{}", gw.db_name);
        let fresh: Vec<_> = ["R-4", "R-5", "R-6"]
            .iter()
            .map(|id| event(id, "3100021109024888888", credited(3_000)))
            .collect();
        let answers = push(&gw, BANK, vec![batch(&gw, BANK, &fresh)]).await;
        let (code, message) = rejection(&answers[0]);
        assert_eq!(code, Code::InvalidArgument, "{message}");
        assert!(message.contains("at most 2"), "{message}");
        gw.stop().await;
    }
}
