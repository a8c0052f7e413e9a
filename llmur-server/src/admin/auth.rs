//! Who is calling, and what they may do.
//!
//! Owns: the credential extractors — [`Principal`] (`X-LLMur-Key: <master key>` or
//! `X-LLMur-Session: <token>`; anything else 401), [`AdminOnly`] (master key or app
//! admin, else 403) and [`SessionUser`] (a signed-in user; the master key is not one:
//! 400) — and project access ([`ProjectAccess`], [`Need`]).
//!
//! The rule everywhere: **cannot read → 404** (existence is not leaked), **can read but
//! not write → 403**. A project's children (memberships, invites, keys, key links) are
//! readable exactly when the project is: by its members of any role, app admins and the
//! master key. Must not touch: request bodies.

use std::collections::HashSet;

use axum::extract::FromRequestParts;
use http::request::Parts;
use llmur_core::ProjectId;
use llmur_core::StoreErrorKind;
use llmur_core::store::types::{AppRole, Millis, ProjectRole, SessionId, User, UserId};

use super::Shared;
use super::error::{ApiError, ApiResult};
use super::pagination::collect_all;
use crate::security::is_master_key;

/// The master key header.
pub const MASTER_KEY_HEADER: &str = "x-llmur-key";
/// The session token header.
pub const SESSION_HEADER: &str = "x-llmur-session";

/// A user signed in with a valid session.
#[derive(Debug, Clone)]
pub(crate) struct SignedIn {
    /// The user (not blocked).
    pub user: User,
    /// The session used for this request.
    pub session_id: SessionId,
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub(crate) enum Principal {
    /// A master key from the configuration: full admin.
    Master,
    /// A user with a valid session.
    User(Box<SignedIn>),
}

impl Principal {
    /// Master key or an app admin.
    pub(crate) fn is_admin(&self) -> bool {
        match self {
            Principal::Master => true,
            Principal::User(s) => s.user.role == AppRole::Admin,
        }
    }

    /// The signed-in user's id (`None` for the master key).
    pub(crate) fn user_id(&self) -> Option<UserId> {
        match self {
            Principal::Master => None,
            Principal::User(s) => Some(s.user.id),
        }
    }

    /// What the caller may do in `project`. Admins get [`ProjectAccess::Admin`] without a
    /// lookup (the project's existence is then checked by the store call that follows).
    pub(crate) async fn project_access(
        &self,
        state: &Shared,
        project: ProjectId,
    ) -> ApiResult<ProjectAccess> {
        if self.is_admin() {
            return Ok(ProjectAccess::Admin);
        }
        let Some(user) = self.user_id() else {
            return Ok(ProjectAccess::Outsider);
        };
        Ok(state
            .store
            .find_membership(user, project)
            .await?
            .map_or(ProjectAccess::Outsider, |m| ProjectAccess::Member(m.role)))
    }

    /// The projects in which a non-admin caller meets `need` (empty for the master key,
    /// which needs no list).
    pub(crate) async fn projects_with(
        &self,
        state: &Shared,
        need: Need,
    ) -> ApiResult<HashSet<ProjectId>> {
        let Some(user) = self.user_id() else {
            return Ok(HashSet::new());
        };
        let store = &state.store;
        Ok(collect_all(|p| store.list_memberships(Some(user), None, p))
            .await?
            .into_iter()
            .filter(|m| ProjectAccess::Member(m.role).allows(need))
            .map(|m| m.project_id)
            .collect())
    }

    /// Checks `need` in `project`: 404 (`what` not found) when the caller cannot even read
    /// the project, 403 when they can read but `need` is more.
    pub(crate) async fn require_project(
        &self,
        state: &Shared,
        project: ProjectId,
        need: Need,
        what: impl std::fmt::Display,
    ) -> ApiResult<ProjectAccess> {
        let access = self.project_access(state, project).await?;
        access.require(need, what)?;
        Ok(access)
    }
}

/// A caller's standing in one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProjectAccess {
    /// Master key or app admin.
    Admin,
    /// A member with this role.
    Member(ProjectRole),
    /// Not a member.
    Outsider,
}

/// What an operation needs in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Any member (guests too).
    Read,
    /// Project admin or developer (keys and their links).
    Develop,
    /// Project admin (the project itself, memberships, invites).
    Manage,
}

