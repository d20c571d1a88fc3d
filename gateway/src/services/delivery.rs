//! `wagelink.v1.Delivery`: each partner's durable mailbox. `Subscribe` streams the pending
//! messages from a cursor and then new ones as they are committed, re-sending a message not
//! acknowledged within the redelivery time and dead-lettering it after too many attempts;
//! `Acknowledge` takes the recipient's signed acknowledgement — the proof of delivery — logs it
//! and marks the message delivered, in one transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prost::{Message, Name};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};
use wagelink_proto::envelope::sha256;
use wagelink_proto::v1 as pb;

use super::status::store_unavailable;
use crate::envelope;
use crate::federation::Federation;
use crate::identity::{PartnerKind, Registry};
use crate::layers::authenticate::partner;
use crate::ledger::log::{Effect, EntryKind, EvidenceLog};
use crate::store::{MailboxRow, Store};

/// Messages a stream sends before it waits for acknowledgements, unless the caller asks for
/// fewer.
const DEFAULT_WINDOW: u32 = 100;
const MAX_WINDOW: u32 = 1000;

/// Delivery timing.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    /// A message not acknowledged this long after it was sent is sent again.
    pub redeliver_after: Duration,
    /// After this many attempts a message is dead-lettered (and no longer sent).
    pub max_attempts: u32,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            redeliver_after: Duration::from_secs(30),
            max_attempts: 10,
        }
    }
}

/// How many Subscribe streams each partner has open on this gateway.
#[derive(Debug, Clone, Default)]
pub struct Subscribers(Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>);

/// Counts one open stream until dropped.
struct OpenStream {
    subscribers: Subscribers,
    partner: String,
}

impl Subscribers {
    fn open(&self, partner: &str) -> OpenStream {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(partner.to_owned())
            .or_default() += 1;
        OpenStream {
            subscribers: self.clone(),
            partner: partner.to_owned(),
        }
    }

    /// Streams `partner` has open now.
    pub fn count(&self, partner: &str) -> u32 {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(partner)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let mut open = self.subscribers.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.partner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.partner);
            }
        }
    }
}

pub struct DeliveryService {
    registry: Arc<Registry>,
    log: Arc<EvidenceLog>,
    policy: DeliveryPolicy,
    subscribers: Subscribers,
    federation: Arc<Federation>,
    /// Becomes true when the gateway shuts down: streams end so shutdown can complete.
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl DeliveryService {
    pub fn new(
        registry: Arc<Registry>,
        log: Arc<EvidenceLog>,
        policy: DeliveryPolicy,
        subscribers: Subscribers,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            registry,
            log,
            policy,
            subscribers,
            federation: Arc::default(),
            shutdown,
        }
    }

    /// The peer gateways, whose deliveries carry this gateway's relay signature.
    pub fn with_federation(mut self, federation: Arc<Federation>) -> Self {
        self.federation = federation;
        self
    }
}

/// What a peer gateway's stream adds to each delivery: the relay signature and the signers'
/// certificates.
struct Relay {
    federation: Arc<Federation>,
    registry: Arc<Registry>,
    /// The gateway's own certificate (DER), which signs the messages it makes.
    gateway_der: Vec<u8>,
}

impl Relay {
    async fn apply(
        &self,
        log: &EvidenceLog,
        partner: &str,
        mut d: pb::MailboxDelivery,
    ) -> Result<pb::MailboxDelivery, Status> {
        let Some(peer) = self.federation.peer(partner) else {
            return Ok(d);
        };
        let case_id = d
            .receipt
            .as_ref()
            .and_then(|r| pb::Receipt::decode(r.payload.as_slice()).ok())
            .map(|r| r.case_id)
            .unwrap_or_default();
        if !case_id.is_empty() {
            d.peer_case_id = log
                .store()
                .remote_case(partner, &case_id)
                .await
                .map_err(store_unavailable)?
                .unwrap_or_default();
        }
        if let Some(envelope) = d.envelope.as_mut() {
            let gateway_keyid = log.keys().gateway.keyid();
            d.signer_certificates = peer
                .relay(envelope, |keyid| {
                    if keyid == gateway_keyid {
                        Some(self.gateway_der.clone())
                    } else {
                        self.registry.certificate_der(keyid)
                    }
                })
                .map_err(|e| {
                    tracing::error!(peer = partner, error = %e, "cannot relay to a peer gateway");
                    Status::failed_precondition(format!(
                        "this gateway cannot relay to peer gateway {partner}: {e}"
                    ))
                })?;
        }
        Ok(d)
    }
}

