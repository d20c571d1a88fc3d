//! What the process-level tests share: `wagelink serve` processes on a dev data directory,
//! channels to them, and signed leads.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use wagelink_adapters::client::{self, Credentials, GatewayAddress};
use wagelink_gateway::config::Config;
use wagelink_proto::envelope::Signer;
use wagelink_proto::v1 as pb;

/// One `wagelink serve` process, killed when dropped.
pub struct Replica {
    pub child: Child,
    pub address: GatewayAddress,
    pub port: u16,
    pub log: PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn spawn(config: &Path, database_url: &str, dir: &Path, n: usize) -> Replica {
    spawn_on(config, database_url, dir, n, free_port())
}

/// As [`spawn`], listening on `port` (to restart a killed gateway where its clients look).
pub fn spawn_on(config: &Path, database_url: &str, dir: &Path, n: usize, port: u16) -> Replica {
    let log = dir.join(format!("replica-{n}.log"));
    let out = std::fs::File::create(&log).expect("a log file");
    let child = Command::new(env!("CARGO_BIN_EXE_wagelink"))
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", database_url])
        .env("WAGELINK_LOG", "info")
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .expect("starting wagelink serve");
    Replica {
        child,
        port,
        address: GatewayAddress {
            uri: format!("https://127.0.0.1:{port}"),
            server_name: "localhost".into(),
        },
        log,
    }
}

pub async fn connect(replica: &Replica, credentials: &Credentials) -> Channel {
    let started = Instant::now();
    loop {
        if let Ok(channel) = client::connect(&replica.address, credentials).await {
            let ok = pb::identity_client::IdentityClient::new(channel.clone())
                .who_am_i(pb::WhoAmIRequest {})
                .await
                .is_ok();
            if ok {
                return channel;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "replica at {} did not come up: {}",
            replica.address.uri,
            std::fs::read_to_string(&replica.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn lead(sender: usize, n: usize) -> pb::Lead {
    pb::Lead {
        channel: pb::LeadChannel::NationalPlatform as i32,
        lead_type: pb::LeadType::Arrears as i32,
        region_code: "500112".into(),
        sector: pb::Sector::Manufacturing as i32,
        employer_name: format!("重庆某机械厂{sender}-{n}"),
        worker_count: 3,
        amount_fen: 1_200_000,
        source_reference: format!("R-{sender}-{n}"),
        ..Default::default()
    }
}

pub fn header(sender: &str) -> pb::Header {
    pb::Header {
        message_id: uuid::Uuid::new_v4().to_string(),
        sender: sender.into(),
        created_at: Some(prost_types::Timestamp {
            seconds: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// The roster's credentials and signer of `partner` in a dev data directory.
pub fn partner(dir: &Path, id: &str) -> (Credentials, Signer) {
    let credentials = Credentials::from_dir(&dir.join("partners").join(id)).unwrap();
    let signer = Signer::from_pem(&credentials.cert_pem, &credentials.key_pem).unwrap();
    (credentials, signer)
}

/// A dev data directory whose roster is registered in the database at `url`; returns it and its
/// configuration file.
pub async fn prepare(url: &str) -> (tempfile::TempDir, Config, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = wagelink_gateway::pki::dev::prepare(dir.path()).unwrap();
    let mut with_db = config.clone();
    with_db.database_url = Some(url.to_owned());
    let (store, registry) = wagelink_gateway::server::open(&with_db).await.unwrap();
    wagelink_gateway::pki::dev::register_roster(&registry, &with_db.data_dir)
        .await
        .unwrap();
    store.close().await;
    let file = dir.path().join("wagelink.toml");
    (dir, config, file)
}
