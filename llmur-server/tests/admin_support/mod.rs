//! A fixture world for the admin API tests: a `MemoryStore` filled directly (no password
//! hashing per user: one hash is computed per test binary and shared), sessions for every
//! kind of principal, and a helper that drives the router in-process and records every
//! response body so tests can check that no secret ever left.

#![expect(
    dead_code,
    reason = "each test binary uses a different part of the fixtures"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use llmur_core::store::types::*;
use llmur_core::{
    Access, ConnectionId, DeploymentId, MemoryStore, ProjectId, Store, Strategy, VirtualKeyId,
};
use llmur_server::admin::{AdminState, router};
use llmur_server::security::{Secrets, hash_password, new_session_token, new_virtual_key};
use secrecy::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

pub const MASTER: &str = "master-key-for-admin-tests";
pub const PASSWORD: &str = "password-123";
pub const PROVIDER_KEY: &str = "sk-provider-secret-do-not-leak";

/// The master key as a caller.
pub const M: Who = Who::Master;

/// An id nothing has.
pub fn unknown() -> String {
    Uuid::now_v7().to_string()
}

/// A body with limits in all three groups.
pub fn limits_body() -> Value {
    json!({
        "request_limits": {"requests_per_minute": 10, "requests_per_month": 1000},
        "token_limits": {"tokens_per_day": 50000},
        "budget_limits": {"cost_per_month": 12.5},
    })
}

/// `a` with `b`'s fields added.
pub fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// The limits of [`limits_body`] are in `v`.
pub fn assert_limits_echoed(v: &Value) {
    assert_eq!(v["request_limits"]["requests_per_minute"], 10, "{v}");
    assert_eq!(v["request_limits"]["requests_per_month"], 1000);
    assert_eq!(v["request_limits"]["requests_per_hour"], Value::Null);
    assert_eq!(v["token_limits"]["tokens_per_day"], 50000);
    assert_eq!(v["budget_limits"]["cost_per_month"], 12.5);
}

/// One Argon2 hash of [`PASSWORD`] per test binary.
pub fn password_hash() -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password(PASSWORD).expect("hash"))
        .clone()
}

/// Who calls.
#[derive(Debug, Clone)]
pub enum Who {
    Master,
    Session(String),
    Anon,
    /// A raw header name and value.
    Header(&'static str, String),
}

/// A response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub json: Value,
    pub text: String,
}

impl Resp {
    /// The `id` field as a string.
    pub fn id(&self) -> String {
        self.json["id"].as_str().expect("id in response").to_owned()
    }
}

/// A signed-in user of the world.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: UserId,
    pub email: String,
    pub token: String,
    pub session: SessionId,
}

impl Person {
    pub fn who(&self) -> Who {
        Who::Session(self.token.clone())
    }
}

/// Everything a test needs.
pub struct World {
    pub app: axum::Router,
    pub store: Arc<MemoryStore>,
    pub secrets: Secrets,
    pub changes: Arc<AtomicUsize>,
    pub bodies: Mutex<Vec<(String, String)>>,
    /// App admin (not a member of any project).
    pub admin: Person,
    /// App member, in no project.
    pub outsider: Person,
    /// Admin / developer / guest of `project`.
    pub padmin: Person,
    pub pdev: Person,
    pub pguest: Person,
    /// Admin of `other_project` only.
    pub other: Person,
    pub project: ProjectId,
    pub other_project: ProjectId,
    pub guest_membership: MembershipId,
    pub other_membership: MembershipId,
    pub invite: InviteId,
    pub invite_code: String,
    pub other_invite: InviteId,
    pub connection: ConnectionId,
    pub spare_connection: ConnectionId,
    pub deployment: DeploymentId,
    pub deployment_name: String,
    pub spare_deployment: DeploymentId,
    pub link: ConnectionDeploymentId,
    pub key: VirtualKeyId,
    pub key_value: String,
    pub other_key: VirtualKeyId,
    pub key_link: VirtualKeyDeploymentId,
    pub other_key_link: VirtualKeyDeploymentId,
}

fn secrets() -> Secrets {
    Secrets::new(&SecretString::from("admin-test-application-secret"))
}

/// The state the world's router runs on, before customisation.
pub fn base_state(store: Arc<MemoryStore>, changes: Arc<AtomicUsize>) -> AdminState {
    let mut state = AdminState::new(
        store,
        secrets(),
        Arc::from(vec![SecretString::from(MASTER)]),
    );
    state.on_catalog_change = Arc::new(move || {
        changes.fetch_add(1, Ordering::SeqCst);
    });
    state
}

