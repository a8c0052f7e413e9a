//! Request-log batches written with `COPY request_logs (…) FROM STDIN (FORMAT binary)` on a
//! tokio-postgres connection of the log writer's own.
//!
//! `COPY` is PostgreSQL's cheapest way in for many rows: no statement is planned per batch
//! and no array is decoded and unnested per column. The binary format sends each value in
//! its wire encoding (a `BIGINT` as 8 bytes, not as digits to parse). A `COPY` is one
//! statement, so a batch is written whole or not at all, like the `INSERT` it replaces
//! (eighteenth round of `benches/HISTORY.md` has the figures).
//!
//! diesel-async has no `COPY FROM`; its `AsyncPgConnection` runs on tokio-postgres, which
//! does, so the log writer keeps one tokio-postgres connection beside the pool (named
//! `llmur request logs` in `pg_stat_activity`, or the URL's `application_name` followed by
//! ` request logs`). It connects on the first batch, and after
//! any failed batch it is dropped and the next attempt connects afresh (the log writer
//! retries with backoff).
//!
//! Owns: [`LogCopier`] and the binary row encoding. Must not touch: batching and retries
//! (the log writer), the row conversion (`rows::NewRequestLogRow`).

use std::pin::pin;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use llmur_core::StoreResult;
use tokio::sync::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::db::error::{internal, unavailable};
use crate::db::redact;
use crate::db::rows::{IdText, NewRequestLogRow, request_log_columns};

/// How long connecting may take before the batch fails (and is retried).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds `COPY request_logs (columns) FROM STDIN (FORMAT binary)` from the column list
/// that also drives the encoding, so the two cannot drift apart.
macro_rules! copy_statement {
    (; $first:ident: $first_ty:ty $(, $name:ident: $ty:ty)* $(,)?) => {
        concat!(
            "COPY request_logs (",
            stringify!($first),
            $(", ", stringify!($name),)*
            ") FROM STDIN (FORMAT binary)"
        )
    };
}

/// The statement every batch runs.
const COPY_LOGS: &str = request_log_columns!(copy_statement!());

/// Counts the columns in the same list.
macro_rules! count_columns {
    (; $($name:ident: $ty:ty),* $(,)?) => {
        [$(stringify!($name)),*].len()
    };
}

/// Fields per row, as the binary format's 16-bit count.
const FIELDS: i16 = request_log_columns!(count_columns!()) as i16;

/// Writes one row: the field count, then every listed column of `$row` in order.
macro_rules! encode_fields {
    ($buf:ident, $row:ident; $($name:ident: $ty:ty),* $(,)?) => {{
        $buf.put_i16(FIELDS);
        $( CopyField::put(&$row.$name, $buf); )*
    }};
}

/// The binary `COPY` header: signature, flags (none), header extension length (none).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The one connection request-log batches are copied on.
pub(super) struct LogCopier {
    url: String,
    client: Mutex<Option<Client>>,
}

impl LogCopier {
    /// A copier for the database at `url`; it connects on its first batch.
    pub(super) fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            client: Mutex::new(None),
        }
    }

    /// Copies `rows` into `request_logs` with one `COPY`: all of them, or none.
    pub(super) async fn write(&self, rows: &[NewRequestLogRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let data = encode(rows);
        let mut slot = self.client.lock().await;
        let client = match slot.take() {
            Some(client) if !client.is_closed() => client,
            _ => self.connect().await?,
        };
        let copied = copy(&client, data).await.map_err(|e| self.failed(&e))?;
        // Kept only after a clean batch: a failed one may have left it mid-copy.
        *slot = Some(client);
        if copied != rows.len() as u64 {
            return Err(internal(format!(
                "COPY wrote {copied} request log rows of {}",
                rows.len()
            )));
        }
        Ok(())
    }

    async fn connect(&self) -> StoreResult<Client> {
        let mut config: tokio_postgres::Config = self.url.parse().map_err(|e| {
            internal(format!(
                "the PostgreSQL URL {} is not valid: {e}",
                redact(&self.url)
            ))
        })?;
        // Named for `pg_stat_activity`: the URL's `application_name` (else `llmur`), then
        // ` request logs`.
        let name = format!(
            "{} request logs",
            config.get_application_name().unwrap_or("llmur")
        );
        config
            .application_name(&name)
            .connect_timeout(CONNECT_TIMEOUT);
        let (client, connection) = config.connect(NoTls).await.map_err(|e| {
            unavailable(format!(
                "cannot connect to PostgreSQL at {} for request logs: {e}",
                redact(&self.url)
            ))
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "the request-log PostgreSQL connection closed");
            }
        });
        Ok(client)
    }

    fn failed(&self, e: &tokio_postgres::Error) -> llmur_core::StoreError {
        match e.as_db_error() {
            // PostgreSQL refused the rows (a constraint, a type): retrying will not help,
            // but the log writer decides that.
            Some(db) if !is_transient(db.code()) => internal(format!(
                "PostgreSQL refused a request log batch: {}",
                db.message()
            )),
            _ => unavailable(format!(
                "copying request logs to PostgreSQL at {} failed: {e}",
                redact(&self.url)
            )),
        }
    }
}

/// Errors of the server's state rather than of the rows: the connection was lost or
/// closed by an administrator or a shutdown (class 08, 57P01–57P03), or the server is out
/// of a resource (class 53). The batch may well go through on a new connection.
fn is_transient(code: &SqlState) -> bool {
    let code = code.code();
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
}

