//! Connections, deployments and the links between them. Every write here is
//! catalog-relevant and bumps the version in its transaction.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use llmur_core::store::types::*;
use llmur_core::{ConnectionId, DeploymentId, StoreError, StoreResult};

use super::{Db, bump, require, require_rows};
use crate::db::error::on_write;
use crate::db::rows::{
    ConnectionChanges, ConnectionDeploymentRow, ConnectionRow, DeploymentChanges, DeploymentRow,
    Record, fetch_limit, id_text, into_page, missing, weight_value,
};
use crate::db::schema::{connection_deployments, connections, deployments};

/// How link rows are named in messages.
const LINK: &str = "connection-deployment link";

pub(super) async fn create_connection(
    db: &Db,
    connection: StoredConnection,
) -> StoreResult<StoredConnection> {
    let row = ConnectionRow::new(&connection)?;
    db.write(move |conn| {
        Box::pin(async move {
            diesel::insert_into(connections::table)
                .values(&row)
                .execute(conn)
                .await
                .map_err(on_write("connection"))?;
            bump(conn).await?;
            Ok(connection)
        })
    })
    .await
}

pub(super) async fn get_connection(db: &Db, id: ConnectionId) -> StoreResult<StoredConnection> {
    db.read(move |conn| {
        Box::pin(async move {
            let row = connections::table
                .find(id_text(id.0))
                .select(ConnectionRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row
                .ok_or_else(|| missing("connection", id))?
                .into_domain()?)
        })
    })
    .await
}