async fn person(store: &MemoryStore, secrets: &Secrets, name: &str, role: AppRole) -> Person {
    let email = format!("{name}@example.com");
    let user = store
        .create_user(User {
            id: UserId::new_v7(),
            name: name.to_owned(),
            email: email.clone(),
            role,
            blocked: false,
            email_verified: true,
            password_hash: password_hash(),
            created_at: Millis::now(),
        })
        .await
        .expect("user");
    let token = new_session_token();
    let session = store
        .create_session(Session {
            id: SessionId::new_v7(),
            user_id: user.id,
            token_hash: secrets.hash_session_token(&token),
            created_at: Millis::now(),
            expires_at: Millis(Millis::now().0 + 3_600_000),
            revoked: false,
        })
        .await
        .expect("session");
    Person {
        id: user.id,
        email,
        token,
        session: session.id,
    }
}

async fn project(store: &MemoryStore, name: &str) -> ProjectId {
    store
        .create_project(Project {
            id: ProjectId(Uuid::now_v7()),
            name: name.to_owned(),
            limits: Limits::default(),
            created_at: Millis::now(),
        })
        .await
        .expect("project")
        .id
}

async fn member(
    store: &MemoryStore,
    user: UserId,
    project: ProjectId,
    role: ProjectRole,
) -> MembershipId {
    store
        .create_membership(Membership {
            id: MembershipId::new_v7(),
            user_id: user,
            project_id: project,
            role,
        })
        .await
        .expect("membership")
        .id
}

async fn invite(store: &MemoryStore, project: ProjectId, code: &str) -> InviteId {
    store
        .create_invite(Invite {
            id: InviteId::new_v7(),
            project_id: project,
            code: code.to_owned(),
            role: ProjectRole::Guest,
            valid_until: None,
            created_at: Millis::now(),
        })
        .await
        .expect("invite")
        .id
}

async fn connection(store: &MemoryStore, secrets: &Secrets) -> ConnectionId {
    let id = ConnectionId(Uuid::now_v7());
    store
        .create_connection(StoredConnection {
            id,
            provider: ProviderKind::OpenAi,
            api_endpoint: "https://api.openai.com".into(),
            model: "gpt-4o-mini".into(),
            api_version: None,
            api_key: secrets.encrypt(id, &SecretString::from(PROVIDER_KEY)),
            price: None,
            limits: Limits::default(),
            created_at: Millis::now(),
        })
        .await
        .expect("connection")
        .id
}

async fn deployment(store: &MemoryStore, name: &str) -> DeploymentId {
    store
        .create_deployment(StoredDeployment {
            id: DeploymentId(Uuid::now_v7()),
            name: name.to_owned(),
            access: Access::Private,
            strategy: Strategy::RoundRobin,
            blocked: false,
            limits: Limits::default(),
            created_at: Millis::now(),
        })
        .await
        .expect("deployment")
        .id
}

async fn key(store: &MemoryStore, secrets: &Secrets, project: ProjectId) -> (VirtualKeyId, String) {
    let value = new_virtual_key();
    let id = store
        .create_virtual_key(StoredVirtualKey {
            id: VirtualKeyId(Uuid::now_v7()),
            project_id: project,
            key_hash: secrets.hash_virtual_key(&value),
            alias: "fixture key".into(),
            description: None,
            blocked: false,
            limits: Limits::default(),
            created_at: Millis::now(),
        })
        .await
        .expect("key")
        .id;
    (id, value)
}

async fn key_link(
    store: &MemoryStore,
    key: VirtualKeyId,
    deployment: DeploymentId,
) -> VirtualKeyDeploymentId {
    store
        .create_virtual_key_deployment(VirtualKeyDeployment {
            id: VirtualKeyDeploymentId::new_v7(),
            virtual_key_id: key,
            deployment_id: deployment,
        })
        .await
        .expect("key link")
        .id
}

impl World {
    /// The standard world with the default state.
    pub async fn new() -> World {
        Self::with(|_| {}).await
    }

