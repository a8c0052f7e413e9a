//! One `INSERT` per batch of request logs: every column is sent as one array and PostgreSQL
//! turns the arrays back into rows with `unnest`.
//!
//! Owns: [`InsertLogs`], the statement. Must not touch: batching (the log writer decides the
//! batch), the row conversion (`rows::RequestLogRow`).
//!
//! Why not diesel's multi-row `INSERT … VALUES`: diesel walks its query tree once per row
//! to bind that row's twenty values, about 14,000 instructions a row, and each batch size
//! is a statement of its own. Here the statement is the same for every batch (prepared
//! once per connection, found by its type) and each column is one bind: a few hundred
//! instructions a row.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bool, Double, Integer, Nullable, Text};

use crate::db::rows::RequestLogColumns;

/// The statement; run it with `diesel_async::RunQueryDsl::execute`.
pub(super) struct InsertLogs<'a>(pub(super) RequestLogColumns<'a>);

/// [`InsertLogs`]' query id: the statement's text never changes, so its type names it in
/// the prepared statement cache.
pub(super) struct InsertLogsId;

impl QueryId for InsertLogs<'_> {
    type QueryId = InsertLogsId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Pg> for InsertLogs<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let c = &self.0;
        out.push_sql(
            "INSERT INTO request_logs (id, request_id, virtual_key_id, project_id, \
             deployment_id, deployment, connection_id, upstream_model, endpoint, stream, \
             status, prompt_tokens, completion_tokens, usage_source, cost_usd, started_at, \
             ttfb_us, duration_us, client_disconnected, error) SELECT * FROM unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&c.id)?;
        for column in [
            &c.request_id,
            &c.virtual_key_id,
            &c.project_id,
            &c.deployment_id,
            &c.deployment,
            &c.connection_id,
            &c.upstream_model,
            &c.endpoint,
        ] {
            out.push_sql(", ");
            out.push_bind_param::<Array<Text>, _>(column)?;
        }
        out.push_sql(", ");
        out.push_bind_param::<Array<Bool>, _>(&c.stream)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Integer>, _>(&c.status)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&c.prompt_tokens)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&c.completion_tokens)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&c.usage_source)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Double>>, _>(&c.cost_usd)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&c.started_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&c.ttfb_us)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&c.duration_us)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Bool>, _>(&c.client_disconnected)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&c.error)?;
        out.push_sql(")");
        Ok(())
    }
}
