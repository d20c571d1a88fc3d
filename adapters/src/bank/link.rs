//! The bank side of `Banks.Link`: keeps a link open to the gateway, answers each account query
//! by calling the bank core's HTTP API (JSON) and signing the answer, and refuses what the core
//! refuses. The bank never accepts connections: the link is outbound.
//!
//! The core API this adapter speaks (paths relative to the configured base URL):
//! - `GET /accounts/{account}/balance` →
//!   `{"balance_fen": 0, "available_fen": 0, "as_of": "2026-11-27T18:00:00+08:00"}`
//! - `GET /accounts/{account}/transactions?from=YYYY-MM-DD&to=YYYY-MM-DD` →
//!   `{"transactions": [{"booking_date", "value_date", "amount_fen", "direction": "credit"|"debit",
//!   "counterparty_name", "bank_reference", "remittance_info", "batch_count"}], "truncated": false}`
//! - `GET /accounts/{account}/payroll?month=YYYY-MM` →
//!   `{"month", "batches", "lines_paid", "total_paid_fen", "lines_failed", "total_failed_fen",
//!   "lines": [{"worker_name", "card_last4", "amount_fen", "paid", "failure_reason", "paid_on"}]}`
//!
//! Core answers 404 → UNKNOWN_ACCOUNT, 403 → NOT_AUTHORISED, 400 → INVALID_QUERY, 429 / 503 →
//! OVER_CAPACITY, anything else (or no answer) → INTERNAL_ERROR.

use std::sync::Arc;

use prost::Message;
use serde::Deserialize;
use tokio::sync::mpsc;
use wagelink_proto::envelope::Signer;
use wagelink_proto::v1 as pb;

/// Where the bank core's API listens: `http://host:port` (plain HTTP inside the bank).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreApi {
    /// `host:port`.
    pub address: String,
}

impl CoreApi {
    /// From `http://host:port` (a trailing `/` is allowed).
    pub fn from_url(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("the core API URL {url:?} must start with http://"))?;
        let address = rest.trim_end_matches('/');
        if address.is_empty() || address.contains('/') {
            return Err(format!("the core API URL {url:?} must be http://host:port"));
        }
        Ok(Self {
            address: address.to_owned(),
        })
    }
}

#[derive(Deserialize)]
struct Balance {
    balance_fen: i64,
    available_fen: i64,
    #[serde(default)]
    as_of: String,
}

#[derive(Deserialize)]
struct Transaction {
    #[serde(default)]
    booking_date: String,
    #[serde(default)]
    value_date: String,
    amount_fen: i64,
    direction: String,
    #[serde(default)]
    counterparty_name: String,
    #[serde(default)]
    bank_reference: String,
    #[serde(default)]
    remittance_info: String,
    #[serde(default)]
    batch_count: u32,
}

#[derive(Deserialize)]
struct Transactions {
    transactions: Vec<Transaction>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Deserialize)]
struct PayrollLine {
    #[serde(default)]
    worker_name: String,
    #[serde(default)]
    card_last4: String,
    amount_fen: i64,
    paid: bool,
    #[serde(default)]
    failure_reason: String,
    #[serde(default)]
    paid_on: String,
}

#[derive(Deserialize)]
struct Payroll {
    month: String,
    batches: u32,
    lines_paid: u32,
    total_paid_fen: i64,
    lines_failed: u32,
    total_failed_fen: i64,
    #[serde(default)]
    lines: Vec<PayrollLine>,
}

fn timestamp(rfc3339: &str) -> Option<prost_types::Timestamp> {
    let t: jiff::Timestamp = rfc3339.parse().ok()?;
    Some(prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: 0,
    })
}

/// Why the core could not answer, as a link refusal.
fn refusal(status: u16) -> pb::RefusalReason {
    match status {
        404 => pb::RefusalReason::UnknownAccount,
        403 => pb::RefusalReason::NotAuthorised,
        400 => pb::RefusalReason::InvalidQuery,
        429 | 503 => pb::RefusalReason::OverCapacity,
        _ => pb::RefusalReason::InternalError,
    }
}

