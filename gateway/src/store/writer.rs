//! The log writer's transaction. On SQLite, `BEGIN IMMEDIATE` travels with the transaction's
//! first statement and `COMMIT` with its last writes.
//!
//! Every statement is a round trip to the thread sqlx keeps for a SQLite connection: the
//! runtime's thread wakes it and is woken back. While the runtime is busy that took 0.26–0.46 ms
//! even for `SELECT 1`, mostly waiting to be scheduled (BENCHMARKS.md, session 10). sqlx's own
//! `Transaction` sends `BEGIN` and `COMMIT` as statements of their own, so an append of one
//! envelope made four round trips where two carry the same work. Here the transaction begins as
//! the first statement's prefix (`BEGIN IMMEDIATE;` in front of its text, in the same string)
//! and ends as the suffix of the commit's batch of writes. Measured: leads +4–6% at 64 in
//! flight, about the spread between runs; nothing visible at 1 in flight, where idle threads
//! answer in 40–55 µs (session 11).
//!
//! sqlx does not know about this transaction, so it cannot roll it back: a transaction that was
//! begun and did not commit closes its connection when dropped, and SQLite rolls back what a
//! closing connection left open. PostgreSQL keeps sqlx's `Transaction`, which rolls back on
//! drop; its writes are joined in another way (see `ledger::Batch`).

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt as _, StreamExt as _, TryStreamExt as _};
use sqlx::any::{Any, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::pool::PoolConnection;
use sqlx::{AnyConnection, AssertSqlSafe, Either, Execute, Executor, SqlStr, Transaction};

/// How SQLite's append transactions begin: with the write lock, so no read in them sees a
/// snapshot older than another connection's commit (a mailbox claim), which would fail at once
/// with SQLITE_BUSY at the first write instead of waiting under busy_timeout.
const BEGIN: &str = "BEGIN IMMEDIATE";

/// An open append transaction's connection. Statements run on it through [`Executor`]
/// (`query.execute(&mut tx)`), which on SQLite puts `BEGIN` in front of the first.
pub(super) enum WriterTx {
    Sqlite {
        /// `None` only once dropped.
        conn: Option<PoolConnection<Any>>,
        state: State,
    },
    /// `None` once committed.
    Postgres(Option<Transaction<'static, Any>>),
}

/// Where a SQLite transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Nothing sent yet: the next statement carries `BEGIN` in front.
    NotBegun,
    Open,
    /// A statement that carried `BEGIN` failed before `BEGIN` was seen to succeed, or the
    /// commit failed: whether a transaction is open is not known, so nothing more may run in it.
    Broken,
    Committed,
}

impl std::fmt::Debug for WriterTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriterTx::Sqlite { state, .. } => write!(f, "WriterTx::Sqlite({state:?})"),
            WriterTx::Postgres(tx) => write!(f, "WriterTx::Postgres(open: {})", tx.is_some()),
        }
    }
}

fn broken() -> sqlx::Error {
    sqlx::Error::Protocol(
        "the log writer's transaction failed earlier and may or may not be open; it is rolled back"
            .into(),
    )
}

fn finished() -> sqlx::Error {
    sqlx::Error::Protocol("the log writer's transaction was used after its commit".into())
}

/// `query` with `BEGIN` in front, in one string: its anonymous parameters still bind in order,
/// as `BEGIN` has none.
fn with_begin<'q, E: Execute<'q, Any>>(
    mut query: E,
) -> Result<sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>, sqlx::Error> {
    let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
    let persistent = query.persistent();
    let sql = format!("{BEGIN};\n{}", query.sql().as_str());
    Ok(sqlx::query_with(AssertSqlSafe(sql), arguments.unwrap_or_default()).persistent(persistent))
}

impl WriterTx {
    pub(super) fn sqlite(conn: PoolConnection<Any>) -> Self {
        WriterTx::Sqlite {
            conn: Some(conn),
            state: State::NotBegun,
        }
    }

