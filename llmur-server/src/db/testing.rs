//! Throw-away databases for tests — this crate's store tests and any end-to-end test that
//! wants a real database behind [`connect`](super::connect).
//!
//! ```no_run
//! # async fn demo() -> Result<(), llmur_core::StoreError> {
//! use llmur_server::db::{connect, testing::fresh_postgres_database};
//!
//! let (url, guard) = fresh_postgres_database().await?; // fails loudly without PostgreSQL
//! let store = connect(&url).await?;
//! // ... use the store ...
//! drop(store);
//! guard.cleanup().await?; // or just drop the guard
//! # Ok(())
//! # }
//! ```
//!
//! Owns: creating and removing them. Must not touch: anything outside its own namespace —
//! a PostgreSQL "database" here is a fresh schema `llmur_t_<uuid>` inside the database of
//! [`postgres_admin_url`], selected by the returned URL's `options=-c search_path=...`
//! (creating and dropping a schema takes milliseconds; a real `DROP DATABASE` takes most of
//! a second, too slow for suites that need dozens). The schema holds every table, the
//! migrations bookkeeping included, so stores on different URLs never see each other.

use std::path::PathBuf;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use llmur_core::StoreError;
use uuid::Uuid;

use super::error::{from_diesel, internal, unavailable};
use super::redact;

/// The environment variable naming the PostgreSQL tests use.
pub const POSTGRES_URL_ENV: &str = "LLMUR_TEST_POSTGRES_URL";

/// The PostgreSQL tests use when [`POSTGRES_URL_ENV`] is not set (trust auth, database
/// `test`), as `.ci/services.sh` starts it.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The URL of the PostgreSQL database the fresh schemas are created in:
/// `$LLMUR_TEST_POSTGRES_URL`, else [`DEFAULT_POSTGRES_URL`].
pub fn postgres_admin_url() -> String {
    std::env::var(POSTGRES_URL_ENV)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned())
}

/// A new, empty PostgreSQL namespace: returns a `postgres://` URL for
/// [`connect`](super::connect) and the guard that removes it.
///
/// # Errors
///
/// `Unavailable`, with a message saying how to start PostgreSQL, when it cannot be
/// reached. Tests should fail on this, never skip.
pub async fn fresh_postgres_database() -> Result<(String, TempDatabaseGuard), StoreError> {
    let admin_url = postgres_admin_url();
    let schema = format!("llmur_t_{}", Uuid::new_v4().simple());
    let mut conn = admin_connection(&admin_url).await?;
    conn.batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .map_err(from_diesel)?;
    let url = with_search_path(&admin_url, &schema);
    Ok((
        url,
        TempDatabaseGuard {
            temp: Some(Temp::Postgres { admin_url, schema }),
        },
    ))
}

/// A new SQLite file URL (`sqlite://<temp dir>/llmur-test-<uuid>.db`; the file does not
/// exist yet) and the guard that deletes the file and its `-wal` / `-shm` companions.
pub fn fresh_sqlite_url() -> (String, TempDatabaseGuard) {
    let path = std::env::temp_dir().join(format!("llmur-test-{}.db", Uuid::new_v4().simple()));
    let url = format!("sqlite://{}", path.display());
    (
        url,
        TempDatabaseGuard {
            temp: Some(Temp::Sqlite { path }),
        },
    )
}

/// Removes a test database when dropped (or by [`cleanup`](Self::cleanup), which reports
/// errors). Drop the stores on it first.
#[derive(Debug)]
#[must_use = "the database is removed when the guard is dropped"]
pub struct TempDatabaseGuard {
    temp: Option<Temp>,
}

#[derive(Debug)]
enum Temp {
    Postgres { admin_url: String, schema: String },
    Sqlite { path: PathBuf },
}

impl TempDatabaseGuard {
    /// Removes the database now.
    ///
    /// # Errors
    ///
    /// When PostgreSQL cannot be reached or refuses the `DROP`, or a file cannot be deleted.
    pub async fn cleanup(mut self) -> Result<(), StoreError> {
        match self.temp.take() {
            Some(temp) => temp.remove().await,
            None => Ok(()),
        }
    }
}

