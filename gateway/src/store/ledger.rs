//! The evidence log's tables: entries, payloads beside them, accepted envelopes (for
//! idempotency) and signed checkpoints. Appends happen in a [`LedgerTx`] so a group of entries
//! becomes durable together or not at all.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::Any;

use super::writer::WriterTx;

use super::{Store, StoreError};

/// An envelope accepted earlier under the same (sender, message_id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorEnvelope {
    pub header_sha256: Vec<u8>,
    pub log_index: u64,
    pub receipt: Vec<u8>,
}

/// One stored log entry, with its payload when asked for and still held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub index: u64,
    pub entry: Vec<u8>,
    pub payload: Option<Vec<u8>>,
    pub payload_erased: bool,
}

/// The statement of [`Store::held_by`].
const HELD_BY_SQL: &str = "SELECT COUNT(*) AS n FROM mailbox WHERE partner_id = $1 \
     AND state = 'pending' AND claimed_by = $2 AND claimed_until > $3";

/// The statement of [`LedgerTx::rows_by_pairs`] for `n` pairs with `firsts` distinct first
/// keys.
///
/// PostgreSQL looks each pair up by the whole primary key, one after another (a lateral
/// subquery, kept apart by `OFFSET 0` so the planner cannot turn it into a join of its choice).
/// Asked as two IN lists, it planned the lookup on the first column alone whenever its
/// statistics held few rows of that sender, and read every envelope the sender had sent since
/// (27 ms at 20,000, a partner's acknowledgements after an outage). SQLite, which keeps no
/// statistics here, answers the two IN lists from the primary key; it binds the distinct first
/// keys, then every second key.
fn pairs_sql(
    backend: super::Backend,
    columns: &str,
    table: &str,
    key: (&str, &str),
    firsts: usize,
    n: usize,
) -> String {
    match backend {
        super::Backend::Postgres => format!(
            "SELECT t.* FROM (VALUES {}) AS k (wl_first, wl_second) CROSS JOIN LATERAL \
             (SELECT {columns} FROM {table} WHERE {} = k.wl_first AND {} = k.wl_second OFFSET 0) t",
            values(backend, 2, n),
            key.0,
            key.1
        ),
        super::Backend::Sqlite => format!(
            "SELECT {columns} FROM {table} WHERE {} IN ({}) AND {} IN ({})",
            key.0,
            placeholders(backend, 1, firsts),
            key.1,
            placeholders(backend, firsts + 1, n)
        ),
    }
}

/// The statement of [`Store::claim`]. Its pending messages are found through
/// `mailbox_pending_by_cursor`, which holds no acknowledged message.
fn claim_sql(backend: super::Backend) -> String {
    let lock = match backend {
        super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        super::Backend::Sqlite => "",
    };
    format!(
        "UPDATE mailbox SET attempts = attempts + 1, claimed_by = $1, claimed_until = $2, \
         state = CASE WHEN attempts + 1 > $3 THEN 'dead' ELSE state END \
         WHERE partner_id = $4 AND cursor IN (\
           SELECT cursor FROM mailbox WHERE partner_id = $4 AND state = 'pending' \
           AND cursor >= $5 AND (claimed_until IS NULL OR claimed_until <= $6) \
           ORDER BY cursor LIMIT $7{lock}) \
         RETURNING cursor, log_index, attempts, enqueued_at, state"
    )
}

/// The statement of [`Store::deliverable`] for `n` indexes.
fn deliverable_sql(backend: super::Backend, n: usize, with_payloads: bool) -> String {
    let (payload, join) = if with_payloads {
        ("p.payload", "LEFT JOIN payloads p ON p.log_index = e.idx")
    } else {
        ("NULL AS payload", "")
    };
    format!(
        "SELECT e.idx, e.entry, {payload}, v.receipt, v.traceparent FROM log_entries e {join} \
         LEFT JOIN envelopes v ON v.log_index = e.idx WHERE e.idx IN ({})",
        placeholders(backend, 1, n)
    )
}

/// A log entry as a mailbox message is sent from it (see [`Store::deliverable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliverable {
    pub entry: Vec<u8>,
    pub payload: Option<Vec<u8>>,
    /// The gateway's receipt for the envelope the entry accepted (none for other entries).
    pub receipt: Option<Vec<u8>>,
    pub traceparent: Option<String>,
}

/// A stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub tree_size: u64,
    pub root_hash: Vec<u8>,
    pub note: String,
    pub signed_at: i64,
}

/// One message in a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxRow {
    pub cursor: u64,
    pub log_index: u64,
    pub attempts: u32,
    pub enqueued_at: i64,
}

/// An open append transaction.
///
/// Rows are kept in memory and written at commit, several per statement: a group of appends
/// then costs a handful of statements instead of several per append. Log entries, cases and
/// source references, which other rows refer to and the group reads back, are written first
/// ([`LedgerTx::settle`]); until then the transaction answers reads of them from memory.
/// Payloads, envelopes, mailbox messages, case parties and account rows follow.
pub struct LedgerTx {
    pub(super) tx: WriterTx,
    pub(super) backend: super::Backend,
    rows: Rows,
    /// The last mailbox cursor of each partner, as this transaction has it.
    cursors: HashMap<String, i64>,
    /// Accounts changed by the transaction (written at commit) and accounts read from the
    /// registry (`None`: not registered).
    pub(super) accounts: HashMap<String, super::accounts::PendingAccount>,
    pub(super) accounts_read: HashMap<String, Option<super::AccountRow>>,
    /// Account events kept for the commit, and their digests by (bank, event id).
    pub(super) events: Vec<super::accounts::PendingEvent>,
    pub(super) event_shas: HashMap<(String, String), Vec<u8>>,
    /// (query index, answer index) pairs kept for the commit.
    pub(super) query_answers: Vec<(i64, i64)>,
    /// (bank, event id) pairs read from the store and not found there.
    pub(super) events_absent: std::collections::HashSet<(String, String)>,
    /// Projects named by the transaction's leads, by code: (name, industry, region, at); the
    /// last naming of a code wins, as it would have written one after another.
    pub(super) projects: std::collections::BTreeMap<String, (String, String, String, i64)>,
    /// Cases and source references as the transaction has them.
    pub(super) cases: super::cases::CaseCache,
    /// The index the next entry takes, once known.
    next: Option<u64>,
    /// Where the SQLite writer keeps what it knows for its next transaction.
    memory: Option<std::sync::Arc<std::sync::Mutex<WriterMemory>>>,
    /// During the commit: the writes kept to go to the database together.
    pub(super) batch: Option<Batch>,
    /// PostgreSQL: what the commit tells the other replicas.
    notices: Vec<Notice>,
}

