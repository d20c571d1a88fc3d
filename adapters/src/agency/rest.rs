//! The agency adapter's local REST API: the agency's case system signs for, reports progress
//! on, returns, forwards, resolves and feeds back its cases with small JSON requests; the
//! adapter turns each into a `wagelink.v1.CaseAction`, signs it with the agency's key, sends it
//! to `Cases.ActOnCase` and answers with the gateway's receipt. A request repeated with the same
//! `Idempotency-Key` header resends the very same signed envelope (kept in the state folder),
//! so the gateway answers with the original receipt and the step is taken once.
//!
//! Listens on loopback only: it signs as the agency.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use prost::Message;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wagelink_proto::envelope::{Signer, sha256};
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::case_action::{self as ca, Action};

/// What the REST API needs to act as the agency.
pub struct Rest {
    pub agency_id: String,
    pub signer: Signer,
    pub channel: tonic::transport::Channel,
    /// Where signed requests are kept by idempotency key.
    pub state_dir: PathBuf,
    /// The shared document store (content-addressed: `<store>/<sha256 hex>`): documents of a
    /// forward given by `path` are copied there for the receiving side to collect.
    pub document_store: Option<PathBuf>,
}

/// `outside-region` → `RETURN_REASON_OUTSIDE_REGION` → the enum value.
fn enum_value(prefix: &str, name: &str, from: fn(&str) -> Option<i32>) -> Result<i32, String> {
    from(&format!(
        "{prefix}{}",
        name.to_uppercase().replace('-', "_")
    ))
    .filter(|v| *v != 0)
    .ok_or_else(|| format!("{name:?} is not a known value"))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Body {
    note: String,
    text: String,
    amount_paid_so_far_fen: i64,
    workers_paid_so_far: u32,
    next_step_on: String,
    reason: String,
    explanation: String,
    suggested_handler: String,
    conclusion: String,
    channel: String,
    amount_recovered_fen: i64,
    workers_paid: u32,
    resolved_on: String,
    summary: String,
    reporter_contacted: bool,
    reporter_satisfied: Option<bool>,
    to_partner: String,
    documents: Vec<Document>,
    criminal_referral: Option<Referral>,
    court_request: Option<CourtRequest>,
    kind: String,
    decision_number: String,
    amount_ordered_fen: i64,
    amount_enforced_fen: i64,
    worker_count: u32,
    outcome: String,
    police_case_number: String,
    decided_on: String,
    referral_message_id: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Document {
    /// A local file: its digest and size are computed, and it is copied to the document store.
    path: String,
    file_name: String,
    sha256: String,
    size_bytes: u64,
    kind: String,
    media_type: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CourtRequest {
    kind: String,
    decision_number: String,
    amount_fen: i64,
    worker_count: u32,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Referral {
    amount_fen: i64,
    worker_count: u32,
    months_owed: u32,
    order_to_pay_number: String,
    order_delivered_on: String,
    decided_on: String,
}

/// The case action a request asks for, and the message it answers (Header.in_reply_to).
fn action(step: &str, body: &[u8], store: Option<&PathBuf>) -> Result<(Action, String), String> {
    let b: Body = if body.is_empty() {
        Body::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| format!("the body is not the JSON expected: {e}"))?
    };
    let in_reply_to = b.referral_message_id.clone();
    let action = match step {
        "court-result" => Action::CourtResult(ca::CourtResult {
            kind: enum_value("COURT_RESULT_KIND_", &b.kind, |s| {
                pb::CourtResultKind::from_str_name(s).map(|v| v as i32)
            })
            .map_err(|e| format!("kind: {e}"))?,
            decision_number: b.decision_number,
            decided_on: b.decided_on.clone(),
            amount_ordered_fen: b.amount_ordered_fen,
            amount_enforced_fen: b.amount_enforced_fen,
            worker_count: b.worker_count,
            summary: b.summary.clone(),
        }),
        "filing-decision" => Action::FilingDecision(ca::FilingDecision {
            outcome: enum_value("FILING_OUTCOME_", &b.outcome, |s| {
                pb::FilingOutcome::from_str_name(s).map(|v| v as i32)
            })
            .map_err(|e| format!("outcome: {e}"))?,
            reason: b.reason,
            police_case_number: b.police_case_number,
            decided_on: b.decided_on,
        }),
        "sign-for" => Action::SignFor(ca::SignFor { note: b.note }),
        "progress" => Action::Progress(ca::Progress {
            note: b.note,
            amount_paid_so_far_fen: b.amount_paid_so_far_fen,
            workers_paid_so_far: b.workers_paid_so_far,
            checks: Vec::new(),
            next_step_on: b.next_step_on,
        }),
        "return" => Action::ReturnCase(ca::Return {
            reason: enum_value("RETURN_REASON_", &b.reason, |s| {
                pb::ReturnReason::from_str_name(s).map(|v| v as i32)
            })
            .map_err(|e| format!("reason: {e}"))?,
            explanation: b.explanation,
            suggested_handler: b.suggested_handler,
        }),
        "resolve" => Action::Resolve(ca::Resolve {
            conclusion: enum_value("CASE_CONCLUSION_", &b.conclusion, |s| {
                pb::CaseConclusion::from_str_name(s).map(|v| v as i32)
            })
            .map_err(|e| format!("conclusion: {e}"))?,
            channel: enum_value("RESOLUTION_CHANNEL_", &b.channel, |s| {
                pb::ResolutionChannel::from_str_name(s).map(|v| v as i32)
            })
            .map_err(|e| format!("channel: {e}"))?,
            amount_recovered_fen: b.amount_recovered_fen,
            workers_paid: b.workers_paid,
            resolved_on: b.resolved_on,
            summary: b.summary,
        }),
        "feedback" => Action::Feedback(ca::Feedback {
            text: b.text,
            reporter_contacted: b.reporter_contacted,
            reporter_satisfied: b.reporter_satisfied,
        }),
        "forward" => {
            let target = match (b.criminal_referral, b.court_request) {
                (Some(r), None) => ca::forward::Target::CriminalReferral(ca::CriminalReferral {
                    amount_fen: r.amount_fen,
                    worker_count: r.worker_count,
                    months_owed: r.months_owed,
                    order_to_pay_number: r.order_to_pay_number,
                    order_delivered_on: r.order_delivered_on,
                    decided_on: r.decided_on,
                }),
                (None, Some(c)) => ca::forward::Target::Court(ca::CourtRequest {
                    kind: enum_value("COURT_REQUEST_KIND_", &c.kind, |s| {
                        pb::CourtRequestKind::from_str_name(s).map(|v| v as i32)
                    })
                    .map_err(|e| format!("court_request.kind: {e}"))?,
                    decision_number: c.decision_number,
                    amount_fen: c.amount_fen,
                    worker_count: c.worker_count,
                }),
                _ => {
                    return Err("forward takes one of criminal_referral and court_request".into());
                }
            };
            let mut documents = Vec::new();
            for (i, d) in b.documents.into_iter().enumerate() {
                let (digest, size) = if d.path.is_empty() {
                    let digest = hex::decode(&d.sha256)
                        .ok()
                        .filter(|d| d.len() == 32)
                        .ok_or_else(|| format!("documents[{i}].sha256 is not 64 hex characters"))?;
                    (digest, d.size_bytes)
                } else {
                    let bytes = std::fs::read(&d.path).map_err(|e| {
                        format!("documents[{i}].path: cannot read {:?}: {e}", d.path)
                    })?;
                    let digest = sha256(&bytes);
                    if let Some(store) = store {
                        std::fs::create_dir_all(store)
                            .and_then(|_| std::fs::write(store.join(hex::encode(digest)), &bytes))
                            .map_err(|e| {
                                format!("cannot put documents[{i}] in the document store: {e}")
                            })?;
                    }
                    (digest.to_vec(), bytes.len() as u64)
                };
                let file_name = if d.file_name.is_empty() {
                    std::path::Path::new(&d.path)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                } else {
                    d.file_name
                };
                documents.push(pb::Document {
                    file_name,
                    sha256: digest,
                    size_bytes: size,
                    kind: enum_value("DOCUMENT_KIND_", &d.kind, |s| {
                        pb::DocumentKind::from_str_name(s).map(|v| v as i32)
                    })
                    .map_err(|e| format!("documents[{i}].kind: {e}"))?,
                    media_type: d.media_type,
                });
            }
            Action::Forward(ca::Forward {
                to_partner: b.to_partner,
                summary: b.summary,
                documents,
                target: Some(target),
            })
        }
        other => {
            return Err(format!(
                "{other:?} is not a step: use sign-for, progress, return, forward, resolve, feedback, filing-decision or court-result"
            ));
        }
    };
    Ok((action, in_reply_to))
}

/// gRPC code → HTTP status.
fn http_status(code: tonic::Code) -> u16 {
    match code {
        tonic::Code::InvalidArgument => 400,
        tonic::Code::Unauthenticated => 401,
        tonic::Code::PermissionDenied => 403,
        tonic::Code::NotFound => 404,
        tonic::Code::AlreadyExists => 409,
        tonic::Code::FailedPrecondition => 412,
        tonic::Code::ResourceExhausted => 429,
        _ => 503,
    }
}

impl Rest {
    /// Signs (or takes back, for a repeated idempotency key) and submits one step.
    async fn act(
        &self,
        case_id: &str,
        step: &str,
        body: &[u8],
        key: Option<&str>,
        traceparent: Option<&str>,
    ) -> (u16, Value) {
        let kept = key.map(|k| {
            self.state_dir.join("requests").join(format!(
                "{}.bin",
                hex::encode(sha256(format!("{case_id}\n{step}\n{k}").as_bytes()))
            ))
        });
        let envelope = match kept.as_ref().and_then(|p| std::fs::read(p).ok()) {
            Some(bytes) => match pb::SignedEnvelope::decode(bytes.as_slice()) {
                Ok(e) => e,
                Err(e) => {
                    return (
                        500,
                        json!({"error": format!("a kept request is unreadable: {e}")}),
                    );
                }
            },
            None => {
                let (action, in_reply_to) = match action(step, body, self.document_store.as_ref()) {
                    Ok(a) => a,
                    Err(e) => return (400, json!({"error": e})),
                };
                let now = jiff::Timestamp::now().as_second();
                let header = pb::Header {
                    message_id: uuid::Uuid::new_v4().to_string(),
                    sender: self.agency_id.clone(),
                    created_at: Some(prost_types::Timestamp {
                        seconds: now,
                        nanos: 0,
                    }),
                    subject: case_id.to_owned(),
                    in_reply_to,
                    ..Default::default()
                };
                let payload = pb::CaseAction {
                    case_id: case_id.to_owned(),
                    action: Some(action),
                };
                let env = match self.signer.seal(header, &payload) {
                    Ok(e) => e,
                    Err(e) => return (500, json!({"error": format!("cannot sign: {e}")})),
                };
                // Kept before sending: a retry after a crash resends these very bytes.
                if let Some(p) = &kept {
                    let stored = p
                        .parent()
                        .map(std::fs::create_dir_all)
                        .transpose()
                        .and_then(|_| std::fs::write(p, env.encode_to_vec()));
                    if let Err(e) = stored {
                        return (
                            500,
                            json!({"error": format!("cannot keep the request: {e}")}),
                        );
                    }
                }
                env
            }
        };
        let answer = pb::cases_client::CasesClient::new(self.channel.clone())
            .act_on_case(crate::kit::traced(envelope, traceparent))
            .await;
        match answer {
            Ok(r) => {
                let Some(receipt) = r.into_inner().receipt else {
                    return (503, json!({"error": "the gateway sent no receipt"}));
                };
                let body = pb::Receipt::decode(receipt.payload.as_slice()).unwrap_or_default();
                (
                    200,
                    json!({
                        "message_id": body.message_id,
                        "case_id": body.case_id,
                        "log_index": body.log_index,
                        "routed_to": body.routed_to.iter().map(|r| r.partner_id.clone()).collect::<Vec<_>>(),
                        "receipt_base64": B64.encode(receipt.encode_to_vec()),
                    }),
                )
            }
            Err(s) => (
                http_status(s.code()),
                json!({"error": s.message(), "grpc_code": s.code() as i32}),
            ),
        }
    }
}

/// Serves the REST API on `listen` until the task is dropped.
pub async fn serve(rest: Arc<Rest>, listener: tokio::net::TcpListener) {
    while let Ok((mut socket, _)) = listener.accept().await {
        let rest = rest.clone();
        tokio::spawn(async move {
            let mut raw = Vec::new();
            let mut buf = [0u8; 8192];
            let (head, body) = loop {
                let n = socket.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > 1 << 20 {
                    return;
                }
                if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&raw[..end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if raw.len() >= end + 4 + len {
                        break (head, raw[end + 4..end + 4 + len].to_vec());
                    }
                }
            };
            let mut first = head.lines().next().unwrap_or("").split_whitespace();
            let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
            let header = |name: &str| {
                head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
            };
            let key = header("idempotency-key");
            let traceparent = header("traceparent");
            let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
            let (status, value) = match (method, parts.as_slice()) {
                ("POST", ["cases", case_id, step]) => {
                    rest.act(case_id, step, &body, key.as_deref(), traceparent.as_deref())
                        .await
                }
                _ => (
                    404,
                    json!({"error": "use POST /cases/{case_id}/{sign-for|progress|return|forward|resolve|feedback|filing-decision|court-result}"}),
                ),
            };
            let text = value.to_string();
            let reason = match status {
                200 => "OK",
                400 => "Bad Request",
                404 => "Not Found",
                _ => "Error",
            };
            let _ = socket
                .write_all(
                    format!(
                        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    )
                    .as_bytes(),
                )
                .await;
        });
    }
}

/// Binds the REST API's listener; only loopback addresses are accepted.
pub async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    if !listen.ip().is_loopback() {
        return Err(format!(
            "the REST API signs as the agency: listen on loopback only, not {listen}"
        ));
    }
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))
}
