//! `wagelink.v1.Admin`: partners, certificates and routing rules. Every change is an envelope
//! the admin signs, logged as an `AdminEntry` with its change in the same transaction
//! (`crate::admin`), then applied to this replica at once (registry and rules reloaded, streams
//! of revoked certificates and suspended partners closed); other replicas pick it up at their
//! next reload.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use prost::Message;
use rustls::server::danger::ClientCertVerifier;
use tonic::{Request, Response, Status};
use wagelink_proto::envelope::sha256;
use wagelink_proto::v1 as pb;

use super::convert;
use super::delivery::Subscribers;
use super::status::store_unavailable;
use crate::admin::AdminChange;
use crate::admin::inspect::inspect_import;
use crate::envelope::{self, SubmitError};
use crate::identity::{
    Industry, Jurisdiction, Partner, PartnerId, PartnerKind, PartnerStatus, RegionCode, Registry,
};
use crate::ledger::log::{Accepted, Effect, EntryKind, EvidenceLog};
use crate::pki::FederationCa;
use crate::routing::{ActiveRules, RuleSet, rules_sha256};
use crate::store::{CertificateRecord, CertificateStatus};

pub struct AdminService {
    registry: Arc<Registry>,
    log: Arc<EvidenceLog>,
    rules: Arc<ActiveRules>,
    /// The federation CA, when the gateway holds its key.
    ca: Option<Arc<FederationCa>>,
    /// Checks that an imported certificate chains to the federation CA.
    chain: Arc<dyn ClientCertVerifier>,
    subscribers: Subscribers,
    crl_validity_hours: u32,
}

impl AdminService {
    pub fn new(
        registry: Arc<Registry>,
        log: Arc<EvidenceLog>,
        rules: Arc<ActiveRules>,
        ca: Option<Arc<FederationCa>>,
        chain: Arc<dyn ClientCertVerifier>,
        subscribers: Subscribers,
        crl_validity_hours: u32,
    ) -> Self {
        Self {
            registry,
            log,
            rules,
            ca,
            chain,
            subscribers,
            crl_validity_hours: crl_validity_hours.max(1),
        }
    }

    /// Logs an admin action with its change, applies it to this replica, and returns the
    /// receipt and the entry's target.
    async fn act(
        &self,
        mut accepted: Accepted,
        change: AdminChange,
    ) -> Result<(pb::SignedEnvelope, String), Status> {
        accepted.kind = EntryKind::Admin;
        accepted.effects = vec![Effect::Admin(Box::new(change))];
        let receipt = self.log.append(accepted).await.map_err(SubmitError::from)?;
        // The change is durable; a failed reload only delays it to the next periodic reload.
        if let Err(e) = self.registry.reload().await {
            tracing::warn!(error = %e, "reloading the registry after an admin change failed");
        }
        if let Err(e) = self.rules.reload().await {
            tracing::warn!(error = %e, "reloading the rules after an admin change failed");
        }
        let target = self.target(&receipt).await?;
        Ok((receipt, target))
    }

    /// An admin action answered with its receipt only.
    async fn submit(
        &self,
        accepted: Accepted,
        change: AdminChange,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let (receipt, _) = self.act(accepted, change).await?;
        Ok(Response::new(pb::SubmitResponse {
            receipt: Some(receipt),
        }))
    }

    /// SuspendPartner and ReinstatePartner: the partner and a reason, then the new status.
    async fn set_status(
        &self,
        accepted: Accepted,
        partner_id_text: &str,
        reason: &str,
        status: PartnerStatus,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let partner = partner_id("partner_id", partner_id_text)?;
        required("reason", reason)?;
        self.submit(accepted, AdminChange::Status { partner, status })
            .await
    }

    /// The `target` of the admin entry a receipt is for (for a resent envelope, the original's).
    async fn target(&self, receipt: &pb::SignedEnvelope) -> Result<String, Status> {
        let body = pb::Receipt::decode(receipt.payload.as_slice())
            .map_err(|e| Status::internal(format!("the gateway's own receipt: {e}")))?;
        let entries = self
            .log
            .store()
            .entries(body.log_index, body.log_index + 1, false)
            .await
            .map_err(store_unavailable)?;
        let entry = entries
            .first()
            .and_then(|e| pb::EntryBody::decode(e.entry.as_slice()).ok());
        match entry.and_then(|e| e.kind) {
            Some(pb::entry_body::Kind::Admin(a)) => Ok(a.target),
            _ => Err(Status::already_exists(format!(
                "this message_id was used for a message that is not this admin action (log index {}); choose a new message_id",
                body.log_index
            ))),
        }
    }

