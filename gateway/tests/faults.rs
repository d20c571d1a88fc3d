//! Faults (issue 10): a `wagelink serve` process killed with SIGKILL under load and started
//! again, on SQLite and on PostgreSQL; PostgreSQL itself restarted under load. Senders retry
//! the very envelope they were sending (submission is idempotent). Afterwards every receipt a
//! sender holds is in the log with its envelope, a resent envelope gets its original receipt,
//! every lead reaches its handler, and the offline audit verification passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use wagelink_gateway::store::testing::{TEST_DATABASE_URL, TestDb};
use wagelink_proto::envelope::sha256;
use wagelink_proto::v1 as pb;

mod common;
use common::{Replica, connect, header, lead, partner, spawn, spawn_on};

type Sent = Vec<(pb::SignedEnvelope, pb::Receipt)>;

/// Four senders submitting leads one after another through the gateway at `replica`'s
/// address, each retrying the same envelope until it is answered, until `stop`.
fn senders(
    dir: &std::path::Path,
    channel: tonic::transport::Channel,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Sent>> {
    let source = "source-national-platform";
    let (_, signer) = partner(dir, source);
    let signer = Arc::new(signer);
    (0..4)
        .map(|sender| {
            let (channel, signer, stop) = (channel.clone(), signer.clone(), stop.clone());
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let envelope = signer.seal(header(source), &lead(sender, n)).unwrap();
                    let started = Instant::now();
                    let receipt = loop {
                        match pb::cases_client::CasesClient::new(channel.clone())
                            .submit_lead(envelope.clone())
                            .await
                        {
                            Ok(r) => break r.into_inner().receipt.unwrap(),
                            Err(status) => {
                                assert!(
                                    started.elapsed() < Duration::from_secs(60),
                                    "sender {sender} never got through: {status:?}"
                                );
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    };
                    let body = pb::Receipt::decode(receipt.payload.as_slice()).unwrap();
                    sent.push((envelope, body));
                    n += 1;
                }
                sent
            })
        })
        .collect()
}

