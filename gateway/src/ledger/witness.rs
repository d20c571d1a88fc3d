//! Witnessing another party's evidence log (DESIGN §6): fetch its checkpoints, check each is
//! signed by the log's key and consistent with the last one seen, and countersign it in the C2SP
//! `tlog-cosignature` format (cosignature/v1, Ed25519). A split view — two checkpoints of one
//! size with different roots, or a checkpoint not consistent with an earlier one — is an alarm,
//! and the witness never cosigns past it.
//!
//! A cosignature line is `— <name> base64(key id ‖ u64 timestamp ‖ Ed25519 signature)`; the key
//! id is `SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)[:4]`; the signed message is
//! `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint's note body.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{self as ring_sig, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::checkpoint::{Checkpoint, NoteError, Verifier};
use super::merkle::{Hash, verify_consistency};

const ALG_COSIGNATURE_V1: u8 = 0x04;
const SIGNATURE_PREFIX: &str = "\u{2014} ";

fn key_id(name: &str, public: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_COSIGNATURE_V1]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn signed_message(body: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{body}")
}

/// Why a cosignature or a cosigner key was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CosignatureError {
    #[error("the cosigner key is malformed: {0}")]
    BadKey(String),
    #[error(
        "the cosignature line is malformed: {0} (expected `— <name> base64(key id ‖ timestamp ‖ signature)`)"
    )]
    Malformed(String),
    #[error("the cosignature line is by {found:?} with another key, not by cosigner {expected:?}")]
    NotOurs { found: String, expected: String },
    #[error("the cosignature does not verify over this checkpoint")]
    BadSignature,
}

/// A witness's signing key.
pub struct Cosigner {
    name: String,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cosigner({})", self.verifier().to_text())
    }
}

impl Cosigner {
    /// A cosigner named `name` (a schema-less URL naming the witness) from a PKCS#8 Ed25519 key.
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<Self, CosignatureError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| CosignatureError::BadKey(e.to_string()))?;
        Ok(Self {
            name: name.to_owned(),
            pair,
        })
    }

    pub fn verifier(&self) -> CosignerVerifier {
        let mut public = [0u8; 32];
        public.copy_from_slice(self.pair.public_key().as_ref());
        CosignerVerifier {
            name: self.name.clone(),
            public,
        }
    }

    /// The cosignature line for a checkpoint body, made at `timestamp` (Unix seconds).
    pub fn cosign(&self, body: &str, timestamp: u64) -> String {
        let mut sig = key_id(&self.name, self.pair.public_key().as_ref()).to_vec();
        sig.extend_from_slice(&timestamp.to_be_bytes());
        sig.extend_from_slice(
            self.pair
                .sign(signed_message(body, timestamp).as_bytes())
                .as_ref(),
        );
        format!("{SIGNATURE_PREFIX}{} {}", self.name, B64.encode(sig))
    }
}

/// A witness's public key: verifies its cosignature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerVerifier {
    pub name: String,
    public: [u8; 32],
}

