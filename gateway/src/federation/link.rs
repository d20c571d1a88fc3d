//! The link to one peer gateway: this gateway subscribes to its own mailbox at the peer (as the
//! partner the peer knows it by), checks each delivered envelope — the originator's signature
//! against the peer's CA, the peer's relay signature against its pinned certificate —, logs it
//! here under this gateway's rules and acknowledges it at the peer. Nothing is acknowledged
//! before it is durably logged here, so a crash on either side only causes a redelivery, which
//! the log answers with the original receipt.

use std::sync::Arc;
use std::time::Duration;

use prost::{Message, Name};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use wagelink_proto::envelope::{PublicKey, header_pae, payload_digest, sha256};
use wagelink_proto::v1 as pb;

use super::{Federation, Peer};
use crate::identity::{Registry, fingerprint};
use crate::ledger::log::{Accepted, EntryKind, EvidenceLog};
use crate::services::cases::CasesService;

/// What a link works with.
#[derive(Clone)]
pub struct Context {
    pub federation: Arc<Federation>,
    pub registry: Arc<Registry>,
    pub log: Arc<EvidenceLog>,
    pub cases: Arc<CasesService>,
}

/// Keeps the link to peer number `index` up until shutdown, reconnecting with backoff.
pub async fn run(ctx: Context, index: usize, shutdown: tokio::sync::watch::Receiver<bool>) {
    let peer = &ctx.federation.peers[index];
    let mut backoff = Duration::from_millis(200);
    loop {
        tokio::select! {
            r = session(&ctx, peer) => match r {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    tracing::warn!(peer = %peer.id, error = %e, "the link to the peer gateway failed; reconnecting");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            },
            _ = crate::server::stopped(shutdown.clone()) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = crate::server::stopped(shutdown.clone()) => return,
        }
    }
}

/// Where and how to reach the peer as this gateway's partner there.
fn endpoint(peer: &Peer) -> Result<tonic::transport::Endpoint, String> {
    let address = peer
        .config
        .address
        .clone()
        .ok_or_else(|| format!("peer {} has no address", peer.id))?;
    let relay = &peer.identity;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&peer.ca_pem))
        .identity(Identity::from_pem(&relay.cert_pem, &relay.key_pem))
        .domain_name(peer.config.server_name.clone());
    Channel::from_shared(address.clone())
        .map_err(|_| format!("peer address {address:?} is not a URI"))?
        .tls_config(tls)
        .map_err(|e| e.to_string())
}

/// Connects to the peer as this gateway's partner there.
pub async fn connect(peer: &Peer) -> Result<Channel, String> {
    endpoint(peer)?
        .connect()
        .await
        .map_err(|e| format!("cannot connect to peer {}: {e}", peer.id))
}

/// Witnesses peer number `index`'s evidence log until shutdown or an alarm: every `every`,
/// fetches its latest checkpoint, checks it is consistent with the last one cosigned, and
/// cosigns it (Audit.AddWitnessSignature). A split view is logged as an error with its
/// evidence in `<data_dir>/witness-<peer>.alarm`, and nothing more is cosigned.
pub async fn witness(
    federation: Arc<Federation>,
    index: usize,
    data_dir: std::path::PathBuf,
    every: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use crate::witness_cli::{Witness, WitnessState, cosigner};
    let peer = &federation.peers[index];
    let Some(key) = &peer.config.witness_key else {
        return;
    };
    let relay = &peer.identity;
    let state_path = data_dir.join(format!("witness-{}.json", peer.id));
    let prepared = (|| -> Result<(Witness, WitnessState), String> {
        let cosigner =
            cosigner(key, &format!("{}/witness", relay.id)).map_err(|e| e.to_string())?;
        let signer = wagelink_proto::envelope::Signer::from_pem(&relay.cert_pem, &relay.key_pem)
            .map_err(|e| e.to_string())?;
        let mut state = WitnessState::load(&state_path).map_err(|e| e.to_string())?;
        if let Some(pinned) = &peer.config.log_key {
            if !state.log_key.is_empty() && &state.log_key != pinned {
                return Err(format!(
                    "{} pins another log key than the configured one",
                    state_path.display()
                ));
            }
            state.log_key = pinned.clone();
        }
        let channel = endpoint(peer)?.connect_lazy();
        Ok((
            Witness::over(channel, signer, relay.id.clone(), cosigner),
            state,
        ))
    })();
    let (witness, mut state) = match prepared {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(peer = %peer.id, error = %e, "cannot witness the peer gateway's log");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = crate::server::stopped(shutdown.clone()) => return,
        }
        match witness.round(&mut state).await {
            Ok(Ok(_)) => {
                if let Err(e) = state.save(&state_path) {
                    tracing::warn!(peer = %peer.id, error = %e, "cannot save the witness state");
                }
            }
            Ok(Err(alarm)) => {
                let evidence = state_path.with_extension("alarm");
                let record = serde_json::json!({
                    "alarm": alarm.to_string(),
                    "peer": peer.id.as_str(),
                    "accepted_note": state.seen_note,
                    "offending_note": witness.latest_note().await,
                });
                let _ = std::fs::write(
                    &evidence,
                    serde_json::to_vec_pretty(&record).unwrap_or_default(),
                );
                tracing::error!(peer = %peer.id, alarm = %alarm, evidence = %evidence.display(), "ALARM: the peer gateway's evidence log shows a split view; it is no longer cosigned");
                return;
            }
            Err(e) => {
                tracing::debug!(peer = %peer.id, error = %e, "a witness round failed; trying again")
            }
        }
    }
}

