//! camt entries and balances → wagelink account events, and their push to the gateway as one
//! signed batch per file (a file is taken whole or not at all).
//!
//! Mapping (for accounts the bank declares as dedicated wage accounts or guarantee deposits;
//! other accounts in a file are skipped, and only booked entries count):
//! - a credit on a wage account → `labour_cost_credited` (payer: the debtor's name);
//! - a debit on a wage account that is a batch (`NtryDtls/Btch`), has bank transaction code
//!   `…/SALA`, or says 工资 / 代发 / SALA / payroll → `payroll_paid`, its month taken from the
//!   remittance text (`YYYY-MM` or `YYYYMM`), else the month before the booking date;
//! - other debits on a wage account → not reported (no event kind for them);
//! - a credit / debit on a guarantee deposit → `deposit_stored` / `deposit_drawn`;
//! - each balance (camt.052 / .053) → `balance_reported` with its type code (CLBD, CLAV…).
//!
//! Event ids: the entry's `AcctSvcrRef`, else `<MsgId>/<report>/<entry>`; balances
//! `<MsgId>/<account>/<code>/<date>` — so a file sent twice yields the same events, which the
//! gateway stores once.

use std::collections::HashMap;

use prost::Message;
use serde::Deserialize;
use thiserror::Error;
use wagelink_proto::envelope::Signer;
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::account_event::{self as ae, Kind};

use super::camt::{CamtError, CamtFile, Entry};

/// What the bank's own account system says of a dedicated account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountInfo {
    /// As in the camt files (domestic number or IBAN).
    pub account_number: String,
    /// `wage-account` or `guarantee-deposit`.
    pub kind: String,
    #[serde(default)]
    pub project_code: String,
    #[serde(default)]
    pub contractor_uscc: String,
    /// The project's district or county code.
    pub region_code: String,
    #[serde(default)]
    pub branch_code: String,
}

/// The bank and its dedicated accounts.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    /// The bank's partner id, e.g. `bank-102`.
    pub bank_id: String,
    pub accounts: HashMap<String, AccountInfo>,
}

impl Mapping {
    pub fn new(bank_id: &str, accounts: Vec<AccountInfo>) -> Self {
        Self {
            bank_id: bank_id.to_owned(),
            accounts: accounts
                .into_iter()
                .map(|a| (a.account_number.clone(), a))
                .collect(),
        }
    }
}

/// Why a file could not be turned into events or pushed. Nothing of it was pushed.
#[derive(Debug, Error)]
pub enum IngestError {
    #[error("{0}")]
    Camt(#[from] CamtError),
    #[error("account {account}: kind {kind:?} is neither wage-account nor guarantee-deposit")]
    AccountKind { account: String, kind: String },
    #[error("the file holds no booked entry or balance of a dedicated account")]
    Nothing,
    #[error("cannot sign the batch: {0}")]
    Sign(String),
    #[error("the gateway refused the file's batch ({code:?}): {message}")]
    Refused { code: tonic::Code, message: String },
    #[error("the gateway could not be reached: {0}")]
    Transport(String),
}

fn midnight_china(date: &str) -> Option<prost_types::Timestamp> {
    let d: jiff::civil::Date = date.parse().ok()?;
    let z = d
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
        .ok()?;
    Some(prost_types::Timestamp {
        seconds: z.timestamp().as_second(),
        nanos: 0,
    })
}

/// The payroll month an entry pays: from its text, else the month before it was booked.
pub fn payroll_month(e: &Entry) -> String {
    let t = &e.remittance;
    let b = t.as_bytes();
    for i in 0..b.len() {
        let digits = |from: usize, n: usize| {
            b.get(from..from + n)
                .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
        };
        if digits(i, 4) && (i == 0 || !b[i - 1].is_ascii_digit()) {
            let year = &t[i..i + 4];
            let month = if b.get(i + 4) == Some(&b'-') && digits(i + 5, 2) {
                Some(&t[i + 5..i + 7])
            } else if digits(i + 4, 2) && !digits(i + 6, 1) {
                Some(&t[i + 4..i + 6])
            } else {
                None
            };
            if let Some(m) = month
                && year.starts_with("20")
                && ("01"..="12").contains(&m)
            {
                return format!("{year}-{m}");
            }
        }
    }
    e.booking_date
        .parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| {
            d.first_of_month()
                .checked_sub(jiff::Span::new().months(1))
                .ok()
        })
        .map(|d| d.strftime("%Y-%m").to_string())
        .unwrap_or_default()
}

fn is_payroll(e: &Entry) -> bool {
    let t = e.remittance.to_lowercase();
    e.batch.is_some()
        || e.bank_code.ends_with("/SALA")
        || ["工资", "代发", "sala", "payroll"]
            .iter()
            .any(|w| t.contains(w))
}