    fn ca(&self) -> Result<&FederationCa, Status> {
        self.ca.as_deref().ok_or_else(|| {
            Status::failed_precondition(
                "this gateway holds no federation CA key ([tls] ca_key is unset): certificates come from the external CA — register them with ImportCertificate, and revoke them at that CA too",
            )
        })
    }
}

/// A registered certificate as the contract shows it.
pub fn certificate(record: &CertificateRecord) -> pb::Certificate {
    let (status, code, revoked_at) = match &record.status {
        CertificateStatus::Active => (pb::CertificateStatus::Active, 0, None),
        CertificateStatus::Revoked { at, code, .. } => (
            pb::CertificateStatus::Revoked,
            code.map(i32::from).unwrap_or(0),
            Some(convert::timestamp(*at)),
        ),
    };
    pb::Certificate {
        sha256: record.facts.sha256.clone(),
        partner_id: record.facts.partner_id.to_string(),
        not_before: Some(convert::timestamp(record.facts.not_before)),
        not_after: Some(convert::timestamp(record.facts.not_after)),
        status: status as i32,
        revocation_reason: code,
        revoked_at,
        key_algorithm: record.facts.key_algorithm.clone(),
        serial: record.facts.serial.clone(),
        certificate_pem: crate::pki::pem_encode("CERTIFICATE", &record.der),
    }
}

fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.trim().is_empty() {
        Err(Status::invalid_argument(format!("{field} is required")))
    } else {
        Ok(value)
    }
}

fn partner_id(field: &str, value: &str) -> Result<PartnerId, Status> {
    value
        .parse()
        .map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

fn sha256_hex(field: &str, value: &str) -> Result<String, Status> {
    if value.len() == 64
        && value
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        Ok(value.to_owned())
    } else {
        Err(Status::invalid_argument(format!(
            "{field} must be the lowercase hex SHA-256 of the certificate's DER (64 characters); got {:?}",
            value.chars().take(70).collect::<String>()
        )))
    }
}

/// The industries an authority of `kind` may supervise; empty for kinds that are not industry
/// authorities.
fn supervised_industries(kind: PartnerKind) -> &'static [Industry] {
    match kind {
        PartnerKind::Housing => &[Industry::HousingMunicipal],
        PartnerKind::Transport => &[
            Industry::Transport,
            Industry::Railway,
            Industry::CivilAviation,
        ],
        PartnerKind::Water => &[Industry::Water],
        _ => &[],
    }
}

