//! # llmur-core
//!
//! The llmur LLM proxy as a composable [`tower::Service`]: an OpenAI-compatible `/v1` API
//! (`POST /v1/chat/completions`, streaming or not, `POST /v1/embeddings`, `GET /v1/models`)
//! in front of OpenAI, Azure OpenAI, or any provider you add.
//!
//! ## Stack order
//!
//! A request to [`Proxy`] passes these stages, in this order; each can answer early, and
//! every early answer is an OpenAI-shaped JSON error made in one place
//! ([`Error::to_response`]), so the service's error type is `Infallible`:
//!
//! 1. **request id** — `x-request-id` accepted (1–128 visible ASCII chars) or generated;
//!    returned on every response.
//! 2. **route** — path and method (404 `unknown_url`, 405).
//! 3. **authenticate** — `Authorization: Bearer <virtual key>`, looked up by keyed hash in
//!    the [`Catalog`] (401 missing, unknown or blocked).
//! 4. **read** — the body, up to the size limit (413).
//! 5. **parse** — once, into [`RequestBody`]; unknown fields are kept verbatim (400 on
//!    malformed JSON or a missing `model`).
//! 6. **resolve** — `model` names a deployment the key may use (404 `model_not_found`).
//! 7. **forward** — the deployment's connections in round-robin order; the provider codec
//!    addresses and authenticates; the call goes out on hyper's pooled client over rustls
//!    (HTTP/2 by ALPN; reqwest when the environment names a proxy or the embedder gives a
//!    client, [`ProxyBuilder::http_client`]); the next connection is tried only when one
//!    could not be reached (502 when none could, 504 on timeout). Upstream error bodies
//!    pass through with their status.
//! 8. **relay** — a complete answer gets its `model` set to the deployment name; a stream is
//!    relayed event by event by a body wrapper that reads usage, drops the usage chunk the
//!    client did not ask for, and emits the attempt's [`RequestLog`] at end of stream or
//!    when the client hangs up.
//!
//! ## Plugins
//!
//! [`Catalog`] (keys and routes, from memory), [`Provider`] (a pure codec),
//! [`UsageSink`] (one record per attempt) and [`Clock`] are traits used as `Arc<dyn _>`;
//! each has an in-memory implementation here.
//!
//! ## Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use llmur_core::{
//!     Access, Connection, ConnectionId, Deployment, DeploymentId, KeyHasher, MemoryCatalog,
//!     OpenAi, ProjectId, Proxy, Snapshot, Strategy, VirtualKey, VirtualKeyId,
//!     WeightedConnection,
//! };
//! use secrecy::SecretString;
//!
//! let hasher = KeyHasher::new(&SecretString::from("application secret"));
//! let key = VirtualKey {
//!     id: VirtualKeyId::new_random(),
//!     project_id: ProjectId::new_random(),
//!     alias: "sk-demo".into(),
//!     blocked: false,
//!     limits: None,
//!     project_limits: None,
//! };
//! let connection = Connection::new(
//!     ConnectionId::new_random(),
//!     Arc::new(OpenAi),
//!     "https://api.openai.com",
//!     "gpt-4o-mini",
//!     SecretString::from("sk-provider-key"),
//! );
//! let deployment = Deployment::new(
//!     DeploymentId::new_random(),
//!     "chat",
//!     Access::Private,
//!     Strategy::RoundRobin,
//!     vec![WeightedConnection { connection: Arc::new(connection), weight: 1 }],
//! );
//! let mut snapshot = Snapshot::new();
//! snapshot.link(key.id, deployment.id);
//! snapshot.insert_key(hasher.hash("sk-demo-virtual-key"), key);
//! snapshot.insert_deployment(deployment);
//! let proxy = Proxy::builder(Arc::new(MemoryCatalog::new(hasher, snapshot)))
//!     .build()
//!     .expect("client builds");
//! // `proxy` is a tower::Service<http::Request<B>>; `proxy.layer()` mounts it in front of
//! // another service.
//! # let _ = proxy;
//! ```

#![warn(missing_docs)]

mod catalog;
pub mod counter;
mod error;
pub mod limits;
pub mod metrics;
mod model;
pub mod pricing;
pub mod provider;
mod proxy;
mod request;
pub mod sse;
pub mod store;
mod usage;
pub mod window;

pub use catalog::{Catalog, KeyHash, KeyHasher, MemoryCatalog, Snapshot, model_not_found};
pub use error::{Error, ErrorKind, Origin, openai_type_for};
pub use model::{
    Access, Connection, ConnectionId, Deployment, DeploymentId, ProjectId, Strategy, VirtualKey,
    VirtualKeyId, WeightedConnection,
};
pub use provider::{AzureOpenAi, OpenAi, Provider};
pub use proxy::headers;
pub use proxy::{
    BoxError, DEFAULT_COMPLETION_TOKENS, DEFAULT_MAX_BODY_BYTES, Proxy, ProxyBody, ProxyBuilder,
    ProxyLayer, ProxyService,
};
pub use request::RequestBody;
pub use store::{MemoryStore, Store, StoreError, StoreErrorKind, StoreResult};
pub use usage::{
    Clock, Endpoint, ManualClock, MemoryUsageSink, RequestLog, SystemClock, Usage, UsageSink,
    UsageSource,
};