/// Asks the core for what a query wants.
async fn ask_core(
    core: &CoreApi,
    q: &pb::AccountQuery,
) -> Result<pb::account_query_answer::Result, (pb::RefusalReason, String)> {
    use pb::account_query::Period;
    use pb::account_query_answer::Result as R;
    let account = &q.account_number;
    let path = match (
        pb::AccountQueryKind::try_from(q.kind).unwrap_or_default(),
        &q.period,
    ) {
        (pb::AccountQueryKind::Balance, _) => format!("/accounts/{account}/balance"),
        (pb::AccountQueryKind::Transactions, Some(Period::Dates(d))) => {
            format!(
                "/accounts/{account}/transactions?from={}&to={}",
                d.from, d.to
            )
        }
        (pb::AccountQueryKind::Transactions, Some(Period::Month(m))) => {
            format!("/accounts/{account}/transactions?month={m}")
        }
        (pb::AccountQueryKind::Payroll, Some(Period::Month(m))) => {
            format!("/accounts/{account}/payroll?month={m}")
        }
        _ => {
            return Err((
                pb::RefusalReason::InvalidQuery,
                "the query's kind and period do not match".into(),
            ));
        }
    };
    let (status, body) = crate::http::request(&core.address, "GET", &path, None)
        .await
        .map_err(|e| (pb::RefusalReason::InternalError, e))?;
    if status != 200 {
        return Err((
            refusal(status),
            format!("the bank core answered {status} for this account"),
        ));
    }
    let bad = |e: serde_json::Error| {
        (
            pb::RefusalReason::InternalError,
            format!("the bank core's answer was not understood: {e}"),
        )
    };
    Ok(
        match pb::AccountQueryKind::try_from(q.kind).unwrap_or_default() {
            pb::AccountQueryKind::Balance => {
                let b: Balance = serde_json::from_slice(&body).map_err(bad)?;
                R::Balance(pb::AccountBalance {
                    balance_fen: b.balance_fen,
                    available_fen: b.available_fen,
                    as_of: timestamp(&b.as_of),
                })
            }
            pb::AccountQueryKind::Transactions => {
                let t: Transactions = serde_json::from_slice(&body).map_err(bad)?;
                R::Transactions(pb::TransactionList {
                    transactions: t
                        .transactions
                        .into_iter()
                        .map(|x| pb::AccountTransaction {
                            booking_date: x.booking_date,
                            value_date: x.value_date,
                            amount_fen: x.amount_fen,
                            direction: if x.direction == "credit" {
                                pb::TransactionDirection::Credit as i32
                            } else {
                                pb::TransactionDirection::Debit as i32
                            },
                            counterparty_name: x.counterparty_name,
                            bank_reference: x.bank_reference,
                            remittance_info: x.remittance_info,
                            batch_count: x.batch_count,
                        })
                        .collect(),
                    truncated: t.truncated,
                })
            }
            _ => {
                let p: Payroll = serde_json::from_slice(&body).map_err(bad)?;
                R::Payroll(pb::PayrollSummary {
                    month: p.month,
                    batches: p.batches,
                    lines_paid: p.lines_paid,
                    total_paid_fen: p.total_paid_fen,
                    lines_failed: p.lines_failed,
                    total_failed_fen: p.total_failed_fen,
                    lines: p
                        .lines
                        .into_iter()
                        .map(|l| pb::PayrollLine {
                            worker_name: l.worker_name,
                            // Never more than the last four digits of a card.
                            card_last4: l
                                .card_last4
                                .chars()
                                .rev()
                                .take(4)
                                .collect::<Vec<_>>()
                                .into_iter()
                                .rev()
                                .collect(),
                            amount_fen: l.amount_fen,
                            paid: l.paid,
                            failure_reason: l.failure_reason,
                            paid_on: l.paid_on,
                        })
                        .collect(),
                })
            }
        },
    )
}

