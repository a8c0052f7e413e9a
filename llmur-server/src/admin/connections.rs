//! `/admin/connection`: provider connections (an endpoint, an upstream model, a provider
//! key). App admins and the master key only; everyone else gets 403 on every verb.
//!
//! Owns: create (tagged by `provider`), list (with `total`), get, PATCH (including key
//! rotation) and delete. The provider `api_key` is encrypted with the connection's id as
//! associated data and is never answered: no response type here has a field for it. The
//! endpoint passes `check_endpoint` (422 with the reason). Must not touch: links.

use axum::Json;
use axum::extract::State;
use llmur_core::ConnectionId;
use llmur_core::store::types::{ConnectionPatch, Millis, ProviderKind, StoredConnection};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Shared;
use super::auth::AdminOnly;
use super::error::{ApiError, ApiResult, DeleteResponse, ErrorBody};
use super::extract::{IdPath, JsonBody, Query, double_option};
use super::limits::{BudgetLimits, LimitsOut, RequestLimits, TokenLimits, limits_in};
use super::pagination::{PageQuery, next_cursor};
use super::time::rfc3339;
use super::wire::{Price, Provider};
use crate::security::check_endpoint;

/// A connection as answered (never its provider key).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionOut {
    /// Id.
    pub id: Uuid,
    /// Provider.
    pub provider: Provider,
    /// Base URL.
    pub api_endpoint: String,
    /// Upstream model (`openai/v1` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Azure deployment name (`azure/openai` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
    /// Azure `api-version` (`azure/openai` only; may be `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub api_version: Option<Option<String>>,
    /// USD per 1M tokens, overriding the default price table.
    pub price: Option<Price>,
    /// Limits.
    #[serde(flatten)]
    pub limits: LimitsOut,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

impl From<StoredConnection> for ConnectionOut {
    fn from(c: StoredConnection) -> Self {
        let azure = c.provider == ProviderKind::AzureOpenAi;
        Self {
            id: c.id.0,
            provider: c.provider.into(),
            api_endpoint: c.api_endpoint,
            model: (!azure).then(|| c.model.clone()),
            deployment_name: azure.then_some(c.model),
            api_version: azure.then_some(c.api_version),
            price: c.price.map(Into::into),
            limits: c.limits.into(),
            created_at: rfc3339(c.created_at),
        }
    }
}

/// A new connection, tagged by `provider`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "provider")]
pub enum CreateConnection {
    /// OpenAI (or a compatible API).
    #[serde(rename = "openai/v1")]
    OpenAi(CreateOpenAi),
    /// Azure OpenAI.
    #[serde(rename = "azure/openai")]
    AzureOpenAi(CreateAzure),
}

/// An `openai/v1` connection.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOpenAi {
    /// Upstream model.
    pub model: String,
    /// Base URL, e.g. `https://api.openai.com`.
    pub api_endpoint: String,
    /// Provider key (write-only: never answered).
    #[schema(value_type = String, format = Password)]
    pub api_key: SecretString,
    /// USD per 1M tokens.
    pub price: Option<Price>,
    /// Requests per window.
    pub request_limits: Option<RequestLimits>,
    /// Tokens per window.
    pub token_limits: Option<TokenLimits>,
    /// USD per window.
    pub budget_limits: Option<BudgetLimits>,
}

/// An `azure/openai` connection.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAzure {
    /// The Azure deployment.
    pub deployment_name: String,
    /// Base URL, e.g. `https://my-resource.openai.azure.com`.
    pub api_endpoint: String,
    /// Provider key (write-only: never answered).
    #[schema(value_type = String, format = Password)]
    pub api_key: SecretString,
    /// Azure `api-version`, e.g. `2024-10-21`; absent: the v1 API.
    pub api_version: Option<String>,
    /// USD per 1M tokens.
    pub price: Option<Price>,
    /// Requests per window.
    pub request_limits: Option<RequestLimits>,
    /// Tokens per window.
    pub token_limits: Option<TokenLimits>,
    /// USD per window.
    pub budget_limits: Option<BudgetLimits>,
}

