//! The one place end-to-end tests start gateways: a fresh dev data directory (federation CA,
//! gateway certificate, demo roster) in a temporary folder, a database on the requested backend,
//! and a real gateway listening on a free loopback port. Clients connect over real sockets with
//! real certificates through the client kit.

use std::path::PathBuf;

use tonic::transport::Channel;
use wagelink_adapters::client::{self, Credentials, GatewayAddress};
use wagelink_gateway::config::Config;
use wagelink_gateway::pki::{FederationCa, Issued, LeafSpec, dev};
use wagelink_gateway::server::{self, Running};
pub use wagelink_gateway::store::testing::{TestDb, each_backend};
pub use wagelink_proto::envelope::Signer;

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// A header from `sender` with a fresh message id, created at `created_at` (Unix seconds).
pub fn header_at(sender: &str, created_at: i64) -> wagelink_proto::v1::Header {
    wagelink_proto::v1::Header {
        message_id: uuid::Uuid::new_v4().to_string(),
        sender: sender.into(),
        created_at: Some(prost_types::Timestamp {
            seconds: created_at,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// A header from `sender` with a fresh message id, created now.
pub fn header(sender: &str) -> wagelink_proto::v1::Header {
    header_at(sender, now())
}

/// A gateway stopped by a test, with its data kept.
pub struct StoppedGateway {
    pub config: Config,
    pub db_name: &'static str,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

impl StoppedGateway {
    /// Starts it again on the same address, data directory and database.
    pub async fn start(self) -> TestGateway {
        let StoppedGateway {
            config,
            db_name,
            _db,
            _dir,
        } = self;
        let (store, registry) = server::open(&config).await.expect("reopening the database");
        let running = server::start(&config, store, registry)
            .await
            .expect("restarting the gateway");
        TestGateway {
            running,
            config,
            db_name,
            _db,
            _dir,
        }
    }
}

/// A gateway running for one test.
pub struct TestGateway {
    pub running: Running,
    pub config: Config,
    pub db_name: &'static str,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

impl TestGateway {
    /// A gateway with the default configuration on `db`.
    pub async fn start(db: TestDb) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// A gateway whose configuration `tweak` adjusts first (limits, say).
    pub async fn start_with(db: TestDb, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut prepared = PreparedGateway::new(db, "wagelink.dev");
        tweak(&mut prepared.config);
        prepared.start().await
    }
}

/// The federation CA of the dev data directory `data_dir`.
fn ca_in(data_dir: &std::path::Path) -> FederationCa {
    let pki = data_dir.join("pki");
    let cert = std::fs::read_to_string(pki.join("federation-ca.pem")).expect("CA certificate");
    let key = std::fs::read_to_string(pki.join("federation-ca.key")).expect("CA key");
    FederationCa::load(&cert, &key).expect("loading the CA")
}

/// A gateway's dev data directory and database, prepared but not started: a test can configure
/// it with what it knows of other gateways (a federation peer's CA and address) first.
pub struct PreparedGateway {
    pub config: Config,
    db: TestDb,
    dir: tempfile::TempDir,
}

impl PreparedGateway {
    /// A dev data directory (CA, gateway certificate, roster) for `trust_domain`.
    pub fn new(db: TestDb, trust_domain: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let (mut config, created) =
            dev::prepare_with(dir.path(), trust_domain).expect("preparing the dev data directory");
        assert!(created);
        config.listen = "127.0.0.1:0".parse().expect("loopback");
        config.database_url = Some(db.url.clone());
        PreparedGateway { config, db, dir }
    }

    /// The federation CA of this gateway.
    pub fn ca(&self) -> FederationCa {
        ca_in(&self.config.data_dir)
    }

    /// Starts it.
    pub async fn start(self) -> TestGateway {
        let PreparedGateway { config, db, dir } = self;
        let (store, registry) = server::open(&config)
            .await
            .expect("opening the test database");
        dev::register_roster(&registry, &config.data_dir)
            .await
            .expect("registering the demo roster");
        let running = server::start(&config, store, registry)
            .await
            .expect("starting the gateway");
        TestGateway {
            running,
            config,
            db_name: db.name,
            _db: db,
            _dir: dir,
        }
    }
}

impl TestGateway {
    pub fn address(&self) -> GatewayAddress {
        GatewayAddress {
            uri: format!("https://{}", self.running.local_addr),
            server_name: "localhost".into(),
        }
    }

    pub fn partner_dir(&self, id: &str) -> PathBuf {
        dev::partner_dir(&self.config.data_dir, id)
    }

    /// The certificate, key and CA the dev roster wrote for partner `id`.
    pub fn credentials(&self, id: &str) -> Credentials {
        Credentials::from_dir(&self.partner_dir(id)).expect("roster credentials")
    }

    /// The federation CA of this gateway, to issue further certificates.
    pub fn ca(&self) -> FederationCa {
        ca_in(&self.config.data_dir)
    }

    /// Issues a certificate from this gateway's CA (not registered).
    pub fn issue(&self, spec: &LeafSpec) -> Issued {
        self.ca()
            .issue_partner(&self.config.trust_domain, spec)
            .expect("issuing a certificate")
    }

    /// Credentials from an issued certificate, trusting this gateway's CA.
    pub fn credentials_for(&self, issued: &Issued) -> Credentials {
        Credentials {
            ca_pem: self.ca().cert_pem().as_bytes().to_vec(),
            cert_pem: issued.cert_pem.as_bytes().to_vec(),
            key_pem: issued.key_pem.as_bytes().to_vec(),
        }
    }

    /// A channel as the partner the credentials belong to.
    pub async fn channel(&self, credentials: &Credentials) -> Channel {
        client::connect(&self.address(), credentials)
            .await
            .expect("connecting to the gateway")
    }

    /// A channel as roster partner `id`.
    pub async fn channel_as(&self, id: &str) -> Channel {
        self.channel(&self.credentials(id)).await
    }

    pub async fn stop(self) {
        self.running.shutdown().await.expect("clean shutdown");
    }

    /// Stops the gateway and starts a new one on the same data directory and database.
    pub async fn restart(self) -> Self {
        self.shutdown_keeping_data().await.start().await
    }

    /// Stops the gateway gracefully, keeping its data directory and database for a restart.
    pub async fn shutdown_keeping_data(self) -> StoppedGateway {
        let TestGateway {
            running,
            mut config,
            db_name,
            _db,
            _dir,
        } = self;
        let listen = running.local_addr;
        running.shutdown().await.expect("clean shutdown");
        config.listen = listen;
        StoppedGateway {
            config,
            db_name,
            _db,
            _dir,
        }
    }

    /// The envelope signer of roster partner `id` (its dev certificate and key).
    pub fn signer(&self, id: &str) -> Signer {
        let dir = self.partner_dir(id);
        let cert = std::fs::read(dir.join("cert.pem")).expect("cert.pem");
        let key = std::fs::read(dir.join("key.pem")).expect("key.pem");
        Signer::from_pem(&cert, &key).expect("a roster signer")
    }
}

/// Submits a lead signed by roster partner `who`; returns the body of the gateway's receipt.
pub async fn submit_lead(
    gw: &TestGateway,
    who: &str,
    lead: &wagelink_proto::v1::Lead,
) -> wagelink_proto::v1::Receipt {
    use prost::Message;
    let envelope = gw
        .signer(who)
        .seal(header(who), lead)
        .expect("sealing a lead");
    let receipt = wagelink_proto::v1::cases_client::CasesClient::new(gw.channel_as(who).await)
        .submit_lead(envelope)
        .await
        .expect("the lead is accepted")
        .into_inner()
        .receipt
        .expect("a receipt");
    wagelink_proto::v1::Receipt::decode(receipt.payload.as_slice()).expect("a receipt body")
}

/// WhoAmI over `channel`.
pub async fn who_am_i(
    channel: Channel,
) -> Result<wagelink_proto::v1::WhoAmIResponse, tonic::Status> {
    wagelink_proto::v1::identity_client::IdentityClient::new(channel)
        .who_am_i(wagelink_proto::v1::WhoAmIRequest {})
        .await
        .map(|r| r.into_inner())
}

/// Asserts that an open server stream ends (cleanly or with an error) within a second.
pub async fn assert_ends_within_a_second<T: std::fmt::Debug>(stream: &mut tonic::Streaming<T>) {
    match tokio::time::timeout(std::time::Duration::from_secs(1), stream.message()).await {
        Err(_) => panic!("the stream stayed open more than a second"),
        Ok(Ok(Some(m))) => panic!("the stream went on: {m:?}"),
        Ok(Ok(None)) | Ok(Err(_)) => {}
    }
}

/// The default routing rules plus a drill rule giving 万州区 (500101) clocks of one second, so
/// its cases go overdue and are escalated within a test.
pub fn drill_rules() -> String {
    let defaults = wagelink_gateway::routing::DEFAULT_RULES;
    let at = defaults.find("[[rule]]").expect("the defaults have rules");
    format!(
        "{}[[rule]]\nid = \"drill-wanzhou\"\ndescription = \"escalation drill\"\nwhen.regions = [\"500101\"]\nhandler = \"hrss-{{region}}\"\nclocks = {{ sign_for = 1, handle = 1, feed_back = 1, unit = \"seconds\" }}\n\n{}",
        &defaults[..at],
        &defaults[at..]
    )
}

/// Points `config` at [`drill_rules`], written into its data directory.
pub fn use_drill_rules(config: &mut Config) {
    let path = config.data_dir.join("drill-rules.toml");
    std::fs::write(&path, drill_rules()).expect("writing the drill rules");
    config.routing.rules = Some(path);
}
