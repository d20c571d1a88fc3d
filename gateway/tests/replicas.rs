//! Several gateway processes on one PostgreSQL serve the same partners (DESIGN §11): three
//! `wagelink serve` processes, load sent through all of them, one killed with SIGKILL in the
//! middle. Afterwards every receipt a client received is in the log at its index with its
//! header, the log has no gaps and each client's messages are in the order it sent them, every
//! lead reached its handler's mailbox and was delivered, a surviving replica signs the
//! checkpoints, and the offline audit verification passes.
//!
//! Runs when `WAGELINK_TEST_DATABASE_URL` names a PostgreSQL server (CI does); SQLite is one
//! process by design.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use wagelink_adapters::client::Credentials;
use wagelink_gateway::store::testing::{TEST_DATABASE_URL, TestDb};
use wagelink_proto::envelope::{Signer, sha256};
use wagelink_proto::v1 as pb;

mod common;
use common::{Replica, connect, header, lead, partner, spawn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_lose_nothing_when_one_is_killed_mid_load() {
    let Ok(admin_url) = std::env::var(TEST_DATABASE_URL) else {
        eprintln!("{TEST_DATABASE_URL} is not set: the replica test needs PostgreSQL");
        return;
    };
    let db = TestDb::postgres(&admin_url).await;
    let (dir, config, config_file) = common::prepare(&db.url).await;
    let replicas: Vec<Replica> = (0..3)
        .map(|n| spawn(&config_file, &db.url, dir.path(), n))
        .collect();
    let partners = dir.path().join("partners");
    let source = "source-national-platform";
    let source_credentials = Credentials::from_dir(&partners.join(source)).unwrap();
    let mut channels = Vec::new();
    for r in &replicas {
        channels.push(connect(r, &source_credentials).await);
    }
    let signer = Arc::new(
        Signer::from_pem(&source_credentials.cert_pem, &source_credentials.key_pem).unwrap(),
    );

    // The handler reads its mailbox through replica 0 (which lives) and acknowledges.
    let handler = "hrss-500112";
    let handler_credentials = Credentials::from_dir(&partners.join(handler)).unwrap();
    let handler_signer =
        Signer::from_pem(&handler_credentials.cert_pem, &handler_credentials.key_pem).unwrap();
    let handler_channel = connect(&replicas[0], &handler_credentials).await;
    let delivered = Arc::new(std::sync::Mutex::new(HashSet::<String>::new()));
    let reader = {
        let delivered = delivered.clone();
        tokio::spawn(async move {
            let mut feed = pb::delivery_client::DeliveryClient::new(handler_channel.clone())
                .subscribe(pb::SubscribeRequest::default())
                .await
                .unwrap()
                .into_inner();
            while let Ok(Some(d)) = feed.message().await {
                let env = d.envelope.unwrap();
                let h = pb::Header::decode(env.header.as_slice()).unwrap();
                delivered.lock().unwrap().insert(h.message_id.clone());
                let ack = pb::Acknowledgement {
                    message_id: h.message_id,
                    cursor: d.cursor,
                    header_sha256: sha256(&env.header).to_vec(),
                    case_id: String::new(),
                };
                let sealed = handler_signer.seal(header(handler), &ack).unwrap();
                let _ = pb::delivery_client::DeliveryClient::new(handler_channel.clone())
                    .acknowledge(sealed)
                    .await;
            }
        })
    };

    // Six senders, two per replica, each sending its leads one after another. A sender whose
    // replica dies resends the same envelope to the next replica (idempotent).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = Vec::new();
    for sender in 0..6 {
        let (channels, signer, stop) = (channels.clone(), signer.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let mut receipts: Vec<(String, pb::Receipt)> = Vec::new();
            let mut target = sender % 3;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let envelope = signer.seal(header(source), &lead(sender, n)).unwrap();
                let message_id = pb::Header::decode(envelope.header.as_slice())
                    .unwrap()
                    .message_id;
                let mut tries = 0;
                let receipt = loop {
                    match pb::cases_client::CasesClient::new(channels[target].clone())
                        .submit_lead(envelope.clone())
                        .await
                    {
                        Ok(r) => break r.into_inner().receipt.unwrap(),
                        Err(status) => {
                            tries += 1;
                            assert!(tries < 20, "sender {sender}: {status:?}");
                            target = (target + 1) % 3;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                };
                let body = pb::Receipt::decode(receipt.payload.as_slice()).unwrap();
                assert_eq!(body.message_id, message_id);
                receipts.push((message_id, body));
                n += 1;
            }
            receipts
        }));
    }

    // Mid-load, replica 1 is killed without warning.
    let mut replicas = replicas;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed = replicas.remove(1);
    drop(killed); // SIGKILL, then reaped
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut receipts = Vec::new();
    for (sender, s) in senders.into_iter().enumerate() {
        let r = s.await.unwrap();
        // One sender's leads are logged in the order it sent them.
        let indexes: Vec<u64> = r.iter().map(|(_, b)| b.log_index).collect();
        assert!(
            indexes.windows(2).all(|w| w[0] < w[1]),
            "sender {sender}: reordered {indexes:?}"
        );
        receipts.extend(r);
    }
    assert!(
        receipts.len() > 60,
        "only {} leads in {:?}",
        receipts.len(),
        started.elapsed()
    );

    // Every receipt is in the log, at its index, with its envelope's header; no gaps.
    let store = wagelink_gateway::store::Store::open(&db.url).await.unwrap();
    let size = store.log_size().await.unwrap();
    let entries = store.entries(0, size, false).await.unwrap();
    assert_eq!(entries.len() as u64, size, "the log has gaps");
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.index, i as u64, "gap or disorder at {i}");
    }
    let mut seen = BTreeMap::new();
    for (message_id, body) in &receipts {
        assert!(
            seen.insert(body.log_index, message_id.clone()).is_none(),
            "two receipts for index {}",
            body.log_index
        );
        let entry = &entries[body.log_index as usize];
        let Some(pb::entry_body::Kind::Accepted(a)) =
            pb::EntryBody::decode(entry.entry.as_slice()).unwrap().kind
        else {
            panic!("entry {} is not an accepted envelope", body.log_index);
        };
        assert_eq!(sha256(&a.header).to_vec(), body.header_sha256);
        assert_eq!(body.routed_to[0].partner_id, handler);
    }

    // Every lead reaches the handler, whichever replica took it.
    let wanted: HashSet<String> = receipts.iter().map(|(m, _)| m.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing = wanted.difference(&delivered.lock().unwrap()).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} leads never reached {handler}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    reader.abort();

    // A surviving replica signs a checkpoint covering the whole log.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let size = store.log_size().await.unwrap();
        let head = store.latest_checkpoint().await.unwrap().unwrap();
        if head.tree_size == size {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint covers the log ({} of {size})",
            head.tree_size
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(replicas);

    // The offline audit verification passes over the export.
    let keys = wagelink_gateway::server::log_keys(&config).unwrap();
    let mut export = Vec::new();
    wagelink_gateway::ledger::export::export(
        &store,
        &keys,
        &config.trust_domain,
        false,
        &mut export,
    )
    .await
    .unwrap();
    let verified = wagelink_gateway::ledger::export::verify(
        export.as_slice(),
        Some(&keys.log_key.verifier().to_text()),
        |_, _| {},
    )
    .unwrap_or_else(|fault| panic!("the audit verification failed: {fault}"));
    assert!(verified.entries >= receipts.len() as u64);
    eprintln!(
        "{} leads through 3 replicas (one killed after 3 s) in {:?}; log of {} entries verified",
        receipts.len(),
        started.elapsed(),
        verified.entries
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_query_reaches_the_bank_through_the_replica_holding_its_link() {
    let Ok(admin_url) = std::env::var(TEST_DATABASE_URL) else {
        eprintln!("{TEST_DATABASE_URL} is not set: the replica test needs PostgreSQL");
        return;
    };
    let db = TestDb::postgres(&admin_url).await;
    let (dir, _config, config_file) = common::prepare(&db.url).await;
    let replicas: Vec<Replica> = (0..2)
        .map(|n| spawn(&config_file, &db.url, dir.path(), n))
        .collect();
    let bank = "bank-102";
    let (bank_credentials, bank_signer) = partner(dir.path(), bank);
    let bank_channel = connect(&replicas[0], &bank_credentials).await;

    // The bank reports the account's opening, then keeps its link open on replica 0 only.
    let account = "3100021009200001234";
    let opened = pb::AccountEvent {
        event_id: "E-1".into(),
        account_number: account.into(),
        account_kind: pb::AccountKind::WageAccount as i32,
        bank_id: bank.into(),
        branch_code: "102653000011".into(),
        project_code: "500105-2026-0042".into(),
        contractor_uscc: "91350100M000100Y43".into(),
        region_code: "500105".into(),
        occurred_at: header(bank).created_at,
        kind: Some(pb::account_event::Kind::AccountOpened(
            pb::account_event::AccountOpened {
                account_name: "重庆某建筑公司农民工工资专用账户".into(),
                project_name: "江北区某安置房项目".into(),
                developer_uscc: String::new(),
                opened_on: "2026-11-01".into(),
                contract_value_fen: 5_000_000_000,
            },
        )),
    };
    let mut pushed = pb::banks_client::BanksClient::new(bank_channel.clone())
        .push_events(tokio_stream::iter(vec![
            bank_signer.seal(header(bank), &opened).unwrap(),
        ]))
        .await
        .unwrap()
        .into_inner();
    let first = pushed.message().await.unwrap().unwrap();
    assert!(
        matches!(
            first.result,
            Some(pb::push_events_response::Result::Receipt(_))
        ),
        "{first:?}"
    );
    let (up, rx) = tokio::sync::mpsc::unbounded_channel::<pb::BankLinkUp>();
    up.send(pb::BankLinkUp {
        msg: Some(pb::bank_link_up::Msg::Hello(pb::LinkHello {
            capacity: 4,
            software: "test bank core".into(),
        })),
    })
    .unwrap();
    let mut down = pb::banks_client::BanksClient::new(bank_channel)
        .link(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tokio::spawn(async move {
        while let Ok(Some(m)) = down.message().await {
            match m.msg {
                Some(pb::bank_link_down::Msg::Query(q)) => {
                    let env = q.query.unwrap();
                    let h = pb::Header::decode(env.header.as_slice()).unwrap();
                    let query = pb::AccountQuery::decode(env.payload.as_slice()).unwrap();
                    let msg = if query.kind() == pb::AccountQueryKind::Payroll {
                        pb::bank_link_up::Msg::Refusal(pb::LinkRefusal {
                            correlation_id: q.correlation_id,
                            reason: pb::RefusalReason::NotAuthorised as i32,
                            message: "payroll lines need the city's approval".into(),
                        })
                    } else {
                        let mut reply = header(bank);
                        reply.in_reply_to = h.message_id.clone();
                        reply.subject = query.account_number.clone();
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
                        pb::bank_link_up::Msg::Answer(pb::LinkAnswer {
                            correlation_id: q.correlation_id,
                            answer: Some(bank_signer.seal(reply, &answer).unwrap()),
                        })
                    };
                    let _ = up.send(pb::BankLinkUp { msg: Some(msg) });
                }
                Some(pb::bank_link_down::Msg::Ping(p)) => {
                    let _ = up.send(pb::BankLinkUp {
                        msg: Some(pb::bank_link_up::Msg::Pong(pb::LinkPong { nonce: p.nonce })),
                    });
                }
                _ => {}
            }
        }
    });

    // The district office asks through replica 1, which has no link to the bank.
    let asker = "hrss-500105";
    let (credentials, signer) = partner(dir.path(), asker);
    let channel = connect(&replicas[1], &credentials).await;
    let ask = |kind: pb::AccountQueryKind| {
        let q = pb::AccountQuery {
            account_number: account.into(),
            bank_id: String::new(),
            kind: kind as i32,
            period: (kind == pb::AccountQueryKind::Payroll)
                .then(|| pb::account_query::Period::Month("2026-10".into())),
            purpose: Some(pb::account_query::Purpose::InspectionOrderNumber(
                "江北人社监查〔2026〕9号".into(),
            )),
        };
        let mut request = tonic::Request::new(signer.seal(header(asker), &q).unwrap());
        request.set_timeout(Duration::from_secs(10));
        let channel = channel.clone();
        async move {
            pb::account_queries_client::AccountQueriesClient::new(channel)
                .query(request)
                .await
        }
    };
    let answer = ask(pb::AccountQueryKind::Balance)
        .await
        .expect("the answer comes back through replica 1")
        .into_inner()
        .answer
        .unwrap();
    let h = pb::Header::decode(answer.header.as_slice()).unwrap();
    assert_eq!(h.sender, bank);
    let body = pb::AccountQueryAnswer::decode(answer.payload.as_slice()).unwrap();
    assert!(matches!(
        body.result,
        Some(pb::account_query_answer::Result::Balance(
            pb::AccountBalance {
                balance_fen: 68_400_000,
                ..
            }
        ))
    ));
    // A refusal by the bank comes back too, with its reason.
    let refused = ask(pb::AccountQueryKind::Payroll).await.unwrap_err();
    assert_ne!(refused.code(), tonic::Code::Ok);
    assert_ne!(refused.code(), tonic::Code::DeadlineExceeded, "{refused:?}");
    assert!(
        refused.message().contains("payroll lines need"),
        "{refused:?}"
    );
    drop(replicas);
}
