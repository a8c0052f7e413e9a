//! One multi-row `INSERT … VALUES (…), (…)` of request logs per fixed batch size, binding
//! each row's fields straight from the row.
//!
//! Owns: [`InsertLogRows`], the statement for `N` rows. Must not touch: how a batch is cut
//! into sizes and the transaction around it (the parent), the row conversion
//! (`rows::NewRequestLogRow`).
//!
//! Why not diesel's `insert_into(…).values(&[row; N])`: on SQLite that goes through diesel's
//! batch-insert wrapper, which walks every row's `Insertable` tuple of twenty
//! `ColumnInsertValue`s twice per execution (once to check for `DEFAULT`s, once to collect
//! the binds): about 6,000 instructions a row before SQLite sees a value. Here the walk is
//! one `push_bind_param` per field. The SQL for a given `N` never changes, so diesel
//! prepares it once per connection and finds it by its type ([`InsertLogRowsId`]).
//!
//! Why `INSERT OR FAIL`: with the default `ABORT`, a statement that writes several rows
//! inside a transaction keeps a statement journal, so that a constraint failure can undo
//! just that statement: SQLite copied pages into it for every batch (about 1,000
//! instructions a row in the bench's in-memory database). Nothing needs that undo here:
//! the batch runs in one transaction that the parent rolls back whole on any error, so a
//! failed batch leaves no rows either way.

use diesel::QueryResult;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sqlite::Sqlite;

use crate::db::rows::{NewRequestLogRow, request_log_columns};

/// `INSERT` of exactly `N` rows; run it with `diesel::query_dsl::methods::ExecuteDsl`.
pub(super) struct InsertLogRows<'a, const N: usize>(pub(super) &'a [NewRequestLogRow; N]);

/// [`InsertLogRows`]' query id: one prepared statement per row count.
pub(super) struct InsertLogRowsId<const N: usize>;

impl<const N: usize> QueryId for InsertLogRows<'_, N> {
    type QueryId = InsertLogRowsId<N>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// Pushes the column list once and then, per row, `(?, …)` with one bind per listed
/// field, so the columns and the values cannot drift apart.
macro_rules! insert_rows {
    ($out:ident, $rows:expr; $first:ident: $first_ty:ty $(, $name:ident: $ty:ty)* $(,)?) => {{
        $out.push_sql(concat!(
            "INSERT OR FAIL INTO request_logs (",
            stringify!($first),
            $(", ", stringify!($name),)*
            ") VALUES "
        ));
        for (i, row) in $rows.iter().enumerate() {
            $out.push_sql(if i == 0 { "(" } else { ", (" });
            $out.push_bind_param::<$first_ty, _>(&row.$first)?;
            $(
                $out.push_sql(", ");
                $out.push_bind_param::<$ty, _>(&row.$name)?;
            )*
            $out.push_sql(")");
        }
    }};
}

impl<const N: usize> QueryFragment<Sqlite> for InsertLogRows<'_, N> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        request_log_columns!(insert_rows!(out, self.0));
        Ok(())
    }
}
