//! Persistence in SQLite and PostgreSQL: the [`Store`] implementations behind
//! `database_url`, built on diesel and diesel-async.
//!
//! ```no_run
//! # async fn demo() -> Result<(), llmur_core::StoreError> {
//! let store = llmur_server::db::connect("sqlite://llmur.db").await?; // migrates, too
//! assert!(store.catalog_version().await? >= 0);
//! # Ok(())
//! # }
//! ```
//!
//! Owns: the schema (`migrations/sqlite`, `migrations/postgres`, embedded in the binary and
//! applied by [`connect`] and [`migrate`]), connection pools, and the queries. Must not
//! touch: the request hot path (the proxy reads catalog snapshots, never a store) and
//! secrets in clear (connection keys arrive encrypted).
//!
//! - **One schema, one set of queries.** Both backends use the same column types (ids as
//!   UUID text, Unix-millisecond `BIGINT` timestamps, JSON text for limits and prices,
//!   binary secrets), so one diesel schema serves both, and the queries in `ops/` are
//!   compiled once per connection type (`db/sqlite.rs`, `db/postgres.rs` mount that
//!   directory with the names `Conn` and `Db` bound to their own types).
//! - **Writes** run in one transaction each; catalog-relevant ones increment the single
//!   `catalog_version` row in it. References are checked inside the transaction so a
//!   missing row is reported by name (`project 0190… not found`); unique violations
//!   become `Conflict`; deletes cascade through `ON DELETE CASCADE` foreign keys.
//! - **SQLite** keeps one writer connection (WAL, `busy_timeout` 5 s, `BEGIN IMMEDIATE`
//!   transactions) behind an async mutex, so concurrent writes queue instead of failing
//!   with `SQLITE_BUSY`, and a small pool of read connections. An in-memory database has
//!   only the one connection.
//! - **PostgreSQL** uses a bb8 pool of up to 16 connections (tokio-postgres, no libpq);
//!   migrations run through diesel-async's `AsyncConnectionWrapper` under an advisory
//!   lock, so several replicas may start at once.

mod error;
mod postgres;
mod rows;
mod schema;
mod sqlite;
pub mod testing;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use llmur_core::{Store, StoreError, StoreErrorKind};

/// A boxed, sendable future: what the `read` / `write` closures of the backends return.
pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Returns `f` unchanged, with its signature fixed as higher-ranked over the connection's
/// lifetime.
///
/// diesel-async's transaction methods take `AsyncFnOnce` closures, which the compiler
/// implements for concrete closure types but not for a generic `F: FnOnce(..) -> Future`;
/// wrapping the generic callback in a closure declared through this function gives it a
/// concrete closure type with the right signature.
pub(crate) fn higher_ranked<C, T, F>(f: F) -> F
where
    F: for<'c> FnOnce(&'c mut C) -> BoxFut<'c, T>,
{
    f
}

/// Opens the database at `database_url`, applies pending migrations, and returns it as a
/// [`Store`].
///
/// URLs: `sqlite://PATH` (a file, created if missing; `sqlite:///abs/path` for an absolute
/// one), `sqlite::memory:` or `sqlite://:memory:` (a private in-memory database, gone
/// when the store is dropped), `postgres://...` or `postgresql://...` (a libpq-style URL,
/// e.g. `postgres://user:password@host:5432/llmur`).
///
/// # Errors
///
/// `Invalid` for an unknown scheme (the message names it), `Unavailable` when the database
/// cannot be reached or opened, `Internal` when a migration fails.
pub async fn connect(database_url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match Target::parse(database_url)? {
        Target::Sqlite(location) => Arc::new(sqlite::SqliteStore::open(location).await?),
        Target::Postgres(url) => Arc::new(postgres::PostgresStore::open(url).await?),
    })
}

/// Applies pending migrations to the database at `database_url` (see [`connect`] for the
/// URLs) and returns; for an explicit `llmur migrate` step. Running it again is a no-op.
///
/// # Errors
///
/// As [`connect`].
pub async fn migrate(database_url: &str) -> Result<(), StoreError> {
    match Target::parse(database_url)? {
        Target::Sqlite(location) => sqlite::migrate(location).await,
        Target::Postgres(url) => postgres::migrate(url).await,
    }
}

/// Where a database URL points.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    Sqlite(sqlite::Location),
    Postgres(&'a str),
}

impl<'a> Target<'a> {
    fn parse(url: &'a str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Target::Postgres(url));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            return match path {
                ":memory:" => Ok(Target::Sqlite(sqlite::Location::Memory)),
                "" => Err(StoreError::new(
                    StoreErrorKind::Invalid,
                    "the SQLite database URL names no file (write sqlite://PATH)",
                )),
                path => Ok(Target::Sqlite(sqlite::Location::File(path.to_owned()))),
            };
        }
        let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
        Err(StoreError::new(
            StoreErrorKind::Invalid,
            format!(
                "unsupported database URL scheme {scheme:?}: use sqlite://PATH, \
                 sqlite::memory: or postgres://..."
            ),
        ))
    }
}

/// `url` with any password replaced by `***`, fit for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            Target::parse("sqlite::memory:").ok(),
            Some(Target::Sqlite(sqlite::Location::Memory))
        );
        assert_eq!(
            Target::parse("sqlite://:memory:").ok(),
            Some(Target::Sqlite(sqlite::Location::Memory))
        );
        assert_eq!(
            Target::parse("sqlite:///var/lib/llmur.db").ok(),
            Some(Target::Sqlite(sqlite::Location::File(
                "/var/lib/llmur.db".into()
            )))
        );
        assert_eq!(
            Target::parse("sqlite://data/llmur.db").ok(),
            Some(Target::Sqlite(sqlite::Location::File(
                "data/llmur.db".into()
            )))
        );
        assert_eq!(
            Target::parse("postgresql://u@h/db").ok(),
            Some(Target::Postgres("postgresql://u@h/db"))
        );
        let err = Target::parse("mysql://u@h/db").err();
        assert!(
            err.as_ref().is_some_and(
                |e| e.kind() == StoreErrorKind::Invalid && e.message().contains("\"mysql\"")
            ),
            "{err:?}"
        );
        assert!(Target::parse("sqlite://").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/llmur?sslmode=disable"),
            "postgres://app:***@db:5432/llmur?sslmode=disable"
        );
        assert_eq!(redact("postgres://app@db/llmur"), "postgres://app@db/llmur");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }
}