/// The account events a parsed file reports.
pub fn events(file: &CamtFile, m: &Mapping) -> Result<Vec<pb::AccountEvent>, IngestError> {
    let mut out = Vec::new();
    for (r, report) in file.reports.iter().enumerate() {
        let Some(info) = m.accounts.get(&report.account) else {
            continue;
        };
        let kind = match info.kind.as_str() {
            "wage-account" => pb::AccountKind::WageAccount,
            "guarantee-deposit" => pb::AccountKind::GuaranteeDeposit,
            other => {
                return Err(IngestError::AccountKind {
                    account: report.account.clone(),
                    kind: other.to_owned(),
                });
            }
        };
        let base = |event_id: String, at: &str, k: Kind| pb::AccountEvent {
            event_id,
            account_number: info.account_number.clone(),
            account_kind: kind as i32,
            bank_id: m.bank_id.clone(),
            branch_code: info.branch_code.clone(),
            project_code: info.project_code.clone(),
            contractor_uscc: info.contractor_uscc.clone(),
            region_code: info.region_code.clone(),
            occurred_at: midnight_china(at),
            kind: Some(k),
        };
        for b in &report.balances {
            out.push(base(
                format!(
                    "{}/{}/{}/{}",
                    file.message_id, report.account, b.code, b.date
                ),
                &b.date,
                Kind::BalanceReported(ae::BalanceReported {
                    balance_type: b.code.clone(),
                    amount_fen: b.amount_fen,
                    as_of_date: b.date.clone(),
                }),
            ));
        }
        for (n, e) in report.entries.iter().enumerate() {
            if e.status != "BOOK" {
                continue;
            }
            let id = if e.reference.is_empty() {
                format!("{}/{}/{}", file.message_id, r + 1, n + 1)
            } else {
                e.reference.clone()
            };
            let day = if e.booking_date.is_empty() {
                &e.value_date
            } else {
                &e.booking_date
            };
            let k = match (kind, e.credit) {
                (pb::AccountKind::WageAccount, true) => {
                    Kind::LabourCostCredited(ae::LabourCostCredited {
                        amount_fen: e.amount_fen,
                        payer_name: e.counterparty.clone(),
                        value_date: e.value_date.clone(),
                        remittance_info: e.remittance.chars().take(140).collect(),
                    })
                }
                (pb::AccountKind::WageAccount, false) if is_payroll(e) => {
                    Kind::PayrollPaid(ae::PayrollPaid {
                        payroll_month: payroll_month(e),
                        count: e.batch.map_or(1, |(n, _)| n.max(1)),
                        total_fen: e.amount_fen,
                        batch_reference: e.reference.clone(),
                    })
                }
                (pb::AccountKind::WageAccount, false) => continue,
                (_, true) => Kind::DepositStored(ae::DepositStored {
                    amount_fen: e.amount_fen,
                }),
                (_, false) => Kind::DepositDrawn(ae::DepositDrawn {
                    amount_fen: e.amount_fen,
                    payment_notice_number: String::new(),
                    worker_count: 0,
                }),
            };
            out.push(base(id, day, k));
        }
    }
    if out.is_empty() {
        return Err(IngestError::Nothing);
    }
    Ok(out)
}

/// Parses a camt file, maps it and pushes it as one signed batch; returns the gateway's receipt
/// and how many events it carried. A file that does not parse or map is refused whole.
pub async fn ingest(
    channel: tonic::transport::Channel,
    signer: &Signer,
    mapping: &Mapping,
    xml: &str,
) -> Result<(pb::SignedEnvelope, usize), IngestError> {
    let file = super::camt::parse(xml)?;
    let events = events(&file, mapping)?;
    let batch = pb::AccountEventBatch {
        events: events.iter().map(|e| e.encode_to_vec()).collect(),
    };
    let header = pb::Header {
        message_id: uuid::Uuid::new_v4().to_string(),
        sender: mapping.bank_id.clone(),
        created_at: Some(prost_types::Timestamp {
            seconds: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default(),
            nanos: 0,
        }),
        ..Default::default()
    };
    let envelope = signer
        .seal(header, &batch)
        .map_err(|e| IngestError::Sign(e.to_string()))?;
    let mut answers = pb::banks_client::BanksClient::new(channel)
        .push_events(tokio_stream::iter(vec![envelope]))
        .await
        .map_err(|s| IngestError::Transport(s.to_string()))?
        .into_inner();
    let answer = answers
        .message()
        .await
        .map_err(|s| IngestError::Transport(s.to_string()))?
        .ok_or_else(|| IngestError::Transport("the stream ended without an answer".into()))?;
    match answer.result {
        Some(pb::push_events_response::Result::Receipt(r)) => Ok((r, events.len())),
        Some(pb::push_events_response::Result::Rejected(r)) => Err(IngestError::Refused {
            code: tonic::Code::from_i32(r.code),
            message: r.message,
        }),
        None => Err(IngestError::Transport("an empty answer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(remittance: &str, booking: &str) -> Entry {
        Entry {
            amount_fen: 100,
            credit: false,
            status: "BOOK".into(),
            booking_date: booking.into(),
            value_date: booking.into(),
            reference: "R".into(),
            bank_code: String::new(),
            batch: None,
            remittance: remittance.into(),
            counterparty: String::new(),
        }
    }

    #[test]
    fn the_payroll_month_comes_from_the_text_or_the_month_before_booking() {
        assert_eq!(
            payroll_month(&entry("代发工资 2026-09 第一批", "2026-10-10")),
            "2026-09"
        );
        assert_eq!(
            payroll_month(&entry("SALA 202608", "2026-10-10")),
            "2026-08"
        );
        assert_eq!(payroll_month(&entry("代发工资", "2026-01-10")), "2025-12");
        assert_eq!(
            payroll_month(&entry("ref 20261399", "2026-03-05")),
            "2026-02"
        );
        assert!(is_payroll(&entry("代发工资", "2026-01-10")));
        assert!(!is_payroll(&entry("材料款", "2026-01-10")));
    }
}
