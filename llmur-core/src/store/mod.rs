//! The admin write side: the [`Store`] trait every persistence backend implements.
//!
//! Owns: the trait, its error type and the records ([`types`]). Must not touch: the
//! request hot path — the proxy never calls a store per request; it reads a
//! [`CatalogData`] snapshot at start and whenever [`Store::catalog_version`] changes.
//!
//! Contract (checked by the conformance suite in `llmur-testkit` for every backend):
//! - every successful write that changes what the catalog holds (connections,
//!   deployments, links, virtual keys, projects) increments the catalog version in the same
//!   transaction;
//! - unique violations (user email, deployment name, key hash, invite code, duplicate
//!   membership or link) fail with [`StoreErrorKind::Conflict`]; references to rows that do
//!   not exist fail with [`StoreErrorKind::NotFound`]; a missing row on get/patch/delete is
//!   `NotFound` too;
//! - deleting a row deletes what hangs off it (a project's keys, memberships and invites; a
//!   deployment's or connection's links; a user's sessions and memberships; a key's links);
//! - lists are ascending by id and paginate with [`PageRequest`].

mod memory;
pub mod types;

use std::fmt;

use async_trait::async_trait;

use crate::RequestLog;
use crate::model::{ConnectionId, DeploymentId, ProjectId, VirtualKeyId};
use types::*;

pub use memory::MemoryStore;

/// What went wrong in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The row, or a row it refers to, does not exist.
    NotFound,
    /// A unique constraint would be violated.
    Conflict,
    /// The value cannot be stored (e.g. out of range).
    Invalid,
    /// The database could not be reached or timed out.
    Unavailable,
    /// Anything else.
    Internal,
}

/// A store error: a kind and a message fit for an operator (never a secret).
#[derive(Debug, Clone)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
}

impl StoreError {
    /// A new error.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Shorthand for a `NotFound` error naming what was missing.
    pub fn not_found(what: impl fmt::Display) -> Self {
        Self::new(StoreErrorKind::NotFound, format!("{what} not found"))
    }

    /// Shorthand for a `Conflict` error.
    pub fn conflict(what: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Conflict, what)
    }

    /// The kind.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for StoreError {}

