//! `wagelink witness`: watches a gateway's evidence log as a witness partner (a leading office, a
//! procuratorate, a peer gateway). Each round fetches the latest checkpoint, checks it is signed
//! by the log key the witness pinned and consistent with the last checkpoint it accepted, and
//! cosigns it (C2SP tlog-cosignature) through Audit.AddWitnessSignature. A split view stops the
//! witness: it writes the evidence (both checkpoints) beside its state, prints an ALARM line
//! and exits with status 3.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Args;
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use wagelink_proto::envelope::Signer;
use wagelink_proto::v1 as pb;

use crate::ledger::checkpoint::Verifier;
use crate::ledger::witness::{Alarm, Cosigner, Seen, Verdict, check};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Where the watched gateway is, who the witness is, and where it keeps what it saw.
#[derive(Debug, Args)]
pub struct WitnessArgs {
    /// The watched gateway's address.
    #[arg(long, default_value = "https://127.0.0.1:7443")]
    pub gateway: String,
    /// The name the gateway's certificate is checked against.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// The witness partner's folder: cert.pem, key.pem, ca.pem.
    #[arg(long)]
    pub credentials: PathBuf,
    /// The witness's Ed25519 cosigner key (PKCS#8 PEM); created when missing.
    #[arg(long)]
    pub key: PathBuf,
    /// The cosigner name, a schema-less URL naming this witness (e.g.
    /// `leading-office-500000.cq.gov.cn/witness`).
    #[arg(long)]
    pub name: String,
    /// The JSON file holding the pinned log key and the last checkpoint accepted.
    #[arg(long)]
    pub state: PathBuf,
    /// The log verifier key to pin (`<name>+<hash>+<key>`); without it the first run pins the
    /// key the gateway announces (Audit.GetLogKeys).
    #[arg(long)]
    pub log_key: Option<String>,
    /// Seconds between rounds.
    #[arg(long, default_value_t = 10)]
    pub every_secs: u64,
    /// One round, then exit.
    #[arg(long)]
    pub once: bool,
    /// Print the cosigner's verifier key (for the gateway's [[audit.witnesses]]) and exit.
    #[arg(long)]
    pub print_key: bool,
}

/// What a witness keeps between rounds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WitnessState {
    /// The log verifier key pinned at the first round.
    pub log_key: String,
    /// The last checkpoint accepted and cosigned.
    pub seen: Option<Seen>,
    /// Its note, as evidence should a later one contradict it.
    pub seen_note: String,
}

impl WitnessState {
    pub fn load(path: &Path) -> Result<Self, Error> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is not a witness state file: {e}", path.display()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display()).into()),
        }
    }

    /// Written beside and renamed: a crash never leaves half a state.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let partial = path.with_extension("partial");
        std::fs::write(&partial, serde_json::to_vec_pretty(self)?)
            .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
        std::fs::rename(&partial, path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(())
    }
}

/// The outcome of one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// A new checkpoint was checked and cosigned.
    Cosigned { size: u64 },
    /// Nothing new since the last round.
    Unchanged { size: u64 },
}

/// The cosigner key at `path`, created (mode 0600) when missing.
pub fn cosigner(path: &Path, name: &str) -> Result<Cosigner, Error> {
    use rustls::pki_types::pem::PemObject;
    if !path.exists() {
        let der = crate::ledger::checkpoint::LogKey::generate_pkcs8();
        let pem = crate::pki::pem_encode("PRIVATE KEY", &der);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options
            .open(path)
            .and_then(|mut f| f.write_all(pem.as_bytes()))
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    }
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("{} is not a PKCS#8 PEM key: {e}", path.display()))?;
    Ok(Cosigner::from_pkcs8(name, der.secret_pkcs8_der())?)
}

/// A witness session with one gateway.
pub struct Witness {
    channel: Channel,
    signer: Signer,
    sender: String,
    cosigner: Cosigner,
}

impl Witness {
    /// A witness over an open channel, signing its envelopes as `sender` with `signer`.
    pub fn over(channel: Channel, signer: Signer, sender: String, cosigner: Cosigner) -> Self {
        Self {
            channel,
            signer,
            sender,
            cosigner,
        }
    }