    /// The standard world; `customise` may change the state before the router is built.
    pub async fn with(customise: impl FnOnce(&mut AdminState)) -> World {
        let store = Arc::new(MemoryStore::new());
        let secrets = secrets();
        let changes = Arc::new(AtomicUsize::new(0));
        let s = store.as_ref();
        let admin = person(s, &secrets, "admin", AppRole::Admin).await;
        let outsider = person(s, &secrets, "outsider", AppRole::Member).await;
        let padmin = person(s, &secrets, "padmin", AppRole::Member).await;
        let pdev = person(s, &secrets, "pdev", AppRole::Member).await;
        let pguest = person(s, &secrets, "pguest", AppRole::Member).await;
        let other = person(s, &secrets, "other", AppRole::Member).await;
        let project_id = project(s, "research").await;
        let other_project = project(s, "elsewhere").await;
        member(s, padmin.id, project_id, ProjectRole::Admin).await;
        member(s, pdev.id, project_id, ProjectRole::Developer).await;
        let guest_membership = member(s, pguest.id, project_id, ProjectRole::Guest).await;
        let other_membership = member(s, other.id, other_project, ProjectRole::Admin).await;
        let invite_code = "JOINRESEARCH".to_owned();
        let invite_id = invite(s, project_id, &invite_code).await;
        let other_invite = invite(s, other_project, "JOINELSEWHERE").await;
        let connection_id = connection(s, &secrets).await;
        let spare_connection = connection(s, &secrets).await;
        let deployment_name = "chat".to_owned();
        let deployment_id = deployment(s, &deployment_name).await;
        let spare_deployment = deployment(s, "spare").await;
        let link = store
            .create_connection_deployment(ConnectionDeployment {
                id: ConnectionDeploymentId::new_v7(),
                connection_id,
                deployment_id,
                weight: 1,
            })
            .await
            .expect("link")
            .id;
        let (key_id, key_value) = key(s, &secrets, project_id).await;
        let (other_key, _) = key(s, &secrets, other_project).await;
        let key_link_id = key_link(s, key_id, deployment_id).await;
        let other_key_link = key_link(s, other_key, deployment_id).await;

        let mut state = base_state(store.clone(), changes.clone());
        customise(&mut state);
        World {
            app: router(state),
            store,
            secrets,
            changes,
            bodies: Mutex::new(Vec::new()),
            admin,
            outsider,
            padmin,
            pdev,
            pguest,
            other,
            project: project_id,
            other_project,
            guest_membership,
            other_membership,
            invite: invite_id,
            invite_code,
            other_invite,
            connection: connection_id,
            spare_connection,
            deployment: deployment_id,
            deployment_name,
            spare_deployment,
            link,
            key: key_id,
            key_value,
            other_key,
            key_link: key_link_id,
            other_key_link,
        }
    }

    /// Sends a request with a raw body.
    pub async fn send(&self, method: &str, path: &str, who: &Who, body: Option<Vec<u8>>) -> Resp {
        let mut req = Request::builder().method(method).uri(path);
        match who {
            Who::Master => req = req.header("X-LLMur-Key", MASTER),
            Who::Session(t) => req = req.header("X-LLMur-Session", t.as_str()),
            Who::Header(name, value) => req = req.header(*name, value.as_str()),
            Who::Anon => {}
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(body.map_or_else(Body::empty, Body::from))
            .expect("request");
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        self.bodies
            .lock()
            .expect("lock")
            .push((format!("{method} {path}"), text.clone()));
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        // The router's own 405 (wrong method) has no body; everything else is ours.
        if status != StatusCode::OK
            && status != StatusCode::METHOD_NOT_ALLOWED
            && path != "/admin/openapi.json"
        {
            assert!(
                json["error"].is_string(),
                "{method} {path}: error bodies are {{\"error\": ...}}, got {status} {text:?}"
            );
        }
        Resp {
            status: status.as_u16(),
            json,
            text,
        }
    }

    /// Sends JSON (or no body).
    pub async fn call(&self, method: &str, path: &str, who: &Who, body: Option<Value>) -> Resp {
        self.send(method, path, who, body.map(|b| b.to_string().into_bytes()))
            .await
    }

    pub async fn get(&self, path: &str, who: &Who) -> Resp {
        self.call("GET", path, who, None).await
    }

    pub async fn post(&self, path: &str, who: &Who, body: Value) -> Resp {
        self.call("POST", path, who, Some(body)).await
    }

    pub async fn patch(&self, path: &str, who: &Who, body: Value) -> Resp {
        self.call("PATCH", path, who, Some(body)).await
    }

    pub async fn delete(&self, path: &str, who: &Who) -> Resp {
        self.call("DELETE", path, who, None).await
    }

    /// Every response body so far, with the request that produced it.
    pub fn all_bodies(&self) -> Vec<(String, String)> {
        self.bodies.lock().expect("lock").clone()
    }

    /// How many times the catalog callback ran.
    pub fn catalog_changes(&self) -> usize {
        self.changes.load(Ordering::SeqCst)
    }
}
