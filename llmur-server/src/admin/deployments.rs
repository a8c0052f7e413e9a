//! `/admin/deployment`: the names clients put in `model`.
//!
//! Owns: create, PATCH and delete (app admins and the master key; others 403) and list
//! and get (any signed-in caller). Must not touch: links (see `links` and `key_links`).

use axum::Json;
use axum::extract::State;
use llmur_core::store::types::{DeploymentPatch, Millis, StoredDeployment};
use llmur_core::{DeploymentId, StoreErrorKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Shared;
use super::auth::{AdminOnly, Principal};
use super::error::{ApiError, ApiResult, DeleteResponse, ErrorBody};
use super::extract::{IdPath, JsonBody, Query};
use super::limits::{BudgetLimits, LimitsOut, RequestLimits, TokenLimits, limits_in};
use super::pagination::{PageQuery, next_cursor};
use super::projects::check_name;
use super::time::rfc3339;
use super::wire::{BalancingStrategy, DeploymentAccess};

/// A deployment as answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentOut {
    /// Id.
    pub id: Uuid,
    /// Unique name (the `model` clients send).
    pub name: String,
    /// Who may use it.
    pub access: DeploymentAccess,
    /// Balancing strategy.
    pub strategy: BalancingStrategy,
    /// A blocked deployment refuses every request.
    pub blocked: bool,
    /// Limits.
    #[serde(flatten)]
    pub limits: LimitsOut,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

impl From<StoredDeployment> for DeploymentOut {
    fn from(d: StoredDeployment) -> Self {
        Self {
            id: d.id.0,
            name: d.name,
            access: d.access.into(),
            strategy: d.strategy.into(),
            blocked: d.blocked,
            limits: d.limits.into(),
            created_at: rfc3339(d.created_at),
        }
    }
}

/// A new deployment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    /// Unique name.
    pub name: String,
    /// Default `private`.
    pub access: Option<DeploymentAccess>,
    /// Default `round_robin`.
    pub strategy: Option<BalancingStrategy>,
    /// Default `false`.
    pub blocked: Option<bool>,
    /// Requests per window.
    pub request_limits: Option<RequestLimits>,
    /// Tokens per window.
    pub token_limits: Option<TokenLimits>,
    /// USD per window.
    pub budget_limits: Option<BudgetLimits>,
}

/// Changes to a deployment; absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchDeployment {
    /// New unique name.
    pub name: Option<String>,
    /// New access.
    pub access: Option<DeploymentAccess>,
    /// New strategy.
    pub strategy: Option<BalancingStrategy>,
    /// Block or unblock.
    pub blocked: Option<bool>,
    /// Requests per window.
    pub request_limits: Option<RequestLimits>,
    /// Tokens per window.
    pub token_limits: Option<TokenLimits>,
    /// USD per window.
    pub budget_limits: Option<BudgetLimits>,
}

/// A page of deployments.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentList {
    /// The deployments, by id.
    pub deployments: Vec<DeploymentOut>,
    /// Pass as `?cursor=` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

fn name_taken(e: llmur_core::StoreError) -> ApiError {
    if e.kind() == StoreErrorKind::Conflict {
        ApiError::conflict("a deployment with this name already exists")
    } else {
        e.into()
    }
}

/// Creates a deployment (admins).
#[utoipa::path(
    post,
    path = "/admin/deployment",
    tag = "deployments",
    request_body = CreateDeployment,
    responses(
        (status = 200, body = DeploymentOut),
        (status = 403, body = ErrorBody),
        (status = 409, description = "Name taken", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn create_deployment(
    _: AdminOnly,
    State(state): State<Shared>,
    JsonBody(body): JsonBody<CreateDeployment>,
) -> ApiResult<Json<DeploymentOut>> {
    let deployment = StoredDeployment {
        id: DeploymentId(Uuid::now_v7()),
        name: check_name(&body.name)?,
        access: body.access.map(Into::into).unwrap_or_default(),
        strategy: body.strategy.map(Into::into).unwrap_or_default(),
        blocked: body.blocked.unwrap_or(false),
        limits: limits_in!(body).to_core()?,
        created_at: Millis::now(),
    };
    let created = state
        .store
        .create_deployment(deployment)
        .await
        .map_err(name_taken)?;
    state.catalog_changed();
    Ok(Json(created.into()))
}

/// Lists deployments (any signed-in caller).
#[utoipa::path(
    get,
    path = "/admin/deployment",
    tag = "deployments",
    params(PageQuery),
    responses((status = 200, body = DeploymentList))
)]
pub(crate) async fn list_deployments(
    _: Principal,
    State(state): State<Shared>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<DeploymentList>> {
    let page = state.store.list_deployments(q.page()?).await?;
    Ok(Json(DeploymentList {
        deployments: page.items.into_iter().map(Into::into).collect(),
        next_cursor: next_cursor(page.next),
    }))
}

/// A deployment (any signed-in caller).
#[utoipa::path(
    get,
    path = "/admin/deployment/{id}",
    tag = "deployments",
    params(("id" = Uuid, Path, description = "Deployment id")),
    responses((status = 200, body = DeploymentOut), (status = 404, body = ErrorBody))
)]
pub(crate) async fn get_deployment(
    _: Principal,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<DeploymentOut>> {
    Ok(Json(
        state.store.get_deployment(DeploymentId(id)).await?.into(),
    ))
}

/// Changes a deployment (admins).
#[utoipa::path(
    patch,
    path = "/admin/deployment/{id}",
    tag = "deployments",
    params(("id" = Uuid, Path, description = "Deployment id")),
    request_body = PatchDeployment,
    responses(
        (status = 200, body = DeploymentOut),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Name taken", body = ErrorBody),
    )
)]
pub(crate) async fn patch_deployment(
    _: AdminOnly,
    State(state): State<Shared>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<PatchDeployment>,
) -> ApiResult<Json<DeploymentOut>> {
    let id = DeploymentId(id);
    let sent = limits_in!(body);
    let limits = if sent.is_present() {
        Some(sent.merge_into(state.store.get_deployment(id).await?.limits)?)
    } else {
        None
    };
    let patch = DeploymentPatch {
        name: body.name.as_deref().map(check_name).transpose()?,
        access: body.access.map(Into::into),
        strategy: body.strategy.map(Into::into),
        blocked: body.blocked,
        limits,
    };
    let updated = state
        .store
        .update_deployment(id, patch)
        .await
        .map_err(name_taken)?;
    state.catalog_changed();
    Ok(Json(updated.into()))
}

/// Deletes a deployment and its links (admins).
#[utoipa::path(
    delete,
    path = "/admin/deployment/{id}",
    tag = "deployments",
    params(("id" = Uuid, Path, description = "Deployment id")),
    responses(
        (status = 200, body = DeleteResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn delete_deployment(
    _: AdminOnly,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<DeleteResponse>> {
    let id = DeploymentId(id);
    state.store.delete_deployment(id).await?;
    state.catalog_changed();
    Ok(DeleteResponse::new(format!("deployment {id} deleted")))
}