pub(super) async fn list_connections(
    db: &Db,
    page: PageRequest,
) -> StoreResult<Page<StoredConnection>> {
    let limit = fetch_limit(&page)?;
    db.read(move |conn| {
        Box::pin(async move {
            let mut query = connections::table
                .select(ConnectionRow::as_select())
                .order(connections::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(after) = page.after {
                query = query.filter(connections::id.gt(id_text(after)));
            }
            Ok(into_page(query.load(conn).await?, &page)?)
        })
    })
    .await
}

pub(super) async fn count_connections(db: &Db) -> StoreResult<u64> {
    db.read(move |conn| {
        Box::pin(async move {
            let n: i64 = connections::table.count().get_result(conn).await?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    })
    .await
}

pub(super) async fn update_connection(
    db: &Db,
    id: ConnectionId,
    patch: ConnectionPatch,
) -> StoreResult<StoredConnection> {
    let changes = ConnectionChanges::new(patch)?;
    db.write(move |conn| {
        Box::pin(async move {
            let key = id_text(id.0);
            match changes {
                Some(changes) => {
                    let touched = diesel::update(connections::table.find(&key))
                        .set(&changes)
                        .execute(conn)
                        .await?;
                    require_rows(touched, "connection", id)?;
                }
                None => require(exists!(conn, connections, &key).await?, "connection", id)?,
            }
            bump(conn).await?;
            let row = connections::table
                .find(&key)
                .select(ConnectionRow::as_select())
                .first(conn)
                .await?;
            Ok(row.into_domain()?)
        })
    })
    .await
}

pub(super) async fn delete_connection(db: &Db, id: ConnectionId) -> StoreResult<()> {
    db.write(move |conn| {
        Box::pin(async move {
            // Its links cascade.
            let touched = diesel::delete(connections::table.find(id_text(id.0)))
                .execute(conn)
                .await?;
            require_rows(touched, "connection", id)?;
            bump(conn).await
        })
    })
    .await
}

pub(super) async fn create_deployment(
    db: &Db,
    deployment: StoredDeployment,
) -> StoreResult<StoredDeployment> {
    let row = DeploymentRow::new(&deployment)?;
    db.write(move |conn| {
        Box::pin(async move {
            diesel::insert_into(deployments::table)
                .values(&row)
                .execute(conn)
                .await
                .map_err(on_write("deployment"))?;
            bump(conn).await?;
            Ok(deployment)
        })
    })
    .await
}

pub(super) async fn get_deployment(db: &Db, id: DeploymentId) -> StoreResult<StoredDeployment> {
    db.read(move |conn| {
        Box::pin(async move {
            let row = deployments::table
                .find(id_text(id.0))
                .select(DeploymentRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row
                .ok_or_else(|| missing("deployment", id))?
                .into_domain()?)
        })
    })
    .await
}

pub(super) async fn get_deployment_by_name(db: &Db, name: &str) -> StoreResult<StoredDeployment> {
    let name = name.to_owned();
    db.read(move |conn| {
        Box::pin(async move {
            let row = deployments::table
                .filter(deployments::name.eq(&name))
                .select(DeploymentRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row
                .ok_or_else(|| StoreError::not_found(format_args!("deployment {name:?}")))?
                .into_domain()?)
        })
    })
    .await
}

pub(super) async fn list_deployments(
    db: &Db,
    page: PageRequest,
) -> StoreResult<Page<StoredDeployment>> {
    let limit = fetch_limit(&page)?;
    db.read(move |conn| {
        Box::pin(async move {
            let mut query = deployments::table
                .select(DeploymentRow::as_select())
                .order(deployments::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(after) = page.after {
                query = query.filter(deployments::id.gt(id_text(after)));
            }
            Ok(into_page(query.load(conn).await?, &page)?)
        })
    })
    .await
}

pub(super) async fn update_deployment(
    db: &Db,
    id: DeploymentId,
    patch: DeploymentPatch,
) -> StoreResult<StoredDeployment> {
    let changes = DeploymentChanges::new(patch)?;
    db.write(move |conn| {
        Box::pin(async move {
            let key = id_text(id.0);
            match changes {
                Some(changes) => {
                    let touched = diesel::update(deployments::table.find(&key))
                        .set(&changes)
                        .execute(conn)
                        .await
                        .map_err(on_write("deployment"))?;
                    require_rows(touched, "deployment", id)?;
                }
                None => require(exists!(conn, deployments, &key).await?, "deployment", id)?,
            }
            bump(conn).await?;
            let row = deployments::table
                .find(&key)
                .select(DeploymentRow::as_select())
                .first(conn)
                .await?;
            Ok(row.into_domain()?)
        })
    })
    .await
}

pub(super) async fn delete_deployment(db: &Db, id: DeploymentId) -> StoreResult<()> {
    db.write(move |conn| {
        Box::pin(async move {
            // Links to connections and to keys cascade.
            let touched = diesel::delete(deployments::table.find(id_text(id.0)))
                .execute(conn)
                .await?;
            require_rows(touched, "deployment", id)?;
            bump(conn).await
        })
    })
    .await
}

pub(super) async fn create_connection_deployment(
    db: &Db,
    link: ConnectionDeployment,
) -> StoreResult<ConnectionDeployment> {
    let row = ConnectionDeploymentRow::new(&link)?;
    db.write(move |conn| {
        Box::pin(async move {
            let (connection, deployment) = (link.connection_id, link.deployment_id);
            require(
                exists!(conn, connections, id_text(connection.0)).await?,
                "connection",
                connection,
            )?;
            require(
                exists!(conn, deployments, id_text(deployment.0)).await?,
                "deployment",
                deployment,
            )?;
            diesel::insert_into(connection_deployments::table)
                .values(&row)
                .execute(conn)
                .await
                .map_err(on_write(LINK))?;
            bump(conn).await?;
            Ok(link)
        })
    })
    .await
}

pub(super) async fn get_connection_deployment(
    db: &Db,
    id: ConnectionDeploymentId,
) -> StoreResult<ConnectionDeployment> {
    db.read(move |conn| {
        Box::pin(async move {
            let row = connection_deployments::table
                .find(id_text(id.0))
                .select(ConnectionDeploymentRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row.ok_or_else(|| missing(LINK, id))?.into_domain()?)
        })
    })
    .await
}

pub(super) async fn list_connection_deployments(
    db: &Db,
    connection: Option<ConnectionId>,
    deployment: Option<DeploymentId>,
    page: PageRequest,
) -> StoreResult<Page<ConnectionDeployment>> {
    let limit = fetch_limit(&page)?;
    db.read(move |conn| {
        Box::pin(async move {
            let mut query = connection_deployments::table
                .select(ConnectionDeploymentRow::as_select())
                .order(connection_deployments::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(connection) = connection {
                query =
                    query.filter(connection_deployments::connection_id.eq(id_text(connection.0)));
            }
            if let Some(deployment) = deployment {
                query =
                    query.filter(connection_deployments::deployment_id.eq(id_text(deployment.0)));
            }
            if let Some(after) = page.after {
                query = query.filter(connection_deployments::id.gt(id_text(after)));
            }
            Ok(into_page(query.load(conn).await?, &page)?)
        })
    })
    .await
}

pub(super) async fn update_connection_deployment(
    db: &Db,
    id: ConnectionDeploymentId,
    weight: u32,
) -> StoreResult<ConnectionDeployment> {
    let weight = weight_value(weight)?;
    db.write(move |conn| {
        Box::pin(async move {
            let key = id_text(id.0);
            let touched = diesel::update(connection_deployments::table.find(&key))
                .set(connection_deployments::weight.eq(weight))
                .execute(conn)
                .await?;
            require_rows(touched, LINK, id)?;
            bump(conn).await?;
            let row = connection_deployments::table
                .find(&key)
                .select(ConnectionDeploymentRow::as_select())
                .first(conn)
                .await?;
            Ok(row.into_domain()?)
        })
    })
    .await
}

pub(super) async fn delete_connection_deployment(
    db: &Db,
    id: ConnectionDeploymentId,
) -> StoreResult<()> {
    db.write(move |conn| {
        Box::pin(async move {
            let touched = diesel::delete(connection_deployments::table.find(id_text(id.0)))
                .execute(conn)
                .await?;
            require_rows(touched, LINK, id)?;
            bump(conn).await
        })
    })
    .await
}
