//! The records the [`Store`](super::Store) keeps: users, sessions, projects, memberships,
//! invites, connections, deployments, links, virtual keys, limits and request logs.
//!
//! Plain data. Timestamps are Unix milliseconds ([`Millis`]); ids are UUIDs (v7 for new
//! rows, so ids sort by creation time and serve as pagination cursors).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{Access, ConnectionId, DeploymentId, ProjectId, Strategy, VirtualKeyId};

macro_rules! store_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered id.
            pub fn new_v7() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

store_id!(
    /// Identifies a user.
    UserId
);
store_id!(
    /// Identifies a session.
    SessionId
);
store_id!(
    /// Identifies a membership.
    MembershipId
);
store_id!(
    /// Identifies a project invite.
    InviteId
);
store_id!(
    /// Identifies a connection↔deployment link.
    ConnectionDeploymentId
);
store_id!(
    /// Identifies a virtual key↔deployment link.
    VirtualKeyDeploymentId
);

/// Unix time in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub i64);

impl Millis {
    /// Now, from the system clock.
    pub fn now() -> Self {
        Self::from_system(std::time::SystemTime::now())
    }

    /// From a `SystemTime` (times before 1970 clamp to 0).
    pub fn from_system(t: std::time::SystemTime) -> Self {
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self(ms)
    }
}

/// Application-wide role of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppRole {
    /// May manage everything.
    Admin,
    /// May manage what their project roles allow.
    #[default]
    Member,
}

/// Role of a user inside one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectRole {
    /// Manages the project, its members, invites and keys.
    Admin,
    /// Manages the project's keys.
    Developer,
    /// Reads the project.
    #[default]
    Guest,
}

/// Limits per calendar window (UTC); `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Windows<T> {
    /// Per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<T>,
    /// Per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<T>,
    /// Per day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_day: Option<T>,
    /// Per ISO week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_week: Option<T>,
    /// Per month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_month: Option<T>,
}

/// Request, token and budget limits of one entity (project, deployment, connection, key).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per window.
    #[serde(default)]
    pub requests: Windows<u64>,
    /// Tokens (input + output) per window.
    #[serde(default)]
    pub tokens: Windows<u64>,
    /// Cost in USD per window.
    #[serde(default)]
    pub budget: Windows<f64>,
}

/// A user account.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Display name.
    pub name: String,
    /// Unique, lowercase email.
    pub email: String,
    /// Application role.
    pub role: AppRole,
    /// Blocked users cannot sign in and their sessions stop working.
    pub blocked: bool,
    /// Whether the email was verified.
    pub email_verified: bool,
    /// Argon2 PHC string.
    pub password_hash: String,
    /// Creation time.
    pub created_at: Millis,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserPatch {
    /// New name.
    pub name: Option<String>,
    /// New role.
    pub role: Option<AppRole>,
    /// Block or unblock.
    pub blocked: Option<bool>,
    /// Verified flag.
    pub email_verified: Option<bool>,
    /// New Argon2 PHC string.
    pub password_hash: Option<String>,
}

/// A sign-in session; the token itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Id.
    pub id: SessionId,
    /// Owner.
    pub user_id: UserId,
    /// Keyed hash of the token, hex.
    pub token_hash: String,
    /// Creation time.
    pub created_at: Millis,
    /// Expiry time.
    pub expires_at: Millis,
    /// Revoked sessions are refused.
    pub revoked: bool,
}

/// A project: owns virtual keys and has members.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    /// Id.
    pub id: ProjectId,
    /// Name (not unique).
    pub name: String,
    /// Limits.
    pub limits: Limits,
    /// Creation time.
    pub created_at: Millis,
}

/// A user's role in a project; one per (user, project).
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    /// Id.
    pub id: MembershipId,
    /// The user.
    pub user_id: UserId,
    /// The project.
    pub project_id: ProjectId,
    /// The role.
    pub role: ProjectRole,
}

/// An invite code that lets a signed-in user join a project with a role.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite {
    /// Id.
    pub id: InviteId,
    /// The project.
    pub project_id: ProjectId,
    /// The code (unique).
    pub code: String,
    /// Role given on redemption.
    pub role: ProjectRole,
    /// No expiry when `None`.
    pub valid_until: Option<Millis>,
    /// Creation time.
    pub created_at: Millis,
}

/// The provider of a stored connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderKind {
    /// `openai/v1`.
    #[serde(rename = "openai/v1")]
    OpenAi,
    /// `azure/openai`.
    #[serde(rename = "azure/openai")]
    AzureOpenAi,
}

impl ProviderKind {
    /// The wire name (`openai/v1`, `azure/openai`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai/v1",
            ProviderKind::AzureOpenAi => "azure/openai",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "openai/v1" => Some(ProviderKind::OpenAi),
            "azure/openai" => Some(ProviderKind::AzureOpenAi),
            _ => None,
        }
    }
}

