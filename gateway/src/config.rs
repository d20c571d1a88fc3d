//! The gateway's configuration: one serde struct, every field with a documented default.
//! `wagelink config` prints the effective configuration; relative paths are taken from the
//! directory of the configuration file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("the configuration is not valid: {0}")]
    Invalid(String),
}

/// Everything the gateway needs to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the gRPC server listens. Default `127.0.0.1:7443`.
    pub listen: SocketAddr,
    /// The federation's trust domain: partner certificates carry
    /// `spiffe://<trust_domain>/partner/<id>`. Default `wagelink.dev`.
    pub trust_domain: String,
    /// The directory holding the SQLite database (when no `database_url` is set) and, for
    /// `wagelink dev`, the dev PKI and the roster. Default `.`.
    pub data_dir: PathBuf,
    /// `postgres://…` to run on PostgreSQL; unset runs on `<data_dir>/wagelink.db` (SQLite).
    pub database_url: Option<String>,
    /// The gateway's TLS material.
    pub tls: TlsConfig,
    /// Limits enforced on every partner.
    pub limits: Limits,
    /// The evidence log.
    pub log: LogConfig,
    /// Routing of leads.
    pub routing: RoutingConfig,
    /// Delivery to mailboxes.
    pub delivery: DeliveryConfig,
    /// Case clocks.
    pub cases: CasesConfig,
    /// Bank events and warnings.
    pub banks: BanksConfig,
    /// Administration: certificate expiry warnings and CRLs.
    pub admin: AdminConfig,
    /// Logs, traces and metrics.
    pub telemetry: TelemetryConfig,
    /// Witnesses of the evidence log.
    pub audit: AuditConfig,
    /// Peer gateways of other trust domains (another province's, the national one).
    pub federation: FederationConfig,
    /// How often (seconds) the partner registry is re-read from the database, to pick up
    /// changes made by other replicas. Changes made through this gateway apply at once.
    /// Default 5.
    pub registry_reload_secs: u64,
    /// On shutdown, how long (seconds) calls still open may take to finish before they are
    /// cut. Default 30.
    pub shutdown_grace_secs: u64,
}

/// PEM files of the federation CA (to verify partners) and of the gateway's own certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The federation CA certificate(s) partner certificates must chain to.
    /// Default `pki/federation-ca.pem`.
    pub ca: PathBuf,
    /// The gateway's server certificate chain. Default `pki/gateway.pem`.
    pub certificate: PathBuf,
    /// The gateway's server private key. Default `pki/gateway.key`.
    pub key: PathBuf,
    /// The federation CA's private key, when this gateway issues certificates from CSRs and
    /// signs CRLs (`wagelink dev` sets `pki/federation-ca.key`). Unset in production, where the
    /// CA's key never reaches the gateway: Admin.IssueCertificate and ExportCrl then answer
    /// FAILED_PRECONDITION and certificates are imported.
    pub ca_key: Option<PathBuf>,
}

/// Witnesses of the evidence log.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Witnesses whose C2SP cosignature lines are checked and served with the checkpoints.
    pub witnesses: Vec<WitnessKey>,
}

/// Peer gateways: other federations whose anchors this gateway trusts for their gateway's
/// connections only, and the regions whose leads go to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// Region codes or prefixes this gateway serves itself. Default `["50"]` (Chongqing).
    /// A lead elsewhere is relayed to the peer owning its region, or refused.
    pub regions: Vec<String>,
    /// How often (seconds) each peer's log is witnessed. Each cosignature is an entry of the
    /// peer's log, so a shorter period grows it faster. Default 60.
    pub witness_every_secs: u64,
    pub peers: Vec<PeerConfig>,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            regions: vec!["50".into()],
            witness_every_secs: 60,
            peers: Vec::new(),
        }
    }
}

impl FederationConfig {
    /// Whether this gateway serves `region` itself.
    pub fn serves(&self, region: &str) -> bool {
        self.regions.iter().any(|r| region.starts_with(r.as_str()))
    }

