//! Sample store records for tests: every builder returns a fresh row with a new
//! time-ordered (v7) id and fixed, round-trippable values (whole milliseconds, bytes that
//! include `0x00` and `0xff`, `f64`s exactly representable in JSON).
//!
//! Change the returned value's public fields to vary it:
//!
//! ```
//! use llmur_testkit::conformance::fixtures::{sample_key, sample_project};
//! let project = sample_project("web");
//! let mut key = sample_key(project.id, "hash-1");
//! key.blocked = true;
//! assert_eq!(key.project_id, project.id);
//! ```

use std::time::{Duration, SystemTime};

use llmur_core::store::types::*;
use llmur_core::{
    Access, ConnectionId, DeploymentId, Endpoint, ProjectId, RequestLog, Strategy, Usage,
    UsageSource, VirtualKeyId,
};
use uuid::Uuid;

/// The `created_at` of every sample row (a whole millisecond).
pub const T0: Millis = Millis(1_700_000_000_123);

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// A page of at most `limit` items after `after`.
pub fn page(limit: u32, after: Option<Uuid>) -> PageRequest {
    PageRequest { limit, after }
}

/// The largest allowed page from the start (enough to see everything a check creates).
pub fn all() -> PageRequest {
    page(1000, None)
}

/// Limits with every window of every kind set; budgets are fractional (`12.5`, ...).
pub fn full_limits() -> Limits {
    Limits {
        requests: Windows {
            per_minute: Some(60),
            per_hour: Some(1_000),
            per_day: Some(10_000),
            per_week: Some(50_000),
            per_month: Some(200_000),
        },
        tokens: Windows {
            per_minute: Some(100_000),
            per_hour: Some(1_000_000),
            per_day: Some(10_000_000),
            per_week: Some(50_000_000),
            per_month: Some(9_000_000_000),
        },
        budget: Windows {
            per_minute: Some(0.25),
            per_hour: Some(12.5),
            per_day: Some(100.75),
            per_week: Some(500.0),
            per_month: Some(1_999.99),
        },
    }
}

/// Limits with only some windows set (the others must stay `None`).
pub fn partial_limits() -> Limits {
    Limits {
        requests: Windows {
            per_minute: Some(5),
            ..Windows::default()
        },
        tokens: Windows::default(),
        budget: Windows {
            per_day: Some(12.5),
            ..Windows::default()
        },
    }
}

/// A member user with the given email (store it lowercase).
pub fn sample_user(email: &str) -> User {
    User {
        id: UserId::new_v7(),
        name: format!("User {email}"),
        email: email.to_owned(),
        role: AppRole::Member,
        blocked: false,
        email_verified: false,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_owned(),
        created_at: T0,
    }
}

/// A live session of `user`, valid for an hour after [`T0`].
pub fn sample_session(user: UserId, token_hash: &str) -> Session {
    Session {
        id: SessionId::new_v7(),
        user_id: user,
        token_hash: token_hash.to_owned(),
        created_at: T0,
        expires_at: Millis(T0.0 + HOUR_MS),
        revoked: false,
    }
}

/// A project without limits.
pub fn sample_project(name: &str) -> Project {
    Project {
        id: ProjectId(Uuid::now_v7()),
        name: name.to_owned(),
        limits: Limits::default(),
        created_at: T0,
    }
}

/// `user`'s membership in `project` with `role`.
pub fn sample_membership(user: UserId, project: ProjectId, role: ProjectRole) -> Membership {
    Membership {
        id: MembershipId::new_v7(),
        user_id: user,
        project_id: project,
        role,
    }
}

/// A developer invite to `project` without expiry.
pub fn sample_invite(project: ProjectId, code: &str) -> Invite {
    Invite {
        id: InviteId::new_v7(),
        project_id: project,
        code: code.to_owned(),
        role: ProjectRole::Developer,
        valid_until: None,
        created_at: T0,
    }
}

/// An encrypted secret whose bytes depend on `seed` and include `0x00` and `0xff`.
pub fn sample_secret(seed: u8) -> EncryptedSecret {
    let mut nonce = vec![0x00, 0xff, seed];
    nonce.extend((3..12u8).map(|i| i.wrapping_mul(37).wrapping_add(seed)));
    let mut ciphertext = vec![0x00, 0x00, 0xff, 0x80, seed];
    ciphertext.extend((0..43u8).map(|i| i.wrapping_mul(151).wrapping_add(seed)));
    EncryptedSecret {
        key_version: 1 + i32::from(seed),
        nonce,
        ciphertext,
    }
}

