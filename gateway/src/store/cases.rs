//! Cases: each stored as its `CaseView` (without the reporter's personal data) beside the
//! columns that lists, clocks and links search on, and who may see it. Writes happen only inside
//! the evidence log's append transaction ([`LedgerTx`]), so a case never says anything its log
//! does not.

use prost::Message;
use sqlx::Row;
use sqlx::any::AnyRow;
use wagelink_proto::v1 as pb;

use super::ledger::index;
use super::{LedgerTx, Store, StoreError};

/// A stored case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseRecord {
    pub view: pb::CaseView,
    /// Log index of the lead that opened it (its payload holds the full lead).
    pub opened_index: u64,
    pub lead_key: Option<String>,
}

/// What `ListCases` asks for, after the service checked it.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub partner: String,
    /// Regions whose cases the caller oversees (a leading office); `all` when it covers the city.
    pub oversight: Vec<String>,
    pub oversight_all: bool,
    /// Party role rows to match (`handler`, `co-handler`…); `holder` matches the current holder;
    /// `oversight` only the regions; None = any role.
    pub role: Option<&'static str>,
    pub states: Vec<String>,
    pub region: Option<String>,
    pub overdue_only: bool,
    pub supervised_only: bool,
    pub updated_since: Option<i64>,
    /// Continue after this (updated_at, id).
    pub after: Option<(i64, String)>,
    pub limit: u32,
}

fn state_column(view: &pb::CaseView) -> String {
    pb::CaseState::try_from(view.state)
        .unwrap_or_default()
        .as_str_name()
        .trim_start_matches("CASE_STATE_")
        .to_owned()
}

fn record(row: &AnyRow) -> Result<CaseRecord, StoreError> {
    let bytes: Vec<u8> = row.try_get("view")?;
    let view = pb::CaseView::decode(bytes.as_slice())
        .map_err(|e| StoreError::Corrupt(format!("a stored case does not decode: {e}")))?;
    Ok(CaseRecord {
        view,
        opened_index: index(row.try_get("opened_index")?),
        lead_key: row.try_get("lead_key")?,
    })
}

const COLUMNS: &str = "c.id, c.opened_index, c.lead_key, c.view";

impl LedgerTx {
    /// A case as this transaction sees it (including steps earlier in the same group).
    pub async fn load_case(&mut self, id: &str) -> Result<Option<CaseRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT c.id, c.opened_index, c.lead_key, c.view FROM cases c WHERE c.id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(record).transpose()
    }

    /// The case still being handled (not yet resolved) that a lead with this key belongs to.
    pub async fn open_case_with_key(
        &mut self,
        key: &str,
    ) -> Result<Option<CaseRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT c.id, c.opened_index, c.lead_key, c.view FROM cases c \
             WHERE c.lead_key = $1 AND c.state NOT IN ('RESOLVED', 'FED_BACK', 'CLOSED') \
             ORDER BY c.created_at LIMIT 1",
        )
        .bind(key)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(record).transpose()
    }

    /// The case a source's earlier lead with this reference belongs to, and that lead's payload
    /// digest.
    pub async fn lead_ref(
        &mut self,
        source: &str,
        reference: &str,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let row = sqlx::query(
            "SELECT case_id, payload_sha256 FROM lead_refs WHERE source = $1 AND source_reference = $2",
        )
        .bind(source)
        .bind(reference)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|r| Ok((r.try_get("case_id")?, r.try_get("payload_sha256")?)))
            .transpose()
    }

    pub async fn insert_lead_ref(
        &mut self,
        source: &str,
        reference: &str,
        case_id: &str,
        payload_sha256: &[u8],
        log_index: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO lead_refs (source, source_reference, case_id, payload_sha256, log_index) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(source)
        .bind(reference)
        .bind(case_id)
        .bind(payload_sha256)
        .bind(log_index as i64)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Writes a case (new or changed) and who may see it.
    pub async fn save_case(
        &mut self,
        case: &CaseRecord,
        new: bool,
        parties: &[(String, &str)],
        next_due: Option<i64>,
        overdue: bool,
    ) -> Result<(), StoreError> {
        let v = &case.view;
        let at = |t: &Option<prost_types::Timestamp>| t.as_ref().map_or(0, |t| t.seconds);
        let sql = if new {
            "INSERT INTO cases (id, opened_index, source, region, state, holder, supervised, overdue, \
             next_due_at, lead_key, created_at, updated_at, view, project_code) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        } else {
            "UPDATE cases SET opened_index = $2, source = $3, region = $4, state = $5, holder = $6, \
             supervised = $7, overdue = $8, next_due_at = $9, lead_key = $10, created_at = $11, \
             updated_at = $12, view = $13, project_code = $14 WHERE id = $1"
        };
        sqlx::query(sql)
            .bind(v.case_id.as_str())
            .bind(case.opened_index as i64)
            .bind(v.source.as_str())
            .bind(v.region_code.as_str())
            .bind(state_column(v))
            .bind(v.holder.as_str())
            .bind(i64::from(v.supervised))
            .bind(i64::from(overdue))
            .bind(next_due)
            .bind(case.lead_key.as_deref())
            .bind(at(&v.created_at))
            .bind(at(&v.updated_at))
            .bind(v.encode_to_vec())
            .bind(v.lead.as_ref().map_or("", |l| l.project_code.as_str()))
            .execute(&mut *self.tx)
            .await?;
        for (partner, role) in parties {
            self.add_party(&v.case_id, partner, role);
        }
        Ok(())
    }
}

