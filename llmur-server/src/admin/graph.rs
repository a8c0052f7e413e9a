//! `GET /admin/graph/{key}/{deployment}`: what a request with this key to this deployment
//! would go through — the key, its project, the deployment, the deployment's connections —
//! each with its limits and current usage.
//!
//! Owns: the [`UsageView`] extension point (where usage numbers come from), its no-op
//! [`NoUsage`], and the handler. Admin credentials only; never a secret: no provider key,
//! no virtual key (a key given in the path is only hashed and looked up).

use axum::Json;
use axum::extract::{Path, State};
use llmur_core::counter::{Bucket, Level, Metric, UsageCounter};
use llmur_core::store::types::StoredDeployment;
use llmur_core::window::Window;
use llmur_core::{Access, DeploymentId, StoreErrorKind, VirtualKeyId};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Shared;
use super::auth::AdminOnly;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::limits::LimitsOut;
use super::pagination::collect_all;
use super::wire::Provider;

/// Which entity a usage figure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageLevel {
    /// A virtual key.
    VirtualKey,
    /// A project.
    Project,
    /// A deployment.
    Deployment,
    /// A connection.
    Connection,
}

/// Usage in the current calendar windows (UTC); each array is minute, hour, day, ISO week,
/// month.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowUsage {
    /// Requests.
    pub requests: [u64; 5],
    /// Tokens (input + output).
    pub tokens: [u64; 5],
    /// Cost in USD.
    pub cost_usd: [f64; 5],
}

/// Where `/admin/graph` reads usage from ([`CounterUsage`]: the rate limiter's counters).
/// Implemented for closures `Fn(UsageLevel, Uuid) -> WindowUsage`.
#[async_trait::async_trait]
pub trait UsageView: Send + Sync {
    /// The usage of entity `id` at `level` in the current windows.
    async fn usage(&self, level: UsageLevel, id: Uuid) -> WindowUsage;
}

/// Usage is not tracked: every figure is zero.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUsage;

#[async_trait::async_trait]
impl UsageView for NoUsage {
    async fn usage(&self, _level: UsageLevel, _id: Uuid) -> WindowUsage {
        WindowUsage::default()
    }
}

#[async_trait::async_trait]
impl<F> UsageView for F
where
    F: Fn(UsageLevel, Uuid) -> WindowUsage + Send + Sync,
{
    async fn usage(&self, level: UsageLevel, id: Uuid) -> WindowUsage {
        self(level, id)
    }
}

/// Usage read from the proxy's [`UsageCounter`]: every bucket, limited or not, in the
/// windows containing now. Buckets without a limit are not counted by the proxy and read
/// 0; a counter that cannot be reached reads 0 too (the failure is logged by the counter).
#[derive(Debug, Clone)]
pub struct CounterUsage {
    /// The counter the proxy reserves on.
    pub counter: std::sync::Arc<dyn UsageCounter>,
    /// The clock windows are read at.
    pub clock: std::sync::Arc<dyn llmur_core::Clock>,
}

#[async_trait::async_trait]
impl UsageView for CounterUsage {
    async fn usage(&self, level: UsageLevel, id: Uuid) -> WindowUsage {
        let now_ms = llmur_core::store::types::Millis::from_system(self.clock.now()).0;
        let level = match level {
            UsageLevel::VirtualKey => Level::VirtualKey,
            UsageLevel::Project => Level::Project,
            UsageLevel::Deployment => Level::Deployment,
            UsageLevel::Connection => Level::Connection,
        };
        let mut out = WindowUsage::default();
        for (i, window) in Window::ALL.into_iter().enumerate() {
            for metric in [Metric::Requests, Metric::Tokens, Metric::CostMicros] {
                let bucket = Bucket {
                    level,
                    id,
                    metric,
                    window,
                };
                let used = self.counter.usage(bucket, now_ms).await.unwrap_or(0);
                match metric {
                    Metric::Requests => out.requests[i] = used,
                    Metric::Tokens => out.tokens[i] = used,
                    // Micro-USD to USD for display.
                    Metric::CostMicros => out.cost_usd[i] = used as f64 / 1_000_000.0,
                }
            }
        }
        out
    }
}

/// Counts per window.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct CountWindows {
    /// Current minute.
    pub minute: u64,
    /// Current hour.
    pub hour: u64,
    /// Current day.
    pub day: u64,
    /// Current ISO week.
    pub week: u64,
    /// Current month.
    pub month: u64,
}

/// USD per window.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct CostWindows {
    /// Current minute.
    pub minute: f64,
    /// Current hour.
    pub hour: f64,
    /// Current day.
    pub day: f64,
    /// Current ISO week.
    pub week: f64,
    /// Current month.
    pub month: f64,
}

/// Usage of one entity in the current windows.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct UsageOut {
    /// Requests.
    pub requests: CountWindows,
    /// Tokens.
    pub tokens: CountWindows,
    /// Cost in USD.
    pub budget: CostWindows,
}

impl From<WindowUsage> for UsageOut {
    fn from(u: WindowUsage) -> Self {
        let counts = |a: [u64; 5]| CountWindows {
            minute: a[0],
            hour: a[1],
            day: a[2],
            week: a[3],
            month: a[4],
        };
        let c = u.cost_usd;
        Self {
            requests: counts(u.requests),
            tokens: counts(u.tokens),
            budget: CostWindows {
                minute: c[0],
                hour: c[1],
                day: c[2],
                week: c[3],
                month: c[4],
            },
        }
    }
}

