//! The authorization matrix of the admin API: every route × every kind of principal, each
//! cell on a fresh fixture world. Rule: cannot read → 404; can read but not write → 403.

#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly"
)]

mod admin_support;

use admin_support::{Who, World};
use serde_json::{Value, json};

/// Columns of the matrix.
const PRINCIPALS: [&str; 8] = [
    "master",
    "app-admin",
    "outsider",
    "project-admin",
    "project-dev",
    "project-guest",
    "other-project-admin",
    "anonymous",
];

fn who(w: &World, i: usize) -> Who {
    match i {
        0 => Who::Master,
        1 => w.admin.who(),
        2 => w.outsider.who(),
        3 => w.padmin.who(),
        4 => w.pdev.who(),
        5 => w.pguest.who(),
        6 => w.other.who(),
        _ => Who::Anon,
    }
}

type PathFn = fn(&World) -> String;
type BodyFn = fn(&World) -> Option<Value>;

struct Case {
    method: &'static str,
    path: PathFn,
    body: BodyFn,
    expect: [u16; 8],
}

const fn case(method: &'static str, path: PathFn, body: BodyFn, expect: [u16; 8]) -> Case {
    Case {
        method,
        path,
        body,
        expect,
    }
}

fn none(_: &World) -> Option<Value> {
    None
}

// Expectation rows, by column: master, app admin, outsider, project admin, developer,
// guest, admin of another project, anonymous.
const ADMINS_ONLY: [u16; 8] = [200, 200, 403, 403, 403, 403, 403, 401];
const ANY_SIGNED_IN: [u16; 8] = [200, 200, 200, 200, 200, 200, 200, 401];
const PROJECT_READ: [u16; 8] = [200, 200, 404, 200, 200, 200, 404, 401];
const PROJECT_DEVELOP: [u16; 8] = [200, 200, 404, 200, 200, 403, 404, 401];
const PROJECT_MANAGE: [u16; 8] = [200, 200, 404, 200, 403, 403, 404, 401];
const SESSION_ONLY: [u16; 8] = [400, 200, 200, 200, 200, 200, 200, 401];
/// On the guest's own account: admins and the guest themself may; others cannot see it.
const SELF_OR_ADMIN: [u16; 8] = [200, 200, 404, 404, 404, 200, 404, 401];
const ADMIN_ONLY_SELF_READS: [u16; 8] = [200, 200, 404, 404, 404, 403, 404, 401];

