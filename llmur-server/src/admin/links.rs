//! `/admin/connection-deployment`: which connections serve a deployment, with weights.
//! App admins and the master key only; everyone else gets 403 on every verb.
//!
//! Owns: create (404 on an unknown connection or deployment, 409 when already linked),
//! list (`?connection_id`, `?deployment_id`), get, PATCH (`weight`) and delete. Must not
//! touch: the linked rows.

use axum::Json;
use axum::extract::State;
use llmur_core::store::types::{ConnectionDeployment, ConnectionDeploymentId};
use llmur_core::{ConnectionId, DeploymentId, StoreErrorKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::Shared;
use super::auth::AdminOnly;
use super::error::{ApiError, ApiResult, DeleteResponse, ErrorBody};
use super::extract::{IdPath, JsonBody, Query};
use super::pagination::{next_cursor, page_request};

/// The largest link weight.
const MAX_WEIGHT: u32 = 100;

/// A connection↔deployment link as answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkOut {
    /// Id.
    pub id: Uuid,
    /// The connection.
    pub connection_id: Uuid,
    /// The deployment.
    pub deployment_id: Uuid,
    /// 0..=100.
    pub weight: u32,
}

impl From<ConnectionDeployment> for LinkOut {
    fn from(l: ConnectionDeployment) -> Self {
        Self {
            id: l.id.0,
            connection_id: l.connection_id.0,
            deployment_id: l.deployment_id.0,
            weight: l.weight,
        }
    }
}

/// A new link.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLink {
    /// The connection.
    pub connection_id: Uuid,
    /// The deployment.
    pub deployment_id: Uuid,
    /// 0..=100, default 1.
    pub weight: Option<u32>,
}

/// A new weight.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchLink {
    /// 0..=100.
    pub weight: u32,
}

/// Filters and page of the link list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// Only this connection's links.
    pub connection_id: Option<Uuid>,
    /// Only this deployment's links.
    pub deployment_id: Option<Uuid>,
    /// At most this many items (1..=1000, default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of links.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkList {
    /// The links, by id.
    pub connection_deployments: Vec<LinkOut>,
    /// Pass as `?cursor=` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

fn check_weight(weight: u32) -> ApiResult<u32> {
    if weight > MAX_WEIGHT {
        return Err(ApiError::invalid(format!(
            "weight must be between 0 and {MAX_WEIGHT}"
        )));
    }
    Ok(weight)
}

/// Links a connection to a deployment.
#[utoipa::path(
    post,
    path = "/admin/connection-deployment",
    tag = "links",
    request_body = CreateLink,
    responses(
        (status = 200, body = LinkOut),
        (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown connection or deployment", body = ErrorBody),
        (status = 409, description = "Already linked", body = ErrorBody),
    )
)]
pub(crate) async fn create_link(
    _: AdminOnly,
    State(state): State<Shared>,
    JsonBody(body): JsonBody<CreateLink>,
) -> ApiResult<Json<LinkOut>> {
    let link = ConnectionDeployment {
        id: ConnectionDeploymentId::new_v7(),
        connection_id: ConnectionId(body.connection_id),
        deployment_id: DeploymentId(body.deployment_id),
        weight: check_weight(body.weight.unwrap_or(1))?,
    };
    let created = state
        .store
        .create_connection_deployment(link)
        .await
        .map_err(|e| {
            if e.kind() == StoreErrorKind::Conflict {
                ApiError::conflict("the connection is already linked to this deployment")
            } else {
                e.into()
            }
        })?;
    state.catalog_changed();
    Ok(Json(created.into()))
}

/// Lists links.
#[utoipa::path(
    get,
    path = "/admin/connection-deployment",
    tag = "links",
    params(LinkQuery),
    responses((status = 200, body = LinkList), (status = 403, body = ErrorBody))
)]
pub(crate) async fn list_links(
    _: AdminOnly,
    State(state): State<Shared>,
    Query(q): Query<LinkQuery>,
) -> ApiResult<Json<LinkList>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let page = state
        .store
        .list_connection_deployments(
            q.connection_id.map(ConnectionId),
            q.deployment_id.map(DeploymentId),
            page,
        )
        .await?;
    Ok(Json(LinkList {
        connection_deployments: page.items.into_iter().map(Into::into).collect(),
        next_cursor: next_cursor(page.next),
    }))
}

/// A link.
#[utoipa::path(
    get,
    path = "/admin/connection-deployment/{id}",
    tag = "links",
    params(("id" = Uuid, Path, description = "Link id")),
    responses(
        (status = 200, body = LinkOut),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn get_link(
    _: AdminOnly,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<LinkOut>> {
    let link = state
        .store
        .get_connection_deployment(ConnectionDeploymentId(id))
        .await?;
    Ok(Json(link.into()))
}

/// Re-weights a link.
#[utoipa::path(
    patch,
    path = "/admin/connection-deployment/{id}",
    tag = "links",
    params(("id" = Uuid, Path, description = "Link id")),
    request_body = PatchLink,
    responses(
        (status = 200, body = LinkOut),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn patch_link(
    _: AdminOnly,
    State(state): State<Shared>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<PatchLink>,
) -> ApiResult<Json<LinkOut>> {
    let weight = check_weight(body.weight)?;
    let link = state
        .store
        .update_connection_deployment(ConnectionDeploymentId(id), weight)
        .await?;
    state.catalog_changed();
    Ok(Json(link.into()))
}

/// Deletes a link.
#[utoipa::path(
    delete,
    path = "/admin/connection-deployment/{id}",
    tag = "links",
    params(("id" = Uuid, Path, description = "Link id")),
    responses(
        (status = 200, body = DeleteResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn delete_link(
    _: AdminOnly,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<DeleteResponse>> {
    let id = ConnectionDeploymentId(id);
    state.store.delete_connection_deployment(id).await?;
    state.catalog_changed();
    Ok(DeleteResponse::new(format!(
        "connection-deployment link {id} deleted"
    )))
}
