//! How the admin API is wired to the rest of the server: the catalog-change callback runs
//! after every catalog write (and only then), and the OpenAPI document covers exactly the
//! routes the router serves.

#![expect(
    clippy::expect_used,
    reason = "test helpers outside #[test] functions fail loudly"
)]

mod admin_support;

use admin_support::{M, MASTER, Who, World, unknown};
use serde_json::{Value, json};

// ------------------------------------------------------------------ catalog callback

#[tokio::test]
async fn catalog_writes_notify_and_others_do_not() {
    let w = World::new().await;
    let mut expected = 0;
    let mut check = |what: &str, changed: bool, w: &World| {
        if changed {
            expected += 1;
        }
        assert_eq!(w.catalog_changes(), expected, "after {what}");
    };
    // Not catalog writes.
    w.post(
        "/admin/user",
        &M,
        json!({"email": "z@example.com", "password": "long enough"}),
    )
    .await;
    w.post(
        "/admin/membership",
        &M,
        json!({"user_id": w.outsider.id, "project_id": w.project, "role": "guest"}),
    )
    .await;
    w.post(
        "/admin/project-invite-code",
        &M,
        json!({"project_id": w.project}),
    )
    .await;
    w.get("/admin/connection", &M).await;
    check("non-catalog writes", false, &w);
    // A failed catalog write does not notify either.
    w.post("/admin/deployment", &M, json!({"name": "chat"}))
        .await;
    check("a failed write", false, &w);

    let project = w
        .post("/admin/project", &M, json!({"name": "p"}))
        .await
        .id();
    check("project create", true, &w);
    w.patch(
        &format!("/admin/project/{project}"),
        &M,
        json!({"name": "q"}),
    )
    .await;
    check("project patch", true, &w);
    let conn = w
        .post("/admin/connection", &M, json!({"provider": "openai/v1", "model": "m", "api_endpoint": "https://x", "api_key": "k"}))
        .await
        .id();
    check("connection create", true, &w);
    w.patch(
        &format!("/admin/connection/{conn}"),
        &M,
        json!({"model": "n"}),
    )
    .await;
    check("connection patch", true, &w);
    let dep = w
        .post("/admin/deployment", &M, json!({"name": "d"}))
        .await
        .id();
    check("deployment create", true, &w);
    w.patch(
        &format!("/admin/deployment/{dep}"),
        &M,
        json!({"blocked": true}),
    )
    .await;
    check("deployment patch", true, &w);
    let link = w
        .post(
            "/admin/connection-deployment",
            &M,
            json!({"connection_id": conn, "deployment_id": dep}),
        )
        .await
        .id();
    check("link create", true, &w);
    w.patch(
        &format!("/admin/connection-deployment/{link}"),
        &M,
        json!({"weight": 3}),
    )
    .await;
    check("link patch", true, &w);
    let key = w
        .post("/admin/virtual-key", &M, json!({"project_id": project}))
        .await
        .id();
    check("key create", true, &w);
    w.patch(
        &format!("/admin/virtual-key/{key}"),
        &M,
        json!({"blocked": true}),
    )
    .await;
    check("key patch", true, &w);
    let key_link = w
        .post(
            "/admin/virtual-key-deployment",
            &M,
            json!({"virtual_key_id": key, "deployment_id": dep}),
        )
        .await
        .id();
    check("key link create", true, &w);
    w.delete(&format!("/admin/virtual-key-deployment/{key_link}"), &M)
        .await;
    check("key link delete", true, &w);
    w.delete(&format!("/admin/virtual-key/{key}"), &M).await;
    check("key delete", true, &w);
    w.delete(&format!("/admin/connection-deployment/{link}"), &M)
        .await;
    check("link delete", true, &w);
    w.delete(&format!("/admin/deployment/{dep}"), &M).await;
    check("deployment delete", true, &w);
    w.delete(&format!("/admin/connection/{conn}"), &M).await;
    check("connection delete", true, &w);
    w.delete(&format!("/admin/project/{project}"), &M).await;
    check("project delete", true, &w);
}

// ------------------------------------------------------------------ OpenAPI

