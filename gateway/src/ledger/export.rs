//! Exports of the evidence log, and their offline verification.
//!
//! An export is JSON Lines, one record per line, in this order:
//! 1. `{"type":"meta", "version":1, "origin", "log_verifier_key", "trust_domain", "with_payloads", "tree_size"}`
//! 2. `{"type":"certificate", "sha256", "partner_id", "der"}` for the gateway's own certificate
//!    (partner_id `gateway`: it signs escalations), every registered certificate (revoked
//!    ones too: signatures made before a revocation stay valid history), and the certificates
//!    of other federations' partners whose envelopes a peer gateway relayed (partner_id
//!    `<id>@<trust domain>`: a relayed entry, whose `submitted_by` is the peer, is signed by
//!    its sender with one of those and by the peer);
//! 3. `{"type":"entry", "index", "entry", "payload"?, "payload_erased"}` for entries
//!    `0..tree_size`, bytes in base64;
//! 4. `{"type":"checkpoint", "note"}` for every checkpoint up to `tree_size`.
//!
//! [`verify`] rebuilds the tree, checks every header signature against the exported
//! certificates, every payload the export carries against its digest, and every checkpoint's
//! signature and root, and reports the first fault precisely.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use prost::Message;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use wagelink_proto::envelope::{PublicKey, header_pae, keyid, payload_digest};
use wagelink_proto::v1 as pb;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::checkpoint::{Checkpoint, Verifier};
use super::log::LogKeys;
use super::merkle::{Tree, leaf_hash};
use crate::store::{Store, StoreError};

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Meta {
        version: u32,
        origin: String,
        log_verifier_key: String,
        trust_domain: String,
        with_payloads: bool,
        tree_size: u64,
    },
    Certificate {
        sha256: String,
        partner_id: String,
        der: String,
    },
    Entry {
        index: u64,
        entry: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<String>,
        #[serde(default)]
        payload_erased: bool,
    },
    Checkpoint {
        note: String,
    },
}

/// The first fault an export has.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Fault {
    #[error("line {line}: not a record of an export: {why}")]
    Malformed { line: usize, why: String },
    #[error("the export does not start with its meta record")]
    NoMeta,
    #[error("the log verifier key in the meta record is unusable: {0}")]
    BadLogKey(String),
    #[error(
        "the export's log key {found} is not the expected key {expected}: it was not signed by the log you trust"
    )]
    WrongLogKey { expected: String, found: String },
    #[error(
        "no signed checkpoint covers the export's {0} entries: the end of the export is not vouched for"
    )]
    NoFinalCheckpoint(u64),
    #[error("certificate {sha256}: its DER hashes to {actual}, not to its name")]
    CertificateDigest { sha256: String, actual: String },
    #[error("entry {expected} is missing: the next entry in the export is {found}")]
    EntryMissing { expected: u64, found: u64 },
    #[error("entry {index}: {why}")]
    Entry { index: u64, why: String },
    #[error("the export ends after {found} entries but its meta record promises {promised}")]
    Truncated { found: u64, promised: u64 },
    #[error("checkpoint at tree size {size}: {why}")]
    Checkpoint { size: u64, why: String },
    #[error("cannot read the export: {0}")]
    Io(String),
}

/// What a verification found when nothing was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    pub signatures: u64,
    pub payloads: u64,
    pub checkpoints: u64,
    pub root: [u8; 32],
}

