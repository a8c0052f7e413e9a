//! One `INSERT` per batch of request logs: every column is sent as one array and PostgreSQL
//! turns the arrays back into rows with `unnest`, one call per column in the select list
//! (`SELECT unnest($1), unnest($2), …`: set-returning functions in the select list run in
//! lockstep and stream their rows; `SELECT * FROM unnest($1, $2, …)` is a function scan
//! that first copies every row into a tuple store. In the bench's full arm that cost
//! PostgreSQL 15.1 µs of CPU a row against 11.7 µs: fourteenth round of
//! `benches/HISTORY.md`). The arrays always have the same length, so both forms give the
//! same rows.
//!
//! Owns: [`InsertLogs`], the statement. Must not touch: batching (the log writer decides the
//! batch), the row conversion (`rows::NewRequestLogRow`).
//!
//! Why not diesel's multi-row `INSERT … VALUES`: diesel walks its query tree once per row
//! to bind that row's twenty values, about 14,000 instructions a row, and each batch size
//! is a statement of its own. Here the statement is the same for every batch (prepared
//! once per connection, found by its type) and each column is one bind: a few hundred
//! instructions a row.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::Array;

use crate::db::rows::{RequestLogColumns, request_log_columns};

/// The statement; run it with `diesel_async::RunQueryDsl::execute`.
pub(super) struct InsertLogs<'a>(pub(super) RequestLogColumns<'a>);

/// [`InsertLogs`]' query id: the statement's text never changes, so its type names it in
/// the prepared statement cache.
pub(super) struct InsertLogsId;

impl QueryId for InsertLogs<'_> {
    type QueryId = InsertLogsId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// Pushes `INSERT INTO request_logs (columns) SELECT unnest($1), unnest($2), …` with one
/// array parameter per listed column, so the column list and the parameters cannot drift
/// apart.
macro_rules! insert_from_arrays {
    ($out:ident, $columns:ident; $first:ident: $first_ty:ty $(, $name:ident: $ty:ty)* $(,)?) => {{
        $out.push_sql(concat!(
            "INSERT INTO request_logs (",
            stringify!($first),
            $(", ", stringify!($name),)*
            ") SELECT unnest("
        ));
        $out.push_bind_param::<Array<$first_ty>, _>(&$columns.$first)?;
        $(
            $out.push_sql("), unnest(");
            $out.push_bind_param::<Array<$ty>, _>(&$columns.$name)?;
        )*
        $out.push_sql(")");
    }};
}

impl QueryFragment<Pg> for InsertLogs<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let c = &self.0;
        request_log_columns!(insert_from_arrays!(out, c));
        Ok(())
    }
}
