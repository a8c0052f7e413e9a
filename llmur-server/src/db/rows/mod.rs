//! Row structs for the tables in [`schema`](super::schema) and their conversions to and
//! from the store records, plus pagination.
//!
//! Owns: the column encodings — UUIDs as lowercase hyphenated text, enums as their serde
//! (API) names, limits and prices as JSON text, durations as microseconds, timestamps as
//! Unix milliseconds. Must not touch: connections or queries; everything here is pure and
//! backend-agnostic (the derives are generic over the diesel backend).

use std::time::Duration;

use diesel::backend::Backend;
use diesel::prelude::*;
use diesel::serialize::{Output, ToSql};
use diesel::sql_types::Text;
use llmur_core::store::types::*;
use llmur_core::{ProjectId, StoreError, StoreResult};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::{internal, invalid};
use super::schema::*;

/// The largest page a list may ask for.
const MAX_PAGE: u32 = 1000;

/// The largest link weight.
const MAX_WEIGHT: u32 = 100;

/// The text form of an id column.
pub(crate) fn id_text(id: Uuid) -> String {
    IdText::new(id).as_str().to_owned()
}

/// An id column's text held inline: the 36 characters `id_text` writes, without a `String`
/// (a request-log row has five ids, one row for every request).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdText([u8; 36]);

impl IdText {
    pub(crate) fn new(id: Uuid) -> Self {
        let mut text = [0u8; 36];
        id.hyphenated().encode_lower(&mut text);
        Self(text)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Always ASCII: hex digits and hyphens.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for IdText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<DB> ToSql<Text, DB> for IdText
where
    DB: Backend,
    str: ToSql<Text, DB>,
{
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> diesel::serialize::Result {
        <str as ToSql<Text, DB>>::to_sql(self.as_str(), out)
    }
}

fn parse_id(text: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(text).map_err(|e| internal(format!("corrupt id {text:?} in the database: {e}")))
}

/// An enum as its serde name (`"round_robin"`, `"openai/v1"`, ...).
fn enum_text<T: Serialize>(value: &T) -> StoreResult<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        Ok(other) => Err(internal(format!("enum encodes as {other}, not a string"))),
        Err(e) => Err(internal(format!("cannot encode an enum: {e}"))),
    }
}

fn parse_enum<T: DeserializeOwned>(text: &str, what: &str) -> StoreResult<T> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|e| internal(format!("corrupt {what} {text:?} in the database: {e}")))
}

fn json_text<T: Serialize>(value: &T, what: &str) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| invalid(format!("cannot store the {what}: {e}")))
}

fn parse_json<T: DeserializeOwned>(text: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| internal(format!("corrupt {what} in the database: {e}")))
}

fn to_i64(value: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| invalid(format!("{what} {value} is too large to store")))
}

fn to_u64(value: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| internal(format!("corrupt {what} {value} in the database")))
}

fn micros(d: Duration, what: &str) -> StoreResult<i64> {
    i64::try_from(d.as_micros()).map_err(|_| invalid(format!("{what} is too long to store")))
}

fn from_micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// `Invalid` unless `weight` is in 0..=100; the weight as an INTEGER column value.
pub(crate) fn weight_value(weight: u32) -> StoreResult<i32> {
    if weight > MAX_WEIGHT {
        return Err(invalid(format!(
            "weight {weight} is outside 0..={MAX_WEIGHT}"
        )));
    }
    i32::try_from(weight).map_err(|_| invalid(format!("weight {weight} is too large")))
}

/// The ASCII-lowercased email that uniqueness and look-ups compare.
pub(crate) fn email_key(email: &str) -> String {
    email.to_ascii_lowercase()
}

/// A row that becomes a store record.
pub(crate) trait Record: Sized {
    /// The store record.
    type Domain;
    /// The row's id column.
    fn id(&self) -> &str;
    /// The record.
    fn into_domain(self) -> StoreResult<Self::Domain>;
}

/// How many rows a list fetches for `page`: one more than it returns, to know whether
/// another page follows. `Invalid` outside 1..=1000.
pub(crate) fn fetch_limit(page: &PageRequest) -> StoreResult<i64> {
    if page.limit == 0 || page.limit > MAX_PAGE {
        return Err(invalid(format!(
            "page limit {} is outside 1..={MAX_PAGE}",
            page.limit
        )));
    }
    Ok(i64::from(page.limit) + 1)
}

/// The page made of `rows` (fetched ascending by id with [`fetch_limit`]).
pub(crate) fn into_page<R: Record>(
    mut rows: Vec<R>,
    page: &PageRequest,
) -> StoreResult<Page<R::Domain>> {
    let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| parse_id(r.id())).transpose()?
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(Record::into_domain)
        .collect::<StoreResult<_>>()?;
    Ok(Page { items, next })
}

