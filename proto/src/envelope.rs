//! Signed envelopes (DESIGN §5), the one wire format every exchange uses.
//!
//! The sender serialises a [`Header`](crate::v1::Header) that commits to the payload by its
//! SHA-256, and signs the *exact header bytes* with DSSE: the signature covers
//! `PAE("application/vnd.wagelink.header.v1+protobuf", header)` where
//! `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`. Nothing is
//! canonicalised: the bytes that were signed are the bytes that are stored and verified.
//!
//! A signature's `keyid` is the lowercase hex SHA-256 of the signer's certificate (DER); the
//! algorithm follows from that certificate's key: ECDSA P-256 with SHA-256 (ASN.1 DER
//! signature), Ed25519, or SM2 with SM3 (GB/T 32918, distinguishing ID `1234567812345678`, DER
//! signature). This module is shared by the gateway and every partner-side program.

use prost::Message;
use ring::rand::SystemRandom;
use ring::signature::{self as ring_sig, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use sm2::dsa::signature::{Signer as _, Verifier as _};
use sm2::pkcs8::DecodePrivateKey;
use thiserror::Error;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::v1::{Header, Signature, SignedEnvelope};

/// The DSSE payload type of every wagelink header.
pub const HEADER_PAYLOAD_TYPE: &str = "application/vnd.wagelink.header.v1+protobuf";

/// The SM2 distinguishing identifier (GB/T 32918 default), used for every SM2 signature.
pub const SM2_DISTID: &str = "1234567812345678";

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_SM2: &str = "1.2.156.10197.1.301";
const OID_ED25519: &str = "1.3.101.112";

/// What is wrong with a key, a certificate or a signature.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the certificate is not valid DER X.509: {0}")]
    BadCertificate(String),
    #[error("the certificate's key ({0}) cannot sign envelopes: use ECDSA P-256, Ed25519 or SM2")]
    UnsupportedKey(String),
    #[error("the private key is not usable: {0}")]
    BadPrivateKey(String),
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("the signature does not verify against the header bytes with key {keyid}")]
    BadSignature { keyid: String },
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// A signature algorithm an envelope may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA over P-256 with SHA-256, ASN.1 DER signature.
    EcdsaP256Sha256,
    /// Ed25519 (RFC 8032), 64-byte signature.
    Ed25519,
    /// SM2 with SM3 (GB/T 32918), distinguishing ID `1234567812345678`, DER signature.
    Sm2Sm3,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Sm2Sm3 => "sm2-sm3",
        }
    }
}

/// DSSE pre-authentication encoding of `body` under `payload_type`.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + body.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

/// What a wagelink header signature covers.
pub fn header_pae(header: &[u8]) -> Vec<u8> {
    pae(HEADER_PAYLOAD_TYPE, header)
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The payload type whose digest is a Merkle tree hash over its events, not SHA-256(payload).
pub const EVENT_BATCH_TYPE: &str = "wagelink.v1.AccountEventBatch";

/// RFC 9162 §2.1.1 Merkle tree hash over a list of byte strings: the digest a batch of account
/// events commits to (each event then provable alone with its audit path).
pub fn merkle_tree_hash(items: &[Vec<u8>]) -> [u8; 32] {
    match items.len() {
        0 => sha256(b""),
        1 => {
            let mut h = Sha256::new();
            h.update([0u8]);
            h.update(&items[0]);
            h.finalize().into()
        }
        n => {
            let k = if n.is_power_of_two() {
                n / 2
            } else {
                1 << (usize::BITS - 1 - n.leading_zeros())
            };
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(merkle_tree_hash(&items[..k]));
            h.update(merkle_tree_hash(&items[k..]));
            h.finalize().into()
        }
    }
}

/// The digest a header's `payload_sha256` must hold for a payload of `payload_type`:
/// SHA-256 of the bytes, except for `wagelink.v1.AccountEventBatch` (the Merkle tree hash of its
/// events). `None` when a batch does not decode or is empty.
pub fn payload_digest(payload_type: &str, payload: &[u8]) -> Option<[u8; 32]> {
    if payload_type != EVENT_BATCH_TYPE {
        return Some(sha256(payload));
    }
    let batch = crate::v1::AccountEventBatch::decode(payload).ok()?;
    if batch.events.is_empty() {
        return None;
    }
    Some(merkle_tree_hash(&batch.events))
}

/// The keyid of a certificate: lowercase hex SHA-256 of its DER.
pub fn keyid(certificate_der: &[u8]) -> String {
    hex::encode(sha256(certificate_der))
}

/// A public key taken from a certificate, able to verify envelope signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    algorithm: Algorithm,
    /// SEC1 uncompressed point (P-256, SM2) or the raw 32 bytes (Ed25519).
    bytes: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PublicKey({}, {})",
            self.algorithm.as_str(),
            hex::encode(&self.bytes)
        )
    }
}