/// A provider credential encrypted at rest (AES-256-GCM; the connection id is the
/// associated data, so a ciphertext cannot be moved to another row).
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedSecret {
    /// Which derived key encrypted it (for rotation).
    pub key_version: i32,
    /// 96-bit nonce.
    pub nonce: Vec<u8>,
    /// Ciphertext with tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for EncryptedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedSecret")
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

/// A connection as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredConnection {
    /// Id.
    pub id: ConnectionId,
    /// Provider.
    pub provider: ProviderKind,
    /// Base URL.
    pub api_endpoint: String,
    /// Upstream model (OpenAI) or Azure deployment name.
    pub model: String,
    /// Azure `api-version`.
    pub api_version: Option<String>,
    /// The encrypted provider key.
    pub api_key: EncryptedSecret,
    /// USD per 1M input / output tokens, overriding the default price table.
    pub price: Option<Price>,
    /// Limits.
    pub limits: Limits,
    /// Creation time.
    pub created_at: Millis,
}

/// A price in USD per one million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Input (prompt) tokens.
    pub input_per_million: f64,
    /// Output (completion) tokens.
    pub output_per_million: f64,
}

/// Changes to a connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionPatch {
    /// New base URL.
    pub api_endpoint: Option<String>,
    /// New model / Azure deployment name.
    pub model: Option<String>,
    /// New api-version (`Some(None)` clears it).
    pub api_version: Option<Option<String>>,
    /// Rotated key.
    pub api_key: Option<EncryptedSecret>,
    /// New price (`Some(None)` clears it).
    pub price: Option<Option<Price>>,
    /// New limits.
    pub limits: Option<Limits>,
}

/// A deployment as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDeployment {
    /// Id.
    pub id: DeploymentId,
    /// Unique name.
    pub name: String,
    /// Access.
    pub access: Access,
    /// Strategy.
    pub strategy: Strategy,
    /// A blocked deployment refuses every request with 403.
    pub blocked: bool,
    /// Limits.
    pub limits: Limits,
    /// Creation time.
    pub created_at: Millis,
}

/// Changes to a deployment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentPatch {
    /// New name.
    pub name: Option<String>,
    /// New access.
    pub access: Option<Access>,
    /// New strategy.
    pub strategy: Option<Strategy>,
    /// Block or unblock.
    pub blocked: Option<bool>,
    /// New limits.
    pub limits: Option<Limits>,
}

/// A connection linked to a deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionDeployment {
    /// Id.
    pub id: ConnectionDeploymentId,
    /// The connection.
    pub connection_id: ConnectionId,
    /// The deployment.
    pub deployment_id: DeploymentId,
    /// 0..=100.
    pub weight: u32,
}

/// A virtual key as stored (its hash, never the key).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVirtualKey {
    /// Id.
    pub id: VirtualKeyId,
    /// Owner project.
    pub project_id: ProjectId,
    /// HMAC of the key, hex (unique).
    pub key_hash: String,
    /// Masked form or label.
    pub alias: String,
    /// Free text.
    pub description: Option<String>,
    /// Blocked keys are refused.
    pub blocked: bool,
    /// Limits.
    pub limits: Limits,
    /// Creation time.
    pub created_at: Millis,
}

/// Changes to a virtual key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VirtualKeyPatch {
    /// New alias.
    pub alias: Option<String>,
    /// New description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// Block or unblock.
    pub blocked: Option<bool>,
    /// New limits.
    pub limits: Option<Limits>,
}

/// A virtual key allowed to use a deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualKeyDeployment {
    /// Id.
    pub id: VirtualKeyDeploymentId,
    /// The key.
    pub virtual_key_id: VirtualKeyId,
    /// The deployment.
    pub deployment_id: DeploymentId,
}

/// One page of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many items (1..=1000).
    pub limit: u32,
    /// Items with an id strictly greater than this (the previous page's last id).
    pub after: Option<Uuid>,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            limit: 100,
            after: None,
        }
    }
}

/// A page of items; `next` is the cursor for the following page, `None` at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, ascending by id.
    pub items: Vec<T>,
    /// Cursor of the next page.
    pub next: Option<Uuid>,
}

/// Everything the proxy's catalog is built from, read in one consistent pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogData {
    /// The change counter this data corresponds to.
    pub version: i64,
    /// All connections.
    pub connections: Vec<StoredConnection>,
    /// All deployments.
    pub deployments: Vec<StoredDeployment>,
    /// All connection↔deployment links.
    pub connection_deployments: Vec<ConnectionDeployment>,
    /// All virtual keys.
    pub virtual_keys: Vec<StoredVirtualKey>,
    /// All virtual key↔deployment links.
    pub virtual_key_deployments: Vec<VirtualKeyDeployment>,
    /// All projects (for their limits).
    pub projects: Vec<Project>,
}