impl Store {
    pub async fn case(&self, id: &str) -> Result<Option<CaseRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT c.id, c.opened_index, c.lead_key, c.view FROM cases c WHERE c.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record).transpose()
    }

    /// Whether `partner` ever had a role on the case.
    pub async fn is_party(&self, case_id: &str, partner: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM case_parties WHERE case_id = $1 AND partner_id = $2 LIMIT 1",
        )
        .bind(case_id)
        .bind(partner)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Ids of cases with a clock that ran out by `now` and was not escalated yet.
    pub async fn due_cases(&self, now: i64, limit: u32) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM cases WHERE next_due_at IS NOT NULL AND next_due_at <= $1 \
             AND state <> 'CLOSED' ORDER BY next_due_at LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(StoreError::from))
            .collect()
    }

    /// The cases a partner may see, most recently updated first.
    pub async fn list_cases(&self, f: &CaseFilter) -> Result<Vec<CaseRecord>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM cases c WHERE ");
        let mut args: Vec<Arg> = Vec::new();
        let param = |args: &mut Vec<Arg>, a: Arg| {
            args.push(a);
            format!("${}", args.len())
        };
        // Visibility: a party, or a leading office over the case's region.
        let mut visible = Vec::new();
        match f.role {
            Some("holder") => {
                visible.push(format!(
                    "c.holder = {}",
                    param(&mut args, Arg::Text(f.partner.clone()))
                ));
            }
            Some("oversight") => {}
            role => {
                let p = param(&mut args, Arg::Text(f.partner.clone()));
                let role = match role {
                    Some(r) => format!(
                        " AND p.role = {}",
                        param(&mut args, Arg::Text(r.to_owned()))
                    ),
                    None => String::new(),
                };
                visible.push(format!(
                    "EXISTS (SELECT 1 FROM case_parties p WHERE p.case_id = c.id AND p.partner_id = {p}{role})"
                ));
            }
        }
        if matches!(f.role, None | Some("oversight")) {
            if f.oversight_all {
                visible.push("1 = 1".into());
            } else if !f.oversight.is_empty() {
                let list: Vec<String> = f
                    .oversight
                    .iter()
                    .map(|r| param(&mut args, Arg::Text(r.clone())))
                    .collect();
                visible.push(format!("c.region IN ({})", list.join(", ")));
            }
        }
        if visible.is_empty() {
            return Ok(Vec::new());
        }
        sql.push_str(&format!("({})", visible.join(" OR ")));
        if !f.states.is_empty() {
            let list: Vec<String> = f
                .states
                .iter()
                .map(|s| param(&mut args, Arg::Text(s.clone())))
                .collect();
            sql.push_str(&format!(" AND c.state IN ({})", list.join(", ")));
        }
        if let Some(r) = &f.region {
            sql.push_str(&format!(
                " AND c.region = {}",
                param(&mut args, Arg::Text(r.clone()))
            ));
        }
        if f.overdue_only {
            sql.push_str(" AND c.overdue = 1");
        }
        if f.supervised_only {
            sql.push_str(" AND c.supervised = 1");
        }
        if let Some(t) = f.updated_since {
            sql.push_str(&format!(
                " AND c.updated_at >= {}",
                param(&mut args, Arg::Int(t))
            ));
        }
        if let Some((t, id)) = &f.after {
            let t1 = param(&mut args, Arg::Int(*t));
            let t2 = param(&mut args, Arg::Int(*t));
            let id = param(&mut args, Arg::Text(id.clone()));
            sql.push_str(&format!(
                " AND (c.updated_at < {t1} OR (c.updated_at = {t2} AND c.id < {id}))"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY c.updated_at DESC, c.id DESC LIMIT {}",
            param(&mut args, Arg::Int(i64::from(f.limit)))
        ));
        // Only placeholders and fixed text are spliced in; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = match a {
                Arg::Text(s) => q.bind(s),
                Arg::Int(i) => q.bind(i),
            };
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(record).collect()
    }
}

enum Arg {
    Text(String),
    Int(i64),
}
