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
        key_algorithm: key_algorithm(&cert),
    })
}

fn key_algorithm(cert: &X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    let spki = cert.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| oid.to_id_string());
    match (alg.as_str(), curve.as_deref()) {
        ("1.3.101.112", _) => "ed25519".into(),
        ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")) => "ecdsa-p256".into(),
        ("1.2.840.10045.2.1", Some("1.3.132.0.34")) => "ecdsa-p384".into(),
        ("1.2.840.10045.2.1", Some("1.2.156.10197.1.301")) | ("1.2.156.10197.1.301", _) => {
            "sm2".into()
        }
        _ => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => format!("rsa-{}", rsa.key_size()),
            _ => alg,
        },
    }
}
