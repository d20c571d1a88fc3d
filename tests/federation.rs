//! Federation between gateways (issue 9, DESIGN §2 peer gateway): Chongqing's gateway and a
//! neighbouring province's (Sichuan), each with a federation CA of its own, trust each other's
//! anchor for the peer gateway's connections only. A lead in a Sichuan region submitted in
//! Chongqing reaches Sichuan's labour inspection with its originator's signature and
//! Chongqing's relay signature; Sichuan's acknowledgement comes back as the source's proof of
//! delivery; Sichuan's sign-for, resolution and feedback move the Chongqing case and the
//! feedback reaches the source; each gateway's offline audit verifies its own log.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use prost::{Message, Name};
use wagelink_adapters::client::{self, Credentials};
use wagelink_gateway::config::{PeerConfig, WitnessKey};
use wagelink_gateway::identity::{
    Jurisdiction, Partner, PartnerKind, PartnerStatus, RegionCode, fingerprint,
};
use wagelink_gateway::ledger::export::{export, verify};
use wagelink_gateway::pki::LeafSpec;
use wagelink_gateway::witness_cli::{WitnessState, cosigner};
use wagelink_proto::envelope::{PublicKey, header_pae};
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::cases_client::CasesClient;
use wagelink_proto::v1::delivery_client::DeliveryClient;
use wagelink_tests::{PreparedGateway, Signer, TestDb, TestGateway, each_backend, header};

const SICHUAN: &str = "sc.wagelink.test";
const SOURCE: &str = "source-national-platform";
const HANDLER: &str = "hrss-510104";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Issues `id` a certificate from `gw`'s CA and writes it (and its key) under `dir`.
fn issue_to(
    gw: &PreparedGateway,
    id: &str,
    dir: &Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let issued = gw
        .ca()
        .issue_partner(
            &gw.config.trust_domain,
            &LeafSpec::valid_for_days(id.parse().unwrap(), id, 365),
        )
        .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join(format!("{id}.pem")), dir.join(format!("{id}.key")));
    std::fs::write(&cert, issued.cert_pem).unwrap();
    std::fs::write(&key, issued.key_pem).unwrap();
    (cert, key)
}

/// Two gateways that know each other: Chongqing (`wagelink.dev`, regions 50…) and Sichuan
/// (regions 51…).
async fn federation(cq_db: TestDb, sc_db: TestDb) -> (TestGateway, TestGateway) {
    let mut cq = PreparedGateway::new(cq_db, "wagelink.dev");
    let mut sc = PreparedGateway::new(sc_db, SICHUAN);
    sc.config.federation.regions = vec!["51".into()];
    let (cq_port, sc_port) = (free_port(), free_port());
    cq.config.listen = format!("127.0.0.1:{cq_port}").parse().unwrap();
    sc.config.listen = format!("127.0.0.1:{sc_port}").parse().unwrap();
    // Each gateway's identity at the other, issued by its own CA.
    let (cq_cert, cq_key) = issue_to(&cq, "peer-chongqing", &cq.config.data_dir.join("peers"));
    let (sc_cert, sc_key) = issue_to(&sc, "peer-sichuan", &sc.config.data_dir.join("peers"));
    // Each gateway witnesses the other's log with a cosigner key the other lists.
    let cosigner_of = |gw: &PreparedGateway, us: &str| {
        let key = gw.config.data_dir.join("peers/witness.key");
        let verifier = cosigner(&key, &format!("{us}/witness"))
            .unwrap()
            .verifier()
            .to_text();
        (key, verifier)
    };
    let (cq_witness, cq_verifier) = cosigner_of(&cq, "peer-chongqing");
    let (sc_witness, sc_verifier) = cosigner_of(&sc, "peer-sichuan");
    cq.config.audit.witnesses = vec![WitnessKey {
        partner: "peer-sichuan".into(),
        key: sc_verifier,
    }];
    sc.config.audit.witnesses = vec![WitnessKey {
        partner: "peer-chongqing".into(),
        key: cq_verifier,
    }];
    cq.config.federation.witness_every_secs = 1;
    sc.config.federation.witness_every_secs = 1;
    let ca = |gw: &PreparedGateway| gw.config.data_dir.join("pki/federation-ca.pem");
    let cq_ca = ca(&cq);
    let sc_ca = ca(&sc);
    cq.config.federation.peers = vec![PeerConfig {
        partner: "peer-sichuan".into(),
        name: "四川省根治欠薪数据交换网关".into(),
        trust_domain: SICHUAN.into(),
        ca: sc_ca,
        certificate: sc_cert.clone(),
        regions: vec!["51".into()],
        address: Some(format!("https://127.0.0.1:{sc_port}")),
        server_name: "localhost".into(),
        client_certificate: Some(cq_cert.clone()),
        client_key: Some(cq_key),
        witness_key: Some(cq_witness),
        log_key: None,
    }];
    sc.config.federation.peers = vec![PeerConfig {
        partner: "peer-chongqing".into(),
        name: "重庆市根治欠薪数据交换网关".into(),
        trust_domain: "wagelink.dev".into(),
        ca: cq_ca,
        certificate: cq_cert,
        regions: vec!["50".into()],
        address: Some(format!("https://127.0.0.1:{cq_port}")),
        server_name: "localhost".into(),
        client_certificate: Some(sc_cert),
        client_key: Some(sc_key),
        witness_key: Some(sc_witness),
        log_key: None,
    }];
    let cq = cq.start().await;
    let sc = sc.start().await;
    (cq, sc)
}