impl PublicKey {
    /// The signing key of a certificate, if it is one of the envelope algorithms.
    pub fn from_certificate(der: &[u8]) -> Result<Self, EnvelopeError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| EnvelopeError::BadCertificate(e.to_string()))?;
        let spki = cert.public_key();
        let alg = spki.algorithm.algorithm.to_id_string();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|oid| oid.to_id_string());
        let algorithm = match (alg.as_str(), curve.as_deref()) {
            (OID_ED25519, _) => Algorithm::Ed25519,
            (OID_EC_PUBLIC_KEY, Some(OID_P256)) => Algorithm::EcdsaP256Sha256,
            (OID_EC_PUBLIC_KEY, Some(OID_SM2)) | (OID_SM2, _) => Algorithm::Sm2Sm3,
            _ => {
                return Err(EnvelopeError::UnsupportedKey(match curve {
                    Some(c) => format!("{alg} on {c}"),
                    None => alg,
                }));
            }
        };
        Ok(Self {
            algorithm,
            bytes: spki.subject_public_key.data.to_vec(),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Checks `signature` over `message`; `keyid` only names the key in the error.
    pub fn verify(
        &self,
        message: &[u8],
        signature: &[u8],
        keyid: &str,
    ) -> Result<(), EnvelopeError> {
        let bad = || EnvelopeError::BadSignature {
            keyid: keyid.to_owned(),
        };
        match self.algorithm {
            Algorithm::EcdsaP256Sha256 => {
                ring_sig::UnparsedPublicKey::new(&ring_sig::ECDSA_P256_SHA256_ASN1, &self.bytes)
                    .verify(message, signature)
                    .map_err(|_| bad())
            }
            Algorithm::Ed25519 => ring_sig::UnparsedPublicKey::new(&ring_sig::ED25519, &self.bytes)
                .verify(message, signature)
                .map_err(|_| bad()),
            Algorithm::Sm2Sm3 => {
                let key = sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_DISTID, &self.bytes)
                    .map_err(|_| bad())?;
                let sig = sm2::dsa::Signature::from_der(signature).map_err(|_| bad())?;
                key.verify(message, &sig).map_err(|_| bad())
            }
        }
    }
}

enum SigningKey {
    P256(ring_sig::EcdsaKeyPair),
    Ed25519(ring_sig::Ed25519KeyPair),
    Sm2(Box<sm2::dsa::SigningKey>),
}

/// A partner's (or the gateway's) signing identity: a certificate and its private key.
pub struct Signer {
    keyid: String,
    public: PublicKey,
    key: SigningKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("keyid", &self.keyid)
            .field("public", &self.public)
            .finish()
    }
}

