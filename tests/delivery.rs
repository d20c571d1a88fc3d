//! Delivery end to end: a routed lead opens a case and reaches each recipient's durable mailbox;
//! a recipient's signed acknowledgement is logged as the proof of delivery; unacknowledged
//! messages are sent again and dead-lettered after too many attempts; mailboxes survive a
//! restart — on SQLite and PostgreSQL.

use std::time::Duration;

use prost::{Message, Name};
use tonic::Code;
use wagelink_proto::envelope::sha256;
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::cases_client::CasesClient;
use wagelink_proto::v1::delivery_client::DeliveryClient;
use wagelink_tests::{TestDb, TestGateway, each_backend, header};

/// The national platform submits a lead about a housing project in Yubei.
async fn submit_housing_lead(
    gw: &TestGateway,
) -> (pb::SignedEnvelope, pb::Receipt, pb::SignedEnvelope) {
    let me = "source-national-platform";
    let lead = pb::Lead {
        channel: pb::LeadChannel::NationalPlatform as i32,
        lead_type: pb::LeadType::Arrears as i32,
        region_code: "500112".into(),
        sector: pb::Sector::Construction as i32,
        project_industry: pb::Industry::HousingMunicipal as i32,
        worker_count: 8,
        amount_fen: 32_000_000,
        reporter_phone: "13800138000".into(),
        ..Default::default()
    };
    let env = gw.signer(me).seal(header(me), &lead).unwrap();
    let receipt = CasesClient::new(gw.channel_as(me).await)
        .submit_lead(env.clone())
        .await
        .unwrap()
        .into_inner()
        .receipt
        .unwrap();
    (
        env,
        pb::Receipt::decode(receipt.payload.as_slice()).unwrap(),
        receipt,
    )
}

