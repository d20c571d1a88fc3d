//! Running the bank adapter: camt files dropped in an inbox folder are ingested one by one
//! (moved to `done/` once the gateway's receipt is in, or to `failed/` with the reason beside
//! them), and the bank's query link is kept open, reconnecting with backoff.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use wagelink_proto::envelope::Signer;

use super::events::{AccountInfo, IngestError, Mapping, ingest};
use super::link::{CoreApi, serve_link};
use crate::client::{self, Credentials, GatewayAddress};

/// `[gateway]`: where the gateway is and who this adapter is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// `https://host:port`.
    pub address: String,
    /// The name on the gateway's certificate. Default `localhost`.
    #[serde(default = "localhost")]
    pub server_name: String,
    /// A folder with the partner's `cert.pem`, `key.pem` and the federation `ca.pem`.
    pub credentials: PathBuf,
}

fn localhost() -> String {
    "localhost".into()
}

/// `[bank]`: the bank adapter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankConfig {
    /// The bank's partner id, e.g. `bank-102`.
    pub id: String,
    /// Folder where the bank's systems drop camt files.
    pub inbox: PathBuf,
    /// Where ingested files go. Default `<inbox>/done`.
    pub done: Option<PathBuf>,
    /// Where refused files go, each with `<name>.error.txt`. Default `<inbox>/failed`.
    pub failed: Option<PathBuf>,
    /// How often the inbox is looked at, in milliseconds. Default 2000.
    #[serde(default = "poll_ms")]
    pub poll_ms: u64,
    /// The bank core's account API, `http://host:port`. Unset: no query link is opened.
    pub core_api: Option<String>,
    /// Queries the link takes at once. Default 16.
    #[serde(default = "capacity")]
    pub link_capacity: u32,
    /// The dedicated accounts this bank holds.
    #[serde(default, rename = "account")]
    pub accounts: Vec<AccountInfo>,
}

fn poll_ms() -> u64 {
    2000
}

fn capacity() -> u32 {
    16
}

/// The adapter's TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    pub gateway: GatewayConfig,
    pub bank: Option<BankConfig>,
    pub agency: Option<crate::agency::AgencyConfig>,
}

impl AdapterConfig {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut c: AdapterConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        // Relative folders are relative to the configuration file.
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rel(&mut c.gateway.credentials);
        if let Some(a) = c.agency.as_mut() {
            rel(&mut a.state_dir);
            for p in [a.package_dir.as_mut(), a.document_store.as_mut()]
                .into_iter()
                .flatten()
            {
                rel(p);
            }
        }
        if let Some(b) = c.bank.as_mut() {
            rel(&mut b.inbox);
            if let Some(p) = b.done.as_mut() {
                rel(p);
            }
            if let Some(p) = b.failed.as_mut() {
                rel(p);
            }
        }
        Ok(c)
    }
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// Logged by the gateway; moved to `done/`.
    Done { events: usize },
    /// Refused (malformed, nothing to report, or refused by the gateway); moved to `failed/`.
    Failed { reason: String },
    /// The gateway could not be reached; the file stays for the next round.
    Retry { reason: String },
}

/// Ingests every file in the inbox once, oldest name first.
pub async fn ingest_inbox(
    gateway: &GatewayConfig,
    bank: &BankConfig,
    signer: &Signer,
    mapping: &Mapping,
) -> Vec<(PathBuf, FileOutcome)> {
    let done = bank.done.clone().unwrap_or_else(|| bank.inbox.join("done"));
    let failed = bank
        .failed
        .clone()
        .unwrap_or_else(|| bank.inbox.join("failed"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&bank.inbox)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "xml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let outcome = match std::fs::read_to_string(&path) {
            Err(e) => FileOutcome::Failed {
                reason: format!("cannot read the file as UTF-8 text: {e}"),
            },
            Ok(xml) => {
                let address = GatewayAddress {
                    uri: gateway.address.clone(),
                    server_name: gateway.server_name.clone(),
                };
                let channel = match Credentials::from_dir(&gateway.credentials) {
                    Ok(c) => client::connect(&address, &c)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match channel {
                    Err(reason) => FileOutcome::Retry { reason },
                    Ok(channel) => match ingest(channel, signer, mapping, &xml).await {
                        Ok((_, events)) => FileOutcome::Done { events },
                        Err(IngestError::Transport(reason)) => FileOutcome::Retry { reason },
                        Err(e) => FileOutcome::Failed {
                            reason: e.to_string(),
                        },
                    },
                }
            }
        };
        let name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
        match &outcome {
            FileOutcome::Done { .. } => {
                let _ = std::fs::create_dir_all(&done);
                let _ = std::fs::rename(&path, done.join(&name));
            }
            FileOutcome::Failed { reason } => {
                let _ = std::fs::create_dir_all(&failed);
                let _ = std::fs::write(
                    failed.join(format!("{}.error.txt", name.to_string_lossy())),
                    format!("{reason}\n"),
                );
                let _ = std::fs::rename(&path, failed.join(&name));
            }
            FileOutcome::Retry { .. } => {}
        }
        out.push((path, outcome));
    }
    out
}

/// Runs the bank adapter until `stop` resolves.
pub async fn run_bank(
    gateway: GatewayConfig,
    bank: BankConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let credentials = Credentials::from_dir(&gateway.credentials).map_err(|e| e.to_string())?;
    let signer = Arc::new(
        Signer::from_pem(&credentials.cert_pem, &credentials.key_pem)
            .map_err(|e| format!("the bank's certificate cannot sign: {e}"))?,
    );
    let mapping = Mapping::new(&bank.id, bank.accounts.clone());
    if let Some(url) = &bank.core_api {
        let core = CoreApi::from_url(url)?;
        let (gateway, bank_id, signer, capacity) = (
            gateway.clone(),
            bank.id.clone(),
            signer.clone(),
            bank.link_capacity,
        );
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                let address = GatewayAddress {
                    uri: gateway.address.clone(),
                    server_name: gateway.server_name.clone(),
                };
                let result = match client::connect(&address, &credentials).await {
                    Ok(channel) => {
                        backoff = Duration::from_millis(500);
                        serve_link(
                            channel,
                            signer.clone(),
                            bank_id.clone(),
                            core.clone(),
                            capacity,
                        )
                        .await
                        .map_err(|s| s.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = result {
                    eprintln!(
                        "wagelink-adapter: the query link ended ({e}); reconnecting in {backoff:?}"
                    );
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        });
    }
    let mut stop = stop;
    loop {
        for (path, outcome) in ingest_inbox(&gateway, &bank, &signer, &mapping).await {
            match outcome {
                FileOutcome::Done { events } => {
                    eprintln!(
                        "wagelink-adapter: {} → {events} events logged",
                        path.display()
                    )
                }
                FileOutcome::Failed { reason } => {
                    eprintln!("wagelink-adapter: {} refused: {reason}", path.display())
                }
                FileOutcome::Retry { reason } => {
                    eprintln!("wagelink-adapter: {} waits: {reason}", path.display())
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(bank.poll_ms.max(50))) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
}
