//! Test databases on every backend: a fresh SQLite file always, and a fresh PostgreSQL database
//! when `WAGELINK_TEST_DATABASE_URL` names a server. Each test gets its own database, dropped
//! when the handle is dropped, so tests run in parallel without seeing each other.

use super::Store;

/// SQLite's plan for `sql`, its `parameters` bound to 1, 2, …, one line per step.
#[cfg(test)]
pub(crate) async fn sqlite_plan(store: &Store, sql: &str, parameters: i64) -> Vec<String> {
    use sqlx::Row;
    let mut query = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
    for p in 1..=parameters {
        query = query.bind(p);
    }
    query
        .fetch_all(&store.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("detail").unwrap())
        .collect()
}

/// The environment variable that turns the PostgreSQL half of every storage test on.
pub const TEST_DATABASE_URL: &str = "WAGELINK_TEST_DATABASE_URL";

/// One test database.
pub struct TestDb {
    pub name: &'static str,
    pub url: String,
    store: Store,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, database: String },
}

impl TestDb {
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A fresh SQLite database in a temporary directory.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("a temporary directory for the test database");
        let path = dir.path().join("wagelink.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let store = Store::open(&url)
            .await
            .expect("opening a fresh SQLite database");
        TestDb {
            name: "sqlite",
            url,
            store,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A fresh database on the PostgreSQL server at `admin_url`.
    pub async fn postgres(admin_url: &str) -> TestDb {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        // The name is ours (wl_test_<uuid>), never input, so it may be formatted into SQL.
        let database = format!("wl_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::AnyConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("{TEST_DATABASE_URL}={admin_url} is unreachable: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut admin)
            .await
            .expect("creating a test database");
        let _ = admin.close().await;
        let url = with_database(admin_url, &database);
        let store = Store::open(&url)
            .await
            .expect("opening the fresh PostgreSQL database");
        TestDb {
            name: "postgres",
            url,
            store,
            cleanup: Cleanup::Postgres {
                admin_url: admin_url.to_owned(),
                database,
            },
        }
    }
}

/// `url` with its database name replaced.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::Postgres {
            admin_url,
            database,
        } = &self.cleanup
        {
            let (admin_url, database) = (admin_url.clone(), database.clone());
            // Drop runs inside the test's runtime, which cannot block on itself: use a thread
            // with its own runtime. FORCE ends the pool's connections server-side; closing the
            // pool here instead would wait on the very runtime this thread blocks.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        use sqlx::Connection;
                        if let Ok(mut admin) = sqlx::AnyConnection::connect(&admin_url).await {
                            // The name is ours (wl_test_<uuid>), never input.
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                            )))
                            .execute(&mut admin)
                            .await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

/// SQLite always; PostgreSQL too when `WAGELINK_TEST_DATABASE_URL` is set.
pub async fn each_backend() -> Vec<TestDb> {
    let mut dbs = vec![TestDb::sqlite().await];
    if let Ok(url) = std::env::var(TEST_DATABASE_URL)
        && !url.is_empty()
    {
        dbs.push(TestDb::postgres(&url).await);
    }
    dbs
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_names_are_swapped_in_place() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "wl_x"),
            "postgres://postgres@127.0.0.1:5432/wl_x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "wl_x"),
            "postgres://u:p@h/wl_x?sslmode=disable"
        );
    }
}
