//! `wagelink audit export` and `wagelink audit verify`: an export of a real log verifies, and
//! each kind of tampering — a changed byte, a dropped entry, swapped entries, a re-signed
//! checkpoint, a changed payload — is caught and named.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use prost::Message;
use wagelink_gateway::ledger::checkpoint::{Checkpoint, LogKey};
use wagelink_gateway::ledger::export::{Fault, Record, export, verify};
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::cases_client::CasesClient;
use wagelink_tests::{TestDb, TestGateway, each_backend};

async fn submit_leads(gw: &TestGateway, partner: &str, count: u32) {
    let signer = gw.signer(partner);
    let mut client = CasesClient::new(gw.channel_as(partner).await);
    for n in 0..count {
        let header = wagelink_tests::header(partner);
        let lead = pb::Lead {
            channel: pb::LeadChannel::Hotline as i32,
            lead_type: pb::LeadType::Arrears as i32,
            worker_count: 3,
            source_reference: format!("{partner}-{n}"),
            region_code: "500103".into(),
            reporter_phone: "13800000000".into(),
            ..Default::default()
        };
        client
            .submit_lead(signer.seal(header, &lead).unwrap())
            .await
            .expect("accepted");
    }
}

async fn wait_for_checkpoint(gw: &TestGateway, size: u64) {
    for _ in 0..60 {
        if gw.running.log.latest_checkpoint().tree_size >= size {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no checkpoint of size {size}");
}

/// A log of 12 entries from three partners, with at least three checkpoints along the way.
async fn exported(gw: &TestGateway, with_payloads: bool) -> Vec<Record> {
    let keys = gw.running.log.keys();
    let mut out = Vec::new();
    export(
        gw.running.log.store(),
        keys,
        "wagelink.dev",
        with_payloads,
        &mut out,
    )
    .await
    .unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn sample_log(db: TestDb) -> TestGateway {
    let gw = TestGateway::start_with(db, |c| c.log.checkpoint_interval_ms = 50).await;
    submit_leads(&gw, "hrss-500112", 4).await;
    wait_for_checkpoint(&gw, 4).await;
    submit_leads(&gw, "source-national-platform", 4).await;
    wait_for_checkpoint(&gw, 8).await;
    submit_leads(&gw, "police-500103", 4).await;
    wait_for_checkpoint(&gw, 12).await;
    gw
}

fn check(records: &[Record]) -> Result<wagelink_gateway::ledger::export::Verified, Fault> {
    check_against(records, &log_key(records))
}

fn check_against(
    records: &[Record],
    trusted: &str,
) -> Result<wagelink_gateway::ledger::export::Verified, Fault> {
    let text: String = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    verify(text.as_bytes(), Some(trusted), |_, _| {})
}

/// The log key the export names (what an auditor would have from the gateway).
fn log_key(records: &[Record]) -> String {
    match &records[0] {
        Record::Meta {
            log_verifier_key, ..
        } => log_verifier_key.clone(),
        other => panic!("no meta record first: {other:?}"),
    }
}

fn entry_position(records: &[Record], index: u64) -> usize {
    records
        .iter()
        .position(|r| matches!(r, Record::Entry { index: i, .. } if *i == index))
        .unwrap()
}

fn entry_bytes(records: &[Record], index: u64) -> Vec<u8> {
    match &records[entry_position(records, index)] {
        Record::Entry { entry, .. } => B64.decode(entry).unwrap(),
        _ => unreachable!(),
    }
}

fn set_entry(records: &mut [Record], index: u64, bytes: &[u8]) {
    let at = entry_position(records, index);
    if let Record::Entry { entry, .. } = &mut records[at] {
        *entry = B64.encode(bytes);
    }
}

#[tokio::test]
async fn an_untouched_export_verifies_on_both_backends() {
    for db in each_backend().await {
        let gw = sample_log(db).await;
        let records = exported(&gw, false).await;
        let v = check(&records).unwrap_or_else(|f| panic!("{}: {f}", gw.db_name));
        assert_eq!((v.entries, v.signatures, v.payloads), (12, 12, 0));
        assert!(v.checkpoints >= 3, "{} checkpoints", v.checkpoints);
        assert_eq!(
            v.root.to_vec(),
            gw.running.log.latest_checkpoint().root_hash
        );
        // Without payloads, no personal data: no entry carries a payload, and the reporter's
        // phone is in no entry's bytes.
        for r in &records {
            if let Record::Entry { entry, payload, .. } = r {
                assert!(payload.is_none());
                let bytes = B64.decode(entry).unwrap();
                assert!(
                    !bytes.windows(11).any(|w| w == b"13800000000"),
                    "personal data in an entry"
                );
            }
        }
        let with = exported(&gw, true).await;
        assert_eq!(check(&with).unwrap().payloads, 12);
        gw.stop().await;
    }
}

#[tokio::test]
async fn each_tampering_is_caught_and_named() {
    let gw = sample_log(TestDb::sqlite().await).await;
    let records = exported(&gw, true).await;

    // One byte of an entry's signed header changed.
    let mut r = records.clone();
    let mut bytes = entry_bytes(&r, 5);
    let body = pb::EntryBody::decode(bytes.as_slice()).unwrap();
    let Some(pb::entry_body::Kind::Accepted(a)) = body.kind else {
        unreachable!()
    };
    let id = pb::Header::decode(a.header.as_slice()).unwrap().message_id;
    let at = bytes
        .windows(id.len())
        .position(|w| w == id.as_bytes())
        .unwrap();
    bytes[at] ^= 0x01;
    set_entry(&mut r, 5, &bytes);
    match check(&r) {
        Err(Fault::Entry { index: 5, why }) => assert!(why.contains("does not verify"), "{why}"),
        other => panic!("{other:?}"),
    }

    // One byte of the gateway's own facts changed (accepted_at): only the root can tell.
    let mut r = records.clone();
    let mut body = pb::EntryBody::decode(entry_bytes(&r, 6).as_slice()).unwrap();
    if let Some(pb::entry_body::Kind::Accepted(a)) = &mut body.kind {
        a.accepted_at.as_mut().unwrap().seconds += 1;
    }
    set_entry(&mut r, 6, &body.encode_to_vec());
    match check(&r) {
        Err(Fault::Checkpoint { size, why }) => {
            assert!(size > 6, "{size}");
            assert!(why.contains("do not hash to its signed root"), "{why}");
        }
        other => panic!("{other:?}"),
    }

    // An entry dropped.
    let mut r = records.clone();
    r.remove(entry_position(&r, 7));
    assert_eq!(
        check(&r).unwrap_err(),
        Fault::EntryMissing {
            expected: 7,
            found: 8
        }
    );

    // Two entries swapped, as they were.
    let mut r = records.clone();
    let (a, b) = (entry_position(&r, 2), entry_position(&r, 3));
    r.swap(a, b);
    assert_eq!(
        check(&r).unwrap_err(),
        Fault::EntryMissing {
            expected: 2,
            found: 3
        }
    );

    // Two entries swapped and renumbered to look in order: the checkpoint root catches it.
    let mut r = records.clone();
    let (a, b) = (entry_position(&r, 2), entry_position(&r, 3));
    r.swap(a, b);
    for (at, index) in [(a, 2), (b, 3)] {
        if let Record::Entry { index: i, .. } = &mut r[at] {
            *i = index;
        }
    }
    let fault = check(&r).unwrap_err();
    assert!(matches!(fault, Fault::Checkpoint { .. }), "{fault:?}");

    // A checkpoint re-signed with another key.
    let mut r = records.clone();
    let forger =
        LogKey::from_pkcs8(&gw.running.log.keys().origin, &LogKey::generate_pkcs8()).unwrap();
    let at = r
        .iter()
        .rposition(|x| matches!(x, Record::Checkpoint { .. }))
        .unwrap();
    let Record::Checkpoint { note } = &r[at] else {
        unreachable!()
    };
    let body = Checkpoint::parse_body(note.split("\n\n").next().unwrap()).unwrap();
    r[at] = Record::Checkpoint {
        note: forger.sign(&body),
    };
    match check(&r) {
        Err(Fault::Checkpoint { size, why }) => {
            assert_eq!(size, body.size);
            assert!(why.contains("not signed by this log's key"), "{why}");
        }
        other => panic!("{other:?}"),
    }

    // The whole log re-signed with another key, the meta record naming that key: caught by
    // the key the auditor trusts.
    let trusted = log_key(&records);
    let mut r = records.clone();
    let forger_key = forger.verifier().to_text();
    for rec in r.iter_mut() {
        match rec {
            Record::Meta {
                log_verifier_key, ..
            } => *log_verifier_key = forger_key.clone(),
            Record::Checkpoint { note } => {
                let body = Checkpoint::parse_body(note.split("\n\n").next().unwrap()).unwrap();
                *note = forger.sign(&body);
            }
            _ => {}
        }
    }
    assert!(matches!(
        check_against(&r, &trusted),
        Err(Fault::WrongLogKey { .. })
    ));

    // Every checkpoint removed: nothing vouches for the entries.
    let mut r = records.clone();
    r.retain(|x| !matches!(x, Record::Checkpoint { .. }));
    assert_eq!(check(&r).unwrap_err(), Fault::NoFinalCheckpoint(12));

    // A payload changed.
    let mut r = records.clone();
    let at = entry_position(&r, 9);
    if let Record::Entry { payload, .. } = &mut r[at] {
        let mut p = B64.decode(payload.as_ref().unwrap()).unwrap();
        p[0] ^= 0x80;
        *payload = Some(B64.encode(p));
    }
    match check(&r) {
        Err(Fault::Entry { index: 9, why }) => assert!(why.contains("payload"), "{why}"),
        other => panic!("{other:?}"),
    }

    // The last entries cut off.
    let mut r = records.clone();
    r.remove(entry_position(&r, 11));
    assert!(check(&r).is_err());
    gw.stop().await;
}

#[tokio::test]
async fn the_commands_export_and_verify_a_file() {
    let gw = sample_log(TestDb::sqlite().await).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    let config = gw.config.data_dir.join("wagelink.toml");
    let run = |args: Vec<String>| async move {
        use clap::Parser;
        wagelink_gateway::cli::run(wagelink_gateway::cli::Cli::parse_from(args))
            .await
            .map_err(|e| e.to_string())
    };
    let db = gw.config.database_url.clone().unwrap();
    run(vec![
        "wagelink".into(),
        "audit".into(),
        "export".into(),
        "--config".into(),
        config.display().to_string(),
        "--database-url".into(),
        db,
        "--out".into(),
        file.display().to_string(),
    ])
    .await
    .expect("export");
    run(vec![
        "wagelink".into(),
        "audit".into(),
        "verify".into(),
        file.display().to_string(),
    ])
    .await
    .expect("verify");

    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("\"index\":4"))
        .unwrap();
    lines.remove(at);
    std::fs::write(&file, lines.join("\n")).unwrap();
    let err = run(vec![
        "wagelink".into(),
        "audit".into(),
        "verify".into(),
        file.display().to_string(),
    ])
    .await
    .unwrap_err();
    assert!(
        err.contains("NOT valid") && err.contains("entry 4 is missing"),
        "{err}"
    );
    gw.stop().await;
}
