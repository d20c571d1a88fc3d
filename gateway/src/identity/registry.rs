//! The partner registry as the TLS layer sees it: an in-memory snapshot of partners and pinned
//! certificates, read at every handshake and every request without touching the database.
//!
//! Every change goes to the store first and then replaces the snapshot, so it takes effect at the
//! next handshake; a periodic reload picks up changes other replicas made to the same database.
//! After every change the registry also ends the open connections whose certificate is no
//! longer acceptable (revoked, expired, partner suspended), so their streams close too.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use thiserror::Error;
use tokio_util::sync::CancellationToken;
use wagelink_proto::envelope::PublicKey;

use super::certificate::{self, CertificateError};
use super::partner::{Partner, PartnerId, PartnerStatus, VerifiedPartner};
use crate::store::{CertificateRecord, CertificateStatus, Store, StoreError};

/// Why a certificate was not accepted as a partner's identity.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Refusal {
    #[error("the certificate chain does not end at the federation CA or is invalid: {0}")]
    Chain(String),
    #[error(
        "certificate {sha256} is not registered to any partner; ask the operator to register it"
    )]
    Unregistered { sha256: String },
    #[error("certificate {sha256} of partner {partner} was revoked: {reason}")]
    Revoked {
        sha256: String,
        partner: PartnerId,
        reason: String,
    },
    #[error("partner {partner} is suspended; ask the operator to reinstate it")]
    Suspended { partner: PartnerId },
    #[error("certificate {sha256} is outside its validity period")]
    Expired { sha256: String },
    #[error("certificate {sha256} is not yet valid")]
    NotYetValid { sha256: String },
}

/// A registry change that could not be made, with what to fix.
#[derive(Debug, Error)]
pub enum RegistryError {
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    #[error("partner {0} is not registered; register the partner before its certificates")]
    UnknownPartner(PartnerId),
    #[error(transparent)]
    Partner(#[from] super::partner::PartnerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the peer gateway's certificate names partner {named}, but the peer is configured as {peer}; its SAN URI must name the id this gateway knows it by"
    )]
    PeerMismatch { named: PartnerId, peer: PartnerId },
}

#[derive(Debug, Default)]
struct Snapshot {
    partners: HashMap<PartnerId, Partner>,
    certificates: HashMap<String, CertificateRecord>,
    /// The envelope-signing key of each certificate whose key can sign (by keyid = SHA-256).
    signing_keys: HashMap<String, PublicKey>,
}

/// Why a signature's keyid cannot be used to verify an envelope.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyRefusal {
    #[error(
        "keyid {keyid} is not the SHA-256 of any registered certificate; sign with the key of your registered certificate and put the hex SHA-256 of that certificate's DER in keyid"
    )]
    Unknown { keyid: String },
    #[error("keyid {keyid} belongs to partner {owner}, not to {sender}")]
    NotSenders {
        keyid: String,
        owner: PartnerId,
        sender: PartnerId,
    },
    #[error("the certificate of keyid {keyid} was revoked ({reason}); sign with a current key")]
    Revoked { keyid: String, reason: String },
    #[error("the certificate of keyid {keyid} is outside its validity period")]
    Expired { keyid: String },
    #[error(
        "the certificate of keyid {keyid} has a key that cannot sign envelopes (use ECDSA P-256, Ed25519 or SM2)"
    )]
    CannotSign { keyid: String },
}

/// A refused handshake or request, kept for operators (and tests) to see why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalRecord {
    pub at: i64,
    pub refusal: Refusal,
}

const RECENT_REFUSALS: usize = 256;

