//! The domain model the proxy reads per request: virtual keys, deployments, connections.
//!
//! Owns: newtype ids and the immutable, `Arc`-shared snapshots the [`Catalog`](crate::Catalog)
//! hands out. Must not touch: storage or I/O; these are plain values.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::limits::LimitSet;
use crate::provider::Provider;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random id.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// Identifies a virtual key.
    VirtualKeyId
);
uuid_id!(
    /// Identifies a project.
    ProjectId
);
uuid_id!(
    /// Identifies a deployment.
    DeploymentId
);
uuid_id!(
    /// Identifies a connection to a provider.
    ConnectionId
);

/// A virtual API key as the proxy sees it (never the secret itself).
#[derive(Debug, Clone)]
pub struct VirtualKey {
    /// The key's id.
    pub id: VirtualKeyId,
    /// The project the key belongs to.
    pub project_id: ProjectId,
    /// A human-readable alias (a masked form of the key by default).
    pub alias: String,
    /// A blocked key is refused with 401.
    pub blocked: bool,
    /// The key's own limits (`None`: unlimited).
    pub limits: Option<Arc<LimitSet>>,
    /// The limits of the key's project, shared by all its keys (`None`: unlimited).
    pub project_limits: Option<Arc<LimitSet>>,
}

/// Who may use a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Only keys linked to the deployment.
    #[default]
    Private,
    /// Any valid key.
    Public,
}

/// How a deployment spreads requests over its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Each connection in turn.
    #[default]
    RoundRobin,
    /// In turn, proportionally to the link weights.
    WeightedRoundRobin,
    /// The connection with the fewest requests in flight.
    LeastConnections,
    /// Fewest in flight relative to weight.
    WeightedLeastConnections,
}

/// A named model that clients ask for (`"model": "<deployment name>"`), routed over
/// one or more connections.
#[derive(Debug)]
pub struct Deployment {
    /// The deployment's id.
    pub id: DeploymentId,
    /// The name clients put in `model`; also the `model` of every answer.
    pub name: Arc<str>,
    /// Who may use it.
    pub access: Access,
    /// The balancing strategy (round robin for now; the others are accepted and
    /// treated as round robin until the balancing work lands).
    pub strategy: Strategy,
    /// The connections, with their weights.
    pub connections: Vec<WeightedConnection>,
    /// A blocked deployment refuses requests with 403.
    pub blocked: bool,
    /// The deployment's limits (`None`: unlimited).
    pub limits: Option<Arc<LimitSet>>,
    cursor: AtomicUsize,
}

impl Deployment {
    /// A deployment over the given connections.
    pub fn new(
        id: DeploymentId,
        name: impl Into<Arc<str>>,
        access: Access,
        strategy: Strategy,
        connections: Vec<WeightedConnection>,
    ) -> Self {
        Self {
            id,
            name: name.into(),
            access,
            strategy,
            connections,
            blocked: false,
            limits: None,
            cursor: AtomicUsize::new(0),
        }
    }

    /// Sets the deployment's limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Option<Arc<LimitSet>>) -> Self {
        self.limits = limits;
        self
    }

    /// Marks the deployment blocked (or not).
    #[must_use]
    pub fn with_blocked(mut self, blocked: bool) -> Self {
        self.blocked = blocked;
        self
    }

    /// The connections in the order to try them for one request: round robin, starting
    /// one further for every call. Weight 0 connections are skipped.
    pub fn candidates(&self) -> impl Iterator<Item = &Arc<Connection>> + '_ {
        let n = self.connections.len();
        let start = if n == 0 {
            0
        } else {
            self.cursor.fetch_add(1, Ordering::Relaxed) % n
        };
        (0..n)
            .map(move |i| &self.connections[(start + i) % n])
            .filter(|c| c.weight > 0)
            .map(|c| &c.connection)
    }
}

/// A connection linked to a deployment with a weight (0..=100).
#[derive(Debug, Clone)]
pub struct WeightedConnection {
    /// The connection.
    pub connection: Arc<Connection>,
    /// Its weight; 0 takes it out of rotation.
    pub weight: u32,
}

/// Where and how to reach one upstream model: a provider codec plus its settings.
#[derive(Clone)]
pub struct Connection {
    /// The connection's id.
    pub id: ConnectionId,
    /// The codec that speaks this upstream's wire format.
    pub provider: Arc<dyn Provider>,
    /// Base URL, without a trailing slash (`https://api.openai.com`,
    /// `https://NAME.openai.azure.com`).
    pub api_endpoint: String,
    /// The upstream model (OpenAI) or Azure deployment name (Azure OpenAI).
    pub model: String,
    /// The provider credential.
    pub api_key: SecretString,
    /// The Azure `api-version`, when the provider uses one.
    pub api_version: Option<String>,
    /// This connection's price; `None` uses the default table for its model.
    pub price: Option<crate::store::types::Price>,
    /// The connection's limits (`None`: unlimited).
    pub limits: Option<Arc<LimitSet>>,
}

impl Connection {
    /// A connection with the given provider codec and settings.
    pub fn new(
        id: ConnectionId,
        provider: Arc<dyn Provider>,
        api_endpoint: impl Into<String>,
        model: impl Into<String>,
        api_key: SecretString,
    ) -> Self {
        let mut api_endpoint = api_endpoint.into();
        while api_endpoint.ends_with('/') {
            api_endpoint.pop();
        }
        Self {
            id,
            provider,
            api_endpoint,
            model: model.into(),
            api_key,
            api_version: None,
            price: None,
            limits: None,
        }
    }

    /// Sets the connection's limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Option<Arc<LimitSet>>) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the `api-version` (Azure OpenAI).
    #[must_use]
    pub fn with_api_version(mut self, api_version: impl Into<String>) -> Self {
        self.api_version = Some(api_version.into());
        self
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("provider", &self.provider.name())
            .field("api_endpoint", &self.api_endpoint)
            .field("model", &self.model)
            .field("api_key", &"[REDACTED]")
            .field("api_version", &self.api_version)
            .field("price", &self.price)
            .field("limits", &self.limits)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::OpenAi;

    fn conn(model: &str) -> WeightedConnection {
        WeightedConnection {
            connection: Arc::new(Connection::new(
                ConnectionId::new_random(),
                Arc::new(OpenAi),
                "http://x/",
                model,
                SecretString::from("k"),
            )),
            weight: 1,
        }
    }

    #[test]
    fn candidates_rotate_and_cover_all() {
        let d = Deployment::new(
            DeploymentId::new_random(),
            "d",
            Access::Private,
            Strategy::RoundRobin,
            vec![conn("a"), conn("b"), conn("c")],
        );
        let firsts: Vec<String> = (0..3)
            .map(|_| {
                d.candidates()
                    .next()
                    .map(|c| c.model.clone())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(firsts, ["a", "b", "c"]);
        assert_eq!(d.candidates().count(), 3);
    }

    #[test]
    fn endpoint_loses_trailing_slash_and_key_is_redacted() {
        let c = conn("m");
        assert_eq!(c.connection.api_endpoint, "http://x");
        let dbg = format!("{:?}", c.connection);
        assert!(dbg.contains("[REDACTED]") && !dbg.contains("\"k\""));
    }
}