/// Result of store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// Persistence for the admin API and the catalog. Implementations: in memory
/// ([`MemoryStore`]), SQLite and PostgreSQL (diesel, in the server).
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    // --- users and sessions
    /// Inserts a user (`Conflict` on a taken email, compared case-insensitively).
    async fn create_user(&self, user: User) -> StoreResult<User>;
    /// A user by id.
    async fn get_user(&self, id: UserId) -> StoreResult<User>;
    /// A user by email (case-insensitive).
    async fn get_user_by_email(&self, email: &str) -> StoreResult<User>;
    /// Users, paginated.
    async fn list_users(&self, page: PageRequest) -> StoreResult<Page<User>>;
    /// Applies a patch.
    async fn update_user(&self, id: UserId, patch: UserPatch) -> StoreResult<User>;
    /// Deletes a user, their sessions and memberships.
    async fn delete_user(&self, id: UserId) -> StoreResult<()>;
    /// How many users exist (for first-run set-up).
    async fn count_users(&self) -> StoreResult<u64>;

    /// Inserts a session.
    async fn create_session(&self, session: Session) -> StoreResult<Session>;
    /// A session by token hash (revoked and expired ones included: the caller decides).
    async fn get_session_by_token_hash(&self, token_hash: &str) -> StoreResult<Session>;
    /// A session by id.
    async fn get_session(&self, id: SessionId) -> StoreResult<Session>;
    /// Marks a session revoked.
    async fn revoke_session(&self, id: SessionId) -> StoreResult<()>;

    // --- projects, memberships, invites
    /// Inserts a project.
    async fn create_project(&self, project: Project) -> StoreResult<Project>;
    /// A project by id.
    async fn get_project(&self, id: ProjectId) -> StoreResult<Project>;
    /// Projects, paginated; with `member`, only the projects that user belongs to.
    async fn list_projects(
        &self,
        member: Option<UserId>,
        page: PageRequest,
    ) -> StoreResult<Page<Project>>;
    /// Renames or changes limits (`None` leaves a field as it is).
    async fn update_project(
        &self,
        id: ProjectId,
        name: Option<String>,
        limits: Option<Limits>,
    ) -> StoreResult<Project>;
    /// Deletes a project with its keys (and their links), memberships and invites.
    async fn delete_project(&self, id: ProjectId) -> StoreResult<()>;

    /// Inserts a membership (`NotFound` for an unknown user or project, `Conflict` when the
    /// user is already a member).
    async fn create_membership(&self, membership: Membership) -> StoreResult<Membership>;
    /// A membership by id.
    async fn get_membership(&self, id: MembershipId) -> StoreResult<Membership>;
    /// The membership of `user` in `project`, if any.
    async fn find_membership(
        &self,
        user: UserId,
        project: ProjectId,
    ) -> StoreResult<Option<Membership>>;
    /// Memberships filtered by user and/or project.
    async fn list_memberships(
        &self,
        user: Option<UserId>,
        project: Option<ProjectId>,
        page: PageRequest,
    ) -> StoreResult<Page<Membership>>;
    /// Changes a membership's role.
    async fn update_membership(
        &self,
        id: MembershipId,
        role: ProjectRole,
    ) -> StoreResult<Membership>;
    /// Deletes a membership.
    async fn delete_membership(&self, id: MembershipId) -> StoreResult<()>;

    /// Inserts an invite (`Conflict` on a taken code, `NotFound` for an unknown project).
    async fn create_invite(&self, invite: Invite) -> StoreResult<Invite>;
    /// An invite by id.
    async fn get_invite(&self, id: InviteId) -> StoreResult<Invite>;
    /// An invite by code.
    async fn get_invite_by_code(&self, code: &str) -> StoreResult<Invite>;
    /// Invites of a project.
    async fn list_invites(
        &self,
        project: Option<ProjectId>,
        page: PageRequest,
    ) -> StoreResult<Page<Invite>>;
    /// Deletes an invite.
    async fn delete_invite(&self, id: InviteId) -> StoreResult<()>;

    // --- connections, deployments, links
    /// Inserts a connection.
    async fn create_connection(
        &self,
        connection: StoredConnection,
    ) -> StoreResult<StoredConnection>;
    /// A connection by id.
    async fn get_connection(&self, id: ConnectionId) -> StoreResult<StoredConnection>;
    /// Connections, paginated.
    async fn list_connections(&self, page: PageRequest) -> StoreResult<Page<StoredConnection>>;
    /// How many connections exist.
    async fn count_connections(&self) -> StoreResult<u64>;
    /// Applies a patch.
    async fn update_connection(
        &self,
        id: ConnectionId,
        patch: ConnectionPatch,
    ) -> StoreResult<StoredConnection>;
    /// Deletes a connection and its links.
    async fn delete_connection(&self, id: ConnectionId) -> StoreResult<()>;

    /// Inserts a deployment (`Conflict` on a taken name).
    async fn create_deployment(
        &self,
        deployment: StoredDeployment,
    ) -> StoreResult<StoredDeployment>;
    /// A deployment by id.
    async fn get_deployment(&self, id: DeploymentId) -> StoreResult<StoredDeployment>;
    /// A deployment by name.
    async fn get_deployment_by_name(&self, name: &str) -> StoreResult<StoredDeployment>;
    /// Deployments, paginated.
    async fn list_deployments(&self, page: PageRequest) -> StoreResult<Page<StoredDeployment>>;
    /// Applies a patch (`Conflict` on a taken name).
    async fn update_deployment(
        &self,
        id: DeploymentId,
        patch: DeploymentPatch,
    ) -> StoreResult<StoredDeployment>;
    /// Deletes a deployment and its links (to connections and keys).
    async fn delete_deployment(&self, id: DeploymentId) -> StoreResult<()>;

    /// Links a connection to a deployment (`NotFound` on bad refs, `Conflict` when linked).
    async fn create_connection_deployment(
        &self,
        link: ConnectionDeployment,
    ) -> StoreResult<ConnectionDeployment>;
    /// A link by id.
    async fn get_connection_deployment(
        &self,
        id: ConnectionDeploymentId,
    ) -> StoreResult<ConnectionDeployment>;
    /// Links filtered by connection and/or deployment.
    async fn list_connection_deployments(
        &self,
        connection: Option<ConnectionId>,
        deployment: Option<DeploymentId>,
        page: PageRequest,
    ) -> StoreResult<Page<ConnectionDeployment>>;
    /// Re-weights a link.
    async fn update_connection_deployment(
        &self,
        id: ConnectionDeploymentId,
        weight: u32,
    ) -> StoreResult<ConnectionDeployment>;
    /// Deletes a link.
    async fn delete_connection_deployment(&self, id: ConnectionDeploymentId) -> StoreResult<()>;

    // --- virtual keys
    /// Inserts a key (`NotFound` for an unknown project, `Conflict` on a taken hash).
    async fn create_virtual_key(&self, key: StoredVirtualKey) -> StoreResult<StoredVirtualKey>;
    /// A key by id.
    async fn get_virtual_key(&self, id: VirtualKeyId) -> StoreResult<StoredVirtualKey>;
    /// A key by hash.
    async fn get_virtual_key_by_hash(&self, key_hash: &str) -> StoreResult<StoredVirtualKey>;
    /// Keys, optionally of one project.
    async fn list_virtual_keys(
        &self,
        project: Option<ProjectId>,
        page: PageRequest,
    ) -> StoreResult<Page<StoredVirtualKey>>;
    /// Applies a patch.
    async fn update_virtual_key(
        &self,
        id: VirtualKeyId,
        patch: VirtualKeyPatch,
    ) -> StoreResult<StoredVirtualKey>;
    /// Deletes a key and its links.
    async fn delete_virtual_key(&self, id: VirtualKeyId) -> StoreResult<()>;

    /// Lets a key use a deployment (`NotFound` on bad refs, `Conflict` when linked).
    async fn create_virtual_key_deployment(
        &self,
        link: VirtualKeyDeployment,
    ) -> StoreResult<VirtualKeyDeployment>;
    /// A link by id.
    async fn get_virtual_key_deployment(
        &self,
        id: VirtualKeyDeploymentId,
    ) -> StoreResult<VirtualKeyDeployment>;
    /// Links filtered by key and/or deployment.
    async fn list_virtual_key_deployments(
        &self,
        key: Option<VirtualKeyId>,
        deployment: Option<DeploymentId>,
        page: PageRequest,
    ) -> StoreResult<Page<VirtualKeyDeployment>>;
    /// Deletes a link.
    async fn delete_virtual_key_deployment(&self, id: VirtualKeyDeploymentId) -> StoreResult<()>;

    // --- catalog and request logs
    /// The change counter: increases with every catalog-relevant write.
    async fn catalog_version(&self) -> StoreResult<i64>;
    /// Everything the catalog is built from, consistent with the returned version.
    async fn load_catalog(&self) -> StoreResult<CatalogData>;

    /// Appends request logs (one transaction per batch).
    async fn insert_request_logs(&self, logs: &[RequestLog]) -> StoreResult<()>;
    /// Request logs of a key, newest first, at most `limit`.
    async fn list_request_logs(
        &self,
        key: Option<VirtualKeyId>,
        limit: u32,
    ) -> StoreResult<Vec<RequestLog>>;
    /// Deletes the request logs that started before `before` (retention); returns how
    /// many were deleted.
    async fn delete_request_logs_before(&self, before: Millis) -> StoreResult<u64>;
}
