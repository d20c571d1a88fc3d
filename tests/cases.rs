//! The closed loop of the campaign (转办 → 签收 → 办理 → 办结 → 反馈) over real sockets, with
//! every step a signed envelope checked by the case state machine and logged: a lead reaches its
//! handler and co-handler, is signed for, referred to police (who decide on filing), resolved and
//! fed back to its source; a misrouted lead is returned and re-routed; a lead whose clock runs
//! out is escalated (督办) to the leading office; the offline audit verification passes over the
//! whole log afterwards. Then who may do and see what, cell by cell.

use std::time::Duration;

use prost::{Message, Name};
use tonic::Code;
use wagelink_gateway::ledger::export::{export, verify};
use wagelink_proto::envelope::sha256;
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::case_action::Action;
use wagelink_proto::v1::cases_client::CasesClient;
use wagelink_proto::v1::delivery_client::DeliveryClient;
use wagelink_tests::{TestDb, TestGateway, each_backend, header};

const SOURCE: &str = "source-national-platform";

fn lead(region: &str, employer: &str) -> pb::Lead {
    pb::Lead {
        channel: pb::LeadChannel::NationalPlatform as i32,
        lead_type: pb::LeadType::Arrears as i32,
        region_code: region.into(),
        sector: pb::Sector::Construction as i32,
        project_industry: pb::Industry::HousingMunicipal as i32,
        project_name: format!("{employer}安置房项目"),
        employer_name: format!("重庆{employer}建筑工程有限公司"),
        worker_count: 12,
        amount_fen: 36_000_000,
        reporter_name: "张三".into(),
        reporter_phone: "13800138000".into(),
        occurred_on: "2026-11-20".into(),
        ..Default::default()
    }
}

async fn start(db: TestDb) -> TestGateway {
    TestGateway::start_with(db, |c| {
        wagelink_tests::use_drill_rules(c);
        c.cases.overdue_scan_ms = 100;
    })
    .await
}

async fn submit(gw: &TestGateway, who: &str, lead: &pb::Lead) -> pb::Receipt {
    wagelink_tests::submit_lead(gw, who, lead).await
}

/// Signs and sends one case action as `who`.
async fn try_act(
    gw: &TestGateway,
    who: &str,
    case_id: &str,
    action: Action,
    in_reply_to: &str,
) -> Result<pb::Receipt, tonic::Status> {
    let mut h = header(who);
    h.subject = case_id.into();
    h.in_reply_to = in_reply_to.into();
    let payload = pb::CaseAction {
        case_id: case_id.into(),
        action: Some(action),
    };
    let env = gw.signer(who).seal(h, &payload).unwrap();
    let r = CasesClient::new(gw.channel_as(who).await)
        .act_on_case(env)
        .await?
        .into_inner()
        .receipt
        .unwrap();
    Ok(pb::Receipt::decode(r.payload.as_slice()).unwrap())
}

async fn act(gw: &TestGateway, who: &str, case_id: &str, action: Action) -> pb::Receipt {
    try_act(gw, who, case_id, action, "")
        .await
        .unwrap_or_else(|s| panic!("{who} on {case_id}: {s:?}"))
}

