//! The SQLite [`Store`](llmur_core::Store): one writer connection behind an async mutex
//! and a small pool of readers, over diesel's `SqliteConnection` wrapped for async use.
//!
//! Owns: opening files (WAL, `busy_timeout`, `foreign_keys`), migrations, and how an
//! operation gets a connection — reads from the reader pool, consistent reads in a
//! deferred transaction (a WAL snapshot), writes on the writer in a `BEGIN IMMEDIATE`
//! transaction. Writes queue on the mutex rather than on SQLite's lock, so concurrent
//! writers never see `SQLITE_BUSY`; each write runs in its own task, so a caller that
//! gives up cannot leave the writer inside an open transaction. Must not touch: the
//! queries themselves (`ops/`, mounted here with this module's `Conn`, `Db` and `write_log_rows`).

use std::fmt;
use std::sync::Arc;

use diesel::connection::SimpleConnection;
use diesel::{Connection, ConnectionError, ConnectionResult, QueryResult, SqliteConnection};
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, TransactionManager};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use llmur_core::StoreResult;
use tokio::sync::Mutex;

use super::error::{DbResult, from_pool, internal, unavailable};
use super::rows::NewRequestLogRow;
use super::{BoxFut, higher_ranked};

/// The connection type the shared queries run on.
pub(crate) type Conn = SyncConnectionWrapper<SqliteConnection>;
/// The store type the shared queries take.
pub(crate) type Db = SqliteStore;

mod log_insert;
#[expect(
    clippy::duplicate_mod,
    reason = "the shared queries are compiled once per backend, see db/ops/mod.rs"
)]
#[path = "ops/mod.rs"]
mod ops;

/// The migrations in `migrations/sqlite`, embedded in the binary.
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

/// Read connections of a file database.
const READERS: u32 = 4;

/// Set on every connection: wait up to 5 s for a lock another process holds.
const CONNECTION_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;";

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A private in-memory database.
    Memory,
    /// A file (created if missing).
    File(String),
}

impl Location {
    fn path(&self) -> &str {
        match self {
            Location::Memory => ":memory:",
            Location::File(path) => path,
        }
    }
}

/// How an operation runs on the writer connection.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// No transaction (single statements).
    Plain,
    /// A deferred transaction (consistent reads).
    Read,
    /// `BEGIN IMMEDIATE` (writes).
    Write,
}

/// A SQLite database as a [`Store`](llmur_core::Store).
pub(crate) struct SqliteStore {
    writer: Arc<Mutex<Conn>>,
    /// `None` for an in-memory database, where every connection would be another database.
    readers: Option<Pool<Conn>>,
    location: Location,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .field("readers", &self.readers.as_ref().map(|p| p.state()))
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database.
    pub(crate) async fn open(location: Location) -> StoreResult<Self> {
        let path = location.path().to_owned();
        let writer = blocking(move || open_writer(&path, true)).await?;
        let readers = match &location {
            Location::Memory => None,
            Location::File(path) => Some(reader_pool(path).await?),
        };
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            readers,
            location,
        })
    }

    /// Runs `f` on a read connection, outside a transaction.
    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Conn) -> BoxFut<'c, DbResult<T>> + Send + 'static,
    {
        match &self.readers {
            Some(pool) => {
                let mut conn = pool.get().await.map_err(from_pool)?;
                Ok(f(&mut conn).await?)
            }
            None => self.on_writer(Mode::Plain, f).await,
        }
    }

    /// Runs `f` in a read transaction: every statement sees the same snapshot.
    pub(crate) async fn snapshot<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Conn) -> BoxFut<'c, DbResult<T>> + Send + 'static,
    {
        match &self.readers {
            Some(pool) => {
                let mut conn = pool.get().await.map_err(from_pool)?;
                let conn: &mut Conn = &mut conn;
                let result: DbResult<T> = conn.transaction(higher_ranked(move |c| f(c))).await;
                Ok(result?)
            }
            None => self.on_writer(Mode::Read, f).await,
        }
    }

    /// Runs `f` in a write transaction on the writer connection.
    pub(crate) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Conn) -> BoxFut<'c, DbResult<T>> + Send + 'static,
    {
        self.on_writer(Mode::Write, f).await
    }

    async fn on_writer<T, F>(&self, mode: Mode, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Conn) -> BoxFut<'c, DbResult<T>> + Send + 'static,
    {
        let writer = Arc::clone(&self.writer);
        let reopen = match &self.location {
            Location::File(path) => Some(path.clone()),
            Location::Memory => None,
        };
        // A task of its own: dropping the caller's future must not cancel a transaction
        // half-way on the one writer connection.
        let task = tokio::spawn(async move {
            let mut guard = writer.lock_owned().await;
            let conn: &mut Conn = &mut guard;
            if let Some(path) = reopen {
                heal(conn, path).await?;
            }
            let result: DbResult<T> = match mode {
                Mode::Plain => f(conn).await,
                Mode::Read => conn.transaction(higher_ranked(move |c| f(c))).await,
                Mode::Write => {
                    conn.immediate_transaction(higher_ranked(move |c| f(c)))
                        .await
                }
            };
            result
        });
        let result = task
            .await
            .map_err(|e| internal(format!("a database task failed: {e}")))?;
        Ok(result?)
    }
}

