//! `/admin/virtual-key`: the keys clients send as `Authorization: Bearer`.
//!
//! Owns: create (the project's admins and developers), list (`?project_id`: its members;
//! none: admins all, others the keys of their projects), get (members, guests too), PATCH
//! and delete (admins and developers). A key is generated here, stored only as its keyed
//! hash, and answered in full exactly once — in the create response; later reads show the
//! `alias` (by default a masked form). Must not touch: key↔deployment links.

use axum::Json;
use axum::extract::State;
use llmur_core::store::types::{Millis, StoredVirtualKey, VirtualKeyPatch};
use llmur_core::{ProjectId, VirtualKeyId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::Shared;
use super::auth::{Need, Principal};
use super::error::{ApiError, ApiResult, DeleteResponse, ErrorBody, not_found_as};
use super::extract::{IdPath, JsonBody, Query, double_option};
use super::limits::{BudgetLimits, LimitsOut, RequestLimits, TokenLimits, limits_in};
use super::pagination::{next_cursor, page_request, scan};
use super::projects::check_label;
use super::time::rfc3339;
use crate::security::{mask_key, new_virtual_key};

/// A virtual key as answered. `key` is present only in the create response.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyOut {
    /// Id.
    pub id: Uuid,
    /// The full key — only when it was just created; it is not kept and cannot be shown
    /// again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A label; by default a masked form of the key (`sk-llmur-AbC...xYz9`).
    pub alias: String,
    /// Free text.
    pub description: Option<String>,
    /// Blocked keys are refused.
    pub blocked: bool,
    /// The owning project.
    pub project_id: Uuid,
    /// Limits.
    #[serde(flatten)]
    pub limits: LimitsOut,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

impl From<StoredVirtualKey> for KeyOut {
    fn from(k: StoredVirtualKey) -> Self {
        Self {
            id: k.id.0,
            key: None,
            alias: k.alias,
            description: k.description,
            blocked: k.blocked,
            project_id: k.project_id.0,
            limits: k.limits.into(),
            created_at: rfc3339(k.created_at),
        }
    }
}

/// A new key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// The owning project.
    pub project_id: Uuid,
    /// A label; default: a masked form of the key.
    pub alias: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Default `false`.
    pub blocked: Option<bool>,
    /// Requests per window.
    pub request_limits: Option<RequestLimits>,
    /// Tokens per window.
    pub token_limits: Option<TokenLimits>,
    /// USD per window.
    pub budget_limits: Option<BudgetLimits>,
}

/// Changes to a key; absent fields stay, `null` clears `description`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchKey {
    /// New label.
    pub alias: Option<String>,
    /// New description; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Block or unblock.
    pub blocked: Option<bool>,
    /// Requests per window.
    pub request_limits: Option<RequestLimits>,
    /// Tokens per window.
    pub token_limits: Option<TokenLimits>,
    /// USD per window.
    pub budget_limits: Option<BudgetLimits>,
}

/// Filter and page of the key list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyQuery {
    /// Only this project's keys (you must be a member).
    pub project_id: Option<Uuid>,
    /// At most this many items (1..=1000, default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// The keys, by id (without the key itself).
    pub keys: Vec<KeyOut>,
    /// Pass as `?cursor=` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

fn check_alias(alias: &str) -> ApiResult<String> {
    check_label("alias", alias)
}

fn check_description(description: Option<String>) -> ApiResult<Option<String>> {
    match description {
        Some(d) if d.chars().count() > 2000 => Err(ApiError::invalid(
            "description must be at most 2000 characters",
        )),
        other => Ok(other),
    }
}

/// A key the caller may see (404 otherwise) and for which they meet `need` (403).
pub(crate) async fn visible_key(
    principal: &Principal,
    state: &Shared,
    id: VirtualKeyId,
    need: Need,
) -> ApiResult<StoredVirtualKey> {
    let what = format!("virtual key {id}");
    let key = state
        .store
        .get_virtual_key(id)
        .await
        .map_err(not_found_as(&what))?;
    principal
        .require_project(state, key.project_id, need, &what)
        .await?;
    Ok(key)
}

