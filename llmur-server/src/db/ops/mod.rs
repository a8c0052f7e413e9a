//! The queries behind [`Store`](llmur_core::Store), written once and compiled for each
//! backend.
//!
//! This directory is mounted twice, by `db/sqlite.rs` and by `db/postgres.rs` (with
//! `#[path]`); each parent defines the same names — `Conn` (its diesel-async connection
//! type), `Db` (its store type, with `read`, `snapshot` and `write` helpers that hand a
//! connection to a closure) and `write_log_rows` (the one write whose batching and transaction differ)
//! — so the code here type-checks against each concrete connection and no query is
//! written twice.
//!
//! Owns: the SQL of every store operation, the catalog-version bump and reference checks
//! inside write transactions. Must not touch: pooling, transactions' isolation or locking
//! (the parents decide), and anything backend-specific — only columns and functions both
//! SQLite and PostgreSQL have.

use std::fmt::Display;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{Conn, Db, write_log_rows};
use crate::db::error::DbResult;
use crate::db::rows::missing;
use crate::db::schema::catalog_version;

/// `SELECT EXISTS (SELECT * FROM $table WHERE id = $id)`, a future of `QueryResult<bool>`.
macro_rules! exists {
    ($conn:expr, $table:ident, $id:expr) => {
        diesel::select(diesel::dsl::exists(
            $crate::db::schema::$table::table.find($id),
        ))
        .get_result::<bool>($conn)
    };
}

mod catalog;
mod keys;
mod projects;
mod routing;
mod store_impl;
mod users;

/// Increments the catalog version; called inside every catalog-relevant write transaction.
async fn bump(conn: &mut Conn) -> DbResult<()> {
    diesel::update(catalog_version::table)
        .set(catalog_version::version.eq(catalog_version::version + 1))
        .execute(conn)
        .await?;
    Ok(())
}

/// `NotFound` for the `what` with `id` unless `found`.
fn require(found: bool, what: &str, id: impl Display) -> DbResult<()> {
    if found {
        Ok(())
    } else {
        Err(missing(what, id).into())
    }
}

/// `NotFound` for the `what` with `id` unless a statement touched a row.
fn require_rows(touched: usize, what: &str, id: impl Display) -> DbResult<()> {
    require(touched > 0, what, id)
}
