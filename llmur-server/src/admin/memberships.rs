//! `/admin/membership`: users' roles in projects.
//!
//! Owns: create, list (`?user_id`, `?project_id`), get, PATCH (role) and delete. Who may:
//! the project's admins (and app admins, the master key) write; its members read; a user
//! may list their own memberships (`?user_id=<self>`, or no filter). A membership of a
//! project the caller is not in is invisible (404). Must not touch: invites.

use axum::Json;
use axum::extract::State;
use llmur_core::ProjectId;
use llmur_core::store::types::{Membership, MembershipId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::Shared;
use super::auth::{Need, Principal};
use super::error::{ApiError, ApiResult, DeleteResponse, ErrorBody, not_found_as};
use super::extract::{IdPath, JsonBody, Query};
use super::pagination::{next_cursor, page_request};
use super::wire::MemberRole;

/// A membership as answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipOut {
    /// Id.
    pub id: Uuid,
    /// The user.
    pub user_id: Uuid,
    /// The project.
    pub project_id: Uuid,
    /// The role.
    pub role: MemberRole,
}

impl From<Membership> for MembershipOut {
    fn from(m: Membership) -> Self {
        Self {
            id: m.id.0,
            user_id: m.user_id.0,
            project_id: m.project_id.0,
            role: m.role.into(),
        }
    }
}

/// A new membership.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMembership {
    /// The user.
    pub user_id: Uuid,
    /// The project.
    pub project_id: Uuid,
    /// The role.
    pub role: MemberRole,
}

/// A new role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchMembership {
    /// The role.
    pub role: MemberRole,
}

/// Filters and page of the membership list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MembershipQuery {
    /// Only this user's memberships (yourself, unless you are an admin).
    pub user_id: Option<Uuid>,
    /// Only this project's memberships (you must be a member).
    pub project_id: Option<Uuid>,
    /// At most this many items (1..=1000, default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of memberships.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipList {
    /// The memberships, by id.
    pub memberships: Vec<MembershipOut>,
    /// Pass as `?cursor=` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// Adds a user to a project (project admins).
#[utoipa::path(
    post,
    path = "/admin/membership",
    tag = "memberships",
    request_body = CreateMembership,
    responses(
        (status = 200, body = MembershipOut),
        (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown user or project", body = ErrorBody),
        (status = 409, description = "Already a member", body = ErrorBody),
    )
)]
pub(crate) async fn create_membership(
    principal: Principal,
    State(state): State<Shared>,
    JsonBody(body): JsonBody<CreateMembership>,
) -> ApiResult<Json<MembershipOut>> {
    let project = ProjectId(body.project_id);
    principal
        .require_project(&state, project, Need::Manage, format!("project {project}"))
        .await?;
    let membership = Membership {
        id: MembershipId::new_v7(),
        user_id: UserId(body.user_id),
        project_id: project,
        role: body.role.into(),
    };
    let created = state
        .store
        .create_membership(membership)
        .await
        .map_err(|e| {
            if e.kind() == llmur_core::StoreErrorKind::Conflict {
                ApiError::conflict("the user is already a member of this project")
            } else {
                e.into()
            }
        })?;
    Ok(Json(created.into()))
}

/// Lists memberships: of a project (its members may), of a user (themself or admins), or
/// without a filter (admins: all; others: their own).
#[utoipa::path(
    get,
    path = "/admin/membership",
    tag = "memberships",
    params(MembershipQuery),
    responses((status = 200, body = MembershipList), (status = 404, body = ErrorBody))
)]
pub(crate) async fn list_memberships(
    principal: Principal,
    State(state): State<Shared>,
    Query(q): Query<MembershipQuery>,
) -> ApiResult<Json<MembershipList>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let mut user = q.user_id.map(UserId);
    let project = q.project_id.map(ProjectId);
    if let Some(project) = project {
        principal
            .require_project(&state, project, Need::Read, format!("project {project}"))
            .await?;
    } else if let Some(u) = user {
        if !principal.is_admin() && principal.user_id() != Some(u) {
            return Err(ApiError::not_found(format!("user {u}")));
        }
    } else if !principal.is_admin() {
        user = principal.user_id();
    }
    let page = state.store.list_memberships(user, project, page).await?;
    Ok(Json(MembershipList {
        memberships: page.items.into_iter().map(Into::into).collect(),
        next_cursor: next_cursor(page.next),
    }))
}

/// A membership the caller may at least read, or 404.
async fn visible(
    principal: &Principal,
    state: &Shared,
    id: MembershipId,
    need: Need,
) -> ApiResult<Membership> {
    let what = format!("membership {id}");
    let membership = state
        .store
        .get_membership(id)
        .await
        .map_err(not_found_as(&what))?;
    principal
        .require_project(state, membership.project_id, need, &what)
        .await?;
    Ok(membership)
}

/// A membership (members of its project).
#[utoipa::path(
    get,
    path = "/admin/membership/{id}",
    tag = "memberships",
    params(("id" = Uuid, Path, description = "Membership id")),
    responses((status = 200, body = MembershipOut), (status = 404, body = ErrorBody))
)]
pub(crate) async fn get_membership(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<MembershipOut>> {
    let m = visible(&principal, &state, MembershipId(id), Need::Read).await?;
    Ok(Json(m.into()))
}

/// Changes a member's role (project admins).
#[utoipa::path(
    patch,
    path = "/admin/membership/{id}",
    tag = "memberships",
    params(("id" = Uuid, Path, description = "Membership id")),
    request_body = PatchMembership,
    responses(
        (status = 200, body = MembershipOut),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn patch_membership(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<PatchMembership>,
) -> ApiResult<Json<MembershipOut>> {
    let id = MembershipId(id);
    visible(&principal, &state, id, Need::Manage).await?;
    let m = state.store.update_membership(id, body.role.into()).await?;
    Ok(Json(m.into()))
}

/// Removes a user from a project (project admins).
#[utoipa::path(
    delete,
    path = "/admin/membership/{id}",
    tag = "memberships",
    params(("id" = Uuid, Path, description = "Membership id")),
    responses(
        (status = 200, body = DeleteResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn delete_membership(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<DeleteResponse>> {
    let id = MembershipId(id);
    visible(&principal, &state, id, Need::Manage).await?;
    state.store.delete_membership(id).await?;
    Ok(DeleteResponse::new(format!("membership {id} deleted")))
}