impl CosignerVerifier {
    /// The vkey text: `<name>+<hex key id>+<base64(0x04 ‖ public key)>`.
    pub fn to_text(&self) -> String {
        let mut key = vec![ALG_COSIGNATURE_V1];
        key.extend_from_slice(&self.public);
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(key_id(&self.name, &self.public)),
            B64.encode(key)
        )
    }

    /// Parses a vkey written by [`CosignerVerifier::to_text`].
    pub fn parse(text: &str) -> Result<Self, CosignatureError> {
        let bad = |why: &str| CosignatureError::BadKey(why.to_owned());
        // A key name holds no '+'; the base64 key may.
        let mut parts = text.trim().splitn(3, '+');
        let name = parts.next().ok_or_else(|| bad("no name"))?;
        let id = parts.next().ok_or_else(|| bad("no key id"))?;
        let key = parts.next().ok_or_else(|| bad("no key"))?;
        let key = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
        if key.len() != 33 || key[0] != ALG_COSIGNATURE_V1 {
            return Err(bad("not a cosignature/v1 Ed25519 key (0x04 and 32 bytes)"));
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&key[1..]);
        if hex::encode(key_id(name, &public)) != id {
            return Err(bad("the key id does not match the name and key"));
        }
        Ok(Self {
            name: name.to_owned(),
            public,
        })
    }

    /// Checks a cosignature line over a checkpoint body; returns its timestamp.
    pub fn verify(&self, body: &str, line: &str) -> Result<u64, CosignatureError> {
        let bad = |why: &str| CosignatureError::Malformed(why.to_owned());
        let rest = line
            .trim_end_matches('\n')
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or_else(|| bad("it does not start with an em dash and a space"))?;
        let (name, sig) = rest.rsplit_once(' ').ok_or_else(|| bad("no signature"))?;
        let sig = B64
            .decode(sig)
            .map_err(|_| bad("the signature is not base64"))?;
        if sig.len() != 4 + 8 + 64 {
            return Err(bad("the signature is not 76 bytes"));
        }
        if name != self.name || sig[..4] != key_id(&self.name, &self.public) {
            return Err(CosignatureError::NotOurs {
                found: name.to_owned(),
                expected: self.name.clone(),
            });
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&sig[4..12]);
        let timestamp = u64::from_be_bytes(ts);
        ring_sig::UnparsedPublicKey::new(&ring_sig::ED25519, &self.public)
            .verify(signed_message(body, timestamp).as_bytes(), &sig[12..])
            .map_err(|_| CosignatureError::BadSignature)?;
        Ok(timestamp)
    }
}

/// The last checkpoint a witness accepted from a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub origin: String,
    pub size: u64,
    /// Base64 root hash.
    pub root: String,
}

/// What a witness concluded about a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Consistent and newer (or the first seen): cosign it and remember it.
    Cosign(Checkpoint),
    /// The very checkpoint seen last, or an older one: nothing new to say.
    Unchanged,
}

/// A reason to raise the alarm: the log showed the witness two histories, or a checkpoint its
/// own key did not sign.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Alarm {
    #[error("the checkpoint is not signed by the log's key: {0}")]
    Unsigned(NoteError),
    #[error("the checkpoint is for log {found:?}, not {expected:?}")]
    WrongLog { found: String, expected: String },
    #[error(
        "SPLIT VIEW: two checkpoints of size {size} with different roots ({seen} seen before, {now} now)"
    )]
    SplitView {
        size: u64,
        seen: String,
        now: String,
    },
    #[error(
        "SPLIT VIEW: the checkpoint of size {size} is not consistent with the one of size {seen_size} seen before: {why}"
    )]
    Inconsistent {
        seen_size: u64,
        size: u64,
        why: String,
    },
}

