//! Connections, deployments, links, virtual keys, the catalog snapshot and request logs of
//! the [`MemoryStore`](super::MemoryStore).
//!
//! Every successful write here is catalog-relevant and bumps the version once; each method
//! checks every precondition before it changes anything, so a failed write bumps nothing.

use std::cmp::Reverse;

use super::{State, exists, fresh_id, remove, row_mut};
use crate::RequestLog;
use crate::model::{ConnectionId, DeploymentId, VirtualKeyId};
use crate::store::types::*;
use crate::store::{StoreError, StoreErrorKind, StoreResult};

/// The largest link weight.
const MAX_WEIGHT: u32 = 100;

fn check_weight(weight: u32) -> StoreResult<()> {
    if weight > MAX_WEIGHT {
        Err(StoreError::new(
            StoreErrorKind::Invalid,
            format!("weight {weight} is outside 0..={MAX_WEIGHT}"),
        ))
    } else {
        Ok(())
    }
}

impl State {
    pub(super) fn create_connection(
        &mut self,
        connection: StoredConnection,
    ) -> StoreResult<StoredConnection> {
        fresh_id(&self.connections, "connection", connection.id)?;
        self.connections.insert(connection.id, connection.clone());
        self.bump();
        Ok(connection)
    }

    pub(super) fn update_connection(
        &mut self,
        id: ConnectionId,
        patch: ConnectionPatch,
    ) -> StoreResult<StoredConnection> {
        let connection = row_mut(&mut self.connections, "connection", id)?;
        let ConnectionPatch {
            api_endpoint,
            model,
            api_version,
            api_key,
            price,
            limits,
        } = patch;
        if let Some(api_endpoint) = api_endpoint {
            connection.api_endpoint = api_endpoint;
        }
        if let Some(model) = model {
            connection.model = model;
        }
        if let Some(api_version) = api_version {
            connection.api_version = api_version;
        }
        if let Some(api_key) = api_key {
            connection.api_key = api_key;
        }
        if let Some(price) = price {
            connection.price = price;
        }
        if let Some(limits) = limits {
            connection.limits = limits;
        }
        let connection = connection.clone();
        self.bump();
        Ok(connection)
    }

    pub(super) fn delete_connection(&mut self, id: ConnectionId) -> StoreResult<()> {
        remove(&mut self.connections, "connection", id)?;
        self.connection_deployments
            .retain(|_, l| l.connection_id != id);
        self.bump();
        Ok(())
    }

    /// `Conflict` when another deployment than `except` is called `name` (exact match).
    fn check_deployment_name(&self, name: &str, except: Option<DeploymentId>) -> StoreResult<()> {
        if self
            .deployments
            .values()
            .any(|d| d.name == name && Some(d.id) != except)
        {
            Err(StoreError::conflict(format!(
                "a deployment named {name:?} already exists"
            )))
        } else {
            Ok(())
        }
    }

    pub(super) fn create_deployment(
        &mut self,
        deployment: StoredDeployment,
    ) -> StoreResult<StoredDeployment> {
        fresh_id(&self.deployments, "deployment", deployment.id)?;
        self.check_deployment_name(&deployment.name, None)?;
        self.deployments.insert(deployment.id, deployment.clone());
        self.bump();
        Ok(deployment)
    }

    pub(super) fn update_deployment(
        &mut self,
        id: DeploymentId,
        patch: DeploymentPatch,
    ) -> StoreResult<StoredDeployment> {
        exists(&self.deployments, "deployment", id)?;
        if let Some(name) = &patch.name {
            self.check_deployment_name(name, Some(id))?;
        }
        let deployment = row_mut(&mut self.deployments, "deployment", id)?;
        let DeploymentPatch {
            name,
            access,
            strategy,
            blocked,
            limits,
        } = patch;
        if let Some(name) = name {
            deployment.name = name;
        }
        if let Some(access) = access {
            deployment.access = access;
        }
        if let Some(strategy) = strategy {
            deployment.strategy = strategy;
        }
        if let Some(blocked) = blocked {
            deployment.blocked = blocked;
        }
        if let Some(limits) = limits {
            deployment.limits = limits;
        }
        let deployment = deployment.clone();
        self.bump();
        Ok(deployment)
    }

    pub(super) fn delete_deployment(&mut self, id: DeploymentId) -> StoreResult<()> {
        remove(&mut self.deployments, "deployment", id)?;
        self.connection_deployments
            .retain(|_, l| l.deployment_id != id);
        self.virtual_key_deployments
            .retain(|_, l| l.deployment_id != id);
        self.bump();
        Ok(())
    }

