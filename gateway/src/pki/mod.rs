//! The federation CA and the certificates it issues (see certs/README.md for the profiles).
//!
//! In production the CA is the one the operator names and its key never reaches the gateway;
//! `wagelink dev` generates one so a fresh machine has a working federation in one command.

pub mod dev;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use thiserror::Error;
use time::{Duration, OffsetDateTime};

use crate::identity::{PartnerId, partner_uri_prefix};

#[derive(Debug, Error)]
pub enum PkiError {
    #[error("cannot generate or sign a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{what} is not usable: {why}")]
    Invalid { what: String, why: String },
}

/// PEM text of DER bytes under `label` (e.g. "PRIVATE KEY").
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

/// What a partner certificate is issued for; tests vary the validity to make expired ones.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub partner: PartnerId,
    pub common_name: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// A partner certificate valid from an hour ago for `days` days.
    pub fn valid_for_days(partner: PartnerId, common_name: &str, days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            partner,
            common_name: common_name.to_owned(),
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
        }
    }
}

/// A CA that can issue federation certificates.
pub struct FederationCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

fn random_serial() -> SerialNumber {
    let mut bytes = *uuid::Uuid::new_v4().as_bytes();
    bytes[0] &= 0x7f; // a positive INTEGER
    SerialNumber::from_slice(&bytes)
}

impl FederationCa {
    /// A new self-signed CA (ECDSA P-256) named for the trust domain.
    pub fn generate(trust_domain: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "wagelink federation");
        dn.push(DnType::CommonName, format!("{trust_domain} federation CA"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(3650);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA from its certificate and key (PEM).
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::Invalid {
            what: "the federation CA key".into(),
            why: e.to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| PkiError::Invalid {
            what: "the federation CA certificate".into(),
            why: e.to_string(),
        })?;
        Ok(Self {
            issuer,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A partner client certificate: SAN URI `spiffe://<trust-domain>/partner/<id>`,
    /// digitalSignature, clientAuth (profile `partner` in certs/).
    pub fn issue_partner(&self, trust_domain: &str, spec: &LeafSpec) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "wagelink federation");
        dn.push(DnType::CommonName, spec.common_name.clone());
        params.distinguished_name = dn;
        let uri = format!("{}{}", partner_uri_prefix(trust_domain), spec.partner);
        params.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        })
    }

    /// The gateway's server certificate for the given DNS names and IP addresses
    /// (profile `gateway` in certs/).
    pub fn issue_server(&self, trust_domain: &str, hosts: &[String]) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "wagelink federation");
        dn.push(DnType::CommonName, format!("{trust_domain} gateway"));
        params.distinguished_name = dn;
        for host in hosts {
            params.subject_alt_names.push(match host.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(host.clone().try_into()?),
            });
        }
        params.subject_alt_names.push(SanType::URI(
            format!("spiffe://{trust_domain}/gateway").try_into()?,
        ));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(825);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::inspect_certificate;

    #[test]
    fn partner_certificates_carry_their_partner_id() {
        let ca = FederationCa::generate("test.wagelink").unwrap();
        let spec = LeafSpec::valid_for_days("bank-102".parse().unwrap(), "ICBC", 30);
        let issued = ca.issue_partner("test.wagelink", &spec).unwrap();
        let facts = inspect_certificate(&issued.der, "test.wagelink").unwrap();
        assert_eq!(facts.partner_id.as_str(), "bank-102");
        assert_eq!(facts.key_algorithm, "ecdsa-p256");
        assert!(facts.not_after - facts.not_before > 29 * 86400);
        // Another trust domain's partner URI does not name a partner of ours.
        assert!(inspect_certificate(&issued.der, "other.domain").is_err());
    }

    #[test]
    fn a_loaded_ca_issues_like_the_original() {
        let ca = FederationCa::generate("test.wagelink").unwrap();
        let again = FederationCa::load(ca.cert_pem(), ca.key_pem()).unwrap();
        let spec = LeafSpec::valid_for_days("hrss-500112".parse().unwrap(), "Yubei", 1);
        assert!(again.issue_partner("test.wagelink", &spec).is_ok());
        assert!(FederationCa::load(ca.cert_pem(), "not a key").is_err());
    }
}
