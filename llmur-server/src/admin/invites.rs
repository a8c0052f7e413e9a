//! `/admin/project-invite-code`: codes that let a signed-in user join a project.
//!
//! Owns: create, list (`?project_id`), get and delete (the project's admins, app admins,
//! the master key; other members of the project get 403, outsiders 404), and redemption
//! (`POST .../redeem {code}`, any session: joins with the invite's role; 404 unknown
//! code, 410 expired, 409 already a member). Invites are not used up by redemption: a code
//! works for everyone who has it until it expires or is deleted. Must not touch:
//! memberships beyond creating the redeemer's.

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use llmur_core::store::types::{Invite, InviteId, Membership, MembershipId, Millis, ProjectRole};
use llmur_core::{ProjectId, StoreErrorKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::Shared;
use super::auth::{Need, Principal, SessionUser};
use super::error::{ApiError, ApiResult, DeleteResponse, ErrorBody, not_found_as};
use super::extract::{IdPath, JsonBody, Query};
use super::memberships::MembershipOut;
use super::pagination::{next_cursor, page_request, scan};
use super::time::{parse_validity, rfc3339};
use super::wire::MemberRole;
use crate::security::random_token;

/// Default code length.
const DEFAULT_CODE_LENGTH: u32 = 10;

/// An invite as answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct InviteOut {
    /// Id.
    pub id: Uuid,
    /// The project.
    pub project_id: Uuid,
    /// The code to redeem.
    pub code: String,
    /// Whether it has not expired.
    pub valid: bool,
    /// Expiry (RFC 3339), `null` when it never expires.
    pub valid_until: Option<String>,
    /// Role given on redemption.
    pub role: MemberRole,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

impl From<Invite> for InviteOut {
    fn from(i: Invite) -> Self {
        Self {
            id: i.id.0,
            project_id: i.project_id.0,
            code: i.code,
            valid: is_valid(i.valid_until),
            valid_until: i.valid_until.map(rfc3339),
            role: i.role.into(),
            created_at: rfc3339(i.created_at),
        }
    }
}

fn is_valid(valid_until: Option<Millis>) -> bool {
    valid_until.is_none_or(|t| t > Millis::now())
}

/// A new invite.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvite {
    /// The project.
    pub project_id: Uuid,
    /// How long the code works: a number and a unit (`s`, `m`, `h`, `d`, `w`), e.g.
    /// `"30d"`; absent: no expiry.
    pub validity: Option<String>,
    /// Role given on redemption (default `guest`).
    pub role: Option<MemberRole>,
    /// Code length, 4..=64 (default 10).
    pub code_length: Option<u32>,
}

/// A code to redeem.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemInvite {
    /// The invite code.
    pub code: String,
}

/// Filter and page of the invite list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InviteQuery {
    /// Only this project's invites.
    pub project_id: Option<Uuid>,
    /// At most this many items (1..=1000, default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of invites.
