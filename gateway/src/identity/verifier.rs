//! The client-certificate check of every TLS handshake: first the chain, against the
//! federation CA (webpki: signatures, validity, key usage for client auth), then the registry
//! (pinned, not revoked, partner active). A refusal ends the handshake with a TLS alert that
//! names the class of fault, and is recorded with its precise reason.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use super::partner::PartnerId;
use super::registry::{Refusal, Registry};

/// Each peer gateway with the chain check of its own federation's CA.
pub type PeerChains = Vec<(PartnerId, Arc<dyn ClientCertVerifier>)>;

/// A [`ClientCertVerifier`] that accepts exactly the registered, active partners.
#[derive(Debug)]
pub struct PartnerVerifier {
    chain: Arc<dyn ClientCertVerifier>,
    registry: Arc<Registry>,
    /// Peer gateways' federation CAs, each trusted for that peer's own certificate only.
    peers: PeerChains,
}

impl PartnerVerifier {
    pub fn new(chain: Arc<dyn ClientCertVerifier>, registry: Arc<Registry>) -> Self {
        Self {
            chain,
            registry,
            peers: Vec::new(),
        }
    }

    /// Also accepts certificates under each peer's CA, for that peer gateway only.
    pub fn with_peers(mut self, peers: PeerChains) -> Self {
        self.peers = peers;
        self
    }

    /// The peer whose CA the certificate chains to, if it does not chain to ours.
    fn peer_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Option<&PartnerId> {
        self.peers
            .iter()
            .find(|(_, chain)| {
                chain
                    .verify_client_cert(end_entity, intermediates, now)
                    .is_ok()
            })
            .map(|(id, _)| id)
    }
}

/// The TLS alert a refusal is reported with.
fn alert(refusal: &Refusal) -> Error {
    Error::InvalidCertificate(match refusal {
        Refusal::Chain(_) => CertificateError::BadEncoding,
        Refusal::Revoked { .. } => CertificateError::Revoked,
        Refusal::Expired { .. } => CertificateError::Expired,
        Refusal::NotYetValid { .. } => CertificateError::NotValidYet,
        Refusal::Unregistered { .. } | Refusal::Suspended { .. } => {
            CertificateError::ApplicationVerificationFailure
        }
    })
}

impl ClientCertVerifier for PartnerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let mut only: Option<&PartnerId> = None;
        if let Err(err) = self
            .chain
            .verify_client_cert(end_entity, intermediates, now)
        {
            if let Some(peer) = self.peer_chain(end_entity, intermediates, now) {
                only = Some(peer);
            } else {
                let sha256 = super::certificate::fingerprint(end_entity);
                let refusal = match &err {
                    Error::InvalidCertificate(CertificateError::Expired)
                    | Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
                        Refusal::Expired { sha256 }
                    }
                    Error::InvalidCertificate(CertificateError::NotValidYet)
                    | Error::InvalidCertificate(CertificateError::NotValidYetContext { .. }) => {
                        Refusal::NotYetValid { sha256 }
                    }
                    other => Refusal::Chain(other.to_string()),
                };
                self.registry.record_refusal(refusal);
                return Err(err);
            }
        }
        match self
            .registry
            .check(end_entity.as_ref(), now.as_secs() as i64)
        {
            // A peer's CA vouches for that peer gateway and for nobody else here.
            Ok(p) if only.is_some_and(|peer| *peer != p.id) => {
                let refusal = Refusal::Chain(format!(
                    "the certificate chains to the CA of peer gateway {} but is registered to {}; a peer's CA is trusted for that peer only",
                    only.map(|p| p.as_str()).unwrap_or_default(),
                    p.id
                ));
                let err = alert(&refusal);
                self.registry.record_refusal(refusal);
                Err(err)
            }
            Ok(_) => Ok(ClientCertVerified::assertion()),
            Err(refusal) => {
                let err = alert(&refusal);
                self.registry.record_refusal(refusal);
                Err(err)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }
}
