//! Virtual keys and their deployment links. Every write here is catalog-relevant and
//! bumps the version in its transaction.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use llmur_core::store::types::*;
use llmur_core::{DeploymentId, ProjectId, StoreError, StoreResult, VirtualKeyId};

use super::{Db, bump, require, require_rows};
use crate::db::error::on_write;
use crate::db::rows::{
    Record, VirtualKeyChanges, VirtualKeyDeploymentRow, VirtualKeyRow, fetch_limit, id_text,
    into_page, missing,
};
use crate::db::schema::{virtual_key_deployments, virtual_keys};

/// How link rows are named in messages.
const LINK: &str = "virtual key-deployment link";

pub(super) async fn create_virtual_key(
    db: &Db,
    key: StoredVirtualKey,
) -> StoreResult<StoredVirtualKey> {
    let row = VirtualKeyRow::new(&key)?;
    db.write(move |conn| {
        Box::pin(async move {
            let project = key.project_id;
            require(
                exists!(conn, projects, id_text(project.0)).await?,
                "project",
                project,
            )?;
            diesel::insert_into(virtual_keys::table)
                .values(&row)
                .execute(conn)
                .await
                .map_err(on_write("virtual key"))?;
            bump(conn).await?;
            Ok(key)
        })
    })
    .await
}

pub(super) async fn get_virtual_key(db: &Db, id: VirtualKeyId) -> StoreResult<StoredVirtualKey> {
    db.read(move |conn| {
        Box::pin(async move {
            let row = virtual_keys::table
                .find(id_text(id.0))
                .select(VirtualKeyRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row
                .ok_or_else(|| missing("virtual key", id))?
                .into_domain()?)
        })
    })
    .await
}

pub(super) async fn get_virtual_key_by_hash(
    db: &Db,
    key_hash: &str,
) -> StoreResult<StoredVirtualKey> {
    let key_hash = key_hash.to_owned();
    db.read(move |conn| {
        Box::pin(async move {
            let row = virtual_keys::table
                .filter(virtual_keys::key_hash.eq(key_hash))
                .select(VirtualKeyRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row
                .ok_or_else(|| StoreError::not_found("virtual key hash"))?
                .into_domain()?)
        })
    })
    .await
}

pub(super) async fn list_virtual_keys(
    db: &Db,
    project: Option<ProjectId>,
    page: PageRequest,
) -> StoreResult<Page<StoredVirtualKey>> {
    let limit = fetch_limit(&page)?;
    db.read(move |conn| {
        Box::pin(async move {
            let mut query = virtual_keys::table
                .select(VirtualKeyRow::as_select())
                .order(virtual_keys::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(project) = project {
                query = query.filter(virtual_keys::project_id.eq(id_text(project.0)));
            }
            if let Some(after) = page.after {
                query = query.filter(virtual_keys::id.gt(id_text(after)));
            }
            Ok(into_page(query.load(conn).await?, &page)?)
        })
    })
    .await
}

pub(super) async fn update_virtual_key(
    db: &Db,
    id: VirtualKeyId,
    patch: VirtualKeyPatch,
) -> StoreResult<StoredVirtualKey> {
    let changes = VirtualKeyChanges::new(patch)?;
    db.write(move |conn| {
        Box::pin(async move {
            let key = id_text(id.0);
            match changes {
                Some(changes) => {
                    let touched = diesel::update(virtual_keys::table.find(&key))
                        .set(&changes)
                        .execute(conn)
                        .await?;
                    require_rows(touched, "virtual key", id)?;
                }
                None => require(exists!(conn, virtual_keys, &key).await?, "virtual key", id)?,
            }
            bump(conn).await?;
            let row = virtual_keys::table
                .find(&key)
                .select(VirtualKeyRow::as_select())
                .first(conn)
                .await?;
            Ok(row.into_domain()?)
        })
    })
    .await
}

pub(super) async fn delete_virtual_key(db: &Db, id: VirtualKeyId) -> StoreResult<()> {
    db.write(move |conn| {
        Box::pin(async move {
            // Its links cascade.
            let touched = diesel::delete(virtual_keys::table.find(id_text(id.0)))
                .execute(conn)
                .await?;
            require_rows(touched, "virtual key", id)?;
            bump(conn).await
        })
    })
    .await
}

pub(super) async fn create_virtual_key_deployment(
    db: &Db,
    link: VirtualKeyDeployment,
) -> StoreResult<VirtualKeyDeployment> {
    let row = VirtualKeyDeploymentRow::new(&link);
    db.write(move |conn| {
        Box::pin(async move {
            let (key, deployment) = (link.virtual_key_id, link.deployment_id);
            require(
                exists!(conn, virtual_keys, id_text(key.0)).await?,
                "virtual key",
                key,
            )?;
            require(
                exists!(conn, deployments, id_text(deployment.0)).await?,
                "deployment",
                deployment,
            )?;
            diesel::insert_into(virtual_key_deployments::table)
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

pub(super) async fn get_virtual_key_deployment(
    db: &Db,
    id: VirtualKeyDeploymentId,
) -> StoreResult<VirtualKeyDeployment> {
    db.read(move |conn| {
        Box::pin(async move {
            let row = virtual_key_deployments::table
                .find(id_text(id.0))
                .select(VirtualKeyDeploymentRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row.ok_or_else(|| missing(LINK, id))?.into_domain()?)
        })
    })
    .await
}

pub(super) async fn list_virtual_key_deployments(
    db: &Db,
    key: Option<VirtualKeyId>,
    deployment: Option<DeploymentId>,
    page: PageRequest,
) -> StoreResult<Page<VirtualKeyDeployment>> {
    let limit = fetch_limit(&page)?;
    db.read(move |conn| {
        Box::pin(async move {
            let mut query = virtual_key_deployments::table
                .select(VirtualKeyDeploymentRow::as_select())
                .order(virtual_key_deployments::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(key) = key {
                query = query.filter(virtual_key_deployments::virtual_key_id.eq(id_text(key.0)));
            }
            if let Some(deployment) = deployment {
                query =
                    query.filter(virtual_key_deployments::deployment_id.eq(id_text(deployment.0)));
            }
            if let Some(after) = page.after {
                query = query.filter(virtual_key_deployments::id.gt(id_text(after)));
            }
            Ok(into_page(query.load(conn).await?, &page)?)
        })
    })
    .await
}

pub(super) async fn delete_virtual_key_deployment(
    db: &Db,
    id: VirtualKeyDeploymentId,
) -> StoreResult<()> {
    db.write(move |conn| {
        Box::pin(async move {
            let touched = diesel::delete(virtual_key_deployments::table.find(id_text(id.0)))
                .execute(conn)
                .await?;
            require_rows(touched, LINK, id)?;
            bump(conn).await
        })
    })
    .await
}
