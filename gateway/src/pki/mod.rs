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

    /// A CA from its certificate and key (PEM); refused when the key is not the certificate's.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::Invalid {
            what: "the federation CA key".into(),
            why: e.to_string(),
        })?;
        let first = crate::tls::pem_certificates(cert_pem.as_bytes())
            .ok()
            .and_then(|all| all.into_iter().next())
            .ok_or_else(|| PkiError::Invalid {
                what: "the federation CA certificate".into(),
                why: "no PEM certificate found".into(),
            })?;
        let spki = x509_parser::parse_x509_certificate(&first)
            .map(|(_, c)| c.public_key().raw.to_vec())
            .map_err(|e| PkiError::Invalid {
                what: "the federation CA certificate".into(),
                why: e.to_string(),
            })?;
        if spki != rcgen::PublicKeyData::subject_public_key_info(&key) {
            return Err(PkiError::Invalid {
                what: "the federation CA key".into(),
                why: "it is not the key of the first certificate in the CA file; give the CA's own key".into(),
            });
        }
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

/// A certificate profile the CA issues to from a CSR (certs/profiles/<name>.toml).
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// Validity when the request asks for none.
    pub default_days: u32,
    /// The longest validity the profile allows.
    pub max_days: u32,
    /// Key algorithms accepted in a CSR, as `inspect_certificate` spells them.
    pub key_algorithms: Vec<String>,
    key_usages: Vec<KeyUsagePurpose>,
    extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
}

#[derive(serde::Deserialize)]
struct ProfileFile {
    name: String,
    description: String,
    validity: ProfileValidity,
    key: ProfileKey,
    key_usage: ProfileUsages,
    extended_key_usage: ProfileUsages,
}

#[derive(serde::Deserialize)]
struct ProfileValidity {
    days: u32,
    max_days: u32,
}

#[derive(serde::Deserialize)]
struct ProfileKey {
    csr_algorithms: Vec<String>,
}

#[derive(serde::Deserialize)]
struct ProfileUsages {
    usages: Vec<String>,
}

/// The profiles certificates are issued to from a CSR, read from certs/profiles/ (built in).
const ISSUABLE_PROFILES: &[&str] = &[include_str!("../../../certs/profiles/partner.toml")];

fn parse_profile(text: &str) -> Result<Profile, String> {
    let file: ProfileFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let key_usages = file
        .key_usage
        .usages
        .iter()
        .map(|u| match u.as_str() {
            "digitalSignature" => Ok(KeyUsagePurpose::DigitalSignature),
            "keyAgreement" => Ok(KeyUsagePurpose::KeyAgreement),
            other => Err(format!("key usage {other:?} is not issued to partners")),
        })
        .collect::<Result<_, _>>()?;
    let extended_key_usages = file
        .extended_key_usage
        .usages
        .iter()
        .map(|u| match u.as_str() {
            "clientAuth" => Ok(ExtendedKeyUsagePurpose::ClientAuth),
            other => Err(format!(
                "extended key usage {other:?} is not issued to partners"
            )),
        })
        .collect::<Result<_, _>>()?;
    if file.validity.days == 0 || file.validity.days > file.validity.max_days {
        return Err("validity.days must be between 1 and validity.max_days".into());
    }
    Ok(Profile {
        name: file.name,
        description: file.description,
        default_days: file.validity.days,
        max_days: file.validity.max_days,
        key_algorithms: file.key.csr_algorithms,
        key_usages,
        extended_key_usages,
    })
}

/// The profiles the CA issues to from a CSR.
pub fn profiles() -> &'static [Profile] {
    static PROFILES: std::sync::OnceLock<Vec<Profile>> = std::sync::OnceLock::new();
    PROFILES.get_or_init(|| {
        ISSUABLE_PROFILES
            .iter()
            .filter_map(|text| match parse_profile(text) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!(error = %e, "a built-in certificate profile does not load");
                    None
                }
            })
            .collect()
    })
}

/// Why a certificate could not be issued from a CSR; each says what to fix.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CsrError {
    #[error(
        "csr_pem is not a PEM certificate signing request (-----BEGIN CERTIFICATE REQUEST-----) whose self-signature verifies: {0}"
    )]
    Unreadable(String),
    #[error("profile {given:?} is unknown: use one of {known}")]
    UnknownProfile { given: String, known: String },
    #[error("validity_days {asked} is beyond profile {profile}'s maximum of {max} days")]
    TooLong {
        asked: u32,
        profile: String,
        max: u32,
    },
    #[error("the CSR's key is {found}; profile {profile} issues for {allowed} keys only")]
    KeyAlgorithm {
        found: String,
        profile: String,
        allowed: String,
    },
    #[error("the certificate could not be made: {0}")]
    Signing(String),
}

