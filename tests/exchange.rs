//! The signed submit path and the evidence log, end to end: every rejection of DESIGN §5 with
//! its status and message, idempotent resubmission, receipts signed by the gateway, inclusion
//! and consistency proofs against signed checkpoints, grouped commits under concurrency, and
//! durability across a restart — on SQLite and PostgreSQL.

use std::time::Duration;

use prost::{Message, Name};
use tonic::Code;
use wagelink_gateway::ledger::checkpoint::{Checkpoint, Verifier};
use wagelink_gateway::ledger::merkle::{Hash, verify_consistency, verify_inclusion};
use wagelink_gateway::pki::LeafSpec;
use wagelink_proto::envelope::{PublicKey, Signer, header_pae, keyid, sha256};
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::audit_client::AuditClient;
use wagelink_proto::v1::cases_client::CasesClient;
use wagelink_tests::{TestDb, TestGateway, each_backend, header_at as header, now};

/// Proof hashes as fixed-size arrays.
fn to_hashes(hashes: &[Vec<u8>]) -> Vec<Hash> {
    hashes
        .iter()
        .map(|h| h.as_slice().try_into().expect("32-byte hashes"))
        .collect()
}

fn lead(n: u32) -> pb::Lead {
    pb::Lead {
        channel: pb::LeadChannel::NationalPlatform as i32,
        lead_type: pb::LeadType::Arrears as i32,
        source_reference: format!("GJPT-{n}"),
        region_code: "500112".into(),
        amount_fen: 1_000_000 + i64::from(n),
        worker_count: 5,
        ..Default::default()
    }
}

fn sealed(signer: &Signer, sender: &str, n: u32) -> pb::SignedEnvelope {
    signer.seal(header(sender, now()), &lead(n)).unwrap()
}

async fn submit(
    gw: &TestGateway,
    as_partner: &str,
    env: pb::SignedEnvelope,
) -> Result<pb::SignedEnvelope, tonic::Status> {
    CasesClient::new(gw.channel_as(as_partner).await)
        .submit_lead(env)
        .await
        .map(|r| r.into_inner().receipt.expect("a receipt"))
}

async fn refused(
    gw: &TestGateway,
    as_partner: &str,
    env: pb::SignedEnvelope,
    code: Code,
    needle: &str,
) {
    let status = submit(gw, as_partner, env)
        .await
        .expect_err("the envelope was accepted");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "{needle:?} not in {:?}",
        status.message()
    );
}

