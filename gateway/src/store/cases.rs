//! Cases: each stored as its `CaseView` (without the reporter's personal data) beside the
//! columns that lists, clocks and links search on, and who may see it. Writes happen only inside
//! the evidence log's append transaction ([`LedgerTx`]), so a case never says anything its log
//! does not.

use prost::Message;
use sqlx::Row;
use sqlx::any::AnyRow;
use wagelink_proto::v1 as pb;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::ledger::{index, lookups, placeholders, statements, values};
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

/// Cases, lead keys and source references as an append transaction has them: read once (a
/// whole group at a time, see [`LedgerTx::prefetch_cases`]), changed in memory, and written
/// when the transaction settles or commits.
#[derive(Default)]
pub(super) struct CaseCache {
    /// By id: the case as the transaction has it; `None`: known not to exist.
    by_id: HashMap<String, Option<CaseRecord>>,
    /// Cases saved here and not yet written: id → whether it is new.
    dirty: BTreeMap<String, Saved>,
    /// Lead key → the ids of the cases with that key the transaction knows of (read as still
    /// being handled, or opened here); which of them are still open is decided on `by_id`.
    by_key: HashMap<String, Vec<String>>,
    /// (source, source_reference) → the case and lead digest, or `None`: not taken.
    refs: HashMap<(String, String), Option<TakenRef>>,
    /// References taken here and not yet written.
    new_refs: Vec<NewRef>,
}

/// The case a source reference was taken for, and the digest of the lead that took it.
type TakenRef = (String, Vec<u8>);

#[derive(Clone, Copy)]
struct Saved {
    new: bool,
    next_due: Option<i64>,
    overdue: bool,
}

struct NewRef {
    source: String,
    reference: String,
    case_id: String,
    payload_sha256: Vec<u8>,
    log_index: i64,
}

impl CaseCache {
    pub(super) fn pending(&self) -> bool {
        !self.dirty.is_empty() || !self.new_refs.is_empty()
    }
}

/// The distinct `keys` not yet `known`, in order.
pub(super) fn unknown<'a>(keys: &[&'a str], known: impl Fn(&str) -> bool) -> Vec<&'a str> {
    let keys: BTreeSet<&str> = keys.iter().copied().filter(|k| !known(k)).collect();
    keys.into_iter().collect()
}

/// States in which a lead with the same key no longer joins the case.
const DONE: [&str; 3] = ["RESOLVED", "FED_BACK", "CLOSED"];

impl LedgerTx {
    /// Reads, in a few statements for a whole group, the cases, lead keys and source
    /// references its appends will look at; later lookups of them are answered in memory.
    pub async fn prefetch_cases(
        &mut self,
        ids: &[&str],
        keys: &[&str],
        refs: &[(String, &str)],
    ) -> Result<(), StoreError> {
        let ids = unknown(ids, |id| self.cases.by_id.contains_key(id));
        for chunk in lookups(self.backend, &ids) {
            let sql = format!(
                "SELECT {COLUMNS} FROM cases c WHERE c.id IN ({})",
                placeholders(self.backend, 1, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&mut self.tx).await? {
                let r = record(&row)?;
                self.cases.by_id.insert(r.view.case_id.clone(), Some(r));
            }
            for id in chunk {
                self.cases.by_id.entry((*id).to_owned()).or_insert(None);
            }
        }
        let keys = unknown(keys, |k| self.cases.by_key.contains_key(k));
        for chunk in lookups(self.backend, &keys) {
            self.read_keys(chunk).await?;
        }
        let refs: Vec<(&str, &str)> = refs
            .iter()
            .filter(|(o, r)| !self.cases.refs.contains_key(&(o.clone(), (*r).to_owned())))
            .map(|(o, r)| (o.as_str(), *r))
            .collect();
        let rows = self
            .rows_by_pairs(
                "source, source_reference, case_id, payload_sha256",
                "lead_refs",
                ("source", "source_reference"),
                &refs,
            )
            .await?;
        for (key, r) in rows {
            let found = (r.try_get("case_id")?, r.try_get("payload_sha256")?);
            self.cases.refs.insert(key, Some(found));
        }
        for (o, rf) in refs {
            self.cases
                .refs
                .entry((o.to_owned(), rf.to_owned()))
                .or_insert(None);
        }
        Ok(())
    }

    /// Reads the cases still being handled under these lead keys.
    async fn read_keys(&mut self, keys: &[&str]) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM cases c WHERE c.lead_key IN ({}) AND c.state NOT IN ('{}', '{}', '{}')",
            placeholders(self.backend, 1, keys.len()),
            DONE[0],
            DONE[1],
            DONE[2]
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for key in keys {
            q = q.bind(*key);
        }
        let rows = q.fetch_all(&mut self.tx).await?;
        for key in keys {
            // Cases saved here with the key (not yet written, so the rows may miss them).
            let mut ids: Vec<String> = self
                .cases
                .dirty
                .keys()
                .filter(|id| {
                    self.cases.by_id.get(*id).is_some_and(|r| {
                        r.as_ref()
                            .is_some_and(|r| r.lead_key.as_deref() == Some(*key))
                    })
                })
                .cloned()
                .collect();
            ids.sort();
            self.cases.by_key.insert((*key).to_owned(), ids);
        }
        for row in rows {
            let r = record(&row)?;
            let id = r.view.case_id.clone();
            if let Some(key) = r.lead_key.clone()
                && let Some(ids) = self.cases.by_key.get_mut(&key)
                && !ids.contains(&id)
            {
                ids.push(id.clone());
            }
            // A case changed here is newer than its stored row.
            self.cases.by_id.entry(id).or_insert(Some(r));
        }
        Ok(())
    }