/// A commit's write statements, sent to the database together with their parameters.
///
/// - SQLite: one string of statements in one round trip to its connection's thread, their
///   parameters (all anonymous, see [`param`]) bound in order across the statements, and
///   `COMMIT` after them (see `WriterTx`). A round trip took about 0.3 ms when the runtime's
///   threads were busy, even for `SELECT 1` (BENCHMARKS.md, session 10), and a group of leads
///   wrote six statements before its COMMIT. The batch is cached as one prepared statement list
///   under its whole text, like any query: a steady load repeats a few shapes, and an uncached
///   one costs what its statements cost to prepare one by one.
/// - PostgreSQL: its extended protocol takes one statement per message. A small commit's writes
///   become the data-modifying `WITH` queries of one statement, their `$n` parameters numbered
///   on across them, and the transaction's notifications its final `SELECT`. Every part of
///   such a statement sees the same snapshot and none sees another's rows; the writes of a
///   commit are inserts and upserts of distinct rows, and foreign keys are checked at the end
///   of the whole statement. A larger commit (more than [`PG_JOINED_PARAMETERS`] parameters)
///   sends its writes one by one, as before: joined, its text would rarely repeat, each would
///   take a place in the connection's cache of prepared statements, and the protocol's limit of
///   65,535 parameters would need a second statement. Joining every commit measured the same
///   at 64 in flight (BENCHMARKS.md, session 11), where a group's round trips are few beside its
///   rows.
#[derive(Default)]
pub(super) struct Batch {
    /// The writes, in order, each with its parameters.
    writes: Vec<(String, sqlx::any::AnyArguments)>,
}

/// Most parameters the writes of a PostgreSQL commit may hold to go as one statement: a few
/// appends' worth (an account query's writes take 19: its entry, payload, envelope and mailbox
/// message).
const PG_JOINED_PARAMETERS: usize = 400;

impl Batch {
    /// Adds `sql` and its `arguments`. On PostgreSQL a small commit's writes become parts of
    /// one statement, which see the same snapshot and run in no set order: they must be
    /// `INSERT`s (upserts included) of rows no other part of the commit writes, and their text
    /// may hold no `$` but parameters and single-quoted literals (see [`renumber`]).
    fn push(&mut self, sql: &str, arguments: sqlx::any::AnyArguments) {
        self.writes.push((sql.to_owned(), arguments));
    }

    /// SQLite: the writes as one string of statements, their anonymous parameters in order.
    fn sqlite_statement(self) -> (String, sqlx::any::AnyArguments) {
        let mut sql = String::new();
        let mut arguments = sqlx::any::AnyArguments::default();
        for (statement, values) in self.writes {
            sql.push_str(&statement);
            sql.push_str(";\n");
            // The buffer's field is public but hidden from sqlx's documentation; sqlx is
            // pinned by Cargo.lock, and the tests run every batched write.
            arguments.values.0.extend(values.values.0);
        }
        (sql, arguments)
    }

    /// PostgreSQL: the statements that send the batch and, when it commits, `notices`.
    fn postgres_statements(self, notices: &[Notice]) -> Vec<(String, sqlx::any::AnyArguments)> {
        use sqlx::Arguments as _;
        let parameters: usize = self.writes.iter().map(|(_, v)| v.values.0.len()).sum();
        let joined = parameters + notices.len() <= PG_JOINED_PARAMETERS;
        let mut statements = Vec::new();
        let mut parts = String::new();
        let mut arguments = sqlx::any::AnyArguments::default();
        let mut numbered = 0;
        for (i, (sql, values)) in self.writes.into_iter().enumerate() {
            if !joined {
                statements.push((sql, values));
                continue;
            }
            if i > 0 {
                parts.push_str(",\n");
            }
            parts.push_str(&format!("w{i} AS ("));
            renumber(&sql, numbered, &mut parts);
            parts.push(')');
            numbered += values.values.0.len();
            arguments.values.0.extend(values.values.0);
        }
        if parts.is_empty() && notices.is_empty() {
            return statements;
        }
        let mut select = Vec::new();
        for notice in notices {
            numbered += 1;
            select.push(format!("pg_notify(${numbered}, '')"));
            // A &'static str always encodes.
            let _ = arguments.add(notice.channel());
        }
        let select = if select.is_empty() {
            "1".to_owned()
        } else {
            select.join(", ")
        };
        statements.push(if parts.is_empty() {
            (format!("SELECT {select}"), arguments)
        } else {
            (format!("WITH {parts}\nSELECT {select}"), arguments)
        });
        statements
    }
}

/// Appends `sql` to `out` with its PostgreSQL parameters `$n` numbered from `offset + 1`
/// (`$1` becomes `$offset+1`); text in single quotes is copied as it is. It knows no
/// dollar-quoted strings, comments or `E''` escapes, which the log's write statements do not
/// use.
fn renumber(sql: &str, offset: usize, out: &mut String) {
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        match c {
            '\'' => quoted = !quoted,
            '$' if !quoted => {
                let mut n = String::new();
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    n.push(d);
                }
                match n.parse::<usize>() {
                    Ok(n) => out.push_str(&(n + offset).to_string()),
                    Err(_) => out.push_str(&n),
                }
            }
            _ => {}
        }
    }
}

/// A write statement with its parameters bound.
pub(super) type WriteQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

/// [`LedgerTx::write`] for callers that hold other parts of the transaction borrowed.
pub(super) async fn write_to(
    tx: &mut WriterTx,
    batch: &mut Option<Batch>,
    mut q: WriteQuery<'_>,
) -> Result<(), StoreError> {
    use sqlx::Execute as _;
    let Some(kept) = batch.as_mut() else {
        q.execute(tx).await?;
        return Ok(());
    };
    let arguments = q.take_arguments().map_err(sqlx::Error::Encode)?;
    kept.push(q.sql().as_str(), arguments.unwrap_or_default());
    Ok(())
}

/// What the SQLite log writer knows from one transaction to the next, so a group need not ask
/// the database again: the index the next entry takes and each partner's last mailbox cursor.
/// A transaction takes this memory and gives it back when it commits; after one that failed the
/// values are read afresh. Another process appending to the same file (`wagelink admin
/// bootstrap` while the gateway runs) leaves the memory behind; the next group's rows then
/// collide with its rows (indexes and cursors have no gaps), the group fails and is retried
/// with values read afresh.
#[derive(Debug, Default)]
pub(super) struct WriterMemory {
    next: Option<u64>,
    cursors: HashMap<String, i64>,
}

