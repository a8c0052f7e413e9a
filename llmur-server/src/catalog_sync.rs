//! Keeping the proxy's in-memory catalog in step with the database.
//!
//! Owns: [`CatalogSync`]. The proxy never queries the database per request; it reads a
//! [`MemoryCatalog`] snapshot. This module rebuilds that snapshot — the config file's
//! declarations plus everything in the store — at start, right after every admin write on
//! this instance, and whenever the store's change counter moves (polled every
//! `catalog_refresh_ms`, so other instances' writes arrive within about that long).

use llmur_core::limits::LimitSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use llmur_core::store::types::{CatalogData, ProviderKind};
use llmur_core::{
    AzureOpenAi, Connection, Deployment, KeyHash, MemoryCatalog, OpenAi, Provider, Snapshot, Store,
    StoreError, VirtualKey, WeightedConnection,
};
use tokio::sync::{Mutex, Notify};

use crate::catalog::snapshot_from_config;
use crate::config::Config;
use crate::security::Secrets;

/// Rebuilds the catalog from the config file and the store.
pub struct CatalogSync {
    store: Arc<dyn Store>,
    secrets: Secrets,
    config: Arc<Config>,
    catalog: Arc<MemoryCatalog>,
    version: AtomicI64,
    /// Serializes rebuilds so an older load never overwrites a newer one.
    rebuild: Mutex<()>,
    wake: Notify,
}

impl std::fmt::Debug for CatalogSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogSync")
            .field("version", &self.version.load(Ordering::Relaxed))
            .field("catalog", &self.catalog)
            .finish_non_exhaustive()
    }
}

impl CatalogSync {
    /// A sync over `store`; call [`refresh`](Self::refresh) before serving.
    pub fn new(
        store: Arc<dyn Store>,
        secrets: Secrets,
        config: Arc<Config>,
        catalog: Arc<MemoryCatalog>,
    ) -> Self {
        Self {
            store,
            secrets,
            config,
            catalog,
            version: AtomicI64::new(i64::MIN),
            rebuild: Mutex::new(()),
            wake: Notify::new(),
        }
    }

    /// The catalog it keeps fresh.
    pub fn catalog(&self) -> &Arc<MemoryCatalog> {
        &self.catalog
    }

    /// The store version the current snapshot was built from.
    pub fn version(&self) -> i64 {
        self.version.load(Ordering::Acquire)
    }

    /// Reloads everything now and swaps the snapshot in.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let _guard = self.rebuild.lock().await;
        let data = self.store.load_catalog().await?;
        let version = data.version;
        let snapshot = self.build(&data);
        self.catalog.replace(snapshot);
        self.version.store(version, Ordering::Release);
        tracing::debug!(version, "catalog refreshed");
        Ok(())
    }

    /// Asks the poller to refresh soon (non-blocking).
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Polls the change counter every `interval` (or when poked) and refreshes when it
    /// moved. Runs until the task is aborted.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {},
                () = self.wake.notified() => {},
            }
            if let Err(e) = self.refresh_if_changed().await {
                tracing::warn!(error = %e, "catalog refresh failed; keeping the last one");
            }
        }
    }

    /// Reads the store's change counter and refreshes only when it moved; returns whether
    /// it did. One small query when nothing changed.
    pub async fn refresh_if_changed(&self) -> Result<bool, StoreError> {
        if self.store.catalog_version().await? == self.version() {
            return Ok(false);
        }
        self.refresh().await?;
        Ok(true)
    }

    fn build(&self, data: &CatalogData) -> Snapshot {
        let mut snapshot = match snapshot_from_config(&self.config, self.secrets.key_hasher()) {
            Ok((snapshot, _)) => snapshot,
            Err(e) => {
                // Validated at start-up; only an `env:` variable removed since could fail.
                tracing::error!(error = %e, "config catalog no longer builds; using the database only");
                Snapshot::new()
            }
        };
        add_store_data(&mut snapshot, data, &self.secrets);
        snapshot
    }
}

fn provider(kind: ProviderKind) -> Arc<dyn Provider> {
    match kind {
        ProviderKind::OpenAi => Arc::new(OpenAi),
        ProviderKind::AzureOpenAi => Arc::new(AzureOpenAi),
    }
}

/// Adds the store's connections, deployments, keys and links to `snapshot`.
pub fn add_store_data(snapshot: &mut Snapshot, data: &CatalogData, secrets: &Secrets) {
    let mut connections = std::collections::HashMap::with_capacity(data.connections.len());
    for c in &data.connections {
        let api_key = match secrets.decrypt(c.id, &c.api_key) {
            Ok(key) => key,
            Err(e) => {
                tracing::error!(connection = %c.id, error = %e, "connection left out of the catalog");
                continue;
            }
        };
        let mut connection = Connection::new(
            c.id,
            provider(c.provider),
            &c.api_endpoint,
            &c.model,
            api_key,
        );
        connection.api_version = c.api_version.clone();
        connection.price = c.price;
        connection.limits = LimitSet::from_limits(&c.limits);
        connections.insert(c.id, Arc::new(connection));
    }
    let mut by_deployment: std::collections::HashMap<_, Vec<WeightedConnection>> =
        std::collections::HashMap::new();
    for link in &data.connection_deployments {
        if let Some(connection) = connections.get(&link.connection_id) {
            by_deployment
                .entry(link.deployment_id)
                .or_default()
                .push(WeightedConnection {
                    connection: connection.clone(),
                    weight: link.weight,
                });
        }
    }
    for d in &data.deployments {
        let linked = by_deployment.remove(&d.id).unwrap_or_default();
        snapshot.insert_deployment(
            Deployment::new(d.id, d.name.as_str(), d.access, d.strategy, linked)
                .with_blocked(d.blocked)
                .with_limits(LimitSet::from_limits(&d.limits)),
        );
    }
    let project_limits: std::collections::HashMap<_, _> = data
        .projects
        .iter()
        .filter_map(|p| LimitSet::from_limits(&p.limits).map(|l| (p.id, l)))
        .collect();
    for k in &data.virtual_keys {
        let Some(hash) = KeyHash::from_hex(&k.key_hash) else {
            tracing::error!(key = %k.id, "virtual key with a malformed hash left out");
            continue;
        };
        snapshot.insert_key(
            hash,
            VirtualKey {
                id: k.id,
                project_id: k.project_id,
                alias: k.alias.clone(),
                blocked: k.blocked,
                limits: LimitSet::from_limits(&k.limits),
                project_limits: project_limits.get(&k.project_id).cloned(),
            },
        );
    }
    for link in &data.virtual_key_deployments {
        snapshot.link(link.virtual_key_id, link.deployment_id);
    }
}
