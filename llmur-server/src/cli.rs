//! The `llmur` command line's helpers for the first minutes: migrate, create the first
//! admin user, create a virtual key, print the OpenAPI document.
//!
//! Owns: these operations as library functions (so they are tested without spawning the
//! binary); `main.rs` only parses arguments and prints.

use llmur_core::store::types::{
    AppRole, Limits, Millis, PageRequest, Project, StoredVirtualKey, User, UserId,
    VirtualKeyDeployment, VirtualKeyDeploymentId,
};
use llmur_core::{ProjectId, Store, VirtualKeyId};
use secrecy::ExposeSecret;

use crate::config::Config;
use crate::error::ConfigError;
use crate::security::{Secrets, hash_password, mask_key, new_virtual_key};

fn store_error(e: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(e.to_string())
}

async fn open(config: &Config) -> Result<(std::sync::Arc<dyn Store>, Secrets), ConfigError> {
    let url = config.database_url()?;
    let secret = crate::app::application_secret(config, url.expose_secret())?;
    let store = crate::db::connect(url.expose_secret())
        .await
        .map_err(store_error)?;
    Ok((store, Secrets::new(&secret)))
}

/// Applies the migrations of the configured database.
pub async fn migrate(config: &Config) -> Result<(), ConfigError> {
    let url = config.database_url()?;
    crate::db::migrate(url.expose_secret())
        .await
        .map_err(store_error)
}

/// Creates an application admin.
pub async fn create_admin(
    config: &Config,
    email: &str,
    password: &str,
    name: Option<&str>,
) -> Result<User, ConfigError> {
    if password.chars().count() < 8 {
        return Err(ConfigError::new(
            "the password must be at least 8 characters",
        ));
    }
    let (store, _) = open(config).await?;
    let email = email.trim().to_lowercase();
    let name = name.map_or_else(
        || email.split('@').next().unwrap_or_default().to_owned(),
        str::to_owned,
    );
    let password_hash = hash_password(password).map_err(store_error)?;
    store
        .create_user(User {
            id: UserId::new_v7(),
            name,
            email,
            role: AppRole::Admin,
            blocked: false,
            email_verified: true,
            password_hash,
            created_at: Millis::now(),
        })
        .await
        .map_err(store_error)
}

/// Creates a virtual key in `project` (an id, or a name — created when no project has it)
/// linked to `deployments` (names); returns the stored key and the full key, shown once.
pub async fn create_key(
    config: &Config,
    project: &str,
    deployments: &[String],
    alias: Option<&str>,
) -> Result<(StoredVirtualKey, String), ConfigError> {
    let (store, secrets) = open(config).await?;
    let project_id = find_or_create_project(&*store, project).await?;
    let mut deployment_ids = Vec::new();
    for name in deployments {
        let d = store
            .get_deployment_by_name(name)
            .await
            .map_err(|e| ConfigError::new(format!("deployment `{name}`: {e}")))?;
        deployment_ids.push(d.id);
    }
    let key = new_virtual_key();
    let stored = store
        .create_virtual_key(StoredVirtualKey {
            id: VirtualKeyId(uuid::Uuid::now_v7()),
            project_id,
            key_hash: secrets.hash_virtual_key(&key),
            alias: alias.map_or_else(|| mask_key(&key), str::to_owned),
            description: None,
            blocked: false,
            limits: Limits::default(),
            created_at: Millis::now(),
        })
        .await
        .map_err(store_error)?;
    for deployment_id in deployment_ids {
        store
            .create_virtual_key_deployment(VirtualKeyDeployment {
                id: VirtualKeyDeploymentId::new_v7(),
                virtual_key_id: stored.id,
                deployment_id,
            })
            .await
            .map_err(store_error)?;
    }
    Ok((stored, key))
}

async fn find_or_create_project(
    store: &dyn Store,
    project: &str,
) -> Result<ProjectId, ConfigError> {
    if let Ok(id) = project.parse::<uuid::Uuid>() {
        return Ok(store
            .get_project(ProjectId(id))
            .await
            .map_err(store_error)?
            .id);
    }
    let mut page = PageRequest {
        limit: 1000,
        after: None,
    };
    loop {
        let found = store.list_projects(None, page).await.map_err(store_error)?;
        if let Some(p) = found.items.iter().find(|p| p.name == project) {
            return Ok(p.id);
        }
        match found.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    let created = store
        .create_project(Project {
            id: ProjectId(uuid::Uuid::now_v7()),
            name: project.to_owned(),
            limits: Limits::default(),
            created_at: Millis::now(),
        })
        .await
        .map_err(store_error)?;
    Ok(created.id)
}
