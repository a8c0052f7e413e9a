//! [`Store`] for this backend's `Db`: every method delegates to the query of the same
//! name in the sibling modules.

use async_trait::async_trait;
use llmur_core::store::types::*;
use llmur_core::{
    ConnectionId, DeploymentId, ProjectId, RequestLog, Store, StoreResult, VirtualKeyId,
};

use super::{Db, catalog, keys, projects, routing, users};

#[async_trait]
impl Store for Db {
    async fn create_user(&self, user: User) -> StoreResult<User> {
        users::create_user(self, user).await
    }
    async fn get_user(&self, id: UserId) -> StoreResult<User> {
        users::get_user(self, id).await
    }
    async fn get_user_by_email(&self, email: &str) -> StoreResult<User> {
        users::get_user_by_email(self, email).await
    }
    async fn list_users(&self, page: PageRequest) -> StoreResult<Page<User>> {
        users::list_users(self, page).await
    }
    async fn update_user(&self, id: UserId, patch: UserPatch) -> StoreResult<User> {
        users::update_user(self, id, patch).await
    }
    async fn delete_user(&self, id: UserId) -> StoreResult<()> {
        users::delete_user(self, id).await
    }
    async fn count_users(&self) -> StoreResult<u64> {
        users::count_users(self).await
    }

    async fn create_session(&self, session: Session) -> StoreResult<Session> {
        users::create_session(self, session).await
    }
    async fn get_session_by_token_hash(&self, token_hash: &str) -> StoreResult<Session> {
        users::get_session_by_token_hash(self, token_hash).await
    }
    async fn get_session(&self, id: SessionId) -> StoreResult<Session> {
        users::get_session(self, id).await
    }
    async fn revoke_session(&self, id: SessionId) -> StoreResult<()> {
        users::revoke_session(self, id).await
    }

    async fn create_project(&self, project: Project) -> StoreResult<Project> {
        projects::create_project(self, project).await
    }
    async fn get_project(&self, id: ProjectId) -> StoreResult<Project> {
        projects::get_project(self, id).await
    }
    async fn list_projects(
        &self,
        member: Option<UserId>,
        page: PageRequest,
    ) -> StoreResult<Page<Project>> {
        projects::list_projects(self, member, page).await
    }
    async fn update_project(
        &self,
        id: ProjectId,
        name: Option<String>,
        limits: Option<Limits>,
    ) -> StoreResult<Project> {
        projects::update_project(self, id, name, limits).await
    }
    async fn delete_project(&self, id: ProjectId) -> StoreResult<()> {
        projects::delete_project(self, id).await
    }

    async fn create_membership(&self, membership: Membership) -> StoreResult<Membership> {
        projects::create_membership(self, membership).await
    }
    async fn get_membership(&self, id: MembershipId) -> StoreResult<Membership> {
        projects::get_membership(self, id).await
    }
    async fn find_membership(
        &self,
        user: UserId,
        project: ProjectId,
    ) -> StoreResult<Option<Membership>> {
        projects::find_membership(self, user, project).await
    }
    async fn list_memberships(
        &self,
        user: Option<UserId>,
        project: Option<ProjectId>,
        page: PageRequest,
    ) -> StoreResult<Page<Membership>> {
        projects::list_memberships(self, user, project, page).await
    }
    async fn update_membership(
        &self,
        id: MembershipId,
        role: ProjectRole,
    ) -> StoreResult<Membership> {
        projects::update_membership(self, id, role).await
    }
    async fn delete_membership(&self, id: MembershipId) -> StoreResult<()> {
        projects::delete_membership(self, id).await
    }

    async fn create_invite(&self, invite: Invite) -> StoreResult<Invite> {
        projects::create_invite(self, invite).await
    }
    async fn get_invite(&self, id: InviteId) -> StoreResult<Invite> {
        projects::get_invite(self, id).await
    }
    async fn get_invite_by_code(&self, code: &str) -> StoreResult<Invite> {
        projects::get_invite_by_code(self, code).await
    }
    async fn list_invites(
        &self,
        project: Option<ProjectId>,
        page: PageRequest,
    ) -> StoreResult<Page<Invite>> {
        projects::list_invites(self, project, page).await
    }
    async fn delete_invite(&self, id: InviteId) -> StoreResult<()> {
        projects::delete_invite(self, id).await
    }

    async fn create_connection(
        &self,
        connection: StoredConnection,
    ) -> StoreResult<StoredConnection> {
        routing::create_connection(self, connection).await
    }
    async fn get_connection(&self, id: ConnectionId) -> StoreResult<StoredConnection> {
        routing::get_connection(self, id).await
    }
    async fn list_connections(&self, page: PageRequest) -> StoreResult<Page<StoredConnection>> {
        routing::list_connections(self, page).await
    }
    async fn count_connections(&self) -> StoreResult<u64> {
        routing::count_connections(self).await
    }
    async fn update_connection(
        &self,
        id: ConnectionId,
        patch: ConnectionPatch,
    ) -> StoreResult<StoredConnection> {
        routing::update_connection(self, id, patch).await
    }
    async fn delete_connection(&self, id: ConnectionId) -> StoreResult<()> {
        routing::delete_connection(self, id).await
    }