/// Converts every row.
pub(crate) fn all<R: Record>(rows: Vec<R>) -> StoreResult<Vec<R::Domain>> {
    rows.into_iter().map(Record::into_domain).collect()
}

mod catalog;

pub(crate) use catalog::{
    ConnectionChanges, ConnectionDeploymentRow, ConnectionRow, DeploymentChanges, DeploymentRow,
    NewRequestLogRow, RequestLogRow, VirtualKeyChanges, VirtualKeyDeploymentRow, VirtualKeyRow,
    request_log_columns,
};

// --- users and sessions

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub(crate) struct UserRow {
    id: String,
    name: String,
    email: String,
    email_key: String,
    role: String,
    blocked: bool,
    email_verified: bool,
    password_hash: String,
    created_at: i64,
}

impl UserRow {
    pub(crate) fn new(u: &User) -> StoreResult<Self> {
        Ok(Self {
            id: id_text(u.id.0),
            name: u.name.clone(),
            email: u.email.clone(),
            email_key: email_key(&u.email),
            role: enum_text(&u.role)?,
            blocked: u.blocked,
            email_verified: u.email_verified,
            password_hash: u.password_hash.clone(),
            created_at: u.created_at.0,
        })
    }
}

impl Record for UserRow {
    type Domain = User;
    fn id(&self) -> &str {
        &self.id
    }
    fn into_domain(self) -> StoreResult<User> {
        Ok(User {
            id: UserId(parse_id(&self.id)?),
            name: self.name,
            email: self.email,
            role: parse_enum(&self.role, "user role")?,
            blocked: self.blocked,
            email_verified: self.email_verified,
            password_hash: self.password_hash,
            created_at: Millis(self.created_at),
        })
    }
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = users)]
pub(crate) struct UserChanges {
    name: Option<String>,
    role: Option<String>,
    blocked: Option<bool>,
    email_verified: Option<bool>,
    password_hash: Option<String>,
}

impl UserChanges {
    /// The changes, or `None` when the patch changes nothing.
    pub(crate) fn new(p: UserPatch) -> StoreResult<Option<Self>> {
        if p == UserPatch::default() {
            return Ok(None);
        }
        Ok(Some(Self {
            name: p.name,
            role: p.role.as_ref().map(enum_text).transpose()?,
            blocked: p.blocked,
            email_verified: p.email_verified,
            password_hash: p.password_hash,
        }))
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub(crate) struct SessionRow {
    id: String,
    user_id: String,
    token_hash: String,
    created_at: i64,
    expires_at: i64,
    revoked: bool,
}

impl SessionRow {
    pub(crate) fn new(s: &Session) -> Self {
        Self {
            id: id_text(s.id.0),
            user_id: id_text(s.user_id.0),
            token_hash: s.token_hash.clone(),
            created_at: s.created_at.0,
            expires_at: s.expires_at.0,
            revoked: s.revoked,
        }
    }
}

impl Record for SessionRow {
    type Domain = Session;
    fn id(&self) -> &str {
        &self.id
    }
    fn into_domain(self) -> StoreResult<Session> {
        Ok(Session {
            id: SessionId(parse_id(&self.id)?),
            user_id: UserId(parse_id(&self.user_id)?),
            token_hash: self.token_hash,
            created_at: Millis(self.created_at),
            expires_at: Millis(self.expires_at),
            revoked: self.revoked,
        })
    }
}

// --- projects, memberships, invites

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = projects)]
pub(crate) struct ProjectRow {
    id: String,
    name: String,
    limits: String,
    created_at: i64,
}

impl ProjectRow {
    pub(crate) fn new(p: &Project) -> StoreResult<Self> {
        Ok(Self {
            id: id_text(p.id.0),
            name: p.name.clone(),
            limits: limits_text(&p.limits)?,
            created_at: p.created_at.0,
        })
    }
}

impl Record for ProjectRow {
    type Domain = Project;
    fn id(&self) -> &str {
        &self.id
    }
    fn into_domain(self) -> StoreResult<Project> {
        Ok(Project {
            id: ProjectId(parse_id(&self.id)?),
            name: self.name,
            limits: parse_json(&self.limits, "limits")?,
            created_at: Millis(self.created_at),
        })
    }
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = projects)]
pub(crate) struct ProjectChanges {
    name: Option<String>,
    limits: Option<String>,
}

impl ProjectChanges {
    /// The changes, or `None` when nothing changes.
    pub(crate) fn new(name: Option<String>, limits: Option<Limits>) -> StoreResult<Option<Self>> {
        if name.is_none() && limits.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            name,
            limits: limits.as_ref().map(limits_text).transpose()?,
        }))
    }
}

