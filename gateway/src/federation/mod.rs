//! Federation with peer gateways (DESIGN §2, §7, §11): another province's or the national
//! gateway, with a federation CA of its own.
//!
//! - Each side registers the other as a partner of kind peer-gateway, pinned to the certificate
//!   the peer's own CA issued it; that CA is trusted for that one peer and nothing else (TLS,
//!   [`crate::identity::PartnerVerifier`]).
//! - A lead whose region a peer owns is routed to the peer's mailbox here
//!   (`services::cases::route_lead`). Everything in a peer's mailbox is delivered to it with
//!   this gateway's relay signature added to the sender's, and with the signers' certificates
//!   (`MailboxDelivery.signer_certificates`), so the peer can check the originator's signature
//!   against this federation's anchor ([`Peer::relay`]).
//! - Each gateway pulls its own mailbox at each peer ([`link`]): it checks both signatures,
//!   logs the relayed envelope under its own rules (a lead opens a case here; a step on a case
//!   relayed from here is mirrored on the case it came from), then acknowledges it at the peer,
//!   naming the case it opened — the peer's proof of delivery. A case opened by a relayed lead
//!   sends every step to the peer, so both sides' cases move together; feedback reaches the
//!   original source through its own gateway.
//! - Foreign certificates are kept (`foreign_certificates`) and exported with the log, so each
//!   gateway's offline audit verifies every signature in its own log.

pub mod link;

use std::path::Path;

use thiserror::Error;
use wagelink_proto::envelope::Signer;
use wagelink_proto::v1 as pb;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::{FederationConfig, PeerConfig};
use crate::identity::{Partner, PartnerId, PartnerKind, PartnerStatus, Registry, fingerprint};
use crate::store::ForeignCertificate;

#[derive(Debug, Error)]
pub enum FederationError {
    #[error("federation peer {peer}: cannot read {path}: {source}")]
    Read {
        peer: String,
        path: String,
        source: std::io::Error,
    },
    #[error("federation peer {peer}: {why}")]
    Invalid { peer: String, why: String },
    #[error("federation peer {peer}: {source}")]
    Registry {
        peer: String,
        source: crate::identity::RegistryError,
    },
}

/// What this gateway sends to a peer as: its certificate and key at the peer.
pub struct RelayIdentity {
    /// Our partner id at the peer (the SAN of the certificate).
    pub id: String,
    pub signer: Signer,
    pub cert_der: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// One configured peer gateway.
pub struct Peer {
    pub config: PeerConfig,
    pub id: PartnerId,
    /// The peer federation's CA certificate (DER) and PEM.
    ca_der: Vec<u8>,
    pub ca_pem: Vec<u8>,
    /// The peer's pinned certificate (DER).
    certificate_der: Vec<u8>,
    /// Our identity at the peer.
    pub identity: RelayIdentity,
}

/// The peers of this gateway.
#[derive(Default)]
pub struct Federation {
    pub config: FederationConfig,
    pub peers: Vec<Peer>,
}

fn read(peer: &str, path: &Path) -> Result<Vec<u8>, FederationError> {
    std::fs::read(path).map_err(|source| FederationError::Read {
        peer: peer.to_owned(),
        path: path.display().to_string(),
        source,
    })
}

fn first_der(peer: &str, path: &Path, pem: &[u8]) -> Result<Vec<u8>, FederationError> {
    crate::tls::pem_certificates(pem)
        .ok()
        .and_then(|c| c.into_iter().next())
        .ok_or_else(|| FederationError::Invalid {
            peer: peer.to_owned(),
            why: format!("{} holds no PEM certificate", path.display()),
        })
}

/// The partner id a certificate's SAN URI names under `trust_domain` (`gateway` for a
/// gateway's own certificate).
fn named_partner(cert: &X509Certificate<'_>, trust_domain: &str) -> Option<String> {
    let partner = crate::identity::partner_uri_prefix(trust_domain);
    let gateway = format!("spiffe://{trust_domain}/gateway");
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::URI(uri) if *uri == gateway => Some(crate::server::GATEWAY_ID.to_owned()),
        GeneralName::URI(uri) => uri.strip_prefix(&partner).map(str::to_owned),
        _ => None,
    })
}

impl Federation {
    /// Reads every peer's files.
    pub fn load(
        config: &FederationConfig,
        own_trust_domain: &str,
    ) -> Result<Self, FederationError> {
        let mut peers = Vec::new();
        for p in &config.peers {
            let name = p.partner.as_str();
            let id: PartnerId = name.parse().map_err(|e| FederationError::Invalid {
                peer: name.to_owned(),
                why: format!("{e}"),
            })?;
            let ca_pem = read(name, &p.ca)?;
            let ca_der = first_der(name, &p.ca, &ca_pem)?;
            let certificate_der = first_der(name, &p.certificate, &read(name, &p.certificate)?)?;
            let identity = match (&p.client_certificate, &p.client_key) {
                (Some(c), Some(k)) => {
                    let cert_pem = read(name, c)?;
                    let key_pem = read(name, k)?;
                    let cert_der = first_der(name, c, &cert_pem)?;
                    let signer = Signer::from_pem(&cert_pem, &key_pem).map_err(|e| {
                        FederationError::Invalid {
                            peer: name.to_owned(),
                            why: format!("client_certificate and client_key: {e}"),
                        }
                    })?;
                    let (_, parsed) = X509Certificate::from_der(&cert_der).map_err(|e| {
                        FederationError::Invalid {
                            peer: name.to_owned(),
                            why: format!("client_certificate: {e}"),
                        }
                    })?;
                    let our_id = named_partner(&parsed, own_trust_domain).ok_or_else(|| {
                        FederationError::Invalid {
                            peer: name.to_owned(),
                            why: format!(
                                "client_certificate has no SAN URI spiffe://{own_trust_domain}/partner/<our id at the peer>"
                            ),
                        }
                    })?;
                    RelayIdentity {
                        id: our_id,
                        signer,
                        cert_der,
                        cert_pem,
                        key_pem,
                    }
                }
                _ => {
                    return Err(FederationError::Invalid {
                        peer: name.to_owned(),
                        why: "client_certificate and client_key are required".into(),
                    });
                }
            };
            peers.push(Peer {
                config: p.clone(),
                id,
                ca_der,
                ca_pem,
                certificate_der,
                identity,
            });
        }
        Ok(Self {
            config: config.clone(),
            peers,
        })
    }

