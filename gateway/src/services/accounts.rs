//! `wagelink.v1.AccountQueries`: an authorised agency's signed query about a dedicated wage
//! account or guarantee deposit is checked (fields, the caller's jurisdiction and industry, the
//! purpose), logged, relayed down a Link stream of the bank holding the account, and answered
//! with the bank's signed answer (logged too) and the receipt for the query.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tonic::{Request, Response, Status};
use wagelink_proto::v1 as pb;

use super::status::store_unavailable;
use crate::banks::link::{BankLinks, DispatchError, Query};
use crate::envelope::{self, SubmitError};
use crate::identity::{Industry, RegionCode, Registry, VerifiedPartner};
use crate::ledger::log::EvidenceLog;

pub struct AccountQueriesService {
    registry: Arc<Registry>,
    log: Arc<EvidenceLog>,
    links: Arc<BankLinks>,
    /// Longest the gateway waits for a bank.
    max_wait: Duration,
    /// Longest period of a transactions query, in days.
    max_days: i32,
}

impl AccountQueriesService {
    pub fn new(
        registry: Arc<Registry>,
        log: Arc<EvidenceLog>,
        links: Arc<BankLinks>,
        max_wait: Duration,
        max_days: i32,
    ) -> Self {
        Self {
            registry,
            log,
            links,
            max_wait,
            max_days,
        }
    }

    /// Checks the query's own fields.
    fn check_fields(&self, q: &pb::AccountQuery) -> Result<(), Status> {
        let bad = |m: String| Err(Status::invalid_argument(m));
        if q.account_number.is_empty()
            || q.account_number.len() > 40
            || !q.account_number.bytes().all(|b| b.is_ascii_digit())
        {
            return bad("account_number must be 1 to 40 digits, no spaces".into());
        }
        let kind = pb::AccountQueryKind::try_from(q.kind).unwrap_or_default();
        let month =
            |m: &str| m.len() == 7 && format!("{m}-01").parse::<jiff::civil::Date>().is_ok();
        use pb::account_query::Period;
        match (kind, &q.period) {
            (pb::AccountQueryKind::Unspecified, _) => {
                return bad("kind is required (BALANCE, TRANSACTIONS or PAYROLL)".into());
            }
            (pb::AccountQueryKind::Balance, _) => {}
            (pb::AccountQueryKind::Payroll, Some(Period::Month(m))) if month(m) => {}
            (pb::AccountQueryKind::Payroll, _) => {
                return bad("a PAYROLL query needs `month` as YYYY-MM".into());
            }
            (pb::AccountQueryKind::Transactions, Some(Period::Month(m))) if month(m) => {}
            (pb::AccountQueryKind::Transactions, Some(Period::Dates(d))) => {
                let (Ok(from), Ok(to)) = (
                    d.from.parse::<jiff::civil::Date>(),
                    d.to.parse::<jiff::civil::Date>(),
                ) else {
                    return bad("dates.from and dates.to must be YYYY-MM-DD".into());
                };
                if from > to {
                    return bad("dates.from is after dates.to".into());
                }
                let days = (to - from).get_days();
                if days >= self.max_days {
                    return bad(format!(
                        "the period is {} days; at most {} — split it",
                        days + 1,
                        self.max_days
                    ));
                }
            }
            (pb::AccountQueryKind::Transactions, _) => {
                return bad("a TRANSACTIONS query needs `dates` or `month` (YYYY-MM)".into());
            }
        }
        use pb::account_query::Purpose;
        match &q.purpose {
            Some(Purpose::CaseId(c)) if !c.is_empty() => {}
            Some(Purpose::InspectionOrderNumber(n))
                if !n.trim().is_empty() && n.chars().count() <= 64 => {}
            _ => {
                return bad(
                    "name the purpose: a case_id you have a role on, or the inspection_order_number (at most 64 characters) authorising the query".into(),
                );
            }
        }
        Ok(())
    }