    /// A case as this transaction sees it (including steps earlier in the same group).
    pub async fn load_case(&mut self, id: &str) -> Result<Option<CaseRecord>, StoreError> {
        if !self.cases.by_id.contains_key(id) {
            self.prefetch_cases(&[id], &[], &[]).await?;
        }
        Ok(self.cases.by_id.get(id).cloned().flatten())
    }

    /// The case still being handled (not yet resolved) that a lead with this key belongs to:
    /// the earliest created (ties by the index of the lead that opened it).
    pub async fn open_case_with_key(
        &mut self,
        key: &str,
    ) -> Result<Option<CaseRecord>, StoreError> {
        if !self.cases.by_key.contains_key(key) {
            self.read_keys(&[key]).await?;
        }
        let ids = self.cases.by_key.get(key).map(Vec::as_slice).unwrap_or(&[]);
        Ok(ids
            .iter()
            .filter_map(|id| self.cases.by_id.get(id).and_then(Option::as_ref))
            .filter(|r| !DONE.contains(&state_column(&r.view).as_str()))
            .min_by_key(|r| {
                (
                    r.view.created_at.as_ref().map_or(0, |t| t.seconds),
                    r.opened_index,
                )
            })
            .cloned())
    }

    /// The case a source's earlier lead with this reference belongs to, and that lead's payload
    /// digest.
    pub async fn lead_ref(
        &mut self,
        source: &str,
        reference: &str,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let key = (source.to_owned(), reference.to_owned());
        if !self.cases.refs.contains_key(&key) {
            self.prefetch_cases(&[], &[], &[(key.0.clone(), reference)])
                .await?;
        }
        Ok(self.cases.refs.get(&key).cloned().flatten())
    }

    /// Takes a source reference for a case (written when the transaction settles).
    pub async fn insert_lead_ref(
        &mut self,
        source: &str,
        reference: &str,
        case_id: &str,
        payload_sha256: &[u8],
        log_index: u64,
    ) -> Result<(), StoreError> {
        let key = (source.to_owned(), reference.to_owned());
        if matches!(self.cases.refs.get(&key), Some(Some(_))) {
            return Ok(());
        }
        self.cases
            .refs
            .insert(key, Some((case_id.to_owned(), payload_sha256.to_vec())));
        self.cases.new_refs.push(NewRef {
            source: source.to_owned(),
            reference: reference.to_owned(),
            case_id: case_id.to_owned(),
            payload_sha256: payload_sha256.to_vec(),
            log_index: log_index as i64,
        });
        Ok(())
    }