    pub async fn connect(
        gateway: &str,
        server_name: &str,
        credentials: &Path,
        cosigner: Cosigner,
    ) -> Result<Self, Error> {
        let read = |name: &str| {
            std::fs::read(credentials.join(name))
                .map_err(|e| format!("cannot read {}: {e}", credentials.join(name).display()))
        };
        let (cert, key, ca) = (read("cert.pem")?, read("key.pem")?, read("ca.pem")?);
        let signer = Signer::from_pem(&cert, &key)?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key))
            .domain_name(server_name.to_owned());
        let channel = Channel::from_shared(gateway.to_owned())
            .map_err(|_| format!("--gateway {gateway:?} is not a URI"))?
            .tls_config(tls)?
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {gateway}: {e}"))?;
        let me = pb::identity_client::IdentityClient::new(channel.clone())
            .who_am_i(pb::WhoAmIRequest {})
            .await?
            .into_inner();
        Ok(Self::over(
            channel,
            signer,
            me.partner.map(|p| p.id).unwrap_or_default(),
            cosigner,
        ))
    }

    /// One round: fetch, check, cosign. An alarm is returned as `Err(Alarm)`, with `state`
    /// unchanged.
    pub async fn round(&self, state: &mut WitnessState) -> Result<Result<Round, Alarm>, Error> {
        let mut audit = pb::audit_client::AuditClient::new(self.channel.clone());
        if state.log_key.is_empty() {
            state.log_key = audit
                .get_log_keys(pb::GetLogKeysRequest {})
                .await?
                .into_inner()
                .log_verifier_key;
        }
        let verifier = Verifier::parse(&state.log_key)?;
        let latest = audit
            .get_checkpoint(pb::GetCheckpointRequest { tree_size: 0 })
            .await?
            .into_inner();
        let note =
            String::from_utf8(latest.note).map_err(|_| "the checkpoint note is not UTF-8 text")?;
        let proof = match &state.seen {
            Some(seen) if seen.size > 0 && latest.tree_size > seen.size => audit
                .get_consistency_proof(pb::GetConsistencyProofRequest {
                    first_size: seen.size,
                    second_size: latest.tree_size,
                })
                .await?
                .into_inner()
                .hashes
                .into_iter()
                .filter_map(|h| crate::ledger::merkle::Hash::try_from(h).ok())
                .collect(),
            _ => Vec::new(),
        };
        let checkpoint = match check(&verifier, state.seen.as_ref(), &note, &proof) {
            Err(alarm) => return Ok(Err(alarm)),
            Ok(Verdict::Unchanged) => {
                return Ok(Ok(Round::Unchanged {
                    size: state.seen.as_ref().map_or(0, |s| s.size),
                }));
            }
            Ok(Verdict::Cosign(c)) => c,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let line = self.cosigner.cosign(&checkpoint.body(), now);
        let payload = pb::WitnessCosignature {
            origin: checkpoint.origin.clone(),
            tree_size: checkpoint.size,
            root_hash: checkpoint.root.to_vec(),
            checked_from_size: state.seen.as_ref().map_or(0, |s| s.size),
            note_signature_line: line,
        };
        let header = pb::Header {
            message_id: uuid::Uuid::new_v4().to_string(),
            sender: self.sender.clone(),
            created_at: Some(crate::ledger::log::now_timestamp()),
            ..Default::default()
        };
        audit
            .add_witness_signature(self.signer.seal(header, &payload)?)
            .await?;
        state.seen = Some(Seen {
            origin: checkpoint.origin,
            size: checkpoint.size,
            root: B64.encode(checkpoint.root),
        });
        state.seen_note = note;
        Ok(Ok(Round::Cosigned {
            size: checkpoint.size,
        }))
    }

    /// The note of the latest checkpoint, as evidence for an alarm.
    pub async fn latest_note(&self) -> String {
        pb::audit_client::AuditClient::new(self.channel.clone())
            .get_checkpoint(pb::GetCheckpointRequest { tree_size: 0 })
            .await
            .map(|c| String::from_utf8_lossy(&c.into_inner().note).into_owned())
            .unwrap_or_default()
    }
}

/// Exit status of a witness that raised the alarm.
pub const ALARM_EXIT: u8 = 3;

/// Runs the witness until an alarm (or once); returns whether the alarm was raised.
pub async fn run(args: WitnessArgs, out: &mut dyn Write) -> Result<bool, Error> {
    let cosigner = cosigner(&args.key, &args.name)?;
    if args.print_key {
        writeln!(out, "{}", cosigner.verifier().to_text())?;
        return Ok(false);
    }
    let mut state = WitnessState::load(&args.state)?;
    if let Some(pinned) = &args.log_key {
        if !state.log_key.is_empty() && &state.log_key != pinned {
            return Err(format!(
                "{} pins another log key ({}); a witness never changes the key it watches",
                args.state.display(),
                state.log_key
            )
            .into());
        }
        state.log_key = pinned.clone();
    }
    let witness = Witness::connect(
        &args.gateway,
        &args.server_name,
        &args.credentials,
        cosigner,
    )
    .await?;
    loop {
        let first = state.log_key.is_empty();
        match witness.round(&mut state).await? {
            Ok(round) => {
                if first {
                    writeln!(
                        out,
                        "pinned the log key the gateway announced: {} (pass --log-key next time to pin one you checked)",
                        state.log_key
                    )?;
                }
                state.save(&args.state)?;
                match round {
                    Round::Cosigned { size } => {
                        writeln!(out, "cosigned the checkpoint of size {size}")?
                    }
                    Round::Unchanged { size } => writeln!(out, "no new checkpoint (size {size})")?,
                }
            }
            Err(alarm) => {
                let evidence = args.state.with_extension("alarm");
                let record = serde_json::json!({
                    "alarm": alarm.to_string(),
                    "gateway": args.gateway,
                    "accepted_note": state.seen_note,
                    "offending_note": witness.latest_note().await,
                });
                std::fs::write(&evidence, serde_json::to_vec_pretty(&record)?)
                    .map_err(|e| format!("cannot write {}: {e}", evidence.display()))?;
                tracing::error!(alarm = %alarm, evidence = %evidence.display(), "witness alarm");
                writeln!(
                    out,
                    "ALARM: {alarm}; evidence in {}; this witness cosigns nothing more",
                    evidence.display()
                )?;
                return Ok(true);
            }
        }
        if args.once {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_secs(args.every_secs.max(1))).await;
    }
}