    /// Checks who may ask about this account, for this purpose; returns the holding bank.
    async fn check_scope(
        &self,
        me: &VerifiedPartner,
        q: &pb::AccountQuery,
    ) -> Result<(String, String), Status> {
        let store = self.log.store();
        let account = store
            .account(&q.account_number)
            .await
            .map_err(store_unavailable)?;
        let Some(account) = account else {
            return Err(Status::not_found(format!(
                "no bank has reported account {}; check the number, or ask the bank to report its opening",
                q.account_number
            )));
        };
        if !q.bank_id.is_empty() && q.bank_id != account.bank {
            return Err(Status::invalid_argument(format!(
                "bank_id is {:?} but account {} is held by {}; leave bank_id empty or name the holder",
                q.bank_id.chars().take(40).collect::<String>(),
                q.account_number,
                account.bank
            )));
        }
        let region: Option<RegionCode> = account.region.parse().ok();
        if !region.as_ref().is_some_and(|r| me.jurisdiction.covers(r)) {
            return Err(Status::permission_denied(format!(
                "account {} belongs to a project in region {}, outside {}'s jurisdiction",
                q.account_number, account.region, me.id
            )));
        }
        if let Some(industry) = me.jurisdiction.industry {
            let project = if account.project_code.is_empty() {
                None
            } else {
                store
                    .project(&account.project_code)
                    .await
                    .map_err(store_unavailable)?
            };
            let theirs = project.map(|(_, i)| i).unwrap_or_default();
            if theirs != industry_name(industry) {
                return Err(Status::permission_denied(format!(
                    "account {} is not of a {} project; {} queries accounts of its industry only",
                    q.account_number,
                    industry_name(industry),
                    me.id
                )));
            }
        }
        if let Some(pb::account_query::Purpose::CaseId(case_id)) = &q.purpose {
            let case = store
                .case(case_id)
                .await
                .map_err(store_unavailable)?
                .ok_or_else(|| {
                    Status::not_found(format!("the purpose's case {case_id} does not exist"))
                })?;
            let who = crate::cases::machine::Actor {
                id: me.id.to_string(),
                kind: Some(me.kind),
                jurisdiction: me.jurisdiction.clone(),
            };
            let party = store
                .is_party(case_id, me.id.as_str())
                .await
                .map_err(store_unavailable)?;
            if !party && !crate::cases::machine::oversees(&case.view, &who) {
                return Err(Status::permission_denied(format!(
                    "{} has no role on case {case_id}, the query's purpose",
                    me.id
                )));
            }
        }
        Ok((account.bank, account.region))
    }

    /// The bank's stored answer to an earlier copy of this query, if it was answered.
    async fn stored_answer(&self, query_index: u64) -> Result<Option<pb::SignedEnvelope>, Status> {
        let store = self.log.store();
        let Some(i) = store
            .query_answer(query_index)
            .await
            .map_err(store_unavailable)?
        else {
            return Ok(None);
        };
        let entry = store
            .entries(i, i + 1, true)
            .await
            .map_err(store_unavailable)?
            .pop()
            .ok_or_else(|| Status::internal("a stored answer's log entry is missing"))?;
        match pb::EntryBody::decode(entry.entry.as_slice())
            .ok()
            .and_then(|b| b.kind)
        {
            Some(pb::entry_body::Kind::Accepted(a)) => Ok(Some(pb::SignedEnvelope {
                header: a.header,
                payload: entry.payload.unwrap_or_default(),
                signatures: a.signatures,
            })),
            _ => Err(Status::internal(
                "a stored answer is not an accepted envelope",
            )),
        }
    }
}

fn industry_name(i: Industry) -> &'static str {
    match i {
        Industry::HousingMunicipal => "housing-municipal",
        Industry::Transport => "transport",
        Industry::Water => "water",
        _ => "other",
    }
}