/// An `openai/v1` connection without api-version or price.
pub fn sample_connection() -> StoredConnection {
    StoredConnection {
        id: ConnectionId(Uuid::now_v7()),
        provider: ProviderKind::OpenAi,
        api_endpoint: "https://api.openai.com".to_owned(),
        model: "gpt-4o-mini".to_owned(),
        api_version: None,
        api_key: sample_secret(1),
        price: None,
        limits: Limits::default(),
        created_at: T0,
    }
}

/// An `azure/openai` connection with an api-version and a price.
pub fn sample_azure_connection() -> StoredConnection {
    StoredConnection {
        id: ConnectionId(Uuid::now_v7()),
        provider: ProviderKind::AzureOpenAi,
        api_endpoint: "https://example.openai.azure.com".to_owned(),
        model: "gpt-4o-mini-eu".to_owned(),
        api_version: Some("2024-10-21".to_owned()),
        api_key: sample_secret(2),
        price: Some(Price {
            input_per_million: 0.15,
            output_per_million: 0.6,
        }),
        limits: Limits::default(),
        created_at: T0,
    }
}

/// A private, round-robin, unblocked deployment called `name`.
pub fn sample_deployment(name: &str) -> StoredDeployment {
    StoredDeployment {
        id: DeploymentId(Uuid::now_v7()),
        name: name.to_owned(),
        access: Access::Private,
        strategy: Strategy::RoundRobin,
        blocked: false,
        limits: Limits::default(),
        created_at: T0,
    }
}

/// Links `connection` to `deployment` with `weight`.
pub fn sample_connection_deployment(
    connection: ConnectionId,
    deployment: DeploymentId,
    weight: u32,
) -> ConnectionDeployment {
    ConnectionDeployment {
        id: ConnectionDeploymentId::new_v7(),
        connection_id: connection,
        deployment_id: deployment,
        weight,
    }
}

/// An unblocked key of `project` with the given hash.
pub fn sample_key(project: ProjectId, key_hash: &str) -> StoredVirtualKey {
    StoredVirtualKey {
        id: VirtualKeyId(Uuid::now_v7()),
        project_id: project,
        key_hash: key_hash.to_owned(),
        alias: "sk-...abcd".to_owned(),
        description: Some("a sample key".to_owned()),
        blocked: false,
        limits: Limits::default(),
        created_at: T0,
    }
}

/// Lets `key` use `deployment`.
pub fn sample_key_deployment(key: VirtualKeyId, deployment: DeploymentId) -> VirtualKeyDeployment {
    VirtualKeyDeployment {
        id: VirtualKeyDeploymentId::new_v7(),
        virtual_key_id: key,
        deployment_id: deployment,
    }
}

/// A request log of `key` that started at `started_at_ms` (Unix ms). Its other ids are
/// random and refer to nothing: request logs carry no foreign keys. Times and durations
/// are whole milliseconds.
pub fn sample_request_log(key: VirtualKeyId, started_at_ms: u64) -> RequestLog {
    RequestLog {
        id: Uuid::now_v7(),
        request_id: format!("req-{started_at_ms}"),
        virtual_key_id: key,
        project_id: ProjectId(Uuid::now_v7()),
        deployment_id: DeploymentId(Uuid::now_v7()),
        deployment: "gpt-4o-mini".to_owned(),
        connection_id: ConnectionId(Uuid::now_v7()),
        upstream_model: "gpt-4o-mini-2024-07-18".to_owned(),
        endpoint: Endpoint::ChatCompletions,
        stream: true,
        status: 200,
        usage: Usage {
            prompt_tokens: 12,
            completion_tokens: 34,
        },
        usage_source: UsageSource::Reported,
        cost_usd: Some(0.0125),
        started_at: SystemTime::UNIX_EPOCH + Duration::from_millis(started_at_ms),
        time_to_first_byte: Some(Duration::from_millis(120)),
        duration: Duration::from_millis(1_500),
        client_disconnected: false,
        error: None,
    }
}