/// A log entry a mailbox message points at, decoded, with the gateway's receipt for it.
struct Stored {
    kind: Option<pb::entry_body::Kind>,
    payload: Vec<u8>,
    receipt: Option<pb::SignedEnvelope>,
    traceparent: String,
}

/// The log entries at `indexes` (with their payloads when asked for) and the gateway's receipts
/// for them, read together.
async fn stored_at(
    store: &Store,
    indexes: &[u64],
    with_payloads: bool,
) -> Result<HashMap<u64, Stored>, Status> {
    Ok(store
        .deliverable(indexes, with_payloads)
        .await
        .map_err(store_unavailable)?
        .into_iter()
        .map(|(index, d)| {
            let stored = Stored {
                kind: pb::EntryBody::decode(d.entry.as_slice())
                    .ok()
                    .and_then(|b| b.kind),
                payload: d.payload.unwrap_or_default(),
                receipt: d
                    .receipt
                    .and_then(|r| pb::SignedEnvelope::decode(r.as_slice()).ok()),
                traceparent: d.traceparent.unwrap_or_default(),
            };
            (index, stored)
        })
        .collect())
}

/// What the messages of `rows` are sent from: their log entries and receipts, and for an
/// acknowledgement the payload type of the envelope it acknowledges (which its DELIVERED
/// receipt names, from its header: its payload is not read), in two reads for the lot.
async fn sources(
    store: &Store,
    rows: &[&MailboxRow],
) -> Result<(HashMap<u64, Stored>, HashMap<u64, String>), Status> {
    let indexes: Vec<u64> = rows.iter().map(|r| r.log_index).collect();
    let stored = stored_at(store, &indexes, true).await?;
    let acknowledged: Vec<u64> = stored
        .values()
        .filter_map(|s| match &s.kind {
            Some(pb::entry_body::Kind::Acknowledged(a)) => a.delivered_log_index,
            _ => None,
        })
        .collect();
    // None acknowledged: no statement runs.
    let payload_types = stored_at(store, &acknowledged, false)
        .await?
        .into_iter()
        .filter_map(|(index, s)| match s.kind {
            Some(pb::entry_body::Kind::Accepted(a)) => Some((
                index,
                pb::Header::decode(a.header.as_slice())
                    .map(|h| h.payload_type)
                    .unwrap_or_default(),
            )),
            _ => None,
        })
        .collect();
    Ok((stored, payload_types))
}

