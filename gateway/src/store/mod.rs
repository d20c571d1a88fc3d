//! Persistence behind one interface with two backends: SQLite (the embedded default, one file in
//! the data directory) and PostgreSQL (for several replicas). Queries are runtime queries over
//! sqlx's `Any` driver, written once in SQL both databases accept, so nothing needs a database
//! to build; the schema differs only in type names and lives in `migrations/<backend>/`, embedded
//! in the binary and applied at open.
//!
//! Domain types go in and come out; no sqlx type leaves this module.

mod accounts;
mod admin;
mod cases;
mod federation;
mod ledger;
mod nodelay;
mod partners;
mod reports;
pub mod testing;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};
use thiserror::Error;

pub use accounts::{AccountRow, EventRow, RelayRow};
pub use admin::{MailboxCounts, NewRules, RulesVersionRow};
pub use cases::{CaseFilter, CaseRecord};
pub use federation::ForeignCertificate;
pub use ledger::{
    Deliverable, LedgerTx, MailboxRow, Notice, PriorEnvelope, StoredCheckpoint, StoredEntry,
};
pub use partners::{CertificateRecord, CertificateStatus};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A storage failure, with what the operator should do about it.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "database URL {0:?} is not supported: use sqlite://<path> or postgres://user@host:port/database"
    )]
    BadUrl(String),
    #[error(
        "cannot open the database at {url}: {source}. Check that the database server is running, that the URL (--database-url or WAGELINK_DATABASE_URL) is right, and that the user may connect"
    )]
    Unreachable { url: String, source: sqlx::Error },
    #[error("cannot bring the database at {url} up to this version's schema: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    #[error("the database holds a value this version cannot read: {0}")]
    Corrupt(String),
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    #[error("{what} does not exist")]
    NotFound { what: String },
}

/// The gateway's persistent state.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// Where the evidence log's append transactions run. SQLite: one connection of its own,
    /// so its page cache stays valid from one group to the next (a connection whose file
    /// another connection wrote since its last transaction starts again with an empty cache).
    /// PostgreSQL: the pool.
    writer: AnyPool,
    /// SQLite: the connection that copies the WAL into the file (see `checkpoints`).
    checkpointer: Option<AnyPool>,
    /// What the SQLite log writer carries from one transaction to the next.
    memory: std::sync::Arc<std::sync::Mutex<ledger::WriterMemory>>,
    backend: Backend,
    /// The URL it was opened with (for PostgreSQL notifications, which need a connection of
    /// their own). Never printed: it may hold a password.
    url: std::sync::Arc<str>,
}

