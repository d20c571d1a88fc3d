//! One account event: its checks (each refusal names the field, with the event's place in its
//! batch), and what it says about its account.

use wagelink_proto::envelope::sha256;
use wagelink_proto::v1 as pb;
use wagelink_proto::v1::account_event::Kind as K;

use crate::identity::{RegionCode, VerifiedPartner};
use crate::refusal::Refused;
use crate::store::AccountRow;

/// Longest event id, in characters.
const MAX_EVENT_ID: usize = 128;

/// An event that passed its checks, ready for the log's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedEvent {
    pub event_id: String,
    pub bytes: Vec<u8>,
    pub sha256: [u8; 32],
    pub batch_index: u32,
    pub batch_size: u32,
    /// RFC 9162 audit path of the event in its batch (32-byte hashes, concatenated).
    pub audit_path: Vec<u8>,
    /// The account as this event describes it (holder = the reporting bank).
    pub account: AccountRow,
    pub kind: &'static str,
    pub occurred_at: i64,
    pub amount_fen: i64,
    pub payroll_month: String,
    /// Whether the event states the opening date (AccountOpened).
    pub opens: bool,
}

/// `labour-cost-credited` etc.: the kind's name as stored.
pub fn kind_name(kind: &K) -> &'static str {
    match kind {
        K::AccountOpened(_) => "account-opened",
        K::AccountClosed(_) => "account-closed",
        K::LabourCostCredited(_) => "labour-cost-credited",
        K::PayrollPaid(_) => "payroll-paid",
        K::PayrollLinesFailed(_) => "payroll-lines-failed",
        K::BalanceReported(_) => "balance-reported",
        K::DepositStored(_) => "deposit-stored",
        K::DepositDrawn(_) => "deposit-drawn",
        K::DepositToppedUp(_) => "deposit-topped-up",
        K::DepositReturned(_) => "deposit-returned",
        K::GuaranteeLetterIssued(_) => "guarantee-letter-issued",
        K::GuaranteeLetterExpiring(_) => "guarantee-letter-expiring",
        K::FreezeOrderReceived(_) => "freeze-order-received",
    }
}

struct Ctx<'a> {
    at: &'a str,
}

impl Ctx<'_> {
    fn bad(&self, field: &str, why: impl std::fmt::Display) -> Refused {
        Refused::InvalidArgument(format!("{}{field}: {why}", self.at))
    }

    fn amount(&self, field: &str, v: i64) -> Result<i64, Refused> {
        if v < 0 {
            return Err(self.bad(field, format!("{v} is negative")));
        }
        Ok(v)
    }

    fn date(&self, field: &str, v: &str, required: bool) -> Result<(), Refused> {
        if v.is_empty() && !required {
            return Ok(());
        }
        v.parse::<jiff::civil::Date>()
            .map(|_| ())
            .map_err(|_| self.bad(field, format!("{:?} is not a date: use YYYY-MM-DD", cut(v))))
    }

    fn month(&self, field: &str, v: &str) -> Result<String, Refused> {
        let ok = v.len() == 7
            && v.as_bytes()[4] == b'-'
            && format!("{v}-01").parse::<jiff::civil::Date>().is_ok();
        if !ok {
            return Err(self.bad(field, format!("{:?} is not a month: use YYYY-MM", cut(v))));
        }
        Ok(v.to_owned())
    }
}

fn cut(v: &str) -> String {
    v.chars().take(40).collect()
}