/// The delivery of one mailbox message: the envelope and the gateway's receipt for it — for an
/// envelope sent to the partner, its ACCEPTED receipt; for a recipient's acknowledgement of an
/// envelope the partner sent, a DELIVERED receipt (the proof of delivery). `stored` is the
/// entry the row points at; `payload_types` those of acknowledged envelopes (see [`sources`]).
#[tracing::instrument(name = "deliver", skip(log, row, stored, payload_types), fields(cursor = row.cursor, log_index = row.log_index, attempt = row.attempts))]
fn delivery(
    log: &EvidenceLog,
    partner: &str,
    row: &MailboxRow,
    stored: Option<&Stored>,
    payload_types: &HashMap<u64, String>,
) -> Result<pb::MailboxDelivery, Status> {
    let Some(Stored {
        kind,
        payload,
        receipt: stored_receipt,
        traceparent,
    }) = stored
    else {
        return Err(Status::internal(format!(
            "log entry {} of mailbox message {} is missing",
            row.log_index, row.cursor
        )));
    };
    // Read once per claimed row, but a partner may hold one entry twice: copied, not taken.
    let (envelope, receipt) = match kind {
        Some(pb::entry_body::Kind::Accepted(a)) => {
            // A lead carries the reporter's personal data: only its handler gets the payload.
            // Co-handlers, copies and supervisors get the signed header (which commits to the
            // payload) and read the lead without personal data with Cases.GetCase.
            let is_lead = pb::Header::decode(a.header.as_slice())
                .is_ok_and(|h| h.payload_type == pb::Lead::full_name());
            let handler = a
                .routed_to
                .iter()
                .any(|r| r.partner_id == partner && r.role == pb::RoutingRole::Handler as i32);
            let payload = if is_lead && !handler {
                Vec::new()
            } else {
                payload.clone()
            };
            (
                pb::SignedEnvelope {
                    header: a.header.clone(),
                    payload,
                    signatures: a.signatures.clone(),
                },
                stored_receipt.clone(),
            )
        }
        Some(pb::entry_body::Kind::Acknowledged(a)) => {
            let payload_type = a
                .delivered_log_index
                .and_then(|i| payload_types.get(&i).cloned())
                .unwrap_or_default();
            let receipt =
                delivered_receipt(log, a, row.log_index, stored_receipt.as_ref(), payload_type)?;
            (
                pb::SignedEnvelope {
                    header: a.header.clone(),
                    payload: payload.clone(),
                    signatures: a.signatures.clone(),
                },
                Some(receipt),
            )
        }
        _ => {
            return Err(Status::internal(format!(
                "mailbox message {} points at log entry {} of an unexpected kind",
                row.cursor, row.log_index
            )));
        }
    };
    Ok(pb::MailboxDelivery {
        cursor: row.cursor,
        envelope: Some(envelope),
        receipt,
        attempt: row.attempts,
        enqueued_at: Some(super::convert::timestamp(row.enqueued_at)),
        traceparent: traceparent.clone(),
        signer_certificates: Vec::new(),
        peer_case_id: String::new(),
    })
}

/// The DELIVERED receipt for the original sender of an acknowledged envelope, signed by the
/// gateway; it attests the acknowledgement logged at `ack_index`.
fn delivered_receipt(
    log: &EvidenceLog,
    ack: &pb::AcknowledgedEntry,
    ack_index: u64,
    ack_receipt: Option<&pb::SignedEnvelope>,
    payload_type: String,
) -> Result<pb::SignedEnvelope, Status> {
    let case_id = ack_receipt
        .and_then(|r| pb::Receipt::decode(r.payload.as_slice()).ok())
        .map(|r| r.case_id)
        .unwrap_or_default();
    let body = pb::Receipt {
        kind: pb::ReceiptKind::Delivered as i32,
        header_sha256: ack.delivered_header_sha256.clone(),
        message_id: ack.delivered_message_id.clone(),
        sender: ack.delivered_sender.clone(),
        log_index: ack_index,
        accepted_at: ack.acknowledged_at,
        case_id: case_id.clone(),
        routed_to: Vec::new(),
        payload_type,
        delivered_to: ack.recipient.clone(),
        acknowledgement_header_sha256: sha256(&ack.header).to_vec(),
    };
    let keys = log.keys();
    let header = pb::Header {
        message_id: uuid::Uuid::new_v4().to_string(),
        sender: keys.gateway_id.clone(),
        created_at: Some(crate::ledger::log::now_timestamp()),
        subject: case_id,
        in_reply_to: ack.delivered_message_id.clone(),
        recipients: vec![ack.delivered_sender.clone()],
        ..Default::default()
    };
    keys.gateway
        .seal(header, &body)
        .map_err(|e| Status::internal(format!("cannot sign a DELIVERED receipt: {e}")))
}

