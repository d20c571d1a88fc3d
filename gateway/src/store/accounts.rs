//! The account registry, the account events banks reported, projects and raised warnings.
//! Writes happen inside the evidence log's append transaction, like cases.

use sqlx::Row;

use super::{LedgerTx, Store, StoreError};

/// An account as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub account_number: String,
    pub bank: String,
    pub kind: String,
    pub project_code: String,
    pub contractor_uscc: String,
    pub region: String,
    pub status: String,
    pub opened_on: String,
}

/// One event to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow<'a> {
    pub bank: &'a str,
    pub event_id: &'a str,
    pub event_sha256: &'a [u8],
    pub log_index: u64,
    pub batch_index: u32,
    pub batch_size: u32,
    pub audit_path: &'a [u8],
    pub account_number: &'a str,
    pub kind: &'a str,
    pub occurred_at: i64,
    pub amount_fen: i64,
    pub payroll_month: &'a str,
    pub event: &'a [u8],
}

fn account(r: &sqlx::any::AnyRow) -> Result<AccountRow, StoreError> {
    Ok(AccountRow {
        account_number: r.try_get("account_number")?,
        bank: r.try_get("bank")?,
        kind: r.try_get("kind")?,
        project_code: r.try_get("project_code")?,
        contractor_uscc: r.try_get("contractor_uscc")?,
        region: r.try_get("region")?,
        status: r.try_get("status")?,
        opened_on: r.try_get("opened_on")?,
    })
}

/// An account event waiting for the commit, and an account changed in the transaction.
#[derive(Debug, Clone)]
pub(super) struct PendingEvent {
    bank: String,
    event_id: String,
    event_sha256: Vec<u8>,
    log_index: i64,
    batch_index: i64,
    batch_size: i64,
    audit_path: Vec<u8>,
    account_number: String,
    kind: String,
    occurred_at: i64,
    amount_fen: i64,
    payroll_month: String,
    event: Vec<u8>,
}

/// An account as the transaction left it, with the entry that first registered it.
#[derive(Debug, Clone)]
pub(super) struct PendingAccount {
    row: AccountRow,
    first_index: i64,
    at: i64,
}

impl LedgerTx {
    /// The account as this transaction sees it: the registry's row, or what an earlier append
    /// of the transaction made of it.
    pub async fn account(&mut self, number: &str) -> Result<Option<AccountRow>, StoreError> {
        if let Some(p) = self.accounts.get(number) {
            return Ok(Some(p.row.clone()));
        }
        if let Some(known) = self.accounts_read.get(number) {
            return Ok(known.clone());
        }
        let row = self.read_account(number).await?;
        self.accounts_read.insert(number.to_owned(), row.clone());
        Ok(row)
    }

    async fn read_account(&mut self, number: &str) -> Result<Option<AccountRow>, StoreError> {
        let row = sqlx::query(
            "SELECT account_number, bank, kind, project_code, contractor_uscc, region, status, opened_on \
             FROM accounts WHERE account_number = $1",
        )
        .bind(number)
        .fetch_optional(&mut self.tx)
        .await?;
        row.as_ref().map(account).transpose()
    }

    /// Registers an account (first event) or updates what a later event says of it; written at
    /// commit, once per account.
    pub async fn upsert_account(
        &mut self,
        a: &AccountRow,
        log_index: u64,
        at: i64,
    ) -> Result<(), StoreError> {
        let held = self.account(&a.account_number).await?;
        let mut row = a.clone();
        // An update keeps the bank the account was registered to.
        if let Some(held) = held {
            row.bank = held.bank;
        }
        let first_index = self
            .accounts
            .get(&a.account_number)
            .map_or(log_index as i64, |p| p.first_index);
        self.accounts.insert(
            a.account_number.clone(),
            PendingAccount {
                row,
                first_index,
                at,
            },
        );
        Ok(())
    }