fn cases() -> Vec<Case> {
    vec![
        // users
        case(
            "POST",
            |_| "/admin/user".into(),
            |_| Some(json!({"email": "new@example.com", "password": "long enough"})),
            ADMINS_ONLY,
        ),
        case("GET", |_| "/admin/user".into(), none, ADMINS_ONLY),
        case("GET", |_| "/admin/user/me".into(), none, SESSION_ONLY),
        case(
            "GET",
            |w| format!("/admin/user/{}", w.pguest.id),
            none,
            SELF_OR_ADMIN,
        ),
        case(
            "PATCH",
            |w| format!("/admin/user/{}", w.pguest.id),
            |_| Some(json!({"name": "Gus"})),
            SELF_OR_ADMIN,
        ),
        case(
            "PATCH",
            |w| format!("/admin/user/{}", w.pguest.id),
            |_| Some(json!({"role": "admin"})),
            ADMIN_ONLY_SELF_READS,
        ),
        case(
            "PATCH",
            |w| format!("/admin/user/{}", w.pguest.id),
            |_| Some(json!({"blocked": true})),
            ADMIN_ONLY_SELF_READS,
        ),
        case(
            "PATCH",
            |w| format!("/admin/user/{}", w.pguest.id),
            |_| Some(json!({"email_verified": false})),
            ADMIN_ONLY_SELF_READS,
        ),
        case(
            "DELETE",
            |w| format!("/admin/user/{}", w.pguest.id),
            none,
            ADMIN_ONLY_SELF_READS,
        ),
        // sessions
        case(
            "DELETE",
            |_| "/admin/session-token".into(),
            none,
            SESSION_ONLY,
        ),
        case(
            "DELETE",
            |w| format!("/admin/session-token/{}", w.pguest.session),
            none,
            SELF_OR_ADMIN,
        ),
        // projects
        case(
            "POST",
            |_| "/admin/project".into(),
            |_| Some(json!({"name": "new"})),
            ANY_SIGNED_IN,
        ),
        case("GET", |_| "/admin/project".into(), none, ANY_SIGNED_IN),
        case(
            "GET",
            |w| format!("/admin/project/{}", w.project),
            none,
            PROJECT_READ,
        ),
        case(
            "PATCH",
            |w| format!("/admin/project/{}", w.project),
            |_| Some(json!({"name": "renamed"})),
            PROJECT_MANAGE,
        ),
        case(
            "DELETE",
            |w| format!("/admin/project/{}", w.project),
            none,
            PROJECT_MANAGE,
        ),
        // memberships
        case(
            "POST",
            |_| "/admin/membership".into(),
            |w| Some(json!({"user_id": w.outsider.id, "project_id": w.project, "role": "guest"})),
            PROJECT_MANAGE,
        ),
        case(
            "GET",
            |w| format!("/admin/membership?project_id={}", w.project),
            none,
            PROJECT_READ,
        ),
        case(
            "GET",
            |w| format!("/admin/membership?user_id={}", w.pguest.id),
            none,
            SELF_OR_ADMIN,
        ),
        case("GET", |_| "/admin/membership".into(), none, ANY_SIGNED_IN),
        case(
            "GET",
            |w| format!("/admin/membership/{}", w.guest_membership),
            none,
            PROJECT_READ,
        ),
        case(
            "PATCH",
            |w| format!("/admin/membership/{}", w.guest_membership),
            |_| Some(json!({"role": "developer"})),
            PROJECT_MANAGE,
        ),
        case(
            "DELETE",
            |w| format!("/admin/membership/{}", w.guest_membership),
            none,
            PROJECT_MANAGE,
        ),
        // invites
        case(
            "POST",
            |_| "/admin/project-invite-code".into(),
            |w| Some(json!({"project_id": w.project})),
            PROJECT_MANAGE,
        ),
        case(
            "GET",
            |w| format!("/admin/project-invite-code?project_id={}", w.project),
            none,
            PROJECT_MANAGE,
        ),
        case(
            "GET",
            |_| "/admin/project-invite-code".into(),
            none,
            ANY_SIGNED_IN,
        ),
        case(
            "GET",
            |w| format!("/admin/project-invite-code/{}", w.invite),
            none,
            PROJECT_MANAGE,
        ),
        case(
            "DELETE",
            |w| format!("/admin/project-invite-code/{}", w.invite),
            none,
            PROJECT_MANAGE,
        ),
        // redeeming: anyone signed in; members already in the project get 409.
        case(
            "POST",
            |_| "/admin/project-invite-code/redeem".into(),
            |w| Some(json!({"code": w.invite_code})),
            [400, 200, 200, 409, 409, 409, 200, 401],
        ),
        // connections
        case(
            "POST",
            |_| "/admin/connection".into(),
            |_| {
                Some(
                    json!({"provider": "openai/v1", "model": "m", "api_endpoint": "https://api.openai.com", "api_key": "sk-x"}),
                )
            },
            ADMINS_ONLY,
        ),
        case("GET", |_| "/admin/connection".into(), none, ADMINS_ONLY),
        case(
            "GET",
            |w| format!("/admin/connection/{}", w.connection),
            none,
            ADMINS_ONLY,
        ),
        case(
            "PATCH",
            |w| format!("/admin/connection/{}", w.connection),
            |_| Some(json!({"model": "m2"})),
            ADMINS_ONLY,
        ),
        case(
            "DELETE",
            |w| format!("/admin/connection/{}", w.connection),
            none,
            ADMINS_ONLY,
        ),
        // deployments
        case(
            "POST",
            |_| "/admin/deployment".into(),
            |_| Some(json!({"name": "new-deployment"})),
            ADMINS_ONLY,
        ),
        case("GET", |_| "/admin/deployment".into(), none, ANY_SIGNED_IN),
        case(
            "GET",
            |w| format!("/admin/deployment/{}", w.deployment),
            none,
            ANY_SIGNED_IN,
        ),
        case(
            "PATCH",
            |w| format!("/admin/deployment/{}", w.deployment),
            |_| Some(json!({"blocked": true})),
            ADMINS_ONLY,
        ),
        case(
            "DELETE",
            |w| format!("/admin/deployment/{}", w.deployment),
            none,
            ADMINS_ONLY,
        ),
        // connection↔deployment links
        case(
            "POST",
            |_| "/admin/connection-deployment".into(),
            |w| Some(json!({"connection_id": w.spare_connection, "deployment_id": w.deployment})),
            ADMINS_ONLY,
        ),
        case(
            "GET",
            |_| "/admin/connection-deployment".into(),
            none,
            ADMINS_ONLY,
        ),
        case(
            "GET",
            |w| format!("/admin/connection-deployment/{}", w.link),
            none,
            ADMINS_ONLY,
        ),
        case(
            "PATCH",
            |w| format!("/admin/connection-deployment/{}", w.link),
            |_| Some(json!({"weight": 5})),
            ADMINS_ONLY,
        ),
        case(
            "DELETE",
            |w| format!("/admin/connection-deployment/{}", w.link),
            none,
            ADMINS_ONLY,
        ),
        // virtual keys
        case(
            "POST",
            |_| "/admin/virtual-key".into(),
            |w| Some(json!({"project_id": w.project})),
            PROJECT_DEVELOP,
        ),
        case(
            "GET",
            |w| format!("/admin/virtual-key?project_id={}", w.project),
            none,
            PROJECT_READ,
        ),
        case("GET", |_| "/admin/virtual-key".into(), none, ANY_SIGNED_IN),
        case(
            "GET",
            |w| format!("/admin/virtual-key/{}", w.key),
            none,
            PROJECT_READ,
        ),
        case(
            "PATCH",
            |w| format!("/admin/virtual-key/{}", w.key),
            |_| Some(json!({"blocked": true})),
            PROJECT_DEVELOP,
        ),
        case(
            "DELETE",
            |w| format!("/admin/virtual-key/{}", w.key),
            none,
            PROJECT_DEVELOP,
        ),
        // virtual key↔deployment links
        case(
            "POST",
            |_| "/admin/virtual-key-deployment".into(),
            |w| Some(json!({"virtual_key_id": w.key, "deployment_id": w.spare_deployment})),
            PROJECT_DEVELOP,
        ),
        case(
            "GET",
            |w| format!("/admin/virtual-key-deployment?virtual_key_id={}", w.key),
            none,
            PROJECT_READ,
        ),
        case(
            "GET",
            |_| "/admin/virtual-key-deployment".into(),
            none,
            ANY_SIGNED_IN,
        ),
        case(
            "GET",
            |w| format!("/admin/virtual-key-deployment/{}", w.key_link),
            none,
            PROJECT_READ,
        ),
        case(
            "DELETE",
            |w| format!("/admin/virtual-key-deployment/{}", w.key_link),
            none,
            PROJECT_DEVELOP,
        ),
        // graph and the document
        case(
            "GET",
            |w| format!("/admin/graph/{}/{}", w.key, w.deployment),
            none,
            ADMINS_ONLY,
        ),
        case("GET", |_| "/admin/openapi.json".into(), none, [200; 8]),
    ]
}