/// Checks a checkpoint `note` of the log `verifier` names against the last one seen, with the
/// consistency proof from that size to the new one.
pub fn check(
    verifier: &Verifier,
    seen: Option<&Seen>,
    note: &str,
    proof: &[Hash],
) -> Result<Verdict, Alarm> {
    let body = verifier.open(note).map_err(Alarm::Unsigned)?;
    let checkpoint = Checkpoint::parse_body(body).map_err(Alarm::Unsigned)?;
    if checkpoint.origin != verifier.name {
        return Err(Alarm::WrongLog {
            found: checkpoint.origin,
            expected: verifier.name.clone(),
        });
    }
    let Some(seen) = seen else {
        return Ok(Verdict::Cosign(checkpoint));
    };
    let now_root = B64.encode(checkpoint.root);
    if checkpoint.size == seen.size {
        return if now_root == seen.root {
            Ok(Verdict::Unchanged)
        } else {
            Err(Alarm::SplitView {
                size: seen.size,
                seen: seen.root.clone(),
                now: now_root,
            })
        };
    }
    if checkpoint.size < seen.size {
        // An older view: a cache or a lagging replica. Only a root that contradicts a larger
        // view is evidence, and that needs a proof the log would have to give; nothing to sign.
        return Ok(Verdict::Unchanged);
    }
    let seen_root: Hash = B64
        .decode(&seen.root)
        .ok()
        .and_then(|r| Hash::try_from(r).ok())
        .ok_or_else(|| Alarm::Inconsistent {
            seen_size: seen.size,
            size: checkpoint.size,
            why: "the stored root is unreadable".into(),
        })?;
    if seen.size > 0 {
        verify_consistency(
            seen.size,
            checkpoint.size,
            &seen_root,
            &checkpoint.root,
            proof,
        )
        .map_err(|e| Alarm::Inconsistent {
            seen_size: seen.size,
            size: checkpoint.size,
            why: e.to_string(),
        })?;
    }
    Ok(Verdict::Cosign(checkpoint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::checkpoint::LogKey;
    use crate::ledger::merkle::{Tree, leaf_hash};

    fn cosigner(name: &str) -> Cosigner {
        Cosigner::from_pkcs8(name, &LogKey::generate_pkcs8()).unwrap()
    }

    #[test]
    fn cosignatures_verify_and_name_their_key() {
        let witness = cosigner("witness.example/w1");
        let body = "example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let line = witness.cosign(body, 1_679_315_147);
        let v = CosignerVerifier::parse(&witness.verifier().to_text()).unwrap();
        assert_eq!(v.verify(body, &line), Ok(1_679_315_147));
        assert_eq!(
            v.verify(
                "example.com/log\n6\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
                &line
            ),
            Err(CosignatureError::BadSignature)
        );
        let other = cosigner("witness.example/w1").verifier();
        assert!(matches!(
            other.verify(body, &line),
            Err(CosignatureError::NotOurs { .. })
        ));
        // The timestamp is part of what is signed.
        let sig = B64.decode(line.rsplit_once(' ').unwrap().1).unwrap();
        let mut changed = sig.clone();
        changed[11] ^= 1;
        let forged = format!("\u{2014} witness.example/w1 {}", B64.encode(changed));
        assert_eq!(v.verify(body, &forged), Err(CosignatureError::BadSignature));
    }

    #[test]
    fn a_fork_is_an_alarm_and_growth_is_cosigned() {
        let key = LogKey::from_pkcs8("test/log", &LogKey::generate_pkcs8()).unwrap();
        let verifier = key.verifier();
        let mut tree = Tree::new();
        for i in 0..5u8 {
            tree.push(leaf_hash(&[i]));
        }
        let note = |tree: &Tree| {
            key.sign(&Checkpoint {
                origin: "test/log".into(),
                size: tree.size(),
                root: tree.root(),
            })
        };
        let first = note(&tree);
        let Verdict::Cosign(c) = check(&verifier, None, &first, &[]).unwrap() else {
            panic!()
        };
        let seen = Seen {
            origin: c.origin.clone(),
            size: c.size,
            root: B64.encode(c.root),
        };
        let mut honest = tree.clone();
        honest.push(leaf_hash(b"honest"));
        let proof = honest.consistency_proof(5, 6).unwrap();
        assert!(matches!(
            check(&verifier, Some(&seen), &note(&honest), &proof),
            Ok(Verdict::Cosign(_))
        ));
        // The same size, another root: split view.
        let mut fork = tree.clone();
        fork.push(leaf_hash(b"fork"));
        let seen6 = Seen {
            origin: "test/log".into(),
            size: 6,
            root: B64.encode(honest.root()),
        };
        assert!(matches!(
            check(&verifier, Some(&seen6), &note(&fork), &[]),
            Err(Alarm::SplitView { size: 6, .. })
        ));
        // A larger tree that does not extend what was seen: no proof can show consistency.
        let mut fork7 = fork.clone();
        fork7.push(leaf_hash(b"more"));
        let proof = fork7.consistency_proof(6, 7).unwrap();
        assert!(matches!(
            check(&verifier, Some(&seen6), &note(&fork7), &proof),
            Err(Alarm::Inconsistent { .. })
        ));
        // Another key's checkpoint is not the log's.
        let other = LogKey::from_pkcs8("test/log", &LogKey::generate_pkcs8()).unwrap();
        let forged = other.sign(&Checkpoint {
            origin: "test/log".into(),
            size: 7,
            root: fork7.root(),
        });
        assert!(matches!(
            check(&verifier, Some(&seen6), &forged, &[]),
            Err(Alarm::Unsigned(_))
        ));
    }
}
