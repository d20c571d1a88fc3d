//! The agency adapter (labour inspection, housing, transport, water): every message in the
//! agency's mailbox is POSTed as JSON to the agency's webhook, retried until the webhook answers
//! 2xx, recorded as handed over, then acknowledged — so while the webhook is down deliveries
//! wait, and after it comes back (or after the adapter restarts) each arrives once.
//!
//! The webhook body (one message):
//!
//! ```json
//! {"message_id": "…", "sender": "source-national-platform", "payload_type": "wagelink.v1.Lead",
//!  "case_id": "WL-20261128-000042", "in_reply_to": "", "created_at": 1795843581,
//!  "cursor": 7, "action": "",
//!  "envelope_base64": "…", "receipt_base64": "…",
//!  "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
//! ```
//!
//! `envelope_base64` is the `wagelink.v1.SignedEnvelope` exactly as its sender signed it (its
//! payload may be empty for a lead the agency co-handles: read the lead with `Cases.GetCase`);
//! `receipt_base64` the gateway's signed receipt; `action` names the step of a
//! `wagelink.v1.CaseAction` (`sign_for`, `resolve`, …); `traceparent` the W3C trace context of
//! the message — send it back as the `traceparent` header of the REST calls you make about it and
//! the whole case is one trace. See README.md beside this file.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use prost::{Message, Name};
use serde::Deserialize;
use wagelink_proto::envelope::Signer;
use wagelink_proto::v1 as pb;

pub mod rest;

use crate::client::{self, Credentials, GatewayAddress};
use crate::kit::{MailboxEnd, Seen, run_mailbox};

/// `[agency]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyConfig {
    /// The agency's partner id, e.g. `hrss-500112`.
    pub id: String,
    /// `http://host:port/path` of the agency system's webhook. Exactly one of `webhook` and
    /// `package_dir` is given.
    pub webhook: Option<String>,
    /// For public security: the folder where referral packages are written (see
    /// [`crate::police`]) instead of posting to a webhook.
    pub package_dir: Option<PathBuf>,
    /// Folder for the adapter's state (the record of messages handed over, kept requests).
    pub state_dir: PathBuf,
    /// Where the local REST API listens (loopback only), e.g. `127.0.0.1:9100`. Unset: no API.
    pub rest_listen: Option<std::net::SocketAddr>,
    /// The shared document store for referral packages (`<store>/<sha256 hex>`). Optional.
    pub document_store: Option<PathBuf>,
}

/// The JSON the webhook receives for one message.
pub fn webhook_body(d: &pb::MailboxDelivery) -> Result<Vec<u8>, String> {
    let env = d.envelope.as_ref().ok_or("the delivery has no envelope")?;
    let h = pb::Header::decode(env.header.as_slice()).map_err(|e| e.to_string())?;
    let action = if h.payload_type == pb::CaseAction::full_name() {
        pb::CaseAction::decode(env.payload.as_slice())
            .ok()
            .and_then(|a| a.action)
            .map(|a| a.name())
            .unwrap_or("")
    } else {
        ""
    };
    let receipt = d
        .receipt
        .as_ref()
        .map(|r| r.encode_to_vec())
        .unwrap_or_default();
    let case_id = crate::kit::case_id_of(d, &h);
    let body = serde_json::json!({
        "message_id": h.message_id,
        "sender": h.sender,
        "payload_type": h.payload_type,
        "case_id": case_id,
        "in_reply_to": h.in_reply_to,
        "created_at": h.created_at.map(|t| t.seconds).unwrap_or_default(),
        "cursor": d.cursor,
        "action": action,
        "envelope_base64": B64.encode(env.encode_to_vec()),
        "receipt_base64": B64.encode(receipt),
        "traceparent": d.traceparent,
    });
    serde_json::to_vec(&body).map_err(|e| e.to_string())
}

/// POSTs one message to the webhook; Ok on 2xx.
pub async fn post(webhook: &str, d: &pb::MailboxDelivery) -> Result<(), String> {
    let (address, path) = crate::http::split_url(webhook)?;
    let body = webhook_body(d)?;
    let (status, _) = crate::http::request(&address, "POST", &path, Some(&body)).await?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("the webhook answered {status}"))
    }
}

/// Where mailbox messages go.
#[derive(Clone)]
enum Sink {
    Webhook(String),
    Package {
        dir: PathBuf,
        store: Option<PathBuf>,
    },
}