/// Changes to a connection; absent fields stay, `null` clears `api_version` and `price`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchConnection {
    /// New base URL.
    pub api_endpoint: Option<String>,
    /// New upstream model (`openai/v1`).
    pub model: Option<String>,
    /// New Azure deployment (`azure/openai`).
    pub deployment_name: Option<String>,
    /// New `api-version` (`azure/openai`); `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub api_version: Option<Option<String>>,
    /// Rotates the provider key.
    #[schema(value_type = Option<String>, format = Password)]
    pub api_key: Option<SecretString>,
    /// New price; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Price>)]
    pub price: Option<Option<Price>>,
    /// Requests per window.
    pub request_limits: Option<RequestLimits>,
    /// Tokens per window.
    pub token_limits: Option<TokenLimits>,
    /// USD per window.
    pub budget_limits: Option<BudgetLimits>,
}

/// A page of connections.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    /// The connections, by id.
    pub connections: Vec<ConnectionOut>,
    /// How many connections exist in all.
    pub total: u64,
    /// Pass as `?cursor=` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

fn non_empty(field: &str, value: &str) -> ApiResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::invalid(format!("{field} must not be empty")));
    }
    Ok(value.to_owned())
}

fn endpoint(state: &Shared, value: &str) -> ApiResult<String> {
    let value = non_empty("api_endpoint", value)?;
    check_endpoint(&value, state.refuse_private_endpoints)
        .map_err(|refused| ApiError::invalid(refused.0))?;
    Ok(value)
}

fn check_api_key(value: &SecretString) -> ApiResult<()> {
    if value.expose_secret().trim().is_empty() {
        return Err(ApiError::invalid("api_key must not be empty"));
    }
    Ok(())
}

/// Creates a connection.
#[utoipa::path(
    post,
    path = "/admin/connection",
    tag = "connections",
    request_body = CreateConnection,
    responses(
        (status = 200, body = ConnectionOut),
        (status = 403, body = ErrorBody),
        (status = 422, description = "Unknown provider, missing field, refused endpoint", body = ErrorBody),
    )
)]
pub(crate) async fn create_connection(
    _: AdminOnly,
    State(state): State<Shared>,
    JsonBody(body): JsonBody<CreateConnection>,
) -> ApiResult<Json<ConnectionOut>> {
    let id = ConnectionId(Uuid::now_v7());
    let (provider, model, api_endpoint, key, api_version, price, limits) = match body {
        CreateConnection::OpenAi(b) => (
            ProviderKind::OpenAi,
            non_empty("model", &b.model)?,
            endpoint(&state, &b.api_endpoint)?,
            b.api_key.clone(),
            None,
            b.price,
            limits_in!(b),
        ),
        CreateConnection::AzureOpenAi(b) => (
            ProviderKind::AzureOpenAi,
            non_empty("deployment_name", &b.deployment_name)?,
            endpoint(&state, &b.api_endpoint)?,
            b.api_key.clone(),
            b.api_version
                .as_deref()
                .map(|v| non_empty("api_version", v))
                .transpose()?,
            b.price,
            limits_in!(b),
        ),
    };
    check_api_key(&key)?;
    let connection = StoredConnection {
        id,
        provider,
        api_endpoint,
        model,
        api_version,
        api_key: state.secrets.encrypt(id, &key),
        price: price.map(Price::to_core).transpose()?,
        limits: limits.to_core()?,
        created_at: Millis::now(),
    };
    let created = state.store.create_connection(connection).await?;
    state.catalog_changed();
    Ok(Json(created.into()))
}