    /// The peer owning `region`, if another gateway does.
    pub fn owner(&self, region: &str) -> Option<&PeerConfig> {
        if self.serves(region) {
            return None;
        }
        self.peers.iter().find(|p| p.owns(region))
    }
}

/// One peer gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's partner id here (kind peer-gateway), e.g. `peer-sichuan`. Registered at
    /// startup if missing.
    pub partner: String,
    /// Its display name. Default: the partner id.
    #[serde(default)]
    pub name: String,
    /// The peer federation's trust domain: its partners' certificates carry
    /// `spiffe://<trust_domain>/partner/<id>`.
    pub trust_domain: String,
    /// The peer federation's CA certificate (PEM): trusted for `certificate` and for checking
    /// the certificates of the peer's partners whose envelopes it relays, nothing else.
    pub ca: PathBuf,
    /// The certificate (PEM) the peer gateway connects and signs relays with, issued by its own
    /// CA to `spiffe://<trust_domain>/partner/<our id at the peer>`. Pinned like a partner's.
    pub certificate: PathBuf,
    /// Region codes or prefixes the peer owns (`51` for a whole province, `510104` for one
    /// district): leads there are relayed to it.
    #[serde(default)]
    pub regions: Vec<String>,
    /// The peer's address (`https://host:port`); unset when only the peer connects to us.
    #[serde(default)]
    pub address: Option<String>,
    /// The name the peer's server certificate is checked against. Default `localhost`.
    #[serde(default = "default_server_name")]
    pub server_name: String,
    /// Our certificate and key at the peer (issued by our federation CA to
    /// `spiffe://<our trust domain>/partner/<our id at the peer>`, client-auth): we connect to
    /// the peer with it and sign what we relay to it.
    #[serde(default)]
    pub client_certificate: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Our cosigner key (Ed25519, PKCS#8 PEM; created when missing) for witnessing the peer's
    /// evidence log: its checkpoints are checked for consistency and cosigned (C2SP
    /// tlog-cosignature) every `federation.witness_every_secs`. The peer lists its verifier key
    /// (`wagelink witness --print-key --key <file>`) in its `[[audit.witnesses]]`. Unset: this
    /// gateway does not witness the peer.
    #[serde(default)]
    pub witness_key: Option<PathBuf>,
    /// The peer's log verifier key, pinned by the witness. Unset: the key the peer announces
    /// first is pinned (and kept in `<data_dir>/witness-<partner>.json`).
    #[serde(default)]
    pub log_key: Option<String>,
}

fn default_server_name() -> String {
    "localhost".into()
}

impl PeerConfig {
    /// Whether the peer owns `region` (a configured code or a prefix of it).
    pub fn owns(&self, region: &str) -> bool {
        self.regions.iter().any(|r| region.starts_with(r.as_str()))
    }
}

/// A witness's cosigner key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessKey {
    /// The witness's partner id (a leading office, a procuratorate or a peer gateway).
    pub partner: String,
    /// Its cosigner verifier key, `<name>+<hex key id>+<base64(0x04 ‖ Ed25519 public key)>`
    /// (`wagelink witness --print-key` prints it).
    pub key: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event and per finished span (with its fields and timing).
    Json,
}

/// Logs, traces and metrics (DESIGN §12).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/gRPC collector for traces and metrics, e.g. `http://127.0.0.1:4317`. Unset: nothing
    /// is exported (trace context still flows between partners).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of every span and metric. Default `wagelink-gateway`.
    pub service_name: String,
    /// Where the Prometheus endpoint (`GET /metrics`, plain HTTP) listens, e.g.
    /// `127.0.0.1:9464`. Unset: no endpoint. Keep it on a private network.
    pub metrics_listen: Option<SocketAddr>,
    /// How often (seconds) gauges are sampled from the database and metrics pushed over OTLP.
    /// Default 15.
    pub metrics_interval_secs: u64,
    /// `text` (default) or `json`.
    pub log_format: LogFormat,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "wagelink-gateway".into(),
            metrics_listen: None,
            metrics_interval_secs: 15,
            log_format: LogFormat::Text,
        }
    }
}