/// The bank's signed answer to one query, or its refusal.
async fn handle(
    core: &CoreApi,
    signer: &Signer,
    bank_id: &str,
    q: pb::LinkQuery,
) -> pb::BankLinkUp {
    let refuse = |reason: pb::RefusalReason, message: String| pb::BankLinkUp {
        msg: Some(pb::bank_link_up::Msg::Refusal(pb::LinkRefusal {
            correlation_id: q.correlation_id.clone(),
            reason: reason as i32,
            message,
        })),
    };
    let Some(env) = q.query.as_ref() else {
        return refuse(pb::RefusalReason::InvalidQuery, "the query is empty".into());
    };
    let (Ok(header), Ok(query)) = (
        pb::Header::decode(env.header.as_slice()),
        pb::AccountQuery::decode(env.payload.as_slice()),
    ) else {
        return refuse(
            pb::RefusalReason::InvalidQuery,
            "the query does not decode".into(),
        );
    };
    let result = match ask_core(core, &query).await {
        Ok(r) => r,
        Err((reason, message)) => return refuse(reason, message),
    };
    let now = jiff::Timestamp::now().as_second();
    let answer = pb::AccountQueryAnswer {
        query_message_id: header.message_id.clone(),
        account_number: query.account_number.clone(),
        kind: query.kind,
        answered_at: Some(prost_types::Timestamp {
            seconds: now,
            nanos: 0,
        }),
        result: Some(result),
    };
    let answer_header = pb::Header {
        message_id: uuid::Uuid::new_v4().to_string(),
        sender: bank_id.to_owned(),
        created_at: Some(prost_types::Timestamp {
            seconds: now,
            nanos: 0,
        }),
        subject: query.account_number,
        in_reply_to: header.message_id,
        ..Default::default()
    };
    match signer.seal(answer_header, &answer) {
        Ok(signed) => pb::BankLinkUp {
            msg: Some(pb::bank_link_up::Msg::Answer(pb::LinkAnswer {
                correlation_id: q.correlation_id.clone(),
                answer: Some(signed),
            })),
        },
        Err(e) => refuse(
            pb::RefusalReason::InternalError,
            format!("cannot sign: {e}"),
        ),
    }
}

/// Keeps one link open until it ends: answers queries concurrently (up to `capacity`), answers
/// pings. Returns when the gateway ends the stream or the connection drops; callers reconnect
/// with backoff.
pub async fn serve_link(
    channel: tonic::transport::Channel,
    signer: Arc<Signer>,
    bank_id: String,
    core: CoreApi,
    capacity: u32,
) -> Result<(), tonic::Status> {
    let (up, rx) = mpsc::channel::<pb::BankLinkUp>(capacity.max(1) as usize + 8);
    up.send(pb::BankLinkUp {
        msg: Some(pb::bank_link_up::Msg::Hello(pb::LinkHello {
            capacity,
            software: concat!("wagelink-adapter ", env!("CARGO_PKG_VERSION")).into(),
        })),
    })
    .await
    .map_err(|_| tonic::Status::internal("the link's sender closed"))?;
    let mut down = pb::banks_client::BanksClient::new(channel)
        .link(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    while let Some(message) = down.message().await? {
        match message.msg {
            Some(pb::bank_link_down::Msg::Query(q)) => {
                let (up, signer, bank_id, core) =
                    (up.clone(), signer.clone(), bank_id.clone(), core.clone());
                tokio::spawn(async move {
                    let answer = handle(&core, &signer, &bank_id, q).await;
                    let _ = up.send(answer).await;
                });
            }
            Some(pb::bank_link_down::Msg::Ping(p)) => {
                let _ = up
                    .send(pb::BankLinkUp {
                        msg: Some(pb::bank_link_up::Msg::Pong(pb::LinkPong { nonce: p.nonce })),
                    })
                    .await;
            }
            Some(pb::bank_link_down::Msg::AnswerReceipt(_)) | None => {}
        }
    }
    Ok(())
}