/// Checks one event of `bank`; `at` prefixes messages (`events[3].` in a batch, empty alone).
pub fn check(
    e: &pb::AccountEvent,
    bank: &VerifiedPartner,
    at: &str,
) -> Result<(&'static str, i64, String, bool), Refused> {
    let c = Ctx { at };
    let n = e.event_id.chars().count();
    if n == 0 || n > MAX_EVENT_ID {
        return Err(c.bad(
            "event_id",
            format!("is {n} characters; give 1 to {MAX_EVENT_ID}"),
        ));
    }
    if e.account_number.is_empty()
        || e.account_number.len() > 40
        || !e.account_number.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(c.bad("account_number", "must be 1 to 40 digits, no spaces"));
    }
    if pb::AccountKind::try_from(e.account_kind).unwrap_or_default() == pb::AccountKind::Unspecified
    {
        return Err(c.bad(
            "account_kind",
            "is required (WAGE_ACCOUNT or GUARANTEE_DEPOSIT)",
        ));
    }
    if e.bank_id != bank.id.as_str() {
        return Err(Refused::PermissionDenied(format!(
            "{at}bank_id is {:?} but you are {}: a bank reports only on accounts it holds",
            cut(&e.bank_id),
            bank.id
        )));
    }
    let region: RegionCode = e
        .region_code
        .parse()
        .ok()
        .filter(RegionCode::is_local)
        .ok_or_else(|| {
            c.bad(
                "region_code",
                format!(
                    "{:?} is not a code of regions-chongqing.csv",
                    cut(&e.region_code)
                ),
            )
        })?;
    if region.is_city() {
        return Err(c.bad(
            "region_code",
            "give the project's district or county, not 500000",
        ));
    }
    if !bank.jurisdiction.covers(&region) {
        return Err(Refused::PermissionDenied(format!(
            "{at}region_code {region} is outside {}'s jurisdiction",
            bank.id
        )));
    }
    if !e.contractor_uscc.is_empty() {
        crate::cases::lead::check_uscc(&e.contractor_uscc)
            .map_err(|why| c.bad("contractor_uscc", why))?;
    }
    let occurred_at = e
        .occurred_at
        .as_ref()
        .ok_or_else(|| c.bad("occurred_at", "is required"))?
        .seconds;
    let kind = e.kind.as_ref().ok_or_else(|| {
        c.bad(
            "kind",
            "set exactly one event (account_opened, labour_cost_credited, payroll_paid, …)",
        )
    })?;
    let mut month = String::new();
    match kind {
        K::AccountOpened(o) => {
            c.date("account_opened.opened_on", &o.opened_on, true)?;
            c.amount("account_opened.contract_value_fen", o.contract_value_fen)?
        }
        K::AccountClosed(x) => {
            c.date("account_closed.closed_on", &x.closed_on, true)?;
            0
        }
        K::LabourCostCredited(x) => {
            c.date("labour_cost_credited.value_date", &x.value_date, false)?;
            c.amount("labour_cost_credited.amount_fen", x.amount_fen)?
        }
        K::PayrollPaid(x) => {
            month = c.month("payroll_paid.payroll_month", &x.payroll_month)?;
            c.amount("payroll_paid.total_fen", x.total_fen)?
        }
        K::PayrollLinesFailed(x) => {
            month = c.month("payroll_lines_failed.payroll_month", &x.payroll_month)?;
            c.amount("payroll_lines_failed.total_fen", x.total_fen)?
        }
        K::BalanceReported(x) => {
            c.date("balance_reported.as_of_date", &x.as_of_date, true)?;
            x.amount_fen
        }
        K::DepositStored(x) => c.amount("deposit_stored.amount_fen", x.amount_fen)?,
        K::DepositDrawn(x) => c.amount("deposit_drawn.amount_fen", x.amount_fen)?,
        K::DepositToppedUp(x) => c.amount("deposit_topped_up.amount_fen", x.amount_fen)?,
        K::DepositReturned(x) => c.amount("deposit_returned.amount_fen", x.amount_fen)?,
        K::GuaranteeLetterIssued(x) => {
            c.date("guarantee_letter_issued.valid_from", &x.valid_from, true)?;
            c.date("guarantee_letter_issued.valid_to", &x.valid_to, true)?;
            c.amount("guarantee_letter_issued.amount_fen", x.amount_fen)?
        }
        K::GuaranteeLetterExpiring(x) => {
            c.date("guarantee_letter_expiring.valid_to", &x.valid_to, true)?;
            c.amount("guarantee_letter_expiring.amount_fen", x.amount_fen)?
        }
        K::FreezeOrderReceived(x) => {
            c.date("freeze_order_received.received_on", &x.received_on, true)?;
            c.amount("freeze_order_received.amount_fen", x.amount_fen)?
        }
    };
    Ok((
        kind_name(kind),
        occurred_at,
        month,
        matches!(kind, K::AccountOpened(_)),
    ))
}

