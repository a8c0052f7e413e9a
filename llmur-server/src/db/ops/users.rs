//! Users and sessions. Not catalog-relevant: nothing here bumps the catalog version.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use llmur_core::StoreResult;
use llmur_core::store::types::*;

use super::{Db, require, require_rows};
use crate::db::error::on_write;
use crate::db::rows::{
    Record, SessionRow, UserChanges, UserRow, email_key, fetch_limit, id_text, into_page, missing,
};
use crate::db::schema::{sessions, users};

pub(super) async fn create_user(db: &Db, user: User) -> StoreResult<User> {
    let row = UserRow::new(&user)?;
    db.write(move |conn| {
        Box::pin(async move {
            diesel::insert_into(users::table)
                .values(&row)
                .execute(conn)
                .await
                .map_err(on_write("user"))?;
            Ok(user)
        })
    })
    .await
}

pub(super) async fn get_user(db: &Db, id: UserId) -> StoreResult<User> {
    db.read(move |conn| {
        Box::pin(async move {
            let row = users::table
                .find(id_text(id.0))
                .select(UserRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row.ok_or_else(|| missing("user", id))?.into_domain()?)
        })
    })
    .await
}

pub(super) async fn get_user_by_email(db: &Db, email: &str) -> StoreResult<User> {
    let key = email_key(email);
    db.read(move |conn| {
        Box::pin(async move {
            let row = users::table
                .filter(users::email_key.eq(key))
                .select(UserRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row
                .ok_or_else(|| llmur_core::StoreError::not_found("user with this email"))?
                .into_domain()?)
        })
    })
    .await
}

pub(super) async fn list_users(db: &Db, page: PageRequest) -> StoreResult<Page<User>> {
    let limit = fetch_limit(&page)?;
    db.read(move |conn| {
        Box::pin(async move {
            let mut query = users::table
                .select(UserRow::as_select())
                .order(users::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(after) = page.after {
                query = query.filter(users::id.gt(id_text(after)));
            }
            let rows = query.load(conn).await?;
            Ok(into_page(rows, &page)?)
        })
    })
    .await
}

pub(super) async fn update_user(db: &Db, id: UserId, patch: UserPatch) -> StoreResult<User> {
    let changes = UserChanges::new(patch)?;
    db.write(move |conn| {
        Box::pin(async move {
            let key = id_text(id.0);
            if let Some(changes) = changes {
                let touched = diesel::update(users::table.find(&key))
                    .set(&changes)
                    .execute(conn)
                    .await?;
                require_rows(touched, "user", id)?;
            }
            let row = users::table
                .find(&key)
                .select(UserRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row.ok_or_else(|| missing("user", id))?.into_domain()?)
        })
    })
    .await
}

pub(super) async fn delete_user(db: &Db, id: UserId) -> StoreResult<()> {
    db.write(move |conn| {
        Box::pin(async move {
            // Sessions and memberships go with the user (ON DELETE CASCADE).
            let touched = diesel::delete(users::table.find(id_text(id.0)))
                .execute(conn)
                .await?;
            require_rows(touched, "user", id)
        })
    })
    .await
}

pub(super) async fn count_users(db: &Db) -> StoreResult<u64> {
    db.read(move |conn| {
        Box::pin(async move {
            let n: i64 = users::table.count().get_result(conn).await?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    })
    .await
}

pub(super) async fn create_session(db: &Db, session: Session) -> StoreResult<Session> {
    let row = SessionRow::new(&session);
    db.write(move |conn| {
        Box::pin(async move {
            let user = session.user_id;
            require(exists!(conn, users, id_text(user.0)).await?, "user", user)?;
            diesel::insert_into(sessions::table)
                .values(&row)
                .execute(conn)
                .await
                .map_err(on_write("session"))?;
            Ok(session)
        })
    })
    .await
}

pub(super) async fn get_session_by_token_hash(db: &Db, token_hash: &str) -> StoreResult<Session> {
    let token_hash = token_hash.to_owned();
    db.read(move |conn| {
        Box::pin(async move {
            let row = sessions::table
                .filter(sessions::token_hash.eq(token_hash))
                .select(SessionRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row
                .ok_or_else(|| llmur_core::StoreError::not_found("session token hash"))?
                .into_domain()?)
        })
    })
    .await
}

pub(super) async fn get_session(db: &Db, id: SessionId) -> StoreResult<Session> {
    db.read(move |conn| {
        Box::pin(async move {
            let row = sessions::table
                .find(id_text(id.0))
                .select(SessionRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row.ok_or_else(|| missing("session", id))?.into_domain()?)
        })
    })
    .await
}

pub(super) async fn revoke_session(db: &Db, id: SessionId) -> StoreResult<()> {
    db.write(move |conn| {
        Box::pin(async move {
            let touched = diesel::update(sessions::table.find(id_text(id.0)))
                .set(sessions::revoked.eq(true))
                .execute(conn)
                .await?;
            require_rows(touched, "session", id)
        })
    })
    .await
}