    pub(super) fn create_connection_deployment(
        &mut self,
        link: ConnectionDeployment,
    ) -> StoreResult<ConnectionDeployment> {
        check_weight(link.weight)?;
        fresh_id(
            &self.connection_deployments,
            "connection-deployment link",
            link.id,
        )?;
        exists(&self.connections, "connection", link.connection_id)?;
        exists(&self.deployments, "deployment", link.deployment_id)?;
        if self
            .connection_deployments
            .values()
            .any(|l| l.connection_id == link.connection_id && l.deployment_id == link.deployment_id)
        {
            return Err(StoreError::conflict(format!(
                "connection {} is already linked to deployment {}",
                link.connection_id, link.deployment_id
            )));
        }
        self.connection_deployments.insert(link.id, link.clone());
        self.bump();
        Ok(link)
    }

    pub(super) fn update_connection_deployment(
        &mut self,
        id: ConnectionDeploymentId,
        weight: u32,
    ) -> StoreResult<ConnectionDeployment> {
        check_weight(weight)?;
        let link = row_mut(
            &mut self.connection_deployments,
            "connection-deployment link",
            id,
        )?;
        link.weight = weight;
        let link = link.clone();
        self.bump();
        Ok(link)
    }

    pub(super) fn create_virtual_key(
        &mut self,
        key: StoredVirtualKey,
    ) -> StoreResult<StoredVirtualKey> {
        fresh_id(&self.virtual_keys, "virtual key", key.id)?;
        exists(&self.projects, "project", key.project_id)?;
        if self
            .virtual_keys
            .values()
            .any(|k| k.key_hash == key.key_hash)
        {
            return Err(StoreError::conflict(
                "a virtual key with this hash already exists",
            ));
        }
        self.virtual_keys.insert(key.id, key.clone());
        self.bump();
        Ok(key)
    }

    pub(super) fn update_virtual_key(
        &mut self,
        id: VirtualKeyId,
        patch: VirtualKeyPatch,
    ) -> StoreResult<StoredVirtualKey> {
        let key = row_mut(&mut self.virtual_keys, "virtual key", id)?;
        let VirtualKeyPatch {
            alias,
            description,
            blocked,
            limits,
        } = patch;
        if let Some(alias) = alias {
            key.alias = alias;
        }
        if let Some(description) = description {
            key.description = description;
        }
        if let Some(blocked) = blocked {
            key.blocked = blocked;
        }
        if let Some(limits) = limits {
            key.limits = limits;
        }
        let key = key.clone();
        self.bump();
        Ok(key)
    }

    pub(super) fn delete_virtual_key(&mut self, id: VirtualKeyId) -> StoreResult<()> {
        remove(&mut self.virtual_keys, "virtual key", id)?;
        self.virtual_key_deployments
            .retain(|_, l| l.virtual_key_id != id);
        self.bump();
        Ok(())
    }

    pub(super) fn create_virtual_key_deployment(
        &mut self,
        link: VirtualKeyDeployment,
    ) -> StoreResult<VirtualKeyDeployment> {
        fresh_id(
            &self.virtual_key_deployments,
            "virtual key-deployment link",
            link.id,
        )?;
        exists(&self.virtual_keys, "virtual key", link.virtual_key_id)?;
        exists(&self.deployments, "deployment", link.deployment_id)?;
        if self.virtual_key_deployments.values().any(|l| {
            l.virtual_key_id == link.virtual_key_id && l.deployment_id == link.deployment_id
        }) {
            return Err(StoreError::conflict(format!(
                "virtual key {} is already linked to deployment {}",
                link.virtual_key_id, link.deployment_id
            )));
        }
        self.virtual_key_deployments.insert(link.id, link.clone());
        self.bump();
        Ok(link)
    }

    pub(super) fn load_catalog(&self) -> CatalogData {
        CatalogData {
            version: self.catalog_version,
            connections: self.connections.values().cloned().collect(),
            deployments: self.deployments.values().cloned().collect(),
            connection_deployments: self.connection_deployments.values().cloned().collect(),
            virtual_keys: self.virtual_keys.values().cloned().collect(),
            virtual_key_deployments: self.virtual_key_deployments.values().cloned().collect(),
            projects: self.projects.values().cloned().collect(),
        }
    }

    /// Newest first by `started_at`; equal start times newest-inserted first.
    pub(super) fn list_request_logs(
        &self,
        key: Option<VirtualKeyId>,
        limit: u32,
    ) -> Vec<RequestLog> {
        let mut logs: Vec<(usize, &RequestLog)> = self
            .request_logs
            .iter()
            .enumerate()
            .filter(|(_, log)| key.is_none_or(|k| log.virtual_key_id == k))
            .collect();
        logs.sort_by_key(|&(index, log)| Reverse((log.started_at, index)));
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        logs.into_iter()
            .take(limit)
            .map(|(_, log)| log.clone())
            .collect()
    }
}