async fn copy(client: &Client, data: Bytes) -> Result<u64, tokio_postgres::Error> {
    use futures_util::SinkExt;

    let sink = client.copy_in::<_, Bytes>(COPY_LOGS).await?;
    let mut sink = pin!(sink);
    sink.send(data).await?;
    sink.as_mut().finish().await
}

/// `rows` in `COPY`'s binary format, header and trailer included.
pub(super) fn encode(rows: &[NewRequestLogRow]) -> Bytes {
    // About 330 bytes a row with the usual names; one growth at most otherwise.
    let mut buf = BytesMut::with_capacity(HEADER.len() + 2 + rows.len() * 384);
    buf.put_slice(HEADER);
    for row in rows {
        let buf = &mut buf;
        request_log_columns!(encode_fields!(buf, row));
    }
    // The trailer: a field count of -1.
    buf.put_i16(-1);
    buf.freeze()
}

/// A value as a binary `COPY` field: its length (-1 for NULL), then its bytes.
trait CopyField {
    fn put(&self, buf: &mut BytesMut);
}

/// Lengths in the format are 32-bit; a longer value (over 2 GiB) cannot be stored anyway,
/// and is sent as too long for PostgreSQL to accept, failing the batch.
fn put_len(buf: &mut BytesMut, len: usize) {
    buf.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
}

/// PostgreSQL's `text` cannot hold a NUL character, and one NUL would fail the whole
/// batch (every retry of it, then all its rows dropped). A NUL can reach a log row in an
/// upstream's error message, say, so each is written as U+FFFD, the replacement
/// character; SQLite keeps it as it is.
const NUL_REPLACEMENT: &str = "\u{FFFD}";

impl CopyField for str {
    fn put(&self, buf: &mut BytesMut) {
        if self.as_bytes().contains(&0) {
            // Rare enough that a copy of the string does not matter.
            return self.replace('\0', NUL_REPLACEMENT).as_str().put(buf);
        }
        put_len(buf, self.len());
        buf.put_slice(self.as_bytes());
    }
}

impl CopyField for String {
    fn put(&self, buf: &mut BytesMut) {
        self.as_str().put(buf);
    }
}

impl CopyField for &str {
    fn put(&self, buf: &mut BytesMut) {
        (**self).put(buf);
    }
}

impl CopyField for IdText {
    fn put(&self, buf: &mut BytesMut) {
        self.as_str().put(buf);
    }
}

impl CopyField for bool {
    fn put(&self, buf: &mut BytesMut) {
        buf.put_i32(1);
        buf.put_u8(u8::from(*self));
    }
}

impl CopyField for i32 {
    fn put(&self, buf: &mut BytesMut) {
        buf.put_i32(4);
        buf.put_i32(*self);
    }
}

impl CopyField for i64 {
    fn put(&self, buf: &mut BytesMut) {
        buf.put_i32(8);
        buf.put_i64(*self);
    }
}

impl CopyField for f64 {
    fn put(&self, buf: &mut BytesMut) {
        buf.put_i32(8);
        buf.put_f64(*self);
    }
}

impl<T: CopyField> CopyField for Option<T> {
    fn put(&self, buf: &mut BytesMut) {
        match self {
            Some(value) => value.put(buf),
            None => buf.put_i32(-1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_lists_every_column_in_table_order() {
        assert!(COPY_LOGS.starts_with("COPY request_logs (id, request_id, virtual_key_id, "));
        assert!(COPY_LOGS.ends_with("client_disconnected, error) FROM STDIN (FORMAT binary)"));
        assert_eq!(FIELDS, 20);
        assert_eq!(COPY_LOGS.matches(", ").count() + 1, 20);
    }

    #[test]
    fn fields_are_length_prefixed_and_null_is_minus_one() {
        let mut buf = BytesMut::new();
        "ab".put(&mut buf);
        Some(7i64).put(&mut buf);
        None::<f64>.put(&mut buf);
        true.put(&mut buf);
        200i32.put(&mut buf);
        let expected: &[u8] = &[
            0, 0, 0, 2, b'a', b'b', // text
            0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7, // bigint
            0xff, 0xff, 0xff, 0xff, // NULL
            0, 0, 0, 1, 1, // boolean
            0, 0, 0, 4, 0, 0, 0, 200, // integer
        ];
        assert_eq!(&buf[..], expected);
    }

    #[test]
    fn a_nul_is_written_as_the_replacement_character() {
        let mut buf = BytesMut::new();
        "a\0b\0".put(&mut buf);
        let expected = "a\u{FFFD}b\u{FFFD}";
        assert_eq!(&buf[..4], &(expected.len() as i32).to_be_bytes());
        assert_eq!(&buf[4..], expected.as_bytes());
    }

    #[test]
    fn lost_connections_and_shutdowns_are_transient_refusals_are_not() {
        assert!(is_transient(&SqlState::ADMIN_SHUTDOWN));
        assert!(is_transient(&SqlState::CONNECTION_FAILURE));
        assert!(is_transient(&SqlState::TOO_MANY_CONNECTIONS));
        assert!(!is_transient(&SqlState::NOT_NULL_VIOLATION));
        assert!(!is_transient(&SqlState::INVALID_BINARY_REPRESENTATION));
    }

    #[test]
    fn an_empty_batch_is_a_header_and_a_trailer() {
        let data = encode(&[]);
        assert_eq!(&data[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(data.len(), 19 + 2);
        assert_eq!(&data[19..], &[0xff, 0xff]);
    }
}