    /// Registers each peer as a partner of kind peer-gateway with its pinned certificate.
    pub async fn register(&self, registry: &Registry) -> Result<(), FederationError> {
        for peer in &self.peers {
            let wrap = |source| FederationError::Registry {
                peer: peer.config.partner.clone(),
                source,
            };
            match registry.partner(&peer.id) {
                Some(p) if p.kind != PartnerKind::PeerGateway => {
                    return Err(FederationError::Invalid {
                        peer: peer.config.partner.clone(),
                        why: format!(
                            "partner {} is registered as a {}, not a peer gateway",
                            p.id, p.kind
                        ),
                    });
                }
                Some(_) => {}
                None => {
                    let name = if peer.config.name.is_empty() {
                        peer.config.partner.clone()
                    } else {
                        peer.config.name.clone()
                    };
                    registry
                        .register_partner(&Partner {
                            id: peer.id.clone(),
                            kind: PartnerKind::PeerGateway,
                            name,
                            jurisdiction: Default::default(),
                            status: PartnerStatus::Active,
                        })
                        .await
                        .map_err(wrap)?;
                }
            }
            registry
                .register_peer_certificate(
                    &peer.certificate_der,
                    &peer.config.trust_domain,
                    &peer.id,
                )
                .await
                .map_err(wrap)?;
        }
        Ok(())
    }

    /// The chain check of each peer's CA, for the TLS layer.
    pub fn chain_verifiers(&self) -> Result<crate::identity::PeerChains, crate::tls::TlsError> {
        self.peers
            .iter()
            .map(|p| Ok((p.id.clone(), crate::tls::chain_verifier(&p.config.ca)?)))
            .collect()
    }

    /// The peer owning `region`, if another gateway does.
    pub fn owner(&self, region: &str) -> Option<&Peer> {
        let config = self.config.owner(region)?;
        self.peers
            .iter()
            .find(|p| p.config.partner == config.partner)
    }

    /// Whether leads in `region` are taken here: served here or relayed to a peer.
    pub fn accepts(&self, region: &str) -> bool {
        self.config.serves(region) || self.owner(region).is_some()
    }

    pub fn peer(&self, id: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id.as_str() == id)
    }
}

impl Peer {
    /// Adds this gateway's relay signature to an envelope delivered to the peer and returns the
    /// certificates of every signature on it. `known` looks up our registered certificates.
    pub fn relay(
        &self,
        envelope: &mut pb::SignedEnvelope,
        known: impl Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, String> {
        let relay = &self.identity;
        let mut certificates = Vec::new();
        for s in &envelope.signatures {
            if let Some(der) = known(&s.keyid) {
                certificates.push(der);
            }
        }
        let keyid = fingerprint(&relay.cert_der);
        if !envelope.signatures.iter().any(|s| s.keyid == keyid) {
            let sig = relay
                .signer
                .sign_header(&envelope.header)
                .map_err(|e| format!("cannot sign the relay: {e}"))?;
            envelope.signatures.push(sig);
        }
        certificates.push(relay.cert_der.clone());
        Ok(certificates)
    }

    /// Checks a certificate of the peer's federation: issued by its CA, valid at `now`, naming
    /// a partner (or the gateway) of its trust domain. Returns it as a foreign certificate.
    pub fn check_foreign(&self, der: &[u8], now: i64) -> Result<ForeignCertificate, String> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("does not parse: {e}"))?;
        let (_, ca) = X509Certificate::from_der(&self.ca_der)
            .map_err(|e| format!("the peer's CA does not parse: {e}"))?;
        if cert.is_ca() {
            return Err("is a CA certificate, not a partner's".into());
        }
        cert.verify_signature(Some(ca.public_key()))
            .map_err(|_| format!("is not issued by the CA of peer {}", self.id))?;
        let validity = cert.validity();
        if now < validity.not_before.timestamp() || now > validity.not_after.timestamp() {
            return Err("is outside its validity period".into());
        }
        let partner_id = named_partner(&cert, &self.config.trust_domain).ok_or_else(|| {
            format!(
                "names no partner of the peer's trust domain {}",
                self.config.trust_domain
            )
        })?;
        Ok(ForeignCertificate {
            sha256: fingerprint(der),
            partner_id,
            trust_domain: self.config.trust_domain.clone(),
            peer: self.id.to_string(),
            der: der.to_vec(),
        })
    }
}
