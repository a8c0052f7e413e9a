//! `/admin/user`: accounts.
//!
//! Owns: create, list, get, `me`, PATCH and delete of users, and the email/password rules
//! shared with sessions. Who may: admins (app admin or master key) do everything; a user
//! may read themself and change their own `name` and `password` (other fields: 403);
//! another user's account is invisible to non-admins (404). Must not touch: sessions
//! beyond reading the caller.

use axum::Json;
use axum::extract::State;
use llmur_core::store::types::{Millis, User, UserId, UserPatch};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Shared;
use super::auth::{AdminOnly, Principal, SessionUser};
use super::error::{ApiError, ApiResult, DeleteResponse, ErrorBody};
use super::extract::{IdPath, JsonBody, Query};
use super::pagination::{PageQuery, next_cursor};
use super::projects::check_name;
use super::time::rfc3339;
use super::wire::UserRole;
use crate::security::hash_password;

/// Shortest accepted password, in characters.
pub(crate) const MIN_PASSWORD_CHARS: usize = 8;
/// Longest accepted password, in bytes (hashing is deliberately slow).
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;

/// A user as answered (never the password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    /// Id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Email (lowercase).
    pub email: String,
    /// Application role.
    pub role: UserRole,
    /// Blocked users cannot sign in.
    pub blocked: bool,
    /// Whether the email was verified.
    pub email_verified: bool,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        Self {
            id: u.id.0,
            name: u.name,
            email: u.email,
            role: u.role.into(),
            blocked: u.blocked,
            email_verified: u.email_verified,
            created_at: rfc3339(u.created_at),
        }
    }
}

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Unique email (compared case-insensitively).
    pub email: String,
    /// At least 8 characters.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// Defaults to the part of the email before `@`.
    pub name: Option<String>,
    /// Defaults to `member`.
    pub role: Option<UserRole>,
    /// Defaults to `false`.
    pub blocked: Option<bool>,
    /// Defaults to `false`.
    pub email_verified: Option<bool>,
}

/// Changes to a user; absent fields stay as they are. A user changing themself may send
/// only `name` and `password`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    /// New name.
    pub name: Option<String>,
    /// New role (admins only).
    pub role: Option<UserRole>,
    /// Block or unblock (admins only).
    pub blocked: Option<bool>,
    /// Verified flag (admins only).
    pub email_verified: Option<bool>,
    /// New password (at least 8 characters).
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    /// The users, by id.
    pub users: Vec<UserOut>,
    /// Pass as `?cursor=` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// Lowercases and checks an email.
pub(crate) fn normalize_email(email: &str) -> ApiResult<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if valid {
        Ok(email)
    } else {
        Err(ApiError::invalid("email is not a valid email address"))
    }
}