impl ProjectAccess {
    /// Whether `need` is met.
    pub(crate) fn allows(self, need: Need) -> bool {
        match (self, need) {
            (ProjectAccess::Admin, _) => true,
            (ProjectAccess::Outsider, _) => false,
            (ProjectAccess::Member(_), Need::Read) => true,
            (ProjectAccess::Member(role), Need::Develop) => {
                matches!(role, ProjectRole::Admin | ProjectRole::Developer)
            }
            (ProjectAccess::Member(role), Need::Manage) => role == ProjectRole::Admin,
        }
    }

    /// 404 when the project cannot be read, 403 when `need` is not met.
    pub(crate) fn require(self, need: Need, what: impl std::fmt::Display) -> ApiResult<()> {
        if !self.allows(Need::Read) {
            Err(ApiError::not_found(what))
        } else if !self.allows(need) {
            Err(ApiError::forbidden())
        } else {
            Ok(())
        }
    }
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a http::HeaderValue> {
    parts.headers.get(name)
}

impl FromRequestParts<Shared> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        if let Some(value) = header(parts, MASTER_KEY_HEADER) {
            let presented = value.to_str().map_err(|_| ApiError::unauthorized())?;
            // An empty key never matches, even if one was configured by mistake.
            return if !presented.is_empty() && is_master_key(presented, &state.master_keys) {
                Ok(Principal::Master)
            } else {
                Err(ApiError::unauthorized())
            };
        }
        let Some(value) = header(parts, SESSION_HEADER) else {
            return Err(ApiError::unauthorized());
        };
        let token = value.to_str().map_err(|_| ApiError::unauthorized())?;
        authenticate_session(state, token)
            .await
            .map(|s| Principal::User(Box::new(s)))
    }
}

/// A session is valid iff it exists, is not revoked, has not expired, and its user exists
/// and is not blocked.
async fn authenticate_session(state: &Shared, token: &str) -> ApiResult<SignedIn> {
    let not_found_is_401 = |e: llmur_core::StoreError| {
        if e.kind() == StoreErrorKind::NotFound {
            ApiError::unauthorized()
        } else {
            ApiError::from(e)
        }
    };
    let hash = state.secrets.hash_session_token(token);
    let session = state
        .store
        .get_session_by_token_hash(&hash)
        .await
        .map_err(not_found_is_401)?;
    if session.revoked || session.expires_at <= Millis::now() {
        return Err(ApiError::unauthorized());
    }
    let user = state
        .store
        .get_user(session.user_id)
        .await
        .map_err(not_found_is_401)?;
    if user.blocked {
        return Err(ApiError::unauthorized());
    }
    Ok(SignedIn {
        user,
        session_id: session.id,
    })
}

/// The master key or an app admin; any other valid caller gets 403.
#[derive(Debug, Clone)]
pub(crate) struct AdminOnly;

impl FromRequestParts<Shared> for AdminOnly {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        if Principal::from_request_parts(parts, state)
            .await?
            .is_admin()
        {
            Ok(AdminOnly)
        } else {
            Err(ApiError::forbidden())
        }
    }
}

/// A signed-in user; the master key is refused with 400 (it is not a user).
#[derive(Debug, Clone)]
pub(crate) struct SessionUser(pub SignedIn);

impl FromRequestParts<Shared> for SessionUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        match Principal::from_request_parts(parts, state).await? {
            Principal::User(s) => Ok(SessionUser(*s)),
            Principal::Master => Err(ApiError::bad_request(
                "this endpoint needs a user session (X-LLMur-Session); the master key is not a user",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_access_table() {
        use Need::*;
        use ProjectAccess::*;
        let cases = [
            (Admin, [true, true, true]),
            (Member(ProjectRole::Admin), [true, true, true]),
            (Member(ProjectRole::Developer), [true, true, false]),
            (Member(ProjectRole::Guest), [true, false, false]),
            (Outsider, [false, false, false]),
        ];
        for (access, expected) in cases {
            assert_eq!(
                [
                    access.allows(Read),
                    access.allows(Develop),
                    access.allows(Manage)
                ],
                expected,
                "{access:?}"
            );
        }
        assert_eq!(
            Outsider.require(Manage, "x").err().map(|e| e.status()),
            Some(http::StatusCode::NOT_FOUND)
        );
        assert_eq!(
            Member(ProjectRole::Guest)
                .require(Develop, "x")
                .err()
                .map(|e| e.status()),
            Some(http::StatusCode::FORBIDDEN)
        );
    }
}