/// The registry shared by the TLS verifier, the request layers and the administration code.
#[derive(Debug)]
pub struct Registry {
    trust_domain: String,
    store: Store,
    snapshot: RwLock<Arc<Snapshot>>,
    refusals: Mutex<VecDeque<RefusalRecord>>,
    /// One token per certificate with open connections, cancelled when it stops being
    /// acceptable.
    connections: Mutex<HashMap<String, CancellationToken>>,
    /// Reloads run one at a time, so a reload that read the store earlier can never replace
    /// the snapshot of one that read it later (and undo a revocation).
    reloading: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Loads the registry from the store.
    pub async fn load(store: Store, trust_domain: &str) -> Result<Arc<Self>, StoreError> {
        let registry = Arc::new(Self {
            trust_domain: trust_domain.to_owned(),
            store,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            refusals: Mutex::new(VecDeque::new()),
            connections: Mutex::new(HashMap::new()),
            reloading: tokio::sync::Mutex::new(()),
        });
        registry.reload().await?;
        Ok(registry)
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Re-reads partners and certificates from the store.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.reloading.lock().await;
        let partners = self.store.partners().await?;
        let certificates = self.store.certificates().await?;
        let signing_keys = certificates
            .iter()
            .filter_map(|c| {
                PublicKey::from_certificate(&c.der)
                    .ok()
                    .map(|k| (c.facts.sha256.clone(), k))
            })
            .collect();
        let snapshot = Snapshot {
            signing_keys,
            partners: partners.into_iter().map(|p| (p.id.clone(), p)).collect(),
            certificates: certificates
                .into_iter()
                .map(|c| (c.facts.sha256.clone(), c))
                .collect(),
        };
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        self.close_refused_connections();
        Ok(())
    }

    /// A token that is cancelled when the certificate `sha256` stops being acceptable; a
    /// connection made with that certificate ends when it is.
    pub fn connection_token(&self, sha256: &str) -> CancellationToken {
        if self.check_pin(sha256, crate::store::now_unix()).is_err() {
            // Withdrawn between the handshake and now: end at once.
            let token = CancellationToken::new();
            token.cancel();
            return token;
        }
        let mut open = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let token = open.entry(sha256.to_owned()).or_default();
        if token.is_cancelled() {
            *token = CancellationToken::new();
        }
        token.clone()
    }

    fn close_refused_connections(&self) {
        let now = crate::store::now_unix();
        let mut open = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|sha256, token| {
            if self.check_pin(sha256, now).is_ok() {
                true
            } else {
                tracing::info!(certificate = %sha256, "closing the connections of a certificate no longer accepted");
                token.cancel();
                false
            }
        });
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Decides whether the certificate with this DER identifies an active partner now
    /// (`now` in Unix seconds). The chain itself is checked by the TLS layer before this.
    pub fn check(&self, der: &[u8], now: i64) -> Result<VerifiedPartner, Refusal> {
        self.check_pin(&certificate::fingerprint(der), now)
    }

    /// As [`Registry::check`], for a connection whose certificate pin is already known.
    pub fn check_pin(&self, sha256: &str, now: i64) -> Result<VerifiedPartner, Refusal> {
        let snapshot = self.current();
        let Some(cert) = snapshot.certificates.get(sha256) else {
            return Err(Refusal::Unregistered {
                sha256: sha256.to_owned(),
            });
        };
        if let CertificateStatus::Revoked { reason, .. } = &cert.status {
            return Err(Refusal::Revoked {
                sha256: sha256.to_owned(),
                partner: cert.facts.partner_id.clone(),
                reason: reason.clone(),
            });
        }
        if now < cert.facts.not_before {
            return Err(Refusal::NotYetValid {
                sha256: sha256.to_owned(),
            });
        }
        if now > cert.facts.not_after {
            return Err(Refusal::Expired {
                sha256: sha256.to_owned(),
            });
        }
        let partner = snapshot
            .partners
            .get(&cert.facts.partner_id)
            .ok_or_else(|| Refusal::Unregistered {
                sha256: sha256.to_owned(),
            })?;
        if partner.status != PartnerStatus::Active {
            return Err(Refusal::Suspended {
                partner: partner.id.clone(),
            });
        }
        Ok(VerifiedPartner {
            id: partner.id.clone(),
            kind: partner.kind,
            name: partner.name.clone(),
            jurisdiction: partner.jurisdiction.clone(),
            certificate_sha256: sha256.to_owned(),
            certificate_not_after: cert.facts.not_after,
        })
    }

