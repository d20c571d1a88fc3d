//! Witnesses (DESIGN §6): a leading office watches the gateway's evidence log, cosigns each
//! checkpoint consistent with the last one it saw (C2SP tlog-cosignature, served with the
//! checkpoint), and raises the alarm when shown a fork — here, a copy of the gateway's database
//! served by a second gateway with the same log key, each appending its own entries.

use tonic::Code;
use wagelink_adapters::client::{self, Credentials, GatewayAddress};
use wagelink_gateway::config::WitnessKey;
use wagelink_gateway::ledger::checkpoint::Checkpoint;
use wagelink_gateway::ledger::witness::{Alarm, CosignerVerifier};
use wagelink_gateway::witness_cli::{Round, Witness, WitnessState, cosigner};
use wagelink_proto::v1 as pb;
use wagelink_tests::{TestDb, TestGateway, header};

const WITNESS: &str = "leading-office-500000";
const NAME: &str = "leading-office-500000.wagelink.dev/witness";

fn lead(employer: &str) -> pb::Lead {
    pb::Lead {
        channel: pb::LeadChannel::NationalPlatform as i32,
        lead_type: pb::LeadType::Arrears as i32,
        region_code: "500112".into(),
        sector: pb::Sector::Manufacturing as i32,
        employer_name: employer.into(),
        worker_count: 3,
        amount_fen: 1_200_000,
        ..Default::default()
    }
}

/// Submits a lead through the gateway at `address`, as the national platform.
async fn submit(
    address: &GatewayAddress,
    credentials: &Credentials,
    signer: &wagelink_tests::Signer,
    employer: &str,
) {
    let channel = client::connect(address, credentials).await.unwrap();
    pb::cases_client::CasesClient::new(channel)
        .submit_lead(
            signer
                .seal(header("source-national-platform"), &lead(employer))
                .unwrap(),
        )
        .await
        .unwrap();
}

