//! The catalog version, the catalog snapshot and the request logs.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use llmur_core::store::types::*;
use llmur_core::{RequestLog, StoreResult, VirtualKeyId};

use super::{Db, write_log_rows};
use crate::db::rows::{
    ConnectionDeploymentRow, ConnectionRow, DeploymentRow, NewRequestLogRow, ProjectRow,
    RequestLogRow, VirtualKeyDeploymentRow, VirtualKeyRow, all, id_text,
};
use crate::db::schema::{
    catalog_version, connection_deployments, connections, deployments, projects, request_logs,
    virtual_key_deployments, virtual_keys,
};

pub(super) async fn catalog_version(db: &Db) -> StoreResult<i64> {
    db.read(move |conn| {
        Box::pin(async move {
            Ok(catalog_version::table
                .select(catalog_version::version)
                .first(conn)
                .await?)
        })
    })
    .await
}

pub(super) async fn load_catalog(db: &Db) -> StoreResult<CatalogData> {
    // One read transaction: the version and the rows come from the same snapshot.
    db.snapshot(move |conn| {
        Box::pin(async move {
            let version = catalog_version::table
                .select(catalog_version::version)
                .first(conn)
                .await?;
            let connections = connections::table
                .select(ConnectionRow::as_select())
                .order(connections::id.asc())
                .load(conn)
                .await?;
            let deployments = deployments::table
                .select(DeploymentRow::as_select())
                .order(deployments::id.asc())
                .load(conn)
                .await?;
            let connection_deployments = connection_deployments::table
                .select(ConnectionDeploymentRow::as_select())
                .order(connection_deployments::id.asc())
                .load(conn)
                .await?;
            let virtual_keys = virtual_keys::table
                .select(VirtualKeyRow::as_select())
                .order(virtual_keys::id.asc())
                .load(conn)
                .await?;
            let virtual_key_deployments = virtual_key_deployments::table
                .select(VirtualKeyDeploymentRow::as_select())
                .order(virtual_key_deployments::id.asc())
                .load(conn)
                .await?;
            let projects = projects::table
                .select(ProjectRow::as_select())
                .order(projects::id.asc())
                .load(conn)
                .await?;
            Ok(CatalogData {
                version,
                connections: all(connections)?,
                deployments: all(deployments)?,
                connection_deployments: all(connection_deployments)?,
                virtual_keys: all(virtual_keys)?,
                virtual_key_deployments: all(virtual_key_deployments)?,
                projects: all(projects)?,
            })
        })
    })
    .await
}

pub(super) async fn insert_request_logs(db: &Db, logs: &[RequestLog]) -> StoreResult<()> {
    if logs.is_empty() {
        return Ok(());
    }
    let rows = logs
        .iter()
        .map(NewRequestLogRow::new)
        .collect::<StoreResult<Vec<_>>>()?;
    // How rows are batched is the one backend-specific piece (see the parent).
    write_log_rows(db, rows).await
}

pub(super) async fn list_request_logs(
    db: &Db,
    key: Option<VirtualKeyId>,
    limit: u32,
) -> StoreResult<Vec<RequestLog>> {
    db.read(move |conn| {
        Box::pin(async move {
            // Newest first; equal start times newest-inserted first.
            let mut query = request_logs::table
                .select(RequestLogRow::as_select())
                .order((request_logs::started_at.desc(), request_logs::seq.desc()))
                .limit(i64::from(limit))
                .into_boxed();
            if let Some(key) = key {
                query = query.filter(request_logs::virtual_key_id.eq(id_text(key.0)));
            }
            Ok(all(query.load(conn).await?)?)
        })
    })
    .await
}

pub(super) async fn delete_request_logs_before(db: &Db, before: Millis) -> StoreResult<u64> {
    let deleted = db
        .write(move |conn| {
            Box::pin(async move {
                Ok(diesel::delete(
                    request_logs::table.filter(request_logs::started_at.lt(before.0)),
                )
                .execute(conn)
                .await?)
            })
        })
        .await?;
    Ok(deleted as u64)
}