/// The account as an event describes it.
pub fn account_of(e: &pb::AccountEvent) -> AccountRow {
    let (status, opened_on) = match &e.kind {
        Some(K::AccountClosed(_)) => ("closed", String::new()),
        Some(K::AccountOpened(o)) => ("open", o.opened_on.clone()),
        _ => ("open", String::new()),
    };
    AccountRow {
        account_number: e.account_number.clone(),
        bank: e.bank_id.clone(),
        kind: match pb::AccountKind::try_from(e.account_kind).unwrap_or_default() {
            pb::AccountKind::GuaranteeDeposit => "guarantee-deposit",
            _ => "wage-account",
        }
        .into(),
        project_code: e.project_code.clone(),
        contractor_uscc: e.contractor_uscc.clone(),
        region: e.region_code.clone(),
        status: status.into(),
        opened_on,
    }
}

/// Checks every event of an envelope (one event, or a batch) and prepares them for the log.
#[tracing::instrument(name = "bank.events", skip_all, fields(bank = %bank.id, count = events.len(), batch))]
pub fn check_all(
    events: &[Vec<u8>],
    batch: bool,
    bank: &VerifiedPartner,
    max_batch: usize,
) -> Result<Vec<CheckedEvent>, Refused> {
    use prost::Message;
    if events.len() > max_batch {
        return Err(Refused::InvalidArgument(format!(
            "the batch holds {} events; at most {max_batch}: split it",
            events.len()
        )));
    }
    let mut tree = crate::ledger::merkle::Tree::new();
    for bytes in events {
        tree.push(crate::ledger::merkle::leaf_hash(bytes));
    }
    let size = events.len() as u64;
    let mut out = Vec::with_capacity(events.len());
    let mut ids = std::collections::HashSet::new();
    for (i, bytes) in events.iter().enumerate() {
        let at = if batch {
            format!("events[{i}].")
        } else {
            String::new()
        };
        let e = pb::AccountEvent::decode(bytes.as_slice()).map_err(|err| {
            Refused::InvalidArgument(format!(
                "{at}: does not decode as wagelink.v1.AccountEvent: {err}"
            ))
        })?;
        let (kind, occurred_at, payroll_month, opens) = check(&e, bank, &at)?;
        if !ids.insert(e.event_id.clone()) {
            return Err(Refused::InvalidArgument(format!(
                "{at}event_id {:?} appears twice in the batch",
                cut(&e.event_id)
            )));
        }
        let path = tree
            .inclusion_proof(i as u64, size)
            .map_err(|err| Refused::InvalidArgument(format!("{at}: {err}")))?;
        out.push(CheckedEvent {
            event_id: e.event_id.clone(),
            bytes: bytes.clone(),
            sha256: sha256(bytes),
            batch_index: i as u32,
            batch_size: size as u32,
            audit_path: path.concat(),
            account: account_of(&e),
            kind,
            occurred_at,
            amount_fen: amount_of(&e),
            payroll_month,
            opens,
        });
    }
    Ok(out)
}

/// The amount an event moves or reports, in fen (0 when none).
pub fn amount_of(e: &pb::AccountEvent) -> i64 {
    match &e.kind {
        Some(K::AccountOpened(o)) => o.contract_value_fen,
        Some(K::LabourCostCredited(x)) => x.amount_fen,
        Some(K::PayrollPaid(x)) => x.total_fen,
        Some(K::PayrollLinesFailed(x)) => x.total_fen,
        Some(K::BalanceReported(x)) => x.amount_fen,
        Some(K::DepositStored(x)) => x.amount_fen,
        Some(K::DepositDrawn(x)) => x.amount_fen,
        Some(K::DepositToppedUp(x)) => x.amount_fen,
        Some(K::DepositReturned(x)) => x.amount_fen,
        Some(K::GuaranteeLetterIssued(x)) => x.amount_fen,
        Some(K::GuaranteeLetterExpiring(x)) => x.amount_fen,
        Some(K::FreezeOrderReceived(x)) => x.amount_fen,
        Some(K::AccountClosed(_)) | None => 0,
    }
}
