//! `wagelink admin …`: the operator's command-line client of the Admin service, over mTLS with
//! an ADMIN partner's certificate. Every change is sealed (signed) with that certificate's key,
//! so the log records which admin made it. Output is a table, or JSON with `--json`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use wagelink_proto::envelope::Signer;
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::admin_client::AdminClient;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Where the gateway is and who the admin is.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The gateway's address.
    #[arg(
        long,
        env = "WAGELINK_GATEWAY",
        default_value = "https://127.0.0.1:7443"
    )]
    pub gateway: String,
    /// The name the gateway's certificate is checked against.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// A folder with the admin's cert.pem, key.pem and ca.pem (the layout `wagelink dev`
    /// writes under partners/<id>/).
    #[arg(
        long,
        env = "WAGELINK_ADMIN_DIR",
        default_value = "wagelink-dev/partners/admin-ops"
    )]
    pub credentials: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Partners: onboard, change jurisdiction, suspend, reinstate, list, show.
    #[command(subcommand)]
    Partner(PartnerCommand),
    /// Certificates: issue from a CSR, import, rotate, revoke, list, CRL.
    #[command(subcommand)]
    Certificate(CertificateCommand),
    /// Routing rules: upload, list versions, roll back, dry-run.
    #[command(subcommand)]
    Rules(RulesCommand),
}