/// Every route of LLMUR-API.md and the extras: (method, path).
const ROUTES: &[(&str, &str)] = &[
    ("post", "/admin/user"),
    ("get", "/admin/user"),
    ("get", "/admin/user/me"),
    ("get", "/admin/user/{id}"),
    ("patch", "/admin/user/{id}"),
    ("delete", "/admin/user/{id}"),
    ("post", "/admin/session-token"),
    ("delete", "/admin/session-token"),
    ("delete", "/admin/session-token/{id}"),
    ("post", "/admin/project"),
    ("get", "/admin/project"),
    ("get", "/admin/project/{id}"),
    ("patch", "/admin/project/{id}"),
    ("delete", "/admin/project/{id}"),
    ("post", "/admin/membership"),
    ("get", "/admin/membership"),
    ("get", "/admin/membership/{id}"),
    ("patch", "/admin/membership/{id}"),
    ("delete", "/admin/membership/{id}"),
    ("post", "/admin/project-invite-code"),
    ("get", "/admin/project-invite-code"),
    ("post", "/admin/project-invite-code/redeem"),
    ("get", "/admin/project-invite-code/{id}"),
    ("delete", "/admin/project-invite-code/{id}"),
    ("post", "/admin/connection"),
    ("get", "/admin/connection"),
    ("get", "/admin/connection/{id}"),
    ("patch", "/admin/connection/{id}"),
    ("delete", "/admin/connection/{id}"),
    ("post", "/admin/deployment"),
    ("get", "/admin/deployment"),
    ("get", "/admin/deployment/{id}"),
    ("patch", "/admin/deployment/{id}"),
    ("delete", "/admin/deployment/{id}"),
    ("post", "/admin/connection-deployment"),
    ("get", "/admin/connection-deployment"),
    ("get", "/admin/connection-deployment/{id}"),
    ("patch", "/admin/connection-deployment/{id}"),
    ("delete", "/admin/connection-deployment/{id}"),
    ("post", "/admin/virtual-key"),
    ("get", "/admin/virtual-key"),
    ("get", "/admin/virtual-key/{id}"),
    ("patch", "/admin/virtual-key/{id}"),
    ("delete", "/admin/virtual-key/{id}"),
    ("post", "/admin/virtual-key-deployment"),
    ("get", "/admin/virtual-key-deployment"),
    ("get", "/admin/virtual-key-deployment/{id}"),
    ("delete", "/admin/virtual-key-deployment/{id}"),
    ("get", "/admin/graph/{key}/{deployment}"),
    ("get", "/admin/openapi.json"),
];

fn concrete(path: &str) -> String {
    path.replace("{id}", &unknown())
        .replace("{key}", &unknown())
        .replace("{deployment}", "chat")
}

#[tokio::test]
async fn openapi_document_matches_the_router() {
    let w = World::new().await;
    let served = w.get("/admin/openapi.json", &Who::Anon).await;
    assert_eq!(served.status, 200);
    let doc: Value = serde_json::from_str(&llmur_server::admin::openapi_json()).expect("json");
    assert_eq!(served.json, doc, "the served document is openapi_json()");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");

    // Every route we expect is documented, and nothing else is.
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().expect("item").keys() {
            if ["get", "post", "patch", "delete", "put"].contains(&method.as_str()) {
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    documented.sort();
    expected.sort();
    assert_eq!(documented, expected);

    // Every documented operation is served by the router: anonymous calls reach a handler
    // (401, or the unauthenticated login/document), never the router's 404 or 405.
    for (method, path) in &documented {
        let resp = w
            .send(
                &method.to_uppercase(),
                &concrete(path),
                &Who::Anon,
                Some(b"{}".to_vec()),
            )
            .await;
        assert!(
            ![404, 405].contains(&resp.status),
            "{method} {path} is documented but not routed: {}",
            resp.status
        );
        let open = ["/admin/session-token", "/admin/openapi.json"].contains(&path.as_str())
            && ["post", "get"].contains(&method.as_str());
        if !open {
            assert_eq!(resp.status, 401, "{method} {path} needs credentials");
        }
    }
    // The wrong method on a documented path is not routed.
    assert_eq!(w.send("PUT", "/admin/user", &M, None).await.status, 405);

    // Schemas are there, and no response schema has a field for a secret.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in [
        "UserOut",
        "ConnectionOut",
        "KeyOut",
        "Graph",
        "CreateConnection",
        "ErrorBody",
    ] {
        assert!(schemas.contains_key(name), "schema {name}");
    }
    assert!(
        schemas["ConnectionOut"]["properties"]
            .get("api_key")
            .is_none()
    );
    assert!(schemas["UserOut"]["properties"].get("password").is_none());
    assert!(doc["components"]["securitySchemes"]["master_key"].is_object());
    assert!(MASTER.len() > 8 && !served.text.contains(MASTER));
}
