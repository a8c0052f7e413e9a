//! Rows of the catalog tables — connections, deployments, their links, virtual keys and
//! key links — and of the request logs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::prelude::*;
use llmur_core::store::types::*;
use llmur_core::{
    ConnectionId, DeploymentId, Endpoint, ProjectId, RequestLog, StoreResult, Usage, UsageSource,
    VirtualKeyId,
};

use super::{
    IdText, Record, enum_text, from_micros, id_text, json_text, limits_text, micros, parse_enum,
    parse_id, parse_json, to_i64, to_u64, weight_value,
};
use crate::db::error::internal;
use crate::db::schema::*;

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = connections)]
pub(crate) struct ConnectionRow {
    id: String,
    provider: String,
    api_endpoint: String,
    model: String,
    api_version: Option<String>,
    api_key_version: i32,
    api_key_nonce: Vec<u8>,
    api_key_ciphertext: Vec<u8>,
    price: Option<String>,
    limits: String,
    created_at: i64,
}

impl ConnectionRow {
    pub(crate) fn new(c: &StoredConnection) -> StoreResult<Self> {
        Ok(Self {
            id: id_text(c.id.0),
            provider: c.provider.as_str().to_owned(),
            api_endpoint: c.api_endpoint.clone(),
            model: c.model.clone(),
            api_version: c.api_version.clone(),
            api_key_version: c.api_key.key_version,
            api_key_nonce: c.api_key.nonce.clone(),
            api_key_ciphertext: c.api_key.ciphertext.clone(),
            price: c
                .price
                .as_ref()
                .map(|p| json_text(p, "price"))
                .transpose()?,
            limits: limits_text(&c.limits)?,
            created_at: c.created_at.0,
        })
    }
}

impl Record for ConnectionRow {
    type Domain = StoredConnection;
    fn id(&self) -> &str {
        &self.id
    }
    fn into_domain(self) -> StoreResult<StoredConnection> {
        Ok(StoredConnection {
            id: ConnectionId(parse_id(&self.id)?),
            provider: ProviderKind::parse(&self.provider).ok_or_else(|| {
                internal(format!(
                    "unknown provider {:?} in the database",
                    self.provider
                ))
            })?,
            api_endpoint: self.api_endpoint,
            model: self.model,
            api_version: self.api_version,
            api_key: EncryptedSecret {
                key_version: self.api_key_version,
                nonce: self.api_key_nonce,
                ciphertext: self.api_key_ciphertext,
            },
            price: self
                .price
                .as_deref()
                .map(|p| parse_json(p, "price"))
                .transpose()?,
            limits: parse_json(&self.limits, "limits")?,
            created_at: Millis(self.created_at),
        })
    }
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = connections)]
pub(crate) struct ConnectionChanges {
    api_endpoint: Option<String>,
    model: Option<String>,
    api_version: Option<Option<String>>,
    api_key_version: Option<i32>,
    api_key_nonce: Option<Vec<u8>>,
    api_key_ciphertext: Option<Vec<u8>>,
    price: Option<Option<String>>,
    limits: Option<String>,
}

impl ConnectionChanges {
    /// The changes, or `None` when the patch changes nothing.
    pub(crate) fn new(p: ConnectionPatch) -> StoreResult<Option<Self>> {
        if p == ConnectionPatch::default() {
            return Ok(None);
        }
        let (api_key_version, api_key_nonce, api_key_ciphertext) = match p.api_key {
            Some(k) => (Some(k.key_version), Some(k.nonce), Some(k.ciphertext)),
            None => (None, None, None),
        };
        Ok(Some(Self {
            api_endpoint: p.api_endpoint,
            model: p.model,
            api_version: p.api_version,
            api_key_version,
            api_key_nonce,
            api_key_ciphertext,
            price: p
                .price
                .map(|price| price.map(|p| json_text(&p, "price")).transpose())
                .transpose()?,
            limits: p.limits.as_ref().map(limits_text).transpose()?,
        }))
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = deployments)]
pub(crate) struct DeploymentRow {
    id: String,
    name: String,
    access: String,
    strategy: String,
    blocked: bool,
    limits: String,
    created_at: i64,
}