#[derive(Debug, Serialize, ToSchema)]
pub struct InviteList {
    /// The invites, by id.
    pub invites: Vec<InviteOut>,
    /// Pass as `?cursor=` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// Creates an invite code (project admins).
#[utoipa::path(
    post,
    path = "/admin/project-invite-code",
    tag = "invites",
    request_body = CreateInvite,
    responses(
        (status = 200, body = InviteOut),
        (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown project", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn create_invite(
    principal: Principal,
    State(state): State<Shared>,
    JsonBody(body): JsonBody<CreateInvite>,
) -> ApiResult<Json<InviteOut>> {
    let project = ProjectId(body.project_id);
    principal
        .require_project(&state, project, Need::Manage, format!("project {project}"))
        .await?;
    let length = body.code_length.unwrap_or(DEFAULT_CODE_LENGTH);
    if !(4..=64).contains(&length) {
        return Err(ApiError::invalid("code_length must be between 4 and 64"));
    }
    let now = Millis::now();
    let valid_until = match body.validity.as_deref() {
        None => None,
        Some(v) => Some(Millis(now.0.saturating_add(parse_validity(v).ok_or_else(
            || {
                ApiError::invalid(
                    "validity must be a positive number and a unit (s, m, h, d, w), e.g. \"30d\"",
                )
            },
        )?))),
    };
    let role: ProjectRole = body.role.map(Into::into).unwrap_or(ProjectRole::Guest);
    // A taken code is astronomically unlikely at the default length; retry a few times.
    let mut attempts = 0;
    let invite = loop {
        attempts += 1;
        let invite = Invite {
            id: InviteId::new_v7(),
            project_id: project,
            code: random_token(usize::try_from(length).unwrap_or(10)),
            role,
            valid_until,
            created_at: now,
        };
        match state.store.create_invite(invite).await {
            Err(e) if e.kind() == StoreErrorKind::Conflict && attempts < 5 => continue,
            other => break other?,
        }
    };
    Ok(Json(invite.into()))
}

/// Lists invites: of a project (its admins), or all that the caller administers.
#[utoipa::path(
    get,
    path = "/admin/project-invite-code",
    tag = "invites",
    params(InviteQuery),
    responses(
        (status = 200, body = InviteList),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn list_invites(
    principal: Principal,
    State(state): State<Shared>,
    Query(q): Query<InviteQuery>,
) -> ApiResult<Json<InviteList>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let store = &state.store;
    let page = if let Some(project) = q.project_id.map(ProjectId) {
        principal
            .require_project(&state, project, Need::Manage, format!("project {project}"))
            .await?;
        store.list_invites(Some(project), page).await?
    } else if principal.is_admin() {
        store.list_invites(None, page).await?
    } else {
        let admin_of = principal.projects_with(&state, Need::Manage).await?;
        scan(
            page,
            |p| store.list_invites(None, p),
            |i: &Invite| admin_of.contains(&i.project_id),
            |i| i.id.0,
        )
        .await?
    };
    Ok(Json(InviteList {
        invites: page.items.into_iter().map(Into::into).collect(),
        next_cursor: next_cursor(page.next),
    }))
}

/// Joins the invite's project with its role (any signed-in user).
#[utoipa::path(
    post,
    path = "/admin/project-invite-code/redeem",
    tag = "invites",
    security(("session" = [])),
    request_body = RedeemInvite,
    responses(
        (status = 200, description = "The new membership", body = MembershipOut),
        (status = 400, description = "Called with the master key", body = ErrorBody),
        (status = 404, description = "Unknown code", body = ErrorBody),
        (status = 409, description = "Already a member", body = ErrorBody),
        (status = 410, description = "Expired", body = ErrorBody),
    )
)]
pub(crate) async fn redeem_invite(
    State(state): State<Shared>,
    SessionUser(me): SessionUser,
    JsonBody(body): JsonBody<RedeemInvite>,
) -> ApiResult<Json<MembershipOut>> {
    let invite = state
        .store
        .get_invite_by_code(body.code.trim())
        .await
        .map_err(not_found_as("invite code"))?;
    if !is_valid(invite.valid_until) {
        return Err(ApiError::new(
            StatusCode::GONE,
            "this invite code has expired",
        ));
    }
    let membership = Membership {
        id: MembershipId::new_v7(),
        user_id: me.user.id,
        project_id: invite.project_id,
        role: invite.role,
    };
    let created = state
        .store
        .create_membership(membership)
        .await
        .map_err(|e| {
            if e.kind() == StoreErrorKind::Conflict {
                ApiError::conflict("you are already a member of this project")
            } else {
                e.into()
            }
        })?;
    Ok(Json(created.into()))
}

/// An invite the caller may manage: 404 when its project is invisible, 403 for members
/// who are not its admins.
async fn managed(principal: &Principal, state: &Shared, id: InviteId) -> ApiResult<Invite> {
    let what = format!("invite {id}");
    let invite = state
        .store
        .get_invite(id)
        .await
        .map_err(not_found_as(&what))?;
    principal
        .require_project(state, invite.project_id, Need::Manage, &what)
        .await?;
    Ok(invite)
}

/// An invite (project admins).
#[utoipa::path(
    get,
    path = "/admin/project-invite-code/{id}",
    tag = "invites",
    params(("id" = Uuid, Path, description = "Invite id")),
    responses(
        (status = 200, body = InviteOut),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn get_invite(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<InviteOut>> {
    Ok(Json(
        managed(&principal, &state, InviteId(id)).await?.into(),
    ))
}

/// Deletes an invite (project admins).
#[utoipa::path(
    delete,
    path = "/admin/project-invite-code/{id}",
    tag = "invites",
    params(("id" = Uuid, Path, description = "Invite id")),
    responses(
        (status = 200, body = DeleteResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn delete_invite(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<DeleteResponse>> {
    let id = InviteId(id);
    managed(&principal, &state, id).await?;
    state.store.delete_invite(id).await?;
    Ok(DeleteResponse::new(format!("invite {id} deleted")))
}