/// Writes an export of everything up to the latest checkpoint.
pub async fn export(
    store: &Store,
    keys: &LogKeys,
    trust_domain: &str,
    with_payloads: bool,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let origin = keys.origin.as_str();
    let log_verifier_key = keys.log_key.verifier().to_text();
    let tree_size = store.latest_checkpoint().await?.map_or(0, |c| c.tree_size);
    let mut line = |record: &Record| -> Result<(), ExportError> {
        serde_json::to_writer(&mut *out, record).map_err(|e| ExportError::Write(e.to_string()))?;
        out.write_all(b"\n")
            .map_err(|e| ExportError::Write(e.to_string()))
    };
    line(&Record::Meta {
        version: 1,
        origin: origin.to_owned(),
        log_verifier_key,
        trust_domain: trust_domain.to_owned(),
        with_payloads,
        tree_size,
    })?;
    // The gateway's own certificate: it signs the steps it takes itself (escalations).
    for der in CertificateDer::pem_slice_iter(keys.gateway_certificate_pem.as_bytes())
        .filter_map(Result::ok)
        .take(1)
    {
        line(&Record::Certificate {
            sha256: keyid(&der),
            partner_id: keys.gateway_id.clone(),
            der: B64.encode(&der),
        })?;
    }
    for c in store.certificates().await? {
        line(&Record::Certificate {
            sha256: c.facts.sha256,
            partner_id: c.facts.partner_id.to_string(),
            der: B64.encode(&c.der),
        })?;
    }
    // Other federations' partners whose envelopes a peer gateway relayed here, named
    // `<id>@<trust domain>` so they are never taken for a partner of this federation.
    for c in store.foreign_certificates().await? {
        line(&Record::Certificate {
            sha256: c.sha256,
            partner_id: format!("{}@{}", c.partner_id, c.trust_domain),
            der: B64.encode(&c.der),
        })?;
    }
    let mut next = 0;
    while next < tree_size {
        let to = (next + 1000).min(tree_size);
        for e in store.entries(next, to, with_payloads).await? {
            line(&Record::Entry {
                index: e.index,
                entry: B64.encode(&e.entry),
                payload: e.payload.map(|p| B64.encode(p)),
                payload_erased: e.payload_erased,
            })?;
        }
        next = to;
    }
    for c in store.checkpoints().await? {
        if c.tree_size <= tree_size {
            line(&Record::Checkpoint { note: c.note })?;
        }
    }
    out.flush().map_err(|e| ExportError::Write(e.to_string()))?;
    Ok(tree_size)
}

#[derive(Debug, Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(String),
}

fn b64(line: usize, what: &str, text: &str) -> Result<Vec<u8>, Fault> {
    B64.decode(text).map_err(|_| Fault::Malformed {
        line,
        why: format!("{what} is not base64"),
    })
}

/// Verifies an export read from `input` against the log key the auditor trusts (`None`: the
/// key the export itself names — then only the export's self-consistency is proven);
/// `progress` is told each entry checked.
pub fn verify(
    input: impl BufRead,
    trusted_key: Option<&str>,
    mut progress: impl FnMut(u64, u64),
) -> Result<Verified, Fault> {
    let mut lines = input.lines().enumerate();
    let mut next_record = || -> Result<Option<(usize, Record)>, Fault> {
        for (i, line) in lines.by_ref() {
            let line = line.map_err(|e| Fault::Io(e.to_string()))?;
            if line.trim().is_empty() {
                continue;
            }
            let record = serde_json::from_str(&line).map_err(|e| Fault::Malformed {
                line: i + 1,
                why: e.to_string(),
            })?;
            return Ok(Some((i + 1, record)));
        }
        Ok(None)
    };
    let Some((
        _,
        Record::Meta {
            log_verifier_key,
            tree_size,
            ..
        },
    )) = next_record()?
    else {
        return Err(Fault::NoMeta);
    };
    if let Some(expected) = trusted_key
        && expected.trim() != log_verifier_key.trim()
    {
        return Err(Fault::WrongLogKey {
            expected: expected.trim().to_owned(),
            found: log_verifier_key,
        });
    }
    let verifier =
        Verifier::parse(&log_verifier_key).map_err(|e| Fault::BadLogKey(e.to_string()))?;
    // keyid → (key, partner the certificate belongs to)
    let mut keys: HashMap<String, (PublicKey, String)> = HashMap::new();
    let mut final_checkpoint = tree_size == 0;
    let mut tree = Tree::new();
    let mut done = Verified {
        entries: 0,
        signatures: 0,
        payloads: 0,
        checkpoints: 0,
        root: [0; 32],
    };
    while let Some((line, record)) = next_record()? {
        match record {
            Record::Meta { .. } => {
                return Err(Fault::Malformed {
                    line,
                    why: "a second meta record".into(),
                });
            }
            Record::Certificate {
                sha256: name,
                der,
                partner_id,
            } => {
                let der = b64(line, "der", &der)?;
                let actual = keyid(&der);
                if actual != name {
                    return Err(Fault::CertificateDigest {
                        sha256: name,
                        actual,
                    });
                }
                if let Ok(key) = PublicKey::from_certificate(&der) {
                    keys.insert(name, (key, partner_id));
                }
            }
            Record::Entry {
                index,
                entry,
                payload,
                ..
            } => {
                let expected = tree.size();
                if index != expected {
                    return Err(Fault::EntryMissing {
                        expected,
                        found: index,
                    });
                }
                let entry = b64(line, "entry", &entry)?;
                let payload = payload.map(|p| b64(line, "payload", &p)).transpose()?;
                let (signatures, payloads) = check_entry(index, &entry, payload.as_deref(), &keys)?;
                done.signatures += signatures;
                done.payloads += payloads;
                tree.push(leaf_hash(&entry));
                done.entries += 1;
                progress(done.entries, tree_size);
            }
            Record::Checkpoint { note } => {
                let size_hint = note
                    .lines()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let bad = |why: String| Fault::Checkpoint {
                    size: size_hint,
                    why,
                };
                let body = verifier
                    .open(&note)
                    .map_err(|e| bad(format!("{e} — it was not signed by this log's key")))?;
                let checkpoint = Checkpoint::parse_body(body).map_err(|e| bad(e.to_string()))?;
                let root = tree.root_at(checkpoint.size).map_err(|_| {
                    bad(format!(
                        "it covers {} entries but the export has only {} before it",
                        checkpoint.size,
                        tree.size()
                    ))
                })?;
                if root != checkpoint.root {
                    let previous = done.checkpoints;
                    return Err(bad(format!(
                        "the entries do not hash to its signed root: an entry below index {} was altered, dropped, inserted or moved (after {previous} good checkpoints)",
                        checkpoint.size
                    )));
                }
                done.checkpoints += 1;
                final_checkpoint |= checkpoint.size == tree_size;
            }
        }
    }
    if tree.size() != tree_size {
        return Err(Fault::Truncated {
            found: tree.size(),
            promised: tree_size,
        });
    }
    if !final_checkpoint {
        return Err(Fault::NoFinalCheckpoint(tree_size));
    }
    done.root = tree.root();
    Ok(done)
}