impl DeploymentRow {
    pub(crate) fn new(d: &StoredDeployment) -> StoreResult<Self> {
        Ok(Self {
            id: id_text(d.id.0),
            name: d.name.clone(),
            access: enum_text(&d.access)?,
            strategy: enum_text(&d.strategy)?,
            blocked: d.blocked,
            limits: limits_text(&d.limits)?,
            created_at: d.created_at.0,
        })
    }
}

impl Record for DeploymentRow {
    type Domain = StoredDeployment;
    fn id(&self) -> &str {
        &self.id
    }
    fn into_domain(self) -> StoreResult<StoredDeployment> {
        Ok(StoredDeployment {
            id: DeploymentId(parse_id(&self.id)?),
            name: self.name,
            access: parse_enum(&self.access, "access")?,
            strategy: parse_enum(&self.strategy, "strategy")?,
            blocked: self.blocked,
            limits: parse_json(&self.limits, "limits")?,
            created_at: Millis(self.created_at),
        })
    }
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = deployments)]
pub(crate) struct DeploymentChanges {
    name: Option<String>,
    access: Option<String>,
    strategy: Option<String>,
    blocked: Option<bool>,
    limits: Option<String>,
}

impl DeploymentChanges {
    /// The changes, or `None` when the patch changes nothing.
    pub(crate) fn new(p: DeploymentPatch) -> StoreResult<Option<Self>> {
        if p == DeploymentPatch::default() {
            return Ok(None);
        }
        Ok(Some(Self {
            name: p.name,
            access: p.access.as_ref().map(enum_text).transpose()?,
            strategy: p.strategy.as_ref().map(enum_text).transpose()?,
            blocked: p.blocked,
            limits: p.limits.as_ref().map(limits_text).transpose()?,
        }))
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = connection_deployments)]
pub(crate) struct ConnectionDeploymentRow {
    id: String,
    connection_id: String,
    deployment_id: String,
    weight: i32,
}

impl ConnectionDeploymentRow {
    pub(crate) fn new(l: &ConnectionDeployment) -> StoreResult<Self> {
        Ok(Self {
            id: id_text(l.id.0),
            connection_id: id_text(l.connection_id.0),
            deployment_id: id_text(l.deployment_id.0),
            weight: weight_value(l.weight)?,
        })
    }
}

impl Record for ConnectionDeploymentRow {
    type Domain = ConnectionDeployment;
    fn id(&self) -> &str {
        &self.id
    }
    fn into_domain(self) -> StoreResult<ConnectionDeployment> {
        Ok(ConnectionDeployment {
            id: ConnectionDeploymentId(parse_id(&self.id)?),
            connection_id: ConnectionId(parse_id(&self.connection_id)?),
            deployment_id: DeploymentId(parse_id(&self.deployment_id)?),
            weight: u32::try_from(self.weight)
                .map_err(|_| internal(format!("corrupt weight {} in the database", self.weight)))?,
        })
    }
}

// --- virtual keys

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = virtual_keys)]
pub(crate) struct VirtualKeyRow {
    id: String,
    project_id: String,
    key_hash: String,
    alias: String,
    description: Option<String>,
    blocked: bool,
    limits: String,
    created_at: i64,
}

impl VirtualKeyRow {
    pub(crate) fn new(k: &StoredVirtualKey) -> StoreResult<Self> {
        Ok(Self {
            id: id_text(k.id.0),
            project_id: id_text(k.project_id.0),
            key_hash: k.key_hash.clone(),
            alias: k.alias.clone(),
            description: k.description.clone(),
            blocked: k.blocked,
            limits: limits_text(&k.limits)?,
            created_at: k.created_at.0,
        })
    }
}

impl Record for VirtualKeyRow {
    type Domain = StoredVirtualKey;
    fn id(&self) -> &str {
        &self.id
    }
    fn into_domain(self) -> StoreResult<StoredVirtualKey> {
        Ok(StoredVirtualKey {
            id: VirtualKeyId(parse_id(&self.id)?),
            project_id: ProjectId(parse_id(&self.project_id)?),
            key_hash: self.key_hash,
            alias: self.alias,
            description: self.description,
            blocked: self.blocked,
            limits: parse_json(&self.limits, "limits")?,
            created_at: Millis(self.created_at),
        })
    }
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = virtual_keys)]
pub(crate) struct VirtualKeyChanges {
    alias: Option<String>,
    description: Option<Option<String>>,
    blocked: Option<bool>,
    limits: Option<String>,
}

