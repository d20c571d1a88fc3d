//! `wagelink.v1.Audit`: checkpoints, inclusion and consistency proofs, entry ranges and the
//! keys that verify them. Proofs are given against signed checkpoints only, so a client can
//! check everything it receives against a signature.

use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};
use wagelink_proto::v1 as pb;

use super::status::store_unavailable;
use prost::Message;

use std::collections::HashMap;

use crate::identity::{PartnerKind, Registry, VerifiedPartner};
use crate::layers::authenticate::partner;
use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::log::Effect;
use crate::ledger::log::EvidenceLog;
use crate::ledger::witness::CosignerVerifier;
use crate::store::StoredCheckpoint;

/// Most entries one GetEntries call streams; callers continue from the last index + 1.
const MAX_ENTRIES_PER_CALL: u64 = 10_000;
/// Entries read from storage at a time while streaming.
const PAGE: u64 = 500;

pub struct AuditService {
    log: Arc<EvidenceLog>,
    registry: Arc<Registry>,
    trust_domain: String,
    federation_ca_pem: String,
    /// The cosigner keys of witnesses that add C2SP cosignature lines, by partner id.
    witness_keys: HashMap<String, CosignerVerifier>,
}

impl AuditService {
    pub fn new(
        log: Arc<EvidenceLog>,
        registry: Arc<Registry>,
        trust_domain: String,
        federation_ca_pem: String,
        witness_keys: HashMap<String, CosignerVerifier>,
    ) -> Self {
        Self {
            log,
            registry,
            trust_domain,
            federation_ca_pem,
            witness_keys,
        }
    }

    /// A checkpoint as served: the gateway's note followed by the witnesses' cosignature lines.
    async fn message(&self, c: &StoredCheckpoint) -> Result<pb::Checkpoint, Status> {
        let cosigned = self
            .log
            .store()
            .cosignatures(c.tree_size)
            .await
            .map_err(store_unavailable)?;
        let mut note = c.note.clone();
        for (_, line) in cosigned.iter().filter(|(_, line)| !line.is_empty()) {
            note.push_str(line);
            note.push('\n');
        }
        Ok(pb::Checkpoint {
            note: note.into_bytes(),
            origin: self.log.keys().origin.clone(),
            tree_size: c.tree_size,
            root_hash: c.root_hash.clone(),
            signed_at: Some(super::convert::timestamp(c.signed_at)),
            witnessed_by: cosigned.into_iter().map(|(w, _)| w).collect(),
        })
    }

    /// The entry bytes at `index` if `me` submitted that entry or oversees the log; empty
    /// otherwise (entries reveal who sent what to whom).
    async fn entry_for(&self, me: &VerifiedPartner, index: u64) -> Result<Vec<u8>, Status> {
        let stored = self
            .log
            .store()
            .entries(index, index + 1, false)
            .await
            .map_err(store_unavailable)?;
        let Some(e) = stored.into_iter().next() else {
            return Ok(Vec::new());
        };
        if matches!(me.kind, PartnerKind::LeadingOffice | PartnerKind::Admin) {
            return Ok(e.entry);
        }
        let submitter = match pb::EntryBody::decode(e.entry.as_slice())
            .ok()
            .and_then(|b| b.kind)
        {
            Some(pb::entry_body::Kind::Accepted(a)) => a.submitted_by,
            Some(pb::entry_body::Kind::Acknowledged(a)) => a.recipient,
            Some(pb::entry_body::Kind::Admin(a)) => a.admin,
            None => String::new(),
        };
        Ok(if submitter == me.id.as_str() {
            e.entry
        } else {
            Vec::new()
        })
    }

    /// The checkpoint a proof is given against: `size` 0 means the latest.
    async fn signed(&self, size: u64) -> Result<StoredCheckpoint, Status> {
        let latest = self.log.latest_checkpoint();
        if size > latest.tree_size {
            return Err(Status::failed_precondition(format!(
                "tree size {size} is beyond the latest checkpoint ({}); checkpoints are signed every second while entries arrive — retry shortly",
                latest.tree_size
            )));
        }
        self.log
            .checkpoint(size)
            .await
            .map_err(store_unavailable)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no checkpoint was signed at tree size {size}; ask for size 0 (the latest) or a size you saw in a checkpoint"
                ))
            })
    }
}