/// Waits until the gateway at `address` serves a checkpoint of `size`.
async fn checkpoint_of(
    address: &GatewayAddress,
    credentials: &Credentials,
    size: u64,
) -> pb::Checkpoint {
    let channel = client::connect(address, credentials).await.unwrap();
    for _ in 0..100 {
        let c = pb::audit_client::AuditClient::new(channel.clone())
            .get_checkpoint(pb::GetCheckpointRequest { tree_size: 0 })
            .await
            .unwrap()
            .into_inner();
        if c.tree_size == size {
            return c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no checkpoint of size {size}");
}

#[tokio::test]
async fn a_witness_cosigns_a_growing_log_and_catches_a_fork() {
    let keys = tempfile::tempdir().unwrap();
    let key_path = keys.path().join("witness.key");
    let vkey = cosigner(&key_path, NAME).unwrap().verifier().to_text();
    let witness_key = vkey.clone();
    let gw = TestGateway::start_with(TestDb::sqlite().await, move |c| {
        c.audit.witnesses = vec![WitnessKey {
            partner: WITNESS.into(),
            key: witness_key,
        }];
    })
    .await;
    let source = gw.credentials("source-national-platform");
    let signer = gw.signer("source-national-platform");
    submit(&gw.address(), &source, &signer, "甲厂").await;
    submit(&gw.address(), &source, &signer, "乙厂").await;
    checkpoint_of(&gw.address(), &source, 2).await;

    // The first round pins the log key and cosigns; the checkpoint then carries the line.
    let witness_dir = gw.partner_dir(WITNESS);
    let connect = |address: GatewayAddress| {
        let dir = witness_dir.clone();
        let key_path = key_path.clone();
        async move {
            Witness::connect(
                &address.uri,
                "localhost",
                &dir,
                cosigner(&key_path, NAME).unwrap(),
            )
            .await
            .unwrap()
        }
    };
    let witness = connect(gw.address()).await;
    let mut state = WitnessState::default();
    assert_eq!(
        witness.round(&mut state).await.unwrap(),
        Ok(Round::Cosigned { size: 2 })
    );
    // The cosignature is an envelope like any other: logged, as entry 2.
    let served = pb::audit_client::AuditClient::new(gw.channel_as("hrss-500112").await)
        .get_checkpoint(pb::GetCheckpointRequest { tree_size: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(served.witnessed_by, vec![WITNESS]);
    let note = String::from_utf8(served.note.clone()).unwrap();
    let line = note.lines().last().unwrap();
    let body = Checkpoint {
        origin: served.origin.clone(),
        size: 2,
        root: served.root_hash.clone().try_into().unwrap(),
    }
    .body();
    CosignerVerifier::parse(&vkey)
        .unwrap()
        .verify(&body, line)
        .expect("the served cosignature verifies with the witness's key");
    // The gateway's own signature still verifies with the cosignature line appended.
    let log_key = wagelink_gateway::ledger::checkpoint::Verifier::parse(&state.log_key).unwrap();
    assert!(log_key.open(&note).is_ok());

    // The log grows: the witness checks consistency and cosigns the new size.
    submit(&gw.address(), &source, &signer, "丙厂").await;
    let size = gw.running.log.size();
    checkpoint_of(&gw.address(), &source, size).await;
    assert_eq!(
        witness.round(&mut state).await.unwrap(),
        Ok(Round::Cosigned { size })
    );

    // A cosignature of another root, or for a checkpoint that does not exist, is refused.
    let lo = gw.signer(WITNESS);
    let mut audit = pb::audit_client::AuditClient::new(gw.channel_as(WITNESS).await);
    let bad = pb::WitnessCosignature {
        origin: served.origin.clone(),
        tree_size: 2,
        root_hash: vec![7; 32],
        checked_from_size: 0,
        note_signature_line: String::new(),
    };
    let status = audit
        .add_witness_signature(lo.seal(header(WITNESS), &bad).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("split view"), "{status:?}");
    let status = audit
        .add_witness_signature(
            lo.seal(
                header(WITNESS),
                &pb::WitnessCosignature {
                    tree_size: 99,
                    ..bad
                },
            )
            .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = pb::audit_client::AuditClient::new(gw.channel_as("hrss-500112").await)
        .add_witness_signature(
            gw.signer("hrss-500112")
                .seal(header("hrss-500112"), &pb::WitnessCosignature::default())
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // The fork: the database copied while the gateway is stopped, both copies served with the
    // same log key, each taking a different lead.
    let stopped = gw.shutdown_keeping_data().await;
    let fork_dir = tempfile::tempdir().unwrap();
    let url = stopped.config.database_url.clone().unwrap();
    let path = url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    for suffix in ["", "-wal", "-shm"] {
        let from = format!("{path}{suffix}");
        if std::path::Path::new(&from).exists() {
            std::fs::copy(&from, fork_dir.path().join(format!("wagelink.db{suffix}"))).unwrap();
        }
    }
    let mut fork_config = stopped.config.clone();
    fork_config.database_url = Some(format!(
        "sqlite://{}?mode=rwc",
        fork_dir.path().join("wagelink.db").display()
    ));
    fork_config.listen = "127.0.0.1:0".parse().unwrap();
    let gw = stopped.start().await;
    let (store, registry) = wagelink_gateway::server::open(&fork_config).await.unwrap();
    let fork = wagelink_gateway::server::start(&fork_config, store, registry)
        .await
        .unwrap();
    let fork_address = GatewayAddress {
        uri: format!("https://{}", fork.local_addr),
        server_name: "localhost".into(),
    };
    submit(&gw.address(), &source, &signer, "丁厂").await;
    submit(&fork_address, &source, &signer, "戊厂").await;
    let size = gw.running.log.size();
    assert_eq!(fork.log.size(), size);
    let honest = checkpoint_of(&gw.address(), &source, size).await;
    let forked = checkpoint_of(&fork_address, &source, size).await;
    assert_ne!(honest.root_hash, forked.root_hash);

    let witness = connect(gw.address()).await;
    assert_eq!(
        witness.round(&mut state).await.unwrap(),
        Ok(Round::Cosigned { size })
    );
    let fooled = connect(fork_address.clone()).await;
    let before = state.clone();
    match fooled.round(&mut state).await.unwrap() {
        Err(Alarm::SplitView { size: s, .. }) if s == size => {}
        other => panic!("the fork was not caught: {other:?}"),
    }
    assert_eq!(state.seen, before.seen, "nothing of the fork is accepted");

    // The command does the same and keeps the evidence.
    let state_file = keys.path().join("state.json");
    state.save(&state_file).unwrap();
    let args = wagelink_gateway::witness_cli::WitnessArgs {
        gateway: fork_address.uri.clone(),
        server_name: "localhost".into(),
        credentials: witness_dir.clone(),
        key: key_path.clone(),
        name: NAME.into(),
        state: state_file.clone(),
        log_key: None,
        every_secs: 1,
        once: true,
        print_key: false,
    };
    let mut out = Vec::new();
    let alarmed = wagelink_gateway::witness_cli::run(args, &mut out)
        .await
        .unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert!(
        alarmed && printed.starts_with("ALARM: SPLIT VIEW"),
        "{printed}"
    );
    let evidence: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_file.with_extension("alarm")).unwrap())
            .unwrap();
    let accepted = evidence["accepted_note"].as_str().unwrap();
    let offending = evidence["offending_note"].as_str().unwrap();
    let size_line = format!("\n{size}\n");
    assert!(accepted.contains(&size_line) && offending.contains(&size_line));
    assert_ne!(accepted, offending);
    fork.shutdown().await.unwrap();
    gw.stop().await;
}