/// Rows waiting for the commit.
#[derive(Default)]
struct Rows {
    /// (index, entry, leaf hash, appended at), in index order.
    entries: Vec<(i64, Vec<u8>, Vec<u8>, i64)>,
    payloads: Vec<(i64, Vec<u8>, Vec<u8>)>,
    envelopes: Vec<EnvelopeRow>,
    mailbox: Vec<(String, i64, i64, i64)>,
    parties: std::collections::HashSet<(String, String, String)>,
}

struct EnvelopeRow {
    sender: String,
    message_id: String,
    header_sha256: Vec<u8>,
    payload_type: String,
    log_index: i64,
    receipt: Vec<u8>,
    at: i64,
    traceparent: Option<String>,
}

/// Most rows one multi-row statement writes on SQLite. Its parameters are anonymous (see
/// [`param`]), so binding costs grow with their number, not its square.
pub(super) const ROWS_PER_STATEMENT: usize = 50;
/// On PostgreSQL, where [`super::nodelay`] can turn Nagle's algorithm off.
#[cfg(target_os = "linux")]
const PG_ROWS_PER_STATEMENT: usize = 50;
#[cfg(not(target_os = "linux"))]
const PG_ROWS_PER_STATEMENT: usize = 20;

/// Most parameter bytes one multi-row statement carries on PostgreSQL. A statement of 25 KB once
/// took 40 ms on loopback: sqlx 0.9.0 left Nagle's algorithm on (see `store::nodelay`, which
/// now turns it off); the bound keeps a statement within a few network round trips' worth of
/// data.
#[cfg(target_os = "linux")]
pub(super) const PG_STATEMENT_BYTES: usize = 64 * 1024;
/// Elsewhere Nagle's algorithm stays on: statements stay within one write of a new socket.
#[cfg(not(target_os = "linux"))]
pub(super) const PG_STATEMENT_BYTES: usize = 8 * 1024;

/// `rows` cut into the statements that write them: at most [`ROWS_PER_STATEMENT`] rows each
/// (`PG_ROWS_PER_STATEMENT` on PostgreSQL), and on PostgreSQL at most [`PG_STATEMENT_BYTES`] of
/// parameters (`bytes` of each row), one row at least.
pub(super) fn statements<T>(
    backend: super::Backend,
    rows: &[T],
    bytes: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let most = match backend {
        super::Backend::Sqlite => ROWS_PER_STATEMENT,
        super::Backend::Postgres => PG_ROWS_PER_STATEMENT,
    };
    cut(backend, rows, most, bytes)
}

/// Most keys one lookup statement carries (within [`PG_STATEMENT_BYTES`] on PostgreSQL).
pub(super) const KEYS_PER_LOOKUP: usize = 200;