/// Registers Sichuan's labour inspection office of 成都市锦江区 (510104) with a certificate of
/// Sichuan's CA; returns its credentials and signer.
async fn register_handler(sc: &TestGateway) -> (Credentials, Signer) {
    let issued = sc.issue(&LeafSpec::valid_for_days(
        HANDLER.parse().unwrap(),
        "成都市锦江区劳动保障监察大队",
        365,
    ));
    sc.running
        .registry
        .register_partner(&Partner {
            id: HANDLER.parse().unwrap(),
            kind: PartnerKind::Hrss,
            name: "成都市锦江区人力资源和社会保障局".into(),
            jurisdiction: Jurisdiction {
                regions: BTreeSet::from(["510104".parse::<RegionCode>().unwrap()]),
                industry: None,
            },
            status: PartnerStatus::Active,
        })
        .await
        .unwrap();
    sc.running
        .registry
        .register_certificate(&issued.der)
        .await
        .unwrap();
    let signer = Signer::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap();
    (sc.credentials_for(&issued), signer)
}

fn lead() -> pb::Lead {
    pb::Lead {
        channel: pb::LeadChannel::NationalPlatform as i32,
        lead_type: pb::LeadType::Arrears as i32,
        region_code: "510104".into(),
        sector: pb::Sector::Construction as i32,
        employer_name: "成都某建筑劳务有限公司".into(),
        project_name: "锦江区某安置房项目".into(),
        worker_count: 9,
        amount_fen: 8_600_000,
        reporter_phone: "13800000000".into(),
        description: "重庆籍农民工在成都项目被拖欠工资".into(),
        ..Default::default()
    }
}

/// A mailbox stream over `channel`.
async fn subscribe(channel: tonic::transport::Channel) -> tonic::Streaming<pb::MailboxDelivery> {
    DeliveryClient::new(channel)
        .subscribe(pb::SubscribeRequest {
            from_cursor: 0,
            window: 10,
        })
        .await
        .unwrap()
        .into_inner()
}

/// The next delivery of a stream, within ten seconds.
async fn next(stream: &mut tonic::Streaming<pb::MailboxDelivery>) -> pb::MailboxDelivery {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a delivery within ten seconds")
        .expect("the stream stays up")
        .expect("the stream stays open")
}

/// Acknowledges a delivery as `who`.
async fn ack(
    channel: tonic::transport::Channel,
    who: &str,
    signer: &Signer,
    d: &pb::MailboxDelivery,
) {
    let env = d.envelope.as_ref().unwrap();
    let h = pb::Header::decode(env.header.as_slice()).unwrap();
    let ack = pb::Acknowledgement {
        message_id: h.message_id.clone(),
        cursor: d.cursor,
        header_sha256: wagelink_proto::envelope::sha256(&env.header).to_vec(),
        case_id: String::new(),
    };
    let mut ah = header(who);
    ah.in_reply_to = h.message_id;
    DeliveryClient::new(channel)
        .acknowledge(signer.seal(ah, &ack).unwrap())
        .await
        .unwrap();
}

