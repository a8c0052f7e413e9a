//! The OpenAPI 3 description of the admin API, generated from the handlers and their
//! types (`utoipa`), so it cannot drift from the routes: the router and the document are
//! built from the same `routes!` list in [`super::api`].
//!
//! Owns: the document's header (title, security schemes, tags) and
//! `GET /admin/openapi.json`. Must not touch: the routes themselves.

use axum::response::IntoResponse;
use http::header;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document's header; paths and schemas come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "llmur admin API",
        description = "Users, sessions, projects, memberships, invites, connections, \
            deployments, virtual keys and their links. Authenticate with `X-LLMur-Key: \
            <master key>` or `X-LLMur-Session: <token>`. Errors are `{\"error\": \"...\"}`. \
            A caller who may not read a resource gets 404; one who may read but not change \
            it gets 403."
    ),
    modifiers(&SecuritySchemes),
    security(("master_key" = []), ("session" = [])),
    tags(
        (name = "users", description = "User accounts"),
        (name = "sessions", description = "Sign-in sessions"),
        (name = "projects", description = "Projects"),
        (name = "memberships", description = "Users' roles in projects"),
        (name = "invites", description = "Project invite codes"),
        (name = "connections", description = "Provider connections (admins only)"),
        (name = "deployments", description = "Deployments (the `model` clients ask for)"),
        (name = "links", description = "Connection↔deployment and key↔deployment links"),
        (name = "virtual-keys", description = "Virtual keys"),
        (name = "graph", description = "A key's route to a deployment, with usage"),
        (name = "meta", description = "This document"),
    )
)]
pub(crate) struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "master_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-LLMur-Key",
                "A master key from the server configuration: full admin",
            ))),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-LLMur-Session",
                "A session token from POST /admin/session-token",
            ))),
        );
    }
}

/// This document. Needs no credentials.
#[utoipa::path(
    get,
    path = "/admin/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json"))
)]
pub(crate) async fn openapi_document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::document(),
    )
}