impl AccountQueriesService {
    /// Asks the replicas for one with a link to `bank` to relay the query logged at
    /// `query_index`, and waits for the bank's answer to be logged (or its refusal recorded).
    async fn through_another_replica(
        &self,
        bank: &str,
        asker: &str,
        query_index: u64,
        deadline: i64,
        wait: Duration,
        receipt: pb::SignedEnvelope,
    ) -> Result<Response<pb::AccountQueryResult>, Status> {
        let store = self.log.store();
        store
            .request_relay(
                &crate::store::RelayRow {
                    query_index,
                    bank: bank.to_owned(),
                    asker: asker.to_owned(),
                    deadline,
                },
                crate::store::now_unix(),
            )
            .await
            .map_err(store_unavailable)?;
        let until = tokio::time::Instant::now() + wait;
        // A replica with a link takes a relay within milliseconds of the notification (or at
        // its next half-second look); when none has taken it by then, none holds a link.
        let give_up_taking = tokio::time::Instant::now() + Duration::from_millis(1500).min(wait);
        let mut taken = false;
        loop {
            if let Some(answer) = self.stored_answer(query_index).await? {
                return Ok(Response::new(pb::AccountQueryResult {
                    answer: Some(answer),
                    receipt: Some(receipt),
                }));
            }
            if let Some((code, message)) = store
                .relay_refusal(query_index)
                .await
                .map_err(store_unavailable)?
            {
                return Err(Status::new(tonic::Code::from_i32(code), message));
            }
            if !taken && tokio::time::Instant::now() >= give_up_taking {
                if store
                    .withdraw_relay(query_index)
                    .await
                    .map_err(store_unavailable)?
                {
                    return Err(Status::unavailable(format!(
                        "{bank} has no query link open on any replica right now; retry later with the same envelope"
                    )));
                }
                taken = true;
            }
            if tokio::time::Instant::now() >= until {
                return Err(Status::deadline_exceeded(format!(
                    "no replica could get an answer from {bank} within {} ms (none may hold a link to it); the query stays logged — retry with the same envelope",
                    wait.as_millis()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Relays, over this replica's bank links, the account queries other replicas could not send
/// (PostgreSQL): woken by their notifications, and every half second in case one was missed.
pub async fn relay_queries(
    log: Arc<EvidenceLog>,
    links: Arc<BankLinks>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let replica = uuid::Uuid::new_v4().to_string();
    loop {
        tokio::select! {
            _ = links.relays_wanted() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = crate::server::stopped(shutdown.clone()) => return,
        }
        for bank in links.banks() {
            let rows = match log
                .store()
                .take_relays(&bank, &replica, crate::store::now_unix())
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the queries to relay failed");
                    continue;
                }
            };
            for row in rows {
                tokio::spawn(relay_one(log.clone(), links.clone(), row));
            }
        }
    }
}

/// Sends one relayed query down a link here; a refusal is written back for the asking replica
/// (an answer is logged by the link, where the asking replica finds it).
async fn relay_one(log: Arc<EvidenceLog>, links: Arc<BankLinks>, row: crate::store::RelayRow) {
    let store = log.store();
    let query = async {
        let entry = store
            .entries(row.query_index, row.query_index + 1, true)
            .await?
            .pop()
            .ok_or_else(|| {
                crate::store::StoreError::Corrupt("a relayed query's entry is missing".into())
            })?;
        let Some(pb::entry_body::Kind::Accepted(a)) = pb::EntryBody::decode(entry.entry.as_slice())
            .ok()
            .and_then(|b| b.kind)
        else {
            return Err(crate::store::StoreError::Corrupt(
                "a relayed query is not an accepted envelope".into(),
            ));
        };
        let payload = entry.payload.unwrap_or_default();
        let header = pb::Header::decode(a.header.as_slice()).unwrap_or_default();
        let q = pb::AccountQuery::decode(payload.as_slice()).unwrap_or_default();
        let receipt = store
            .receipt_at(row.query_index)
            .await?
            .and_then(|r| pb::SignedEnvelope::decode(r.as_slice()).ok())
            .unwrap_or_default();
        Ok(Query {
            bank: row.bank.clone(),
            envelope: pb::SignedEnvelope {
                header: a.header,
                payload,
                signatures: a.signatures,
            },
            receipt,
            query_message_id: header.message_id,
            query_index: row.query_index,
            asker: row.asker.clone(),
            account_number: q.account_number,
            kind: q.kind,
            deadline: row.deadline,
        })
    }
    .await;
    let query = match query {
        Ok(q) => q,
        Err(e) => {
            tracing::warn!(error = %e, query_index = row.query_index, "cannot relay a query");
            return;
        }
    };
    let Ok(answer) = links.dispatch(query) else {
        let _ = store.release_relay(row.query_index).await;
        return;
    };
    let left = (row.deadline - crate::store::now_unix()).max(1) as u64;
    if let Ok(Ok(Err(refused))) = tokio::time::timeout(Duration::from_secs(left), answer).await {
        let status = Status::from(refused);
        if let Err(e) = store
            .refuse_relay(row.query_index, status.code() as i32, status.message())
            .await
        {
            tracing::warn!(error = %e, "recording a bank's refusal of a relayed query failed");
        }
    }
}

/// The caller's gRPC deadline (`grpc-timeout`), if it set one.
fn caller_timeout<T>(request: &Request<T>) -> Option<Duration> {
    let v = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (n, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[tonic::async_trait]
impl pb::account_queries_server::AccountQueries for AccountQueriesService {
    async fn query(
        &self,
        request: Request<pb::SignedEnvelope>,
    ) -> Result<Response<pb::AccountQueryResult>, Status> {
        let wait = caller_timeout(&request)
            .map_or(self.max_wait, |t| t.min(self.max_wait))
            // Leave the answer time to travel back before the caller gives up.
            .saturating_sub(Duration::from_millis(50));
        let (me, verified) = envelope::verify_request::<pb::AccountQuery>(&self.registry, request)?;
        let q = verified.payload.clone();
        self.check_fields(&q)?;
        let (bank, _region) = self.check_scope(&me, &q).await?;
        let query_envelope = pb::SignedEnvelope {
            header: verified.accepted.header_bytes.clone(),
            payload: verified.accepted.payload.clone(),
            signatures: verified.accepted.signatures.clone(),
        };
        let message_id = verified.accepted.header.message_id.clone();
        let mut accepted = verified.accepted;
        accepted.routed_to = vec![pb::Routing {
            partner_id: bank.clone(),
            role: pb::RoutingRole::Recipient as i32,
            rule_id: String::new(),
            rule_version: 0,
        }];
        let appended = self
            .log
            .append_new(accepted)
            .await
            .map_err(|e| Status::from(SubmitError::from(e)))?;
        let receipt = appended.receipt;
        let query_index = pb::Receipt::decode(receipt.payload.as_slice())
            .map_err(|_| Status::internal("the query's receipt does not decode"))?
            .log_index;
        // The same query again after it was answered: the same answer, without asking the bank.
        if !appended.new
            && let Some(answer) = self.stored_answer(query_index).await?
        {
            return Ok(Response::new(pb::AccountQueryResult {
                answer: Some(answer),
                receipt: Some(receipt),
            }));
        }
        let deadline = crate::store::now_unix() + wait.as_secs() as i64 + 1;
        let dispatched = self.links.dispatch(Query {
            bank: bank.clone(),
            envelope: query_envelope,
            receipt: receipt.clone(),
            query_message_id: message_id.clone(),
            query_index,
            asker: me.id.to_string(),
            account_number: q.account_number.clone(),
            kind: q.kind,
            deadline,
        });
        // No link to the bank here: on PostgreSQL another replica may hold one.
        if matches!(dispatched, Err(DispatchError::NoLink))
            && self.log.store().backend() == crate::store::Backend::Postgres
        {
            return self
                .through_another_replica(
                    &bank,
                    me.id.as_str(),
                    query_index,
                    deadline,
                    wait,
                    receipt,
                )
                .await;
        }
        let answer = dispatched.map_err(|e| match e {
            DispatchError::NoLink => Status::unavailable(format!(
                "{bank} has no query link open right now; retry later with the same envelope"
            )),
            DispatchError::Busy => Status::resource_exhausted(format!(
                "{bank}'s query links are at capacity; retry shortly with the same envelope"
            )),
        })?;
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(Ok(answer))) => Ok(Response::new(pb::AccountQueryResult {
                answer: Some(answer),
                receipt: Some(receipt),
            })),
            Ok(Ok(Err(refused))) => Err(refused.into()),
            Ok(Err(_)) => Err(Status::unavailable(format!(
                "{bank}'s link closed before it answered; retry with the same envelope"
            ))),
            Err(_) => {
                self.links.forget(&message_id, me.id.as_str());
                Err(Status::deadline_exceeded(format!(
                    "{bank} did not answer within {} ms; the query stays logged — retry with the same envelope to ask again",
                    wait.as_millis()
                )))
            }
        }
    }
}
