//! [`MemoryStore`]: the in-memory [`Store`], for tests, examples and the embedded default.
//!
//! Owns: one mutex-guarded [`State`] of `BTreeMap`s keyed by id (so iteration order is id
//! order, which is the pagination order) and a `Vec` of request logs. Every operation takes
//! the lock once, checks everything it needs *before* changing anything, then applies its
//! changes — so a failed call leaves the state untouched, as a rolled-back transaction
//! would. Must not touch: I/O; nothing here blocks beyond the lock.
//!
//! Uniqueness checks are linear scans; that is fine at admin-API scale.

mod accounts;
mod catalog;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use uuid::Uuid;

use super::types::*;
use super::{Store, StoreError, StoreErrorKind, StoreResult};
use crate::RequestLog;
use crate::model::{ConnectionId, DeploymentId, ProjectId, VirtualKeyId};

/// The largest page a list may ask for.
const MAX_PAGE: u32 = 1000;

/// An in-memory [`Store`]: everything lives in one mutex-guarded set of ordered maps and
/// is lost when the value is dropped.
///
/// ```
/// use llmur_core::{MemoryStore, Store};
/// # async fn demo() -> Result<(), llmur_core::StoreError> {
/// let store = MemoryStore::new();
/// assert_eq!(store.count_users().await?, 0);
/// assert_eq!(store.catalog_version().await?, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store (catalog version 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` with the state locked. A poisoned lock is taken over: operations never
    /// leave the state half-changed (they check before they write), so it is consistent.
    fn with<T>(&self, f: impl FnOnce(&mut State) -> StoreResult<T>) -> StoreResult<T> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("MemoryStore")
            .field("catalog_version", &state.catalog_version)
            .field("users", &state.users.len())
            .field("projects", &state.projects.len())
            .field("connections", &state.connections.len())
            .field("deployments", &state.deployments.len())
            .field("virtual_keys", &state.virtual_keys.len())
            .field("request_logs", &state.request_logs.len())
            .finish_non_exhaustive()
    }
}

/// Everything a [`MemoryStore`] holds.
#[derive(Default)]
struct State {
    catalog_version: i64,
    users: BTreeMap<UserId, User>,
    sessions: BTreeMap<SessionId, Session>,
    projects: BTreeMap<ProjectId, Project>,
    memberships: BTreeMap<MembershipId, Membership>,
    invites: BTreeMap<InviteId, Invite>,
    connections: BTreeMap<ConnectionId, StoredConnection>,
    deployments: BTreeMap<DeploymentId, StoredDeployment>,
    connection_deployments: BTreeMap<ConnectionDeploymentId, ConnectionDeployment>,
    virtual_keys: BTreeMap<VirtualKeyId, StoredVirtualKey>,
    virtual_key_deployments: BTreeMap<VirtualKeyDeploymentId, VirtualKeyDeployment>,
    request_logs: Vec<RequestLog>,
}

impl State {
    /// Records a catalog-relevant change.
    fn bump(&mut self) {
        self.catalog_version += 1;
    }
}

/// An id newtype over a UUID, usable as a map key and a pagination cursor.
trait RowId: Ord + Copy + fmt::Display {
    fn from_uuid(uuid: Uuid) -> Self;
    fn uuid(self) -> Uuid;
}

macro_rules! row_id {
    ($($t:ty),* $(,)?) => {$(
        impl RowId for $t {
            fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }
            fn uuid(self) -> Uuid {
                self.0
            }
        }
    )*};
}

row_id!(
    UserId,
    SessionId,
    ProjectId,
    MembershipId,
    InviteId,
    ConnectionId,
    DeploymentId,
    ConnectionDeploymentId,
    VirtualKeyId,
    VirtualKeyDeploymentId,
);

/// `NotFound` naming the kind of row and its id.
fn missing(what: &str, id: impl fmt::Display) -> StoreError {
    StoreError::not_found(format_args!("{what} {id}"))
}

/// The row with `id`, or `NotFound`.
fn row<'a, K: RowId, V>(map: &'a BTreeMap<K, V>, what: &str, id: K) -> StoreResult<&'a V> {
    map.get(&id).ok_or_else(|| missing(what, id))
}

/// The row with `id` for changing, or `NotFound`.
fn row_mut<'a, K: RowId, V>(
    map: &'a mut BTreeMap<K, V>,
    what: &str,
    id: K,
) -> StoreResult<&'a mut V> {
    map.get_mut(&id).ok_or_else(|| missing(what, id))
}

/// `NotFound` unless a row with `id` exists (for references).
fn exists<K: RowId, V>(map: &BTreeMap<K, V>, what: &str, id: K) -> StoreResult<()> {
    row(map, what, id).map(|_| ())
}

