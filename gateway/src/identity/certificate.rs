//! What the gateway reads out of a partner certificate: its SHA-256 pin, the partner id in its
//! SAN URI, its validity and its key. Certificates are inspected here once, when they are
//! registered; the TLS layer then compares pins only.

use sha2::{Digest, Sha256};
use thiserror::Error;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::partner::{PartnerError, PartnerId};

/// Why a certificate cannot identify a partner.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CertificateError {
    #[error("the certificate is not valid DER X.509: {0}")]
    Malformed(String),
    #[error(
        "the certificate has no SAN URI of the form spiffe://{trust_domain}/partner/<partner-id>; issue it with that URI as a subject alternative name"
    )]
    NoPartnerUri { trust_domain: String },
    #[error(
        "the certificate names more than one partner in its SAN URIs ({0} and {1}); a certificate identifies exactly one partner"
    )]
    TwoPartners(String, String),
    #[error("the certificate's SAN URI names partner {0:?}: {1}")]
    BadPartnerId(String, PartnerError),
    #[error(
        "the certificate is a CA certificate; a partner connects with an end-entity certificate"
    )]
    IsCa,
}

/// The lowercase hex SHA-256 of a certificate's DER: its pin in the registry, and the `keyid`
/// of every envelope signed with its key (DESIGN §5).
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The facts of one certificate that the registry keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    pub sha256: String,
    pub partner_id: PartnerId,
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// `ecdsa-p256`, `ecdsa-p384`, `ed25519`, `sm2`, `rsa-<bits>` or the key's OID.
    pub key_algorithm: String,
}

/// The SAN URI prefix that names partners of a trust domain.
pub fn partner_uri_prefix(trust_domain: &str) -> String {
    format!("spiffe://{trust_domain}/partner/")
}

/// Reads a partner certificate issued for `trust_domain`.
pub fn inspect(der: &[u8], trust_domain: &str) -> Result<CertificateFacts, CertificateError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| CertificateError::Malformed(e.to_string()))?;
    if cert.is_ca() {
        return Err(CertificateError::IsCa);
    }
    let prefix = partner_uri_prefix(trust_domain);
    let mut found: Option<String> = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && let Some(id) = uri.strip_prefix(&prefix)
            {
                if let Some(first) = &found {
                    return Err(CertificateError::TwoPartners(first.clone(), id.to_owned()));
                }
                found = Some(id.to_owned());
            }
        }
    }
    let id = found.ok_or_else(|| CertificateError::NoPartnerUri {
        trust_domain: trust_domain.to_owned(),
    })?;
    let partner_id = id
        .parse::<PartnerId>()
        .map_err(|e| CertificateError::BadPartnerId(id.clone(), e))?;
    Ok(CertificateFacts {
        sha256: fingerprint(der),
        partner_id,
        serial: cert.raw_serial_as_string().replace(':', ""),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        key_algorithm: key_algorithm(der, &cert),
    })
}

fn key_algorithm(der: &[u8], cert: &X509Certificate<'_>) -> String {
    use wagelink_proto::envelope::{Algorithm, PublicKey};
    use x509_parser::public_key::PublicKey as Parsed;
    // The envelope algorithms are recognised in one place, the envelope module.
    if let Ok(key) = PublicKey::from_certificate(der) {
        return match key.algorithm() {
            Algorithm::EcdsaP256Sha256 => "ecdsa-p256",
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Sm2Sm3 => "sm2",
        }
        .into();
    }
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(Parsed::RSA(rsa)) => format!("rsa-{}", rsa.key_size()),
        _ => spki.algorithm.algorithm.to_id_string(),
    }
}