/// `keys` cut into the lookups that read them: at most [`KEYS_PER_LOOKUP`] each, and on
/// PostgreSQL at most [`PG_STATEMENT_BYTES`].
pub(super) fn lookups<'a>(backend: super::Backend, keys: &'a [&'a str]) -> Vec<&'a [&'a str]> {
    cut(backend, keys, KEYS_PER_LOOKUP, |k| k.len() + 8)
}

fn cut<T>(
    backend: super::Backend,
    rows: &[T],
    most: usize,
    bytes: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let limit = match backend {
        super::Backend::Sqlite => usize::MAX,
        super::Backend::Postgres => PG_STATEMENT_BYTES,
    };
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        let b = bytes(row);
        if i > start && (i - start == most || size + b > limit) {
            out.push(&rows[start..i]);
            (start, size) = (i, 0);
        }
        size += b;
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// `n` placeholders from parameter `first` on, bound in order: `$first, $first+1, …` on
/// PostgreSQL, `?, ?, …` on SQLite (see [`param`]).
pub(super) fn placeholders(backend: super::Backend, first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| param(backend, i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parameter `n` (from 1) of a statement that binds its parameters in the order they appear:
/// `$n` on PostgreSQL, `?` on SQLite. SQLite finds a named parameter (`$n`) by a walk of the
/// statement's parameter list, and sqlx asks it for every parameter's name, so binding `$n`
/// parameters costs the square of their number; an anonymous `?` has no name to look up.
pub(super) fn param(backend: super::Backend, n: usize) -> String {
    match backend {
        super::Backend::Sqlite => "?".to_owned(),
        super::Backend::Postgres => format!("${n}"),
    }
}

/// The VALUES list of `rows` rows of `width` columns, bound in order: `($1, $2), ($3, $4)…` on
/// PostgreSQL, `(?, ?), (?, ?)…` on SQLite (see [`param`]).
pub(super) fn values(backend: super::Backend, width: usize, rows: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(backend, r * width + 1, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What other replicas are told when a transaction commits (PostgreSQL NOTIFY channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Messages were put in mailboxes: feeds look again at once.
    Mailboxes,
    /// Partners, certificates or routing rules changed: reload them at once.
    Registry,
    /// An account query waits for a replica with a link to its bank.
    Queries,
}

impl Notice {
    pub const ALL: [Notice; 3] = [Notice::Mailboxes, Notice::Registry, Notice::Queries];

    pub fn channel(self) -> &'static str {
        match self {
            Notice::Mailboxes => "wagelink_mailboxes",
            Notice::Registry => "wagelink_registry",
            Notice::Queries => "wagelink_queries",
        }
    }
}

pub(super) fn index(i: i64) -> u64 {
    i.max(0) as u64
}

impl LedgerTx {
    /// The envelopes already accepted under these (sender, message_id) keys.
    pub async fn prior_envelopes(
        &mut self,
        keys: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), PriorEnvelope>, StoreError> {
        let mut found = HashMap::new();
        let rows = self
            .rows_by_pairs(
                "sender, message_id, header_sha256, log_index, receipt",
                "envelopes",
                ("sender", "message_id"),
                keys,
            )
            .await?;
        for (key, r) in rows {
            found.insert(
                key,
                PriorEnvelope {
                    header_sha256: r.try_get("header_sha256")?,
                    log_index: index(r.try_get("log_index")?),
                    receipt: r.try_get("receipt")?,
                },
            );
        }
        Ok(found)
    }

    /// The rows (`columns`, which include both key columns) of `table` whose key columns
    /// `key` (its primary key) hold one of `pairs`, with their pair. See [`pairs_sql`].
    pub(super) async fn rows_by_pairs(
        &mut self,
        columns: &str,
        table: &str,
        key: (&str, &str),
        pairs: &[(&str, &str)],
    ) -> Result<Vec<((String, String), sqlx::any::AnyRow)>, StoreError> {
        let mut out = Vec::new();
        for chunk in statements(self.backend, pairs, |(a, b)| a.len() + b.len() + 16) {
            let mut chunk = chunk.to_vec();
            chunk.sort_unstable();
            chunk.dedup();
            let mut firsts: Vec<&str> = chunk.iter().map(|p| p.0).collect();
            firsts.dedup();
            let sql = pairs_sql(self.backend, columns, table, key, firsts.len(), chunk.len());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            match self.backend {
                super::Backend::Postgres => {
                    for (first, second) in &chunk {
                        q = q.bind(*first).bind(*second);
                    }
                }
                super::Backend::Sqlite => {
                    for first in &firsts {
                        q = q.bind(*first);
                    }
                    for (_, second) in &chunk {
                        q = q.bind(*second);
                    }
                }
            }
            for r in q.fetch_all(&mut self.tx).await? {
                let pair: (String, String) = (r.try_get(key.0)?, r.try_get(key.1)?);
                if chunk.iter().any(|(a, b)| *a == pair.0 && *b == pair.1) {
                    out.push((pair, r));
                }
            }
        }
        Ok(out)
    }

    /// Runs a write statement, or on SQLite during the commit keeps it for the batch sent
    /// before the commit (see [`Batch`]).
    pub(super) async fn write(&mut self, q: WriteQuery<'_>) -> Result<(), StoreError> {
        write_to(&mut self.tx, &mut self.batch, q).await
    }

    /// Adds a log entry (written when the transaction settles, before the rows that refer to
    /// it).
    pub async fn insert_entry(
        &mut self,
        idx: u64,
        entry: Vec<u8>,
        leaf_hash: &[u8],
        at: i64,
    ) -> Result<(), StoreError> {
        self.rows
            .entries
            .push((idx as i64, entry, leaf_hash.to_vec(), at));
        self.next = Some(idx + 1);
        Ok(())
    }

    /// Writes the log entries, cases and source references kept so far, which the other rows
    /// refer to: before the commit, and before any statement that needs them in the database.
    pub(super) async fn settle(&mut self) -> Result<(), StoreError> {
        let entries = std::mem::take(&mut self.rows.entries);
        for chunk in statements(self.backend, &entries, |e| e.1.len() + 64) {
            let sql = format!(
                "INSERT INTO log_entries (idx, entry, leaf_hash, appended_at) VALUES {}",
                values(self.backend, 4, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (idx, entry, leaf, at) in chunk {
                q = q
                    .bind(*idx)
                    .bind(entry.as_slice())
                    .bind(leaf.as_slice())
                    .bind(*at);
            }
            self.write(q).await?;
        }
        if self.cases.pending() {
            self.write_cases().await?;
        }
        Ok(())
    }

    /// Adds the payload of entry `idx` (written at commit).
    pub async fn insert_payload(
        &mut self,
        idx: u64,
        sha256: &[u8],
        payload: &[u8],
    ) -> Result<(), StoreError> {
        self.rows
            .payloads
            .push((idx as i64, sha256.to_vec(), payload.to_vec()));
        Ok(())
    }

    /// Records that `partner` has a role on a case (written at commit).
    pub fn add_party(&mut self, case_id: &str, partner: &str, role: &str) {
        self.rows
            .parties
            .insert((case_id.to_owned(), partner.to_owned(), role.to_owned()));
    }

    /// Writes the rows kept for the commit.
    async fn write_rows(&mut self) -> Result<(), StoreError> {
        let rows = std::mem::take(&mut self.rows);
        for chunk in statements(self.backend, &rows.payloads, |p| p.2.len() + 64) {
            let sql = format!(
                "INSERT INTO payloads (log_index, sha256, payload) VALUES {}",
                values(self.backend, 3, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (idx, sha, payload) in chunk {
                q = q.bind(*idx).bind(sha.as_slice()).bind(payload.as_slice());
            }
            self.write(q).await?;
        }
        for chunk in statements(self.backend, &rows.envelopes, |e| {
            e.receipt.len() + e.message_id.len() + e.sender.len() + 128
        }) {
            let sql = format!(
                "INSERT INTO envelopes (sender, message_id, header_sha256, payload_type, log_index, receipt, accepted_at, traceparent) VALUES {}",
                values(self.backend, 8, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for e in chunk {
                q = q
                    .bind(e.sender.as_str())
                    .bind(e.message_id.as_str())
                    .bind(e.header_sha256.as_slice())
                    .bind(e.payload_type.as_str())
                    .bind(e.log_index)
                    .bind(e.receipt.as_slice())
                    .bind(e.at)
                    .bind(e.traceparent.as_deref());
            }
            self.write(q).await?;
        }
        for chunk in statements(self.backend, &rows.mailbox, |m| m.0.len() + 32) {
            // Every new message is pending, not yet attempted.
            let b = self.backend;
            let rows: Vec<String> = (0..chunk.len())
                .map(|r| {
                    let n = r * 4;
                    format!(
                        "({}, {}, {}, 'pending', 0, {})",
                        param(b, n + 1),
                        param(b, n + 2),
                        param(b, n + 3),
                        param(b, n + 4)
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO mailbox (partner_id, cursor, log_index, state, attempts, enqueued_at) VALUES {}",
                rows.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (partner, cursor, log_index, at) in chunk {
                q = q
                    .bind(partner.as_str())
                    .bind(*cursor)
                    .bind(*log_index)
                    .bind(*at);
            }
            self.write(q).await?;
        }
        let parties: Vec<_> = rows.parties.into_iter().collect();
        for chunk in statements(self.backend, &parties, |p| {
            p.0.len() + p.1.len() + p.2.len()
        }) {
            let sql = format!(
                "INSERT INTO case_parties (case_id, partner_id, role) VALUES {} ON CONFLICT DO NOTHING",
                values(self.backend, 3, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (case_id, partner, role) in chunk {
                q = q
                    .bind(case_id.as_str())
                    .bind(partner.as_str())
                    .bind(role.as_str());
            }
            self.write(q).await?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn insert_envelope(
        &mut self,
        sender: &str,
        message_id: &str,
        header_sha256: &[u8],
        payload_type: &str,
        log_index: u64,
        receipt: &[u8],
        at: i64,
        traceparent: Option<&str>,
    ) -> Result<(), StoreError> {
        self.rows.envelopes.push(EnvelopeRow {
            sender: sender.to_owned(),
            message_id: message_id.to_owned(),
            header_sha256: header_sha256.to_vec(),
            payload_type: payload_type.to_owned(),
            log_index: log_index as i64,
            receipt: receipt.to_vec(),
            at,
            traceparent: traceparent.map(str::to_owned),
        });
        Ok(())
    }

    /// Puts log entry `log_index` in `partner`'s mailbox; returns its cursor.
    pub async fn enqueue(
        &mut self,
        partner: &str,
        log_index: u64,
        at: i64,
    ) -> Result<u64, StoreError> {
        let last = match self.cursors.get(partner) {
            Some(last) => *last,
            None => {
                let row = sqlx::query(
                    "SELECT COALESCE(MAX(cursor), 0) AS last FROM mailbox WHERE partner_id = $1",
                )
                .bind(partner)
                .fetch_one(&mut self.tx)
                .await?;
                row.try_get::<i64, _>("last")?
            }
        };
        let cursor = last + 1;
        self.cursors.insert(partner.to_owned(), cursor);
        self.rows
            .mailbox
            .push((partner.to_owned(), cursor, log_index as i64, at));
        Ok(index(cursor))
    }

    /// The index the next entry must take: one past the last stored entry.
    pub async fn next_index(&mut self) -> Result<u64, StoreError> {
        if let Some(next) = self.next {
            return Ok(next);
        }
        let row = sqlx::query("SELECT COALESCE(MAX(idx) + 1, 0) AS next FROM log_entries")
            .fetch_one(&mut self.tx)
            .await?;
        let next = index(row.try_get("next")?);
        self.next = Some(next);
        Ok(next)
    }

    /// Marks a mailbox message acknowledged.
    pub async fn acknowledge(&mut self, partner: &str, cursor: u64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE mailbox SET state = 'acknowledged' WHERE partner_id = $1 AND cursor = $2",
        )
        .bind(partner)
        .bind(cursor as i64)
        .execute(&mut self.tx)
        .await?;
        Ok(())
    }

    /// Tells the other replicas about this transaction when it commits (PostgreSQL only:
    /// on SQLite there is one gateway process). Sent with the commit's writes.
    pub fn notify(&mut self, notice: Notice) {
        if self.backend == super::Backend::Postgres && !self.notices.contains(&notice) {
            self.notices.push(notice);
        }
    }

    /// Makes everything in this transaction durable (SQLite: synchronous=FULL; PostgreSQL:
    /// synchronous_commit as the server has it).
    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.batch = Some(Batch::default());
        self.settle().await?;
        self.write_accounts().await?;
        self.write_query_answers().await?;
        self.write_rows().await?;
        let batch = self.batch.take().unwrap_or_default();
        match self.backend {
            super::Backend::Sqlite => {
                let (sql, arguments) = batch.sqlite_statement();
                self.tx.commit(sql, arguments).await?
            }
            super::Backend::Postgres => {
                for (sql, arguments) in batch.postgres_statements(&self.notices) {
                    sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments)
                        .execute(&mut self.tx)
                        .await?;
                }
                self.tx.commit(String::new(), Default::default()).await?;
            }
        }
        if let Some(memory) = self.memory {
            *memory.lock().unwrap_or_else(|e| e.into_inner()) = WriterMemory {
                next: self.next,
                cursors: self.cursors,
            };
        }
        Ok(())
    }
}

/// The PostgreSQL advisory lock that serialises log appends across replicas.
pub const SEQUENCER_LOCK: i64 = 0x7761_6765_6c6f_6701;

impl Store {
    /// Opens an append transaction. On PostgreSQL it first takes the sequencer's advisory lock
    /// for the transaction, so the appends of every replica sharing the database are numbered
    /// one at a time: no two can take the same index, and none can skip one. A replica that
    /// dies mid-transaction releases the lock with its connection.
    pub async fn begin_ledger(&self) -> Result<LedgerTx, StoreError> {
        // SQLite: the write lock is taken with the transaction's first statement, whether it
        // reads or writes (see `WriterTx`).
        let tx = match self.backend {
            super::Backend::Sqlite => WriterTx::sqlite(self.writer.acquire().await?),
            // The lock is taken inside sqlx's transaction, not in `BEGIN`'s own message: sqlx
            // counts a transaction as begun only once that message succeeded, so a lock wait
            // that failed or was cancelled there would leave the connection inside an open or
            // aborted transaction, back in the pool with nothing to roll it back.
            super::Backend::Postgres => {
                let mut tx = self.writer.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(SEQUENCER_LOCK)
                    .execute(&mut *tx)
                    .await?;
                WriterTx::postgres(tx)
            }
        };
        let (memory, known) = match self.backend {
            super::Backend::Sqlite => {
                let known =
                    std::mem::take(&mut *self.memory.lock().unwrap_or_else(|e| e.into_inner()));
                (Some(self.memory.clone()), known)
            }
            // Other replicas append too: ask the database every time.
            super::Backend::Postgres => (None, WriterMemory::default()),
        };
        Ok(LedgerTx {
            tx,
            backend: self.backend,
            rows: Rows::default(),
            cursors: known.cursors,
            next: known.next,
            memory,
            batch: None,
            notices: Vec::new(),
            accounts: HashMap::new(),
            accounts_read: HashMap::new(),
            events: Vec::new(),
            event_shas: HashMap::new(),
            events_absent: Default::default(),
            projects: Default::default(),
            query_answers: Vec::new(),
            cases: Default::default(),
        })
    }

    /// How many entries the log holds (one past the last index).
    pub async fn log_size(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(idx) + 1, 0) AS next FROM log_entries")
            .fetch_one(&self.pool)
            .await?;
        Ok(index(row.try_get("next")?))
    }

    /// Entries `[start, end)`, with payloads if asked.
    pub async fn entries(
        &self,
        start: u64,
        end: u64,
        with_payloads: bool,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.idx, e.entry, p.payload, p.erased_at FROM log_entries e LEFT JOIN payloads p ON p.log_index = e.idx \
             WHERE e.idx >= $1 AND e.idx < $2 ORDER BY e.idx",
        )
        .bind(start as i64)
        .bind(end as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let erased: Option<i64> = r.try_get("erased_at")?;
                Ok(StoredEntry {
                    index: index(r.try_get("idx")?),
                    entry: r.try_get("entry")?,
                    payload: if with_payloads {
                        r.try_get("payload")?
                    } else {
                        None
                    },
                    payload_erased: erased.is_some(),
                })
            })
            .collect()
    }

    pub async fn insert_checkpoint(&self, c: &StoredCheckpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (tree_size, root_hash, note, signed_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tree_size) DO NOTHING",
        )
        .bind(c.tree_size as i64)
        .bind(&c.root_hash)
        .bind(&c.note)
        .bind(c.signed_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn checkpoint_from_row(row: &sqlx::any::AnyRow) -> Result<StoredCheckpoint, StoreError> {
        Ok(StoredCheckpoint {
            tree_size: index(row.try_get("tree_size")?),
            root_hash: row.try_get("root_hash")?,
            note: row.try_get("note")?,
            signed_at: row.try_get("signed_at")?,
        })
    }

    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        sqlx::query("SELECT * FROM checkpoints ORDER BY tree_size DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(Self::checkpoint_from_row)
            .transpose()
    }

    pub async fn checkpoint_at(
        &self,
        tree_size: u64,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        sqlx::query("SELECT * FROM checkpoints WHERE tree_size = $1")
            .bind(tree_size as i64)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(Self::checkpoint_from_row)
            .transpose()
    }

    /// Every checkpoint, oldest first (for exports).
    pub async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        sqlx::query("SELECT * FROM checkpoints ORDER BY tree_size")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::checkpoint_from_row)
            .collect()
    }
}

impl Store {
    /// Pending messages of `partner` from `from_cursor` on, oldest first.
    pub async fn pending(
        &self,
        partner: &str,
        from_cursor: u64,
        limit: u32,
    ) -> Result<Vec<MailboxRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT cursor, log_index, attempts, enqueued_at FROM mailbox \
             WHERE partner_id = $1 AND state = 'pending' AND cursor >= $2 ORDER BY cursor LIMIT $3",
        )
        .bind(partner)
        .bind(from_cursor as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MailboxRow {
                    cursor: index(r.try_get("cursor")?),
                    log_index: index(r.try_get("log_index")?),
                    attempts: r
                        .try_get::<i64, _>("attempts")?
                        .clamp(0, i64::from(u32::MAX)) as u32,
                    enqueued_at: r.try_get("enqueued_at")?,
                })
            })
            .collect()
    }

    /// Counts a delivery attempt; past `max_attempts` the message is dead-lettered. Returns the
    /// attempt number, or None when the message is no longer pending.
    pub async fn count_attempt(
        &self,
        partner: &str,
        cursor: u64,
        max_attempts: u32,
    ) -> Result<Option<u32>, StoreError> {
        let row = sqlx::query(
            "UPDATE mailbox SET attempts = attempts + 1, \
             state = CASE WHEN attempts + 1 > $1 THEN 'dead' ELSE state END \
             WHERE partner_id = $2 AND cursor = $3 AND state = 'pending' RETURNING attempts, state",
        )
        .bind(i64::from(max_attempts))
        .bind(partner)
        .bind(cursor as i64)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let state: String = row.try_get("state")?;
        let attempts: i64 = row.try_get("attempts")?;
        Ok((state == "pending").then_some(attempts.clamp(0, i64::from(u32::MAX)) as u32))
    }

    /// One mailbox message, whatever its state: (log index, state).
    pub async fn mailbox_message(
        &self,
        partner: &str,
        cursor: u64,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT log_index, state FROM mailbox WHERE partner_id = $1 AND cursor = $2",
        )
        .bind(partner)
        .bind(cursor as i64)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((index(r.try_get("log_index")?), r.try_get("state")?)))
            .transpose()
    }

    /// The last cursor of a partner's mailbox (0 when empty).
    pub async fn last_cursor(&self, partner: &str) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(cursor), 0) AS last FROM mailbox WHERE partner_id = $1",
        )
        .bind(partner)
        .fetch_one(&self.pool)
        .await?;
        Ok(index(row.try_get("last")?))
    }

    /// The receipt the gateway gave for the envelope at `log_index`.
    pub async fn receipt_at(&self, log_index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT receipt FROM envelopes WHERE log_index = $1")
            .bind(log_index as i64)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get("receipt"))
            .transpose()
            .map_err(Into::into)
    }

    /// What mailbox messages are sent from, for the log entries at `indexes`, in one statement
    /// per few hundred: each entry, its payload when asked for (none once erased) and the
    /// receipt and `traceparent` of the envelope it accepted, if any. A stream sends the
    /// messages it claimed from this rather than asking twice per message.
    pub async fn deliverable(
        &self,
        indexes: &[u64],
        with_payloads: bool,
    ) -> Result<HashMap<u64, Deliverable>, StoreError> {
        let mut indexes = indexes.to_vec();
        indexes.sort_unstable();
        indexes.dedup();
        let mut found = HashMap::with_capacity(indexes.len());
        for chunk in cut(self.backend, &indexes, KEYS_PER_LOOKUP, |_| 8) {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(deliverable_sql(
                self.backend,
                chunk.len(),
                with_payloads,
            )));
            for i in chunk {
                q = q.bind(*i as i64);
            }
            for r in q.fetch_all(&self.pool).await? {
                found.insert(
                    index(r.try_get("idx")?),
                    Deliverable {
                        entry: r.try_get("entry")?,
                        payload: r.try_get("payload")?,
                        receipt: r.try_get("receipt")?,
                        traceparent: r.try_get("traceparent")?,
                    },
                );
            }
        }
        Ok(found)
    }

    /// Whether an envelope with this (sender, message_id) was accepted.
    pub async fn envelope_seen(&self, sender: &str, message_id: &str) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT 1 AS one FROM envelopes WHERE sender = $1 AND message_id = $2")
                .bind(sender)
                .bind(message_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }
}

