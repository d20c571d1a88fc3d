//! Administration as the evidence log applies it: each admin action is one signed envelope,
//! logged as an `AdminEntry`, and its change to the registry or the routing rules is checked
//! and written in the same transaction — a refused action writes nothing, an accepted one is
//! never without its entry.

pub mod expiry;
pub mod inspect;

use crate::identity::{CertificateFacts, Jurisdiction, Partner, PartnerId, PartnerStatus};
use crate::refusal::Refused;
use crate::store::{CertificateStatus, LedgerTx, NewRules, StoreError};

/// A change an admin action makes.
#[derive(Debug, Clone)]
pub enum AdminChange {
    /// Registers a new partner.
    Onboard(Partner),
    /// Replaces a partner's jurisdiction.
    Jurisdiction {
        partner: PartnerId,
        jurisdiction: Jurisdiction,
    },
    /// Suspends or reinstates a partner.
    Status {
        partner: PartnerId,
        status: PartnerStatus,
    },
    /// Pins a certificate to its partner.
    Pin {
        facts: CertificateFacts,
        der: Vec<u8>,
    },
    /// Revokes a certificate.
    Revoke {
        sha256: String,
        code: Option<u8>,
        reason: String,
        /// The certificate the admin is connected with: it cannot revoke that one.
        admin_certificate: String,
    },
    /// Stores a new routing-rules version (and activates it unless staged).
    Rules {
        sha256: String,
        text: String,
        comment: String,
        rule_count: u32,
        /// The `version` the text states; 0 when it states none.
        stated_version: u32,
        activate: bool,
    },
    /// Makes an uploaded rules version the active one.
    Activate { version: u32 },
}

impl AdminChange {
    /// What the change is about, for the entry's `target` (rules uploads are numbered in the
    /// transaction: see [`apply`]).
    fn target(&self) -> String {
        match self {
            AdminChange::Onboard(p) => p.id.to_string(),
            AdminChange::Jurisdiction { partner, .. } | AdminChange::Status { partner, .. } => {
                partner.to_string()
            }
            AdminChange::Pin { facts, .. } => facts.sha256.clone(),
            AdminChange::Revoke { sha256, .. } => sha256.clone(),
            AdminChange::Rules { .. } => "rules".into(),
            AdminChange::Activate { version } => format!("rules:{version}"),
        }
    }
}

/// Checks `change` against the store as the append transaction sees it and writes it; returns
/// the entry's target. `admin` is the partner making the change; `index` its entry's index.
pub async fn apply(
    tx: &mut LedgerTx,
    change: &AdminChange,
    admin: &str,
    index: u64,
    now: i64,
) -> Result<Result<String, Refused>, StoreError> {
    let refused = |r: Refused| Ok(Err(r));
    match change {
        AdminChange::Onboard(partner) => match tx.insert_partner(partner, now).await {
            Err(StoreError::AlreadyExists { .. }) => {
                return refused(Refused::AlreadyExists(format!(
                    "partner id {} is taken; choose another id, or use ChangeJurisdiction / ReinstatePartner on the existing partner",
                    partner.id
                )));
            }
            other => other?,
        },
        AdminChange::Jurisdiction {
            partner,
            jurisdiction,
        } => {
            let Some(mut record) = tx.partner(partner).await? else {
                return refused(unknown_partner(partner));
            };
            record.jurisdiction = jurisdiction.clone();
            if let Err(e) = record.validate() {
                return refused(Refused::InvalidArgument(format!("jurisdiction: {e}")));
            }
            tx.update_partner(&record, now).await?;
        }
        AdminChange::Status { partner, status } => {
            let Some(mut record) = tx.partner(partner).await? else {
                return refused(unknown_partner(partner));
            };
            if record.status == *status {
                return refused(Refused::FailedPrecondition(match status {
                    PartnerStatus::Suspended => format!("partner {partner} is already suspended"),
                    PartnerStatus::Active => {
                        format!("partner {partner} is not suspended; there is nothing to reinstate")
                    }
                }));
            }
            if *status == PartnerStatus::Suspended {
                if partner.as_str() == admin {
                    return refused(Refused::FailedPrecondition(format!(
                        "{admin} cannot suspend itself; ask another admin"
                    )));
                }
                if record.kind == crate::identity::PartnerKind::Admin
                    && tx.other_active_admins(partner.as_str()).await? == 0
                {
                    return refused(Refused::FailedPrecondition(format!(
                        "{partner} is the last active admin; onboard another admin first"
                    )));
                }
            }
            record.status = *status;
            tx.update_partner(&record, now).await?;
        }
        AdminChange::Pin { facts, der } => {
            if tx.partner(&facts.partner_id).await?.is_none() {
                return refused(unknown_partner(&facts.partner_id));
            }
            match tx.insert_certificate(facts, der, now).await {
                Err(StoreError::AlreadyExists { .. }) => {
                    return refused(Refused::AlreadyExists(format!(
                        "certificate {} is already registered",
                        facts.sha256
                    )));
                }
                other => other?,
            }
        }
        AdminChange::Revoke {
            sha256,
            code,
            reason,
            admin_certificate,
        } => {
            let Some(record) = tx.certificate(sha256).await? else {
                return refused(Refused::NotFound(format!(
                    "no registered certificate has SHA-256 {sha256}; list them with ListCertificates"
                )));
            };
            if let CertificateStatus::Revoked { at, .. } = record.status {
                return refused(Refused::FailedPrecondition(format!(
                    "certificate {sha256} was already revoked (at Unix time {at})"
                )));
            }
            if sha256 == admin_certificate {
                return refused(Refused::FailedPrecondition(format!(
                    "certificate {sha256} is the one this call is made with; revoke it from another admin certificate"
                )));
            }
            tx.revoke_certificate(sha256, *code, reason, now).await?;
        }
        AdminChange::Rules {
            sha256,
            text,
            comment,
            rule_count,
            stated_version,
            activate,
        } => {
            if let Some(version) = tx.rules_version_with_sha256(sha256).await? {
                return refused(Refused::AlreadyExists(format!(
                    "these exact rules were uploaded before as version {version}; activate that version with RollbackRules"
                )));
            }
            let version = tx.next_rules_version().await?;
            if *stated_version != 0 && *stated_version != version {
                return refused(Refused::InvalidArgument(format!(
                    "rules_text says `version = {stated_version}`, but this upload becomes version {version}; write `version = {version}` or leave the line out"
                )));
            }
            tx.insert_rules(
                version,
                &NewRules {
                    sha256,
                    text,
                    comment,
                    uploaded_by: admin,
                    rule_count: *rule_count,
                },
                index,
                now,
            )
            .await?;
            if *activate {
                tx.activate_rules(version).await?;
            }
            return Ok(Ok(format!("rules:{version}")));
        }
        AdminChange::Activate { version } => {
            if !tx.rules_version_exists(*version).await? {
                return refused(Refused::NotFound(format!(
                    "there is no rules version {version}; list them with ListRuleVersions"
                )));
            }
            if tx.active_rules_version().await? == Some(*version) {
                return refused(Refused::FailedPrecondition(format!(
                    "rules version {version} is already the active one"
                )));
            }
            tx.activate_rules(*version).await?;
        }
    }
    Ok(Ok(change.target()))
}

fn unknown_partner(id: &PartnerId) -> Refused {
    Refused::NotFound(format!(
        "there is no partner {id}; list partners with ListPartners"
    ))
}