    async fn create_deployment(
        &self,
        deployment: StoredDeployment,
    ) -> StoreResult<StoredDeployment> {
        routing::create_deployment(self, deployment).await
    }
    async fn get_deployment(&self, id: DeploymentId) -> StoreResult<StoredDeployment> {
        routing::get_deployment(self, id).await
    }
    async fn get_deployment_by_name(&self, name: &str) -> StoreResult<StoredDeployment> {
        routing::get_deployment_by_name(self, name).await
    }
    async fn list_deployments(&self, page: PageRequest) -> StoreResult<Page<StoredDeployment>> {
        routing::list_deployments(self, page).await
    }
    async fn update_deployment(
        &self,
        id: DeploymentId,
        patch: DeploymentPatch,
    ) -> StoreResult<StoredDeployment> {
        routing::update_deployment(self, id, patch).await
    }
    async fn delete_deployment(&self, id: DeploymentId) -> StoreResult<()> {
        routing::delete_deployment(self, id).await
    }

    async fn create_connection_deployment(
        &self,
        link: ConnectionDeployment,
    ) -> StoreResult<ConnectionDeployment> {
        routing::create_connection_deployment(self, link).await
    }
    async fn get_connection_deployment(
        &self,
        id: ConnectionDeploymentId,
    ) -> StoreResult<ConnectionDeployment> {
        routing::get_connection_deployment(self, id).await
    }
    async fn list_connection_deployments(
        &self,
        connection: Option<ConnectionId>,
        deployment: Option<DeploymentId>,
        page: PageRequest,
    ) -> StoreResult<Page<ConnectionDeployment>> {
        routing::list_connection_deployments(self, connection, deployment, page).await
    }
    async fn update_connection_deployment(
        &self,
        id: ConnectionDeploymentId,
        weight: u32,
    ) -> StoreResult<ConnectionDeployment> {
        routing::update_connection_deployment(self, id, weight).await
    }
    async fn delete_connection_deployment(&self, id: ConnectionDeploymentId) -> StoreResult<()> {
        routing::delete_connection_deployment(self, id).await
    }

    async fn create_virtual_key(&self, key: StoredVirtualKey) -> StoreResult<StoredVirtualKey> {
        keys::create_virtual_key(self, key).await
    }
    async fn get_virtual_key(&self, id: VirtualKeyId) -> StoreResult<StoredVirtualKey> {
        keys::get_virtual_key(self, id).await
    }
    async fn get_virtual_key_by_hash(&self, key_hash: &str) -> StoreResult<StoredVirtualKey> {
        keys::get_virtual_key_by_hash(self, key_hash).await
    }
    async fn list_virtual_keys(
        &self,
        project: Option<ProjectId>,
        page: PageRequest,
    ) -> StoreResult<Page<StoredVirtualKey>> {
        keys::list_virtual_keys(self, project, page).await
    }
    async fn update_virtual_key(
        &self,
        id: VirtualKeyId,
        patch: VirtualKeyPatch,
    ) -> StoreResult<StoredVirtualKey> {
        keys::update_virtual_key(self, id, patch).await
    }
    async fn delete_virtual_key(&self, id: VirtualKeyId) -> StoreResult<()> {
        keys::delete_virtual_key(self, id).await
    }

    async fn create_virtual_key_deployment(
        &self,
        link: VirtualKeyDeployment,
    ) -> StoreResult<VirtualKeyDeployment> {
        keys::create_virtual_key_deployment(self, link).await
    }
    async fn get_virtual_key_deployment(
        &self,
        id: VirtualKeyDeploymentId,
    ) -> StoreResult<VirtualKeyDeployment> {
        keys::get_virtual_key_deployment(self, id).await
    }
    async fn list_virtual_key_deployments(
        &self,
        key: Option<VirtualKeyId>,
        deployment: Option<DeploymentId>,
        page: PageRequest,
    ) -> StoreResult<Page<VirtualKeyDeployment>> {
        keys::list_virtual_key_deployments(self, key, deployment, page).await
    }
    async fn delete_virtual_key_deployment(&self, id: VirtualKeyDeploymentId) -> StoreResult<()> {
        keys::delete_virtual_key_deployment(self, id).await
    }

    async fn catalog_version(&self) -> StoreResult<i64> {
        catalog::catalog_version(self).await
    }
    async fn load_catalog(&self) -> StoreResult<CatalogData> {
        catalog::load_catalog(self).await
    }

    async fn insert_request_logs(&self, logs: &[RequestLog]) -> StoreResult<()> {
        catalog::insert_request_logs(self, logs).await
    }
    async fn list_request_logs(
        &self,
        key: Option<VirtualKeyId>,
        limit: u32,
    ) -> StoreResult<Vec<RequestLog>> {
        catalog::list_request_logs(self, key, limit).await
    }
    async fn delete_request_logs_before(&self, before: Millis) -> StoreResult<u64> {
        catalog::delete_request_logs_before(self, before).await
    }
}