/// Checks one entry; returns how many signatures and payloads it verified.
fn check_entry(
    index: u64,
    entry: &[u8],
    payload: Option<&[u8]>,
    keys: &HashMap<String, (PublicKey, String)>,
) -> Result<(u64, u64), Fault> {
    let bad = |why: String| Fault::Entry { index, why };
    let body = pb::EntryBody::decode(entry)
        .map_err(|e| bad(format!("does not decode as wagelink.v1.EntryBody: {e}")))?;
    // A relayed envelope (submitted by a peer gateway for a sender of the peer's federation)
    // carries its sender's signature, made with a foreign certificate, and the peer's.
    let (header_bytes, signatures, digest, submitted_by) = match body.kind {
        Some(pb::entry_body::Kind::Accepted(a)) => (
            a.header,
            a.signatures,
            a.payload_sha256,
            Some(a.submitted_by),
        ),
        Some(pb::entry_body::Kind::Acknowledged(a)) => {
            (a.header, a.signatures, a.payload_sha256, None)
        }
        Some(pb::entry_body::Kind::Admin(a)) => (a.header, a.signatures, a.payload_sha256, None),
        None => return Err(bad("has no kind".into())),
    };
    let header = pb::Header::decode(header_bytes.as_slice())
        .map_err(|e| bad(format!("its header does not decode: {e}")))?;
    if header.payload_sha256 != digest {
        return Err(bad(
            "its payload digest differs from the one its header commits to".into(),
        ));
    }
    if signatures.is_empty() {
        return Err(bad("carries no signature".into()));
    }
    let pae = header_pae(&header_bytes);
    let relayed_by = submitted_by.filter(|by| by != &header.sender);
    let mut by_sender = false;
    for s in &signatures {
        let (key, owner) = keys.get(&s.keyid).ok_or_else(|| {
            bad(format!(
                "signature keyid {} is not among the exported certificates",
                s.keyid
            ))
        })?;
        let of_sender = match &relayed_by {
            None => owner == &header.sender,
            Some(_) => owner
                .split_once('@')
                .is_some_and(|(id, _)| id == header.sender),
        };
        if of_sender {
            by_sender = true;
        } else if relayed_by.as_ref() != Some(owner) {
            return Err(bad(format!(
                "it claims sender {} but is signed with a certificate of {owner}",
                header.sender
            )));
        }
        key.verify(&pae, &s.sig, &s.keyid).map_err(|_| {
            bad(format!(
                "the signature of {} (keyid {}) does not verify over its header",
                header.sender, s.keyid
            ))
        })?;
    }
    if !by_sender {
        return Err(bad(format!(
            "it carries no signature of its sender {}",
            header.sender
        )));
    }
    let mut payloads = 0;
    if let Some(p) = payload {
        let actual = payload_digest(&header.payload_type, p);
        if actual.map(|d| d.to_vec()) != Some(digest.clone()) {
            return Err(bad(
                "its payload does not match the digest its header commits to".into(),
            ));
        }
        payloads = 1;
    }
    Ok((signatures.len() as u64, payloads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{FederationCa, LeafSpec};
    use wagelink_proto::envelope::Signer;

    /// A signer for partner `id` and its key as an export names it (`owner`).
    fn party(
        ca: &FederationCa,
        id: &str,
        owner: &str,
        keys: &mut HashMap<String, (PublicKey, String)>,
    ) -> Signer {
        let issued = ca
            .issue_partner(
                "wagelink.dev",
                &LeafSpec::valid_for_days(id.parse().unwrap(), id, 30),
            )
            .unwrap();
        let signer =
            Signer::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap();
        keys.insert(
            signer.keyid().to_owned(),
            (
                PublicKey::from_certificate(&issued.der).unwrap(),
                owner.into(),
            ),
        );
        signer
    }

    /// An accepted entry from `sender`, submitted by `by`, signed by `signers`.
    fn entry(sender: &str, by: &str, signers: &[&Signer]) -> Vec<u8> {
        let header = pb::Header {
            message_id: "0193a3f2-7c1e-7c3a-9b5e-2f4d6a8b0c11".into(),
            sender: sender.into(),
            payload_type: "wagelink.v1.Lead".into(),
            payload_sha256: vec![7; 32],
            ..Default::default()
        }
        .encode_to_vec();
        let signatures = signers
            .iter()
            .map(|s| s.sign_header(&header).unwrap())
            .collect();
        pb::EntryBody {
            kind: Some(pb::entry_body::Kind::Accepted(pb::AcceptedEntry {
                header,
                signatures,
                submitted_by: by.into(),
                payload_sha256: vec![7; 32],
                ..Default::default()
            })),
        }
        .encode_to_vec()
    }

    #[test]
    fn every_entry_needs_its_senders_signature_and_a_relay_only_adds_the_peers() {
        let ca = FederationCa::generate("wagelink.dev").unwrap();
        let mut keys = HashMap::new();
        let source = party(&ca, "source-a", "source-a", &mut keys);
        let other = party(&ca, "source-b", "source-b", &mut keys);
        let peer = party(&ca, "peer-sichuan", "peer-sichuan", &mut keys);
        let foreign = party(&ca, "source-a", "source-a@sc.example", &mut keys);
        let check = |e: Vec<u8>| check_entry(0, &e, None, &keys).map_err(|f| f.to_string());

        assert!(check(entry("source-a", "source-a", &[&source])).is_ok());
        let err = check(entry("source-a", "source-a", &[&other])).unwrap_err();
        assert!(err.contains("certificate of source-b"), "{err}");
        // Relayed by a peer: the sender's foreign signature and the peer's.
        assert!(check(entry("source-a", "peer-sichuan", &[&foreign, &peer])).is_ok());
        let err = check(entry("source-a", "peer-sichuan", &[&peer])).unwrap_err();
        assert!(err.contains("no signature of its sender"), "{err}");
        // A relayed entry is never signed with the key of a partner of this federation.
        let err = check(entry("source-a", "peer-sichuan", &[&source, &peer])).unwrap_err();
        assert!(err.contains("certificate of source-a"), "{err}");
        // The peer's key alone does not stand for a local sender either.
        let err = check(entry("source-a", "source-a", &[&source, &peer])).unwrap_err();
        assert!(err.contains("certificate of peer-sichuan"), "{err}");
    }
}