/// Certificate expiry warnings and CRLs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Days before a partner certificate expires at which the log warns, once each.
    /// Default [30, 7, 1].
    pub expiry_warning_days: Vec<u32>,
    /// How often (seconds) certificates are checked for expiry. Default 3600.
    pub expiry_scan_secs: u64,
    /// How long (hours) an exported CRL is valid: its nextUpdate. Default 24.
    pub crl_validity_hours: u32,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            expiry_warning_days: vec![30, 7, 1],
            expiry_scan_secs: 3600,
            crl_validity_hours: 24,
        }
    }
}

/// Redelivery and dead-lettering of mailbox messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// A message not acknowledged this many milliseconds after it was sent is sent again.
    /// Default 30000.
    pub redeliver_after_ms: u64,
    /// After this many delivery attempts a message is dead-lettered. Default 10.
    pub max_attempts: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            redeliver_after_ms: 30_000,
            max_attempts: 10,
        }
    }
}

/// Bank events and the early-warning rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BanksConfig {
    /// Most events in one signed batch. Default 1000.
    pub max_batch: usize,
    /// How often (milliseconds) the early-warning rules look at the accounts. Default 3600000.
    pub warning_scan_ms: u64,
    /// Longest (milliseconds) an account query waits for the bank, whatever the caller's
    /// deadline. Default 30000.
    pub query_timeout_ms: u64,
    /// Longest period of a transactions query, in days. Default 366.
    pub max_query_days: u32,
    /// How often (milliseconds) the gateway pings each bank link; a link that answers none of
    /// three pings is closed. Default 10000.
    pub link_ping_ms: u64,
    /// Thresholds of the early-warning rules.
    pub warnings: crate::banks::warnings::WarningRules,
}

impl Default for BanksConfig {
    fn default() -> Self {
        Self {
            max_batch: 1000,
            warning_scan_ms: 3_600_000,
            query_timeout_ms: 30_000,
            max_query_days: 366,
            link_ping_ms: 10_000,
            warnings: Default::default(),
        }
    }
}

/// How case clocks are watched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CasesConfig {
    /// How often (milliseconds) the overdue scan looks for clocks that ran out and escalates
    /// their cases (督办) to the leading offices. Default 60000.
    pub overdue_scan_ms: u64,
}

impl Default for CasesConfig {
    fn default() -> Self {
        Self {
            overdue_scan_ms: 60_000,
        }
    }
}

/// Where the routing rules come from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// A rules file (TOML; see gateway/data/routing-default.toml for the format). Unset: the
    /// Chongqing defaults built into the binary.
    pub rules: Option<PathBuf>,
}

/// The evidence log's key, name and clocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// The Ed25519 private key (PKCS#8 PEM) that signs checkpoints; `wagelink dev` makes one,
    /// elsewhere: `openssl genpkey -algorithm ed25519 -out log.key`. Default `pki/log.key`.
    pub key: PathBuf,
    /// The checkpoint origin (first line of every checkpoint). Default `<trust_domain>/log`.
    pub origin: Option<String>,
    /// How often a new checkpoint is signed while entries arrive, in milliseconds. Default 1000.
    pub checkpoint_interval_ms: u64,
    /// How far an envelope's created_at may be from the gateway's clock, in seconds, before it
    /// is refused as a possible replay. Default 300 (±5 minutes).
    pub replay_window_secs: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            key: PathBuf::from("pki/log.key"),
            origin: None,
            checkpoint_interval_ms: 1000,
            replay_window_secs: 300,
        }
    }
}