type EntryStream = tonic::codegen::BoxStream<pb::LogEntry>;

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditService {
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let c = self.signed(request.get_ref().tree_size).await?;
        Ok(Response::new(self.message(&c).await?))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let me = partner(&request)?.clone();
        let r = request.into_inner();
        let c = self.signed(r.tree_size).await?;
        if r.leaf_index >= c.tree_size {
            return Err(if r.tree_size == 0 {
                Status::failed_precondition(format!(
                    "entry {} is not yet covered by a checkpoint (latest size {}); retry in about a second",
                    r.leaf_index, c.tree_size
                ))
            } else {
                Status::invalid_argument(format!(
                    "entry {} is not in a tree of size {}; ask for a larger tree_size, or 0 for the latest",
                    r.leaf_index, c.tree_size
                ))
            });
        }
        let (leaf, hashes) = self.log.inclusion_proof(r.leaf_index, c.tree_size)?;
        let entry = self.entry_for(&me, r.leaf_index).await?;
        Ok(Response::new(pb::InclusionProof {
            leaf_index: r.leaf_index,
            tree_size: c.tree_size,
            leaf_hash: leaf.to_vec(),
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
            checkpoint: Some(self.message(&c).await?),
            entry,
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let r = request.into_inner();
        let c = self.signed(r.second_size).await?;
        let hashes = self.log.consistency_proof(r.first_size, c.tree_size)?;
        Ok(Response::new(pb::ConsistencyProof {
            first_size: r.first_size,
            second_size: c.tree_size,
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
            checkpoint: Some(self.message(&c).await?),
        }))
    }

    async fn get_entries(
        &self,
        request: Request<pb::GetEntriesRequest>,
    ) -> Result<Response<EntryStream>, Status> {
        let me = partner(&request)?;
        let r = *request.get_ref();
        // Who may export at all is in the authorization table; payloads hold personal data.
        if r.include_payloads && me.kind != PartnerKind::Admin {
            return Err(Status::permission_denied(
                "payloads hold personal data: only an admin may export them; ask again with include_payloads = false",
            ));
        }
        let latest = self.log.latest_checkpoint().tree_size;
        let mut r = r;
        if r.end_index == 0 {
            r.end_index = latest;
        }
        if r.start_index >= r.end_index || r.end_index > latest {
            return Err(Status::invalid_argument(format!(
                "ask for 0 ≤ start_index < end_index ≤ {latest} (the latest checkpoint's size); got [{}, {})",
                r.start_index, r.end_index
            )));
        }
        let end = r.end_index.min(r.start_index + MAX_ENTRIES_PER_CALL);
        let store = self.log.store().clone();
        let stream = async_stream(store, r.start_index, end, r.include_payloads);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn add_witness_signature(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let (me, mut v) =
            crate::envelope::verify_request::<pb::WitnessCosignature>(&self.registry, request)?;
        let w = &v.payload;
        let origin = &self.log.keys().origin;
        if &w.origin != origin {
            return Err(Status::invalid_argument(format!(
                "origin {:?} is not this log's ({origin:?})",
                w.origin
            )));
        }
        let Some(c) = self
            .log
            .checkpoint(w.tree_size)
            .await
            .map_err(store_unavailable)?
            .filter(|c| w.tree_size > 0 && c.tree_size == w.tree_size)
        else {
            return Err(Status::not_found(format!(
                "no checkpoint was signed at tree size {}; cosign a checkpoint from GetCheckpoint",
                w.tree_size
            )));
        };
        if w.root_hash != c.root_hash {
            return Err(Status::invalid_argument(format!(
                "root_hash is not the root of the checkpoint of size {}: this log signed {}; if you were shown {}, keep both notes — that is a split view",
                w.tree_size,
                hex::encode(&c.root_hash),
                hex::encode(&w.root_hash)
            )));
        }
        if w.checked_from_size > w.tree_size {
            return Err(Status::invalid_argument(format!(
                "checked_from_size {} is beyond tree_size {}",
                w.checked_from_size, w.tree_size
            )));
        }
        let line = w.note_signature_line.trim_end_matches('\n').to_owned();
        if !line.is_empty() {
            let Some(key) = self.witness_keys.get(me.id.as_str()) else {
                return Err(Status::invalid_argument(format!(
                    "no cosigner key is configured for {}: send the cosignature without note_signature_line, or ask the operator to add your key to [[audit.witnesses]]",
                    me.id
                )));
            };
            let root = crate::ledger::merkle::Hash::try_from(c.root_hash.clone())
                .map_err(|_| Status::internal("a stored root hash is not 32 bytes"))?;
            let body = Checkpoint {
                origin: origin.clone(),
                size: c.tree_size,
                root,
            }
            .body();
            key.verify(&body, &line)
                .map_err(|e| Status::invalid_argument(format!("note_signature_line: {e}")))?;
        }
        v.accepted.effects = vec![Effect::Cosign {
            tree_size: c.tree_size,
            line,
        }];
        let receipt = self
            .log
            .append(v.accepted)
            .await
            .map_err(crate::envelope::SubmitError::from)?;
        Ok(Response::new(pb::SubmitResponse {
            receipt: Some(receipt),
        }))
    }

    async fn get_log_keys(
        &self,
        _request: Request<pb::GetLogKeysRequest>,
    ) -> Result<Response<pb::LogKeys>, Status> {
        let keys = self.log.keys();
        Ok(Response::new(pb::LogKeys {
            origin: keys.origin.clone(),
            log_verifier_key: keys.log_key.verifier().to_text(),
            gateway_certificate_pem: keys.gateway_certificate_pem.clone(),
            gateway_chain_pem: keys.gateway_certificate_pem.clone(),
            previous_gateway_certificates_pem: vec![],
            gateway_id: keys.gateway_id.clone(),
            trust_domain: self.trust_domain.clone(),
            federation_ca_pem: self.federation_ca_pem.clone(),
        }))
    }
}

/// Entries `[start, end)` read page by page from storage.
fn async_stream(
    store: crate::store::Store,
    start: u64,
    end: u64,
    with_payloads: bool,
) -> impl Stream<Item = Result<pb::LogEntry, Status>> + Send {
    futures::StreamExt::flatten(futures::stream::unfold(Some(start), move |next| {
        let store = store.clone();
        async move {
            let from = next?;
            if from >= end {
                return None;
            }
            let to = (from + PAGE).min(end);
            match store.entries(from, to, with_payloads).await {
                Ok(page) => {
                    let items: Vec<Result<pb::LogEntry, Status>> = page
                        .into_iter()
                        .map(|e| {
                            Ok(pb::LogEntry {
                                index: e.index,
                                body: pb::EntryBody::decode(e.entry.as_slice()).ok(),
                                entry: e.entry,
                                payload: e.payload.unwrap_or_default(),
                                payload_erased: e.payload_erased,
                            })
                        })
                        .collect();
                    Some((futures::stream::iter(items), Some(to)))
                }
                Err(e) => Some((futures::stream::iter(vec![Err(store_unavailable(e))]), None)),
            }
        }
    }))
}