/// The PostgreSQL advisory lock held by the replica that signs checkpoints.
pub const CHECKPOINT_LOCK: i64 = 0x7761_6765_6c6f_6702;

/// A held checkpoint lock: its own connection, outside the pool, whose session holds the lock
/// until it ends (then PostgreSQL releases it).
pub struct Leadership {
    conn: sqlx::AnyConnection,
}

impl Leadership {
    /// Checks the session (and with it the lock) is still there.
    pub async fn alive(&mut self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1 AS one")
            .fetch_one(&mut self.conn)
            .await?;
        Ok(())
    }
}

impl Store {
    /// Takes the checkpoint lock if no other replica holds it (PostgreSQL).
    pub async fn try_lead(&self) -> Result<Option<Leadership>, StoreError> {
        // A pooled connection tries; only a winner leaves the pool (its session holds the lock).
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query("SELECT pg_try_advisory_lock($1) AS got")
            .bind(CHECKPOINT_LOCK)
            .fetch_one(&mut *conn)
            .await?;
        let got: bool = row.try_get("got")?;
        Ok(got.then(|| Leadership {
            conn: conn.detach(),
        }))
    }
}

/// A mailbox message a stream has claimed to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub row: MailboxRow,
    /// Over `max_attempts`: dead-lettered by this claim, not to be sent.
    pub dead: bool,
}