/// The profile named `name` ("" = `partner`).
pub fn profile(name: &str) -> Result<&'static Profile, CsrError> {
    let name = if name.is_empty() { "partner" } else { name };
    profiles()
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| CsrError::UnknownProfile {
            given: name.to_owned(),
            known: profiles()
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// One revoked certificate, as a CRL lists it.
#[derive(Debug, Clone)]
pub struct RevokedEntry {
    /// The certificate's DER (its serial and issuer are read from it).
    pub der: Vec<u8>,
    /// Unix seconds.
    pub revoked_at: i64,
    /// RFC 5280 CRLReason code; None writes no reasonCode.
    pub code: Option<u8>,
}

/// A signed CRL.
#[derive(Debug, Clone)]
pub struct SignedCrl {
    pub der: Vec<u8>,
    pub pem: String,
    /// How many revoked certificates it lists.
    pub listed: usize,
}

fn crl_reason(code: u8) -> Option<rcgen::RevocationReason> {
    use rcgen::RevocationReason as R;
    Some(match code {
        0 => R::Unspecified,
        1 => R::KeyCompromise,
        2 => R::CaCompromise,
        3 => R::AffiliationChanged,
        4 => R::Superseded,
        5 => R::CessationOfOperation,
        6 => R::CertificateHold,
        8 => R::RemoveFromCrl,
        9 => R::PrivilegeWithdrawn,
        10 => R::AaCompromise,
        _ => return None,
    })
}

/// Big-endian bytes without leading zeros (at least one byte).
fn minimal(bytes: &[u8]) -> &[u8] {
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    &bytes[first..]
}

fn offset_time(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl FederationCa {
    /// The DER of the CA's certificate.
    fn der(&self) -> Result<Vec<u8>, PkiError> {
        crate::tls::pem_certificates(self.cert_pem.as_bytes())
            .ok()
            .and_then(|mut all| (!all.is_empty()).then(|| all.remove(0)))
            .ok_or_else(|| PkiError::Invalid {
                what: "the federation CA certificate".into(),
                why: "it holds no certificate".into(),
            })
    }

    /// A partner certificate for the public key of a PEM CSR, to `profile`: only the CSR's key
    /// is used; subject, SAN URI, usages and validity come from the partner and the profile.
    pub fn issue_from_csr(
        &self,
        trust_domain: &str,
        partner: &PartnerId,
        common_name: &str,
        csr_pem: &str,
        profile: &Profile,
        validity_days: u32,
    ) -> Result<Issued, CsrError> {
        let days = if validity_days == 0 {
            profile.default_days
        } else {
            validity_days
        };
        if days > profile.max_days {
            return Err(CsrError::TooLong {
                asked: days,
                profile: profile.name.clone(),
                max: profile.max_days,
            });
        }
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CsrError::Unreadable(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "wagelink federation");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        let uri = format!("{}{}", partner_uri_prefix(trust_domain), partner);
        params.subject_alt_names = vec![SanType::URI(
            uri.try_into()
                .map_err(|e: rcgen::Error| CsrError::Signing(e.to_string()))?,
        )];
        params.key_usages = profile.key_usages.clone();
        params.extended_key_usages = profile.extended_key_usages.clone();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(i64::from(days));
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let request = rcgen::CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        };
        let cert = request
            .signed_by(&self.issuer)
            .map_err(|e| CsrError::Signing(e.to_string()))?;
        let facts = crate::identity::inspect_certificate(cert.der(), trust_domain)
            .map_err(|e| CsrError::Signing(e.to_string()))?;
        if !profile.key_algorithms.contains(&facts.key_algorithm) {
            return Err(CsrError::KeyAlgorithm {
                found: facts.key_algorithm,
                profile: profile.name.clone(),
                allowed: profile.key_algorithms.join(", "),
            });
        }
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: String::new(),
            der: cert.der().to_vec(),
        })
    }

    /// Whether this CA issued the certificate `der` (its issuer is the CA's subject).
    pub fn issued(&self, der: &[u8]) -> bool {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let Ok(own) = self.der() else { return false };
        let (Ok((_, ca)), Ok((_, cert))) = (
            X509Certificate::from_der(&own),
            X509Certificate::from_der(der),
        ) else {
            return false;
        };
        cert.issuer().as_raw() == ca.subject().as_raw()
    }

    /// A CRL listing the revoked certificates this CA issued (others are left out).
    pub fn crl(
        &self,
        revoked: &[RevokedEntry],
        number: u64,
        this_update: i64,
        next_update: i64,
    ) -> Result<SignedCrl, PkiError> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let mut revoked_certs = Vec::new();
        for r in revoked.iter().filter(|r| self.issued(&r.der)) {
            let Ok((_, cert)) = X509Certificate::from_der(&r.der) else {
                continue;
            };
            revoked_certs.push(rcgen::RevokedCertParams {
                serial_number: SerialNumber::from_slice(cert.raw_serial()),
                revocation_time: offset_time(r.revoked_at),
                reason_code: r.code.and_then(crl_reason),
                invalidity_date: None,
            });
        }
        let listed = revoked_certs.len();
        let params = rcgen::CertificateRevocationListParams {
            this_update: offset_time(this_update),
            next_update: offset_time(next_update),
            crl_number: SerialNumber::from_slice(minimal(&number.to_be_bytes())),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer)?;
        Ok(SignedCrl {
            der: crl.der().to_vec(),
            pem: crl.pem()?,
            listed,
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
        let other = FederationCa::generate("test.wagelink").unwrap();
        let err = FederationCa::load(ca.cert_pem(), other.key_pem())
            .err()
            .unwrap();
        assert!(err.to_string().contains("not the key of"), "{err}");
    }
}