/// Per-partner limits; each breach is answered with a precise status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest single gRPC message accepted, in bytes (RESOURCE_EXHAUSTED beyond).
    /// Default 4 MiB.
    pub max_message_bytes: usize,
    /// Sustained requests per second per partner (RESOURCE_EXHAUSTED beyond, with when to
    /// retry). Default 200.
    pub requests_per_second: u32,
    /// Requests a partner may send at once above the sustained rate. Default 400.
    pub burst: u32,
    /// Calls (streams) one partner may have open at once (RESOURCE_EXHAUSTED beyond).
    /// Default 64.
    pub max_concurrent_calls: u32,
    /// Longest a unary call may take, in milliseconds (DEADLINE_EXCEEDED beyond); a shorter
    /// `grpc-timeout` from the caller wins. Streams are not cut by it. Default 30000.
    pub request_deadline_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            trust_domain: "wagelink.dev".into(),
            data_dir: PathBuf::from("."),
            database_url: None,
            tls: TlsConfig::default(),
            limits: Limits::default(),
            log: LogConfig::default(),
            routing: RoutingConfig::default(),
            delivery: DeliveryConfig::default(),
            cases: CasesConfig::default(),
            banks: BanksConfig::default(),
            admin: AdminConfig::default(),
            telemetry: TelemetryConfig::default(),
            audit: AuditConfig::default(),
            federation: FederationConfig::default(),
            registry_reload_secs: 5,
            shutdown_grace_secs: 30,
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            ca: PathBuf::from("pki/federation-ca.pem"),
            certificate: PathBuf::from("pki/gateway.pem"),
            key: PathBuf::from("pki/gateway.key"),
            ca_key: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            requests_per_second: 200,
            burst: 400,
            max_concurrent_calls: 64,
            request_deadline_ms: 30_000,
        }
    }
}