impl Signer {
    /// A signer from a certificate and its PKCS#8 private key, both PEM.
    pub fn from_pem(certificate_pem: &[u8], key_pem: &[u8]) -> Result<Self, EnvelopeError> {
        let cert = CertificateDer::from_pem_slice(certificate_pem)
            .map_err(|e| EnvelopeError::BadCertificate(e.to_string()))?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem).map_err(|e| {
            EnvelopeError::BadPrivateKey(format!("{e} (a PKCS#8 \"PRIVATE KEY\" PEM is needed)"))
        })?;
        Self::from_der(cert.as_ref(), key.secret_pkcs8_der())
    }

    /// A signer from a certificate (DER) and its PKCS#8 private key (DER).
    pub fn from_der(certificate_der: &[u8], pkcs8: &[u8]) -> Result<Self, EnvelopeError> {
        let public = PublicKey::from_certificate(certificate_der)?;
        let rng = SystemRandom::new();
        let bad = |e: &dyn std::fmt::Display| EnvelopeError::BadPrivateKey(e.to_string());
        let key = match public.algorithm {
            Algorithm::EcdsaP256Sha256 => {
                let pair = ring_sig::EcdsaKeyPair::from_pkcs8(
                    &ring_sig::ECDSA_P256_SHA256_ASN1_SIGNING,
                    pkcs8,
                    &rng,
                )
                .map_err(|e| bad(&e))?;
                if pair.public_key().as_ref() != public.bytes.as_slice() {
                    return Err(EnvelopeError::KeyMismatch);
                }
                SigningKey::P256(pair)
            }
            Algorithm::Ed25519 => {
                let pair = ring_sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                    .map_err(|e| bad(&e))?;
                if pair.public_key().as_ref() != public.bytes.as_slice() {
                    return Err(EnvelopeError::KeyMismatch);
                }
                SigningKey::Ed25519(pair)
            }
            Algorithm::Sm2Sm3 => {
                let secret = sm2::SecretKey::from_pkcs8_der(pkcs8).map_err(|e| bad(&e))?;
                let key = sm2::dsa::SigningKey::new(SM2_DISTID, &secret).map_err(|e| bad(&e))?;
                if key.verifying_key().to_sec1_bytes().as_ref() != public.bytes.as_slice() {
                    return Err(EnvelopeError::KeyMismatch);
                }
                SigningKey::Sm2(Box::new(key))
            }
        };
        Ok(Self {
            keyid: keyid(certificate_der),
            public,
            key,
            rng,
        })
    }

    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message` (for envelopes: the header's PAE).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        match &self.key {
            SigningKey::P256(pair) => pair
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| EnvelopeError::Encode("ECDSA signing failed".into())),
            SigningKey::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            SigningKey::Sm2(key) => {
                let sig: sm2::dsa::Signature = key
                    .try_sign(message)
                    .map_err(|e| EnvelopeError::Encode(e.to_string()))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
        }
    }

    /// Signs a header's exact bytes; the signature to put beside them in an envelope.
    pub fn sign_header(&self, header: &[u8]) -> Result<Signature, EnvelopeError> {
        Ok(Signature {
            keyid: self.keyid.clone(),
            sig: self.sign(&header_pae(header))?,
        })
    }

    /// Builds and signs an envelope: fills `header.payload_sha256` and `payload_type` from
    /// `payload`, serialises the header once, and signs those bytes.
    pub fn seal<M: prost::Name>(
        &self,
        mut header: Header,
        payload: &M,
    ) -> Result<SignedEnvelope, EnvelopeError> {
        let payload = payload.encode_to_vec();
        header.payload_type = M::full_name();
        header.payload_sha256 = payload_digest(&header.payload_type, &payload)
            .ok_or_else(|| {
                EnvelopeError::Encode("an event batch must hold at least one event".into())
            })?
            .to_vec();
        let header = header.encode_to_vec();
        let signature = self.sign_header(&header)?;
        Ok(SignedEnvelope {
            header,
            payload,
            signatures: vec![signature],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_digests_are_rfc9162_tree_hashes() {
        let d: Vec<Vec<u8>> = (0u8..5).map(|i| vec![i; 3]).collect();
        let leaf = |b: &[u8]| {
            let mut x = vec![0u8];
            x.extend_from_slice(b);
            sha256(&x)
        };
        let node = |l: [u8; 32], r: [u8; 32]| {
            let mut x = vec![1u8];
            x.extend_from_slice(&l);
            x.extend_from_slice(&r);
            sha256(&x)
        };
        assert_eq!(merkle_tree_hash(&d[..1]), leaf(&d[0]));
        assert_eq!(merkle_tree_hash(&d[..2]), node(leaf(&d[0]), leaf(&d[1])));
        // Five items split 4 + 1; three split 2 + 1.
        let four = node(
            node(leaf(&d[0]), leaf(&d[1])),
            node(leaf(&d[2]), leaf(&d[3])),
        );
        assert_eq!(merkle_tree_hash(&d), node(four, leaf(&d[4])));
        assert_eq!(
            merkle_tree_hash(&d[..3]),
            node(node(leaf(&d[0]), leaf(&d[1])), leaf(&d[2]))
        );
        assert_eq!(merkle_tree_hash(&[]), sha256(b""));
        assert_eq!(
            payload_digest("wagelink.v1.Lead", b"abc"),
            Some(sha256(b"abc"))
        );
        let batch = crate::v1::AccountEventBatch { events: d.clone() }.encode_to_vec();
        assert_eq!(
            payload_digest(EVENT_BATCH_TYPE, &batch),
            Some(merkle_tree_hash(&d))
        );
        let empty = crate::v1::AccountEventBatch { events: vec![] }.encode_to_vec();
        assert_eq!(payload_digest(EVENT_BATCH_TYPE, &empty), None);
    }

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol description: PAE("http://example.com/HelloWorld", "hello world").
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }
}
