//! The admin API: users, sessions, projects, memberships, invites, connections,
//! deployments, virtual keys, their links and the route graph, under `/admin/*`, in the
//! resource model of `LLMUR-API.md` plus list/PATCH endpoints, invite redemption, logout
//! and an OpenAPI document.
//!
//! Owns: [`AdminState`], [`router`] and [`openapi_json`]; one module per resource, and
//! one place each for authentication and roles (`auth`), errors (`error`), limits
//! (`limits`) and pagination (`pagination`). Must not touch: the `/v1` proxy, `/health`
//! and fallbacks (the server merges this router with those), or storage details — it only
//! sees `Arc<dyn Store>`.
//!
//! Decisions worth knowing:
//! - **cannot read → 404, can read but not write → 403.** A project and everything in it
//!   (memberships, invites, keys, key links) is readable by its members of any role, app
//!   admins and the master key; outsiders get 404 for all of it.
//! - Connections and connection↔deployment links are for app admins and the master key
//!   only: everyone else gets 403 on every verb (checked before any lookup).
//! - `GET /admin/user/me`, `POST /admin/project-invite-code/redeem` and
//!   `DELETE /admin/session-token` need a session; the master key gets 400 there.
//! - After every successful write to connections, deployments, links, virtual keys and
//!   projects, [`AdminState::on_catalog_change`] is called.
//! - `GET /admin/openapi.json` needs no credentials.
//!
//! ```no_run
//! use std::sync::Arc;
//! use llmur_core::MemoryStore;
//! use llmur_server::admin::{AdminState, router};
//! use llmur_server::security::Secrets;
//! use secrecy::SecretString;
//!
//! let state = AdminState::new(
//!     Arc::new(MemoryStore::new()),
//!     Secrets::new(&SecretString::from("application secret")),
//!     Arc::from(vec![SecretString::from("master key")]),
//! );
//! let app: axum::Router = router(state); // merge with the proxy and /health
//! # let _ = app;
//! ```

mod auth;
mod connections;
mod deployments;
mod error;
mod extract;
pub mod graph;
mod invites;
mod key_links;
mod keys;
mod limits;
mod links;
mod memberships;
mod openapi;
mod pagination;
mod projects;
mod sessions;
mod time;
mod users;
mod wire;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use llmur_core::Store;
use secrecy::SecretString;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::security::Secrets;

pub use auth::{MASTER_KEY_HEADER, SESSION_HEADER};
pub use graph::{CounterUsage, NoUsage, UsageLevel, UsageView, WindowUsage};

/// Everything the admin handlers need. Cheap to clone (everything behind `Arc` or small).
#[derive(Clone)]
pub struct AdminState {
    /// Where everything is kept.
    pub store: Arc<dyn Store>,
    /// Hashing and encryption keys derived from the application secret.
    pub secrets: Secrets,
    /// The configured master keys (`X-LLMur-Key`); empty disables master access.
    pub master_keys: Arc<[SecretString]>,
    /// How long a new session lasts ([`AdminState::DEFAULT_SESSION_TTL`] by default).
    pub session_ttl: Duration,
    /// Refuse connection endpoints on loopback and private addresses (metadata and
    /// link-local addresses are always refused).
    pub refuse_private_endpoints: bool,
    /// Called after every successful write to connections, deployments, links, virtual
    /// keys or projects, so the proxy can refresh its in-memory catalog.
    pub on_catalog_change: Arc<dyn Fn() + Send + Sync>,
    /// Where `/admin/graph` reads usage from.
    pub usage: Arc<dyn UsageView>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("store", &self.store)
            .field("master_keys", &self.master_keys.len())
            .field("session_ttl", &self.session_ttl)
            .field("refuse_private_endpoints", &self.refuse_private_endpoints)
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// Sessions last 30 days unless configured otherwise.
    pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

    /// A state with the defaults: 30-day sessions, private endpoints allowed, no catalog
    /// callback, no usage figures.
    pub fn new(store: Arc<dyn Store>, secrets: Secrets, master_keys: Arc<[SecretString]>) -> Self {
        Self {
            store,
            secrets,
            master_keys,
            session_ttl: Self::DEFAULT_SESSION_TTL,
            refuse_private_endpoints: false,
            on_catalog_change: Arc::new(|| {}),
            usage: Arc::new(NoUsage),
        }
    }

    fn catalog_changed(&self) {
        (self.on_catalog_change)();
    }
}

/// The state handlers see.
type Shared = Arc<AdminState>;

/// Every route, each registered together with its OpenAPI operation.
fn api() -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(users::create_user, users::list_users))
        .routes(routes!(users::me))
        .routes(routes!(
            users::get_user,
            users::patch_user,
            users::delete_user
        ))
        .routes(routes!(sessions::login, sessions::logout))
        .routes(routes!(sessions::revoke_session))
        .routes(routes!(projects::create_project, projects::list_projects))
        .routes(routes!(
            projects::get_project,
            projects::patch_project,
            projects::delete_project
        ))
        .routes(routes!(
            memberships::create_membership,
            memberships::list_memberships
        ))
        .routes(routes!(
            memberships::get_membership,
            memberships::patch_membership,
            memberships::delete_membership
        ))
        .routes(routes!(invites::create_invite, invites::list_invites))
        .routes(routes!(invites::redeem_invite))
        .routes(routes!(invites::get_invite, invites::delete_invite))
        .routes(routes!(
            connections::create_connection,
            connections::list_connections
        ))
        .routes(routes!(
            connections::get_connection,
            connections::patch_connection,
            connections::delete_connection
        ))
        .routes(routes!(
            deployments::create_deployment,
            deployments::list_deployments
        ))
        .routes(routes!(
            deployments::get_deployment,
            deployments::patch_deployment,
            deployments::delete_deployment
        ))
        .routes(routes!(links::create_link, links::list_links))
        .routes(routes!(
            links::get_link,
            links::patch_link,
            links::delete_link
        ))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::get_key, keys::patch_key, keys::delete_key))
        .routes(routes!(
            key_links::create_key_link,
            key_links::list_key_links
        ))
        .routes(routes!(key_links::get_key_link, key_links::delete_key_link))
        .routes(routes!(graph::graph))
        .routes(routes!(openapi::openapi_document))
}

/// All `/admin/*` routes, including `GET /admin/openapi.json`. No `/health` and no
/// fallback: merge this router with the proxy's.
pub fn router(state: AdminState) -> axum::Router {
    let (router, _) = api().split_for_parts();
    router.with_state(Arc::new(state))
}

/// The OpenAPI 3 document of the admin API, as pretty-printed JSON.
pub fn openapi_json() -> String {
    document().to_owned()
}

fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        api().into_openapi().to_pretty_json().unwrap_or_else(|e| {
            format!("{{\"error\": \"cannot render the OpenAPI document: {e}\"}}")
        })
    })
}
