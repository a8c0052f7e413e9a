//! `/admin/project`: projects.
//!
//! Owns: create (any signed-in user — who becomes the project's admin — or the master
//! key), list (admins: all; others: theirs), get (members of any role), PATCH and delete
//! (project admins). Outsiders get 404 for everything of a project. Must not touch: the
//! project's children (their own modules).

use axum::Json;
use axum::extract::State;
use llmur_core::ProjectId;
use llmur_core::store::types::{Membership, MembershipId, Millis, Project, ProjectRole};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Shared;
use super::auth::{Need, Principal};
use super::error::{ApiError, ApiResult, DeleteResponse, ErrorBody};
use super::extract::{IdPath, JsonBody, Query};
use super::limits::{BudgetLimits, LimitsOut, RequestLimits, TokenLimits, limits_in};
use super::pagination::{PageQuery, next_cursor};
use super::time::rfc3339;

/// A project as answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectOut {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Limits.
    #[serde(flatten)]
    pub limits: LimitsOut,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

impl From<Project> for ProjectOut {
    fn from(p: Project) -> Self {
        Self {
            id: p.id.0,
            name: p.name,
            limits: p.limits.into(),
            created_at: rfc3339(p.created_at),
        }
    }
}

/// A new project.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// Name (not unique).
    pub name: String,
    /// Requests per window.
    pub request_limits: Option<RequestLimits>,
    /// Tokens per window.
    pub token_limits: Option<TokenLimits>,
    /// USD per window.
    pub budget_limits: Option<BudgetLimits>,
}

/// Changes to a project; a limits group that is sent replaces that group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchProject {
    /// New name.
    pub name: Option<String>,
    /// Requests per window.
    pub request_limits: Option<RequestLimits>,
    /// Tokens per window.
    pub token_limits: Option<TokenLimits>,
    /// USD per window.
    pub budget_limits: Option<BudgetLimits>,
}

/// A page of projects.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectList {
    /// The projects, by id.
    pub projects: Vec<ProjectOut>,
    /// Pass as `?cursor=` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// Trims and checks a project, deployment or similar name (see [`check_label`]).
pub(crate) fn check_name(name: &str) -> ApiResult<String> {
    check_label("name", name)
}

/// Trims and checks a name-like `field`: 1 to 200 characters, none of them a control
/// character (labels go into logs, headers and JSON, and PostgreSQL's `text` cannot hold
/// NUL at all).
pub(crate) fn check_label(field: &str, text: &str) -> ApiResult<String> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 200 {
        return Err(ApiError::invalid(format!(
            "{field} must be 1 to 200 characters"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(text.to_owned())
}

/// Creates a project; a signed-in creator becomes its admin.
#[utoipa::path(
    post,
    path = "/admin/project",
    tag = "projects",
    request_body = CreateProject,
    responses((status = 200, body = ProjectOut), (status = 422, body = ErrorBody))
)]
pub(crate) async fn create_project(
    principal: Principal,
    State(state): State<Shared>,
    JsonBody(body): JsonBody<CreateProject>,
) -> ApiResult<Json<ProjectOut>> {
    let name = check_name(&body.name)?;
    let limits = limits_in!(body).to_core()?;
    let project = state
        .store
        .create_project(Project {
            id: ProjectId(Uuid::now_v7()),
            name,
            limits,
            created_at: Millis::now(),
        })
        .await?;
    if let Some(user) = principal.user_id() {
        let membership = Membership {
            id: MembershipId::new_v7(),
            user_id: user,
            project_id: project.id,
            role: ProjectRole::Admin,
        };
        if let Err(e) = state.store.create_membership(membership).await {
            // Without its admin the project would be orphaned: undo.
            let _ = state.store.delete_project(project.id).await;
            return Err(e.into());
        }
    }
    state.catalog_changed();
    Ok(Json(project.into()))
}

/// Lists projects: all for admins, the caller's own for others.
#[utoipa::path(
    get,
    path = "/admin/project",
    tag = "projects",
    params(PageQuery),
    responses((status = 200, body = ProjectList))
)]
pub(crate) async fn list_projects(
    principal: Principal,
    State(state): State<Shared>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<ProjectList>> {
    let member = if principal.is_admin() {
        None
    } else {
        principal.user_id()
    };
    let page = state.store.list_projects(member, q.page()?).await?;
    Ok(Json(ProjectList {
        projects: page.items.into_iter().map(Into::into).collect(),
        next_cursor: next_cursor(page.next),
    }))
}

/// A project (members of any role).
#[utoipa::path(
    get,
    path = "/admin/project/{id}",
    tag = "projects",
    params(("id" = Uuid, Path, description = "Project id")),
    responses((status = 200, body = ProjectOut), (status = 404, body = ErrorBody))
)]
pub(crate) async fn get_project(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<ProjectOut>> {
    let id = ProjectId(id);
    principal
        .require_project(&state, id, Need::Read, format!("project {id}"))
        .await?;
    Ok(Json(state.store.get_project(id).await?.into()))
}

/// Renames a project or changes its limits (project admins).
#[utoipa::path(
    patch,
    path = "/admin/project/{id}",
    tag = "projects",
    params(("id" = Uuid, Path, description = "Project id")),
    request_body = PatchProject,
    responses(
        (status = 200, body = ProjectOut),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn patch_project(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<PatchProject>,
) -> ApiResult<Json<ProjectOut>> {
    let id = ProjectId(id);
    principal
        .require_project(&state, id, Need::Manage, format!("project {id}"))
        .await?;
    let name = body.name.as_deref().map(check_name).transpose()?;
    let sent = limits_in!(body);
    let limits = if sent.is_present() {
        let current = state.store.get_project(id).await?;
        Some(sent.merge_into(current.limits)?)
    } else {
        None
    };
    let project = state.store.update_project(id, name, limits).await?;
    state.catalog_changed();
    Ok(Json(project.into()))
}

/// Deletes a project with its keys, memberships and invites (project admins).
#[utoipa::path(
    delete,
    path = "/admin/project/{id}",
    tag = "projects",
    params(("id" = Uuid, Path, description = "Project id")),
    responses(
        (status = 200, body = DeleteResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn delete_project(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<DeleteResponse>> {
    let id = ProjectId(id);
    principal
        .require_project(&state, id, Need::Manage, format!("project {id}"))
        .await?;
    state.store.delete_project(id).await?;
    state.catalog_changed();
    Ok(DeleteResponse::new(format!("project {id} deleted")))
}