/// Lists connections.
#[utoipa::path(
    get,
    path = "/admin/connection",
    tag = "connections",
    params(PageQuery),
    responses((status = 200, body = ConnectionList), (status = 403, body = ErrorBody))
)]
pub(crate) async fn list_connections(
    _: AdminOnly,
    State(state): State<Shared>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<ConnectionList>> {
    let page = state.store.list_connections(q.page()?).await?;
    let total = state.store.count_connections().await?;
    Ok(Json(ConnectionList {
        connections: page.items.into_iter().map(Into::into).collect(),
        total,
        next_cursor: next_cursor(page.next),
    }))
}

/// A connection.
#[utoipa::path(
    get,
    path = "/admin/connection/{id}",
    tag = "connections",
    params(("id" = Uuid, Path, description = "Connection id")),
    responses(
        (status = 200, body = ConnectionOut),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn get_connection(
    _: AdminOnly,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<ConnectionOut>> {
    Ok(Json(
        state.store.get_connection(ConnectionId(id)).await?.into(),
    ))
}

/// Changes a connection; `api_key` rotates the provider key.
#[utoipa::path(
    patch,
    path = "/admin/connection/{id}",
    tag = "connections",
    params(("id" = Uuid, Path, description = "Connection id")),
    request_body = PatchConnection,
    responses(
        (status = 200, body = ConnectionOut),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub(crate) async fn patch_connection(
    _: AdminOnly,
    State(state): State<Shared>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<PatchConnection>,
) -> ApiResult<Json<ConnectionOut>> {
    let id = ConnectionId(id);
    let current = state.store.get_connection(id).await?;
    let azure = current.provider == ProviderKind::AzureOpenAi;
    if azure && body.model.is_some() {
        return Err(ApiError::invalid(
            "an azure/openai connection has deployment_name, not model",
        ));
    }
    if !azure && (body.deployment_name.is_some() || body.api_version.is_some()) {
        return Err(ApiError::invalid(
            "an openai/v1 connection has model, not deployment_name or api_version",
        ));
    }
    let model = match (&body.model, &body.deployment_name) {
        (Some(m), _) => Some(non_empty("model", m)?),
        (_, Some(d)) => Some(non_empty("deployment_name", d)?),
        _ => None,
    };
    let api_key = match &body.api_key {
        Some(k) => {
            check_api_key(k)?;
            Some(state.secrets.encrypt(id, k))
        }
        None => None,
    };
    let sent = limits_in!(body);
    let patch = ConnectionPatch {
        api_endpoint: body
            .api_endpoint
            .as_deref()
            .map(|e| endpoint(&state, e))
            .transpose()?,
        model,
        api_version: match body.api_version {
            Some(Some(v)) => Some(Some(non_empty("api_version", &v)?)),
            other => other,
        },
        api_key,
        price: match body.price {
            Some(Some(p)) => Some(Some(p.to_core()?)),
            Some(None) => Some(None),
            None => None,
        },
        limits: if sent.is_present() {
            Some(sent.merge_into(current.limits)?)
        } else {
            None
        },
    };
    let updated = state.store.update_connection(id, patch).await?;
    state.catalog_changed();
    Ok(Json(updated.into()))
}

/// Deletes a connection and its links.
#[utoipa::path(
    delete,
    path = "/admin/connection/{id}",
    tag = "connections",
    params(("id" = Uuid, Path, description = "Connection id")),
    responses(
        (status = 200, body = DeleteResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn delete_connection(
    _: AdminOnly,
    State(state): State<Shared>,
    IdPath(id): IdPath,
) -> ApiResult<Json<DeleteResponse>> {
    let id = ConnectionId(id);
    state.store.delete_connection(id).await?;
    state.catalog_changed();
    Ok(DeleteResponse::new(format!("connection {id} deleted")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_bodies() {
        let ok: Result<CreateConnection, _> = serde_json::from_str(
            r#"{"provider": "openai/v1", "model": "m", "api_endpoint": "https://x", "api_key": "k"}"#,
        );
        assert!(matches!(ok, Ok(CreateConnection::OpenAi(_))), "{ok:?}");
        let azure: Result<CreateConnection, _> = serde_json::from_str(
            r#"{"provider": "azure/openai", "deployment_name": "d", "api_endpoint": "https://x", "api_key": "k"}"#,
        );
        assert!(
            matches!(azure, Ok(CreateConnection::AzureOpenAi(_))),
            "{azure:?}"
        );
        for bad in [
            r#"{"provider": "nope", "model": "m", "api_endpoint": "https://x", "api_key": "k"}"#,
            r#"{"model": "m", "api_endpoint": "https://x", "api_key": "k"}"#,
            r#"{"provider": "openai/v1", "api_endpoint": "https://x", "api_key": "k"}"#,
            r#"{"provider": "openai/v1", "model": "m", "api_endpoint": "https://x", "api_key": "k", "x": 1}"#,
            r#"{"provider": "azure/openai", "model": "m", "api_endpoint": "https://x", "api_key": "k"}"#,
        ] {
            assert!(
                serde_json::from_str::<CreateConnection>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
