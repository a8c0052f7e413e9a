//! Building the proxy's in-memory catalog from the connections, deployments, projects and
//! keys declared in the config file (config-as-code).
//!
//! Owns: validation of those declarations (unknown names, duplicates, weights, URLs) with
//! messages that name the entry. Ids are derived from names (UUID v5), so they are stable
//! across restarts and request logs stay comparable.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use llmur_core::limits::LimitSet;
use llmur_core::{
    AzureOpenAi, Connection, ConnectionId, Deployment, DeploymentId, KeyHasher, OpenAi, ProjectId,
    Snapshot, VirtualKey, VirtualKeyId, WeightedConnection,
};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::config::{Config, ConnectionConfig, DeploymentConnection};
use crate::error::ConfigError;

/// Counts of what a snapshot holds, for the start-up line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CatalogCounts {
    /// Connections.
    pub connections: usize,
    /// Deployments.
    pub deployments: usize,
    /// Projects.
    pub projects: usize,
    /// Virtual keys.
    pub virtual_keys: usize,
}

fn stable_id(kind: &str, name: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("llmur/{kind}/{name}").as_bytes(),
    )
}

/// The snapshot described by `config`, with keys hashed by `hasher`.
pub fn snapshot_from_config(
    config: &Config,
    hasher: &KeyHasher,
) -> Result<(Snapshot, CatalogCounts), ConfigError> {
    let mut snapshot = Snapshot::new();
    let mut connections: HashMap<&str, Arc<Connection>> = HashMap::new();
    for c in &config.connections {
        let connection = build_connection(c)?;
        if connections.insert(c.name(), Arc::new(connection)).is_some() {
            return Err(ConfigError::new(format!(
                "connections: the name `{}` is used twice",
                c.name()
            )));
        }
    }

    let mut deployments: HashMap<&str, DeploymentId> = HashMap::new();
    for d in &config.deployments {
        let mut linked = Vec::with_capacity(d.connections.len());
        for link in &d.connections {
            let (name, weight) = match link {
                DeploymentConnection::Name(name) => (name.as_str(), 1),
                DeploymentConnection::Weighted { connection, weight } => {
                    (connection.as_str(), *weight)
                }
            };
            if weight > 100 {
                return Err(ConfigError::new(format!(
                    "deployments.{}: weight {weight} of `{name}` is above 100",
                    d.name
                )));
            }
            let connection = connections.get(name).cloned().ok_or_else(|| {
                ConfigError::new(format!(
                    "deployments.{}: unknown connection `{name}`",
                    d.name
                ))
            })?;
            linked.push(WeightedConnection { connection, weight });
        }
        let id = DeploymentId(stable_id("deployment", &d.name));
        if deployments.insert(&d.name, id).is_some() {
            return Err(ConfigError::new(format!(
                "deployments: the name `{}` is used twice",
                d.name
            )));
        }
        snapshot.insert_deployment(
            Deployment::new(id, d.name.as_str(), d.access, d.strategy, linked)
                .with_limits(limit_set(&format!("deployments.{}", d.name), &d.limits)?),
        );
    }

    let mut projects: HashMap<&str, (ProjectId, Option<Arc<LimitSet>>)> = HashMap::new();
    for p in &config.projects {
        let entry = (
            ProjectId(stable_id("project", &p.name)),
            limit_set(&format!("projects.{}", p.name), &p.limits)?,
        );
        if projects.insert(&p.name, entry).is_some() {
            return Err(ConfigError::new(format!(
                "projects: the name `{}` is used twice",
                p.name
            )));
        }
    }

    let mut seen_keys = HashSet::new();
    for (i, k) in config.virtual_keys.iter().enumerate() {
        let field = format!("virtual_keys[{i}].key");
        let secret = k.key.resolve(&field)?;
        let key = secret.expose_secret();
        if key.len() < 8 {
            return Err(ConfigError::new(format!(
                "{field}: a virtual key must be at least 8 characters"
            )));
        }
        let hash = hasher.hash(key);
        if !seen_keys.insert(hash) {
            return Err(ConfigError::new(format!(
                "{field}: the same key is declared twice"
            )));
        }
        let (project_id, project_limits) =
            projects.get(k.project.as_str()).cloned().ok_or_else(|| {
                ConfigError::new(format!(
                    "virtual_keys[{i}]: unknown project `{}`",
                    k.project
                ))
            })?;
        let id = VirtualKeyId(stable_id("virtual_key", &hash.to_hex()));
        for name in &k.deployments {
            let deployment = deployments.get(name.as_str()).ok_or_else(|| {
                ConfigError::new(format!("virtual_keys[{i}]: unknown deployment `{name}`"))
            })?;
            snapshot.link(id, *deployment);
        }
        let alias = k.alias.clone().unwrap_or_else(|| mask(key));
        snapshot.insert_key(
            hash,
            VirtualKey {
                id,
                project_id,
                alias,
                blocked: k.blocked,
                limits: limit_set(&format!("virtual_keys[{i}]"), &k.limits)?,
                project_limits,
            },
        );
    }

    let counts = CatalogCounts {
        connections: connections.len(),
        deployments: deployments.len(),
        projects: projects.len(),
        virtual_keys: seen_keys.len(),
    };
    Ok((snapshot, counts))
}

