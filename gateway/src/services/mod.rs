//! The gRPC services: thin adapters that decode a request, take the [`VerifiedPartner`] the
//! layers attached, call the domain and encode the answer. Conversions between domain types and
//! wagelink.v1 messages live in [`convert`].
//!
//! [`VerifiedPartner`]: crate::identity::VerifiedPartner

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod banks;
pub mod cases;
pub mod convert;
pub mod delivery;
pub mod identity;
pub mod status;

use tonic::{Response, Status};
use wagelink_proto::v1 as pb;

use crate::envelope::SubmitError;
use crate::ledger::log::{Accepted, EvidenceLog};

/// The end of every write RPC: the durable append, answered with the gateway's receipt.
async fn record(
    log: &EvidenceLog,
    accepted: Accepted,
) -> Result<Response<pb::SubmitResponse>, Status> {
    let receipt = log.append(accepted).await.map_err(SubmitError::from)?;
    Ok(Response::new(pb::SubmitResponse {
        receipt: Some(receipt),
    }))
}

/// Whether `sender` had an envelope with this message id accepted before: its resubmission goes
/// straight to the log, which answers with the original receipt.
async fn seen(log: &EvidenceLog, sender: &str, message_id: &str) -> Result<bool, Status> {
    log.store()
        .envelope_seen(sender, message_id)
        .await
        .map_err(status::store_unavailable)
}
