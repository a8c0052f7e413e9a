//! `/admin/session-token`: sign in, sign out, revoke.
//!
//! Owns: login (`POST`, no credentials needed; 401 with one message for an unknown email,
//! a wrong password or a blocked user, and the same hashing work in every case), logout
//! (`DELETE`, the calling session) and revocation by id (own sessions; any for admins;
//! someone else's is invisible: 404). Only the token's keyed hash is stored. Must not
//! touch: session validation (that is `auth`).

use std::sync::OnceLock;

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use llmur_core::StoreErrorKind;
use llmur_core::store::types::{Millis, Session, SessionId};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Shared;
use super::auth::{Principal, SessionUser};
use super::error::{ApiError, ApiResult, DeleteResponse, ErrorBody};
use super::extract::{IdPath, JsonBody};
use super::time::rfc3339;
use super::users::MAX_PASSWORD_BYTES;
use crate::security::{hash_password, new_session_token, verify_password};

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The account's email.
    pub email: String,
    /// Its password.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

/// A session as answered (never the token hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    /// Id (for `DELETE /admin/session-token/{id}`).
    pub id: Uuid,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Its user.
    pub user_id: Uuid,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
}

/// A new session: send `token` as `X-LLMur-Session`. It is shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// The session token.
    pub token: String,
    /// The session.
    pub info: SessionInfo,
}

fn bad_credentials() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid email or password")
}

/// A hash to verify against when the email is unknown, so that case costs the same time.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("llmur timing equaliser").unwrap_or_default())
}

/// Signs in. No credentials needed.
#[utoipa::path(
    post,
    path = "/admin/session-token",
    tag = "sessions",
    security(()),
    request_body = Login,
    responses(
        (status = 200, body = LoginResponse),
        (status = 401, description = "Bad credentials or blocked user", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn login(
    State(state): State<Shared>,
    JsonBody(body): JsonBody<Login>,
) -> ApiResult<Json<LoginResponse>> {
    let email = body.email.trim().to_lowercase();
    let user = match state.store.get_user_by_email(&email).await {
        Ok(user) => Some(user),
        Err(e) if e.kind() == StoreErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let password = body.password;
    if password.expose_secret().len() > MAX_PASSWORD_BYTES {
        return Err(bad_credentials());
    }
    let phc = user.as_ref().map(|u| u.password_hash.clone());
    let verified = tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify_password(password.expose_secret(), &phc),
        None => {
            let _ = verify_password(password.expose_secret(), dummy_hash());
            false
        }
    })
    .await
    .map_err(ApiError::internal)?;
    let user = match user {
        Some(user) if verified && !user.blocked => user,
        _ => return Err(bad_credentials()),
    };
    let token = new_session_token();
    let now = Millis::now();
    let ttl = i64::try_from(state.session_ttl.as_millis()).unwrap_or(i64::MAX);
    let session = state
        .store
        .create_session(Session {
            id: SessionId::new_v7(),
            user_id: user.id,
            token_hash: state.secrets.hash_session_token(&token),
            created_at: now,
            expires_at: Millis(now.0.saturating_add(ttl)),
            revoked: false,
        })
        .await?;
    Ok(Json(LoginResponse {
        token,
        info: SessionInfo {
            id: session.id.0,
            revoked: session.revoked,
            user_id: session.user_id.0,
            expires_at: rfc3339(session.expires_at),
        },
    }))
}

/// Signs out: revokes the calling session (400 with the master key).
#[utoipa::path(
    delete,
    path = "/admin/session-token",
    tag = "sessions",
    security(("session" = [])),
    responses(
        (status = 200, body = DeleteResponse),
        (status = 400, description = "Called with the master key", body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub(crate) async fn logout(
    State(state): State<Shared>,
    SessionUser(me): SessionUser,
) -> ApiResult<Json<DeleteResponse>> {
    state.store.revoke_session(me.session_id).await?;
    Ok(DeleteResponse::new(format!(
        "session {} revoked",
        me.session_id
    )))
}

/// Revokes a session: one's own, or any for admins (someone else's: 404).
#[utoipa::path(
    delete,
    path = "/admin/session-token/{id}",
    tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    responses((status = 200, body = DeleteResponse), (status = 404, body = ErrorBody))
)]
pub(crate) async fn revoke_session(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<DeleteResponse>> {
    let id = SessionId(id);
    let session = state.store.get_session(id).await?;
    if !principal.is_admin() && principal.user_id() != Some(session.user_id) {
        return Err(ApiError::not_found(format!("session {id}")));
    }
    state.store.revoke_session(id).await?;
    Ok(DeleteResponse::new(format!("session {id} revoked")))
}