    /// Reads, for a whole group at once, the accounts and the banks' event ids its appends
    /// will look at; later lookups of them are answered in memory.
    pub async fn prefetch_accounts(
        &mut self,
        numbers: &[&str],
        events: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let numbers = super::cases::unknown(numbers, |n| {
            self.accounts.contains_key(n) || self.accounts_read.contains_key(n)
        });
        for chunk in super::ledger::lookups(self.backend, &numbers) {
            let sql = format!(
                "SELECT account_number, bank, kind, project_code, contractor_uscc, region, status, opened_on \
                 FROM accounts WHERE account_number IN ({})",
                super::ledger::placeholders(self.backend, 1, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for n in chunk {
                q = q.bind(*n);
            }
            for r in q.fetch_all(&mut self.tx).await? {
                let row = account(&r)?;
                self.accounts_read
                    .insert(row.account_number.clone(), Some(row));
            }
            for n in chunk {
                self.accounts_read.entry((*n).to_owned()).or_insert(None);
            }
        }
        let mut by_bank: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for (bank, id) in events {
            let key = ((*bank).to_owned(), (*id).to_owned());
            if !self.event_shas.contains_key(&key) && !self.events_absent.contains(&key) {
                by_bank.entry(bank).or_default().push(id);
            }
        }
        for (bank, mut ids) in by_bank {
            ids.sort_unstable();
            ids.dedup();
            let found = self.read_event_digests(bank, &ids).await?;
            for id in ids {
                let key = (bank.to_owned(), id.to_owned());
                match found.get(id) {
                    Some(sha) => {
                        self.event_shas.insert(key, sha.clone());
                    }
                    None => {
                        self.events_absent.insert(key);
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the projects, accounts and events kept for the commit.
    pub(super) async fn write_accounts(&mut self) -> Result<(), StoreError> {
        self.write_projects().await?;
        let accounts: Vec<PendingAccount> =
            std::mem::take(&mut self.accounts).into_values().collect();
        for chunk in super::ledger::statements(self.backend, &accounts, |p| {
            p.row.account_number.len() + p.row.project_code.len() + 160
        }) {
            let sql = format!(
                "INSERT INTO accounts (account_number, bank, kind, project_code, contractor_uscc, region, status, opened_on, first_index, last_event_at) \
                 VALUES {} \
                 ON CONFLICT (account_number) DO UPDATE SET kind = excluded.kind, project_code = excluded.project_code, \
                 contractor_uscc = excluded.contractor_uscc, region = excluded.region, status = excluded.status, \
                 opened_on = excluded.opened_on, last_event_at = excluded.last_event_at",
                super::ledger::values(self.backend, 10, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for p in chunk {
                let a = &p.row;
                q = q
                    .bind(a.account_number.as_str())
                    .bind(a.bank.as_str())
                    .bind(a.kind.as_str())
                    .bind(a.project_code.as_str())
                    .bind(a.contractor_uscc.as_str())
                    .bind(a.region.as_str())
                    .bind(a.status.as_str())
                    .bind(a.opened_on.as_str())
                    .bind(p.first_index)
                    .bind(p.at);
            }
            self.write(q).await?;
        }
        let events = std::mem::take(&mut self.events);
        for chunk in super::ledger::statements(self.backend, &events, |e| {
            e.event.len() + e.audit_path.len() + 160
        }) {
            let sql = format!(
                "INSERT INTO account_events (bank, event_id, event_sha256, log_index, batch_index, batch_size, audit_path, \
                 account_number, kind, occurred_at, amount_fen, payroll_month, event) VALUES {}",
                super::ledger::values(self.backend, 13, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for e in chunk {
                q = q
                    .bind(e.bank.as_str())
                    .bind(e.event_id.as_str())
                    .bind(e.event_sha256.as_slice())
                    .bind(e.log_index)
                    .bind(e.batch_index)
                    .bind(e.batch_size)
                    .bind(e.audit_path.as_slice())
                    .bind(e.account_number.as_str())
                    .bind(e.kind.as_str())
                    .bind(e.occurred_at)
                    .bind(e.amount_fen)
                    .bind(e.payroll_month.as_str())
                    .bind(e.event.as_slice());
            }
            self.write(q).await?;
        }
        Ok(())
    }

    /// The digests of the events a bank already reported under these ids (stored, or kept
    /// for this transaction's commit), by id.
    pub async fn event_digests(
        &mut self,
        bank: &str,
        event_ids: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<u8>>, StoreError> {
        let mut found = std::collections::HashMap::new();
        let mut ask = Vec::new();
        for id in event_ids {
            let key = (bank.to_owned(), (*id).to_owned());
            match self.event_shas.get(&key) {
                Some(sha) => {
                    found.insert((*id).to_owned(), sha.clone());
                }
                None if self.events_absent.contains(&key) => {}
                None => ask.push(*id),
            }
        }
        found.extend(self.read_event_digests(bank, &ask).await?);
        Ok(found)
    }

    /// The digests of the stored events of `bank` with these ids, by id.
    async fn read_event_digests(
        &mut self,
        bank: &str,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<u8>>, StoreError> {
        let mut found = std::collections::HashMap::new();
        for chunk in super::ledger::lookups(self.backend, ids) {
            let sql = format!(
                "SELECT event_id, event_sha256 FROM account_events WHERE bank = {} AND event_id IN ({})",
                super::ledger::param(self.backend, 1),
                super::ledger::placeholders(self.backend, 2, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(bank);
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&mut self.tx).await? {
                found.insert(r.try_get("event_id")?, r.try_get("event_sha256")?);
            }
        }
        Ok(found)
    }

    /// Keeps an event for the commit.
    pub async fn insert_event(&mut self, e: &EventRow<'_>) -> Result<(), StoreError> {
        self.event_shas.insert(
            (e.bank.to_owned(), e.event_id.to_owned()),
            e.event_sha256.to_vec(),
        );
        self.events.push(PendingEvent {
            bank: e.bank.to_owned(),
            event_id: e.event_id.to_owned(),
            event_sha256: e.event_sha256.to_vec(),
            log_index: e.log_index as i64,
            batch_index: i64::from(e.batch_index),
            batch_size: i64::from(e.batch_size),
            audit_path: e.audit_path.to_vec(),
            account_number: e.account_number.to_owned(),
            kind: e.kind.to_owned(),
            occurred_at: e.occurred_at,
            amount_fen: e.amount_fen,
            payroll_month: e.payroll_month.to_owned(),
            event: e.event.to_vec(),
        });
        Ok(())
    }

    /// Records a project as a lead names it; written with the accounts at commit (nothing in
    /// the transaction reads projects back).
    pub async fn upsert_project(
        &mut self,
        code: &str,
        name: &str,
        industry: &str,
        region: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        self.projects.insert(
            code.to_owned(),
            (name.to_owned(), industry.to_owned(), region.to_owned(), at),
        );
        Ok(())
    }

    /// Writes the projects kept for the commit, several per statement.
    async fn write_projects(&mut self) -> Result<(), StoreError> {
        let projects: Vec<_> = std::mem::take(&mut self.projects).into_iter().collect();
        for chunk in super::ledger::statements(self.backend, &projects, |(code, p)| {
            code.len() + p.0.len() + p.1.len() + p.2.len() + 8
        }) {
            let sql = format!(
                "INSERT INTO projects (project_code, name, industry, region, updated_at) VALUES {} \
                 ON CONFLICT (project_code) DO UPDATE SET name = excluded.name, industry = excluded.industry, \
                 region = excluded.region, updated_at = excluded.updated_at",
                super::ledger::values(self.backend, 5, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (code, (name, industry, region, at)) in chunk {
                q = q
                    .bind(code.as_str())
                    .bind(name.as_str())
                    .bind(industry.as_str())
                    .bind(region.as_str())
                    .bind(*at);
            }
            self.write(q).await?;
        }
        Ok(())
    }

    /// The case of a warning already raised for this rule, subject and period.
    pub async fn warning(
        &mut self,
        rule: &str,
        subject: &str,
        period: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT case_id FROM warnings WHERE rule = $1 AND subject = $2 AND period = $3",
        )
        .bind(rule)
        .bind(subject)
        .bind(period)
        .fetch_optional(&mut self.tx)
        .await?;
        row.map(|r| r.try_get("case_id").map_err(StoreError::from))
            .transpose()
    }

    pub async fn insert_warning(
        &mut self,
        rule: &str,
        subject: &str,
        period: &str,
        case_id: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO warnings (rule, subject, period, case_id, raised_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(rule)
        .bind(subject)
        .bind(period)
        .bind(case_id)
        .bind(at)
        .execute(&mut self.tx)
        .await?;
        Ok(())
    }
}

impl LedgerTx {
    /// Records which entry answers a query (written at commit, after the entries).
    pub async fn insert_query_answer(
        &mut self,
        query_index: u64,
        answer_index: u64,
    ) -> Result<(), StoreError> {
        self.query_answers
            .push((query_index as i64, answer_index as i64));
        Ok(())
    }

    pub(super) async fn write_query_answers(&mut self) -> Result<(), StoreError> {
        let answers = std::mem::take(&mut self.query_answers);
        for chunk in super::ledger::statements(self.backend, &answers, |_| 16) {
            let sql = format!(
                "INSERT INTO query_answers (query_index, answer_index) VALUES {} ON CONFLICT DO NOTHING",
                super::ledger::values(self.backend, 2, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (query, answer) in chunk {
                q = q.bind(*query).bind(*answer);
            }
            self.write(q).await?;
        }
        Ok(())
    }
}

impl Store {
    /// The log index of the bank answer to the query logged at `query_index`.
    pub async fn query_answer(&self, query_index: u64) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query("SELECT answer_index FROM query_answers WHERE query_index = $1")
            .bind(query_index as i64)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(super::ledger::index(r.try_get("answer_index")?)))
            .transpose()
    }

    pub async fn account(&self, number: &str) -> Result<Option<AccountRow>, StoreError> {
        let row = sqlx::query(
            "SELECT account_number, bank, kind, project_code, contractor_uscc, region, status, opened_on \
             FROM accounts WHERE account_number = $1",
        )
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account).transpose()
    }

    /// Open accounts of a kind (`wage-account`, `guarantee-deposit`), for the warning rules.
    pub async fn open_accounts(&self, kind: &str) -> Result<Vec<AccountRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT account_number, bank, kind, project_code, contractor_uscc, region, status, opened_on \
             FROM accounts WHERE kind = $1 AND status = 'open' ORDER BY account_number",
        )
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(account).collect()
    }

    /// The latest events of some kinds on an account, newest first: (occurred_at, kind, amount,
    /// event bytes).
    pub async fn latest_events(
        &self,
        account: &str,
        kinds: &[&str],
        limit: u32,
    ) -> Result<Vec<(i64, String, i64, Vec<u8>)>, StoreError> {
        let mut out: Vec<(i64, String, i64, Vec<u8>)> = Vec::new();
        for kind in kinds {
            let rows = sqlx::query(
                "SELECT occurred_at, kind, amount_fen, event FROM account_events \
                 WHERE account_number = $1 AND kind = $2 ORDER BY occurred_at DESC LIMIT $3",
            )
            .bind(account)
            .bind(*kind)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                out.push((
                    r.try_get("occurred_at")?,
                    r.try_get("kind")?,
                    r.try_get("amount_fen")?,
                    r.try_get("event")?,
                ));
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.0));
        out.truncate(limit as usize);
        Ok(out)
    }

    /// How many cases were opened since `since` (Unix seconds) for leads naming this project,
    /// not counting the gateway's own warning leads.
    pub async fn leads_on_project(
        &self,
        project_code: &str,
        since: i64,
    ) -> Result<u32, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM cases WHERE project_code = $1 AND created_at >= $2 AND source <> 'gateway'",
        )
        .bind(project_code)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>("n")?.clamp(0, i64::from(u32::MAX)) as u32)
    }

    /// Projects named by at least one lead since `since`.
    pub async fn projects_with_leads(
        &self,
        since: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT project_code, region FROM cases WHERE project_code <> '' AND created_at >= $1 AND source <> 'gateway'",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("project_code")?, r.try_get("region")?)))
            .collect()
    }

    /// Where an event is proven: (log index, index in its batch, batch size, audit path, bytes).
    pub async fn event_proof(
        &self,
        bank: &str,
        event_id: &str,
    ) -> Result<Option<(u64, u32, u32, Vec<u8>, Vec<u8>)>, StoreError> {
        let row = sqlx::query(
            "SELECT log_index, batch_index, batch_size, audit_path, event FROM account_events WHERE bank = $1 AND event_id = $2",
        )
        .bind(bank)
        .bind(event_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let n = |c: &str| -> Result<u32, StoreError> {
                Ok(r.try_get::<i64, _>(c)?.clamp(0, i64::from(u32::MAX)) as u32)
            };
            Ok((
                super::ledger::index(r.try_get("log_index")?),
                n("batch_index")?,
                n("batch_size")?,
                r.try_get("audit_path")?,
                r.try_get("event")?,
            ))
        })
        .transpose()
    }

    /// Whether a payroll for `month` (YYYY-MM) was reported paid on the account.
    pub async fn payroll_paid(&self, account: &str, month: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM account_events WHERE account_number = $1 AND kind = 'payroll-paid' AND payroll_month = $2 LIMIT 1",
        )
        .bind(account)
        .bind(month)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// The industry (and name) of a project, when a lead or project record named it.
    pub async fn project(&self, code: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self.projects(&[code]).await?.remove(code))
    }

    /// The industry (and name) of each of these projects a lead or project record named, by
    /// code; a code named twice is looked up once.
    pub async fn projects(
        &self,
        codes: &[&str],
    ) -> Result<std::collections::HashMap<String, (String, String)>, StoreError> {
        let mut codes = codes.to_vec();
        codes.sort_unstable();
        codes.dedup();
        let mut found = std::collections::HashMap::new();
        for chunk in super::ledger::lookups(self.backend, &codes) {
            let sql = format!(
                "SELECT project_code, name, industry FROM projects WHERE project_code IN ({})",
                super::ledger::placeholders(self.backend, 1, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for c in chunk {
                q = q.bind(*c);
            }
            for r in q.fetch_all(&self.pool).await? {
                found.insert(
                    r.try_get("project_code")?,
                    (r.try_get("name")?, r.try_get("industry")?),
                );
            }
        }
        Ok(found)
    }

    pub async fn warning_raised(
        &self,
        rule: &str,
        subject: &str,
        period: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM warnings WHERE rule = $1 AND subject = $2 AND period = $3",
        )
        .bind(rule)
        .bind(subject)
        .bind(period)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// The warnings raised for a rule: (subject, period, case id).
    pub async fn warnings(&self, rule: &str) -> Result<Vec<(String, String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT subject, period, case_id FROM warnings WHERE rule = $1 ORDER BY subject, period",
        )
        .bind(rule)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("subject")?,
                    r.try_get("period")?,
                    r.try_get("case_id")?,
                ))
            })
            .collect()
    }
}

/// An account query waiting for a replica with a link to its bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRow {
    pub query_index: u64,
    pub bank: String,
    pub asker: String,
    pub deadline: i64,
}

impl Store {
    /// Asks the replicas for a link to `bank` to relay the query logged at `query_index`
    /// (again, for a resent query: its earlier outcome is forgotten).
    pub async fn request_relay(&self, r: &RelayRow, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO query_relays (query_index, bank, asker, deadline, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (query_index) DO UPDATE SET \
             deadline = excluded.deadline, taken_by = NULL, refusal_code = NULL, refusal_message = NULL",
        )
        .bind(r.query_index as i64)
        .bind(&r.bank)
        .bind(&r.asker)
        .bind(r.deadline)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if self.backend == super::Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(super::Notice::Queries.channel())
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Takes the open relays of `bank` for replica `replica` (skipping rows another replica is
    /// taking right now).
    pub async fn take_relays(
        &self,
        bank: &str,
        replica: &str,
        now: i64,
    ) -> Result<Vec<RelayRow>, StoreError> {
        let lock = match self.backend {
            super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            super::Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE query_relays SET taken_by = $1 WHERE query_index IN (\
               SELECT query_index FROM query_relays WHERE bank = $2 AND taken_by IS NULL \
               AND deadline >= $3 ORDER BY query_index LIMIT 64{lock}) \
             RETURNING query_index, bank, asker, deadline"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(replica)
            .bind(bank)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RelayRow {
                    query_index: super::ledger::index(r.try_get("query_index")?),
                    bank: r.try_get("bank")?,
                    asker: r.try_get("asker")?,
                    deadline: r.try_get("deadline")?,
                })
            })
            .collect()
    }

    /// Gives a relay back (this replica could not send it after all).
    pub async fn release_relay(&self, query_index: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE query_relays SET taken_by = NULL WHERE query_index = $1")
            .bind(query_index as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records the bank's refusal of a relayed query, for the asking replica.
    pub async fn refuse_relay(
        &self,
        query_index: u64,
        code: i32,
        message: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE query_relays SET refusal_code = $1, refusal_message = $2 WHERE query_index = $3",
        )
        .bind(i64::from(code))
        .bind(message)
        .bind(query_index as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The refusal recorded for a relayed query, if any: (gRPC code, message).
    pub async fn relay_refusal(
        &self,
        query_index: u64,
    ) -> Result<Option<(i32, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT refusal_code, refusal_message FROM query_relays WHERE query_index = $1",
        )
        .bind(query_index as i64)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let code: Option<i64> = row.try_get("refusal_code")?;
        let message: Option<String> = row.try_get("refusal_message")?;
        Ok(code.map(|c| (c as i32, message.unwrap_or_default())))
    }
}

impl Store {
    /// Withdraws a relay no replica has taken (none holds a link to the bank): true when it was
    /// withdrawn, false when a replica took it meanwhile.
    pub async fn withdraw_relay(&self, query_index: u64) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE query_relays SET deadline = 0 WHERE query_index = $1 AND taken_by IS NULL",
        )
        .bind(query_index as i64)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::each_backend;

    /// Projects named in a transaction are written at its commit, the last naming of a code
    /// winning, and a later transaction's naming updates them. A batch's projects are read in
    /// one lookup: each known code once with its own industry, an unknown code left out, a code
    /// named twice answered once.
    #[tokio::test]
    async fn projects_are_written_at_commit_and_read_together_by_code() {
        for db in each_backend().await {
            let store = db.store();
            let mut tx = store.begin_ledger().await.unwrap();
            tx.upsert_project("P-1", "旧名", "water", "500105", 1)
                .await
                .unwrap();
            tx.upsert_project("P-2", "二号", "water", "500112", 1)
                .await
                .unwrap();
            tx.upsert_project("P-1", "一号", "housing-municipal", "500105", 1)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            let mut tx = store.begin_ledger().await.unwrap();
            tx.upsert_project("P-2", "二号", "transport", "500112", 1)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            let found = store.projects(&["P-2", "P-1", "P-9", "P-2"]).await.unwrap();
            assert_eq!(found.len(), 2, "{}: {found:?}", db.name);
            assert_eq!(
                found["P-1"],
                ("一号".to_owned(), "housing-municipal".to_owned())
            );
            assert_eq!(found["P-2"], ("二号".to_owned(), "transport".to_owned()));
            assert!(store.projects(&["P-9"]).await.unwrap().is_empty());
        }
    }
}