impl Sink {
    async fn hand_over(
        &self,
        mut cases: pb::cases_client::CasesClient<tonic::transport::Channel>,
        d: &pb::MailboxDelivery,
    ) -> Result<(), String> {
        match self {
            Sink::Webhook(url) => post(url, d).await,
            Sink::Package { dir, store } => {
                // The case's clocks, for the Decree 310 due dates in the manifest.
                let case_id = crate::kit::receipt_of(d).case_id;
                let deadlines = if case_id.is_empty() {
                    Vec::new()
                } else {
                    cases
                        .get_case(pb::GetCaseRequest { case_id })
                        .await
                        .map(|v| v.into_inner().deadlines)
                        .unwrap_or_default()
                };
                crate::police::write(dir, store.as_deref(), d, &deadlines).map(|_| ())
            }
        }
    }
}

/// Runs the agency adapter until `stop` resolves: mailbox → webhook, exactly once per message
/// while the adapter's state folder is kept.
pub async fn run_agency(
    gateway: crate::bank::runner::GatewayConfig,
    agency: AgencyConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let credentials = Credentials::from_dir(&gateway.credentials).map_err(|e| e.to_string())?;
    let signer = Signer::from_pem(&credentials.cert_pem, &credentials.key_pem)
        .map_err(|e| format!("the agency's certificate cannot sign: {e}"))?;
    let sink = match (&agency.webhook, &agency.package_dir) {
        (Some(url), None) => Sink::Webhook(url.clone()),
        (None, Some(dir)) => Sink::Package {
            dir: dir.clone(),
            store: agency.document_store.clone(),
        },
        _ => return Err("[agency] needs exactly one of webhook and package_dir".into()),
    };
    let mut seen = Seen::open(&agency.state_dir.join("handed-over.txt"))
        .map_err(|e| format!("cannot read the adapter's state: {e}"))?;
    let address = GatewayAddress {
        uri: gateway.address.clone(),
        server_name: gateway.server_name.clone(),
    };
    if let Some(listen) = agency.rest_listen {
        let listener = rest::bind(listen).await?;
        let channel = client::connect(&address, &credentials)
            .await
            .map_err(|e| format!("cannot reach the gateway for the REST API: {e}"))?;
        let api = std::sync::Arc::new(rest::Rest {
            agency_id: agency.id.clone(),
            signer: Signer::from_pem(&credentials.cert_pem, &credentials.key_pem)
                .map_err(|e| e.to_string())?,
            channel,
            state_dir: agency.state_dir.clone(),
            document_store: agency.document_store.clone(),
        });
        let server = tokio::spawn(rest::serve(api, listener));
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            server.abort();
        });
    }
    let mut backoff = Duration::from_millis(200);
    loop {
        let end = match client::connect(&address, &credentials).await {
            Ok(channel) => {
                let sink = sink.clone();
                let cases = pb::cases_client::CasesClient::new(channel.clone());
                let run = run_mailbox(channel, &signer, &agency.id, &mut seen, |d| {
                    let (sink, cases) = (sink.clone(), cases.clone());
                    async move { sink.hand_over(cases, &d).await }
                });
                tokio::select! {
                    end = run => Some(end),
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                }
            }
            Err(e) => {
                eprintln!("wagelink-adapter: cannot reach the gateway ({e})");
                None
            }
        };
        if let Some(MailboxEnd::Handler { reason, delivery }) = end {
            // The webhook is down: keep this message and retry it, without a stream open (so
            // no delivery attempts are spent), until the webhook takes it.
            eprintln!("wagelink-adapter: the webhook refused a message ({reason}); retrying");
            let id = delivery
                .envelope
                .as_ref()
                .and_then(|e| pb::Header::decode(e.header.as_slice()).ok())
                .map(|h| h.message_id)
                .unwrap_or_default();
            let mut wait = Duration::from_millis(200);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                }
                let cases = match client::connect(&address, &credentials).await {
                    Ok(c) => pb::cases_client::CasesClient::new(c),
                    Err(_) => continue,
                };
                if sink.hand_over(cases, &delivery).await.is_ok() {
                    seen.insert(&id)
                        .map_err(|e| format!("cannot record a message as handed over: {e}"))?;
                    break;
                }
                wait = (wait * 2).min(Duration::from_secs(30));
            }
            backoff = Duration::from_millis(200);
            continue;
        }
        if let Some(MailboxEnd::Seen(e)) = end {
            return Err(format!("cannot record a message as handed over: {e}"));
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