/// A URL with any password replaced, safe to print.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite database file at `path`.
    pub async fn open_sqlite_file(path: &Path) -> Result<Self, StoreError> {
        Self::open(&format!("sqlite://{}?mode=rwc", path.display())).await
    }

    /// Connects to `url` (`sqlite://…` or `postgres://…`) and applies the embedded migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::BadUrl(redact_url(url)));
        };
        let options =
            AnyConnectOptions::from_str(url).map_err(|source| StoreError::Unreachable {
                url: redact_url(url),
                source,
            })?;
        let pool = Self::pool(
            url,
            backend,
            &options,
            match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 16,
            },
            false,
        )
        .await?;
        if backend == Backend::Sqlite {
            // WAL lets readers run beside the writer. The mode is stored in the file, so it is
            // set once here rather than by every new connection (which would need a lock).
            pool.execute("PRAGMA journal_mode = WAL")
                .await
                .map_err(|source| StoreError::Unreachable {
                    url: redact_url(url),
                    source,
                })?;
        }
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                url: redact_url(url),
                source,
            })?;
        let writer = match backend {
            Backend::Sqlite => Self::pool(url, backend, &options, 1, true).await?,
            Backend::Postgres => pool.clone(),
        };
        let memory: std::sync::Arc<_> = Default::default();
        let checkpointer = match backend {
            Backend::Sqlite => {
                let checkpointer = Self::pool(url, backend, &options, 1, false).await?;
                tokio::spawn(checkpoints(
                    checkpointer.clone(),
                    std::sync::Arc::downgrade(&memory),
                ));
                Some(checkpointer)
            }
            Backend::Postgres => None,
        };
        Ok(Self {
            pool,
            writer,
            checkpointer,
            memory,
            backend,
            url: url.into(),
        })
    }

    async fn pool(
        url: &str,
        backend: Backend,
        options: &AnyConnectOptions,
        size: u32,
        writer: bool,
    ) -> Result<AnyPool, StoreError> {
        // The PostgreSQL server's TCP port (none over a Unix socket).
        let pg_port = match backend {
            Backend::Postgres => sqlx::postgres::PgConnectOptions::from_str(url)
                .ok()
                .filter(|o| !o.get_host().starts_with('/'))
                .map(|o| o.get_port()),
            Backend::Sqlite => None,
        };
        AnyPoolOptions::new()
            .max_connections(size)
            // The SQLite writer's connection keeps its page cache only while it lives.
            .idle_timeout((size > 1).then_some(Duration::from_secs(600)))
            .max_lifetime((size > 1).then_some(Duration::from_secs(1800)))
            .acquire_timeout(Duration::from_secs(5))
            // A SQLite connection is a file in this process: asking it whether it is alive
            // before each use costs a round trip to its worker thread and finds nothing.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Connection settings only (no lock is needed): wait for the writer
                        // rather than fail; FULL makes every commit durable before it returns,
                        // which the "nothing acknowledged is lost" rule needs.
                        conn.execute(
                            "PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                        // Only the connection that writes keeps its page cache from one
                        // transaction to the next (a reader's is dropped whenever the file
                        // changed), so only the writer's is enlarged: with the default 2 MiB the
                        // indexes' pages were read back from the file at every group.
                        if writer {
                            conn.execute("PRAGMA cache_size = -65536").await?;
                        }
                        // The WAL is copied into the file by the checkpointer's own connection
                        // (see `checkpoints`). A connection that commits checkpoints only when
                        // the WAL outgrew this: it bounds the WAL when the checkpointer cannot
                        // finish under constant appends.
                        conn.execute(sqlx::AssertSqlSafe(format!(
                            "PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}"
                        )))
                        .await?;
                    }
                    if let Some(port) = pg_port {
                        nodelay::to_port(port);
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(|source| StoreError::Unreachable {
                url: redact_url(url),
                source,
            })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where a mailbox's claims are written. SQLite: the log writer's connection, between its
    /// groups. From another connection each claim waited for the file's write lock, which the
    /// writer, busy with group after group, left free only for moments: SQLite's busy handler
    /// sleeps between tries (longer the longer it waits), so claims took up to a second under
    /// load; and each write from elsewhere empties the writer's page cache. A connection of the
    /// pool is handed out in turn, so a claim waits for one group at most. PostgreSQL: the
    /// pool (its claims skip rows others hold and need no file lock).
    fn claims_pool(&self) -> &AnyPool {
        match self.backend {
            Backend::Sqlite => &self.writer,
            Backend::Postgres => &self.pool,
        }
    }

    /// This store for the log's sequencer, to be called on the runtime it runs on. On
    /// PostgreSQL its appends get a connection of their own, opened here: a socket answers on
    /// the runtime whose I/O driver it was registered with, and the shared pool's sockets are
    /// the main runtime's, whose driver is polled only between other tasks when that runtime is
    /// busy: each of a group's statements waited milliseconds for its answer. SQLite's writer
    /// already is a connection of its own, answered by its own thread.
    pub async fn for_log_writer(&self) -> Result<Store, StoreError> {
        let mut store = self.clone();
        if self.backend == Backend::Postgres {
            let options = AnyConnectOptions::from_str(&self.url).map_err(|source| {
                StoreError::Unreachable {
                    url: redact_url(&self.url),
                    source,
                }
            })?;
            store.writer = Self::pool(&self.url, self.backend, &options, 1, true).await?;
        }
        Ok(store)
    }

    /// The URL the store was opened with; it may hold a password: never print it.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Updates the database's planner statistics (PostgreSQL; nothing on SQLite).
    pub async fn analyze(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            self.pool.execute("ANALYZE").await?;
        }
        Ok(())
    }

    /// Closes every connection; pending queries finish first. On SQLite the last connection
    /// to close copies the WAL into the file and removes it.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.close().await;
        }
    }
}