/// Checks the password rules and hashes it off the async threads.
async fn hash_new_password(password: SecretString) -> ApiResult<String> {
    let len_chars = password.expose_secret().chars().count();
    if len_chars < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.expose_secret().len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    tokio::task::spawn_blocking(move || hash_password(password.expose_secret()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// Creates a user (admins).
#[utoipa::path(
    post,
    path = "/admin/user",
    tag = "users",
    request_body = CreateUser,
    responses(
        (status = 200, body = UserOut),
        (status = 400, description = "No body", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "Email taken", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
pub(crate) async fn create_user(
    _: AdminOnly,
    State(state): State<Shared>,
    JsonBody(body): JsonBody<CreateUser>,
) -> ApiResult<Json<UserOut>> {
    let email = normalize_email(&body.email)?;
    let name = match body.name {
        Some(n) => check_name(&n)?,
        // The local part as written (case kept): "Ada@Example.com" is named "Ada".
        None => check_name(body.email.trim().split('@').next().unwrap_or_default())?,
    };
    let password_hash = hash_new_password(body.password).await?;
    let user = User {
        id: UserId::new_v7(),
        name,
        email,
        role: body.role.map(Into::into).unwrap_or_default(),
        blocked: body.blocked.unwrap_or(false),
        email_verified: body.email_verified.unwrap_or(false),
        password_hash,
        created_at: Millis::now(),
    };
    let user = state.store.create_user(user).await.map_err(|e| {
        if e.kind() == llmur_core::StoreErrorKind::Conflict {
            ApiError::conflict("a user with this email already exists")
        } else {
            e.into()
        }
    })?;
    Ok(Json(user.into()))
}

/// Lists users (admins).
#[utoipa::path(
    get,
    path = "/admin/user",
    tag = "users",
    params(PageQuery),
    responses((status = 200, body = UserList), (status = 403, body = ErrorBody))
)]
pub(crate) async fn list_users(
    _: AdminOnly,
    State(state): State<Shared>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<UserList>> {
    let page = state.store.list_users(q.page()?).await?;
    Ok(Json(UserList {
        users: page.items.into_iter().map(Into::into).collect(),
        next_cursor: next_cursor(page.next),
    }))
}

/// The signed-in user. Needs a session: the master key is not a user (400).
#[utoipa::path(
    get,
    path = "/admin/user/me",
    tag = "users",
    security(("session" = [])),
    responses(
        (status = 200, body = UserOut),
        (status = 400, description = "Called with the master key", body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub(crate) async fn me(SessionUser(me): SessionUser) -> Json<UserOut> {
    Json(me.user.into())
}

/// Whether the caller may see user `id` (admins, or the user themself).
fn may_read(principal: &Principal, id: UserId) -> bool {
    principal.is_admin() || principal.user_id() == Some(id)
}

/// A user (admins, or the user themself; others get 404).
#[utoipa::path(
    get,
    path = "/admin/user/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, body = UserOut), (status = 404, body = ErrorBody))
)]
pub(crate) async fn get_user(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<UserOut>> {
    let id = UserId(id);
    if !may_read(&principal, id) {
        return Err(ApiError::not_found(format!("user {id}")));
    }
    Ok(Json(state.store.get_user(id).await?.into()))
}

/// Changes a user. Admins may change every field; a user may change their own `name` and
/// `password` (other fields: 403).
#[utoipa::path(
    patch,
    path = "/admin/user/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    request_body = PatchUser,
    responses(
        (status = 200, body = UserOut),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn patch_user(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<PatchUser>,
) -> ApiResult<Json<UserOut>> {
    let id = UserId(id);
    if !may_read(&principal, id) {
        return Err(ApiError::not_found(format!("user {id}")));
    }
    let admin_fields =
        body.role.is_some() || body.blocked.is_some() || body.email_verified.is_some();
    if admin_fields && !principal.is_admin() {
        return Err(ApiError::forbidden());
    }
    let name = body.name.as_deref().map(check_name).transpose()?;
    let password_hash = match body.password {
        Some(p) => Some(hash_new_password(p).await?),
        None => None,
    };
    let patch = UserPatch {
        name,
        role: body.role.map(Into::into),
        blocked: body.blocked,
        email_verified: body.email_verified,
        password_hash,
    };
    Ok(Json(state.store.update_user(id, patch).await?.into()))
}

/// Deletes a user with their sessions and memberships (admins; a user asking to delete
/// themself gets 403, another user 404).
#[utoipa::path(
    delete,
    path = "/admin/user/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, body = DeleteResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn delete_user(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<DeleteResponse>> {
    let id = UserId(id);
    if !may_read(&principal, id) {
        return Err(ApiError::not_found(format!("user {id}")));
    }
    if !principal.is_admin() {
        return Err(ApiError::forbidden());
    }
    state.store.delete_user(id).await?;
    Ok(DeleteResponse::new(format!("user {id} deleted")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email(" Ann@Example.COM ").ok().as_deref(),
            Some("ann@example.com")
        );
        for bad in ["", "ann", "@x", "ann@", "a b@x", "a@b@c"] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }
}