/// `sk-ab...yz`: enough to recognise a key in logs, not enough to use it.
pub fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 10 {
        return "sk-...".to_owned();
    }
    let head: String = chars[..5].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}...{tail}")
}

fn build_connection(c: &ConnectionConfig) -> Result<Connection, ConfigError> {
    let field = format!("connections.{}", c.name());
    let id = ConnectionId(stable_id("connection", c.name()));
    let connection = match c {
        ConnectionConfig::OpenAi {
            api_endpoint,
            model,
            api_key,
            ..
        } => {
            check_endpoint(&field, api_endpoint)?;
            Connection::new(
                id,
                Arc::new(OpenAi),
                api_endpoint,
                model,
                api_key.resolve(&format!("{field}.api_key"))?,
            )
        }
        ConnectionConfig::Azure {
            api_endpoint,
            deployment_name,
            api_key,
            api_version,
            ..
        } => {
            check_endpoint(&field, api_endpoint)?;
            let mut connection = Connection::new(
                id,
                Arc::new(AzureOpenAi),
                api_endpoint,
                deployment_name,
                api_key.resolve(&format!("{field}.api_key"))?,
            );
            connection.api_version = api_version.clone();
            connection
        }
    };
    let mut connection = connection.with_limits(limit_set(&field, c.limits())?);
    connection.price = c.price();
    Ok(connection)
}

/// The entity's limits, refusing budgets that are negative or not numbers.
fn limit_set(
    field: &str,
    limits: &llmur_core::store::types::Limits,
) -> Result<Option<Arc<LimitSet>>, ConfigError> {
    let b = &limits.budget;
    let budgets = [b.per_minute, b.per_hour, b.per_day, b.per_week, b.per_month];
    if budgets
        .into_iter()
        .flatten()
        .any(|c| !c.is_finite() || c < 0.0)
    {
        return Err(ConfigError::new(format!(
            "{field}.limits.budget: budgets must be non-negative numbers (USD)"
        )));
    }
    Ok(LimitSet::from_limits(limits))
}

/// The same endpoint policy as the admin API (`security::check_endpoint`; private ranges
/// stay allowed here: a config file is written by the operator).
fn check_endpoint(field: &str, endpoint: &str) -> Result<(), ConfigError> {
    crate::security::check_endpoint(endpoint, false).map_err(|reason| {
        ConfigError::new(format!(
            "{field}.api_endpoint refused (http(s) URLs only, no metadata or link-local hosts): {reason}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn build(yaml: &str) -> Result<(Snapshot, CatalogCounts), ConfigError> {
        let config = Config::from_yaml(yaml)?;
        snapshot_from_config(&config, &KeyHasher::new(&SecretString::from("s")))
    }

    #[test]
    fn names_the_culprit() {
        let base = "connections:\n  - {provider: openai/v1, name: a, api_endpoint: 'http://127.0.0.1:1', model: m, api_key: k}\n";
        let cases = [
            (
                "deployments: [{name: d, connections: [b]}]",
                "unknown connection `b`",
            ),
            (
                "deployments: [{name: d, connections: [{connection: a, weight: 101}]}]",
                "above 100",
            ),
            (
                "virtual_keys: [{key: sk-12345678, project: nope}]",
                "unknown project `nope`",
            ),
            (
                "projects: [{name: p}]\nvirtual_keys: [{key: short, project: p}]",
                "at least 8",
            ),
            (
                "projects: [{name: p, limits: {budget: {per_day: -1.0}}}]",
                "projects.p.limits.budget",
            ),
        ];
        for (extra, want) in cases {
            let err = build(&format!("{base}{extra}"))
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(want)),
                "{err:?} !~ {want}"
            );
        }
        let err = build("connections:\n  - {provider: openai/v1, name: a, api_endpoint: 'ftp://x', model: m, api_key: k}")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("http(s)")));
    }

    #[test]
    fn builds_and_counts() {
        let yaml = "connections:\n  - {provider: openai/v1, name: a, api_endpoint: 'http://127.0.0.1:1', model: m, api_key: k}\ndeployments: [{name: d, connections: [a]}]\nprojects: [{name: p}]\nvirtual_keys: [{key: sk-12345678901, project: p, deployments: [d]}]";
        let counts = build(yaml).ok().map(|(_, c)| c);
        assert_eq!(
            counts,
            Some(CatalogCounts {
                connections: 1,
                deployments: 1,
                projects: 1,
                virtual_keys: 1
            })
        );
        assert_eq!(mask("sk-1234567890abcd"), "sk-12...abcd");
    }
}