#[tokio::test]
async fn every_route_for_every_principal() {
    let mut failures = Vec::new();
    let mut cells = 0;
    for case in cases() {
        for (i, expected) in case.expect.iter().enumerate() {
            let w = World::new().await;
            let path = (case.path)(&w);
            let resp = w
                .call(case.method, &path, &who(&w, i), (case.body)(&w))
                .await;
            cells += 1;
            if resp.status != *expected {
                failures.push(format!(
                    "{} {path} as {}: expected {expected}, got {} {}",
                    case.method, PRINCIPALS[i], resp.status, resp.text
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A project admin of `project` reaching into `other_project` with its ids: all 404, never
/// 403 (the other project's existence is not revealed).
#[tokio::test]
async fn ids_of_another_project_are_invisible() {
    let w = World::new().await;
    let me = w.padmin.who();
    let other = w.other_project;
    let checks: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/admin/project/{other}"), None),
        (
            "PATCH",
            format!("/admin/project/{other}"),
            Some(json!({"name": "x"})),
        ),
        ("DELETE", format!("/admin/project/{other}"), None),
        ("GET", format!("/admin/membership?project_id={other}"), None),
        (
            "GET",
            format!("/admin/membership/{}", w.other_membership),
            None,
        ),
        (
            "PATCH",
            format!("/admin/membership/{}", w.other_membership),
            Some(json!({"role": "guest"})),
        ),
        (
            "DELETE",
            format!("/admin/membership/{}", w.other_membership),
            None,
        ),
        (
            "POST",
            "/admin/membership".into(),
            Some(json!({"user_id": w.padmin.id, "project_id": other, "role": "admin"})),
        ),
        (
            "POST",
            "/admin/project-invite-code".into(),
            Some(json!({"project_id": other})),
        ),
        (
            "GET",
            format!("/admin/project-invite-code?project_id={other}"),
            None,
        ),
        (
            "GET",
            format!("/admin/project-invite-code/{}", w.other_invite),
            None,
        ),
        (
            "DELETE",
            format!("/admin/project-invite-code/{}", w.other_invite),
            None,
        ),
        (
            "POST",
            "/admin/virtual-key".into(),
            Some(json!({"project_id": other})),
        ),
        (
            "GET",
            format!("/admin/virtual-key?project_id={other}"),
            None,
        ),
        ("GET", format!("/admin/virtual-key/{}", w.other_key), None),
        (
            "PATCH",
            format!("/admin/virtual-key/{}", w.other_key),
            Some(json!({"blocked": true})),
        ),
        (
            "DELETE",
            format!("/admin/virtual-key/{}", w.other_key),
            None,
        ),
        (
            "POST",
            "/admin/virtual-key-deployment".into(),
            Some(json!({"virtual_key_id": w.other_key, "deployment_id": w.spare_deployment})),
        ),
        (
            "GET",
            format!(
                "/admin/virtual-key-deployment?virtual_key_id={}",
                w.other_key
            ),
            None,
        ),
        (
            "GET",
            format!("/admin/virtual-key-deployment/{}", w.other_key_link),
            None,
        ),
        (
            "DELETE",
            format!("/admin/virtual-key-deployment/{}", w.other_key_link),
            None,
        ),
    ];
    for (method, path, body) in checks {
        let resp = w.call(method, &path, &me, body).await;
        assert_eq!(resp.status, 404, "{method} {path}: {}", resp.text);
    }
    // An unknown id and an invisible one answer alike.
    let unknown = w
        .get(&format!("/admin/virtual-key/{}", uuid::Uuid::now_v7()), &me)
        .await;
    let invisible = w
        .get(&format!("/admin/virtual-key/{}", w.other_key), &me)
        .await;
    assert_eq!(unknown.status, invisible.status);
}

fn ids(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} is a list: {v}"))
        .iter()
        .map(|x| x["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Lists without a filter show each caller only what they may read.
#[tokio::test]
async fn unfiltered_lists_are_scoped_to_the_caller() {
    let w = World::new().await;
    let p = w.project.to_string();
    let q = w.other_project.to_string();

    let projects = |v: &Value| ids(v, "projects");
    assert_eq!(
        projects(&w.get("/admin/project", &w.outsider.who()).await.json),
        Vec::<String>::new()
    );
    assert_eq!(
        projects(&w.get("/admin/project", &w.pguest.who()).await.json),
        vec![p.clone()]
    );
    assert_eq!(
        projects(&w.get("/admin/project", &w.other.who()).await.json),
        vec![q.clone()]
    );
    assert_eq!(
        projects(&w.get("/admin/project", &Who::Master).await.json).len(),
        2
    );

    let keys = |v: &Value| ids(v, "keys");
    assert_eq!(
        keys(&w.get("/admin/virtual-key", &w.pguest.who()).await.json),
        vec![w.key.to_string()]
    );
    assert_eq!(
        keys(&w.get("/admin/virtual-key", &w.other.who()).await.json),
        vec![w.other_key.to_string()]
    );
    assert_eq!(
        keys(&w.get("/admin/virtual-key", &w.outsider.who()).await.json),
        Vec::<String>::new()
    );
    assert_eq!(
        keys(&w.get("/admin/virtual-key", &w.admin.who()).await.json).len(),
        2
    );

    let links = |v: &Value| ids(v, "virtual_key_deployments");
    assert_eq!(
        links(
            &w.get("/admin/virtual-key-deployment", &w.pdev.who())
                .await
                .json
        ),
        vec![w.key_link.to_string()]
    );
    assert_eq!(
        links(
            &w.get("/admin/virtual-key-deployment", &w.other.who())
                .await
                .json
        ),
        vec![w.other_key_link.to_string()]
    );
    assert_eq!(
        links(
            &w.get("/admin/virtual-key-deployment", &Who::Master)
                .await
                .json
        )
        .len(),
        2
    );

    let invites = |v: &Value| ids(v, "invites");
    assert_eq!(
        invites(
            &w.get("/admin/project-invite-code", &w.padmin.who())
                .await
                .json
        ),
        vec![w.invite.to_string()]
    );
    // Developers and guests administer no project: they see no invites.
    assert_eq!(
        invites(
            &w.get("/admin/project-invite-code", &w.pdev.who())
                .await
                .json
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        invites(
            &w.get("/admin/project-invite-code", &w.other.who())
                .await
                .json
        ),
        vec![w.other_invite.to_string()]
    );
    assert_eq!(
        invites(&w.get("/admin/project-invite-code", &Who::Master).await.json).len(),
        2
    );

    let memberships = |v: &Value| ids(v, "memberships");
    assert_eq!(
        memberships(&w.get("/admin/membership", &w.pguest.who()).await.json),
        vec![w.guest_membership.to_string()]
    );
    assert_eq!(
        memberships(&w.get("/admin/membership", &w.outsider.who()).await.json),
        Vec::<String>::new()
    );
    assert_eq!(
        memberships(&w.get("/admin/membership", &Who::Master).await.json).len(),
        4
    );
    assert_eq!(
        memberships(
            &w.get(
                &format!("/admin/membership?project_id={p}"),
                &w.pguest.who()
            )
            .await
            .json
        )
        .len(),
        3
    );
}

/// Credentials that are not valid answer 401 everywhere, whatever else is wrong.
#[tokio::test]
async fn bad_credentials_are_401() {
    let w = World::new().await;
    for who in [
        Who::Header("X-LLMur-Key", "not-the-master-key".into()),
        Who::Header("X-LLMur-Session", "llmur-session-unknown".into()),
        Who::Header("Authorization", format!("Bearer {}", w.key_value)),
        Who::Header("X-LLMur-Key", String::new()),
    ] {
        for path in [
            "/admin/user/me",
            "/admin/project",
            "/admin/deployment",
            "/admin/connection",
        ] {
            let resp = w.get(path, &who).await;
            assert_eq!(resp.status, 401, "{who:?} {path}");
        }
    }
    // A virtual key is not an admin credential either.
    let resp = w
        .get(
            "/admin/project",
            &Who::Header("X-LLMur-Key", w.key_value.clone()),
        )
        .await;
    assert_eq!(resp.status, 401);
}