/// Inserts the largest power-of-two head of `rows` (at most 64) with one statement;
/// returns the rows left. Each size is the same SQL every time, so diesel prepares it once
/// per connection and finds it by its type (see `log_insert`).
fn insert_logs_head<'r>(
    conn: &mut diesel::SqliteConnection,
    rows: &'r [NewRequestLogRow],
) -> QueryResult<&'r [NewRequestLogRow]> {
    use diesel::query_dsl::methods::ExecuteDsl;
    macro_rules! insert_head {
        ($($n:literal),+) => {
            $(
                if let Some((head, tail)) = rows.split_first_chunk::<$n>() {
                    ExecuteDsl::execute(log_insert::InsertLogRows(head), conn)?;
                    return Ok(tail);
                }
            )+
        };
    }
    insert_head!(64, 32, 16, 8, 4, 2, 1);
    Ok(rows)
}

/// Replaces a writer connection left inside a transaction it can no longer end (a failed
/// rollback, a panic mid-write) by a fresh one, so one bad write cannot wedge every later
/// one. (An in-memory database cannot be reopened; its store keeps the connection.)
async fn heal(conn: &mut Conn, path: String) -> DbResult<()> {
    if <<Conn as AsyncConnection>::TransactionManager as TransactionManager<Conn>>::is_broken_transaction_manager(conn) {
        tracing::warn!(path = %path, "reopening the SQLite writer connection after a broken transaction");
        *conn = blocking(move || open_writer(&path, false)).await?;
    }
    Ok(())
}

/// Writes a batch of request log rows in one `BEGIN IMMEDIATE` transaction, as `INSERT`s
/// of 64, 32, …, 1 rows (`insert_logs_head`), all in a single blocking call on the writer:
/// every blocking hop (a thread wake-up each way) costs more than the rows — `write` would
/// take three (begin, rows, commit). Multi-row statements because one statement per row
/// paid diesel's statement lookup and SQLite's step setup per row.
async fn write_log_rows(db: &Db, rows: Vec<NewRequestLogRow>) -> StoreResult<()> {
    db.on_writer(Mode::Plain, move |conn| {
        Box::pin(async move {
            let inserted = conn
                .spawn_blocking(move |conn| {
                    conn.immediate_transaction(|conn| {
                        let mut rest = rows.as_slice();
                        while !rest.is_empty() {
                            rest = insert_logs_head(conn, rest)?;
                        }
                        QueryResult::Ok(())
                    })
                })
                .await;
            Ok(inserted?)
        })
    })
    .await
}

/// Applies pending migrations to the database at `location` and closes it.
pub(crate) async fn migrate(location: Location) -> StoreResult<()> {
    let path = location.path().to_owned();
    blocking(move || {
        let mut conn = open_connection(&path)?;
        prepare(&mut conn)?;
        run_migrations(&mut conn)
    })
    .await
}

/// Runs blocking SQLite work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(format!("a database task failed: {e}")))?
}

fn open_connection(path: &str) -> StoreResult<SqliteConnection> {
    SqliteConnection::establish(path)
        .map_err(|e| unavailable(format!("cannot open the SQLite database {path:?}: {e}")))
}

/// Lock waiting and WAL (readers never block the writer); WAL is a property of the file
/// and sticks, so setting it here covers the readers too.
fn prepare(conn: &mut SqliteConnection) -> StoreResult<()> {
    conn.batch_execute(
        "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
    )
    .map_err(|e| unavailable(format!("cannot set up the SQLite database: {e}")))
}