#[derive(Debug, Subcommand)]
pub enum PartnerCommand {
    /// Register a new partner.
    Onboard {
        #[arg(long)]
        id: String,
        /// lead-source, hrss, housing, transport, water, finance, development-reform,
        /// state-assets, police, procuratorate, court, arbitration, bank, leading-office,
        /// peer-gateway or admin.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        name: String,
        /// A region code of its jurisdiction (repeat for several).
        #[arg(long = "region")]
        regions: Vec<String>,
        /// The industry of an industry authority (housing-municipal, transport, water…).
        #[arg(long)]
        industry: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Replace a partner's jurisdiction.
    Jurisdiction {
        #[arg(long)]
        id: String,
        #[arg(long = "region")]
        regions: Vec<String>,
        #[arg(long)]
        industry: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Suspend a partner: its connections end at once.
    Suspend {
        #[arg(long)]
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Reinstate a suspended partner.
    Reinstate {
        #[arg(long)]
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// List partners.
    List {
        #[arg(long)]
        kind: Option<String>,
        /// active or suspended.
        #[arg(long)]
        status: Option<String>,
        /// Partners whose jurisdiction covers this region code.
        #[arg(long)]
        region: Option<String>,
    },
    /// One partner with its certificates and mailbox.
    Show { id: String },
}

#[derive(Debug, Subcommand)]
pub enum CertificateCommand {
    /// Issue a certificate from the partner's CSR with the federation CA, and register it.
    Issue(IssueArgs),
    /// Issue a successor from a new CSR: old and new both work until you revoke the old one.
    Rotate(IssueArgs),
    /// Register a certificate issued by the federation CA elsewhere (inspected first).
    Import {
        #[arg(long)]
        partner: String,
        /// PEM file: the certificate, optionally followed by its intermediate CAs.
        #[arg(long)]
        cert: PathBuf,
    },
    /// Revoke a certificate: its connections end at once and it enters the CRL.
    Revoke {
        /// The certificate's SHA-256 (hex), as listed.
        sha256: String,
        #[arg(long, value_enum, default_value = "unspecified")]
        reason: Reason,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// List registered certificates, soonest expiry first.
    List {
        #[arg(long)]
        partner: Option<String>,
        /// Only active certificates expiring within this many days.
        #[arg(long, default_value_t = 0)]
        expiring_within: u32,
        #[arg(long)]
        include_revoked: bool,
    },
    /// Export the CRL signed by the federation CA (PEM; DER with --der).
    Crl {
        #[arg(long, short)]
        out: Option<PathBuf>,
        #[arg(long)]
        der: bool,
    },
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    #[arg(long)]
    partner: String,
    /// The partner's PEM certificate signing request.
    #[arg(long)]
    csr: PathBuf,
    #[arg(long, default_value = "partner")]
    profile: String,
    /// Validity in days; 0 = the profile's default.
    #[arg(long, default_value_t = 0)]
    days: u32,
    /// Where to write the certificate (PEM, with its chain); standard output when absent.
    #[arg(long, short)]
    out: Option<PathBuf>,
}

/// RFC 5280 revocation reasons.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Reason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

impl Reason {
    fn proto(self) -> pb::RevocationReason {
        match self {
            Reason::Unspecified => pb::RevocationReason::Unspecified,
            Reason::KeyCompromise => pb::RevocationReason::KeyCompromise,
            Reason::CaCompromise => pb::RevocationReason::CaCompromise,
            Reason::AffiliationChanged => pb::RevocationReason::AffiliationChanged,
            Reason::Superseded => pb::RevocationReason::Superseded,
            Reason::CessationOfOperation => pb::RevocationReason::CessationOfOperation,
            Reason::PrivilegeWithdrawn => pb::RevocationReason::PrivilegeWithdrawn,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Upload a rules file as a new version (active at once unless --stage).
    Upload {
        file: PathBuf,
        #[arg(long, default_value = "")]
        comment: String,
        /// Store and check it without activating it.
        #[arg(long)]
        stage: bool,
    },
    /// List the versions, newest first.
    List,
    /// Make an earlier (or staged) version the active one.
    Rollback {
        version: u32,
        #[arg(long)]
        reason: String,
    },
    /// Where a lead would go under a version (0 = the active one); nothing is stored.
    DryRun {
        #[arg(long, default_value_t = 0)]
        version: u32,
        #[arg(long)]
        region: String,
        /// arrears, suspected-crime, dispute, enforcement or risk-warning.
        #[arg(long = "type", default_value = "arrears")]
        lead_type: String,
        /// construction, manufacturing, …
        #[arg(long)]
        sector: Option<String>,
        /// The project's industry: housing-municipal, transport, water, …
        #[arg(long)]
        industry: Option<String>,
        #[arg(long, default_value_t = 0)]
        amount_fen: i64,
        /// Workers affected.
        #[arg(long, default_value_t = 1)]
        workers: u32,
        #[arg(long)]
        government_funded: bool,
        #[arg(long)]
        state_owned: bool,
    },
}

/// Rows to print as an aligned table or as a JSON array of objects.
struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn print(&self, json: bool, out: &mut dyn Write) -> std::io::Result<()> {
        if json {
            let items: Vec<serde_json::Value> = self
                .rows
                .iter()
                .map(|row| {
                    serde_json::Value::Object(
                        self.headers
                            .iter()
                            .zip(row)
                            .map(|(h, c)| (h.to_string(), serde_json::Value::String(c.clone())))
                            .collect(),
                    )
                })
                .collect();
            return writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&items).unwrap_or_default()
            );
        }
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        };
        writeln!(out, "{}", line(self.headers.clone()))?;
        for row in &self.rows {
            writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
        }
        Ok(())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}

fn read_text(path: &Path) -> Result<String, Error> {
    String::from_utf8(read(path)?)
        .map_err(|_| format!("{} is not UTF-8 text", path.display()).into())
}

/// The enum value named `value` (kebab-case, as in configuration) under `prefix`.
fn enum_value(
    what: &str,
    prefix: &str,
    value: &str,
    from: impl Fn(&str) -> Option<i32>,
) -> Result<i32, Error> {
    let name = format!("{prefix}_{}", value.to_uppercase().replace('-', "_"));
    from(&name).ok_or_else(|| format!("{what} {value:?} is unknown").into())
}

fn kind(value: &str) -> Result<i32, Error> {
    enum_value("partner kind", "PARTNER_KIND", value, |n| {
        pb::PartnerKind::from_str_name(n).map(|k| k as i32)
    })
}

fn industry(value: Option<&str>) -> Result<i32, Error> {
    match value {
        None => Ok(0),
        Some(v) => enum_value("industry", "INDUSTRY", v, |n| {
            pb::Industry::from_str_name(n).map(|k| k as i32)
        }),
    }
}

/// `PARTNER_KIND_LEAD_SOURCE` → `lead-source`.
fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .trim_start_matches('_')
        .to_lowercase()
        .replace('_', "-")
}

fn date(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| jiff::Timestamp::from_second(t.seconds).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// The admin's console: a channel and a signer.
struct Console {
    client: AdminClient<Channel>,
    signer: Signer,
    sender: String,
}

impl Console {
    async fn connect(args: &AdminArgs) -> Result<Self, Error> {
        let dir = &args.credentials;
        let cert = read(&dir.join("cert.pem"))?;
        let key = read(&dir.join("key.pem"))?;
        let ca = read(&dir.join("ca.pem"))?;
        let signer = Signer::from_pem(&cert, &key)
            .map_err(|e| format!("{}: cannot sign with this key: {e}", dir.display()))?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key))
            .domain_name(args.server_name.clone());
        let channel = Channel::from_shared(args.gateway.clone())
            .map_err(|_| {
                format!(
                    "--gateway {:?} is not a URI (https://host:port)",
                    args.gateway
                )
            })?
            .tls_config(tls)?
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", args.gateway))?;
        let me = pb::identity_client::IdentityClient::new(channel.clone())
            .who_am_i(pb::WhoAmIRequest {})
            .await?
            .into_inner();
        let sender = me.partner.map(|p| p.id).unwrap_or_default();
        Ok(Self {
            client: AdminClient::new(channel),
            signer,
            sender,
        })
    }

    fn seal<M: prost::Name>(&self, payload: &M) -> Result<pb::SignedEnvelope, Error> {
        let header = pb::Header {
            message_id: uuid::Uuid::new_v4().to_string(),
            sender: self.sender.clone(),
            created_at: Some(crate::ledger::log::now_timestamp()),
            ..Default::default()
        };
        Ok(self.signer.seal(header, payload)?)
    }
}

fn receipt_line(receipt: Option<&pb::SignedEnvelope>) -> String {
    receipt
        .and_then(|r| pb::Receipt::decode(r.payload.as_slice()).ok())
        .map(|r| format!("logged at index {}", r.log_index))
        .unwrap_or_default()
}

/// Prints what a change did: one row, or JSON.
fn done(
    json: bool,
    out: &mut dyn Write,
    what: &str,
    receipt: Option<&pb::SignedEnvelope>,
) -> Result<(), Error> {
    let mut t = Table::new(&["done", "receipt"]);
    t.row(vec![what.to_owned(), receipt_line(receipt)]);
    Ok(t.print(json, out)?)
}

fn certificates_table(certs: &[pb::Certificate]) -> Table {
    let mut t = Table::new(&["sha256", "partner", "status", "not_after", "key", "serial"]);
    for c in certs {
        let status = if c.status == pb::CertificateStatus::Revoked as i32 {
            format!(
                "revoked ({})",
                short(c.revocation_reason().as_str_name(), "REVOCATION_REASON")
            )
        } else {
            "active".into()
        };
        t.row(vec![
            c.sha256.clone(),
            c.partner_id.clone(),
            status,
            date(c.not_after.as_ref()),
            c.key_algorithm.clone(),
            c.serial.clone(),
        ]);
    }
    t
}

fn partners_table(partners: &[pb::Partner]) -> Table {
    let mut t = Table::new(&["id", "kind", "status", "regions", "industry", "name"]);
    for p in partners {
        let j = p.jurisdiction.clone().unwrap_or_default();
        t.row(vec![
            p.id.clone(),
            short(p.kind().as_str_name(), "PARTNER_KIND"),
            short(p.status().as_str_name(), "PARTNER_STATUS"),
            j.region_codes.join(","),
            if j.industry == 0 {
                String::new()
            } else {
                short(j.industry().as_str_name(), "INDUSTRY")
            },
            p.name.clone(),
        ]);
    }
    t
}

/// Runs one admin command, writing its result to `out`.
pub async fn run(args: AdminArgs, out: &mut dyn Write) -> Result<(), Error> {
    let mut c = Console::connect(&args).await?;
    let json = args.json;
    match args.command {
        AdminCommand::Partner(cmd) => partner(&mut c, cmd, json, out).await,
        AdminCommand::Certificate(cmd) => certificate(&mut c, cmd, json, out).await,
        AdminCommand::Rules(cmd) => rules(&mut c, cmd, json, out).await,
    }
}

async fn partner(
    c: &mut Console,
    cmd: PartnerCommand,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    match cmd {
        PartnerCommand::Onboard {
            id,
            kind: k,
            name,
            regions,
            industry: i,
            reason,
        } => {
            let payload = pb::OnboardPartner {
                partner_id: id.clone(),
                kind: kind(&k)?,
                name,
                jurisdiction: Some(pb::Jurisdiction {
                    region_codes: regions,
                    industry: industry(i.as_deref())?,
                }),
                reason,
            };
            let r = c.client.onboard_partner(c.seal(&payload)?).await?;
            done(
                json,
                out,
                &format!("onboarded {id}"),
                r.get_ref().receipt.as_ref(),
            )
        }
        PartnerCommand::Jurisdiction {
            id,
            regions,
            industry: i,
            reason,
        } => {
            let payload = pb::ChangeJurisdiction {
                partner_id: id.clone(),
                jurisdiction: Some(pb::Jurisdiction {
                    region_codes: regions,
                    industry: industry(i.as_deref())?,
                }),
                reason,
            };
            let r = c.client.change_jurisdiction(c.seal(&payload)?).await?;
            done(
                json,
                out,
                &format!("changed the jurisdiction of {id}"),
                r.get_ref().receipt.as_ref(),
            )
        }
        PartnerCommand::Suspend { id, reason } => {
            let payload = pb::SuspendPartner {
                partner_id: id.clone(),
                reason,
            };
            let r = c.client.suspend_partner(c.seal(&payload)?).await?;
            done(
                json,
                out,
                &format!("suspended {id}"),
                r.get_ref().receipt.as_ref(),
            )
        }
        PartnerCommand::Reinstate { id, reason } => {
            let payload = pb::ReinstatePartner {
                partner_id: id.clone(),
                reason,
            };
            let r = c.client.reinstate_partner(c.seal(&payload)?).await?;
            done(
                json,
                out,
                &format!("reinstated {id}"),
                r.get_ref().receipt.as_ref(),
            )
        }
        PartnerCommand::List {
            kind: k,
            status,
            region,
        } => {
            let mut request = pb::ListPartnersRequest {
                kind: k.as_deref().map(kind).transpose()?.unwrap_or(0),
                status: match status.as_deref() {
                    None => 0,
                    Some(s) => enum_value("status", "PARTNER_STATUS", s, |n| {
                        pb::PartnerStatus::from_str_name(n).map(|k| k as i32)
                    })?,
                },
                region_code: region.unwrap_or_default(),
                page_size: 1000,
                page_token: String::new(),
            };
            let mut all = Vec::new();
            loop {
                let page = c.client.list_partners(request.clone()).await?.into_inner();
                all.extend(page.partners);
                if page.next_page_token.is_empty() {
                    break;
                }
                request.page_token = page.next_page_token;
            }
            Ok(partners_table(&all).print(json, out)?)
        }
        PartnerCommand::Show { id } => {
            let r = c
                .client
                .get_partner(pb::GetPartnerRequest { partner_id: id })
                .await?
                .into_inner();
            let partner = r.partner.unwrap_or_default();
            let m = r.mailbox.unwrap_or_default();
            if json {
                let value = serde_json::json!({
                    "partner": partners_json(&[partner]),
                    "certificates": table_json(&certificates_table(&r.certificates)),
                    "mailbox": {
                        "pending": m.pending,
                        "in_flight": m.in_flight,
                        "dead_lettered": m.dead_lettered,
                        "last_cursor": m.last_cursor,
                        "oldest_pending_at": date(m.oldest_pending_at.as_ref()),
                        "open_streams": m.open_streams,
                    },
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
                return Ok(());
            }
            partners_table(&[partner]).print(false, out)?;
            writeln!(out)?;
            certificates_table(&r.certificates).print(false, out)?;
            writeln!(out)?;
            let mut t = Table::new(&[
                "pending",
                "in_flight",
                "dead_lettered",
                "last_cursor",
                "oldest_pending_at",
                "open_streams",
            ]);
            t.row(vec![
                m.pending.to_string(),
                m.in_flight.to_string(),
                m.dead_lettered.to_string(),
                m.last_cursor.to_string(),
                date(m.oldest_pending_at.as_ref()),
                m.open_streams.to_string(),
            ]);
            Ok(t.print(false, out)?)
        }
    }
}

fn table_json(t: &Table) -> serde_json::Value {
    let mut buffer = Vec::new();
    let _ = t.print(true, &mut buffer);
    serde_json::from_slice(&buffer).unwrap_or(serde_json::Value::Null)
}

fn partners_json(partners: &[pb::Partner]) -> serde_json::Value {
    table_json(&partners_table(partners))
}

async fn certificate(
    c: &mut Console,
    cmd: CertificateCommand,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    match cmd {
        CertificateCommand::Issue(a) => issue(c, a, false, json, out).await,
        CertificateCommand::Rotate(a) => issue(c, a, true, json, out).await,
        CertificateCommand::Import { partner, cert } => {
            let payload = pb::ImportCertificate {
                partner_id: partner.clone(),
                certificate_pem: read_text(&cert)?,
            };
            let r = c.client.import_certificate(c.seal(&payload)?).await?;
            done(
                json,
                out,
                &format!("registered the certificate of {partner}"),
                r.get_ref().receipt.as_ref(),
            )
        }
        CertificateCommand::Revoke {
            sha256,
            reason,
            comment,
        } => {
            let payload = pb::RevokeCertificate {
                sha256: sha256.clone(),
                reason: reason.proto() as i32,
                comment,
            };
            let r = c.client.revoke_certificate(c.seal(&payload)?).await?;
            done(
                json,
                out,
                &format!("revoked {sha256}"),
                r.get_ref().receipt.as_ref(),
            )
        }
        CertificateCommand::List {
            partner,
            expiring_within,
            include_revoked,
        } => {
            let r = c
                .client
                .list_certificates(pb::ListCertificatesRequest {
                    partner_id: partner.unwrap_or_default(),
                    expiring_within_days: expiring_within,
                    include_revoked,
                })
                .await?
                .into_inner();
            Ok(certificates_table(&r.certificates).print(json, out)?)
        }
        CertificateCommand::Crl { out: path, der } => {
            let crl = c
                .client
                .export_crl(pb::ExportCrlRequest {})
                .await?
                .into_inner();
            let bytes = if der { crl.der } else { crl.pem.into_bytes() };
            match path {
                Some(path) => {
                    std::fs::write(&path, &bytes)
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    let mut t = Table::new(&["crl_number", "this_update", "next_update", "file"]);
                    t.row(vec![
                        crl.crl_number.to_string(),
                        date(crl.this_update.as_ref()),
                        date(crl.next_update.as_ref()),
                        path.display().to_string(),
                    ]);
                    Ok(t.print(json, out)?)
                }
                None => Ok(out.write_all(&bytes)?),
            }
        }
    }
}

async fn issue(
    c: &mut Console,
    a: IssueArgs,
    rotate: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let before = if rotate {
        c.client
            .list_certificates(pb::ListCertificatesRequest {
                partner_id: a.partner.clone(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .certificates
    } else {
        Vec::new()
    };
    let payload = pb::IssueCertificate {
        partner_id: a.partner.clone(),
        csr_pem: read_text(&a.csr)?,
        profile: a.profile,
        validity_days: a.days,
    };
    let issued = c
        .client
        .issue_certificate(c.seal(&payload)?)
        .await?
        .into_inner();
    let pem = format!("{}{}", issued.certificate_pem, issued.chain_pem);
    if let Some(path) = &a.out {
        std::fs::write(path, &pem).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    // In JSON the certificate travels in the output; the table prints it above instead.
    let mut headers = vec!["issued", "partner", "receipt", "still_active", "file"];
    let mut row = vec![
        issued.sha256.clone(),
        a.partner.clone(),
        receipt_line(issued.receipt.as_ref()),
        before
            .iter()
            .map(|c| c.sha256.clone())
            .collect::<Vec<_>>()
            .join(" "),
        a.out
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    ];
    if json {
        headers.push("certificate_pem");
        row.push(pem.clone());
    }
    let mut t = Table::new(&headers);
    t.row(row);
    if a.out.is_none() && !json {
        out.write_all(pem.as_bytes())?;
    }
    t.print(json, out)?;
    if rotate && !json && !before.is_empty() {
        writeln!(
            out,
            "Old and new certificates both work now. Once {} connects with the new one, revoke the old:",
            a.partner
        )?;
        for old in &before {
            writeln!(
                out,
                "  wagelink admin certificate revoke {} --reason superseded",
                old.sha256
            )?;
        }
    }
    Ok(())
}

async fn rules(
    c: &mut Console,
    cmd: RulesCommand,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    match cmd {
        RulesCommand::Upload {
            file,
            comment,
            stage,
        } => {
            let payload = pb::UploadRules {
                rules_text: read_text(&file)?,
                comment,
                stage_only: stage,
            };
            let r = c.client.upload_rules(c.seal(&payload)?).await?.into_inner();
            let mut t = Table::new(&["version", "sha256", "active", "receipt"]);
            t.row(vec![
                r.version.to_string(),
                r.rules_sha256,
                r.active.to_string(),
                receipt_line(r.receipt.as_ref()),
            ]);
            Ok(t.print(json, out)?)
        }
        RulesCommand::List => {
            let r = c
                .client
                .list_rule_versions(pb::ListRuleVersionsRequest {})
                .await?
                .into_inner();
            let mut t = Table::new(&[
                "version",
                "active",
                "rules",
                "uploaded_at",
                "uploaded_by",
                "comment",
            ]);
            for v in r.versions {
                t.row(vec![
                    v.version.to_string(),
                    if v.active { "*".into() } else { String::new() },
                    v.rule_count.to_string(),
                    date(v.uploaded_at.as_ref()),
                    v.uploaded_by,
                    v.comment,
                ]);
            }
            Ok(t.print(json, out)?)
        }
        RulesCommand::Rollback { version, reason } => {
            let payload = pb::RollbackRules { version, reason };
            let r = c.client.rollback_rules(c.seal(&payload)?).await?;
            done(
                json,
                out,
                &format!("rules version {version} is active"),
                r.get_ref().receipt.as_ref(),
            )
        }
        RulesCommand::DryRun {
            version,
            region,
            lead_type,
            sector,
            industry: i,
            amount_fen,
            workers,
            government_funded,
            state_owned,
        } => {
            let lead = pb::Lead {
                channel: pb::LeadChannel::NationalPlatform as i32,
                lead_type: enum_value("lead type", "LEAD_TYPE", &lead_type, |n| {
                    pb::LeadType::from_str_name(n).map(|k| k as i32)
                })?,
                region_code: region,
                sector: match sector.as_deref() {
                    None => 0,
                    Some(s) => enum_value("sector", "SECTOR", s, |n| {
                        pb::Sector::from_str_name(n).map(|k| k as i32)
                    })?,
                },
                project_industry: industry(i.as_deref())?,
                amount_fen,
                worker_count: workers,
                government_funded: government_funded.then_some(true),
                state_owned: state_owned.then_some(true),
                ..Default::default()
            };
            let r = c
                .client
                .dry_run_rules(pb::DryRunRulesRequest {
                    lead: Some(lead),
                    version,
                })
                .await?
                .into_inner();
            let mut t = Table::new(&["partner", "role", "rule"]);
            for routing in &r.routing {
                t.row(vec![
                    routing.partner_id.clone(),
                    short(routing.role().as_str_name(), "ROUTING_ROLE"),
                    routing.rule_id.clone(),
                ]);
            }
            t.print(json, out)?;
            if !json {
                writeln!(out, "rules version {}: {}", r.rule_version, r.explanation)?;
            }
            Ok(())
        }
    }
}

/// The first admin of a new deployment, registered straight in the database.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// The gateway's configuration (its database, trust domain, CA and log key).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Database URL (overrides the configuration's `database_url`).
    #[arg(long, env = "WAGELINK_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The admin's partner id, e.g. `admin-ops`.
    #[arg(long)]
    pub id: String,
    /// Its name (an operator team, not a person's identity document).
    #[arg(long)]
    pub name: String,
    /// Its certificate (PEM), issued by the federation CA: it is inspected like an import.
    #[arg(long)]
    pub cert: PathBuf,
}

/// Registers the first admin partner and its certificate when the database has no active
/// admin — the one registry change no admin can sign. Each of the two changes is logged as an
/// admin entry signed by the gateway itself. Run it with the gateway stopped.
pub async fn bootstrap(args: BootstrapArgs, out: &mut dyn Write) -> Result<(), Error> {
    use crate::admin::AdminChange;
    use crate::identity::{Partner, PartnerKind, PartnerStatus};
    use crate::ledger::log::{Effect, EntryKind, EvidenceLog};
    use std::time::Duration;

    let mut config = crate::config::Config::load(&args.config)?;
    if args.database_url.is_some() {
        config.database_url = args.database_url;
    }
    let (store, registry) = crate::server::open(&config).await?;
    if let Some(admin) = registry
        .partners()
        .into_iter()
        .find(|p| p.kind == PartnerKind::Admin && p.status == PartnerStatus::Active)
    {
        return Err(format!(
            "{} is already an active admin: add further admins with `wagelink admin partner onboard --kind admin` and `wagelink admin certificate issue`",
            admin.id
        )
        .into());
    }
    let id: crate::identity::PartnerId = args.id.parse().map_err(|e| format!("--id: {e}"))?;
    let pem = read_text(&args.cert)?;
    let chain = crate::tls::chain_verifier(&config.tls.ca)?;
    let (facts, der) = crate::admin::inspect::inspect_import(
        &pem,
        &id,
        &config.trust_domain,
        &chain,
        crate::store::now_unix(),
    )
    .map_err(|e| format!("--cert: {e}"))?;
    let log = EvidenceLog::open(
        store.clone(),
        crate::server::log_keys(&config)?,
        Duration::from_secs(config.log.replay_window_secs),
        Duration::from_millis(config.log.checkpoint_interval_ms),
    )
    .await?;
    let partner = Partner {
        id: id.clone(),
        kind: PartnerKind::Admin,
        name: args.name.clone(),
        jurisdiction: Default::default(),
        status: PartnerStatus::Active,
    };
    let onboard = pb::OnboardPartner {
        partner_id: id.to_string(),
        kind: pb::PartnerKind::Admin as i32,
        name: args.name,
        jurisdiction: None,
        reason: "bootstrap: the first admin of this deployment".into(),
    };
    let import = pb::ImportCertificate {
        partner_id: id.to_string(),
        certificate_pem: pem,
    };
    let sha256 = facts.sha256.clone();
    let mut t = Table::new(&["done", "receipt"]);
    for (what, mut accepted) in [
        (
            format!("onboarded {id}"),
            log.own(
                &onboard,
                "",
                vec![Effect::Admin(Box::new(AdminChange::Onboard(partner)))],
            )?,
        ),
        (
            format!("registered certificate {sha256}"),
            log.own(
                &import,
                "",
                vec![Effect::Admin(Box::new(AdminChange::Pin { facts, der }))],
            )?,
        ),
    ] {
        accepted.kind = EntryKind::Admin;
        let receipt = log.append(accepted).await?;
        t.row(vec![what, receipt_line(Some(&receipt))]);
    }
    log.checkpoint_now().await;
    store.close().await;
    Ok(t.print(false, out)?)
}