/// Limits as JSON text.
pub(crate) fn limits_text(limits: &Limits) -> StoreResult<String> {
    json_text(limits, "limits")
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = memberships)]
pub(crate) struct MembershipRow {
    id: String,
    user_id: String,
    project_id: String,
    role: String,
}

impl MembershipRow {
    pub(crate) fn new(m: &Membership) -> StoreResult<Self> {
        Ok(Self {
            id: id_text(m.id.0),
            user_id: id_text(m.user_id.0),
            project_id: id_text(m.project_id.0),
            role: enum_text(&m.role)?,
        })
    }
}

impl Record for MembershipRow {
    type Domain = Membership;
    fn id(&self) -> &str {
        &self.id
    }
    fn into_domain(self) -> StoreResult<Membership> {
        Ok(Membership {
            id: MembershipId(parse_id(&self.id)?),
            user_id: UserId(parse_id(&self.user_id)?),
            project_id: ProjectId(parse_id(&self.project_id)?),
            role: parse_enum(&self.role, "project role")?,
        })
    }
}

/// A project role as column text.
pub(crate) fn role_text(role: ProjectRole) -> StoreResult<String> {
    enum_text(&role)
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = invites)]
pub(crate) struct InviteRow {
    id: String,
    project_id: String,
    code: String,
    role: String,
    valid_until: Option<i64>,
    created_at: i64,
}

impl InviteRow {
    pub(crate) fn new(i: &Invite) -> StoreResult<Self> {
        Ok(Self {
            id: id_text(i.id.0),
            project_id: id_text(i.project_id.0),
            code: i.code.clone(),
            role: enum_text(&i.role)?,
            valid_until: i.valid_until.map(|m| m.0),
            created_at: i.created_at.0,
        })
    }
}

impl Record for InviteRow {
    type Domain = Invite;
    fn id(&self) -> &str {
        &self.id
    }
    fn into_domain(self) -> StoreResult<Invite> {
        Ok(Invite {
            id: InviteId(parse_id(&self.id)?),
            project_id: ProjectId(parse_id(&self.project_id)?),
            code: self.code,
            role: parse_enum(&self.role, "project role")?,
            valid_until: self.valid_until.map(Millis),
            created_at: Millis(self.created_at),
        })
    }
}

/// A `NotFound` for the `what` with `id`, worded like the memory store's.
pub(crate) fn missing(what: &str, id: impl std::fmt::Display) -> StoreError {
    StoreError::not_found(format_args!("{what} {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_ids_read_like_id_text() {
        for id in [Uuid::nil(), Uuid::max(), Uuid::new_v4(), Uuid::now_v7()] {
            assert_eq!(id_text(id), id.hyphenated().to_string());
            assert_eq!(IdText::new(id).as_str(), id_text(id));
            assert_eq!(format!("{:?}", IdText::new(id)), id_text(id));
        }
    }

    #[test]
    fn enums_use_their_api_names() {
        assert_eq!(
            enum_text(&llmur_core::Strategy::WeightedRoundRobin)
                .ok()
                .as_deref(),
            Some("weighted_round_robin")
        );
        assert_eq!(
            enum_text(&ProjectRole::Developer).ok().as_deref(),
            Some("developer")
        );
        let back: llmur_core::UsageSource =
            parse_enum("estimated", "usage source").unwrap_or(llmur_core::UsageSource::None);
        assert_eq!(back, llmur_core::UsageSource::Estimated);
        assert!(parse_enum::<AppRole>("root", "user role").is_err());
    }

    #[test]
    fn ids_sort_as_text_like_uuids() {
        let mut ids: Vec<Uuid> = (0..200).map(|_| Uuid::new_v4()).collect();
        let mut texts: Vec<String> = ids.iter().map(|u| id_text(*u)).collect();
        ids.sort();
        texts.sort();
        let sorted: Vec<String> = ids.iter().map(|u| id_text(*u)).collect();
        assert_eq!(texts, sorted);
    }

    #[test]
    fn limits_are_checked() {
        assert!(
            fetch_limit(&PageRequest {
                limit: 0,
                after: None
            })
            .is_err()
        );
        assert!(
            fetch_limit(&PageRequest {
                limit: 1001,
                after: None
            })
            .is_err()
        );
        assert_eq!(
            fetch_limit(&PageRequest {
                limit: 3,
                after: None
            })
            .ok(),
            Some(4)
        );
        assert!(weight_value(101).is_err());
        assert_eq!(weight_value(100).ok(), Some(100));
        assert_eq!(email_key("Ann@Example.COM"), "ann@example.com");
    }
}