/// The virtual key in a graph (its alias, never the key).
#[derive(Debug, Serialize, ToSchema)]
pub struct GraphKey {
    /// Id.
    pub id: Uuid,
    /// Alias (a masked form by default).
    pub alias: String,
    /// Whether the key is blocked.
    pub blocked: bool,
    /// Limits.
    pub limits: LimitsOut,
    /// Current usage.
    pub usage: UsageOut,
}

/// A project or deployment in a graph.
#[derive(Debug, Serialize, ToSchema)]
pub struct GraphNamed {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Limits.
    pub limits: LimitsOut,
    /// Current usage.
    pub usage: UsageOut,
}

/// A connection in a graph (never its provider key).
#[derive(Debug, Serialize, ToSchema)]
pub struct GraphConnection {
    /// Id.
    pub id: Uuid,
    /// Provider.
    pub provider: Provider,
    /// Upstream model (OpenAI) or Azure deployment name.
    pub name: String,
    /// Base URL.
    pub api_endpoint: String,
    /// The link's weight.
    pub weight: u32,
    /// Limits.
    pub limits: LimitsOut,
    /// Current usage.
    pub usage: UsageOut,
}

/// Everything between a key and the upstreams of a deployment.
#[derive(Debug, Serialize, ToSchema)]
pub struct Graph {
    /// The key.
    pub virtual_key: GraphKey,
    /// The deployment.
    pub deployment: GraphNamed,
    /// The key's project.
    pub project: GraphNamed,
    /// The deployment's connections.
    pub connections: Vec<GraphConnection>,
    /// Whether the deployment's access lets this key use it (public, or linked to the key).
    pub key_may_use: bool,
}

/// The graph of a key and a deployment.
#[utoipa::path(
    get,
    path = "/admin/graph/{key}/{deployment}",
    tag = "graph",
    params(
        ("key" = String, Path, description = "A virtual key id, or the virtual key itself"),
        ("deployment" = String, Path, description = "A deployment id or name"),
    ),
    responses(
        (status = 200, body = Graph),
        (status = 401, description = "Unknown key or bad credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "Unknown deployment", body = ErrorBody),
        (status = 503, description = "The deployment has no connection", body = ErrorBody),
    )
)]
pub(crate) async fn graph(
    _: AdminOnly,
    State(state): State<Shared>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> ApiResult<Json<Graph>> {
    let Path((key, deployment)) = path.map_err(|_| ApiError::not_found("deployment"))?;
    let store = &state.store;
    let unknown_key = |e: llmur_core::StoreError| {
        if e.kind() == StoreErrorKind::NotFound {
            ApiError::new(http::StatusCode::UNAUTHORIZED, "unknown virtual key")
        } else {
            e.into()
        }
    };
    let vk = match Uuid::parse_str(&key) {
        Ok(id) => store.get_virtual_key(VirtualKeyId(id)).await,
        Err(_) => {
            store
                .get_virtual_key_by_hash(&state.secrets.hash_virtual_key(&key))
                .await
        }
    }
    .map_err(unknown_key)?;
    let dep = find_deployment(&state, &deployment).await?;
    let project = store.get_project(vk.project_id).await?;
    let links = collect_all(|p| store.list_connection_deployments(None, Some(dep.id), p)).await?;
    if links.is_empty() {
        return Err(ApiError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            format!("deployment {} has no connection", dep.name),
        ));
    }
    let usage = async |level, id| UsageOut::from(state.usage.usage(level, id).await);
    let mut connections = Vec::with_capacity(links.len());
    for link in links {
        let c = store.get_connection(link.connection_id).await?;
        connections.push(GraphConnection {
            id: c.id.0,
            provider: c.provider.into(),
            name: c.model,
            api_endpoint: c.api_endpoint,
            weight: link.weight,
            limits: c.limits.into(),
            usage: usage(UsageLevel::Connection, c.id.0).await,
        });
    }
    let key_may_use = dep.access == Access::Public
        || !store
            .list_virtual_key_deployments(Some(vk.id), Some(dep.id), Default::default())
            .await?
            .items
            .is_empty();
    Ok(Json(Graph {
        virtual_key: GraphKey {
            id: vk.id.0,
            alias: vk.alias,
            blocked: vk.blocked,
            limits: vk.limits.into(),
            usage: usage(UsageLevel::VirtualKey, vk.id.0).await,
        },
        deployment: GraphNamed {
            id: dep.id.0,
            name: dep.name,
            limits: dep.limits.into(),
            usage: usage(UsageLevel::Deployment, dep.id.0).await,
        },
        project: GraphNamed {
            id: project.id.0,
            name: project.name,
            limits: project.limits.into(),
            usage: usage(UsageLevel::Project, project.id.0).await,
        },
        connections,
        key_may_use,
    }))
}

/// A deployment by id, or else by name; 404 when neither names one.
async fn find_deployment(state: &Shared, id_or_name: &str) -> ApiResult<StoredDeployment> {
    if let Ok(id) = Uuid::parse_str(id_or_name) {
        match state.store.get_deployment(DeploymentId(id)).await {
            Ok(d) => return Ok(d),
            Err(e) if e.kind() == StoreErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    state
        .store
        .get_deployment_by_name(id_or_name)
        .await
        .map_err(|e| match e.kind() {
            StoreErrorKind::NotFound => ApiError::not_found(format!("deployment {id_or_name}")),
            _ => e.into(),
        })
}