/// Removes many test databases at once — for PostgreSQL one `DROP SCHEMA ... CASCADE` per
/// server instead of one per guard, which a suite that made dozens appreciates.
///
/// # Errors
///
/// As [`TempDatabaseGuard::cleanup`]; every guard is consumed either way.
pub async fn cleanup_all(
    guards: impl IntoIterator<Item = TempDatabaseGuard>,
) -> Result<(), StoreError> {
    let mut schemas: Vec<(String, Vec<String>)> = Vec::new();
    let mut result = Ok(());
    for mut guard in guards {
        match guard.temp.take() {
            Some(Temp::Postgres { admin_url, schema }) => {
                match schemas.iter_mut().find(|(url, _)| *url == admin_url) {
                    Some((_, list)) => list.push(schema),
                    None => schemas.push((admin_url, vec![schema])),
                }
            }
            Some(temp) => result = result.and(temp.remove().await),
            None => {}
        }
    }
    for (admin_url, list) in schemas {
        let mut conn = admin_connection(&admin_url).await?;
        let dropped = conn
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                list.join(", ")
            ))
            .await
            .map_err(from_diesel);
        result = result.and(dropped);
    }
    result
}

impl Drop for TempDatabaseGuard {
    fn drop(&mut self) {
        let Some(temp) = self.temp.take() else {
            return;
        };
        // `drop` cannot await, and may run inside a runtime of either flavour: remove the
        // database on a thread of its own with a runtime of its own, and wait for it.
        let removed = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| internal(format!("cannot start a runtime: {e}")))?;
            runtime.block_on(temp.remove())
        })
        .join();
        match removed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not remove a test database"),
            Err(_) => tracing::warn!("removing a test database panicked"),
        }
    }
}

impl Temp {
    async fn remove(self) -> Result<(), StoreError> {
        match self {
            Temp::Postgres { admin_url, schema } => {
                let mut conn = admin_connection(&admin_url).await?;
                conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
                    .map_err(from_diesel)
            }
            Temp::Sqlite { path } => {
                let mut files = vec![path.clone()];
                for suffix in ["-wal", "-shm", "-journal"] {
                    let mut name = path.clone().into_os_string();
                    name.push(suffix);
                    files.push(PathBuf::from(name));
                }
                for file in files {
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(internal(format!("cannot delete {}: {e}", file.display())));
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

async fn admin_connection(admin_url: &str) -> Result<AsyncPgConnection, StoreError> {
    AsyncPgConnection::establish(admin_url).await.map_err(|e| {
        unavailable(format!(
            "PostgreSQL is not reachable at {} ({e}). The PostgreSQL tests need it: start it \
             with `source .ci/services.sh && ensure_postgres` (what CI does), or point \
             {POSTGRES_URL_ENV} at a server with a database you may create schemas in",
            redact(admin_url)
        ))
    })
}

/// `url` with `options=-c search_path=<schema>` added to its query string.
fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_joins_the_query_string() {
        assert_eq!(
            with_search_path("postgres://u@h/db", "s1"),
            "postgres://u@h/db?options=-c%20search_path%3Ds1"
        );
        assert_eq!(
            with_search_path("postgres://u@h/db?sslmode=disable", "s1"),
            "postgres://u@h/db?sslmode=disable&options=-c%20search_path%3Ds1"
        );
    }

    #[test]
    fn sqlite_urls_are_fresh_and_cleaned() {
        let (a, guard_a) = fresh_sqlite_url();
        let (b, _guard_b) = fresh_sqlite_url();
        assert_ne!(a, b);
        let path = a.trim_start_matches("sqlite://").to_owned();
        std::fs::write(&path, b"x").unwrap();
        drop(guard_a);
        assert!(!std::path::Path::new(&path).exists());
    }
}