/// Verifies a receipt with the gateway certificate the audit service publishes; returns its body.
async fn open_receipt(gw: &TestGateway, receipt: &pb::SignedEnvelope) -> pb::Receipt {
    let keys = AuditClient::new(gw.channel_as("leading-office-500000").await)
        .get_log_keys(pb::GetLogKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    let cert = wagelink_gateway::tls::pem_certificates(keys.gateway_certificate_pem.as_bytes())
        .unwrap()
        .remove(0);
    let sig = &receipt.signatures[0];
    assert_eq!(sig.keyid, keyid(&cert));
    PublicKey::from_certificate(&cert)
        .unwrap()
        .verify(&header_pae(&receipt.header), &sig.sig, &sig.keyid)
        .expect("receipt signature");
    let header = pb::Header::decode(receipt.header.as_slice()).unwrap();
    assert_eq!(header.sender, keys.gateway_id);
    assert_eq!(header.payload_type, pb::Receipt::full_name());
    assert_eq!(header.payload_sha256, sha256(&receipt.payload));
    pb::Receipt::decode(receipt.payload.as_slice()).unwrap()
}

/// The latest checkpoint once it covers `size` entries, verified with the published log key.
async fn checkpoint_covering(gw: &TestGateway, size: u64) -> (pb::Checkpoint, Checkpoint) {
    let mut audit = AuditClient::new(gw.channel_as("leading-office-500000").await);
    let verifier = Verifier::parse(
        &audit
            .get_log_keys(pb::GetLogKeysRequest {})
            .await
            .unwrap()
            .into_inner()
            .log_verifier_key,
    )
    .unwrap();
    // Generous: after a restart, the new gateway signs checkpoints only once the old one's
    // advisory lock is free and its next tick comes (a few seconds on a loaded machine).
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < give_up {
        let c = audit
            .get_checkpoint(pb::GetCheckpointRequest { tree_size: 0 })
            .await
            .unwrap()
            .into_inner();
        let note = String::from_utf8(c.note.clone()).unwrap();
        let body =
            Checkpoint::parse_body(verifier.open(&note).expect("checkpoint signature")).unwrap();
        assert_eq!(
            (body.size, body.root.to_vec()),
            (c.tree_size, c.root_hash.clone())
        );
        if body.size >= size {
            return (c, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no checkpoint covered {size} entries within 30 s");
}

#[tokio::test]
async fn an_accepted_lead_gets_a_receipt_that_proves_its_place_in_the_log() {
    for db in each_backend().await {
        let gw = TestGateway::start(db).await;
        let env = sealed(
            &gw.signer("source-national-platform"),
            "source-national-platform",
            1,
        );
        let header_sha = sha256(&env.header).to_vec();
        let receipt = submit(&gw, "source-national-platform", env.clone())
            .await
            .expect("accepted");
        let body = open_receipt(&gw, &receipt).await;
        assert_eq!(body.kind(), pb::ReceiptKind::Accepted);
        assert_eq!(body.header_sha256, header_sha);
        assert_eq!(body.sender, "source-national-platform");
        assert_eq!(
            body.message_id,
            pb::Header::decode(env.header.as_slice())
                .unwrap()
                .message_id
        );
        assert_eq!(body.log_index, 0, "{}", gw.db_name);
        assert_eq!(body.payload_type, "wagelink.v1.Lead");

        let (_, checkpoint) = checkpoint_covering(&gw, 1).await;
        let proof = AuditClient::new(gw.channel_as("hrss-500112").await)
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                leaf_index: body.log_index,
                tree_size: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let hashes = to_hashes(&proof.hashes);
        let leaf: Hash = proof.leaf_hash.as_slice().try_into().unwrap();
        verify_inclusion(
            body.log_index,
            proof.tree_size,
            &leaf,
            &hashes,
            &checkpoint.root,
        )
        .expect("inclusion");

        // Another partner gets the proof but not the entry (it shows who sent what to whom);
        // the sender gets its entry's bytes and finds its own header and signatures in them.
        assert!(proof.entry.is_empty());
        let mine = AuditClient::new(gw.channel_as("source-national-platform").await)
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                leaf_index: body.log_index,
                tree_size: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            wagelink_gateway::ledger::merkle::leaf_hash(&mine.entry),
            leaf
        );
        let Some(pb::entry_body::Kind::Accepted(own)) =
            pb::EntryBody::decode(mine.entry.as_slice()).unwrap().kind
        else {
            panic!("no entry for its sender");
        };
        assert_eq!(
            (own.header, own.signatures),
            (env.header.clone(), env.signatures.clone())
        );

        // The entry the leaf hashes is the accepted header with its signatures.
        let entries = entries(&gw, "leading-office-500000", 0, 1, false)
            .await
            .unwrap();
        assert_eq!(
            wagelink_gateway::ledger::merkle::leaf_hash(&entries[0].entry),
            leaf
        );
        let Some(pb::entry_body::Kind::Accepted(accepted)) =
            pb::EntryBody::decode(entries[0].entry.as_slice())
                .unwrap()
                .kind
        else {
            panic!("not an accepted entry");
        };
        assert_eq!(accepted.header, env.header);
        assert_eq!(accepted.signatures, env.signatures);
        assert_eq!(accepted.submitted_by, "source-national-platform");
        assert!(entries[0].payload.is_empty(), "payloads only on request");
        gw.stop().await;
    }
}

async fn entries(
    gw: &TestGateway,
    as_partner: &str,
    start: u64,
    end: u64,
    payloads: bool,
) -> Result<Vec<pb::LogEntry>, tonic::Status> {
    let mut stream = AuditClient::new(gw.channel_as(as_partner).await)
        .get_entries(pb::GetEntriesRequest {
            start_index: start,
            end_index: end,
            include_payloads: payloads,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(e) = stream.message().await? {
        out.push(e);
    }
    Ok(out)
}

#[tokio::test]
async fn identical_bytes_return_the_original_receipt_and_different_bytes_are_refused() {
    for db in each_backend().await {
        let gw = TestGateway::start(db).await;
        let signer = gw.signer("hrss-500112");
        let env = sealed(&signer, "hrss-500112", 1);
        let first = submit(&gw, "hrss-500112", env.clone()).await.unwrap();
        let again = submit(&gw, "hrss-500112", env.clone()).await.unwrap();
        assert_eq!(
            first, again,
            "{}: a resubmission got a new receipt",
            gw.db_name
        );
        // Signed again (ECDSA signatures differ each time), same header bytes: same message.
        let resigned = pb::SignedEnvelope {
            signatures: vec![signer.sign_header(&env.header).unwrap()],
            ..env.clone()
        };
        assert_eq!(submit(&gw, "hrss-500112", resigned).await.unwrap(), first);
        assert_eq!(gw.running.log.size(), 1);

        let mut h = pb::Header::decode(env.header.as_slice()).unwrap();
        h.created_at = Some(prost_types::Timestamp {
            seconds: now() + 1,
            nanos: 0,
        });
        let changed = signer.seal(h, &lead(2)).unwrap();
        refused(
            &gw,
            "hrss-500112",
            changed,
            Code::AlreadyExists,
            "already accepted with different header bytes",
        )
        .await;
        assert_eq!(gw.running.log.size(), 1);
        gw.stop().await;
    }
}

#[tokio::test]
async fn created_at_outside_the_window_is_refused_but_a_late_identical_resubmission_is_not() {
    let gw =
        TestGateway::start_with(TestDb::sqlite().await, |c| c.log.replay_window_secs = 300).await;
    let signer = gw.signer("hrss-500112");
    // Near, far, and at the very ends of the range (which must neither overflow nor wrap).
    // The gateway reads its clock after the test does: a second that ticks over in between
    // moves a created_at in the future towards the window, so the near future one keeps a
    // margin (one second was not enough in CI), while the near past one can stay at 301.
    let times = [
        now() - 301,
        now() + 330,
        now() - 3600,
        i64::MIN,
        i64::MAX,
        i64::MIN + now(),
    ];
    for created_at in times {
        let env = signer
            .seal(header("hrss-500112", created_at), &lead(1))
            .unwrap();
        refused(
            &gw,
            "hrss-500112",
            env,
            Code::InvalidArgument,
            "±300 seconds",
        )
        .await;
    }
    let edge = signer
        .seal(header("hrss-500112", now() - 290), &lead(1))
        .unwrap();
    let receipt = submit(&gw, "hrss-500112", edge.clone())
        .await
        .expect("inside the window");
    assert_eq!(gw.running.log.size(), 1);
    gw.stop().await;

    // Idempotency comes before the window: the original receipt, whatever the clock says now.
    // (The window is narrowed by a restart rather than waited out, so that no step depends on
    // how long the ones before it took.)
    let gw2 = TestGateway::start(TestDb::sqlite().await).await;
    let signer = gw2.signer("hrss-500112");
    let env = signer
        .seal(header("hrss-500112", now() - 200), &lead(1))
        .unwrap();
    let first = submit(&gw2, "hrss-500112", env.clone()).await.unwrap();
    let mut stopped = gw2.shutdown_keeping_data().await;
    stopped.config.log.replay_window_secs = 60;
    let gw2 = stopped.start().await;
    let as_old = signer
        .seal(header("hrss-500112", now() - 200), &lead(2))
        .unwrap();
    refused(
        &gw2,
        "hrss-500112",
        as_old,
        Code::InvalidArgument,
        "±60 seconds",
    )
    .await;
    assert_eq!(submit(&gw2, "hrss-500112", env).await.unwrap(), first);
    drop(receipt);
    gw2.stop().await;
}

#[tokio::test]
async fn each_signature_fault_has_its_own_refusal() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let me = "hrss-500112";
    let signer = gw.signer(me);

    // No signature.
    let mut env = sealed(&signer, me, 1);
    env.signatures.clear();
    refused(&gw, me, env, Code::Unauthenticated, "no signature").await;

    // A keyid no certificate has.
    let mut env = sealed(&signer, me, 1);
    env.signatures[0].keyid = "00".repeat(32);
    refused(
        &gw,
        me,
        env,
        Code::Unauthenticated,
        "not the SHA-256 of any registered certificate",
    )
    .await;

    // The header changed after signing.
    let env = sealed(&signer, me, 1);
    let mut h = pb::Header::decode(env.header.as_slice()).unwrap();
    h.subject = "CASE-1".into();
    let tampered = pb::SignedEnvelope {
        header: h.encode_to_vec(),
        ..env
    };
    refused(&gw, me, tampered, Code::Unauthenticated, "does not verify").await;

    // Signed with another partner's key.
    let env = gw
        .signer("bank-102")
        .seal(header(me, now()), &lead(1))
        .unwrap();
    refused(
        &gw,
        me,
        env,
        Code::Unauthenticated,
        "belongs to partner bank-102",
    )
    .await;

    // A sender that is not the connection's partner.
    let env = sealed(&gw.signer("hrss-500113"), "hrss-500113", 1);
    refused(
        &gw,
        me,
        env,
        Code::PermissionDenied,
        "this connection is partner hrss-500112",
    )
    .await;

    // A revoked signing key: a second certificate registered, used, then revoked.
    let issued = gw.issue(&LeafSpec::valid_for_days(
        me.parse().unwrap(),
        "second key",
        30,
    ));
    gw.running
        .registry
        .register_certificate(&issued.der)
        .await
        .unwrap();
    let second = Signer::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap();
    submit(&gw, me, sealed(&second, me, 1))
        .await
        .expect("the second key works");
    gw.running
        .registry
        .revoke_certificate(second.keyid(), "key compromise")
        .await
        .unwrap();
    refused(
        &gw,
        me,
        sealed(&second, me, 2),
        Code::Unauthenticated,
        "was revoked (key compromise)",
    )
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn each_header_and_payload_fault_has_its_own_refusal() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let me = "source-national-platform";
    let signer = gw.signer(me);
    let sign = |header: Vec<u8>, payload: Vec<u8>| pb::SignedEnvelope {
        signatures: vec![signer.sign_header(&header).unwrap()],
        header,
        payload,
    };

    refused(
        &gw,
        me,
        sign(b"\xff\xff\xff".to_vec(), vec![]),
        Code::InvalidArgument,
        "does not decode as wagelink.v1.Header",
    )
    .await;

    let payload = lead(1).encode_to_vec();
    let base = pb::Header {
        payload_type: "wagelink.v1.Lead".into(),
        payload_sha256: sha256(&payload).to_vec(),
        ..header(me, now())
    };
    let h = pb::Header {
        message_id: "42".into(),
        ..base.clone()
    };
    refused(
        &gw,
        me,
        sign(h.encode_to_vec(), payload.clone()),
        Code::InvalidArgument,
        "is not a UUID",
    )
    .await;
    for spelling in [
        base.message_id.to_uppercase(),
        format!("{{{}}}", base.message_id),
        base.message_id.replace('-', ""),
    ] {
        let h = pb::Header {
            message_id: spelling,
            ..base.clone()
        };
        refused(
            &gw,
            me,
            sign(h.encode_to_vec(), payload.clone()),
            Code::InvalidArgument,
            "canonical form",
        )
        .await;
    }
    let h = pb::Header {
        created_at: None,
        ..base.clone()
    };
    refused(
        &gw,
        me,
        sign(h.encode_to_vec(), payload.clone()),
        Code::InvalidArgument,
        "no created_at",
    )
    .await;

    // The payload is not the one the header commits to.
    let other = lead(2).encode_to_vec();
    refused(
        &gw,
        me,
        sign(base.encode_to_vec(), other),
        Code::InvalidArgument,
        "payload_sha256",
    )
    .await;

    // A payload type this RPC does not take.
    let h = pb::Header {
        payload_type: "wagelink.v1.AccountEvent".into(),
        ..base.clone()
    };
    refused(
        &gw,
        me,
        sign(h.encode_to_vec(), payload.clone()),
        Code::InvalidArgument,
        "takes payload_type wagelink.v1.Lead",
    )
    .await;

    // Bytes that are not a Lead.
    let junk = vec![0xff, 0xff, 0xff, 0x01];
    let h = pb::Header {
        payload_sha256: sha256(&junk).to_vec(),
        ..base.clone()
    };
    refused(
        &gw,
        me,
        sign(h.encode_to_vec(), junk),
        Code::InvalidArgument,
        "does not decode as wagelink.v1.Lead",
    )
    .await;

    assert_eq!(
        gw.running.log.size(),
        0,
        "a refused envelope reached the log"
    );
    // The same header, well formed, is accepted: the refusals above were for their faults only.
    submit(&gw, me, sign(base.encode_to_vec(), payload))
        .await
        .expect("the well-formed envelope");
    gw.stop().await;
}

#[tokio::test]
async fn ed25519_and_sm2_signing_keys_are_accepted_once_registered() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let vectors =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/testdata/vectors");
    for alg in ["ed25519", "sm2"] {
        let cert = std::fs::read(vectors.join(alg).join("cert.pem")).unwrap();
        let key = std::fs::read(vectors.join(alg).join("key.pem")).unwrap();
        let signer = Signer::from_pem(&cert, &key).unwrap();
        let env = sealed(&signer, "hrss-500112", 1);
        refused(
            &gw,
            "hrss-500112",
            env.clone(),
            Code::Unauthenticated,
            "not the SHA-256",
        )
        .await;
        let der = wagelink_gateway::tls::pem_certificates(&cert)
            .unwrap()
            .remove(0);
        gw.running
            .registry
            .register_certificate(&der)
            .await
            .unwrap();
        let receipt = submit(&gw, "hrss-500112", env)
            .await
            .unwrap_or_else(|s| panic!("{alg}: {s:?}"));
        assert_eq!(open_receipt(&gw, &receipt).await.sender, "hrss-500112");
    }
    gw.stop().await;
}

#[tokio::test]
async fn concurrent_submissions_get_distinct_indexes_and_survive_a_restart() {
    for db in each_backend().await {
        let gw = TestGateway::start_with(db, |c| c.limits.max_concurrent_calls = 256).await;
        let signer = std::sync::Arc::new(gw.signer("source-national-platform"));
        let channel = gw.channel_as("source-national-platform").await;
        let mut tasks = Vec::new();
        for n in 0..120u32 {
            let (signer, channel) = (signer.clone(), channel.clone());
            tasks.push(tokio::spawn(async move {
                let env = sealed(&signer, "source-national-platform", n);
                CasesClient::new(channel)
                    .submit_lead(env.clone())
                    .await
                    .map(|r| (env, r.into_inner().receipt.unwrap()))
            }));
        }
        let mut accepted = Vec::new();
        for t in tasks {
            accepted.push(t.await.unwrap().expect("accepted"));
        }
        let mut indexes: Vec<u64> = accepted
            .iter()
            .map(|(_, r)| pb::Receipt::decode(r.payload.as_slice()).unwrap().log_index)
            .collect();
        indexes.sort();
        assert_eq!(indexes, (0..120).collect::<Vec<_>>(), "{}", gw.db_name);
        let (before, _) = checkpoint_covering(&gw, 120).await;

        let gw = gw.restart().await;
        assert_eq!(
            gw.running.log.size(),
            120,
            "{}: entries lost in a restart",
            gw.db_name
        );
        // Every receipt still resolves to the same answer, and the log grew consistently.
        let (env, receipt) = &accepted[17];
        assert_eq!(
            &submit(&gw, "source-national-platform", env.clone())
                .await
                .unwrap(),
            receipt
        );
        submit(
            &gw,
            "source-national-platform",
            sealed(&signer, "source-national-platform", 999),
        )
        .await
        .unwrap();
        let (after, after_body) = checkpoint_covering(&gw, 121).await;
        let proof = AuditClient::new(gw.channel_as("hrss-500000").await)
            .get_consistency_proof(pb::GetConsistencyProofRequest {
                first_size: before.tree_size,
                second_size: after.tree_size,
            })
            .await
            .unwrap()
            .into_inner();
        let hashes = to_hashes(&proof.hashes);
        let first_root: Hash = before.root_hash.as_slice().try_into().unwrap();
        verify_consistency(
            before.tree_size,
            after.tree_size,
            &first_root,
            &after_body.root,
            &hashes,
        )
        .expect("consistent");
        gw.stop().await;
    }
}

#[tokio::test]
async fn entries_are_exported_only_to_oversight_and_payloads_only_to_admins() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let env = sealed(&gw.signer("hrss-500112"), "hrss-500112", 7);
    submit(&gw, "hrss-500112", env.clone()).await.unwrap();
    checkpoint_covering(&gw, 1).await;
    let status = entries(&gw, "hrss-500112", 0, 1, false).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = entries(&gw, "leading-office-500000", 0, 1, true)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("only an admin"));
    let with = entries(&gw, "admin-ops", 0, 1, true).await.unwrap();
    assert_eq!(with[0].payload, env.payload);
    let status = entries(&gw, "admin-ops", 0, 5, false).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    gw.stop().await;
}

#[tokio::test]
async fn a_partner_kind_outside_the_table_is_refused_before_its_envelope_is_read() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let env = sealed(&gw.signer("bank-102"), "bank-102", 1);
    refused(
        &gw,
        "bank-102",
        env,
        Code::PermissionDenied,
        "not open to bank partners",
    )
    .await;
    assert_eq!(gw.running.log.size(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn a_lead_with_a_bad_field_is_refused_naming_the_field_but_not_personal_data() {
    let gw = TestGateway::start(TestDb::sqlite().await).await;
    let me = "source-national-platform";
    let bad = pb::Lead {
        employer_uscc: "91350100M000100Y44".into(),
        reporter_phone: "1380013800".into(),
        ..lead(1)
    };
    let env = gw.signer(me).seal(header(me, now()), &bad).unwrap();
    let status = submit(&gw, me, env).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("employer_uscc") && status.message().contains("check digit"),
        "{}",
        status.message()
    );
    let bad = pb::Lead {
        reporter_phone: "1380013800".into(),
        ..lead(1)
    };
    let env = gw.signer(me).seal(header(me, now()), &bad).unwrap();
    let status = submit(&gw, me, env).await.unwrap_err();
    assert!(
        status.message().contains("reporter_phone"),
        "{}",
        status.message()
    );
    assert!(
        !status.message().contains("1380013800"),
        "personal data in {}",
        status.message()
    );
    assert_eq!(gw.running.log.size(), 0);
    gw.stop().await;
}
