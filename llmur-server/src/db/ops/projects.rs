//! Projects, memberships and invites. Of these only projects are catalog-relevant (their
//! limits, and deleting one deletes its keys), so only project writes bump the version.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use llmur_core::store::types::*;
use llmur_core::{ProjectId, StoreError, StoreResult};

use super::{Db, bump, require, require_rows};
use crate::db::error::on_write;
use crate::db::rows::{
    InviteRow, MembershipRow, ProjectChanges, ProjectRow, Record, fetch_limit, id_text, into_page,
    missing, role_text,
};
use crate::db::schema::{invites, memberships, projects};

pub(super) async fn create_project(db: &Db, project: Project) -> StoreResult<Project> {
    let row = ProjectRow::new(&project)?;
    db.write(move |conn| {
        Box::pin(async move {
            diesel::insert_into(projects::table)
                .values(&row)
                .execute(conn)
                .await
                .map_err(on_write("project"))?;
            bump(conn).await?;
            Ok(project)
        })
    })
    .await
}

pub(super) async fn get_project(db: &Db, id: ProjectId) -> StoreResult<Project> {
    db.read(move |conn| {
        Box::pin(async move {
            let row = projects::table
                .find(id_text(id.0))
                .select(ProjectRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row.ok_or_else(|| missing("project", id))?.into_domain()?)
        })
    })
    .await
}