    pub(super) fn postgres(tx: Transaction<'static, Any>) -> Self {
        WriterTx::Postgres(Some(tx))
    }

    /// The connection, inside the transaction (on SQLite `BEGIN` is sent first, on its own, if
    /// nothing was yet): for helpers that take a connection and run several statements.
    pub(super) async fn connection(&mut self) -> Result<&mut AnyConnection, sqlx::Error> {
        match self {
            WriterTx::Postgres(Some(tx)) => Ok(&mut **tx),
            WriterTx::Postgres(None) => Err(finished()),
            WriterTx::Sqlite { conn, state } => {
                let conn = conn.as_mut().ok_or_else(finished)?;
                match *state {
                    State::Open => {}
                    State::NotBegun => {
                        *state = State::Broken;
                        (&mut **conn).execute(BEGIN).await?;
                        *state = State::Open;
                    }
                    State::Broken => return Err(broken()),
                    State::Committed => return Err(finished()),
                }
                Ok(&mut **conn)
            }
        }
    }

    /// Commits. On SQLite `batch_sql` (statements separated by `;`, with `arguments` bound in
    /// order across them) is sent with `COMMIT` after it, in one string; on PostgreSQL it must
    /// be empty: its writes ran one by one.
    pub(super) async fn commit(
        &mut self,
        mut batch_sql: String,
        arguments: sqlx::any::AnyArguments,
    ) -> Result<(), sqlx::Error> {
        match self {
            WriterTx::Postgres(tx) => {
                debug_assert!(batch_sql.is_empty());
                tx.take().ok_or_else(finished)?.commit().await
            }
            WriterTx::Sqlite { conn, state } => {
                let conn = conn.as_mut().ok_or_else(finished)?;
                match *state {
                    // A transaction that ran no statement and wrote nothing has nothing to end.
                    State::NotBegun if batch_sql.is_empty() => {
                        *state = State::Committed;
                        return Ok(());
                    }
                    State::NotBegun => batch_sql.insert_str(0, &format!("{BEGIN};\n")),
                    State::Open => {}
                    State::Broken => return Err(broken()),
                    State::Committed => return Err(finished()),
                }
                batch_sql.push_str("COMMIT");
                // Until it is seen to succeed; a failed statement stops the string before
                // `COMMIT`, and dropping the transaction then closes the connection.
                *state = State::Broken;
                sqlx::query_with(AssertSqlSafe(batch_sql), arguments)
                    .execute(&mut **conn)
                    .await?;
                *state = State::Committed;
                Ok(())
            }
        }
    }
}

impl Drop for WriterTx {
    fn drop(&mut self) {
        if let WriterTx::Sqlite {
            conn: Some(conn),
            state,
        } = self
            && matches!(state, State::Open | State::Broken)
        {
            // Closing the connection rolls back whatever it left open; the pool opens another.
            conn.close_on_drop();
        }
    }
}