/// WAL pages after which a SQLite connection that commits checkpoints itself (64 MiB of 4 KiB
/// pages). Until then the WAL file keeps the size it reached.
const AUTOCHECKPOINT_PAGES: u32 = 16384;

/// How often the SQLite checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// SQLite: copies the write-ahead log into the database file, from a connection and thus a
/// thread of its own, while the log writer goes on appending. With SQLite's default the writer
/// did it itself whenever the WAL passed 1,000 pages, inside a group's commit: at 64 leads in
/// flight a group's commit took 3.7–4.7 ms on average, against 2.1–2.6 ms with no checkpoint
/// at all (BENCHMARKS.md, session 10). A passive checkpoint waits for no reader and no writer,
/// and changes nothing a reader sees. Ends once the store closed `pool` or every handle of the
/// store is gone (`alive` no longer upgrades); says once when checkpoints start failing, and
/// once when they succeed again.
async fn checkpoints(
    pool: AnyPool,
    alive: std::sync::Weak<std::sync::Mutex<ledger::WriterMemory>>,
) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        if alive.strong_count() == 0 || pool.is_closed() {
            break;
        }
        match pool.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("the write-ahead log is copied into the database file again");
            }
            Ok(_) => {}
            Err(_) if pool.is_closed() => break,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "copying the write-ahead log into the database file failed; retrying every 100 ms (the WAL grows until a commit checkpoints it past 64 MiB)");
            }
            Err(_) => {}
        }
    }
    pool.close().await;
}

/// Current time in Unix seconds, as the store records it.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/wagelink"),
            "postgres://app:***@db:5432/wagelink"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    /// The SQLite log writer checkpoints only past a large threshold; below it, the
    /// checkpointer's connection copies the WAL into the database file, and stops once the
    /// store is closed.
    #[tokio::test]
    async fn the_checkpointer_copies_the_writers_wal_into_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wagelink.db");
        let store = Store::open_sqlite_file(&path).await.unwrap();
        let threshold: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        assert_eq!(threshold, i64::from(AUTOCHECKPOINT_PAGES));
        sqlx::query("CREATE TABLE scratch (b BLOB NOT NULL)")
            .execute(&store.writer)
            .await
            .unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        // About 2,000 pages in 20 commits: a tenth of the writer's threshold.
        for _ in 0..20 {
            sqlx::query(
                "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
                 INSERT INTO scratch SELECT randomblob(4000) FROM n",
            )
            .execute(&store.writer)
            .await
            .unwrap();
        }
        let copied = async {
            while std::fs::metadata(&path).unwrap().len() < before + 7_000_000 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), copied)
            .await
            .expect("the WAL's pages reach the database file without the writer checkpointing");

        store.close().await;
        // Every connection, the checkpointer's included, is closed when `close` returns: the
        // last one copied the WAL into the file and removed it.
        assert!(
            !path.with_extension("db-wal").exists(),
            "a connection still held the file after close"
        );
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_refused_with_the_forms_we_take() {
        let err = Store::open("mysql://root@localhost/test")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::BadUrl(_)));
        assert!(err.to_string().contains("postgres://"));
    }

    #[tokio::test]
    async fn an_unreachable_postgres_says_what_to_check() {
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let err = Store::open("postgres://app:pw@127.0.0.1:1/none")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Unreachable { .. }), "{text}");
        assert!(text.contains("127.0.0.1:1"), "{text}");
        assert!(!text.contains("pw@"), "password leaked: {text}");
        assert!(text.contains("--database-url"), "{text}");
    }
}
