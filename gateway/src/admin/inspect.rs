//! The inspection a certificate issued outside the gateway must pass before it is registered
//! (Admin.ImportCertificate): one partner in exactly one SAN URI, an accepted key, the usages a
//! client certificate needs, inside its validity, and a chain to the federation CA. Each
//! failure is its own reason, so the operator knows what to ask the issuing CA for.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use thiserror::Error;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::identity::{CertificateFacts, PartnerId, inspect_certificate, partner_uri_prefix};

/// Key algorithms a partner certificate may have (those envelopes can be signed with).
pub const ACCEPTED_KEYS: &[&str] = &["ecdsa-p256", "ed25519", "sm2"];

/// Why a certificate cannot be registered.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ImportRefusal {
    #[error("certificate_pem holds no PEM certificate (-----BEGIN CERTIFICATE-----): {0}")]
    NotPem(String),
    #[error("the certificate is not valid DER X.509: {0}")]
    Malformed(String),
    #[error(
        "the certificate is a CA certificate (basicConstraints cA=TRUE); register the partner's end-entity certificate"
    )]
    IsCa,
    #[error(
        "the certificate has no SAN URI; it needs exactly one: {expected} (subject alternative name, type URI)"
    )]
    NoUri { expected: String },
    #[error(
        "the certificate has {count} SAN URIs ({uris}); a partner certificate has exactly one: {expected}"
    )]
    SeveralUris {
        count: usize,
        uris: String,
        expected: String,
    },
    #[error("the certificate's SAN URI is {found}, but partner {partner} needs {expected}")]
    WrongUri {
        found: String,
        partner: PartnerId,
        expected: String,
    },
    #[error(
        "the certificate has a {found} key; the federation accepts ECDSA P-256, Ed25519 or SM2 keys only"
    )]
    Key { found: String },
    #[error(
        "the certificate has no keyUsage extension; a partner certificate needs digitalSignature"
    )]
    NoKeyUsage,
    #[error(
        "the certificate's keyUsage is [{found}]; a partner certificate needs digitalSignature and must not have keyCertSign or cRLSign"
    )]
    KeyUsage { found: String },
    #[error(
        "the certificate's extendedKeyUsage is [{found}]; a partner certificate needs clientAuth (1.3.6.1.5.5.7.3.2)"
    )]
    ExtendedKeyUsage { found: String },
    #[error("the certificate expired at {0}; ask the CA for a new one")]
    Expired(String),
    #[error("the certificate is not valid before {0}")]
    NotYetValid(String),
    #[error(
        "the certificate does not chain to this federation's CA (its issuer is {issuer}): {reason}; it must be issued by the CA in [tls] ca, with any intermediate CA certificates after it in certificate_pem"
    )]
    Chain { issuer: String, reason: String },
}

fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| unix.to_string())
}

fn key_usage_names(ku: &x509_parser::extensions::KeyUsage) -> String {
    let flags = [
        (ku.digital_signature(), "digitalSignature"),
        (ku.non_repudiation(), "nonRepudiation"),
        (ku.key_encipherment(), "keyEncipherment"),
        (ku.data_encipherment(), "dataEncipherment"),
        (ku.key_agreement(), "keyAgreement"),
        (ku.key_cert_sign(), "keyCertSign"),
        (ku.crl_sign(), "cRLSign"),
    ];
    flags
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn eku_names(eku: &x509_parser::extensions::ExtendedKeyUsage) -> String {
    let mut names: Vec<String> = [
        (eku.any, "anyExtendedKeyUsage"),
        (eku.server_auth, "serverAuth"),
        (eku.client_auth, "clientAuth"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.time_stamping, "timeStamping"),
        (eku.ocsp_signing, "OCSPSigning"),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| (*name).to_owned())
    .collect();
    names.extend(eku.other.iter().map(|oid| oid.to_id_string()));
    names.join(", ")
}

/// Inspects a PEM certificate (optionally followed by its intermediate CAs) for `partner` at
/// time `now` (Unix seconds); returns its facts and DER when it may be registered.
pub fn inspect_import(
    pem: &str,
    partner: &PartnerId,
    trust_domain: &str,
    chain: &Arc<dyn ClientCertVerifier>,
    now: i64,
) -> Result<(CertificateFacts, Vec<u8>), ImportRefusal> {
    let mut certs = crate::tls::pem_certificates(pem.as_bytes()).map_err(ImportRefusal::NotPem)?;
    if certs.is_empty() {
        return Err(ImportRefusal::NotPem("no certificate block found".into()));
    }
    let der = certs.remove(0);
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| ImportRefusal::Malformed(e.to_string()))?;
    if cert.is_ca() {
        return Err(ImportRefusal::IsCa);
    }
    let expected = format!("{}{}", partner_uri_prefix(trust_domain), partner);
    let uris: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(uri) => Some((*uri).to_owned()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(ImportRefusal::Malformed(format!("subjectAltName: {e}"))),
    };
    match uris.as_slice() {
        [] => return Err(ImportRefusal::NoUri { expected }),
        [one] if *one == expected => {}
        [one] => {
            return Err(ImportRefusal::WrongUri {
                found: one.clone(),
                partner: partner.clone(),
                expected,
            });
        }
        many => {
            return Err(ImportRefusal::SeveralUris {
                count: many.len(),
                uris: many.join(", "),
                expected,
            });
        }
    }
    // The facts the registry keeps; the SAN was checked above, so this only reads.
    let facts = inspect_certificate(&der, trust_domain)
        .map_err(|e| ImportRefusal::Malformed(e.to_string()))?;
    if !ACCEPTED_KEYS.contains(&facts.key_algorithm.as_str()) {
        return Err(ImportRefusal::Key {
            found: match facts.key_algorithm.strip_prefix("rsa-") {
                Some(bits) => format!("RSA {bits}-bit"),
                None => facts.key_algorithm.clone(),
            },
        });
    }
    match cert.key_usage() {
        Ok(Some(ku)) => {
            let ku = ku.value;
            if !ku.digital_signature() || ku.key_cert_sign() || ku.crl_sign() {
                return Err(ImportRefusal::KeyUsage {
                    found: key_usage_names(ku),
                });
            }
        }
        Ok(None) => return Err(ImportRefusal::NoKeyUsage),
        Err(e) => return Err(ImportRefusal::Malformed(format!("keyUsage: {e}"))),
    }
    match cert.extended_key_usage() {
        Ok(Some(eku)) if eku.value.client_auth => {}
        Ok(Some(eku)) => {
            return Err(ImportRefusal::ExtendedKeyUsage {
                found: eku_names(eku.value),
            });
        }
        Ok(None) => {
            return Err(ImportRefusal::ExtendedKeyUsage {
                found: "no extendedKeyUsage extension".into(),
            });
        }
        Err(e) => return Err(ImportRefusal::Malformed(format!("extendedKeyUsage: {e}"))),
    }
    if now > facts.not_after {
        return Err(ImportRefusal::Expired(rfc3339(facts.not_after)));
    }
    if now < facts.not_before {
        return Err(ImportRefusal::NotYetValid(rfc3339(facts.not_before)));
    }
    let end_entity = CertificateDer::from(der.as_slice());
    let intermediates: Vec<CertificateDer<'_>> = certs
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let at = UnixTime::since_unix_epoch(Duration::from_secs(now.max(0) as u64));
    if let Err(e) = chain.verify_client_cert(&end_entity, &intermediates, at) {
        return Err(ImportRefusal::Chain {
            issuer: cert.issuer().to_string(),
            reason: e.to_string(),
        });
    }
    Ok((facts, der))
}
