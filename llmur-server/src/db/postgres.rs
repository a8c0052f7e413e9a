//! The PostgreSQL [`Store`](llmur_core::Store): a bb8 pool of diesel-async
//! `AsyncPgConnection`s (tokio-postgres underneath, so no libpq is needed at run time).
//!
//! Owns: the pool, migrations (through diesel-async's `AsyncConnectionWrapper`, under an
//! advisory lock so replicas starting together do not race), and how an operation gets a
//! connection — reads on a pooled connection, consistent reads in a `REPEATABLE READ, READ
//! ONLY` transaction, writes in a transaction (request log batches: one `COPY` on a
//! connection of their own, see `postgres/log_copy.rs`). Must not touch: the queries themselves
//! (`ops/`, mounted here with this module's `Conn`, `Db` and `write_log_rows`).

use std::fmt;
use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use llmur_core::StoreResult;

use super::error::{DbResult, from_pool, internal, unavailable};
use super::rows::NewRequestLogRow;
use super::{BoxFut, higher_ranked, redact};

/// The connection type the shared queries run on.
pub(crate) type Conn = AsyncPgConnection;
/// The store type the shared queries take.
pub(crate) type Db = PostgresStore;

mod log_copy;
#[expect(
    clippy::duplicate_mod,
    reason = "the shared queries are compiled once per backend, see db/ops/mod.rs"
)]
#[path = "ops/mod.rs"]
mod ops;

/// The migrations in `migrations/postgres`, embedded in the binary.
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// Pool size.
const MAX_CONNECTIONS: u32 = 16;

/// How long an operation waits for a pooled connection before `Unavailable`.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// The advisory lock migrations hold ("llmur" in ASCII).
const MIGRATION_LOCK: i64 = 0x006c_6c6d_7572;

/// A PostgreSQL database as a [`Store`](llmur_core::Store).
pub(crate) struct PostgresStore {
    pool: Pool<Conn>,
    /// The request log's own connection.
    logs: log_copy::LogCopier,
    /// The URL without its password.
    target: String,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("pool", &self.pool.state())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Migrates the database and opens the pool.
    pub(crate) async fn open(url: &str) -> StoreResult<Self> {
        migrate(url).await?;
        let pool = Pool::builder()
            .max_size(MAX_CONNECTIONS)
            .connection_timeout(CHECKOUT_TIMEOUT)
            .build(AsyncDieselConnectionManager::<Conn>::new(url))
            .await
            .map_err(|e| unavailable(format!("cannot open PostgreSQL connections: {e}")))?;
        Ok(Self {
            pool,
            logs: log_copy::LogCopier::new(url),
            target: redact(url),
        })
    }

    /// Runs `f` on a pooled connection, outside a transaction.
    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Conn) -> BoxFut<'c, DbResult<T>> + Send + 'static,
    {
        let mut conn = self.pool.get().await.map_err(from_pool)?;
        Ok(f(&mut conn).await?)
    }

    /// Runs `f` in a `REPEATABLE READ, READ ONLY` transaction: one snapshot for every
    /// statement.
    pub(crate) async fn snapshot<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Conn) -> BoxFut<'c, DbResult<T>> + Send + 'static,
    {
        let mut conn = self.pool.get().await.map_err(from_pool)?;
        let conn: &mut Conn = &mut conn;
        let result: DbResult<T> = conn
            .build_transaction()
            .repeatable_read()
            .read_only()
            .run(higher_ranked(move |c| f(c)))
            .await;
        Ok(result?)
    }

    /// Runs `f` in a (`READ COMMITTED`) transaction. Catalog writes serialize on the
    /// `catalog_version` row they update.
    pub(crate) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Conn) -> BoxFut<'c, DbResult<T>> + Send + 'static,
    {
        let mut conn = self.pool.get().await.map_err(from_pool)?;
        let conn: &mut Conn = &mut conn;
        let result: DbResult<T> = conn.transaction(higher_ranked(move |c| f(c))).await;
        Ok(result?)
    }
}

/// Writes a batch of request log rows with one `COPY` (`postgres/log_copy.rs`), which is
/// atomic without a transaction around it.
async fn write_log_rows(db: &Db, rows: Vec<NewRequestLogRow>) -> StoreResult<()> {
    db.logs.write(&rows).await
}

/// Applies pending migrations to the database at `url`.
pub(crate) async fn migrate(url: &str) -> StoreResult<()> {
    let url = url.to_owned();
    // The wrapper blocks on the async connection; that must happen off the async threads
    // (and works on a current-thread runtime, unlike `block_in_place`).
    tokio::task::spawn_blocking(move || migrate_blocking(&url))
        .await
        .map_err(|e| internal(format!("the migration task failed: {e}")))?
}

fn migrate_blocking(url: &str) -> StoreResult<()> {
    use diesel::Connection;

    let mut conn = <AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(url)
        .map_err(|e| {
            unavailable(format!(
                "cannot connect to PostgreSQL at {}: {e}",
                redact(url)
            ))
        })?;
    let lock = diesel::sql_query("SELECT pg_advisory_lock($1)").bind::<BigInt, _>(MIGRATION_LOCK);
    diesel::RunQueryDsl::execute(lock, &mut conn)
        .map_err(|e| unavailable(format!("cannot take the migration lock: {e}")))?;
    let result = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|_| ())
        .map_err(|e| internal(format!("PostgreSQL migrations failed: {e}")));
    // Closing the connection releases the lock as well; unlocking is a courtesy.
    let unlock =
        diesel::sql_query("SELECT pg_advisory_unlock($1)").bind::<BigInt, _>(MIGRATION_LOCK);
    let _unlocked = diesel::RunQueryDsl::execute(unlock, &mut conn);
    result
}
