//! Users, sessions, projects, memberships and invites of the [`MemoryStore`](super::MemoryStore).
//!
//! Each method checks every precondition before it changes anything. Of these rows only
//! projects are catalog-relevant (their limits), so only project writes bump the version.

use std::collections::BTreeSet;

use super::{State, exists, fresh_id, paginate, remove, row_mut};
use crate::model::ProjectId;
use crate::store::types::*;
use crate::store::{StoreError, StoreResult};

impl State {
    pub(super) fn create_user(&mut self, user: User) -> StoreResult<User> {
        fresh_id(&self.users, "user", user.id)?;
        if self.find_user_by_email(&user.email).is_some() {
            return Err(StoreError::conflict(
                "a user with this email already exists",
            ));
        }
        self.users.insert(user.id, user.clone());
        Ok(user)
    }

    /// Emails compare ASCII-case-insensitively (what SQLite's `lower()` does, too).
    fn find_user_by_email(&self, email: &str) -> Option<&User> {
        self.users
            .values()
            .find(|u| u.email.eq_ignore_ascii_case(email))
    }

    pub(super) fn user_by_email(&self, email: &str) -> StoreResult<User> {
        self.find_user_by_email(email)
            .cloned()
            .ok_or_else(|| StoreError::not_found("user with this email"))
    }

    pub(super) fn update_user(&mut self, id: UserId, patch: UserPatch) -> StoreResult<User> {
        let user = row_mut(&mut self.users, "user", id)?;
        let UserPatch {
            name,
            role,
            blocked,
            email_verified,
            password_hash,
        } = patch;
        if let Some(name) = name {
            user.name = name;
        }
        if let Some(role) = role {
            user.role = role;
        }
        if let Some(blocked) = blocked {
            user.blocked = blocked;
        }
        if let Some(email_verified) = email_verified {
            user.email_verified = email_verified;
        }
        if let Some(password_hash) = password_hash {
            user.password_hash = password_hash;
        }
        Ok(user.clone())
    }

    pub(super) fn delete_user(&mut self, id: UserId) -> StoreResult<()> {
        remove(&mut self.users, "user", id)?;
        self.sessions.retain(|_, s| s.user_id != id);
        self.memberships.retain(|_, m| m.user_id != id);
        Ok(())
    }

    pub(super) fn create_session(&mut self, session: Session) -> StoreResult<Session> {
        fresh_id(&self.sessions, "session", session.id)?;
        exists(&self.users, "user", session.user_id)?;
        if self
            .sessions
            .values()
            .any(|s| s.token_hash == session.token_hash)
        {
            return Err(StoreError::conflict(
                "a session with this token hash already exists",
            ));
        }
        self.sessions.insert(session.id, session.clone());
        Ok(session)
    }

    pub(super) fn session_by_token_hash(&self, token_hash: &str) -> StoreResult<Session> {
        self.sessions
            .values()
            .find(|s| s.token_hash == token_hash)
            .cloned()
            .ok_or_else(|| StoreError::not_found("session token hash"))
    }

    pub(super) fn create_project(&mut self, project: Project) -> StoreResult<Project> {
        fresh_id(&self.projects, "project", project.id)?;
        self.projects.insert(project.id, project.clone());
        self.bump();
        Ok(project)
    }

    pub(super) fn list_projects(
        &self,
        member: Option<UserId>,
        page: PageRequest,
    ) -> StoreResult<Page<Project>> {
        match member {
            None => paginate(&self.projects, page, |_| true),
            Some(user) => {
                let of_user: BTreeSet<ProjectId> = self
                    .memberships
                    .values()
                    .filter(|m| m.user_id == user)
                    .map(|m| m.project_id)
                    .collect();
                paginate(&self.projects, page, |p| of_user.contains(&p.id))
            }
        }
    }

    pub(super) fn update_project(
        &mut self,
        id: ProjectId,
        name: Option<String>,
        limits: Option<Limits>,
    ) -> StoreResult<Project> {
        let project = row_mut(&mut self.projects, "project", id)?;
        if let Some(name) = name {
            project.name = name;
        }
        if let Some(limits) = limits {
            project.limits = limits;
        }
        let project = project.clone();
        self.bump();
        Ok(project)
    }

    pub(super) fn delete_project(&mut self, id: ProjectId) -> StoreResult<()> {
        remove(&mut self.projects, "project", id)?;
        let keys: Vec<_> = self
            .virtual_keys
            .values()
            .filter(|k| k.project_id == id)
            .map(|k| k.id)
            .collect();
        self.virtual_keys.retain(|_, k| k.project_id != id);
        self.virtual_key_deployments
            .retain(|_, l| !keys.contains(&l.virtual_key_id));
        self.memberships.retain(|_, m| m.project_id != id);
        self.invites.retain(|_, i| i.project_id != id);
        self.bump();
        Ok(())
    }

    pub(super) fn create_membership(&mut self, membership: Membership) -> StoreResult<Membership> {
        fresh_id(&self.memberships, "membership", membership.id)?;
        exists(&self.users, "user", membership.user_id)?;
        exists(&self.projects, "project", membership.project_id)?;
        if self
            .find_membership(membership.user_id, membership.project_id)
            .is_some()
        {
            return Err(StoreError::conflict(format!(
                "user {} is already a member of project {}",
                membership.user_id, membership.project_id
            )));
        }
        self.memberships.insert(membership.id, membership.clone());
        Ok(membership)
    }

    pub(super) fn find_membership(&self, user: UserId, project: ProjectId) -> Option<&Membership> {
        self.memberships
            .values()
            .find(|m| m.user_id == user && m.project_id == project)
    }

    pub(super) fn create_invite(&mut self, invite: Invite) -> StoreResult<Invite> {
        fresh_id(&self.invites, "invite", invite.id)?;
        exists(&self.projects, "project", invite.project_id)?;
        if self.invites.values().any(|i| i.code == invite.code) {
            return Err(StoreError::conflict(
                "an invite with this code already exists",
            ));
        }
        self.invites.insert(invite.id, invite.clone());
        Ok(invite)
    }
}
