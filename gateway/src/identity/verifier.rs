//! The client-certificate check of every TLS handshake: first the chain, against the
//! federation CA (webpki: signatures, validity, key usage for client auth), then the registry
//! (pinned, not revoked, partner active). A refusal ends the handshake with a TLS alert that
//! names the class of fault, and is recorded with its precise reason.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use super::registry::{Refusal, Registry};

/// A [`ClientCertVerifier`] that accepts exactly the registered, active partners.
#[derive(Debug)]
pub struct PartnerVerifier {
    chain: Arc<dyn ClientCertVerifier>,
    registry: Arc<Registry>,
}

impl PartnerVerifier {
    pub fn new(chain: Arc<dyn ClientCertVerifier>, registry: Arc<Registry>) -> Self {
        Self { chain, registry }
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
        if let Err(err) = self
            .chain
            .verify_client_cert(end_entity, intermediates, now)
        {
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
        match self
            .registry
            .check(end_entity.as_ref(), now.as_secs() as i64)
        {
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