/// Creates a key (project admins and developers). The answer holds the full key; it is
/// shown only this once.
#[utoipa::path(
    post,
    path = "/admin/virtual-key",
    tag = "virtual-keys",
    request_body = CreateKey,
    responses(
        (status = 200, description = "The key, with `key` set", body = KeyOut),
        (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown project", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn create_key(
    principal: Principal,
    State(state): State<Shared>,
    JsonBody(body): JsonBody<CreateKey>,
) -> ApiResult<Json<KeyOut>> {
    let project = ProjectId(body.project_id);
    principal
        .require_project(&state, project, Need::Develop, format!("project {project}"))
        .await?;
    let key = new_virtual_key();
    let alias = match body.alias.as_deref() {
        Some(a) => check_alias(a)?,
        None => mask_key(&key),
    };
    let stored = StoredVirtualKey {
        id: VirtualKeyId(Uuid::now_v7()),
        project_id: project,
        key_hash: state.secrets.hash_virtual_key(&key),
        alias,
        description: check_description(body.description)?,
        blocked: body.blocked.unwrap_or(false),
        limits: limits_in!(body).to_core()?,
        created_at: Millis::now(),
    };
    let created = state.store.create_virtual_key(stored).await?;
    state.catalog_changed();
    let mut out = KeyOut::from(created);
    out.key = Some(key);
    Ok(Json(out))
}

/// Lists keys: of a project (its members), or all the caller may see.
#[utoipa::path(
    get,
    path = "/admin/virtual-key",
    tag = "virtual-keys",
    params(KeyQuery),
    responses((status = 200, body = KeyList), (status = 404, body = ErrorBody))
)]
pub(crate) async fn list_keys(
    principal: Principal,
    State(state): State<Shared>,
    Query(q): Query<KeyQuery>,
) -> ApiResult<Json<KeyList>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let store = &state.store;
    let page = if let Some(project) = q.project_id.map(ProjectId) {
        principal
            .require_project(&state, project, Need::Read, format!("project {project}"))
            .await?;
        store.list_virtual_keys(Some(project), page).await?
    } else if principal.is_admin() {
        store.list_virtual_keys(None, page).await?
    } else {
        let mine = principal.projects_with(&state, Need::Read).await?;
        scan(
            page,
            |p| store.list_virtual_keys(None, p),
            |k: &StoredVirtualKey| mine.contains(&k.project_id),
            |k| k.id.0,
        )
        .await?
    };
    Ok(Json(KeyList {
        keys: page.items.into_iter().map(Into::into).collect(),
        next_cursor: next_cursor(page.next),
    }))
}

/// A key, without the key itself (members of its project).
#[utoipa::path(
    get,
    path = "/admin/virtual-key/{id}",
    tag = "virtual-keys",
    params(("id" = Uuid, Path, description = "Virtual key id")),
    responses((status = 200, body = KeyOut), (status = 404, body = ErrorBody))
)]
pub(crate) async fn get_key(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<KeyOut>> {
    let key = visible_key(&principal, &state, VirtualKeyId(id), Need::Read).await?;
    Ok(Json(key.into()))
}

/// Changes a key (project admins and developers).
#[utoipa::path(
    patch,
    path = "/admin/virtual-key/{id}",
    tag = "virtual-keys",
    params(("id" = Uuid, Path, description = "Virtual key id")),
    request_body = PatchKey,
    responses(
        (status = 200, body = KeyOut),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn patch_key(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<PatchKey>,
) -> ApiResult<Json<KeyOut>> {
    let id = VirtualKeyId(id);
    let current = visible_key(&principal, &state, id, Need::Develop).await?;
    let sent = limits_in!(body);
    let patch = VirtualKeyPatch {
        alias: body.alias.as_deref().map(check_alias).transpose()?,
        description: match body.description {
            Some(d) => Some(check_description(d)?),
            None => None,
        },
        blocked: body.blocked,
        limits: if sent.is_present() {
            Some(sent.merge_into(current.limits)?)
        } else {
            None
        },
    };
    let updated = state.store.update_virtual_key(id, patch).await?;
    state.catalog_changed();
    Ok(Json(updated.into()))
}

/// Deletes a key and its links (project admins and developers).
#[utoipa::path(
    delete,
    path = "/admin/virtual-key/{id}",
    tag = "virtual-keys",
    params(("id" = Uuid, Path, description = "Virtual key id")),
    responses(
        (status = 200, body = DeleteResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn delete_key(
    principal: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<DeleteResponse>> {
    let id = VirtualKeyId(id);
    visible_key(&principal, &state, id, Need::Develop).await?;
    state.store.delete_virtual_key(id).await?;
    state.catalog_changed();
    Ok(DeleteResponse::new(format!("virtual key {id} deleted")))
}
