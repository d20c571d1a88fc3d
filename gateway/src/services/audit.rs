//! `wagelink.v1.Audit`: checkpoints, inclusion and consistency proofs, entry ranges and the
//! keys that verify them. Proofs are given against signed checkpoints only, so a client can
//! check everything it receives against a signature.

use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};
use wagelink_proto::v1 as pb;

use super::status::store_unavailable;
use prost::Message;

use crate::identity::{PartnerKind, VerifiedPartner};
use crate::layers::authenticate::partner;
use crate::ledger::log::EvidenceLog;
use crate::store::StoredCheckpoint;

/// Most entries one GetEntries call streams; callers continue from the last index + 1.
const MAX_ENTRIES_PER_CALL: u64 = 10_000;
/// Entries read from storage at a time while streaming.
const PAGE: u64 = 500;

pub struct AuditService {
    log: Arc<EvidenceLog>,
    trust_domain: String,
    federation_ca_pem: String,
}

impl AuditService {
    pub fn new(log: Arc<EvidenceLog>, trust_domain: String, federation_ca_pem: String) -> Self {
        Self {
            log,
            trust_domain,
            federation_ca_pem,
        }
    }

    fn message(&self, c: &StoredCheckpoint) -> pb::Checkpoint {
        pb::Checkpoint {
            note: c.note.as_bytes().to_vec(),
            origin: self.log.keys().origin.clone(),
            tree_size: c.tree_size,
            root_hash: c.root_hash.clone(),
            signed_at: Some(super::convert::timestamp(c.signed_at)),
            witnessed_by: vec![],
        }
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
        Ok(Response::new(self.message(&c)))
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
            checkpoint: Some(self.message(&c)),
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
            checkpoint: Some(self.message(&c)),
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
