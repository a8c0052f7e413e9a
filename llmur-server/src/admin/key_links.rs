//! `/admin/virtual-key-deployment`: which deployments a virtual key may use.
//!
//! Owns: create (admins and developers of the key's project; the deployment must exist:
//! 404; 409 when already linked), list (`?virtual_key_id`, `?deployment_id`), get
//! (members of the key's project) and delete (admins and developers). A link of a key the
//! caller cannot see is invisible (404). Must not touch: the keys or deployments.

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use llmur_core::store::types::{VirtualKeyDeployment, VirtualKeyDeploymentId};
use llmur_core::{DeploymentId, StoreErrorKind, VirtualKeyId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::Shared;
use super::auth::{Need, Principal};
use super::error::{ApiError, ApiResult, DeleteResponse, ErrorBody, not_found_as};
use super::extract::{IdPath, JsonBody, Query};
use super::keys::visible_key;
use super::pagination::{collect_all, next_cursor, page_request, scan};

/// A key↔deployment link as answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyLinkOut {
    /// Id.
    pub id: Uuid,
    /// The key.
    pub virtual_key_id: Uuid,
    /// The deployment.
    pub deployment_id: Uuid,
}

impl From<VirtualKeyDeployment> for KeyLinkOut {
    fn from(l: VirtualKeyDeployment) -> Self {
        Self {
            id: l.id.0,
            virtual_key_id: l.virtual_key_id.0,
            deployment_id: l.deployment_id.0,
        }
    }
}

/// A new link.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyLink {
    /// The key.
    pub virtual_key_id: Uuid,
    /// The deployment it may use.
    pub deployment_id: Uuid,
}

/// Filters and page of the link list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyLinkQuery {
    /// Only this key's links (you must see the key).
    pub virtual_key_id: Option<Uuid>,
    /// Only links to this deployment.
    pub deployment_id: Option<Uuid>,
    /// At most this many items (1..=1000, default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of links.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyLinkList {
    /// The links, by id.
    pub virtual_key_deployments: Vec<KeyLinkOut>,
    /// Pass as `?cursor=` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// Lets a key use a deployment.
#[utoipa::path(
    post,
    path = "/admin/virtual-key-deployment",
    tag = "links",
    request_body = CreateKeyLink,
    responses(
        (status = 200, body = KeyLinkOut),
        (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown key or deployment", body = ErrorBody),
        (status = 409, description = "Already linked", body = ErrorBody),
    )
)]
pub(crate) async fn create_key_link(
    principal: Principal,
    State(state): State<Shared>,
    JsonBody(body): JsonBody<CreateKeyLink>,
) -> ApiResult<Json<KeyLinkOut>> {
    let key = visible_key(
        &principal,
        &state,
        VirtualKeyId(body.virtual_key_id),
        Need::Develop,
    )
    .await?;
    let deployment = DeploymentId(body.deployment_id);
    state
        .store
        .get_deployment(deployment)
        .await
        .map_err(not_found_as(format!("deployment {deployment}")))?;
    let link = VirtualKeyDeployment {
        id: VirtualKeyDeploymentId::new_v7(),
        virtual_key_id: key.id,
        deployment_id: deployment,
    };
    let created = state
        .store
        .create_virtual_key_deployment(link)
        .await
        .map_err(|e| {
            if e.kind() == StoreErrorKind::Conflict {
                ApiError::conflict("the key is already linked to this deployment")
            } else {
                e.into()
            }
        })?;
    state.catalog_changed();
    Ok(Json(created.into()))
}

/// Lists links: of a key (members of its project), or all the caller may see.
#[utoipa::path(
    get,
    path = "/admin/virtual-key-deployment",
    tag = "links",
    params(KeyLinkQuery),
    responses((status = 200, body = KeyLinkList), (status = 404, body = ErrorBody))
)]
pub(crate) async fn list_key_links(
    principal: Principal,
    State(state): State<Shared>,
    Query(q): Query<KeyLinkQuery>,
) -> ApiResult<Json<KeyLinkList>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let store = &state.store;
    let deployment = q.deployment_id.map(DeploymentId);
    let page = if let Some(key) = q.virtual_key_id.map(VirtualKeyId) {
        visible_key(&principal, &state, key, Need::Read).await?;
        store
            .list_virtual_key_deployments(Some(key), deployment, page)
            .await?
    } else if principal.is_admin() {
        store
            .list_virtual_key_deployments(None, deployment, page)
            .await?
    } else {
        let mut keys: HashSet<VirtualKeyId> = HashSet::new();
        for project in principal.projects_with(&state, Need::Read).await? {
            keys.extend(
                collect_all(|p| store.list_virtual_keys(Some(project), p))
                    .await?
                    .into_iter()
                    .map(|k| k.id),
            );
        }
        scan(
            page,
            |p| store.list_virtual_key_deployments(None, deployment, p),
            |l: &VirtualKeyDeployment| keys.contains(&l.virtual_key_id),
            |l| l.id.0,
        )
        .await?
    };
    Ok(Json(KeyLinkList {
        virtual_key_deployments: page.items.into_iter().map(Into::into).collect(),
        next_cursor: next_cursor(page.next),
    }))
}

/// A link the caller may see (404 otherwise) and for which they meet `need` (403).
async fn visible_link(
    principal: &Principal,
    state: &Shared,
    id: VirtualKeyDeploymentId,
    need: Need,
) -> ApiResult<VirtualKeyDeployment> {
    let what = format!("virtual-key-deployment link {id}");
    let link = state
        .store
        .get_virtual_key_deployment(id)
        .await
        .map_err(not_found_as(&what))?;
    let key = state
        .store
        .get_virtual_key(link.virtual_key_id)
        .await
        .map_err(not_found_as(&what))?;
    principal
        .require_project(state, key.project_id, need, &what)
        .await?;
    Ok(link)
}

/// A link (members of the key's project).
#[utoipa::path(
    get,
    path = "/admin/virtual-key-deployment/{id}",
    tag = "links",
    params(("id" = Uuid, Path, description = "Link id")),
    responses((status = 200, body = KeyLinkOut), (status = 404, body = ErrorBody))
)]
pub(crate) async fn get_key_link(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<KeyLinkOut>> {
    let link = visible_link(&principal, &state, VirtualKeyDeploymentId(id), Need::Read).await?;
    Ok(Json(link.into()))
}

/// Deletes a link (admins and developers of the key's project).
#[utoipa::path(
    delete,
    path = "/admin/virtual-key-deployment/{id}",
    tag = "links",
    params(("id" = Uuid, Path, description = "Link id")),
    responses(
        (status = 200, body = DeleteResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn delete_key_link(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<DeleteResponse>> {
    let id = VirtualKeyDeploymentId(id);
    visible_link(&principal, &state, id, Need::Develop).await?;
    state.store.delete_virtual_key_deployment(id).await?;
    state.catalog_changed();
    Ok(DeleteResponse::new(format!(
        "virtual-key-deployment link {id} deleted"
    )))
}
