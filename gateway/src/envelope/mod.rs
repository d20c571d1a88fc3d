//! The one submit path every write RPC uses (DESIGN §5): decode and check the header, match its
//! sender to the connection's verified partner, verify every signature with the sender's
//! registered keys, check the payload against its digest and the RPC's payload type, and only
//! then hand the envelope to the evidence log — which applies idempotency, the replay window
//! and the durable append, and answers with the gateway's receipt.
//!
//! Each rejection is its own [`SubmitError`] variant, mapped to one precise gRPC status in
//! `services::status`.

use prost::{Message, Name};
use thiserror::Error;
use wagelink_proto::envelope::{header_pae, payload_digest};
use wagelink_proto::v1 as pb;

use crate::identity::{KeyRefusal, PartnerId, Registry, VerifiedPartner};
use crate::ledger::log::{Accepted, AppendError};

/// Most signatures one envelope may carry (each with its own keyid): a sender's, and relays'.
const MAX_SIGNATURES: usize = 4;

/// Longest accepted `message_id`, in bytes.
const MAX_MESSAGE_ID: usize = 64;

/// Why an envelope was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the envelope's header does not decode as wagelink.v1.Header: {0}")]
    MalformedHeader(String),
    #[error("the header has no {0}; set it before signing")]
    MissingField(&'static str),
    #[error(
        "the header's message_id {0:?} is not a UUID in canonical form (lowercase, hyphenated, for example 0193a3f2-7c1e-7c3a-9b5e-2f4d6a8b0c11); choose a fresh UUID per message"
    )]
    BadMessageId(String),
    #[error(
        "the header's sender is {sender:?} but this connection is partner {connected}; sign as the partner whose certificate you connect with"
    )]
    SenderMismatch {
        sender: String,
        connected: PartnerId,
    },
    #[error(
        "the envelope carries no signature; sign the header bytes (DSSE) and add the signature with its keyid"
    )]
    Unsigned,
    #[error(
        "the envelope carries {count} signatures; at most 4 are accepted, each with a different keyid"
    )]
    TooManySignatures { count: usize },
    #[error("{0}")]
    Key(KeyRefusal),
    #[error(
        "the signature with keyid {keyid} does not verify over the header bytes; sign PAE(\"application/vnd.wagelink.header.v1+protobuf\", header) exactly as sent"
    )]
    BadSignature { keyid: String },
    #[error(
        "the payload's SHA-256 is {actual} but the header's payload_sha256 is {declared}; the header must commit to the exact payload bytes"
    )]
    PayloadDigest { declared: String, actual: String },
    #[error("this RPC takes payload_type {expected}, not {got:?}")]
    WrongPayloadType { expected: String, got: String },
    #[error("the payload does not decode as {payload_type}: {reason}")]
    UndecodablePayload {
        payload_type: String,
        reason: String,
    },
    #[error("{0}")]
    Append(#[from] AppendError),
}

/// A verified envelope and its decoded payload, ready to be logged.
#[derive(Debug, Clone)]
pub struct Verified<M> {
    pub accepted: Accepted,
    pub payload: M,
}

/// Verifies the envelope of a write RPC taking payloads of type `M`, as the partner the call
/// was authenticated as; returns that partner with the verified envelope.
pub fn verify_request<M: Message + Name + Default>(
    registry: &Registry,
    request: tonic::Request<pb::SignedEnvelope>,
) -> Result<(VerifiedPartner, Verified<M>), tonic::Status> {
    let me = crate::layers::authenticate::partner(&request)?.clone();
    let traceparent = request
        .extensions()
        .get::<crate::layers::trace::TraceParent>()
        .map(|t| t.0.clone());
    let mut verified = verify::<M>(
        registry,
        &me,
        request.into_inner(),
        crate::store::now_unix(),
    )?;
    verified.accepted.traceparent = traceparent;
    Ok((me, verified))
}

/// Verifies an envelope submitted by `partner` to an RPC that takes payloads of type `M`.
pub fn verify<M: Message + Name + Default>(
    registry: &Registry,
    partner: &VerifiedPartner,
    envelope: pb::SignedEnvelope,
    now: i64,
) -> Result<Verified<M>, SubmitError> {
    let header = pb::Header::decode(envelope.header.as_slice())
        .map_err(|e| SubmitError::MalformedHeader(e.to_string()))?;
    if header.sender.is_empty() {
        return Err(SubmitError::MissingField("sender"));
    }
    if header.sender != partner.id.as_str() {
        return Err(SubmitError::SenderMismatch {
            sender: header.sender,
            connected: partner.id.clone(),
        });
    }
    if header.message_id.is_empty() {
        return Err(SubmitError::MissingField("message_id"));
    }
    // Only the canonical form (lowercase, hyphenated), so one message has one spelling and
    // idempotency cannot be sidestepped by writing the same UUID differently.
    let canonical = uuid::Uuid::parse_str(&header.message_id).map(|u| u.hyphenated().to_string());
    if header.message_id.len() > MAX_MESSAGE_ID
        || canonical.as_deref() != Ok(header.message_id.as_str())
    {
        return Err(SubmitError::BadMessageId(
            header.message_id.chars().take(MAX_MESSAGE_ID).collect(),
        ));
    }
    let created_at = header
        .created_at
        .ok_or(SubmitError::MissingField("created_at"))?
        .seconds;
    if envelope.signatures.is_empty() {
        return Err(SubmitError::Unsigned);
    }
    let mut keyids: Vec<&str> = envelope
        .signatures
        .iter()
        .map(|s| s.keyid.as_str())
        .collect();
    keyids.sort_unstable();
    keyids.dedup();
    if envelope.signatures.len() > MAX_SIGNATURES || keyids.len() != envelope.signatures.len() {
        return Err(SubmitError::TooManySignatures {
            count: envelope.signatures.len(),
        });
    }
    let pae = header_pae(&envelope.header);
    for signature in &envelope.signatures {
        let key = registry
            .signing_key(&signature.keyid, &partner.id, now)
            .map_err(SubmitError::Key)?;
        key.verify(&pae, &signature.sig, &signature.keyid)
            .map_err(|_| SubmitError::BadSignature {
                keyid: signature.keyid.clone(),
            })?;
    }
    let actual = payload_digest(&header.payload_type, &envelope.payload).ok_or_else(|| {
        SubmitError::UndecodablePayload {
            payload_type: header.payload_type.clone(),
            reason: "a batch must decode and hold at least one event".into(),
        }
    })?;
    if header.payload_sha256 != actual {
        return Err(SubmitError::PayloadDigest {
            declared: hex::encode(&header.payload_sha256),
            actual: hex::encode(actual),
        });
    }
    if header.payload_type != M::full_name() {
        return Err(SubmitError::WrongPayloadType {
            expected: M::full_name(),
            got: header.payload_type,
        });
    }
    let payload =
        M::decode(envelope.payload.as_slice()).map_err(|e| SubmitError::UndecodablePayload {
            payload_type: M::full_name(),
            reason: e.to_string(),
        })?;
    Ok(Verified {
        accepted: Accepted {
            header_bytes: envelope.header,
            header,
            payload: envelope.payload,
            signatures: envelope.signatures,
            submitted_by: partner.id.clone(),
            created_at,
            routed_to: Vec::new(),
            case_id: String::new(),
            effects: Vec::new(),
            kind: Default::default(),
            traceparent: None,
        },
        payload,
    })
}