/// One subscription: ingest and acknowledge each delivery until the stream ends.
async fn session(ctx: &Context, peer: &Peer) -> Result<(), String> {
    let channel = connect(peer).await?;
    let mut delivery = pb::delivery_client::DeliveryClient::new(channel);
    let mut stream = delivery
        .subscribe(pb::SubscribeRequest {
            from_cursor: 0,
            window: 32,
        })
        .await
        .map_err(|s| format!("Subscribe: {}", s.message()))?
        .into_inner();
    tracing::info!(peer = %peer.id, "linked to the peer gateway");
    while let Some(d) = stream
        .message()
        .await
        .map_err(|s| format!("the stream ended: {}", s.message()))?
    {
        // A message not taken is not acknowledged, and the session ends so the peer sends it
        // again before anything after it (per case, order matters); the peer dead-letters it,
        // alerting its operators, if it never fits here.
        let case_id = ingest(ctx, peer, &d)
            .await
            .map_err(|e| format!("message {} was not taken: {e}", d.cursor))?;
        acknowledge(&mut delivery, peer, &d, case_id).await?;
    }
    Err("the peer ended the stream".into())
}

/// Acknowledges a delivery at the peer: the peer's proof of delivery, naming the case it opened
/// here (for a lead).
async fn acknowledge(
    delivery: &mut pb::delivery_client::DeliveryClient<Channel>,
    peer: &Peer,
    d: &pb::MailboxDelivery,
    case_id: String,
) -> Result<(), String> {
    let relay = &peer.identity;
    let envelope = d
        .envelope
        .as_ref()
        .ok_or("a delivery without an envelope")?;
    let header =
        pb::Header::decode(envelope.header.as_slice()).map_err(|e| format!("header: {e}"))?;
    let ack = pb::Acknowledgement {
        message_id: header.message_id.clone(),
        cursor: d.cursor,
        header_sha256: sha256(&envelope.header).to_vec(),
        case_id,
    };
    let sealed = relay
        .signer
        .seal(
            pb::Header {
                message_id: uuid::Uuid::new_v4().to_string(),
                sender: relay.id.clone(),
                created_at: Some(crate::ledger::log::now_timestamp()),
                in_reply_to: header.message_id,
                ..Default::default()
            },
            &ack,
        )
        .map_err(|e| format!("cannot sign the acknowledgement: {e}"))?;
    delivery
        .acknowledge(sealed)
        .await
        .map_err(|s| format!("Acknowledge: {}", s.message()))?;
    Ok(())
}

