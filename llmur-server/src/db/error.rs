//! How database failures become [`StoreError`]s.
//!
//! Owns: [`DbError`], the error of one query step (a diesel error not yet interpreted, or
//! an already decided store error), and the mapping rules: unique violation → `Conflict`,
//! foreign-key violation → `NotFound`, lost connection / pool time-out / a locked database
//! → `Unavailable`, check or not-null violation → `Invalid`, anything else → `Internal`.
//! Must not touch: messages with values from the rows (they might be secrets); messages
//! name tables, constraints and ids only.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::PoolError;
use diesel_async::pooled_connection::bb8::RunError;
use llmur_core::{StoreError, StoreErrorKind};

/// The error of one step inside a store operation.
///
/// Query code uses `?` on diesel results (kept raw, mapped at the end) and on
/// [`StoreError`]s it decided itself (a precise `NotFound`, `Invalid`, ...).
#[derive(Debug)]
pub(crate) enum DbError {
    /// Already a store error.
    Store(StoreError),
    /// A diesel error, mapped by [`from_diesel`] at the end.
    Diesel(DieselError),
}

/// Result of a query step.
pub(crate) type DbResult<T> = Result<T, DbError>;

impl From<DieselError> for DbError {
    fn from(e: DieselError) -> Self {
        DbError::Diesel(e)
    }
}

impl From<StoreError> for DbError {
    fn from(e: StoreError) -> Self {
        DbError::Store(e)
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Store(e) => e,
            DbError::Diesel(e) => from_diesel(e),
        }
    }
}

/// The generic mapping of a diesel error (no knowledge of what was being done).
pub(crate) fn from_diesel(e: DieselError) -> StoreError {
    match e {
        DieselError::NotFound => StoreError::new(StoreErrorKind::NotFound, "row not found"),
        DieselError::DatabaseError(kind, info) => {
            let message = info.message().to_owned();
            match kind {
                DatabaseErrorKind::UniqueViolation => StoreError::conflict(format!(
                    "a unique constraint would be violated ({message})"
                )),
                DatabaseErrorKind::ForeignKeyViolation => StoreError::new(
                    StoreErrorKind::NotFound,
                    format!("a referenced row does not exist ({message})"),
                ),
                DatabaseErrorKind::CheckViolation | DatabaseErrorKind::NotNullViolation => {
                    StoreError::new(
                        StoreErrorKind::Invalid,
                        format!("the value cannot be stored ({message})"),
                    )
                }
                DatabaseErrorKind::ClosedConnection
                | DatabaseErrorKind::UnableToSendCommand
                | DatabaseErrorKind::SerializationFailure => unavailable(message),
                _ if is_locked(&message) => unavailable(message),
                // PostgreSQL's `text` cannot hold NUL (SQLSTATE 22021, which diesel does not
                // name): the value is the caller's to change, not a server fault.
                _ if message.starts_with("invalid byte sequence for encoding") => StoreError::new(
                    StoreErrorKind::Invalid,
                    format!("the value cannot be stored ({message})"),
                ),
                _ => internal(format!("database error: {message}")),
            }
        }
        DieselError::BrokenTransactionManager => unavailable("the connection is broken"),
        other => internal(format!("database error: {other}")),
    }
}

/// SQLite's `SQLITE_BUSY` / `SQLITE_LOCKED` surface as these messages.
fn is_locked(message: &str) -> bool {
    message.contains("database is locked") || message.contains("database table is locked")
}

/// Maps a write's diesel error, naming `what` was written in `Conflict` and `NotFound`.
pub(crate) fn on_write(what: &'static str) -> impl Fn(DieselError) -> DbError {
    move |e| match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            DbError::Store(StoreError::conflict(format!(
                "this {what} conflicts with an existing one ({})",
                info.message()
            )))
        }
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
            DbError::Store(StoreError::new(
                StoreErrorKind::NotFound,
                format!(
                    "a row this {what} refers to does not exist ({})",
                    info.message()
                ),
            ))
        }
        other => DbError::Diesel(other),
    }
}

/// The pool could not hand out a connection.
pub(crate) fn from_pool(e: RunError) -> StoreError {
    match e {
        RunError::User(PoolError::ConnectionError(e)) => {
            unavailable(format!("cannot connect to the database: {e}"))
        }
        RunError::User(PoolError::QueryError(e)) => {
            unavailable(format!("the database connection failed its check: {e}"))
        }
        RunError::TimedOut => unavailable("timed out waiting for a database connection"),
    }
}

/// An `Unavailable` error.
pub(crate) fn unavailable(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, message)
}

/// An `Internal` error.
pub(crate) fn internal(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Internal, message)
}

/// An `Invalid` error.
pub(crate) fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Invalid, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_as_documented() {
        let unique = DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new("UNIQUE constraint failed: users.email_key".to_owned()),
        );
        let e = StoreError::from(on_write("user")(unique));
        assert_eq!(e.kind(), StoreErrorKind::Conflict);
        assert!(e.message().contains("user"), "{e}");

        let fk = DieselError::DatabaseError(
            DatabaseErrorKind::ForeignKeyViolation,
            Box::new("FOREIGN KEY constraint failed".to_owned()),
        );
        assert_eq!(from_diesel(fk).kind(), StoreErrorKind::NotFound);
        assert_eq!(
            from_diesel(DieselError::NotFound).kind(),
            StoreErrorKind::NotFound
        );
        let busy = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("database is locked".to_owned()),
        );
        assert_eq!(from_diesel(busy).kind(), StoreErrorKind::Unavailable);
        assert_eq!(
            from_pool(RunError::TimedOut).kind(),
            StoreErrorKind::Unavailable
        );
    }
}