impl VirtualKeyChanges {
    /// The changes, or `None` when the patch changes nothing.
    pub(crate) fn new(p: VirtualKeyPatch) -> StoreResult<Option<Self>> {
        if p == VirtualKeyPatch::default() {
            return Ok(None);
        }
        Ok(Some(Self {
            alias: p.alias,
            description: p.description,
            blocked: p.blocked,
            limits: p.limits.as_ref().map(limits_text).transpose()?,
        }))
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = virtual_key_deployments)]
pub(crate) struct VirtualKeyDeploymentRow {
    id: String,
    virtual_key_id: String,
    deployment_id: String,
}

impl VirtualKeyDeploymentRow {
    pub(crate) fn new(l: &VirtualKeyDeployment) -> Self {
        Self {
            id: id_text(l.id.0),
            virtual_key_id: id_text(l.virtual_key_id.0),
            deployment_id: id_text(l.deployment_id.0),
        }
    }
}

impl Record for VirtualKeyDeploymentRow {
    type Domain = VirtualKeyDeployment;
    fn id(&self) -> &str {
        &self.id
    }
    fn into_domain(self) -> StoreResult<VirtualKeyDeployment> {
        Ok(VirtualKeyDeployment {
            id: VirtualKeyDeploymentId(parse_id(&self.id)?),
            virtual_key_id: VirtualKeyId(parse_id(&self.virtual_key_id)?),
            deployment_id: DeploymentId(parse_id(&self.deployment_id)?),
        })
    }
}

// --- request logs

/// Calls `$callback!(prefix…; column: SqlType, …)` with every column a request log row
/// inserts, in table order: the one list both backends' insert statements are built from
/// (`postgres/log_copy.rs`, `sqlite/log_insert.rs`), so they cannot miss a column.
macro_rules! request_log_columns {
    ($callback:ident!($($prefix:tt)*)) => {
        $callback!($($prefix)*;
            id: diesel::sql_types::Text,
            request_id: diesel::sql_types::Text,
            virtual_key_id: diesel::sql_types::Text,
            project_id: diesel::sql_types::Text,
            deployment_id: diesel::sql_types::Text,
            deployment: diesel::sql_types::Text,
            connection_id: diesel::sql_types::Text,
            upstream_model: diesel::sql_types::Text,
            endpoint: diesel::sql_types::Text,
            stream: diesel::sql_types::Bool,
            status: diesel::sql_types::Integer,
            prompt_tokens: diesel::sql_types::BigInt,
            completion_tokens: diesel::sql_types::BigInt,
            usage_source: diesel::sql_types::Text,
            cost_usd: diesel::sql_types::Nullable<diesel::sql_types::Double>,
            started_at: diesel::sql_types::BigInt,
            ttfb_us: diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
            duration_us: diesel::sql_types::BigInt,
            client_disconnected: diesel::sql_types::Bool,
            error: diesel::sql_types::Nullable<diesel::sql_types::Text>,
        )
    };
}
pub(crate) use request_log_columns;

/// A request log row as read back (without `seq`).
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = request_logs)]
pub(crate) struct RequestLogRow {
    id: String,
    request_id: String,
    virtual_key_id: String,
    project_id: String,
    deployment_id: String,
    deployment: String,
    connection_id: String,
    upstream_model: String,
    endpoint: String,
    stream: bool,
    status: i32,
    prompt_tokens: i64,
    completion_tokens: i64,
    usage_source: String,
    cost_usd: Option<f64>,
    started_at: i64,
    ttfb_us: Option<i64>,
    duration_us: i64,
    client_disconnected: bool,
    error: Option<String>,
}