pub(super) async fn list_projects(
    db: &Db,
    member: Option<UserId>,
    page: PageRequest,
) -> StoreResult<Page<Project>> {
    let limit = fetch_limit(&page)?;
    db.read(move |conn| {
        Box::pin(async move {
            let mut query = projects::table
                .select(ProjectRow::as_select())
                .order(projects::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(user) = member {
                query = query.filter(
                    projects::id.eq_any(
                        memberships::table
                            .filter(memberships::user_id.eq(id_text(user.0)))
                            .select(memberships::project_id),
                    ),
                );
            }
            if let Some(after) = page.after {
                query = query.filter(projects::id.gt(id_text(after)));
            }
            Ok(into_page(query.load(conn).await?, &page)?)
        })
    })
    .await
}

pub(super) async fn update_project(
    db: &Db,
    id: ProjectId,
    name: Option<String>,
    limits: Option<Limits>,
) -> StoreResult<Project> {
    let changes = ProjectChanges::new(name, limits)?;
    db.write(move |conn| {
        Box::pin(async move {
            let key = id_text(id.0);
            match changes {
                Some(changes) => {
                    let touched = diesel::update(projects::table.find(&key))
                        .set(&changes)
                        .execute(conn)
                        .await?;
                    require_rows(touched, "project", id)?;
                }
                None => require(exists!(conn, projects, &key).await?, "project", id)?,
            }
            bump(conn).await?;
            let row = projects::table
                .find(&key)
                .select(ProjectRow::as_select())
                .first(conn)
                .await?;
            Ok(row.into_domain()?)
        })
    })
    .await
}

pub(super) async fn delete_project(db: &Db, id: ProjectId) -> StoreResult<()> {
    db.write(move |conn| {
        Box::pin(async move {
            // Keys (and their links), memberships and invites cascade.
            let touched = diesel::delete(projects::table.find(id_text(id.0)))
                .execute(conn)
                .await?;
            require_rows(touched, "project", id)?;
            bump(conn).await
        })
    })
    .await
}

pub(super) async fn create_membership(db: &Db, membership: Membership) -> StoreResult<Membership> {
    let row = MembershipRow::new(&membership)?;
    db.write(move |conn| {
        Box::pin(async move {
            let (user, project) = (membership.user_id, membership.project_id);
            require(exists!(conn, users, id_text(user.0)).await?, "user", user)?;
            require(
                exists!(conn, projects, id_text(project.0)).await?,
                "project",
                project,
            )?;
            diesel::insert_into(memberships::table)
                .values(&row)
                .execute(conn)
                .await
                .map_err(on_write("membership"))?;
            Ok(membership)
        })
    })
    .await
}

pub(super) async fn get_membership(db: &Db, id: MembershipId) -> StoreResult<Membership> {
    db.read(move |conn| {
        Box::pin(async move {
            let row = memberships::table
                .find(id_text(id.0))
                .select(MembershipRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row
                .ok_or_else(|| missing("membership", id))?
                .into_domain()?)
        })
    })
    .await
}

pub(super) async fn find_membership(
    db: &Db,
    user: UserId,
    project: ProjectId,
) -> StoreResult<Option<Membership>> {
    db.read(move |conn| {
        Box::pin(async move {
            let row = memberships::table
                .filter(memberships::user_id.eq(id_text(user.0)))
                .filter(memberships::project_id.eq(id_text(project.0)))
                .select(MembershipRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row.map(Record::into_domain).transpose()?)
        })
    })
    .await
}

pub(super) async fn list_memberships(
    db: &Db,
    user: Option<UserId>,
    project: Option<ProjectId>,
    page: PageRequest,
) -> StoreResult<Page<Membership>> {
    let limit = fetch_limit(&page)?;
    db.read(move |conn| {
        Box::pin(async move {
            let mut query = memberships::table
                .select(MembershipRow::as_select())
                .order(memberships::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(user) = user {
                query = query.filter(memberships::user_id.eq(id_text(user.0)));
            }
            if let Some(project) = project {
                query = query.filter(memberships::project_id.eq(id_text(project.0)));
            }
            if let Some(after) = page.after {
                query = query.filter(memberships::id.gt(id_text(after)));
            }
            Ok(into_page(query.load(conn).await?, &page)?)
        })
    })
    .await
}

pub(super) async fn update_membership(
    db: &Db,
    id: MembershipId,
    role: ProjectRole,
) -> StoreResult<Membership> {
    let role = role_text(role)?;
    db.write(move |conn| {
        Box::pin(async move {
            let key = id_text(id.0);
            let touched = diesel::update(memberships::table.find(&key))
                .set(memberships::role.eq(role))
                .execute(conn)
                .await?;
            require_rows(touched, "membership", id)?;
            let row = memberships::table
                .find(&key)
                .select(MembershipRow::as_select())
                .first(conn)
                .await?;
            Ok(row.into_domain()?)
        })
    })
    .await
}

pub(super) async fn delete_membership(db: &Db, id: MembershipId) -> StoreResult<()> {
    db.write(move |conn| {
        Box::pin(async move {
            let touched = diesel::delete(memberships::table.find(id_text(id.0)))
                .execute(conn)
                .await?;
            require_rows(touched, "membership", id)
        })
    })
    .await
}

pub(super) async fn create_invite(db: &Db, invite: Invite) -> StoreResult<Invite> {
    let row = InviteRow::new(&invite)?;
    db.write(move |conn| {
        Box::pin(async move {
            let project = invite.project_id;
            require(
                exists!(conn, projects, id_text(project.0)).await?,
                "project",
                project,
            )?;
            diesel::insert_into(invites::table)
                .values(&row)
                .execute(conn)
                .await
                .map_err(on_write("invite"))?;
            Ok(invite)
        })
    })
    .await
}

pub(super) async fn get_invite(db: &Db, id: InviteId) -> StoreResult<Invite> {
    db.read(move |conn| {
        Box::pin(async move {
            let row = invites::table
                .find(id_text(id.0))
                .select(InviteRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row.ok_or_else(|| missing("invite", id))?.into_domain()?)
        })
    })
    .await
}

pub(super) async fn get_invite_by_code(db: &Db, code: &str) -> StoreResult<Invite> {
    let code = code.to_owned();
    db.read(move |conn| {
        Box::pin(async move {
            let row = invites::table
                .filter(invites::code.eq(code))
                .select(InviteRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row
                .ok_or_else(|| StoreError::not_found("invite code"))?
                .into_domain()?)
        })
    })
    .await
}

pub(super) async fn list_invites(
    db: &Db,
    project: Option<ProjectId>,
    page: PageRequest,
) -> StoreResult<Page<Invite>> {
    let limit = fetch_limit(&page)?;
    db.read(move |conn| {
        Box::pin(async move {
            let mut query = invites::table
                .select(InviteRow::as_select())
                .order(invites::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(project) = project {
                query = query.filter(invites::project_id.eq(id_text(project.0)));
            }
            if let Some(after) = page.after {
                query = query.filter(invites::id.gt(id_text(after)));
            }
            Ok(into_page(query.load(conn).await?, &page)?)
        })
    })
    .await
}

pub(super) async fn delete_invite(db: &Db, id: InviteId) -> StoreResult<()> {
    db.write(move |conn| {
        Box::pin(async move {
            let touched = diesel::delete(invites::table.find(id_text(id.0)))
                .execute(conn)
                .await?;
            require_rows(touched, "invite", id)
        })
    })
    .await
}