impl Store {
    /// Claims up to `limit` of `partner`'s pending messages from `from_cursor` on, oldest first,
    /// for stream `stream` until `until_ms`: those nobody holds, or whose claim ran out (a send
    /// not acknowledged in time: sent again). Each claim counts an attempt; past
    /// `max_attempts` the message is dead-lettered instead. On PostgreSQL rows other streams
    /// are claiming are skipped (SKIP LOCKED), never waited for.
    #[allow(clippy::too_many_arguments)]
    pub async fn claim(
        &self,
        partner: &str,
        from_cursor: u64,
        stream: &str,
        limit: u32,
        now_ms: i64,
        until_ms: i64,
        max_attempts: u32,
    ) -> Result<Vec<Claimed>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(claim_sql(self.backend)))
            .bind(stream)
            .bind(until_ms)
            .bind(i64::from(max_attempts))
            .bind(partner)
            .bind(from_cursor as i64)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(self.claims_pool())
            .await?;
        let mut claimed = rows
            .iter()
            .map(|r| {
                Ok(Claimed {
                    row: MailboxRow {
                        cursor: index(r.try_get("cursor")?),
                        log_index: index(r.try_get("log_index")?),
                        attempts: r
                            .try_get::<i64, _>("attempts")?
                            .clamp(0, i64::from(u32::MAX)) as u32,
                        enqueued_at: r.try_get("enqueued_at")?,
                    },
                    dead: r.try_get::<String, _>("state")? == "dead",
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        claimed.sort_by_key(|c| c.row.cursor);
        Ok(claimed)
    }

    /// How many of `partner`'s pending messages stream `stream` holds unacknowledged now (found
    /// through the index of pending messages by stream, not among all the partner's pending
    /// ones).
    pub async fn held_by(
        &self,
        partner: &str,
        stream: &str,
        now_ms: i64,
    ) -> Result<u32, StoreError> {
        let row = sqlx::query(HELD_BY_SQL)
            .bind(partner)
            .bind(stream)
            .bind(now_ms)
            .fetch_one(&self.pool)
            .await?;
        Ok(index(row.try_get("n")?).min(u64::from(u32::MAX)) as u32)
    }
}

impl Store {
    /// Gives back what stream `stream` holds (it ended): another stream may send it at once.
    pub async fn release(&self, partner: &str, stream: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE mailbox SET claimed_by = NULL, claimed_until = NULL \
             WHERE partner_id = $1 AND claimed_by = $2 AND state = 'pending'",
        )
        .bind(partner)
        .bind(stream)
        .execute(self.claims_pool())
        .await?;
        Ok(())
    }
}

impl LedgerTx {
    /// Records a witness's cosignature of the checkpoint of `tree_size` (the first one a witness
    /// gives for a size stays).
    pub async fn insert_cosignature(
        &mut self,
        tree_size: u64,
        witness: &str,
        line: &str,
        log_index: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO cosignatures (tree_size, witness, line, log_index) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tree_size, witness) DO NOTHING",
        )
        .bind(tree_size as i64)
        .bind(witness)
        .bind(line)
        .bind(log_index as i64)
        .execute(&mut self.tx)
        .await?;
        Ok(())
    }
}