/// `Conflict` when a row with `id` already exists (primary key).
fn fresh_id<K: RowId, V>(map: &BTreeMap<K, V>, what: &str, id: K) -> StoreResult<()> {
    if map.contains_key(&id) {
        Err(StoreError::conflict(format!("{what} {id} already exists")))
    } else {
        Ok(())
    }
}

/// Removes the row with `id`, or `NotFound`.
fn remove<K: RowId, V>(map: &mut BTreeMap<K, V>, what: &str, id: K) -> StoreResult<V> {
    map.remove(&id).ok_or_else(|| missing(what, id))
}

/// The rows of `map` that `keep` accepts, ascending by id, after `page.after`, at most
/// `page.limit`; `next` is the last returned id iff another accepted row follows it.
fn paginate<K: RowId, V: Clone>(
    map: &BTreeMap<K, V>,
    page: PageRequest,
    mut keep: impl FnMut(&V) -> bool,
) -> StoreResult<Page<V>> {
    if page.limit == 0 || page.limit > MAX_PAGE {
        return Err(StoreError::new(
            StoreErrorKind::Invalid,
            format!("page limit {} is outside 1..={MAX_PAGE}", page.limit),
        ));
    }
    let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
    let lower = page.after.map_or(Bound::Unbounded, |after| {
        Bound::Excluded(K::from_uuid(after))
    });
    let mut items = Vec::new();
    let mut last = None;
    let mut next = None;
    for (id, value) in map.range((lower, Bound::Unbounded)) {
        if !keep(value) {
            continue;
        }
        if items.len() == limit {
            next = last.map(RowId::uuid);
            break;
        }
        items.push(value.clone());
        last = Some(*id);
    }
    Ok(Page { items, next })
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_user(&self, user: User) -> StoreResult<User> {
        self.with(|s| s.create_user(user))
    }
    async fn get_user(&self, id: UserId) -> StoreResult<User> {
        self.with(|s| row(&s.users, "user", id).cloned())
    }
    async fn get_user_by_email(&self, email: &str) -> StoreResult<User> {
        self.with(|s| s.user_by_email(email))
    }
    async fn list_users(&self, page: PageRequest) -> StoreResult<Page<User>> {
        self.with(|s| paginate(&s.users, page, |_| true))
    }
    async fn update_user(&self, id: UserId, patch: UserPatch) -> StoreResult<User> {
        self.with(|s| s.update_user(id, patch))
    }
    async fn delete_user(&self, id: UserId) -> StoreResult<()> {
        self.with(|s| s.delete_user(id))
    }
    async fn count_users(&self) -> StoreResult<u64> {
        self.with(|s| Ok(s.users.len() as u64))
    }

    async fn create_session(&self, session: Session) -> StoreResult<Session> {
        self.with(|s| s.create_session(session))
    }
    async fn get_session_by_token_hash(&self, token_hash: &str) -> StoreResult<Session> {
        self.with(|s| s.session_by_token_hash(token_hash))
    }
    async fn get_session(&self, id: SessionId) -> StoreResult<Session> {
        self.with(|s| row(&s.sessions, "session", id).cloned())
    }
    async fn revoke_session(&self, id: SessionId) -> StoreResult<()> {
        self.with(|s| {
            row_mut(&mut s.sessions, "session", id)?.revoked = true;
            Ok(())
        })
    }

    async fn create_project(&self, project: Project) -> StoreResult<Project> {
        self.with(|s| s.create_project(project))
    }
    async fn get_project(&self, id: ProjectId) -> StoreResult<Project> {
        self.with(|s| row(&s.projects, "project", id).cloned())
    }
    async fn list_projects(
        &self,
        member: Option<UserId>,
        page: PageRequest,
    ) -> StoreResult<Page<Project>> {
        self.with(|s| s.list_projects(member, page))
    }
    async fn update_project(
        &self,
        id: ProjectId,
        name: Option<String>,
        limits: Option<Limits>,
    ) -> StoreResult<Project> {
        self.with(|s| s.update_project(id, name, limits))
    }
    async fn delete_project(&self, id: ProjectId) -> StoreResult<()> {
        self.with(|s| s.delete_project(id))
    }

    async fn create_membership(&self, membership: Membership) -> StoreResult<Membership> {
        self.with(|s| s.create_membership(membership))
    }
    async fn get_membership(&self, id: MembershipId) -> StoreResult<Membership> {
        self.with(|s| row(&s.memberships, "membership", id).cloned())
    }
    async fn find_membership(
        &self,
        user: UserId,
        project: ProjectId,
    ) -> StoreResult<Option<Membership>> {
        self.with(|s| Ok(s.find_membership(user, project).cloned()))
    }
    async fn list_memberships(
        &self,
        user: Option<UserId>,
        project: Option<ProjectId>,
        page: PageRequest,
    ) -> StoreResult<Page<Membership>> {
        self.with(|s| {
            paginate(&s.memberships, page, |m| {
                user.is_none_or(|u| m.user_id == u) && project.is_none_or(|p| m.project_id == p)
            })
        })
    }
    async fn update_membership(
        &self,
        id: MembershipId,
        role: ProjectRole,
    ) -> StoreResult<Membership> {
        self.with(|s| {
            let membership = row_mut(&mut s.memberships, "membership", id)?;
            membership.role = role;
            Ok(membership.clone())
        })
    }
    async fn delete_membership(&self, id: MembershipId) -> StoreResult<()> {
        self.with(|s| remove(&mut s.memberships, "membership", id).map(|_| ()))
    }

    async fn create_invite(&self, invite: Invite) -> StoreResult<Invite> {
        self.with(|s| s.create_invite(invite))
    }
    async fn get_invite(&self, id: InviteId) -> StoreResult<Invite> {
        self.with(|s| row(&s.invites, "invite", id).cloned())
    }
    async fn get_invite_by_code(&self, code: &str) -> StoreResult<Invite> {
        self.with(|s| {
            s.invites
                .values()
                .find(|i| i.code == code)
                .cloned()
                .ok_or_else(|| StoreError::not_found("invite code"))
        })
    }
    async fn list_invites(
        &self,
        project: Option<ProjectId>,
        page: PageRequest,
    ) -> StoreResult<Page<Invite>> {
        self.with(|s| {
            paginate(&s.invites, page, |i| {
                project.is_none_or(|p| i.project_id == p)
            })
        })
    }
    async fn delete_invite(&self, id: InviteId) -> StoreResult<()> {
        self.with(|s| remove(&mut s.invites, "invite", id).map(|_| ()))
    }

    async fn create_connection(
        &self,
        connection: StoredConnection,
    ) -> StoreResult<StoredConnection> {
        self.with(|s| s.create_connection(connection))
    }
    async fn get_connection(&self, id: ConnectionId) -> StoreResult<StoredConnection> {
        self.with(|s| row(&s.connections, "connection", id).cloned())
    }
    async fn list_connections(&self, page: PageRequest) -> StoreResult<Page<StoredConnection>> {
        self.with(|s| paginate(&s.connections, page, |_| true))
    }
    async fn count_connections(&self) -> StoreResult<u64> {
        self.with(|s| Ok(s.connections.len() as u64))
    }
    async fn update_connection(
        &self,
        id: ConnectionId,
        patch: ConnectionPatch,
    ) -> StoreResult<StoredConnection> {
        self.with(|s| s.update_connection(id, patch))
    }
    async fn delete_connection(&self, id: ConnectionId) -> StoreResult<()> {
        self.with(|s| s.delete_connection(id))
    }

    async fn create_deployment(
        &self,
        deployment: StoredDeployment,
    ) -> StoreResult<StoredDeployment> {
        self.with(|s| s.create_deployment(deployment))
    }
    async fn get_deployment(&self, id: DeploymentId) -> StoreResult<StoredDeployment> {
        self.with(|s| row(&s.deployments, "deployment", id).cloned())
    }
    async fn get_deployment_by_name(&self, name: &str) -> StoreResult<StoredDeployment> {
        self.with(|s| {
            s.deployments
                .values()
                .find(|d| d.name == name)
                .cloned()
                .ok_or_else(|| StoreError::not_found(format_args!("deployment {name:?}")))
        })
    }
    async fn list_deployments(&self, page: PageRequest) -> StoreResult<Page<StoredDeployment>> {
        self.with(|s| paginate(&s.deployments, page, |_| true))
    }
    async fn update_deployment(
        &self,
        id: DeploymentId,
        patch: DeploymentPatch,
    ) -> StoreResult<StoredDeployment> {
        self.with(|s| s.update_deployment(id, patch))
    }
    async fn delete_deployment(&self, id: DeploymentId) -> StoreResult<()> {
        self.with(|s| s.delete_deployment(id))
    }

    async fn create_connection_deployment(
        &self,
        link: ConnectionDeployment,
    ) -> StoreResult<ConnectionDeployment> {
        self.with(|s| s.create_connection_deployment(link))
    }
    async fn get_connection_deployment(
        &self,
        id: ConnectionDeploymentId,
    ) -> StoreResult<ConnectionDeployment> {
        self.with(|s| row(&s.connection_deployments, "connection-deployment link", id).cloned())
    }
    async fn list_connection_deployments(
        &self,
        connection: Option<ConnectionId>,
        deployment: Option<DeploymentId>,
        page: PageRequest,
    ) -> StoreResult<Page<ConnectionDeployment>> {
        self.with(|s| {
            paginate(&s.connection_deployments, page, |l| {
                connection.is_none_or(|c| l.connection_id == c)
                    && deployment.is_none_or(|d| l.deployment_id == d)
            })
        })
    }
    async fn update_connection_deployment(
        &self,
        id: ConnectionDeploymentId,
        weight: u32,
    ) -> StoreResult<ConnectionDeployment> {
        self.with(|s| s.update_connection_deployment(id, weight))
    }
    async fn delete_connection_deployment(&self, id: ConnectionDeploymentId) -> StoreResult<()> {
        self.with(|s| {
            remove(
                &mut s.connection_deployments,
                "connection-deployment link",
                id,
            )?;
            s.bump();
            Ok(())
        })
    }

    async fn create_virtual_key(&self, key: StoredVirtualKey) -> StoreResult<StoredVirtualKey> {
        self.with(|s| s.create_virtual_key(key))
    }
    async fn get_virtual_key(&self, id: VirtualKeyId) -> StoreResult<StoredVirtualKey> {
        self.with(|s| row(&s.virtual_keys, "virtual key", id).cloned())
    }
    async fn get_virtual_key_by_hash(&self, key_hash: &str) -> StoreResult<StoredVirtualKey> {
        self.with(|s| {
            s.virtual_keys
                .values()
                .find(|k| k.key_hash == key_hash)
                .cloned()
                .ok_or_else(|| StoreError::not_found("virtual key hash"))
        })
    }
    async fn list_virtual_keys(
        &self,
        project: Option<ProjectId>,
        page: PageRequest,
    ) -> StoreResult<Page<StoredVirtualKey>> {
        self.with(|s| {
            paginate(&s.virtual_keys, page, |k| {
                project.is_none_or(|p| k.project_id == p)
            })
        })
    }
    async fn update_virtual_key(
        &self,
        id: VirtualKeyId,
        patch: VirtualKeyPatch,
    ) -> StoreResult<StoredVirtualKey> {
        self.with(|s| s.update_virtual_key(id, patch))
    }
    async fn delete_virtual_key(&self, id: VirtualKeyId) -> StoreResult<()> {
        self.with(|s| s.delete_virtual_key(id))
    }

    async fn create_virtual_key_deployment(
        &self,
        link: VirtualKeyDeployment,
    ) -> StoreResult<VirtualKeyDeployment> {
        self.with(|s| s.create_virtual_key_deployment(link))
    }
    async fn get_virtual_key_deployment(
        &self,
        id: VirtualKeyDeploymentId,
    ) -> StoreResult<VirtualKeyDeployment> {
        self.with(|s| {
            row(
                &s.virtual_key_deployments,
                "virtual key-deployment link",
                id,
            )
            .cloned()
        })
    }
    async fn list_virtual_key_deployments(
        &self,
        key: Option<VirtualKeyId>,
        deployment: Option<DeploymentId>,
        page: PageRequest,
    ) -> StoreResult<Page<VirtualKeyDeployment>> {
        self.with(|s| {
            paginate(&s.virtual_key_deployments, page, |l| {
                key.is_none_or(|k| l.virtual_key_id == k)
                    && deployment.is_none_or(|d| l.deployment_id == d)
            })
        })
    }
    async fn delete_virtual_key_deployment(&self, id: VirtualKeyDeploymentId) -> StoreResult<()> {
        self.with(|s| {
            remove(
                &mut s.virtual_key_deployments,
                "virtual key-deployment link",
                id,
            )?;
            s.bump();
            Ok(())
        })
    }

    async fn catalog_version(&self) -> StoreResult<i64> {
        self.with(|s| Ok(s.catalog_version))
    }
    async fn load_catalog(&self) -> StoreResult<CatalogData> {
        self.with(|s| Ok(s.load_catalog()))
    }

    async fn insert_request_logs(&self, logs: &[RequestLog]) -> StoreResult<()> {
        self.with(|s| {
            s.request_logs.extend_from_slice(logs);
            Ok(())
        })
    }
    async fn list_request_logs(
        &self,
        key: Option<VirtualKeyId>,
        limit: u32,
    ) -> StoreResult<Vec<RequestLog>> {
        self.with(|s| Ok(s.list_request_logs(key, limit)))
    }
    async fn delete_request_logs_before(&self, before: Millis) -> StoreResult<u64> {
        self.with(|s| {
            let was = s.request_logs.len();
            s.request_logs
                .retain(|l| Millis::from_system(l.started_at).0 >= before.0);
            Ok((was - s.request_logs.len()) as u64)
        })
    }
}