/// One open subscription.
struct Feed {
    log: Arc<EvidenceLog>,
    partner: String,
    from: u64,
    window: u32,
    policy: DeliveryPolicy,
    committed: tokio::sync::watch::Receiver<u64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    out: mpsc::Sender<Result<pb::MailboxDelivery, Status>>,
    /// Counted among the partner's open streams while the feed runs.
    open: OpenStream,
    /// For a peer gateway's stream.
    relay: Option<Relay>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Feeds one subscription until the subscriber goes away or the gateway shuts down, then gives
/// back the messages it holds unacknowledged so another stream can send them at once.
async fn feed(feed: Feed) {
    let store = feed.log.store().clone();
    let partner = feed.partner.clone();
    let stream = uuid::Uuid::new_v4().to_string();
    run_feed(feed, &stream).await;
    if let Err(e) = store.release(&partner, &stream).await {
        tracing::debug!(error = %e, "giving back a closed stream's messages failed; they are sent again when their claim runs out");
    }
}

/// Sends what the stream may hold: the window's worth of messages claimed for it in the store
/// (so two streams of a partner, on any replicas, never send a message at once), each sent
/// again when its claim runs out unacknowledged.
async fn run_feed(feed: Feed, stream: &str) {
    let Feed {
        log,
        partner,
        from,
        window,
        policy,
        mut committed,
        shutdown,
        out,
        open: _open,
        relay,
    } = feed;
    let store = log.store().clone();
    let redeliver_ms = policy.redeliver_after.as_millis().min(i64::MAX as u128) as i64;
    let poll = policy.redeliver_after.min(Duration::from_millis(500));
    loop {
        let now = now_ms();
        let claimed = match store.held_by(&partner, stream, now).await {
            Ok(held) => {
                store
                    .claim(
                        &partner,
                        from,
                        stream,
                        window.saturating_sub(held),
                        now,
                        now.saturating_add(redeliver_ms),
                        policy.max_attempts,
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(e) => {
                let _ = out.send(Err(store_unavailable(e))).await;
                return;
            }
        };
        let mut rows = Vec::with_capacity(claimed.len());
        for c in &claimed {
            if c.dead {
                tracing::warn!(partner = %partner, cursor = c.row.cursor, "message dead-lettered after too many delivery attempts");
            } else {
                rows.push(&c.row);
            }
        }
        // Nothing claimed: no statement runs.
        let (stored, payload_types) = match sources(&store, &rows).await {
            Ok(sources) => sources,
            Err(e) => {
                let _ = out.send(Err(e)).await;
                return;
            }
        };
        for row in rows {
            let message = delivery(
                &log,
                &partner,
                row,
                stored.get(&row.log_index),
                &payload_types,
            );
            let message = match (&relay, message) {
                (Some(relay), Ok(d)) => relay.apply(&log, &partner, d).await,
                (_, message) => message,
            };
            if out.send(message).await.is_err() {
                return;
            }
        }
        tokio::select! {
            changed = committed.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(poll) => {}
            _ = out.closed() => return,
            _ = crate::server::stopped(shutdown.clone()) => {
                let _ = out.send(Err(Status::unavailable("the gateway is shutting down; reconnect with backoff and the same request"))).await;
                return;
            }
        }
    }
}

#[tonic::async_trait]
impl pb::delivery_server::Delivery for DeliveryService {
    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::MailboxDelivery>>, Status> {
        let me = partner(&request)?.clone();
        let r = request.into_inner();
        let store = self.log.store().clone();
        let last = store
            .last_cursor(me.id.as_str())
            .await
            .map_err(store_unavailable)?;
        if r.from_cursor > last + 1 {
            return Err(Status::invalid_argument(format!(
                "from_cursor {} is beyond your mailbox's last cursor {last}; resume from the last cursor you acknowledged, or 0 for everything pending",
                r.from_cursor
            )));
        }
        let window = match r.window {
            0 => DEFAULT_WINDOW,
            w => w.min(MAX_WINDOW),
        };
        let (tx, rx) = mpsc::channel(window as usize);
        tokio::spawn(feed(Feed {
            log: self.log.clone(),
            partner: me.id.to_string(),
            from: r.from_cursor.max(1),
            window,
            policy: self.policy,
            committed: self.log.deliveries(),
            shutdown: self.shutdown.clone(),
            out: tx,
            open: self.subscribers.open(me.id.as_str()),
            relay: (me.kind == PartnerKind::PeerGateway).then(|| Relay {
                federation: self.federation.clone(),
                registry: self.registry.clone(),
                gateway_der: crate::tls::pem_certificates(
                    self.log.keys().gateway_certificate_pem.as_bytes(),
                )
                .ok()
                .and_then(|c| c.into_iter().next())
                .unwrap_or_default(),
            }),
        }));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn acknowledge(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let (me, mut verified) =
            envelope::verify_request::<pb::Acknowledgement>(&self.registry, request)?;
        let ack = &verified.payload;
        let store = self.log.store();
        let (log_index, _) = store
            .mailbox_message(me.id.as_str(), ack.cursor)
            .await
            .map_err(store_unavailable)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "your mailbox has no message at cursor {}",
                    ack.cursor
                ))
            })?;
        let entry = store
            .entries(log_index, log_index + 1, false)
            .await
            .map_err(store_unavailable)?
            .pop()
            .ok_or_else(|| Status::internal("the acknowledged message's log entry is missing"))?;
        // An envelope sent to the caller, or a recipient's acknowledgement of one the caller sent
        // (its DELIVERED receipt). Only the first is reported back to its sender as delivered.
        let (delivered_header, case_id, tell_sender) =
            match pb::EntryBody::decode(entry.entry.as_slice())
                .ok()
                .and_then(|b| b.kind)
            {
                // A relayed envelope's proof of delivery goes to the peer that relayed it.
                Some(pb::entry_body::Kind::Accepted(a)) => {
                    (a.header, a.case_id, Some(a.submitted_by))
                }
                Some(pb::entry_body::Kind::Acknowledged(a)) => (a.header, String::new(), None),
                _ => {
                    return Err(Status::internal(
                        "the acknowledged message is neither an envelope nor an acknowledgement",
                    ));
                }
            };
        let header = pb::Header::decode(delivered_header.as_slice())
            .map_err(|_| Status::internal("stored header unreadable"))?;
        let header_sha256 = sha256(&delivered_header).to_vec();
        if ack.message_id != header.message_id || ack.header_sha256 != header_sha256 {
            return Err(Status::invalid_argument(format!(
                "the message at cursor {} is {} with header SHA-256 {}; acknowledge it with that message_id and header_sha256",
                ack.cursor,
                header.message_id,
                hex::encode(&header_sha256)
            )));
        }
        verified.accepted.kind = EntryKind::Acknowledged {
            delivered_message_id: header.message_id.clone(),
            delivered_sender: header.sender.clone(),
            delivered_header_sha256: header_sha256,
            delivered_log_index: log_index,
            cursor: ack.cursor,
        };
        verified.accepted.case_id = case_id;
        verified.accepted.effects = vec![Effect::Acknowledge {
            partner: me.id.to_string(),
            cursor: ack.cursor,
        }];
        // A peer gateway names the case a relayed lead opened on its side.
        if me.kind == PartnerKind::PeerGateway && !ack.case_id.is_empty() {
            verified.accepted.effects.push(Effect::MapCase {
                peer: me.id.to_string(),
                remote_case_id: ack.case_id.clone(),
            });
        }
        // The original sender's proof of delivery (not for envelopes a gateway made, this one or
        // a peer).
        let gateway_id = &self.log.keys().gateway_id;
        if let Some(original_sender) = tell_sender
            && &original_sender != gateway_id
            && &header.sender != gateway_id
        {
            verified
                .accepted
                .effects
                .push(Effect::Deliver(original_sender));
        }
        super::record(&self.log, verified.accepted).await
    }
}
