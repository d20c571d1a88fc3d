//! What every partner-side program needs beside the connection: a durable record of the
//! messages already handed to the partner's system (so a redelivery after a crash or a
//! reconnect is acknowledged, not handled twice), and the mailbox loop that subscribes, hands
//! each new message over, records it and acknowledges it.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use wagelink_proto::envelope::{PublicKey, Signer, header_pae, keyid, sha256};
use wagelink_proto::v1 as pb;

use crate::client::{self, Credentials, GatewayAddress};

/// Connects to the gateway, retrying with exponential backoff (0.2 s doubling to 30 s) until it
/// succeeds or `stop` turns true (then None).
pub async fn connect_with_backoff(
    address: &GatewayAddress,
    credentials: &Credentials,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<tonic::transport::Channel> {
    let mut wait = std::time::Duration::from_millis(200);
    loop {
        if *stop.borrow() {
            return None;
        }
        match client::connect(address, credentials).await {
            Ok(channel) => return Some(channel),
            Err(e) => eprintln!("cannot reach the gateway ({e}); retrying in {wait:?}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
        wait = (wait * 2).min(std::time::Duration::from_secs(30));
    }
}

/// Checks a receipt the gateway gave for `sent`: signed by the gateway's certificate
/// (`Audit.GetLogKeys.gateway_certificate_pem`) under the gateway's id, about exactly the bytes
/// sent (header SHA-256, message id, sender). Returns the receipt's body.
pub fn verify_receipt(
    receipt: &pb::SignedEnvelope,
    sent: &pb::SignedEnvelope,
    gateway_certificate_pem: &str,
    gateway_id: &str,
) -> Result<pb::Receipt, String> {
    let der = CertificateDer::pem_slice_iter(gateway_certificate_pem.as_bytes())
        .next()
        .ok_or("no certificate in the gateway's PEM")?
        .map_err(|e| format!("the gateway's certificate PEM: {e}"))?;
    let key = PublicKey::from_certificate(&der).map_err(|e| e.to_string())?;
    let gateway_keyid = keyid(&der);
    let header = pb::Header::decode(receipt.header.as_slice()).map_err(|e| e.to_string())?;
    if header.sender != gateway_id {
        return Err(format!(
            "the receipt is from {:?}, not the gateway",
            header.sender
        ));
    }
    if header.payload_sha256 != sha256(&receipt.payload).to_vec() {
        return Err("the receipt's header does not commit to its payload".into());
    }
    let signature = receipt
        .signatures
        .iter()
        .find(|s| s.keyid == gateway_keyid)
        .ok_or("the receipt is not signed with the gateway's certificate")?;
    key.verify(
        &header_pae(&receipt.header),
        &signature.sig,
        &signature.keyid,
    )
    .map_err(|e| e.to_string())?;
    let body = pb::Receipt::decode(receipt.payload.as_slice()).map_err(|e| e.to_string())?;
    let mine = pb::Header::decode(sent.header.as_slice()).map_err(|e| e.to_string())?;
    if body.header_sha256 != sha256(&sent.header).to_vec()
        || body.message_id != mine.message_id
        || body.sender != mine.sender
    {
        return Err("the receipt is about another envelope".into());
    }
    Ok(body)
}

/// Message ids already handed over, kept in a file (one id per line, appended and synced
/// before the acknowledgement is sent), so they survive a restart.
pub struct Seen {
    path: PathBuf,
    ids: HashSet<String>,
}

impl Seen {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let ids = match std::fs::read_to_string(path) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            path: path.to_owned(),
            ids,
        })
    }

    pub fn contains(&self, message_id: &str) -> bool {
        self.ids.contains(message_id)
    }

    /// Records a message id durably.
    pub fn insert(&mut self, message_id: &str) -> std::io::Result<()> {
        if self.ids.contains(message_id) {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        writeln!(f, "{message_id}")?;
        f.sync_data()?;
        self.ids.insert(message_id.to_owned());
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The gateway's receipt attached to a delivery, decoded (default when absent).
pub fn receipt_of(d: &pb::MailboxDelivery) -> pb::Receipt {
    d.receipt
        .as_ref()
        .and_then(|r| pb::Receipt::decode(r.payload.as_slice()).ok())
        .unwrap_or_default()
}

/// The case a delivery belongs to: its receipt's case id, else its header's subject.
pub fn case_id_of(d: &pb::MailboxDelivery, header: &pb::Header) -> String {
    let case_id = receipt_of(d).case_id;
    if case_id.is_empty() {
        header.subject.clone()
    } else {
        case_id
    }
}

/// A request carrying a W3C `traceparent` (from a delivered message) as gRPC metadata, so the
/// call joins the message's trace; without one (or with an empty or malformed one) a plain request.
pub fn traced<T>(message: T, traceparent: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = traceparent
        .filter(|t| !t.is_empty())
        .and_then(|t| t.parse().ok())
    {
        request.metadata_mut().insert("traceparent", value);
    }
    request
}

/// The signed acknowledgement of one delivery.
pub fn acknowledgement(
    signer: &Signer,
    partner_id: &str,
    delivery: &pb::MailboxDelivery,
) -> Result<pb::SignedEnvelope, String> {
    let env = delivery
        .envelope
        .as_ref()
        .ok_or("the delivery has no envelope")?;
    let header = pb::Header::decode(env.header.as_slice()).map_err(|e| e.to_string())?;
    let ack = pb::Acknowledgement {
        message_id: header.message_id,
        cursor: delivery.cursor,
        header_sha256: sha256(&env.header).to_vec(),
        case_id: String::new(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    signer
        .seal(
            pb::Header {
                message_id: uuid::Uuid::new_v4().to_string(),
                sender: partner_id.to_owned(),
                created_at: Some(prost_types::Timestamp {
                    seconds: now,
                    nanos: 0,
                }),
                ..Default::default()
            },
            &ack,
        )
        .map_err(|e| e.to_string())
}

/// Why the mailbox loop stopped.
#[derive(Debug)]
pub enum MailboxEnd {
    /// The stream ended or failed: reconnect with backoff.
    Stream(tonic::Status),
    /// The handler could not hand this message over; it stays unacknowledged. Retry handing it
    /// over outside the stream (no delivery attempts are spent meanwhile), record it as seen,
    /// then subscribe again.
    Handler {
        reason: String,
        delivery: Box<pb::MailboxDelivery>,
    },
    /// The seen-file could not be written.
    Seen(std::io::Error),
}

/// Subscribes to the partner's mailbox and hands each message not seen before to `hand_over`
/// (which returns once the partner's system has it); records it as seen, then acknowledges it.
/// A message already seen (redelivered after a crash between hand-over and acknowledgement) is
/// only acknowledged. Returns when the stream ends or a hand-over fails.
pub async fn run_mailbox<F, Fut>(
    channel: tonic::transport::Channel,
    signer: &Signer,
    partner_id: &str,
    seen: &mut Seen,
    mut hand_over: F,
) -> MailboxEnd
where
    F: FnMut(pb::MailboxDelivery) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut delivery = pb::delivery_client::DeliveryClient::new(channel);
    let mut stream = match delivery
        .subscribe(pb::SubscribeRequest {
            from_cursor: 0,
            window: 16,
        })
        .await
    {
        Ok(s) => s.into_inner(),
        Err(s) => return MailboxEnd::Stream(s),
    };
    loop {
        let d = match stream.message().await {
            Ok(Some(d)) => d,
            Ok(None) => {
                return MailboxEnd::Stream(tonic::Status::unavailable("the mailbox stream ended"));
            }
            Err(s) => return MailboxEnd::Stream(s),
        };
        let message_id = d
            .envelope
            .as_ref()
            .and_then(|e| pb::Header::decode(e.header.as_slice()).ok())
            .map(|h| h.message_id)
            .unwrap_or_default();
        if !seen.contains(&message_id) {
            if let Err(reason) = hand_over(d.clone()).await {
                return MailboxEnd::Handler {
                    reason,
                    delivery: Box::new(d),
                };
            }
            if let Err(e) = seen.insert(&message_id) {
                return MailboxEnd::Seen(e);
            }
        }
        let ack = match acknowledgement(signer, partner_id, &d) {
            Ok(a) => a,
            Err(e) => {
                return MailboxEnd::Stream(tonic::Status::internal(format!(
                    "cannot sign the acknowledgement: {e}"
                )));
            }
        };
        if let Err(s) = delivery
            .acknowledge(traced(ack, Some(&d.traceparent)))
            .await
        {
            return MailboxEnd::Stream(s);
        }
    }
}