/// Checks a relayed envelope and logs it here; returns the case a relayed lead opened.
pub async fn ingest(ctx: &Context, peer: &Peer, d: &pb::MailboxDelivery) -> Result<String, String> {
    let envelope = d.envelope.clone().ok_or("a delivery without an envelope")?;
    let header = pb::Header::decode(envelope.header.as_slice())
        .map_err(|e| format!("the header does not decode: {e}"))?;
    let now = crate::store::now_unix();
    let pae = header_pae(&envelope.header);
    let (mut relayed, mut originated) = (false, false);
    let mut foreign = Vec::new();
    for s in &envelope.signatures {
        if let Ok(key) = ctx.registry.signing_key(&s.keyid, &peer.id, now) {
            key.verify(&pae, &s.sig, &s.keyid)
                .map_err(|_| format!("the relay signature {} does not verify", s.keyid))?;
            relayed = true;
            continue;
        }
        let der = d
            .signer_certificates
            .iter()
            .find(|c| fingerprint(c) == s.keyid)
            .ok_or_else(|| format!("no certificate came with signature keyid {}", s.keyid))?;
        // Valid when the sender signed: a relay may come after the certificate expired.
        let signed_at = header.created_at.map_or(now, |t| t.seconds);
        let cert = peer
            .check_foreign(der, signed_at)
            .map_err(|e| format!("the certificate of keyid {}: {e}", s.keyid))?;
        if cert.partner_id != header.sender {
            return Err(format!(
                "signature keyid {} is of {}, not of the sender {}",
                s.keyid, cert.partner_id, header.sender
            ));
        }
        PublicKey::from_certificate(der)
            .map_err(|e| format!("keyid {}: {e}", s.keyid))?
            .verify(&pae, &s.sig, &s.keyid)
            .map_err(|_| format!("the signature of {} does not verify", header.sender))?;
        originated = true;
        foreign.push(cert);
    }
    if !relayed || !originated {
        return Err(format!(
            "a relayed envelope needs the sender's signature and peer {}'s relay signature",
            peer.id
        ));
    }
    if payload_digest(&header.payload_type, &envelope.payload).map(|d| d.to_vec())
        != Some(header.payload_sha256.clone())
    {
        return Err("the payload does not match the header's payload_sha256".into());
    }
    for cert in &foreign {
        ctx.log
            .store()
            .insert_foreign_certificate(cert)
            .await
            .map_err(|e| e.to_string())?;
    }
    // The peer as the partner that submits what it relays: its pinned certificate, as the
    // registry accepts it now (registered, not revoked, partner active).
    let partner = ctx
        .registry
        .check_pin(&fingerprint(&peer.certificate_der), now)
        .map_err(|r| format!("peer gateway {}: {r}", peer.id))?;
    let accepted = Accepted {
        header_bytes: envelope.header,
        header: header.clone(),
        payload: envelope.payload.clone(),
        signatures: envelope.signatures,
        submitted_by: partner.id.clone(),
        // Its sender's gateway held it to the replay window; the relay may come later.
        created_at: now,
        routed_to: Vec::new(),
        case_id: String::new(),
        effects: Vec::new(),
        kind: EntryKind::Accepted,
        traceparent: (!d.traceparent.is_empty()).then(|| d.traceparent.clone()),
    };
    if header.payload_type == pb::Lead::full_name() {
        let lead = pb::Lead::decode(envelope.payload.as_slice())
            .map_err(|e| format!("the lead does not decode: {e}"))?;
        let remote_case = d
            .receipt
            .as_ref()
            .and_then(|r| pb::Receipt::decode(r.payload.as_slice()).ok())
            .map(|r| r.case_id)
            .unwrap_or_default();
        let receipt = ctx
            .cases
            .relayed_lead(&partner, accepted, &lead, &remote_case)
            .await
            .map_err(|s| s.message().to_owned())?;
        return Ok(pb::Receipt::decode(receipt.payload.as_slice())
            .map(|r| r.case_id)
            .unwrap_or_default());
    }
    if header.payload_type == pb::CaseAction::full_name() {
        let action = pb::CaseAction::decode(envelope.payload.as_slice())
            .map_err(|e| format!("the case action does not decode: {e}"))?;
        let local = linked_case(ctx, peer, d, &action.case_id).await?;
        let mut evidence = accepted.clone();
        if !mirrored(&action) {
            evidence.case_id = local;
            return append(ctx, evidence).await;
        }
        match ctx
            .cases
            .relayed_step(partner, accepted, action, local.clone())
            .await
        {
            Ok(_) => return Ok(String::new()),
            Err(s) if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::Internal => {
                return Err(s.message().to_owned());
            }
            Err(s) => {
                // A step the case here does not take (another role, another state): kept as
                // evidence on the case, delivered to nobody.
                tracing::info!(peer = %peer.id, case_id = %local, reason = s.message(), "a relayed step is kept as evidence only");
                evidence.case_id = local;
            }
        }
        return append(ctx, evidence).await;
    }
    // Anything else (letters, acknowledgements of what this gateway relayed, …) is kept as
    // evidence, on the linked case when there is one, and delivered to nobody.
    let mut evidence = accepted;
    if !d.peer_case_id.is_empty() {
        evidence.case_id = linked_case(ctx, peer, d, "").await.unwrap_or_default();
    }
    append(ctx, evidence).await
}

/// Our case linked to the peer's case `remote` (the payload's case id): the one the peer names
/// in `peer_case_id` if the peer has a role on it here, else the one an acknowledgement linked.
async fn linked_case(
    ctx: &Context,
    peer: &Peer,
    d: &pb::MailboxDelivery,
    remote: &str,
) -> Result<String, String> {
    let store = ctx.log.store();
    if !d.peer_case_id.is_empty()
        && store
            .is_party(&d.peer_case_id, peer.id.as_str())
            .await
            .map_err(|e| e.to_string())?
    {
        return Ok(d.peer_case_id.clone());
    }
    store
        .local_case(peer.id.as_str(), remote)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "case {remote} of peer {} is linked to no case here yet",
                peer.id
            )
        })
}

/// Whether a step relayed from a peer moves the linked case here. The peer's own routing
/// (returns, forwards, transfers inside its federation) and its oversight stay there: here they
/// are kept as evidence on the case.
fn mirrored(action: &pb::CaseAction) -> bool {
    use pb::case_action::Action as A;
    matches!(
        action.action,
        Some(A::SignFor(_) | A::Progress(_) | A::Resolve(_) | A::Feedback(_) | A::Close(_))
    )
}

async fn append(ctx: &Context, accepted: Accepted) -> Result<String, String> {
    ctx.log
        .append(accepted)
        .await
        .map(|_| String::new())
        .map_err(|e| e.to_string())
}