/// Applies pending migrations in one exclusive transaction, so two processes starting on
/// the same file cannot both apply one. Foreign keys are still off here (they cannot be
/// switched inside a transaction, and table rebuilds in later migrations need them off).
fn run_migrations(conn: &mut SqliteConnection) -> StoreResult<()> {
    let result: DbResult<()> = conn.exclusive_transaction(|conn| {
        conn.run_pending_migrations(MIGRATIONS)
            .map(|_| ())
            .map_err(|e| internal(format!("SQLite migrations failed: {e}")).into())
    });
    Ok(result?)
}

/// The writer connection; `migrate` applies pending migrations first (at open, not when
/// replacing a broken writer: its open transaction would block the migration's lock).
fn open_writer(path: &str, migrate: bool) -> StoreResult<Conn> {
    let mut conn = open_connection(path)?;
    prepare(&mut conn)?;
    if migrate {
        run_migrations(&mut conn)?;
    }
    conn.batch_execute(CONNECTION_PRAGMAS)
        .map_err(|e| unavailable(format!("cannot set up the SQLite database: {e}")))?;
    Ok(SyncConnectionWrapper::new(conn))
}

fn open_reader(path: &str) -> ConnectionResult<Conn> {
    let mut conn = SqliteConnection::establish(path)?;
    conn.batch_execute(CONNECTION_PRAGMAS)
        .and_then(|()| conn.batch_execute("PRAGMA query_only = ON;"))
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(SyncConnectionWrapper::new(conn))
}

async fn reader_pool(path: &str) -> StoreResult<Pool<Conn>> {
    let mut config = ManagerConfig::<Conn>::default();
    // Reader connections cannot go stale the way network connections do.
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(|url| {
        let url = url.to_owned();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || open_reader(&url))
                .await
                .map_err(|e| ConnectionError::BadConnection(e.to_string()))?
        })
    });
    let manager = AsyncDieselConnectionManager::new_with_config(path, config);
    Pool::builder()
        .max_size(READERS)
        .build(manager)
        .await
        .map_err(|e| unavailable(format!("cannot open SQLite read connections: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::fresh_sqlite_url;
    use diesel::ExpressionMethods;
    use diesel_async::RunQueryDsl;
    use llmur_core::{Store, StoreErrorKind};

    /// A write that panics half-way leaves its transaction open on the writer; the next
    /// write replaces the connection instead of failing forever.
    #[tokio::test]
    async fn a_panicking_write_does_not_wedge_the_writer() {
        let (url, _guard) = fresh_sqlite_url();
        let path = url.trim_start_matches("sqlite://").to_owned();
        let store = SqliteStore::open(Location::File(path)).await.unwrap();
        let err = store
            .write::<(), _>(|conn| {
                Box::pin(async move {
                    diesel::update(crate::db::schema::catalog_version::table)
                        .set(crate::db::schema::catalog_version::version.eq(7))
                        .execute(conn)
                        .await?;
                    panic!("boom");
                })
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Internal);
        assert_eq!(store.catalog_version().await.unwrap(), 0, "rolled back");
        store
            .create_project(llmur_core::store::types::Project {
                id: llmur_core::ProjectId::new_random(),
                name: "p".into(),
                limits: Default::default(),
                created_at: llmur_core::store::types::Millis(0),
            })
            .await
            .unwrap();
        assert_eq!(store.catalog_version().await.unwrap(), 1);
    }

    /// `.cargo/config.toml` builds the bundled SQLite in multi-thread mode and without
    /// memory statistics (no mutex per call or per allocation); deleting that file would
    /// only make it slower, so this notices.
    #[test]
    fn sqlite_is_built_without_per_call_mutexes() {
        #[derive(diesel::QueryableByName)]
        struct CompileOption {
            #[diesel(sql_type = diesel::sql_types::Text)]
            compile_options: String,
        }
        let mut conn = open_connection(":memory:").unwrap();
        let query = diesel::sql_query("PRAGMA compile_options");
        let options: Vec<String> = diesel::RunQueryDsl::load::<CompileOption>(query, &mut conn)
            .unwrap()
            .into_iter()
            .map(|o| o.compile_options)
            .collect();
        assert!(options.iter().any(|o| o == "THREADSAFE=2"), "{options:?}");
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }
}