    /// The key that verifies `sender`'s signatures made with `keyid`, at time `now`.
    pub fn signing_key(
        &self,
        keyid: &str,
        sender: &PartnerId,
        now: i64,
    ) -> Result<PublicKey, KeyRefusal> {
        let snapshot = self.current();
        let Some(cert) = snapshot.certificates.get(keyid) else {
            return Err(KeyRefusal::Unknown {
                keyid: keyid.to_owned(),
            });
        };
        if &cert.facts.partner_id != sender {
            return Err(KeyRefusal::NotSenders {
                keyid: keyid.to_owned(),
                owner: cert.facts.partner_id.clone(),
                sender: sender.clone(),
            });
        }
        if let CertificateStatus::Revoked { reason, .. } = &cert.status {
            return Err(KeyRefusal::Revoked {
                keyid: keyid.to_owned(),
                reason: reason.clone(),
            });
        }
        if now < cert.facts.not_before || now > cert.facts.not_after {
            return Err(KeyRefusal::Expired {
                keyid: keyid.to_owned(),
            });
        }
        snapshot
            .signing_keys
            .get(keyid)
            .cloned()
            .ok_or_else(|| KeyRefusal::CannotSign {
                keyid: keyid.to_owned(),
            })
    }

    /// Remembers a refusal for operators; the oldest are forgotten first.
    pub fn record_refusal(&self, refusal: Refusal) {
        tracing::warn!(reason = %refusal, "partner refused");
        let mut recent = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT_REFUSALS {
            recent.pop_front();
        }
        recent.push_back(RefusalRecord {
            at: crate::store::now_unix(),
            refusal,
        });
    }

    /// The most recent refusals, oldest first.
    pub fn recent_refusals(&self) -> Vec<RefusalRecord> {
        self.refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub fn partner(&self, id: &PartnerId) -> Option<Partner> {
        self.current().partners.get(id).cloned()
    }

    pub fn partners(&self) -> Vec<Partner> {
        let mut all: Vec<_> = self.current().partners.values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Registers a new partner.
    pub async fn register_partner(&self, partner: &Partner) -> Result<(), RegistryError> {
        partner.validate()?;
        self.store.insert_partner(partner).await?;
        self.reload().await?;
        Ok(())
    }

    /// Suspends or reinstates a partner; effective at its next handshake and next request.
    pub async fn set_partner_status(
        &self,
        id: &PartnerId,
        status: PartnerStatus,
    ) -> Result<(), RegistryError> {
        let mut partner = self
            .store
            .partner(id)
            .await?
            .ok_or_else(|| RegistryError::UnknownPartner(id.clone()))?;
        partner.status = status;
        self.store.update_partner(&partner).await?;
        self.reload().await?;
        Ok(())
    }

    /// Pins a certificate (DER) to the partner its SAN URI names.
    pub async fn register_certificate(
        &self,
        der: &[u8],
    ) -> Result<certificate::CertificateFacts, RegistryError> {
        let facts = certificate::inspect(der, &self.trust_domain)?;
        if self.store.partner(&facts.partner_id).await?.is_none() {
            return Err(RegistryError::UnknownPartner(facts.partner_id));
        }
        self.store.insert_certificate(&facts, der).await?;
        self.reload().await?;
        Ok(facts)
    }

    /// Pins a peer gateway's certificate, issued by the peer's own CA for `trust_domain`, to
    /// the peer partner `peer` (its SAN must name it). Pinning it again changes nothing.
    pub async fn register_peer_certificate(
        &self,
        der: &[u8],
        trust_domain: &str,
        peer: &PartnerId,
    ) -> Result<certificate::CertificateFacts, RegistryError> {
        let facts = certificate::inspect(der, trust_domain)?;
        if &facts.partner_id != peer {
            return Err(RegistryError::PeerMismatch {
                named: facts.partner_id,
                peer: peer.clone(),
            });
        }
        if self.current().certificates.contains_key(&facts.sha256) {
            return Ok(facts);
        }
        self.store.insert_certificate(&facts, der).await?;
        self.reload().await?;
        Ok(facts)
    }

    /// The DER of a registered certificate.
    pub fn certificate_der(&self, sha256: &str) -> Option<Vec<u8>> {
        self.current()
            .certificates
            .get(sha256)
            .map(|c| c.der.clone())
    }

    /// Revokes a certificate by its SHA-256; new handshakes with it are refused at once.
    pub async fn revoke_certificate(
        &self,
        sha256: &str,
        reason: &str,
    ) -> Result<(), RegistryError> {
        self.store.revoke_certificate(sha256, reason).await?;
        self.reload().await?;
        Ok(())
    }
}