async fn get(gw: &TestGateway, who: &str, case_id: &str) -> Result<pb::CaseView, tonic::Status> {
    CasesClient::new(gw.channel_as(who).await)
        .get_case(pb::GetCaseRequest {
            case_id: case_id.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// What `who`'s mailbox holds (pending), as (payload type, payload, header), oldest first.
async fn inbox(gw: &TestGateway, who: &str, at_least: usize) -> Vec<(String, Vec<u8>, pb::Header)> {
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
        let Ok(Ok(Some(d))) = tokio::time::timeout(Duration::from_secs(10), stream.message()).await
        else {
            break;
        };
        let env = d.envelope.unwrap();
        let h = pb::Header::decode(env.header.as_slice()).unwrap();
        out.push((h.payload_type.clone(), env.payload, h));
    }
    out
}

fn actions_in(inbox: &[(String, Vec<u8>, pb::Header)]) -> Vec<pb::CaseAction> {
    inbox
        .iter()
        .filter(|(t, _, _)| *t == pb::CaseAction::full_name())
        .map(|(_, p, _)| pb::CaseAction::decode(p.as_slice()).unwrap())
        .collect()
}

fn sign_for() -> Action {
    Action::SignFor(pb::case_action::SignFor {
        note: "监察一科".into(),
    })
}

fn referral(letter: bool) -> Action {
    let mut documents = vec![pb::Document {
        file_name: "调查报告.pdf".into(),
        sha256: sha256(b"report").to_vec(),
        size_bytes: 6,
        kind: pb::DocumentKind::InvestigationReport as i32,
        media_type: "application/pdf".into(),
    }];
    if letter {
        documents.push(pb::Document {
            file_name: "移送书.pdf".into(),
            sha256: sha256(b"letter").to_vec(),
            size_bytes: 6,
            kind: pb::DocumentKind::ReferralLetter as i32,
            media_type: "application/pdf".into(),
        });
    }
    Action::Forward(pb::case_action::Forward {
        to_partner: "police-500112".into(),
        summary: "涉嫌拒不支付劳动报酬罪".into(),
        documents,
        target: Some(pb::case_action::forward::Target::CriminalReferral(
            pb::case_action::CriminalReferral {
                amount_fen: 36_000_000,
                worker_count: 12,
                months_owed: 4,
                order_to_pay_number: "渝北人社监令〔2026〕18号".into(),
                order_delivered_on: "2026-11-02".into(),
                decided_on: "2026-11-27".into(),
            },
        )),
    })
}

fn resolve() -> Action {
    Action::Resolve(pb::case_action::Resolve {
        conclusion: pb::CaseConclusion::ArrearsPaid as i32,
        channel: pb::ResolutionChannel::CriminalCase as i32,
        amount_recovered_fen: 36_000_000,
        workers_paid: 12,
        resolved_on: "2026-11-27".into(),
        summary: "立案后全额支付".into(),
    })
}

fn feedback() -> Action {
    Action::Feedback(pb::case_action::Feedback {
        text: "已全额支付12名工人工资".into(),
        reporter_contacted: true,
        reporter_satisfied: Some(true),
    })
}

fn kinds(view: &pb::CaseView) -> Vec<pb::CaseEventKind> {
    view.history.iter().map(|e| e.kind()).collect()
}

async fn wait_for_state(
    gw: &TestGateway,
    who: &str,
    case_id: &str,
    state: pb::CaseState,
) -> pb::CaseView {
    for _ in 0..100 {
        let v = get(gw, who, case_id).await.unwrap();
        if v.state() == state {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("case {case_id} never reached {state:?}");
}

#[tokio::test]
async fn the_closed_loop_on_both_backends() {
    for db in each_backend().await {
        closed_loop(start(db).await).await;
    }
}

async fn closed_loop(gw: TestGateway) {
    // 1. The national platform submits a lead about a housing project in 渝北区.
    let receipt = submit(&gw, SOURCE, &lead("500112", "渝北某")).await;
    let case = receipt.case_id.clone();
    let routed: Vec<_> = receipt
        .routed_to
        .iter()
        .map(|r| r.partner_id.as_str())
        .collect();
    assert_eq!(routed, ["hrss-500112", "housing-500000"], "{receipt:?}");
    for who in ["hrss-500112", "housing-500000"] {
        let got = inbox(&gw, who, 1).await;
        assert_eq!(got[0].0, pb::Lead::full_name(), "{who}");
        assert_eq!(got[0].2.sender, SOURCE);
        // The reporter's personal data travels to the handler only; the co-handler gets the
        // signed header and reads the lead without it through GetCase.
        let lead = pb::Lead::decode(got[0].1.as_slice()).unwrap();
        if who == "hrss-500112" {
            assert_eq!(lead.reporter_phone, "13800138000");
        } else {
            assert!(got[0].1.is_empty(), "{who} got the lead's payload");
        }
    }

    // 2. hrss-500112 signs for it, refers it to the police of 渝北区, who sign for the referral
    // and decide to file; then it resolves the case and feeds back.
    act(&gw, "hrss-500112", &case, sign_for()).await;
    let err = try_act(&gw, "hrss-500112", &case, referral(false), "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("referral letter"),
        "{}",
        err.message()
    );
    let forward = act(&gw, "hrss-500112", &case, referral(true)).await;
    assert_eq!(forward.routed_to[0].partner_id, "police-500112");
    let police = inbox(&gw, "police-500112", 1).await;
    let referral_msg = &police.last().unwrap().2;
    assert!(matches!(
        actions_in(&police).last().unwrap().action,
        Some(Action::Forward(_))
    ));
    act(&gw, "police-500112", &case, sign_for()).await;
    let filing = Action::FilingDecision(pb::case_action::FilingDecision {
        outcome: pb::FilingOutcome::Filed as i32,
        reason: String::new(),
        police_case_number: "渝北公（经）立字〔2026〕77号".into(),
        decided_on: "2026-11-28".into(),
    });
    // The decision must answer the referral it decides on.
    let err = try_act(&gw, "police-500112", &case, filing.clone(), "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains(&referral_msg.message_id),
        "{}",
        err.message()
    );
    try_act(
        &gw,
        "police-500112",
        &case,
        filing,
        &referral_msg.message_id,
    )
    .await
    .unwrap();
    let v = get(&gw, "hrss-500112", &case).await.unwrap();
    assert_eq!(v.state(), pb::CaseState::Forwarded);
    assert_eq!(
        v.filing.as_ref().unwrap().outcome(),
        pb::FilingOutcome::Filed
    );
    let filing_clock = v
        .deadlines
        .iter()
        .find(|d| d.kind() == pb::ClockKind::FilingDecision)
        .unwrap();
    assert!(filing_clock.met_at.is_some() && !filing_clock.overdue);
    act(&gw, "hrss-500112", &case, resolve()).await;
    let fed = act(&gw, "hrss-500112", &case, feedback()).await;
    assert!(fed.routed_to.iter().any(|r| r.partner_id == SOURCE));

    // 3. The national platform receives the feedback, signed by hrss-500112.
    let got = inbox(&gw, SOURCE, 1).await;
    let feedback_in = got
        .iter()
        .find(|(t, p, _)| {
            *t == pb::CaseAction::full_name()
                && matches!(
                    pb::CaseAction::decode(p.as_slice()).unwrap().action,
                    Some(Action::Feedback(_))
                )
        })
        .expect("the source received the feedback");
    assert_eq!(feedback_in.2.sender, "hrss-500112");
    act(
        &gw,
        "hrss-500112",
        &case,
        Action::Close(pb::case_action::Close {
            note: String::new(),
        }),
    )
    .await;
    // A closed case takes no more steps; its state is told only to those with a role on it.
    let e = try_act(&gw, "hrss-500112", &case, sign_for(), "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("CLOSED"), "{}", e.message());
    let e = try_act(&gw, "hrss-500103", &case, sign_for(), "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(!e.message().contains("CLOSED"), "{}", e.message());
    // A sanction is still recorded after closing, and the leading office is told.
    let sanction = act(
        &gw,
        "hrss-500112",
        &case,
        Action::Sanction(pb::case_action::Sanction {
            kind: pb::SanctionKind::JointPunishmentList as i32,
            subject_name: "重庆渝北某建筑工程有限公司".into(),
            subject_uscc: "91350100M000100Y43".into(),
            decision_number: "渝北人社失信〔2026〕5号".into(),
            decided_on: "2026-11-28".into(),
            note: String::new(),
        }),
    )
    .await;
    assert!(
        sanction
            .routed_to
            .iter()
            .any(|r| r.partner_id == "leading-office-500000"),
        "{sanction:?}"
    );
    let v = get(&gw, SOURCE, &case).await.unwrap();
    assert_eq!(v.state(), pb::CaseState::Closed);
    use pb::CaseEventKind as E;
    assert_eq!(
        kinds(&v),
        [
            E::Lead,
            E::SignFor,
            E::Forward,
            E::SignFor,
            E::FilingDecision,
            E::Resolve,
            E::Feedback,
            E::Close,
            E::Sanction
        ]
    );
    assert_eq!(v.resolution.as_ref().unwrap().workers_paid, 12);
    // The reporter's personal data: for the source and the holder, not for the co-handler.
    assert_eq!(v.lead.as_ref().unwrap().reporter_phone, "13800138000");
    let co = get(&gw, "housing-500000", &case).await.unwrap();
    assert_eq!(co.lead.as_ref().unwrap().reporter_phone, "");
    assert_eq!(co.lead.as_ref().unwrap().reporter_name, "");
    assert_eq!(co.my_roles().collect::<Vec<_>>(), [pb::CaseRole::CoHandler]);

    // 4. A lead sent to the wrong district: hrss-500103 returns it, naming 江北区's office; the
    // rules re-route it there.
    let wrong = submit(&gw, SOURCE, &lead("500103", "江北某")).await;
    assert_eq!(wrong.routed_to[0].partner_id, "hrss-500103");
    let back = act(
        &gw,
        "hrss-500103",
        &wrong.case_id,
        Action::ReturnCase(pb::case_action::Return {
            reason: pb::ReturnReason::OutsideRegion as i32,
            explanation: "项目位于江北区".into(),
            suggested_handler: "hrss-500105".into(),
        }),
    )
    .await;
    assert_eq!(back.routed_to[0].partner_id, "hrss-500105", "{back:?}");
    assert_eq!(back.routed_to[0].rule_id, "construction-housing");
    let v = get(&gw, "hrss-500105", &wrong.case_id).await.unwrap();
    assert_eq!(
        (v.state(), v.holder.as_str(), v.region_code.as_str()),
        (pb::CaseState::Transferred, "hrss-500105", "500105")
    );
    assert!(matches!(
        actions_in(&inbox(&gw, "hrss-500105", 1).await)[0].action,
        Some(Action::ReturnCase(_))
    ));
    // The returner no longer holds it.
    let err = try_act(&gw, "hrss-500103", &wrong.case_id, sign_for(), "")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    act(&gw, "hrss-500105", &wrong.case_id, sign_for()).await;

    // 5. A lead whose sign-for clock (1 second in the drill rules) runs out is escalated to the
    // city leading office by the gateway itself.
    let late = submit(&gw, SOURCE, &lead("500101", "万州某")).await;
    let v = wait_for_state(&gw, SOURCE, &late.case_id, pb::CaseState::Escalated).await;
    assert_eq!(v.escalated_from(), pb::CaseState::Transferred);
    assert!(v.supervisors.contains(&"leading-office-500000".to_string()));
    let sign = v
        .deadlines
        .iter()
        .find(|d| d.kind() == pb::ClockKind::SignFor)
        .unwrap();
    assert!(sign.overdue && sign.met_at.is_none());
    let escalation = v.history.last().unwrap();
    assert_eq!(
        (escalation.kind(), escalation.actor.as_str()),
        (E::Escalate, "gateway")
    );
    // (The sanction of the first case came before.)
    let office = inbox(&gw, "leading-office-500000", 2).await;
    let esc = office
        .iter()
        .find(|(_, _, h)| h.sender == "gateway")
        .expect("the leading office received the escalation");
    match pb::CaseAction::decode(esc.1.as_slice()).unwrap().action {
        Some(Action::Escalate(e)) => {
            assert_eq!(e.overdue_partner, "hrss-500101");
            assert_eq!(e.overdue_clock(), pb::ClockKind::SignFor);
        }
        other => panic!("{other:?}"),
    }
    // The holder may still act as in the state it was escalated from.
    act(&gw, "hrss-500101", &late.case_id, sign_for()).await;
    let v = get(&gw, "leading-office-500000", &late.case_id)
        .await
        .unwrap();
    // (Its 1-second handle clock may already have escalated it again.)
    assert!(
        v.state() == pb::CaseState::SignedFor
            || (v.state() == pb::CaseState::Escalated
                && v.escalated_from() == pb::CaseState::SignedFor),
        "{:?}",
        v.state()
    );
    assert!(v.my_roles.contains(&(pb::CaseRole::Supervisor as i32)));

    // 6. The whole log verifies offline.
    let size = gw.running.log.size();
    for _ in 0..100 {
        if gw.running.log.latest_checkpoint().tree_size == size {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut out = Vec::new();
    export(
        gw.running.log.store(),
        gw.running.log.keys(),
        "wagelink.dev",
        true,
        &mut out,
    )
    .await
    .unwrap();
    let trusted = gw.running.log.keys().log_key.verifier().to_text();
    let verified = verify(out.as_slice(), Some(&trusted), |_, _| {}).unwrap();
    // (The drill's 1-second handle clock may have escalated the third case again meanwhile.)
    assert!(verified.entries >= size, "{} < {size}", verified.entries);
    assert!(verified.signatures >= size);
    gw.stop().await;
}

#[tokio::test]
async fn the_same_matter_from_two_sources_is_one_case() {
    let gw = start(TestDb::sqlite().await).await;
    let first = submit(&gw, SOURCE, &lead("500112", "两报")).await;
    // The district office took the same complaint at its counter (首问负责).
    let mut again = lead("500112", "两报");
    again.channel = pb::LeadChannel::AgencyReferral as i32;
    again.employer_name = format!(" {} ", again.employer_name);
    let second = submit(&gw, "hrss-500000", &again).await;
    assert_eq!(second.case_id, first.case_id);
    let v = get(&gw, "hrss-500000", &first.case_id).await.unwrap();
    assert_eq!(v.also_reported_by, ["hrss-500000"]);
    assert_eq!(v.my_roles().collect::<Vec<_>>(), [pb::CaseRole::Source]);
    assert_eq!(v.history.len(), 2);
    // Another employer is another case.
    let other = submit(&gw, SOURCE, &lead("500112", "别家")).await;
    assert_ne!(other.case_id, first.case_id);
    gw.stop().await;
}

/// Who may do what on a case held by hrss-500112, cell by cell: the holder, its co-handler,
/// another district's office, the police it was not referred to, the source, the leading office.
#[tokio::test]
async fn only_the_roles_on_a_case_may_act_on_it_or_see_it() {
    let gw = start(TestDb::sqlite().await).await;
    let case = submit(&gw, SOURCE, &lead("500112", "权限")).await.case_id;
    let refused = |code: Code| {
        move |r: Result<pb::Receipt, tonic::Status>| {
            let e = r.expect_err("refused");
            assert_eq!(e.code(), code, "{e:?}");
            e
        }
    };
    let deny = refused(Code::PermissionDenied);
    let wrong_state = refused(Code::FailedPrecondition);
    let supervise = Action::Supervise(pb::case_action::Supervise {
        instruction: "限期办结".into(),
        due_on: "2099-12-31".into(),
        checks: vec![],
        supervision_number: "渝治欠办督〔2026〕3号".into(),
    });
    let transfer = Action::Transfer(pb::case_action::Transfer {
        to_partner: "hrss-500105".into(),
        reason: "管辖".into(),
    });
    let escalate = Action::Escalate(pb::case_action::Escalate::default());

    // Another district's office: no role, no step, no view, not in its list.
    for action in [
        sign_for(),
        resolve(),
        feedback(),
        supervise.clone(),
        transfer.clone(),
    ] {
        let e = deny(try_act(&gw, "hrss-500103", &case, action, "").await);
        assert!(
            e.message().contains("your roles on it: none"),
            "{}",
            e.message()
        );
    }
    let e = get(&gw, "hrss-500103", &case).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let list = |who: &'static str| {
        let gw = &gw;
        async move {
            CasesClient::new(gw.channel_as(who).await)
                .list_cases(pb::ListCasesRequest::default())
                .await
                .unwrap()
                .into_inner()
                .cases
                .into_iter()
                .map(|c| c.case_id)
                .collect::<Vec<_>>()
        }
    };
    assert!(list("hrss-500103").await.is_empty());
    assert_eq!(list("hrss-500112").await, std::slice::from_ref(&case));
    assert_eq!(list("housing-500000").await, std::slice::from_ref(&case));
    assert_eq!(list(SOURCE).await, std::slice::from_ref(&case));
    assert_eq!(
        list("leading-office-500000").await,
        std::slice::from_ref(&case)
    );
    // Police not referred to, the co-handler, the source: no holder steps.
    deny(try_act(&gw, "police-500112", &case, sign_for(), "").await);
    deny(try_act(&gw, "housing-500000", &case, sign_for(), "").await);
    deny(try_act(&gw, "housing-500000", &case, resolve(), "").await);
    // The holder may not supervise or transfer; nobody but the gateway escalates.
    deny(try_act(&gw, "hrss-500112", &case, supervise.clone(), "").await);
    deny(try_act(&gw, "hrss-500112", &case, transfer.clone(), "").await);
    deny(try_act(&gw, "hrss-500112", &case, escalate.clone(), "").await);
    deny(try_act(&gw, "leading-office-500000", &case, escalate, "").await);
    // Kinds the table refuses outright.
    let e = CasesClient::new(gw.channel_as("bank-102").await)
        .get_case(pb::GetCaseRequest {
            case_id: case.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // Steps out of order name the state and what it allows.
    let e = wrong_state(try_act(&gw, "hrss-500112", &case, resolve(), "").await);
    assert!(
        e.message().contains("TRANSFERRED") && e.message().contains("sign_for"),
        "{}",
        e.message()
    );
    wrong_state(try_act(&gw, "hrss-500112", &case, feedback(), "").await);
    // Unknown case; a forward to the wrong kind of partner.
    let e = try_act(&gw, "hrss-500112", "WL-20260101-999999", sign_for(), "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    act(&gw, "hrss-500112", &case, sign_for()).await;
    let mut to_court = referral(true);
    if let Action::Forward(f) = &mut to_court {
        f.to_partner = "court-500112".into();
    }
    let e = try_act(&gw, "hrss-500112", &case, to_court, "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("police"), "{}", e.message());
    // The co-handler reports progress; the leading office supervises and transfers.
    act(
        &gw,
        "housing-500000",
        &case,
        Action::Progress(pb::case_action::Progress {
            note: "已约谈总包单位".into(),
            ..Default::default()
        }),
    )
    .await;
    act(&gw, "leading-office-500000", &case, supervise).await;
    let v = get(&gw, "hrss-500112", &case).await.unwrap();
    assert_eq!(
        (v.state(), v.escalated_from()),
        (pb::CaseState::Escalated, pb::CaseState::SignedFor)
    );
    assert!(v.supervised);
    assert_eq!(v.checklist.len(), 3);
    // The holder reports on the 一案三查 checklist.
    act(
        &gw,
        "hrss-500112",
        &case,
        Action::Progress(pb::case_action::Progress {
            note: "一案三查".into(),
            checks: vec![pb::SupervisionCheck {
                kind: pb::SupervisionCheckKind::PaymentSystems as i32,
                finding: "未按月足额拨付人工费用".into(),
                completed: true,
            }],
            ..Default::default()
        }),
    )
    .await;
    let v = get(&gw, "leading-office-500000", &case).await.unwrap();
    assert_eq!(v.state(), pb::CaseState::Handling);
    let check = v
        .checklist
        .iter()
        .find(|c| c.kind() == pb::SupervisionCheckKind::PaymentSystems)
        .unwrap();
    assert!(check.completed && check.finding.contains("人工费用"));
    act(&gw, "leading-office-500000", &case, transfer).await;
    let v = get(&gw, "hrss-500105", &case).await.unwrap();
    assert_eq!(
        (v.state(), v.holder.as_str()),
        (pb::CaseState::Transferred, "hrss-500105")
    );
    // The supervision due date passes to the new holder, still running.
    let due = v
        .deadlines
        .iter()
        .find(|d| d.kind() == pb::ClockKind::Supervision)
        .unwrap();
    assert_eq!((due.partner_id.as_str(), due.met_at), ("hrss-500105", None));
    deny(try_act(&gw, "hrss-500112", &case, sign_for(), "").await);
    gw.stop().await;
}

#[tokio::test]
async fn letters_are_sent_answered_once_and_only_by_their_addressee() {
    let gw = start(TestDb::sqlite().await).await;
    let case = submit(&gw, SOURCE, &lead("500112", "函件")).await.case_id;
    let send = |who: &'static str, to: &'static str, letter: pb::Letter, in_reply_to: String| {
        let gw = &gw;
        async move {
            let mut h = header(who);
            h.recipients = vec![to.into()];
            h.in_reply_to = in_reply_to;
            let env = gw.signer(who).seal(h, &letter).unwrap();
            CasesClient::new(gw.channel_as(who).await)
                .send_letter(env)
                .await
                .map(|r| r.into_inner())
        }
    };
    let ask = pb::Letter {
        kind: pb::LetterKind::AssistanceRequest as i32,
        to_partner: "housing-500000".into(),
        case_id: case.clone(),
        title: "关于协助核查渝北区函件安置房项目欠薪问题的函".into(),
        text: "请核查总包单位人工费用拨付情况".into(),
        due_on: "2099-01-10".into(),
        ..Default::default()
    };
    // Only a leading office sends the three letters.
    let e = send("hrss-500112", "housing-500000", ask.clone(), String::new())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    send(
        "leading-office-500000",
        "housing-500000",
        ask.clone(),
        String::new(),
    )
    .await
    .unwrap();
    // A second request, left unanswered.
    send(
        "leading-office-500000",
        "housing-500000",
        pb::Letter {
            title: "关于再次协助核查的函".into(),
            ..ask.clone()
        },
        String::new(),
    )
    .await
    .unwrap();
    let got = inbox(&gw, "housing-500000", 2).await;
    let letter = got
        .iter()
        .find(|(t, _, _)| *t == pb::Letter::full_name())
        .expect("the addressee received the letter");
    let letter_id = letter.2.message_id.clone();
    let reply = pb::Letter {
        kind: pb::LetterKind::Reply as i32,
        to_partner: "leading-office-500000".into(),
        case_id: case.clone(),
        title: "回函".into(),
        text: "已核查，人工费用已拨付".into(),
        ..Default::default()
    };
    let e = send(
        "hrss-500112",
        "leading-office-500000",
        reply.clone(),
        letter_id.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    send(
        "housing-500000",
        "leading-office-500000",
        reply.clone(),
        letter_id.clone(),
    )
    .await
    .unwrap();
    let e = send(
        "housing-500000",
        "leading-office-500000",
        reply,
        letter_id.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let v = get(&gw, "housing-500000", &case).await.unwrap();
    // The reply met its letter's clock only; the other letter's still runs.
    let clocks: Vec<_> = v
        .deadlines
        .iter()
        .filter(|d| d.kind() == pb::ClockKind::LetterReply)
        .collect();
    assert_eq!(clocks.len(), 2);
    for c in clocks {
        assert_eq!(c.met_at.is_some(), c.awaits_reply_to == letter_id, "{c:?}");
    }
    // Recipients must name the addressee.
    let e = send("leading-office-500000", "hrss-500112", ask, String::new())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    gw.stop().await;
}

#[tokio::test]
async fn cases_are_listed_a_page_at_a_time() {
    let gw = start(TestDb::sqlite().await).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            submit(&gw, SOURCE, &lead("500112", &format!("分页{i}")))
                .await
                .case_id,
        );
    }
    let mut client = CasesClient::new(gw.channel_as("hrss-500112").await);
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_cases(pb::ListCasesRequest {
                page_size: 2,
                page_token: token.clone(),
                states: vec![pb::CaseState::Transferred as i32],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.cases.len() <= 2);
        seen.extend(page.cases.into_iter().map(|c| c.case_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
    // A token is bound to its filters; bad sizes and regions are named.
    let first_token = token_of(&mut client).await;
    let e = client
        .list_cases(pb::ListCasesRequest {
            page_size: 2,
            page_token: first_token,
            overdue_only: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("page_token"), "{}", e.message());
    for bad in [
        pb::ListCasesRequest {
            page_size: 1001,
            ..Default::default()
        },
        pb::ListCasesRequest {
            region_code: "999999".into(),
            ..Default::default()
        },
    ] {
        let e = client.list_cases(bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    }
    gw.stop().await;
}

async fn token_of(client: &mut CasesClient<tonic::transport::Channel>) -> String {
    client
        .list_cases(pb::ListCasesRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token
}

#[tokio::test]
async fn a_source_reference_names_one_lead_per_source() {
    let gw = start(TestDb::sqlite().await).await;
    let mut first = lead("500112", "编号");
    first.source_reference = "GZQX-2026-000123".into();
    let case = submit(&gw, SOURCE, &first).await.case_id;
    // Another lead under the same reference from the same source is refused, naming the case.
    let mut other = lead("500105", "另一");
    other.source_reference = first.source_reference.clone();
    let env = gw.signer(SOURCE).seal(header(SOURCE), &other).unwrap();
    let e = CasesClient::new(gw.channel_as(SOURCE).await)
        .submit_lead(env)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains(&case), "{}", e.message());
    // Another source may use the same text for its own lead.
    let theirs = submit(&gw, "hrss-500000", &other).await;
    assert_ne!(theirs.case_id, case);
    gw.stop().await;
}