impl Store {
    /// The witnesses that cosigned the checkpoint of `tree_size`, with their lines (empty when
    /// a witness only signed its envelope), in witness order.
    pub async fn cosignatures(&self, tree_size: u64) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT witness, line FROM cosignatures WHERE tree_size = $1 ORDER BY witness",
        )
        .bind(tree_size as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("witness")?, r.try_get("line")?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::Notice;
    use crate::store::testing::{TestDb, each_backend, sqlite_plan};

    /// On PostgreSQL a commit's notifications go with its writes, in one statement, and reach
    /// a listening replica once, however often the transaction asked for them.
    #[tokio::test]
    async fn a_commits_notifications_reach_the_other_replicas() {
        for db in each_backend().await {
            let store = db.store();
            if store.backend() != crate::store::Backend::Postgres {
                continue;
            }
            let mut listener = sqlx::postgres::PgListener::connect(store.url())
                .await
                .unwrap();
            listener
                .listen_all([Notice::Mailboxes.channel(), Notice::Registry.channel()])
                .await
                .unwrap();
            let mut tx = store.begin_ledger().await.unwrap();
            tx.insert_entry(0, vec![0], &[0; 32], 1).await.unwrap();
            tx.enqueue("hrss-500103", 0, 1).await.unwrap();
            tx.notify(Notice::Mailboxes);
            tx.notify(Notice::Mailboxes);
            tx.commit().await.unwrap();
            let first = tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv())
                .await
                .expect("a notification within 5 s")
                .unwrap();
            assert_eq!(first.channel(), Notice::Mailboxes.channel());
            let more =
                tokio::time::timeout(std::time::Duration::from_millis(300), listener.recv()).await;
            assert!(more.is_err(), "one notification per channel and commit");
            assert_eq!(store.log_size().await.unwrap(), 1);
        }
    }

    /// A PostgreSQL write joins a batch with its parameters numbered on from the batch's;
    /// quoted text keeps its dollars.
    #[test]
    fn parameters_are_numbered_on_across_a_batch() {
        let mut out = String::new();
        super::renumber(
            "INSERT INTO t VALUES ($1, $2, 'a $1 b'), ($10, $ x)",
            7,
            &mut out,
        );
        assert_eq!(out, "INSERT INTO t VALUES ($8, $9, 'a $1 b'), ($17, $ x)");
    }

    /// Each delivered message's receipt is found by its log index through an index, not by
    /// reading every envelope ever accepted (so sending got slower as the log grew): SQLite's
    /// plan for the statement that reads a stream's messages searches `envelopes` by the index.
    #[tokio::test]
    async fn a_deliverys_receipt_is_found_through_an_index() {
        let db = TestDb::sqlite().await;
        let store = db.store();
        let plan = sqlite_plan(store, &super::deliverable_sql(store.backend, 3, true), 3).await;
        assert!(
            plan.iter()
                .any(|step| step.contains("envelopes_by_log_index")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.starts_with("SCAN v")),
            "{plan:?}"
        );
    }

    /// What a stream holds is counted among the messages it claimed, not among every pending
    /// message of the partner (which a partner long offline has by the hundred thousand).
    #[tokio::test]
    async fn a_streams_held_messages_are_counted_through_an_index() {
        let db = TestDb::sqlite().await;
        let plan = sqlite_plan(db.store(), super::HELD_BY_SQL, 3).await;
        assert!(
            plan.iter().any(|step| step.contains("mailbox_claims")),
            "{plan:?}"
        );
    }

    /// Envelopes already accepted are found by their whole key, on PostgreSQL even when its
    /// statistics say the sender has sent nothing (taken before it sent thousands): the plan
    /// filters no row, and a lookup finds exactly the pairs asked, duplicates and unknown ones
    /// included.
    #[tokio::test]
    async fn prior_envelopes_are_found_by_their_whole_key() {
        for db in each_backend().await {
            let store = db.store();
            let mut tx = store.begin_ledger().await.unwrap();
            tx.insert_entry(0, vec![0], &[0; 32], 1).await.unwrap();
            tx.insert_envelope("bank-102", "m-0", &[0; 32], "t", 0, b"r0", 1, None)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            store.analyze().await.unwrap();
            const N: u64 = 3000;
            let mut tx = store.begin_ledger().await.unwrap();
            for i in 1..=N {
                tx.insert_entry(i, vec![1], &[0; 32], 1).await.unwrap();
                tx.insert_envelope(
                    "hrss-500114",
                    &format!("m-{i}"),
                    &[0; 32],
                    "t",
                    i,
                    format!("r{i}").as_bytes(),
                    1,
                    None,
                )
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
            let keys = [
                ("hrss-500114", "m-7"),
                ("hrss-500114", "m-2999"),
                ("hrss-500114", "m-7"),
                ("hrss-500114", "m-none"),
                ("bank-102", "m-0"),
                ("bank-102", "m-7"),
            ];
            let mut tx = store.begin_ledger().await.unwrap();
            let found = tx.prior_envelopes(&keys).await.unwrap();
            let mut got: Vec<(String, String, Vec<u8>)> = found
                .into_iter()
                .map(|((s, m), p)| (s, m, p.receipt))
                .collect();
            got.sort();
            assert_eq!(
                got,
                [
                    ("bank-102".into(), "m-0".into(), b"r0".to_vec()),
                    ("hrss-500114".into(), "m-2999".into(), b"r2999".to_vec()),
                    ("hrss-500114".into(), "m-7".into(), b"r7".to_vec()),
                ],
                "{}",
                db.name
            );
            drop(tx);
            if store.backend == crate::store::Backend::Postgres {
                let sql = super::pairs_sql(
                    store.backend,
                    "sender, message_id, receipt",
                    "envelopes",
                    ("sender", "message_id"),
                    1,
                    2,
                );
                let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")))
                    .bind("hrss-500114")
                    .bind("m-7")
                    .bind("hrss-500114")
                    .bind("m-8")
                    .fetch_all(&store.pool)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.try_get(0).unwrap())
                    .collect();
                assert!(
                    plan.iter().any(|l| l.contains("Index Cond")
                        && l.contains("sender")
                        && l.contains("message_id")),
                    "{plan:#?}"
                );
                assert!(!plan.iter().any(|l| l.contains("Filter")), "{plan:#?}");
            }
        }
    }

    /// A stream claims pending messages among the pending ones only, not among every message
    /// the partner ever acknowledged (which grow without end, and which PostgreSQL read at each
    /// claim while a backlog drained).
    #[tokio::test]
    async fn a_streams_claims_read_no_acknowledged_message() {
        let db = TestDb::sqlite().await;
        let store = db.store();
        let plan = sqlite_plan(store, &super::claim_sql(store.backend), 7).await;
        assert!(
            plan.iter()
                .any(|step| step.contains("mailbox_pending_by_cursor")),
            "{plan:?}"
        );
    }

    /// A stream's claimed messages are read together, past one statement's worth of indexes:
    /// each entry once with its own payload and its envelope's receipt and `traceparent`; an
    /// entry that accepted no envelope has neither, an unknown index is left out.
    #[tokio::test]
    async fn deliverable_entries_are_read_together_with_their_receipts() {
        const N: u64 = super::KEYS_PER_LOOKUP as u64 + 50;
        for db in each_backend().await {
            let store = db.store();
            let mut tx = store.begin_ledger().await.unwrap();
            for i in 0..N {
                tx.insert_entry(i, format!("entry {i}").into_bytes(), &[0; 32], 1)
                    .await
                    .unwrap();
                if i % 2 == 0 {
                    tx.insert_payload(i, &[0; 32], format!("payload {i}").as_bytes())
                        .await
                        .unwrap();
                    let trace = (i % 4 == 0).then(|| format!("trace {i}"));
                    tx.insert_envelope(
                        "source-national-platform",
                        &format!("m-{i}"),
                        &[0; 32],
                        "wagelink.v1.Lead",
                        i,
                        format!("receipt {i}").as_bytes(),
                        1,
                        trace.as_deref(),
                    )
                    .await
                    .unwrap();
                }
            }
            tx.commit().await.unwrap();

            let mut asked: Vec<u64> = (0..N).rev().collect();
            asked.extend([N + 7, 3, 0]);
            let found = store.deliverable(&asked, true).await.unwrap();
            assert_eq!(found.len() as u64, N, "{}", db.name);
            for i in 0..N {
                let d = &found[&i];
                assert_eq!(d.entry, format!("entry {i}").into_bytes(), "{}", db.name);
                if i % 2 == 0 {
                    assert_eq!(d.payload, Some(format!("payload {i}").into_bytes()));
                    assert_eq!(d.receipt, Some(format!("receipt {i}").into_bytes()));
                    assert_eq!(
                        d.traceparent,
                        (i % 4 == 0).then(|| format!("trace {i}")),
                        "{}: {i}",
                        db.name
                    );
                } else {
                    assert_eq!((&d.payload, &d.receipt), (&None, &None), "{}", db.name);
                }
            }
            assert!(store.deliverable(&[], true).await.unwrap().is_empty());
        }
    }
}