    /// Saves a case (new or changed) and who may see it; written when the transaction settles.
    pub async fn save_case(
        &mut self,
        case: &CaseRecord,
        new: bool,
        parties: &[(String, &str)],
        next_due: Option<i64>,
        overdue: bool,
    ) -> Result<(), StoreError> {
        let id = case.view.case_id.clone();
        // A case opened earlier in the transaction and not yet written is still inserted.
        let new = new || self.cases.dirty.get(&id).is_some_and(|s| s.new);
        if let Some(key) = &case.lead_key
            && let Some(ids) = self.cases.by_key.get_mut(key)
            && !ids.contains(&id)
        {
            ids.push(id.clone());
        }
        self.cases.dirty.insert(
            id.clone(),
            Saved {
                new,
                next_due,
                overdue,
            },
        );
        self.cases.by_id.insert(id.clone(), Some(case.clone()));
        for (partner, role) in parties {
            self.add_party(&id, partner, role);
        }
        Ok(())
    }

    /// Writes the cases and references saved since the last time: new cases as inserts,
    /// changed ones as updates, several rows per statement.
    pub(super) async fn write_cases(&mut self) -> Result<(), StoreError> {
        let dirty = std::mem::take(&mut self.cases.dirty);
        let rows: Vec<(&CaseRecord, Saved)> = dirty
            .iter()
            .filter_map(|(id, s)| {
                self.cases
                    .by_id
                    .get(id)
                    .and_then(Option::as_ref)
                    .map(|r| (r, *s))
            })
            .collect();
        for new in [true, false] {
            let rows: Vec<&(&CaseRecord, Saved)> =
                rows.iter().filter(|(_, s)| s.new == new).collect();
            for chunk in statements(self.backend, &rows, |(c, _)| c.view.encoded_len() + 256) {
                let sql = if new {
                    format!(
                        "INSERT INTO cases (id, opened_index, source, region, state, holder, supervised, overdue, \
                         next_due_at, lead_key, created_at, updated_at, view, project_code) VALUES {}",
                        values(self.backend, 14, chunk.len())
                    )
                } else {
                    // Several changed cases in one statement: an upsert of rows that exist.
                    format!(
                        "INSERT INTO cases (id, opened_index, source, region, state, holder, supervised, overdue, \
                         next_due_at, lead_key, created_at, updated_at, view, project_code) VALUES {} \
                         ON CONFLICT (id) DO UPDATE SET opened_index = excluded.opened_index, \
                         source = excluded.source, region = excluded.region, state = excluded.state, \
                         holder = excluded.holder, supervised = excluded.supervised, \
                         overdue = excluded.overdue, next_due_at = excluded.next_due_at, \
                         lead_key = excluded.lead_key, created_at = excluded.created_at, \
                         updated_at = excluded.updated_at, view = excluded.view, \
                         project_code = excluded.project_code",
                        values(self.backend, 14, chunk.len())
                    )
                };
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (case, s) in chunk {
                    let v = &case.view;
                    let at =
                        |t: &Option<prost_types::Timestamp>| t.as_ref().map_or(0, |t| t.seconds);
                    q = q
                        .bind(v.case_id.as_str())
                        .bind(case.opened_index as i64)
                        .bind(v.source.as_str())
                        .bind(v.region_code.as_str())
                        .bind(state_column(v))
                        .bind(v.holder.as_str())
                        .bind(i64::from(v.supervised))
                        .bind(i64::from(s.overdue))
                        .bind(s.next_due)
                        .bind(case.lead_key.as_deref())
                        .bind(at(&v.created_at))
                        .bind(at(&v.updated_at))
                        .bind(v.encode_to_vec())
                        .bind(v.lead.as_ref().map_or("", |l| l.project_code.as_str()));
                }
                super::ledger::write_to(&mut self.tx, &mut self.batch, q).await?;
            }
        }
        let refs = std::mem::take(&mut self.cases.new_refs);
        for chunk in statements(self.backend, &refs, |r| r.reference.len() + 128) {
            let sql = format!(
                "INSERT INTO lead_refs (source, source_reference, case_id, payload_sha256, log_index) \
                 VALUES {} ON CONFLICT DO NOTHING",
                values(self.backend, 5, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind(r.source.as_str())
                    .bind(r.reference.as_str())
                    .bind(r.case_id.as_str())
                    .bind(r.payload_sha256.as_slice())
                    .bind(r.log_index);
            }
            self.write(q).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::each_backend;

    fn case(id: &str, key: &str, state: pb::CaseState, created: i64, opened: u64) -> CaseRecord {
        CaseRecord {
            view: pb::CaseView {
                case_id: id.into(),
                state: state as i32,
                region_code: "500112".into(),
                holder: "hrss-500112".into(),
                created_at: Some(prost_types::Timestamp {
                    seconds: created,
                    nanos: 0,
                }),
                ..Default::default()
            },
            opened_index: opened,
            lead_key: Some(key.into()),
        }
    }

    /// Writes log entry `idx` (the cases below refer to it).
    async fn entry(tx: &mut LedgerTx, idx: u64) {
        tx.insert_entry(idx, vec![idx as u8], &[0; 32], 0)
            .await
            .unwrap();
    }

    /// A transaction answers from the cases it saved but has not written yet, exactly as the
    /// database would once they are: the earliest open case of a key, a resolved one no longer,
    /// a reference taken earlier in the group; and it writes them all at commit.
    #[tokio::test]
    async fn a_group_sees_its_own_cases_before_they_are_written() {
        for db in each_backend().await {
            let store = db.store();
            let mut tx = store.begin_ledger().await.unwrap();
            entry(&mut tx, 0).await;
            entry(&mut tx, 1).await;
            let open = case("WL-A", "k", pb::CaseState::Transferred, 100, 0);
            tx.prefetch_cases(&["WL-A"], &["k"], &[("src".into(), "r1")])
                .await
                .unwrap();
            assert_eq!(tx.open_case_with_key("k").await.unwrap(), None);
            tx.save_case(
                &open,
                true,
                &[("hrss-500112".into(), "handler")],
                None,
                false,
            )
            .await
            .unwrap();
            tx.insert_lead_ref("src", "r1", "WL-A", b"sha", 0)
                .await
                .unwrap();
            let later = case("WL-B", "k", pb::CaseState::Transferred, 101, 1);
            tx.save_case(&later, true, &[], None, false).await.unwrap();
            // The earliest open case of the key, whatever order they were saved in.
            let found = tx.open_case_with_key("k").await.unwrap().unwrap();
            assert_eq!(found.view.case_id, "WL-A", "{}", db.name);
            assert_eq!(
                tx.lead_ref("src", "r1").await.unwrap(),
                Some(("WL-A".to_owned(), b"sha".to_vec()))
            );
            // Resolved within the group: the key's next open case takes over.
            let resolved = case("WL-A", "k", pb::CaseState::Resolved, 100, 0);
            tx.save_case(&resolved, false, &[], None, false)
                .await
                .unwrap();
            let found = tx.open_case_with_key("k").await.unwrap().unwrap();
            assert_eq!(found.view.case_id, "WL-B", "{}", db.name);
            assert_eq!(
                tx.load_case("WL-A").await.unwrap().unwrap().view.state,
                pb::CaseState::Resolved as i32
            );
            tx.commit().await.unwrap();

            // Written: a new transaction finds the same in the database.
            let a = store.case("WL-A").await.unwrap().unwrap();
            assert_eq!(a.view.state, pb::CaseState::Resolved as i32, "{}", db.name);
            assert!(store.is_party("WL-A", "hrss-500112").await.unwrap());
            let mut tx = store.begin_ledger().await.unwrap();
            let found = tx.open_case_with_key("k").await.unwrap().unwrap();
            assert_eq!(found.view.case_id, "WL-B", "{}", db.name);
            assert_eq!(
                tx.lead_ref("src", "r1").await.unwrap(),
                Some(("WL-A".to_owned(), b"sha".to_vec()))
            );
            assert_eq!(tx.lead_ref("src", "r2").await.unwrap(), None);
            // A change to a stored case is written as an update.
            entry(&mut tx, 2).await;
            let reopened = case("WL-A", "k", pb::CaseState::Handling, 100, 0);
            tx.save_case(&reopened, false, &[], Some(5), true)
                .await
                .unwrap();
            // The earliest open one again, now that it is open.
            let found = tx.open_case_with_key("k").await.unwrap().unwrap();
            assert_eq!(found.view.case_id, "WL-A", "{}", db.name);
            tx.commit().await.unwrap();
            let a = store.case("WL-A").await.unwrap().unwrap();
            assert_eq!(a.view.state, pb::CaseState::Handling as i32, "{}", db.name);
            assert_eq!(store.log_size().await.unwrap(), 3);
        }
    }
}