/// A request log row to insert (without `seq`, which the database assigns). Each backend
/// inserts rows its own way (`postgres/log_copy.rs`, `sqlite/log_insert.rs`), reading the
/// fields. The ids are held inline and the enums are static names: a row allocates only the
/// strings it copies (three, four with an error), where `String` ids and serde-encoded
/// enums took ten allocations.
#[derive(Debug)]
pub(crate) struct NewRequestLogRow {
    pub(in crate::db) id: IdText,
    pub(in crate::db) request_id: String,
    pub(in crate::db) virtual_key_id: IdText,
    pub(in crate::db) project_id: IdText,
    pub(in crate::db) deployment_id: IdText,
    pub(in crate::db) deployment: String,
    pub(in crate::db) connection_id: IdText,
    pub(in crate::db) upstream_model: String,
    pub(in crate::db) endpoint: &'static str,
    pub(in crate::db) stream: bool,
    pub(in crate::db) status: i32,
    pub(in crate::db) prompt_tokens: i64,
    pub(in crate::db) completion_tokens: i64,
    pub(in crate::db) usage_source: &'static str,
    pub(in crate::db) cost_usd: Option<f64>,
    pub(in crate::db) started_at: i64,
    pub(in crate::db) ttfb_us: Option<i64>,
    pub(in crate::db) duration_us: i64,
    pub(in crate::db) client_disconnected: bool,
    pub(in crate::db) error: Option<String>,
}

impl NewRequestLogRow {
    pub(crate) fn new(l: &RequestLog) -> StoreResult<Self> {
        Ok(Self {
            id: IdText::new(l.id),
            request_id: l.request_id.clone(),
            virtual_key_id: IdText::new(l.virtual_key_id.0),
            project_id: IdText::new(l.project_id.0),
            deployment_id: IdText::new(l.deployment_id.0),
            deployment: l.deployment.clone(),
            connection_id: IdText::new(l.connection_id.0),
            upstream_model: l.upstream_model.clone(),
            endpoint: l.endpoint.as_str(),
            stream: l.stream,
            status: i32::from(l.status),
            prompt_tokens: to_i64(l.usage.prompt_tokens, "prompt_tokens")?,
            completion_tokens: to_i64(l.usage.completion_tokens, "completion_tokens")?,
            usage_source: l.usage_source.as_str(),
            cost_usd: l.cost_usd,
            started_at: Millis::from_system(l.started_at).0,
            ttfb_us: l
                .time_to_first_byte
                .map(|d| micros(d, "time to first byte"))
                .transpose()?,
            duration_us: micros(l.duration, "duration")?,
            client_disconnected: l.client_disconnected,
            error: l.error.clone(),
        })
    }
}

impl Record for RequestLogRow {
    type Domain = RequestLog;
    fn id(&self) -> &str {
        &self.id
    }
    fn into_domain(self) -> StoreResult<RequestLog> {
        let endpoint: Endpoint = parse_enum(&self.endpoint, "endpoint")?;
        let usage_source: UsageSource = parse_enum(&self.usage_source, "usage source")?;
        Ok(RequestLog {
            id: parse_id(&self.id)?,
            request_id: self.request_id,
            virtual_key_id: VirtualKeyId(parse_id(&self.virtual_key_id)?),
            project_id: ProjectId(parse_id(&self.project_id)?),
            deployment_id: DeploymentId(parse_id(&self.deployment_id)?),
            deployment: self.deployment,
            connection_id: ConnectionId(parse_id(&self.connection_id)?),
            upstream_model: self.upstream_model,
            endpoint,
            stream: self.stream,
            status: u16::try_from(self.status)
                .map_err(|_| internal(format!("corrupt status {} in the database", self.status)))?,
            usage: Usage {
                prompt_tokens: to_u64(self.prompt_tokens, "prompt_tokens")?,
                completion_tokens: to_u64(self.completion_tokens, "completion_tokens")?,
            },
            usage_source,
            cost_usd: self.cost_usd,
            started_at: system_time(self.started_at),
            time_to_first_byte: self.ttfb_us.map(from_micros),
            duration: from_micros(self.duration_us),
            client_disconnected: self.client_disconnected,
            error: self.error,
        })
    }
}

fn system_time(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}
