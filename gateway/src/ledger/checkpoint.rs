//! Checkpoints in the C2SP `tlog-checkpoint` format, as C2SP `signed-note`s signed with the
//! gateway's Ed25519 log key:
//!
//! ```text
//! <origin>\n<tree size>\n<base64 root hash>\n\n— <key name> <base64(key hash ‖ signature)>\n
//! ```
//!
//! The key hash is the first 4 bytes of `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`; the
//! signature is Ed25519 over the note's text up to and including the body's last newline. A
//! verifier key is written `<name>+<hex key hash>+<base64(0x01 ‖ public key)>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{self as ring_sig, Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::merkle::Hash;

const ALG_ED25519: u8 = 0x01;
const SIGNATURE_PREFIX: &str = "\u{2014} ";

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NoteError {
    #[error("the checkpoint note is malformed: {0}")]
    Malformed(String),
    #[error("the verifier key is malformed: {0}")]
    BadVerifierKey(String),
    #[error("no signature by {0} on the checkpoint")]
    NotSigned(String),
    #[error("the signature by {0} on the checkpoint does not verify")]
    BadSignature(String),
    #[error("the log key is not a usable Ed25519 PKCS#8 key: {0}")]
    BadKey(String),
}

/// The statement a checkpoint makes: the log `origin` had `size` entries with root `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note body that is signed.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a note body (extension lines after the root are allowed and ignored).
    pub fn parse_body(body: &str) -> Result<Self, NoteError> {
        let bad = |why: &str| NoteError::Malformed(why.to_owned());
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("no origin line"))?;
        let size = lines
            .next()
            .and_then(|s| (!(s.starts_with('+') || s.len() > 1 && s.starts_with('0'))).then_some(s))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| bad("the second line is not a decimal tree size"))?;
        let root = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| Hash::try_from(r).ok())
            .ok_or_else(|| bad("the third line is not a base64 SHA-256 root hash"))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

fn key_hash(name: &str, public: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A public key that verifies notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    pub name: String,
    hash: [u8; 4],
    public: Vec<u8>,
}

impl Verifier {
    /// Parses `<name>+<hex key hash>+<base64(0x01 ‖ key)>`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = |why: &str| NoteError::BadVerifierKey(why.to_owned());
        // Names cannot contain '+'; the base64 key may.
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <name>+<key hash>+<key>"));
        };
        let key = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
        if key.len() != 33 || key[0] != ALG_ED25519 {
            return Err(bad(
                "only Ed25519 keys (algorithm byte 0x01, 32 bytes) are used",
            ));
        }
        let hash: [u8; 4] = hex::decode(hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| bad("the key hash is not 8 hex digits"))?;
        if key_hash(name, &key[1..]) != hash {
            return Err(bad("the key hash does not match the name and key"));
        }
        Ok(Self {
            name: name.to_owned(),
            hash,
            public: key[1..].to_vec(),
        })
    }

    /// The text form of this key.
    pub fn to_text(&self) -> String {
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(&self.public);
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.hash),
            B64.encode(key)
        )
    }

    /// Verifies a signed note and returns its body; at least this key's signature must be on it.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note.find("\n\n").ok_or_else(|| {
            NoteError::Malformed("no blank line between body and signatures".into())
        })?;
        let (body, signatures) = (&note[..split + 1], &note[split + 2..]);
        if !note.ends_with('\n') {
            return Err(NoteError::Malformed(
                "the note does not end with a newline".into(),
            ));
        }
        let mut found = false;
        for line in signatures.lines() {
            let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(|| {
                NoteError::Malformed(format!(
                    "signature line {line:?} does not start with an em dash"
                ))
            })?;
            let (name, sig) = rest.split_once(' ').ok_or_else(|| {
                NoteError::Malformed(format!("signature line {line:?} has no signature"))
            })?;
            let sig = B64
                .decode(sig)
                .map_err(|_| NoteError::Malformed(format!("signature of {name} is not base64")))?;
            if name != self.name || sig.len() < 4 || sig[..4] != self.hash {
                continue;
            }
            found = true;
            ring_sig::UnparsedPublicKey::new(&ring_sig::ED25519, &self.public)
                .verify(body.as_bytes(), &sig[4..])
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
        }
        if found {
            Ok(body)
        } else {
            Err(NoteError::NotSigned(self.name.clone()))
        }
    }
}

/// The log's signing key.
pub struct LogKey {
    name: String,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogKey({})", self.verifier().to_text())
    }
}

impl LogKey {
    /// A log key named `name` (the log's origin) from a PKCS#8 Ed25519 key.
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<Self, NoteError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| NoteError::BadKey(e.to_string()))?;
        Ok(Self {
            name: name.to_owned(),
            pair,
        })
    }

    /// A fresh key (PKCS#8 DER), for `wagelink dev` and tests.
    pub fn generate_pkcs8() -> Vec<u8> {
        Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map(|doc| doc.as_ref().to_vec())
            .unwrap_or_default()
    }

    pub fn verifier(&self) -> Verifier {
        let public = self.pair.public_key().as_ref().to_vec();
        Verifier {
            name: self.name.clone(),
            hash: key_hash(&self.name, &public),
            public,
        }
    }

    /// Signs a checkpoint: the full signed note.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        let mut sig = key_hash(&self.name, self.pair.public_key().as_ref()).to_vec();
        sig.extend_from_slice(self.pair.sign(body.as_bytes()).as_ref());
        format!(
            "{body}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            B64.encode(sig)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the documentation of Go's golang.org/x/mod/sumdb/note package.
    #[test]
    fn the_go_note_example_verifies() {
        let verifier =
            Verifier::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
                .unwrap();
        let note = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n\
                    \n\
                    \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let body = verifier.open(note).unwrap();
        assert!(body.starts_with("If you think"));
        let tampered = note.replace("answer", "Answer");
        assert_eq!(
            verifier.open(&tampered),
            Err(NoteError::BadSignature("PeterNeumann".into()))
        );
    }

    #[test]
    fn our_checkpoints_round_trip_and_other_keys_are_refused() {
        let key = LogKey::from_pkcs8("wagelink.dev/log", &LogKey::generate_pkcs8()).unwrap();
        let checkpoint = Checkpoint {
            origin: "wagelink.dev/log".into(),
            size: 42,
            root: [7; 32],
        };
        let note = key.sign(&checkpoint);
        assert!(note.starts_with("wagelink.dev/log\n42\nBwcH"));
        let verifier = Verifier::parse(&key.verifier().to_text()).unwrap();
        assert_eq!(
            Checkpoint::parse_body(verifier.open(&note).unwrap()).unwrap(),
            checkpoint
        );

        let other = LogKey::from_pkcs8("wagelink.dev/log", &LogKey::generate_pkcs8()).unwrap();
        let forged = other.sign(&checkpoint);
        assert_eq!(
            verifier.open(&forged),
            Err(NoteError::NotSigned("wagelink.dev/log".into()))
        );
        let changed = note.replacen("\n42\n", "\n43\n", 1);
        assert!(matches!(
            verifier.open(&changed),
            Err(NoteError::BadSignature(_))
        ));
    }

    #[test]
    fn malformed_bodies_are_named() {
        for (body, why) in [
            ("", "origin"),
            ("o\n-1\nAAAA\n", "size"),
            ("o\n01\nAAAA\n", "size"),
            ("o\n1\nnot-base64\n", "root"),
        ] {
            let err = Checkpoint::parse_body(body).unwrap_err().to_string();
            assert!(err.contains(why), "{body:?}: {err}");
        }
    }
}