async fn subscribe(gw: &TestGateway, partner: &str) -> tonic::Streaming<pb::MailboxDelivery> {
    DeliveryClient::new(gw.channel_as(partner).await)
        .subscribe(pb::SubscribeRequest {
            from_cursor: 0,
            window: 0,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn next(
    stream: &mut tonic::Streaming<pb::MailboxDelivery>,
    within: Duration,
) -> Option<pb::MailboxDelivery> {
    tokio::time::timeout(within, stream.message())
        .await
        .ok()
        .and_then(|m| m.unwrap())
}

fn acknowledgement(gw: &TestGateway, partner: &str, d: &pb::MailboxDelivery) -> pb::SignedEnvelope {
    let env = d.envelope.as_ref().unwrap();
    let ack = pb::Acknowledgement {
        message_id: pb::Header::decode(env.header.as_slice())
            .unwrap()
            .message_id,
        cursor: d.cursor,
        header_sha256: sha256(&env.header).to_vec(),
        case_id: String::new(),
    };
    gw.signer(partner).seal(header(partner), &ack).unwrap()
}

#[tokio::test]
async fn a_routed_lead_reaches_each_recipient_and_acknowledgements_are_logged() {
    for db in each_backend().await {
        let gw = TestGateway::start(db).await;
        let (env, body, receipt) = submit_housing_lead(&gw).await;
        assert!(
            body.case_id.starts_with("WL-"),
            "{}: case id {:?}",
            gw.db_name,
            body.case_id
        );

        for partner in ["hrss-500112", "housing-500000"] {
            let mut mailbox = subscribe(&gw, partner).await;
            let d = next(&mut mailbox, Duration::from_secs(5))
                .await
                .expect("the lead arrives");
            assert_eq!(d.cursor, 1);
            assert_eq!(d.attempt, 1);
            // The handler gets the envelope exactly as signed; the co-handler the signed header
            // without the lead's payload (the reporter's personal data is the handler's only).
            let expected = if partner == "hrss-500112" {
                env.clone()
            } else {
                pb::SignedEnvelope {
                    payload: Vec::new(),
                    ..env.clone()
                }
            };
            assert_eq!(
                d.envelope.as_ref().unwrap(),
                &expected,
                "{partner} got other bytes than were signed"
            );
            assert_eq!(d.receipt.as_ref().unwrap(), &receipt);

            let ack = acknowledgement(&gw, partner, &d);
            let r = DeliveryClient::new(gw.channel_as(partner).await)
                .acknowledge(ack.clone())
                .await
                .unwrap()
                .into_inner()
                .receipt
                .unwrap();
            let r = pb::Receipt::decode(r.payload.as_slice()).unwrap();
            assert_eq!(r.kind(), pb::ReceiptKind::Acknowledged);
            assert_eq!(r.case_id, body.case_id);
            // Acknowledging again with the same bytes is idempotent.
            let again = DeliveryClient::new(gw.channel_as(partner).await)
                .acknowledge(ack)
                .await
                .unwrap()
                .into_inner()
                .receipt
                .unwrap();
            assert_eq!(
                pb::Receipt::decode(again.payload.as_slice())
                    .unwrap()
                    .log_index,
                r.log_index
            );
            // Nothing is pending any more.
            let mut again = subscribe(&gw, partner).await;
            assert!(
                next(&mut again, Duration::from_millis(700)).await.is_none(),
                "{partner}: delivered twice"
            );
        }
        // A district the lead is not about receives nothing.
        let mut other = subscribe(&gw, "hrss-500113").await;
        assert!(next(&mut other, Duration::from_millis(700)).await.is_none());

        // The log holds the lead and the two acknowledgements, which name what they prove.
        let entries = gw.running.log.store().entries(0, 3, false).await.unwrap();
        let acks: Vec<_> = entries
            .iter()
            .filter_map(
                |e| match pb::EntryBody::decode(e.entry.as_slice()).unwrap().kind {
                    Some(pb::entry_body::Kind::Acknowledged(a)) => Some(a),
                    _ => None,
                },
            )
            .collect();
        assert_eq!(acks.len(), 2);
        assert!(
            acks.iter()
                .all(|a| a.delivered_log_index == Some(body.log_index)
                    && a.delivered_sender == "source-national-platform")
        );
        assert_eq!(acks[0].recipient, "hrss-500112");

        // The sender's mailbox holds a DELIVERED receipt per acknowledgement: the recipient's
        // signed acknowledgement with the gateway's receipt naming what it proves.
        let me = "source-national-platform";
        let mut mailbox = subscribe(&gw, me).await;
        let mut delivered_to = Vec::new();
        for _ in 0..2 {
            let d = next(&mut mailbox, Duration::from_secs(5))
                .await
                .expect("a DELIVERED receipt");
            let ack_env = d.envelope.as_ref().unwrap();
            let ack_header = pb::Header::decode(ack_env.header.as_slice()).unwrap();
            assert_eq!(ack_header.payload_type, pb::Acknowledgement::full_name());
            let receipt = d.receipt.as_ref().unwrap();
            let r = pb::Receipt::decode(receipt.payload.as_slice()).unwrap();
            assert_eq!(r.kind(), pb::ReceiptKind::Delivered);
            assert_eq!(r.header_sha256, sha256(&env.header).to_vec());
            assert_eq!(
                r.acknowledgement_header_sha256,
                sha256(&ack_env.header).to_vec()
            );
            assert_eq!(r.delivered_to, ack_header.sender);
            assert_eq!(r.case_id, body.case_id);
            assert_eq!(r.payload_type, pb::Lead::full_name());
            assert_eq!(
                pb::Header::decode(receipt.header.as_slice())
                    .unwrap()
                    .sender,
                "gateway"
            );
            delivered_to.push(r.delivered_to.clone());
            // Acknowledging a DELIVERED receipt is logged too, and reported to no one.
            DeliveryClient::new(gw.channel_as(me).await)
                .acknowledge(acknowledgement(&gw, me, &d))
                .await
                .unwrap();
        }
        delivered_to.sort();
        assert_eq!(delivered_to, ["housing-500000", "hrss-500112"]);
        for partner in ["hrss-500112", "housing-500000", me] {
            let mut again = subscribe(&gw, partner).await;
            assert!(
                next(&mut again, Duration::from_millis(500)).await.is_none(),
                "{partner}: something more was delivered"
            );
        }
        gw.stop().await;
    }
}

#[tokio::test]
async fn unacknowledged_messages_come_again_then_are_dead_lettered() {
    let gw = TestGateway::start_with(TestDb::sqlite().await, |c| {
        c.delivery.redeliver_after_ms = 200;
        c.delivery.max_attempts = 3;
    })
    .await;
    submit_housing_lead(&gw).await;
    let mut mailbox = subscribe(&gw, "hrss-500112").await;
    let mut attempts = Vec::new();
    while let Some(d) = next(&mut mailbox, Duration::from_secs(3)).await {
        assert_eq!(d.cursor, 1);
        attempts.push(d.attempt);
    }
    assert_eq!(attempts, vec![1, 2, 3], "sent again until dead-lettered");
    // A new subscription does not resurrect a dead letter.
    let mut again = subscribe(&gw, "hrss-500112").await;
    assert!(next(&mut again, Duration::from_millis(700)).await.is_none());
    gw.stop().await;
}

#[tokio::test]
async fn mailboxes_survive_a_restart_and_bad_acknowledgements_are_refused() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    submit_housing_lead(&gw).await;
    let gw = gw.restart().await;
    let mut mailbox = subscribe(&gw, "housing-500000").await;
    let d = next(&mut mailbox, Duration::from_secs(5))
        .await
        .expect("still pending after a restart");

    let mut client = DeliveryClient::new(gw.channel_as("housing-500000").await);
    let env = d.envelope.as_ref().unwrap();
    let wrong = pb::Acknowledgement {
        message_id: pb::Header::decode(env.header.as_slice())
            .unwrap()
            .message_id,
        cursor: d.cursor,
        header_sha256: vec![0; 32],
        case_id: String::new(),
    };
    let wrong = gw
        .signer("housing-500000")
        .seal(header("housing-500000"), &wrong)
        .unwrap();
    let status = client.acknowledge(wrong).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut missing = d.clone();
    missing.cursor = 99;
    let status = client
        .acknowledge(acknowledgement(&gw, "housing-500000", &missing))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    // Another partner cannot acknowledge for this one: its own mailbox has no such message.
    let status = DeliveryClient::new(gw.channel_as("hrss-500113").await)
        .acknowledge(acknowledgement(&gw, "hrss-500113", &d))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // A payload of another type is refused by the submit path.
    let lead = gw
        .signer("housing-500000")
        .seal(header("housing-500000"), &pb::Lead::default())
        .unwrap();
    let status = client.acknowledge(lead).await.unwrap_err();
    assert!(
        status.message().contains(&pb::Acknowledgement::full_name()),
        "{}",
        status.message()
    );
    assert_eq!(
        DeliveryClient::new(gw.channel_as("housing-500000").await)
            .subscribe(pb::SubscribeRequest {
                from_cursor: 9,
                window: 0
            })
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_partner_offline_for_long_gets_everything_in_order_per_case() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let source = "source-national-platform";
    let handler = "hrss-500112";
    let offline = "housing-500000";
    // Forty housing cases are opened, signed for and progressed while the co-handling housing
    // authority is away.
    let mut cases = Vec::new();
    for n in 0..40 {
        let lead = pb::Lead {
            channel: pb::LeadChannel::NationalPlatform as i32,
            lead_type: pb::LeadType::Arrears as i32,
            region_code: "500112".into(),
            sector: pb::Sector::Construction as i32,
            project_industry: pb::Industry::HousingMunicipal as i32,
            project_name: format!("渝北区安置房{n}期"),
            employer_name: format!("重庆某建筑劳务公司{n}"),
            worker_count: 8,
            amount_fen: 32_000_000,
            ..Default::default()
        };
        let receipt = wagelink_tests::submit_lead(&gw, source, &lead).await;
        assert!(receipt.routed_to.iter().any(|r| r.partner_id == offline));
        cases.push(receipt.case_id);
    }
    let mut cases_client = CasesClient::new(gw.channel_as(handler).await);
    for (n, case_id) in cases.iter().enumerate() {
        let actions = [
            pb::case_action::Action::SignFor(pb::case_action::SignFor {
                note: String::new(),
            }),
            pb::case_action::Action::Progress(pb::case_action::Progress {
                note: format!("第{n}案：已约谈总包单位"),
                ..Default::default()
            }),
        ];
        for action in actions {
            let mut h = header(handler);
            h.subject = case_id.clone();
            let env = gw
                .signer(handler)
                .seal(
                    h,
                    &pb::CaseAction {
                        case_id: case_id.clone(),
                        action: Some(action),
                    },
                )
                .unwrap();
            cases_client.act_on_case(env).await.unwrap();
        }
    }

    // Back online with a small window: everything arrives, and each case's messages in the
    // order they were logged.
    let mut feed = DeliveryClient::new(gw.channel_as(offline).await)
        .subscribe(pb::SubscribeRequest {
            from_cursor: 0,
            window: 8,
        })
        .await
        .unwrap()
        .into_inner();
    let mut per_case: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    let mut last_cursor = 0;
    let mut received = 0;
    while received < cases.len() * 3 {
        let d = next(&mut feed, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("only {received} of {} arrived", cases.len() * 3));
        assert!(d.cursor > last_cursor, "cursors go up");
        last_cursor = d.cursor;
        let receipt = pb::Receipt::decode(d.receipt.as_ref().unwrap().payload.as_slice()).unwrap();
        per_case
            .entry(receipt.case_id.clone())
            .or_default()
            .push(receipt.log_index);
        DeliveryClient::new(gw.channel_as(offline).await)
            .acknowledge(acknowledgement(&gw, offline, &d))
            .await
            .unwrap();
        received += 1;
    }
    assert_eq!(per_case.len(), cases.len());
    for (case_id, indexes) in &per_case {
        assert_eq!(indexes.len(), 3, "{case_id}");
        assert!(
            indexes.windows(2).all(|w| w[0] < w[1]),
            "{case_id}: {indexes:?}"
        );
    }
    assert!(next(&mut feed, Duration::from_millis(300)).await.is_none());
    gw.stop().await;
}