impl<'c> Executor<'c> for &'c mut WriterTx {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let fail = |e| futures::stream::once(async move { Err(e) }).boxed();
        match self {
            WriterTx::Postgres(Some(tx)) => (&mut **tx).fetch_many(query),
            WriterTx::Postgres(None) => fail(finished()),
            WriterTx::Sqlite { conn: None, .. } => fail(finished()),
            WriterTx::Sqlite {
                conn: Some(conn),
                state,
            } => match *state {
                State::Open => (&mut **conn).fetch_many(query),
                State::NotBegun => {
                    let query = match with_begin(query) {
                        Ok(query) => query,
                        Err(e) => return fail(e),
                    };
                    *state = State::Broken;
                    // `BEGIN`'s own result comes first: once it has, the transaction is open.
                    // It is not passed on, since its count of changed rows is SQLite's count
                    // for the connection's last write, which would add to the statement's.
                    (&mut **conn)
                        .fetch_many(query)
                        .filter_map(move |step| {
                            let begun =
                                *state == State::Broken && matches!(step, Ok(Either::Left(_)));
                            if begun {
                                *state = State::Open;
                            }
                            futures::future::ready((!begun).then_some(step))
                        })
                        .boxed()
                }
                State::Broken => fail(broken()),
                State::Committed => fail(finished()),
            },
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let fail = |e| futures::future::ready(Err(e)).boxed();
        // sqlx's `fetch_optional` on SQLite looks at the first result only, which with `BEGIN`
        // in front would be `BEGIN`'s: the first row is taken from the whole stream instead.
        if let WriterTx::Sqlite {
            state: State::NotBegun,
            ..
        } = self
        {
            return async move {
                let mut steps = self.fetch_many(query);
                while let Some(step) = steps.try_next().await? {
                    if let Either::Right(row) = step {
                        return Ok(Some(row));
                    }
                }
                Ok(None)
            }
            .boxed();
        }
        match self {
            WriterTx::Postgres(Some(tx)) => (&mut **tx).fetch_optional(query),
            WriterTx::Postgres(None) => fail(finished()),
            WriterTx::Sqlite { conn: None, .. } => fail(finished()),
            WriterTx::Sqlite {
                conn: Some(conn),
                state,
            } => match *state {
                State::Open => (&mut **conn).fetch_optional(query),
                // Taken above.
                State::NotBegun => fail(broken()),
                State::Broken => fail(broken()),
                State::Committed => fail(finished()),
            },
        }
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            WriterTx::Postgres(Some(tx)) => (&mut **tx).prepare_with(sql, parameters),
            WriterTx::Sqlite {
                conn: Some(conn), ..
            } => (&mut **conn).prepare_with(sql, parameters),
            _ => futures::future::ready(Err(finished())).boxed(),
        }
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            WriterTx::Postgres(Some(tx)) => (&mut **tx).describe(sql),
            WriterTx::Sqlite {
                conn: Some(conn), ..
            } => (&mut **conn).describe(sql),
            _ => futures::future::ready(Err(finished())).boxed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row as _;

    use crate::store::testing::TestDb;

    const INSERT_PROJECT: &str = "INSERT INTO projects (project_code, name, industry, region, updated_at) \
         VALUES ($1, 'n', 'housing', '500103', 1)";

    async fn insert(tx: &mut crate::store::LedgerTx, code: &str) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(INSERT_PROJECT)
            .bind(code)
            .execute(&mut tx.tx)
            .await?;
        Ok(done.rows_affected())
    }

    /// The writer's next transaction writes `p-next` and commits, and it is then the only
    /// project: what came before left nothing.
    async fn next_transaction_commits(store: &crate::store::Store) {
        let mut tx = store.begin_ledger().await.unwrap();
        insert(&mut tx, "p-next").await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(projects(store).await, ["p-next"]);
    }

    async fn projects(store: &crate::store::Store) -> Vec<String> {
        column(store, "project_code").await
    }

    /// `name` of every project, in the order of their codes.
    async fn column(store: &crate::store::Store, name: &str) -> Vec<String> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {name} FROM projects ORDER BY project_code"
        )))
        .fetch_all(&store.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(name))
        .collect()
    }

    /// A batch that inserts a project of each code, as a commit sends it on SQLite.
    fn batch_of(codes: &[&str]) -> (String, sqlx::any::AnyArguments) {
        use sqlx::Arguments as _;
        let mut batch = String::new();
        let mut arguments = sqlx::any::AnyArguments::default();
        for code in codes {
            batch.push_str(&INSERT_PROJECT.replace("$1", "?"));
            batch.push_str(";\n");
            arguments.add(*code).unwrap();
        }
        (batch, arguments)
    }

    /// What the statements after the first (which carried `BEGIN`) wrote is rolled back when
    /// the transaction is dropped uncommitted, and the writer's connection serves the next
    /// transaction: returned to the pool still inside the dropped one, its `BEGIN` would fail.
    #[tokio::test]
    async fn a_transaction_dropped_uncommitted_leaves_nothing() {
        let db = TestDb::sqlite().await;
        let store = db.store();
        let mut tx = store.begin_ledger().await.unwrap();
        assert_eq!(insert(&mut tx, "p-1").await.unwrap(), 1);
        insert(&mut tx, "p-2").await.unwrap();
        let seen = sqlx::query("SELECT COUNT(*) AS n FROM projects")
            .fetch_one(&mut tx.tx)
            .await
            .unwrap();
        assert_eq!(
            seen.get::<i64, _>("n"),
            2,
            "the transaction sees its writes"
        );
        drop(tx);

        next_transaction_commits(store).await;
    }

    /// `BEGIN`'s result is not counted with the first statement's: SQLite reports for it the
    /// changes of the connection's last write (here a commit's three rows).
    #[tokio::test]
    async fn the_first_statement_counts_its_own_changes() {
        let db = TestDb::sqlite().await;
        let store = db.store();
        let mut tx = store.begin_ledger().await.unwrap();
        let (mut batch, arguments) = batch_of(&["a", "b", "c"]);
        batch.push_str("UPDATE projects SET name = 'm'; ");
        tx.tx.commit(batch, arguments).await.unwrap();
        drop(tx);
        assert_eq!(projects(store).await, ["a", "b", "c"]);

        let mut tx = store.begin_ledger().await.unwrap();
        let updated = sqlx::query("UPDATE projects SET name = 'x' WHERE project_code = $1")
            .bind("b")
            .execute(&mut tx.tx)
            .await
            .unwrap();
        assert_eq!(updated.rows_affected(), 1);
        tx.commit().await.unwrap();
        assert_eq!(column(store, "name").await, ["m", "x", "m"]);
    }

    /// When the `BEGIN` in front of the first statement fails (here because the connection is
    /// already inside a transaction), the transaction refuses every statement after it, which
    /// would otherwise each commit on their own, and its commit too; the connection is closed
    /// and replaced.
    #[tokio::test]
    async fn nothing_runs_after_a_failed_begin() {
        let db = TestDb::sqlite().await;
        let store = db.store();
        let mut tx = store.begin_ledger().await.unwrap();
        let super::WriterTx::Sqlite {
            conn: Some(conn), ..
        } = &mut tx.tx
        else {
            panic!("a SQLite store's writer")
        };
        sqlx::Executor::execute(&mut **conn, "BEGIN").await.unwrap();
        let failed = sqlx::query("SELECT COUNT(*) FROM projects WHERE project_code = $1")
            .bind("p-0")
            .fetch_optional(&mut tx.tx)
            .await
            .map(|row| row.is_some())
            .unwrap_err();
        assert!(
            failed.to_string().contains("within a transaction"),
            "{failed}"
        );
        let refused = insert(&mut tx, "p-1").await.unwrap_err();
        assert!(refused.to_string().contains("failed earlier"), "{refused}");
        assert!(tx.commit().await.is_err());
        next_transaction_commits(store).await;
    }

    /// A commit whose batch fails part way (the second of two rows breaks the primary key)
    /// writes nothing: the string stops before its `COMMIT`, and the dropped transaction's
    /// connection is closed, which rolls back the first row.
    #[tokio::test]
    async fn a_commit_that_fails_part_way_writes_nothing() {
        let db = TestDb::sqlite().await;
        let store = db.store();
        let mut tx = store.begin_ledger().await.unwrap();
        insert(&mut tx, "p-0").await.unwrap();
        let (batch, arguments) = batch_of(&["p-1", "p-1"]);
        assert!(tx.tx.commit(batch, arguments).await.is_err());
        drop(tx);
        next_transaction_commits(store).await;
    }
}