/// A jurisdiction from the contract, checked for a partner of `kind`.
fn jurisdiction(
    kind: PartnerKind,
    j: Option<&pb::Jurisdiction>,
    federation: &crate::federation::Federation,
) -> Result<Jurisdiction, Status> {
    let j = j.cloned().unwrap_or_default();
    let mut regions = std::collections::BTreeSet::new();
    for code in &j.region_codes {
        let region = code
            .parse::<RegionCode>()
            .map_err(|e| Status::invalid_argument(format!("jurisdiction.region_codes: {e}")))?;
        if !federation.config.serves(region.as_str()) {
            return Err(Status::invalid_argument(format!(
                "jurisdiction.region_codes: {region} is not a region this gateway serves (federation.regions {:?}); partners of another province connect to its own gateway",
                federation.config.regions
            )));
        }
        regions.insert(region);
    }
    let industry = match pb::Industry::try_from(j.industry) {
        Ok(pb::Industry::Unspecified) => None,
        Ok(i) => Industry::ALL
            .iter()
            .copied()
            .find(|d| convert::industry(Some(*d)) == i),
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "jurisdiction.industry {} is not an Industry value",
                j.industry
            )));
        }
    };
    let allowed = supervised_industries(kind);
    match industry {
        None if !allowed.is_empty() => {
            return Err(Status::invalid_argument(format!(
                "a {kind} partner is an industry authority: set jurisdiction.industry"
            )));
        }
        Some(i) if allowed.is_empty() => {
            return Err(Status::invalid_argument(format!(
                "jurisdiction.industry ({i}) is only for industry authorities (housing, transport, water); a {kind} partner has none"
            )));
        }
        Some(i) if !allowed.contains(&i) => {
            return Err(Status::invalid_argument(format!(
                "a {kind} authority does not supervise {i}: set jurisdiction.industry to one of {}",
                allowed
                    .iter()
                    .map(|i| i.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        _ => {}
    }
    let jurisdiction = Jurisdiction { regions, industry };
    if kind.needs_regions() && jurisdiction.regions.is_empty() {
        return Err(Status::invalid_argument(format!(
            "a {kind} partner needs at least one region code in jurisdiction.region_codes"
        )));
    }
    Ok(jurisdiction)
}

fn partner_kind(value: i32) -> Option<PartnerKind> {
    PartnerKind::ALL
        .iter()
        .copied()
        .find(|k| convert::partner_kind(*k) as i32 == value)
}

fn partner_status(value: i32) -> Option<PartnerStatus> {
    PartnerStatus::ALL
        .iter()
        .copied()
        .find(|s| convert::partner_status(*s) as i32 == value)
}

/// Checked rules text: the rule set, or INVALID_ARGUMENT naming the line and the reason.
fn check_rules(registry: &Registry, text: &str) -> Result<RuleSet, Status> {
    let rules =
        RuleSet::parse(text).map_err(|e| Status::invalid_argument(format!("rules_text: {e}")))?;
    if let Some(e) = rules.unusable_partner(|id| active_partner(registry, id)) {
        return Err(Status::invalid_argument(format!("rules_text: {e}")));
    }
    Ok(rules)
}

fn active_partner(registry: &Registry, id: &str) -> bool {
    id.parse::<PartnerId>()
        .ok()
        .and_then(|id| registry.partner(&id))
        .is_some_and(|p| p.status == PartnerStatus::Active)
}

/// ListPartners page tokens: the last id of a page, bound to the filters.
fn page_token(last: &str, filters: &[u8]) -> String {
    B64.encode(format!("{last}|{}", hex::encode(&sha256(filters)[..8])))
}

fn parse_page_token(token: &str, filters: &[u8]) -> Option<String> {
    let text = String::from_utf8(B64.decode(token).ok()?).ok()?;
    let (last, digest) = text.rsplit_once('|')?;
    (digest == hex::encode(&sha256(filters)[..8])).then(|| last.to_owned())
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn onboard_partner(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let (_, v) = envelope::verify_request::<pb::OnboardPartner>(&self.registry, request)?;
        let p = &v.payload;
        let id = partner_id("partner_id", &p.partner_id)?;
        let kind = match partner_kind(p.kind) {
            Some(kind) => kind,
            None => {
                return Err(Status::invalid_argument(
                    "kind is required: set a PartnerKind other than PARTNER_KIND_UNSPECIFIED",
                ));
            }
        };
        let name = required("name", &p.name)?.trim().to_owned();
        let jurisdiction = jurisdiction(kind, p.jurisdiction.as_ref(), &self.rules.federation())?;
        let partner = Partner {
            id,
            kind,
            name,
            jurisdiction,
            status: PartnerStatus::Active,
        };
        self.submit(v.accepted, AdminChange::Onboard(partner)).await
    }

    async fn change_jurisdiction(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let (_, v) = envelope::verify_request::<pb::ChangeJurisdiction>(&self.registry, request)?;
        let id = partner_id("partner_id", &v.payload.partner_id)?;
        let Some(partner) = self.registry.partner(&id) else {
            return Err(Status::not_found(format!(
                "there is no partner {id}; list partners with ListPartners"
            )));
        };
        let jurisdiction = jurisdiction(
            partner.kind,
            v.payload.jurisdiction.as_ref(),
            &self.rules.federation(),
        )?;
        self.submit(
            v.accepted,
            AdminChange::Jurisdiction {
                partner: id,
                jurisdiction,
            },
        )
        .await
    }

    async fn suspend_partner(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let (_, v) = envelope::verify_request::<pb::SuspendPartner>(&self.registry, request)?;
        let (id, reason) = (v.payload.partner_id.clone(), v.payload.reason.clone());
        self.set_status(v.accepted, &id, &reason, PartnerStatus::Suspended)
            .await
    }

    async fn reinstate_partner(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let (_, v) = envelope::verify_request::<pb::ReinstatePartner>(&self.registry, request)?;
        let (id, reason) = (v.payload.partner_id.clone(), v.payload.reason.clone());
        self.set_status(v.accepted, &id, &reason, PartnerStatus::Active)
            .await
    }

    async fn issue_certificate(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::IssuedCertificate>, Status> {
        let (_, v) = envelope::verify_request::<pb::IssueCertificate>(&self.registry, request)?;
        let ca = self.ca()?;
        let p = &v.payload;
        let id = partner_id("partner_id", &p.partner_id)?;
        let Some(partner) = self.registry.partner(&id) else {
            return Err(Status::not_found(format!(
                "there is no partner {id}; onboard it first (OnboardPartner)"
            )));
        };
        let profile = crate::pki::profile(&p.profile)
            .map_err(|e| Status::invalid_argument(format!("profile: {e}")))?;
        let issued = ca
            .issue_from_csr(
                self.registry.trust_domain(),
                &id,
                &partner.name,
                &p.csr_pem,
                profile,
                p.validity_days,
            )
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let facts = crate::identity::inspect_certificate(&issued.der, self.registry.trust_domain())
            .map_err(|e| Status::internal(format!("the issued certificate: {e}")))?;
        let (receipt, target) = self
            .act(
                v.accepted,
                AdminChange::Pin {
                    facts,
                    der: issued.der,
                },
            )
            .await?;
        // For a resent request, the certificate issued the first time.
        let record = self
            .log
            .store()
            .certificate(&target)
            .await
            .map_err(store_unavailable)?
            .ok_or_else(|| Status::internal(format!("certificate {target} is not stored")))?;
        Ok(Response::new(pb::IssuedCertificate {
            receipt: Some(receipt),
            certificate_pem: crate::pki::pem_encode("CERTIFICATE", &record.der),
            chain_pem: ca.cert_pem().to_owned(),
            sha256: record.facts.sha256,
        }))
    }

    async fn import_certificate(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let (_, v) = envelope::verify_request::<pb::ImportCertificate>(&self.registry, request)?;
        let id = partner_id("partner_id", &v.payload.partner_id)?;
        if self.registry.partner(&id).is_none() {
            return Err(Status::not_found(format!(
                "there is no partner {id}; onboard it first (OnboardPartner)"
            )));
        }
        let (facts, der) = inspect_import(
            &v.payload.certificate_pem,
            &id,
            self.registry.trust_domain(),
            &self.chain,
            crate::store::now_unix(),
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.submit(v.accepted, AdminChange::Pin { facts, der })
            .await
    }

    async fn revoke_certificate(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let (me, v) = envelope::verify_request::<pb::RevokeCertificate>(&self.registry, request)?;
        let sha256 = sha256_hex("sha256", &v.payload.sha256)?;
        let reason = pb::RevocationReason::try_from(v.payload.reason).map_err(|_| {
            Status::invalid_argument(format!(
                "reason {} is not a RevocationReason value",
                v.payload.reason
            ))
        })?;
        let code = match reason {
            pb::RevocationReason::Unspecified => None,
            other => Some(other as i32 as u8),
        };
        let text = match (code, v.payload.comment.trim()) {
            (None, "") => "revoked".to_owned(),
            (None, comment) => comment.to_owned(),
            (Some(_), "") => reason.as_str_name().to_owned(),
            (Some(_), comment) => format!("{}: {comment}", reason.as_str_name()),
        };
        self.submit(
            v.accepted,
            AdminChange::Revoke {
                sha256,
                code,
                reason: text,
                admin_certificate: me.certificate_sha256,
            },
        )
        .await
    }

    async fn upload_rules(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::UploadRulesResponse>, Status> {
        let (_, v) = envelope::verify_request::<pb::UploadRules>(&self.registry, request)?;
        let text = v.payload.rules_text.clone();
        let rules = check_rules(&self.registry, &text)?;
        let sha = rules_sha256(&text);
        let (receipt, target) = self
            .act(
                v.accepted,
                AdminChange::Rules {
                    sha256: sha.clone(),
                    text,
                    comment: v.payload.comment.clone(),
                    rule_count: rules.rules.len() as u32,
                    stated_version: rules.version,
                    activate: !v.payload.stage_only,
                },
            )
            .await?;
        let version = target
            .strip_prefix("rules:")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Status::internal(format!("the upload's entry names {target:?}")))?;
        Ok(Response::new(pb::UploadRulesResponse {
            receipt: Some(receipt),
            version,
            rules_sha256: sha,
            active: self.rules.current().version == version,
        }))
    }

    async fn rollback_rules(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let (_, v) = envelope::verify_request::<pb::RollbackRules>(&self.registry, request)?;
        required("reason", &v.payload.reason)?;
        let version = v.payload.version;
        let Some(row) = self
            .log
            .store()
            .rules_version(version)
            .await
            .map_err(store_unavailable)?
        else {
            return Err(Status::not_found(format!(
                "there is no rules version {version}; list them with ListRuleVersions"
            )));
        };
        let rules = RuleSet::parse(&row.text).map_err(|e| {
            Status::failed_precondition(format!("rules version {version} no longer parses: {e}"))
        })?;
        if let Some(e) = rules.unusable_partner(|id| active_partner(&self.registry, id)) {
            return Err(Status::failed_precondition(format!(
                "rules version {version} cannot be activated: {e}"
            )));
        }
        self.submit(v.accepted, AdminChange::Activate { version })
            .await
    }

    async fn list_partners(
        &self,
        request: Request<pb::ListPartnersRequest>,
    ) -> Result<Response<pb::ListPartnersResponse>, Status> {
        let r = request.into_inner();
        if r.page_size > 1000 {
            return Err(Status::invalid_argument(format!(
                "page_size {} is over 1000",
                r.page_size
            )));
        }
        let limit = if r.page_size == 0 {
            100
        } else {
            r.page_size as usize
        };
        let kind = match r.kind {
            0 => None,
            k => Some(partner_kind(k).ok_or_else(|| {
                Status::invalid_argument(format!("kind {k} is not a PartnerKind value"))
            })?),
        };
        let status = match r.status {
            0 => None,
            s => Some(partner_status(s).ok_or_else(|| {
                Status::invalid_argument(format!("status {s} is not a PartnerStatus value"))
            })?),
        };
        let region = match r.region_code.as_str() {
            "" => None,
            code => Some(
                code.parse::<RegionCode>()
                    .map_err(|e| Status::invalid_argument(format!("region_code: {e}")))?,
            ),
        };
        let filters = format!("{}|{}|{}", r.kind, r.status, r.region_code).into_bytes();
        let after = match r.page_token.as_str() {
            "" => None,
            token => Some(parse_page_token(token, &filters).ok_or_else(|| {
                Status::invalid_argument(
                    "page_token is not one this gateway gave for these filters; start again without it",
                )
            })?),
        };
        let mut page: Vec<Partner> = self
            .registry
            .partners()
            .into_iter()
            .filter(|p| after.as_deref().is_none_or(|a| p.id.as_str() > a))
            .filter(|p| kind.is_none_or(|k| p.kind == k))
            .filter(|p| status.is_none_or(|s| p.status == s))
            .filter(|p| region.as_ref().is_none_or(|r| p.jurisdiction.covers(r)))
            .take(limit + 1)
            .collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => page_token(last.id.as_str(), &filters),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListPartnersResponse {
            partners: page.iter().map(convert::partner).collect(),
            next_page_token,
        }))
    }

    async fn get_partner(
        &self,
        request: Request<pb::GetPartnerRequest>,
    ) -> Result<Response<pb::GetPartnerResponse>, Status> {
        let id = partner_id("partner_id", &request.into_inner().partner_id)?;
        let Some(partner) = self.registry.partner(&id) else {
            return Err(Status::not_found(format!(
                "there is no partner {id}; list partners with ListPartners"
            )));
        };
        let store = self.log.store();
        let mut certificates: Vec<CertificateRecord> = store
            .certificates()
            .await
            .map_err(store_unavailable)?
            .into_iter()
            .filter(|c| c.facts.partner_id == id)
            .collect();
        certificates.sort_by_key(|c| std::cmp::Reverse(c.facts.not_before));
        let counts = store
            .mailbox_counts(id.as_str())
            .await
            .map_err(store_unavailable)?;
        Ok(Response::new(pb::GetPartnerResponse {
            partner: Some(convert::partner(&partner)),
            certificates: certificates.iter().map(certificate).collect(),
            mailbox: Some(pb::MailboxStats {
                pending: counts.pending,
                in_flight: counts.in_flight,
                dead_lettered: counts.dead_lettered,
                last_cursor: counts.last_cursor,
                oldest_pending_at: counts.oldest_pending_at.map(convert::timestamp),
                open_streams: self.subscribers.count(id.as_str()),
            }),
        }))
    }

    async fn list_certificates(
        &self,
        request: Request<pb::ListCertificatesRequest>,
    ) -> Result<Response<pb::ListCertificatesResponse>, Status> {
        let r = request.into_inner();
        let partner = match r.partner_id.as_str() {
            "" => None,
            id => Some(partner_id("partner_id", id)?),
        };
        let now = crate::store::now_unix();
        let horizon = now.saturating_add(i64::from(r.expiring_within_days) * 86_400);
        let mut certificates: Vec<CertificateRecord> = self
            .log
            .store()
            .certificates()
            .await
            .map_err(store_unavailable)?
            .into_iter()
            .filter(|c| partner.as_ref().is_none_or(|p| &c.facts.partner_id == p))
            .filter(|c| r.include_revoked || c.status == CertificateStatus::Active)
            .filter(|c| {
                r.expiring_within_days == 0
                    || (c.status == CertificateStatus::Active && c.facts.not_after <= horizon)
            })
            .collect();
        certificates.sort_by(|a, b| {
            (a.facts.not_after, &a.facts.sha256).cmp(&(b.facts.not_after, &b.facts.sha256))
        });
        Ok(Response::new(pb::ListCertificatesResponse {
            certificates: certificates.iter().map(certificate).collect(),
        }))
    }

    async fn export_crl(
        &self,
        _request: Request<pb::ExportCrlRequest>,
    ) -> Result<Response<pb::Crl>, Status> {
        let ca = self.ca()?;
        let revoked: Vec<crate::pki::RevokedEntry> = self
            .log
            .store()
            .certificates()
            .await
            .map_err(store_unavailable)?
            .into_iter()
            .filter_map(|c| match c.status {
                CertificateStatus::Revoked { at, code, .. } => Some(crate::pki::RevokedEntry {
                    der: c.der,
                    revoked_at: at,
                    code,
                }),
                CertificateStatus::Active => None,
            })
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let this_update = now.as_secs() as i64;
        let next_update = this_update + i64::from(self.crl_validity_hours) * 3600;
        // Milliseconds since the epoch: increases from one CRL to the next, on every replica.
        let number = now.as_millis() as u64;
        let crl = ca
            .crl(&revoked, number, this_update, next_update)
            .map_err(|e| Status::internal(format!("signing the CRL failed: {e}")))?;
        Ok(Response::new(pb::Crl {
            der: crl.der,
            pem: crl.pem,
            this_update: Some(convert::timestamp(this_update)),
            next_update: Some(convert::timestamp(next_update)),
            crl_number: number,
        }))
    }

    async fn list_rule_versions(
        &self,
        _request: Request<pb::ListRuleVersionsRequest>,
    ) -> Result<Response<pb::ListRuleVersionsResponse>, Status> {
        let store = self.log.store();
        let active = store
            .active_rules()
            .await
            .map_err(store_unavailable)?
            .map(|r| r.version);
        let versions = store
            .rules_versions()
            .await
            .map_err(store_unavailable)?
            .into_iter()
            .map(|v| pb::RulesVersion {
                version: v.version,
                sha256: v.sha256,
                uploaded_at: Some(convert::timestamp(v.uploaded_at)),
                uploaded_by: v.uploaded_by,
                comment: v.comment,
                active: Some(v.version) == active,
                rule_count: v.rule_count,
                log_index: v.log_index.unwrap_or(0),
            })
            .collect();
        Ok(Response::new(pb::ListRuleVersionsResponse { versions }))
    }

    async fn dry_run_rules(
        &self,
        request: Request<pb::DryRunRulesRequest>,
    ) -> Result<Response<pb::DryRunRouteResponse>, Status> {
        let r = request.into_inner();
        super::cases::dry_run(&self.rules, &self.registry, r.lead, r.version)
            .await
            .map(Response::new)
    }
}