impl Config {
    /// Reads a TOML configuration file; relative paths in it are resolved against its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.validate()?;
        Ok(config)
    }

    /// Makes every relative path absolute against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(rules) = &mut self.routing.rules
            && rules.is_relative()
        {
            *rules = base.join(&*rules);
        }
        if self.data_dir == Path::new(".") {
            self.data_dir = base.to_path_buf();
        } else if self.data_dir.is_relative() {
            self.data_dir = base.join(&self.data_dir);
        }
        let data_dir = self.data_dir.clone();
        if let Some(key) = &mut self.tls.ca_key
            && key.is_relative()
        {
            *key = data_dir.join(&*key);
        }
        let mut paths = vec![
            &mut self.tls.ca,
            &mut self.tls.certificate,
            &mut self.tls.key,
            &mut self.log.key,
        ];
        for peer in &mut self.federation.peers {
            paths.push(&mut peer.ca);
            paths.push(&mut peer.certificate);
            paths.extend(peer.client_certificate.as_mut());
            paths.extend(peer.client_key.as_mut());
            paths.extend(peer.witness_key.as_mut());
        }
        for p in paths {
            if p.is_relative() {
                *p = data_dir.join(&*p);
            }
        }
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if l.requests_per_second == 0 || l.burst == 0 {
            return Err(ConfigError::Invalid(
                "limits.requests_per_second and limits.burst must be at least 1".into(),
            ));
        }
        if l.max_concurrent_calls == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_concurrent_calls must be at least 1".into(),
            ));
        }
        if l.max_message_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "limits.max_message_bytes must be at least 1024".into(),
            ));
        }
        if self.log.checkpoint_interval_ms == 0 || self.log.replay_window_secs == 0 {
            return Err(ConfigError::Invalid(
                "log.checkpoint_interval_ms and log.replay_window_secs must be at least 1".into(),
            ));
        }
        if l.request_deadline_ms == 0 {
            return Err(ConfigError::Invalid(
                "limits.request_deadline_ms must be at least 1".into(),
            ));
        }
        if self.trust_domain.is_empty()
            || !self
                .trust_domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(ConfigError::Invalid(format!(
                "trust_domain {:?} must be a DNS-like name (letters, digits, '.', '-')",
                self.trust_domain
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for peer in &self.federation.peers {
            if !seen.insert(peer.partner.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "federation.peers names partner {:?} twice",
                    peer.partner
                )));
            }
            if peer.trust_domain == self.trust_domain {
                return Err(ConfigError::Invalid(format!(
                    "federation peer {:?} has this gateway's own trust domain {:?}; a peer is another federation",
                    peer.partner, peer.trust_domain
                )));
            }
            if let Some(r) = peer
                .regions
                .iter()
                .find(|r| r.is_empty() || r.len() > 6 || !r.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(ConfigError::Invalid(format!(
                    "federation peer {:?}: region {r:?} must be 1 to 6 digits (a GB/T 2260 code or its prefix)",
                    peer.partner
                )));
            }
            if peer.client_certificate.is_none() || peer.client_key.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "federation peer {:?} needs client_certificate and client_key: this gateway's identity at the peer, to connect and to sign what it relays",
                    peer.partner
                )));
            }
        }
        Ok(())
    }

    /// The database URL in effect: the configured one, or the SQLite file in the data dir.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("wagelink.db").display()
            ),
        }
    }

    /// The checkpoint origin in effect.
    pub fn log_origin(&self) -> String {
        self.log
            .origin
            .clone()
            .unwrap_or_else(|| format!("{}/log", self.trust_domain))
    }

    /// TOML text of this configuration.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(partner: &str, trust_domain: &str, regions: &[&str]) -> PeerConfig {
        PeerConfig {
            partner: partner.into(),
            name: String::new(),
            trust_domain: trust_domain.into(),
            ca: "ca.pem".into(),
            certificate: "peer.pem".into(),
            regions: regions.iter().map(|r| r.to_string()).collect(),
            address: None,
            server_name: default_server_name(),
            client_certificate: Some("ours.pem".into()),
            client_key: Some("ours.key".into()),
            witness_key: None,
            log_key: None,
        }
    }

    #[test]
    fn leads_outside_the_served_regions_go_to_the_peer_owning_them() {
        let mut config = Config::default();
        config.federation.peers = vec![
            peer("peer-sichuan", "sc.example", &["51"]),
            peer(
                "peer-national",
                "national.example",
                &["1", "2", "3", "4", "6"],
            ),
        ];
        config.validate().unwrap();
        let f = &config.federation;
        assert!(f.serves("500112") && f.owner("500112").is_none());
        assert_eq!(f.owner("510104").unwrap().partner, "peer-sichuan");
        assert_eq!(f.owner("110105").unwrap().partner, "peer-national");
        assert!(f.owner("540102").is_none(), "Tibet: nobody");
    }

    #[test]
    fn a_peer_configuration_is_checked() {
        for (p, why) in [
            (peer("peer-a", "wagelink.dev", &["51"]), "own trust domain"),
            (peer("peer-a", "sc.example", &["5x"]), "1 to 6 digits"),
            (
                PeerConfig {
                    client_key: None,
                    ..peer("peer-a", "sc.example", &["51"])
                },
                "needs client_certificate and client_key",
            ),
        ] {
            let mut config = Config::default();
            config.federation.peers = vec![p];
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        let mut config = Config::default();
        config.federation.peers = vec![
            peer("peer-a", "sc.example", &["51"]),
            peer("peer-a", "gz.example", &["52"]),
        ];
        assert!(config.validate().unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn an_unknown_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\n[limits]\nburts = 3\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("burts"), "{err}");
        assert!(err.contains("c.toml"), "{err}");
    }

    #[test]
    fn zero_limits_are_refused() {
        let mut c = Config::default();
        c.limits.requests_per_second = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("requests_per_second")
        );
    }

    #[test]
    fn relative_paths_follow_the_file_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "data_dir = \"state\"\n").unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.data_dir, dir.path().join("state"));
        assert_eq!(c.tls.ca, dir.path().join("state/pki/federation-ca.pem"));
        let again: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = Config::load(Path::new("/nonexistent/wagelink.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/wagelink.toml"));
    }
}