/// Checks what the senders hold against the log, the handler's mailbox and the audit export.
async fn check(
    name: &str,
    url: &str,
    config: &wagelink_gateway::config::Config,
    dir: &std::path::Path,
    gateway: &Replica,
    sent: &Sent,
) {
    let store = wagelink_gateway::store::Store::open(url).await.unwrap();
    let size = store.log_size().await.unwrap();
    let entries = store.entries(0, size, false).await.unwrap();
    assert_eq!(entries.len() as u64, size, "{name}: the log has gaps");
    for (envelope, body) in sent {
        let entry = &entries[body.log_index as usize];
        let Some(pb::entry_body::Kind::Accepted(a)) =
            pb::EntryBody::decode(entry.entry.as_slice()).unwrap().kind
        else {
            panic!(
                "{name}: entry {} is not an accepted envelope",
                body.log_index
            );
        };
        assert_eq!(
            a.header, envelope.header,
            "{name}: entry {}",
            body.log_index
        );
    }
    // A resent envelope gets its original receipt, across the crash.
    let (source_credentials, _) = partner(dir, "source-national-platform");
    let channel = connect(gateway, &source_credentials).await;
    for (envelope, body) in sent.iter().step_by(sent.len().div_ceil(5).max(1)) {
        let again = pb::cases_client::CasesClient::new(channel.clone())
            .submit_lead(envelope.clone())
            .await
            .unwrap()
            .into_inner()
            .receipt
            .unwrap();
        let again = pb::Receipt::decode(again.payload.as_slice()).unwrap();
        assert_eq!(again.log_index, body.log_index, "{name}");
    }
    // Every lead reaches its handler.
    let handler = "hrss-500112";
    let (credentials, signer) = partner(dir, handler);
    let channel = connect(gateway, &credentials).await;
    let mut feed = pb::delivery_client::DeliveryClient::new(channel.clone())
        .subscribe(pb::SubscribeRequest {
            from_cursor: 0,
            window: 256,
        })
        .await
        .unwrap()
        .into_inner();
    let mut missing: std::collections::HashSet<String> =
        sent.iter().map(|(_, b)| b.message_id.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !missing.is_empty() {
        let d = tokio::time::timeout_at(deadline.into(), feed.message())
            .await
            .unwrap_or_else(|_| panic!("{name}: {} leads never delivered", missing.len()))
            .unwrap()
            .unwrap();
        let env = d.envelope.unwrap();
        let h = pb::Header::decode(env.header.as_slice()).unwrap();
        missing.remove(&h.message_id);
        let ack = pb::Acknowledgement {
            message_id: h.message_id,
            cursor: d.cursor,
            header_sha256: sha256(&env.header).to_vec(),
            case_id: String::new(),
        };
        pb::delivery_client::DeliveryClient::new(channel.clone())
            .acknowledge(signer.seal(header(handler), &ack).unwrap())
            .await
            .unwrap();
    }
    // The offline audit verification passes.
    let keys = wagelink_gateway::server::log_keys(config).unwrap();
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
    wagelink_gateway::ledger::export::verify(
        export.as_slice(),
        Some(&keys.log_key.verifier().to_text()),
        |_, _| {},
    )
    .unwrap_or_else(|fault| panic!("{name}: the audit verification failed: {fault}"));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_under_load_loses_nothing_and_postgresql_restarts_are_survived() {
    let mut backends = vec![None];
    if let Ok(admin_url) = std::env::var(TEST_DATABASE_URL) {
        backends.push(Some(TestDb::postgres(&admin_url).await));
    } else {
        eprintln!("{TEST_DATABASE_URL} is not set: PostgreSQL faults are not tested");
    }
    for db in &backends {
        let sqlite_dir = tempfile::tempdir().unwrap();
        let url = match db {
            Some(db) => db.url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                sqlite_dir.path().join("wagelink.db").display()
            ),
        };
        let name = if db.is_some() { "postgres" } else { "sqlite" };
        let (dir, config, config_file) = common::prepare(&url).await;
        let gateway = spawn(&config_file, &url, dir.path(), 0);
        let (source_credentials, _) = partner(dir.path(), "source-national-platform");
        let channel = connect(&gateway, &source_credentials).await;
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = senders(dir.path(), channel, stop.clone());

        // SIGKILL mid-load, then the same gateway started again where its clients look.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let port = gateway.port;
        drop(gateway);
        let gateway = spawn_on(&config_file, &url, dir.path(), 1, port);
        connect(&gateway, &source_credentials).await;
        tokio::time::sleep(Duration::from_secs(2)).await;

        // PostgreSQL restarted under load: the gateway recovers by itself.
        let restarted = db.is_some() && restart_postgresql();
        if restarted {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let mut sent = Vec::new();
        for t in tasks {
            sent.extend(t.await.unwrap());
        }
        assert!(sent.len() > 20, "{name}: only {} leads", sent.len());
        check(name, &url, &config, dir.path(), &gateway, &sent).await;
        eprintln!(
            "{name}: {} leads across a SIGKILL{}; all in the log, delivered, verified",
            sent.len(),
            if restarted {
                " and a PostgreSQL restart"
            } else {
                ""
            }
        );
    }
}

/// Restarts the local PostgreSQL cluster (root and pg_ctlcluster, as on the CI machine);
/// false when this machine cannot.
fn restart_postgresql() -> bool {
    let Some(version) = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
    else {
        eprintln!("no /etc/postgresql: PostgreSQL is not restarted");
        return false;
    };
    let status = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status();
    match status {
        Ok(s) if s.success() => true,
        other => {
            eprintln!("pg_ctlcluster restart failed ({other:?}): PostgreSQL is not restarted");
            false
        }
    }
}