async fn act(
    channel: tonic::transport::Channel,
    signer: &Signer,
    case_id: &str,
    action: pb::case_action::Action,
) {
    let mut h = header(HANDLER);
    h.subject = case_id.into();
    CasesClient::new(channel)
        .act_on_case(
            signer
                .seal(
                    h,
                    &pb::CaseAction {
                        case_id: case_id.into(),
                        action: Some(action),
                    },
                )
                .unwrap(),
        )
        .await
        .unwrap_or_else(|s| panic!("{HANDLER} on {case_id}: {s:?}"));
}

async fn case_at(gw: &TestGateway, who: &str, case_id: &str) -> pb::CaseView {
    CasesClient::new(gw.channel_as(who).await)
        .get_case(pb::GetCaseRequest {
            case_id: case_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Whether a client with this certificate and key gets through to `gw` (WhoAmI answers).
async fn connects(gw: &TestGateway, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> bool {
    let credentials = Credentials {
        ca_pem: std::fs::read(gw.config.data_dir.join("pki/federation-ca.pem")).unwrap(),
        cert_pem,
        key_pem,
    };
    match client::connect(&gw.address(), &credentials).await {
        Ok(channel) => wagelink_tests::who_am_i(channel).await.is_ok(),
        Err(_) => false,
    }
}

/// Exports a gateway's log and verifies it offline, as `wagelink audit verify` does.
async fn audit(gw: &TestGateway) -> u64 {
    let size = gw.running.log.size();
    for _ in 0..100 {
        if gw.running.log.latest_checkpoint().tree_size >= size {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keys = gw.running.log.keys();
    let mut out = Vec::new();
    export(
        gw.running.log.store(),
        keys,
        &gw.config.trust_domain,
        true,
        &mut out,
    )
    .await
    .unwrap();
    let trusted = keys.log_key.verifier().to_text();
    verify(out.as_slice(), Some(&trusted), |_, _| {})
        .unwrap_or_else(|f| panic!("the audit of {} fails: {f}", gw.config.trust_domain))
        .entries
}

/// Waits until `witness` has cosigned a checkpoint of `watched` (whose peer it is, as
/// `peer`), and checks `watched` serves that checkpoint witnessed by `as_id`.
async fn witnessed(witness: &TestGateway, peer: &str, watched: &TestGateway, as_id: &str) {
    let state = witness.config.data_dir.join(format!("witness-{peer}.json"));
    let mut size = 0;
    for _ in 0..100 {
        if let Ok(s) = WitnessState::load(&state)
            && let Some(seen) = s.seen
            && seen.size >= 4
        {
            size = seen.size;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(size > 0, "{peer} was never witnessed");
    let checkpoint =
        pb::audit_client::AuditClient::new(watched.channel_as("leading-office-500000").await)
            .get_checkpoint(pb::GetCheckpointRequest { tree_size: size })
            .await
            .unwrap()
            .into_inner();
    assert_eq!(checkpoint.witnessed_by, vec![as_id.to_owned()]);
    let note = String::from_utf8(checkpoint.note).unwrap();
    assert!(
        note.contains(&format!("— {as_id}/witness ")),
        "the cosignature line is served with the note: {note}"
    );
}

#[tokio::test]
async fn a_lead_crosses_to_the_peer_and_its_feedback_comes_back() {
    for db in each_backend().await {
        let other = if db.url.starts_with("postgres") {
            TestDb::postgres(&std::env::var("WAGELINK_TEST_DATABASE_URL").unwrap()).await
        } else {
            TestDb::sqlite().await
        };
        let (cq, sc) = federation(db, other).await;
        let (handler, handler_signer) = register_handler(&sc).await;

        // The national platform's connector in Chongqing reports arrears on a Sichuan site.
        let source_signer = cq.signer(SOURCE);
        let source_keyid = source_signer.keyid().to_owned();
        let sealed = source_signer.seal(header(SOURCE), &lead()).unwrap();
        let lead_header = sealed.header.clone();
        let receipt = CasesClient::new(cq.channel_as(SOURCE).await)
            .submit_lead(sealed)
            .await
            .unwrap()
            .into_inner()
            .receipt
            .unwrap();
        let receipt = pb::Receipt::decode(receipt.payload.as_slice()).unwrap();
        assert_eq!(receipt.routed_to.len(), 1, "{:?}", receipt.routed_to);
        assert_eq!(receipt.routed_to[0].partner_id, "peer-sichuan");
        assert_eq!(receipt.routed_to[0].rule_id, "federation:peer-sichuan");
        let cq_case = receipt.case_id.clone();

        // Sichuan's handler receives it with both signatures, each checkable.
        let mut inbox = subscribe(sc.channel(&handler).await).await;
        let d = next(&mut inbox).await;
        let env = d.envelope.clone().unwrap();
        assert_eq!(
            env.header, lead_header,
            "the originator's header bytes are intact"
        );
        let h = pb::Header::decode(env.header.as_slice()).unwrap();
        assert_eq!(h.sender, SOURCE);
        assert_eq!(env.signatures.len(), 2);
        assert_eq!(env.signatures[0].keyid, source_keyid);
        let cq_source_cert = std::fs::read(cq.partner_dir(SOURCE).join("cert.pem")).unwrap();
        let cq_source_der = wagelink_gateway::tls::pem_certificates(&cq_source_cert)
            .unwrap()
            .remove(0);
        PublicKey::from_certificate(&cq_source_der)
            .unwrap()
            .verify(
                &header_pae(&env.header),
                &env.signatures[0].sig,
                &source_keyid,
            )
            .expect("the originator's signature verifies");
        let relay_cert =
            std::fs::read(cq.config.data_dir.join("peers/peer-chongqing.pem")).unwrap();
        let relay_der = wagelink_gateway::tls::pem_certificates(&relay_cert)
            .unwrap()
            .remove(0);
        assert_eq!(env.signatures[1].keyid, fingerprint(&relay_der));
        PublicKey::from_certificate(&relay_der)
            .unwrap()
            .verify(
                &header_pae(&env.header),
                &env.signatures[1].sig,
                &env.signatures[1].keyid,
            )
            .expect("Chongqing's relay signature verifies");
        assert_eq!(
            pb::Lead::decode(env.payload.as_slice())
                .unwrap()
                .reporter_phone,
            "13800000000",
            "the handler gets the lead in full"
        );
        let sc_receipt =
            pb::Receipt::decode(d.receipt.as_ref().unwrap().payload.as_slice()).unwrap();
        let sc_case = sc_receipt.case_id.clone();
        assert_ne!(sc_case, "");
        let view = CasesClient::new(sc.channel(&handler).await)
            .get_case(pb::GetCaseRequest {
                case_id: sc_case.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(view.source, "peer-chongqing");
        assert_eq!(view.holder, HANDLER);
        ack(sc.channel(&handler).await, HANDLER, &handler_signer, &d).await;

        // The source in Chongqing gets Sichuan's acknowledgement as its proof of delivery.
        let mut source_inbox = subscribe(cq.channel_as(SOURCE).await).await;
        let delivered = next(&mut source_inbox).await;
        // The acknowledgement, signed by Sichuan's gateway, with the DELIVERED receipt.
        let ack_header =
            pb::Header::decode(delivered.envelope.as_ref().unwrap().header.as_slice()).unwrap();
        assert_eq!(ack_header.sender, "peer-sichuan");
        let body =
            pb::Receipt::decode(delivered.receipt.as_ref().unwrap().payload.as_slice()).unwrap();
        assert_eq!(body.kind(), pb::ReceiptKind::Delivered);
        assert_eq!(body.delivered_to, "peer-sichuan");
        assert_eq!(body.case_id, cq_case);
        ack(
            cq.channel_as(SOURCE).await,
            SOURCE,
            &source_signer,
            &delivered,
        )
        .await;

        // Sichuan handles the case; Chongqing's case follows, and the feedback reaches the source.
        use pb::case_action::Action;
        let channel = sc.channel(&handler).await;
        act(
            channel.clone(),
            &handler_signer,
            &sc_case,
            Action::SignFor(pb::case_action::SignFor {
                note: "锦江区监察大队".into(),
            }),
        )
        .await;
        act(
            channel.clone(),
            &handler_signer,
            &sc_case,
            Action::Resolve(pb::case_action::Resolve {
                conclusion: pb::CaseConclusion::ArrearsPaid as i32,
                channel: pb::ResolutionChannel::InspectionOrder as i32,
                amount_recovered_fen: 8_600_000,
                workers_paid: 9,
                resolved_on: wagelink_gateway::cases::china_today().to_string(),
                summary: "责令支付后全额支付".into(),
            }),
        )
        .await;
        act(
            channel.clone(),
            &handler_signer,
            &sc_case,
            Action::Feedback(pb::case_action::Feedback {
                text: "已全额支付9名工人工资".into(),
                reporter_contacted: true,
                reporter_satisfied: Some(true),
            }),
        )
        .await;
        let mut feedback = None;
        for _ in 0..20 {
            let d = next(&mut source_inbox).await;
            let env = d.envelope.clone().unwrap();
            let h = pb::Header::decode(env.header.as_slice()).unwrap();
            ack(cq.channel_as(SOURCE).await, SOURCE, &source_signer, &d).await;
            if h.payload_type == pb::CaseAction::full_name()
                && matches!(
                    pb::CaseAction::decode(env.payload.as_slice())
                        .unwrap()
                        .action,
                    Some(Action::Feedback(_))
                )
            {
                feedback = Some((h, env, d.receipt.unwrap()));
                break;
            }
        }
        let (h, env, receipt) = feedback.expect("the feedback reaches the source in Chongqing");
        assert_eq!(h.sender, HANDLER, "signed by Sichuan's handler");
        assert_eq!(env.signatures.len(), 2, "its signature and Sichuan's relay");
        assert_eq!(env.signatures[0].keyid, handler_signer.keyid());
        assert_eq!(
            pb::Receipt::decode(receipt.payload.as_slice())
                .unwrap()
                .case_id,
            cq_case,
            "delivered on Chongqing's case"
        );
        let view = case_at(&cq, SOURCE, &cq_case).await;
        assert_eq!(view.state(), pb::CaseState::FedBack, "{:?}", view.history);
        assert_eq!(view.holder, "peer-sichuan");

        // A certificate of Sichuan's CA is trusted in Chongqing for the peer gateway only: one
        // naming a Chongqing partner, even pinned to it, is refused at the handshake.
        let forged = sc
            .ca()
            .issue_partner(
                "wagelink.dev",
                &LeafSpec::valid_for_days("hrss-500112".parse().unwrap(), "forged", 30),
            )
            .unwrap();
        cq.running
            .registry
            .register_certificate(&forged.der)
            .await
            .unwrap();
        assert!(
            !connects(
                &cq,
                forged.cert_pem.into_bytes(),
                forged.key_pem.into_bytes()
            )
            .await,
            "a Chongqing partner's certificate from Sichuan's CA is refused"
        );
        assert!(
            cq.running
                .registry
                .recent_refusals()
                .iter()
                .any(|r| r.refusal.to_string().contains("trusted for that peer only")),
            "{:?}",
            cq.running.registry.recent_refusals()
        );

        assert!(
            !connects(&cq, handler.cert_pem.clone(), handler.key_pem.clone()).await,
            "Sichuan's handler cannot act in Chongqing"
        );

        // Each gateway witnesses the other: the checkpoints it cosigned are served with its
        // cosignature.
        witnessed(&cq, "peer-sichuan", &sc, "peer-chongqing").await;
        witnessed(&sc, "peer-chongqing", &cq, "peer-sichuan").await;

        // Each side's audit covers its own log, the foreign signatures included.
        assert!(audit(&cq).await >= 6);
        assert!(audit(&sc).await >= 6);
        sc.stop().await;
        cq.stop().await;
    }
}
