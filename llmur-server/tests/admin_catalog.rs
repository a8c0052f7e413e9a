//! The admin API's catalog routes, in-process over a `MemoryStore`: connections (the
//! provider key never leaves), deployments, connection↔deployment links, virtual keys (the
//! full key only at creation), key↔deployment links and the route graph.

#![expect(
    clippy::expect_used,
    reason = "test helpers outside #[test] functions fail loudly"
)]

mod admin_support;

use admin_support::{M, PROVIDER_KEY, World, assert_limits_echoed, limits_body, merge, unknown};
use llmur_core::Store;
use llmur_server::admin::{UsageLevel, WindowUsage};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use uuid::Uuid;

// ------------------------------------------------------------------ connections

#[tokio::test]
async fn connections_lifecycle_and_the_provider_key_never_leaves() {
    let w = World::new().await;
    let openai = w
        .post(
            "/admin/connection",
            &M,
            merge(
                json!({"provider": "openai/v1", "model": "gpt-4o", "api_endpoint": "https://api.openai.com", "api_key": PROVIDER_KEY, "price": {"input_per_million": 2.5, "output_per_million": 10.0}}),
                limits_body(),
            ),
        )
        .await;
    assert_eq!(openai.status, 200, "{}", openai.text);
    assert_eq!(openai.json["provider"], "openai/v1");
    assert_eq!(openai.json["model"], "gpt-4o");
    assert_eq!(openai.json["price"]["output_per_million"], 10.0);
    assert!(openai.json.get("api_key").is_none());
    assert_limits_echoed(&openai.json);
    let azure = w
        .post(
            "/admin/connection",
            &M,
            json!({"provider": "azure/openai", "deployment_name": "gpt-4o-eu", "api_endpoint": "https://x.openai.azure.com", "api_key": PROVIDER_KEY, "api_version": "2024-10-21"}),
        )
        .await;
    assert_eq!(azure.status, 200, "{}", azure.text);
    assert_eq!(azure.json["deployment_name"], "gpt-4o-eu");
    assert_eq!(azure.json["api_version"], "2024-10-21");
    assert!(azure.json.get("model").is_none());

    // Stored encrypted, bound to the row.
    let id = openai.id();
    let stored = w
        .store
        .get_connection(llmur_core::ConnectionId(id.parse().expect("uuid")))
        .await
        .expect("stored");
    assert!(!String::from_utf8_lossy(&stored.api_key.ciphertext).contains(PROVIDER_KEY));
    let plain = w
        .secrets
        .decrypt(stored.id, &stored.api_key)
        .expect("decrypts");
    assert_eq!(plain.expose_secret(), PROVIDER_KEY);

    for bad in [
        json!({"provider": "anthropic", "model": "m", "api_endpoint": "https://x", "api_key": "k"}),
        json!({"model": "m", "api_endpoint": "https://x", "api_key": "k"}),
        json!({"provider": "openai/v1", "api_endpoint": "https://x", "api_key": "k"}),
        json!({"provider": "openai/v1", "model": "m", "api_endpoint": "https://x"}),
        json!({"provider": "openai/v1", "model": "m", "api_endpoint": "https://x", "api_key": ""}),
        json!({"provider": "azure/openai", "api_endpoint": "https://x", "api_key": "k"}),
        json!({"provider": "openai/v1", "model": "m", "api_endpoint": "http://169.254.169.254/", "api_key": "k"}),
        json!({"provider": "openai/v1", "model": "m", "api_endpoint": "ftp://x", "api_key": "k"}),
        json!({"provider": "openai/v1", "model": "m", "api_endpoint": "https://x", "api_key": "k", "colour": 1}),
        // PostgreSQL cannot store a NUL: refused whatever the store.
        json!({"provider": "openai/v1", "model": "gpt\u{0}4o", "api_endpoint": "https://x", "api_key": "k"}),
    ] {
        let resp = w.post("/admin/connection", &M, bad.clone()).await;
        assert_eq!(resp.status, 422, "{bad}: {}", resp.text);
    }
    let metadata = w
        .post("/admin/connection", &M, json!({"provider": "openai/v1", "model": "m", "api_endpoint": "http://169.254.169.254/", "api_key": "k"}))
        .await;
    assert!(
        metadata.json["error"]
            .as_str()
            .expect("error")
            .contains("metadata")
    );

    // PATCH: rotate the key, clear the price, change the model; wrong-provider fields 422.
    let path = format!("/admin/connection/{id}");
    let rotated = w
        .patch(
            &path,
            &M,
            json!({"api_key": "sk-rotated-secret", "price": null, "model": "gpt-4o-mini"}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    assert_eq!(rotated.json["price"], Value::Null);
    assert_eq!(rotated.json["model"], "gpt-4o-mini");
    assert!(!rotated.text.contains("sk-rotated-secret"));
    let stored = w.store.get_connection(stored.id).await.expect("stored");
    assert_eq!(
        w.secrets
            .decrypt(stored.id, &stored.api_key)
            .expect("decrypts")
            .expose_secret(),
        "sk-rotated-secret"
    );
    assert_eq!(
        w.patch(&path, &M, json!({"deployment_name": "x"}))
            .await
            .status,
        422
    );
    assert_eq!(
        w.patch(&path, &M, json!({"api_version": "2024-10-21"}))
            .await
            .status,
        422
    );
    assert_eq!(
        w.patch(&path, &M, json!({"api_endpoint": "http://[fe80::1]/"}))
            .await
            .status,
        422
    );
    assert_eq!(
        w.patch(
            &format!("/admin/connection/{}", azure.id()),
            &M,
            json!({"model": "x"})
        )
        .await
        .status,
        422
    );
    let cleared = w
        .patch(
            &format!("/admin/connection/{}", azure.id()),
            &M,
            json!({"api_version": null}),
        )
        .await;
    assert_eq!(cleared.json["api_version"], Value::Null);
    assert_eq!(
        w.patch(
            &format!("/admin/connection/{}", unknown()),
            &M,
            json!({"model": "x"})
        )
        .await
        .status,
        404
    );

    let list = w.get("/admin/connection?limit=2", &M).await;
    assert_eq!(list.json["total"], 4);
    assert_eq!(list.json["connections"].as_array().expect("list").len(), 2);
    assert!(list.json["next_cursor"].is_string());
    assert_eq!(w.get(&path, &M).await.json["id"], id);
    assert_eq!(
        w.get(&format!("/admin/connection/{}", unknown()), &M)
            .await
            .status,
        404
    );
    assert!(
        w.delete(&path, &M).await.json["message"]
            .as_str()
            .expect("msg")
            .contains(&id)
    );
    assert_eq!(w.get(&path, &M).await.status, 404);

    for (request, body) in w.all_bodies() {
        assert!(
            !body.contains(PROVIDER_KEY),
            "{request} leaked the provider key: {body}"
        );
        assert!(
            !body.contains("sk-rotated-secret"),
            "{request} leaked the provider key"
        );
    }
}

#[tokio::test]
async fn private_endpoints_can_be_refused() {
    let w = World::with(|s| s.refuse_private_endpoints = true).await;
    let body = json!({"provider": "openai/v1", "model": "m", "api_endpoint": "http://127.0.0.1:8099", "api_key": "k"});
    assert_eq!(w.post("/admin/connection", &M, body).await.status, 422);
    let open = World::new().await;
    let body = json!({"provider": "openai/v1", "model": "m", "api_endpoint": "http://127.0.0.1:8099", "api_key": "k"});
    assert_eq!(open.post("/admin/connection", &M, body).await.status, 200);
}

// ------------------------------------------------------------------ deployments and links

#[tokio::test]
async fn deployments_lifecycle() {
    let w = World::new().await;
    let created = w
        .post(
            "/admin/deployment",
            &w.admin.who(),
            merge(
                json!({"name": "embed", "access": "public", "strategy": "weighted_round_robin"}),
                limits_body(),
            ),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json["access"], "public");
    assert_eq!(created.json["strategy"], "weighted_round_robin");
    assert_eq!(created.json["blocked"], false);
    assert_limits_echoed(&created.json);
    let defaults = w
        .post("/admin/deployment", &M, json!({"name": "plain"}))
        .await;
    assert_eq!(defaults.json["access"], "private");
    assert_eq!(defaults.json["strategy"], "round_robin");
    assert_eq!(
        w.post("/admin/deployment", &M, json!({"name": "embed"}))
            .await
            .status,
        409
    );
    assert_eq!(
        w.post(
            "/admin/deployment",
            &M,
            json!({"name": "x", "strategy": "random"})
        )
        .await
        .status,
        422
    );
    assert_eq!(
        w.post("/admin/deployment", &M, json!({"access": "public"}))
            .await
            .status,
        422
    );

    let id = created.id();
    let path = format!("/admin/deployment/{id}");
    let patched = w
        .patch(
            &path,
            &M,
            json!({"blocked": true, "access": "private", "name": "embeddings"}),
        )
        .await;
    assert_eq!(patched.json["blocked"], true);
    assert_eq!(patched.json["name"], "embeddings");
    assert_eq!(
        w.patch(&path, &M, json!({"name": "plain"})).await.status,
        409
    );
    assert_eq!(
        w.get(&path, &w.pguest.who()).await.json["name"],
        "embeddings"
    );
    let list = w.get("/admin/deployment", &w.outsider.who()).await;
    assert_eq!(list.json["deployments"].as_array().expect("list").len(), 4);
    assert_eq!(
        w.get(&format!("/admin/deployment/{}", unknown()), &M)
            .await
            .status,
        404
    );
    assert!(
        w.delete(&path, &M).await.json["message"]
            .as_str()
            .expect("msg")
            .contains(&id)
    );
    assert_eq!(w.delete(&path, &M).await.status, 404);
}

#[tokio::test]
async fn connection_deployment_links() {
    let w = World::new().await;
    let body =
        json!({"connection_id": w.spare_connection, "deployment_id": w.deployment, "weight": 40});
    let created = w
        .post("/admin/connection-deployment", &M, body.clone())
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json["weight"], 40);
    assert_eq!(
        w.post("/admin/connection-deployment", &M, body)
            .await
            .status,
        409
    );
    let default_weight = w
        .post(
            "/admin/connection-deployment",
            &M,
            json!({"connection_id": w.spare_connection, "deployment_id": w.spare_deployment}),
        )
        .await;
    assert_eq!(default_weight.json["weight"], 1);
    for (bad, status) in [
        (
            json!({"connection_id": unknown(), "deployment_id": w.deployment}),
            404,
        ),
        (
            json!({"connection_id": w.connection, "deployment_id": unknown()}),
            404,
        ),
        (
            json!({"connection_id": w.connection, "deployment_id": w.spare_deployment, "weight": 101}),
            422,
        ),
        (json!({"connection_id": w.connection}), 422),
    ] {
        assert_eq!(
            w.post("/admin/connection-deployment", &M, bad.clone())
                .await
                .status,
            status,
            "{bad}"
        );
    }
    let id = created.id();
    let path = format!("/admin/connection-deployment/{id}");
    assert_eq!(
        w.patch(&path, &M, json!({"weight": 0})).await.json["weight"],
        0
    );
    assert_eq!(w.patch(&path, &M, json!({"weight": 101})).await.status, 422);
    assert_eq!(
        w.get(&path, &M).await.json["connection_id"],
        w.spare_connection.to_string()
    );
    let filtered = w
        .get(
            &format!(
                "/admin/connection-deployment?deployment_id={}",
                w.deployment
            ),
            &M,
        )
        .await;
    assert_eq!(
        filtered.json["connection_deployments"]
            .as_array()
            .expect("list")
            .len(),
        2
    );
    let by_connection = w
        .get(
            &format!(
                "/admin/connection-deployment?connection_id={}",
                w.spare_connection
            ),
            &M,
        )
        .await;
    assert_eq!(
        by_connection.json["connection_deployments"]
            .as_array()
            .expect("list")
            .len(),
        2
    );
    assert!(
        w.delete(&path, &M).await.json["message"]
            .as_str()
            .expect("msg")
            .contains(&id)
    );
    assert_eq!(w.get(&path, &M).await.status, 404);
    assert_eq!(w.patch(&path, &M, json!({"weight": 1})).await.status, 404);
}

// ------------------------------------------------------------------ virtual keys

#[tokio::test]
async fn virtual_keys_show_the_key_once() {
    let w = World::new().await;
    let created = w
        .post(
            "/admin/virtual-key",
            &w.pdev.who(),
            merge(
                json!({"project_id": w.project, "description": "for the web app"}),
                limits_body(),
            ),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let key = created.json["key"].as_str().expect("full key").to_owned();
    assert!(key.starts_with("sk-"));
    let alias = created.json["alias"].as_str().expect("alias").to_owned();
    assert!(alias.starts_with("sk-") && alias.contains("...") && alias != key);
    assert_eq!(created.json["blocked"], false);
    assert_eq!(created.json["project_id"], w.project.to_string());
    assert_limits_echoed(&created.json);
    let id = created.id();
    // Stored as its keyed hash.
    let stored = w
        .store
        .get_virtual_key_by_hash(&w.secrets.hash_virtual_key(&key))
        .await
        .expect("stored by hash");
    assert_eq!(stored.id.to_string(), id);

    let path = format!("/admin/virtual-key/{id}");
    let read = w.get(&path, &w.pguest.who()).await;
    assert_eq!(read.json["alias"], alias);
    assert!(read.json.get("key").is_none());
    w.get(&format!("/admin/virtual-key?project_id={}", w.project), &M)
        .await;
    w.get("/admin/virtual-key", &w.pguest.who()).await;

    let patched = w
        .patch(
            &path,
            &w.padmin.who(),
            json!({"alias": "web", "description": null, "blocked": true}),
        )
        .await;
    assert_eq!(patched.json["alias"], "web");
    assert_eq!(patched.json["description"], Value::Null);
    assert_eq!(patched.json["blocked"], true);
    assert!(patched.json.get("key").is_none());
    let named = w
        .post(
            "/admin/virtual-key",
            &M,
            json!({"project_id": w.project, "alias": "named"}),
        )
        .await;
    assert_eq!(named.json["alias"], "named");
    let control = w
        .patch(&path, &w.padmin.who(), json!({"alias": "a\u{0}b"}))
        .await;
    assert_eq!(control.status, 422, "{}", control.text);

    assert_eq!(
        w.post("/admin/virtual-key", &M, json!({"project_id": unknown()}))
            .await
            .status,
        404
    );
    assert_eq!(
        w.post(
            "/admin/virtual-key",
            &M,
            json!({"project_id": w.project, "key": "sk-mine"})
        )
        .await
        .status,
        422
    );
    assert_eq!(
        w.post(
            "/admin/virtual-key",
            &M,
            json!({"project_id": w.project, "alias": " "})
        )
        .await
        .status,
        422
    );
    assert_eq!(
        w.get(&format!("/admin/virtual-key/{}", unknown()), &M)
            .await
            .status,
        404
    );

    let occurrences: Vec<String> = w
        .all_bodies()
        .into_iter()
        .filter(|(_, body)| body.contains(&key))
        .map(|(request, _)| request)
        .collect();
    assert_eq!(
        occurrences,
        vec!["POST /admin/virtual-key".to_owned()],
        "the full key appears only at creation"
    );

    assert!(
        w.delete(&path, &M).await.json["message"]
            .as_str()
            .expect("msg")
            .contains(&id)
    );
    assert_eq!(w.get(&path, &M).await.status, 404);
}

#[tokio::test]
async fn virtual_key_deployment_links() {
    let w = World::new().await;
    let body = json!({"virtual_key_id": w.key, "deployment_id": w.spare_deployment});
    let created = w
        .post("/admin/virtual-key-deployment", &w.pdev.who(), body.clone())
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(
        created.json["deployment_id"],
        w.spare_deployment.to_string()
    );
    assert_eq!(
        w.post("/admin/virtual-key-deployment", &M, body)
            .await
            .status,
        409
    );
    assert_eq!(
        w.post(
            "/admin/virtual-key-deployment",
            &M,
            json!({"virtual_key_id": w.key, "deployment_id": unknown()})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        w.post(
            "/admin/virtual-key-deployment",
            &M,
            json!({"virtual_key_id": unknown(), "deployment_id": w.deployment})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        w.post(
            "/admin/virtual-key-deployment",
            &M,
            json!({"virtual_key_id": w.key})
        )
        .await
        .status,
        422
    );
    let list = w
        .get(
            &format!("/admin/virtual-key-deployment?virtual_key_id={}", w.key),
            &w.pguest.who(),
        )
        .await;
    assert_eq!(
        list.json["virtual_key_deployments"]
            .as_array()
            .expect("list")
            .len(),
        2
    );
    let by_deployment = w
        .get(
            &format!(
                "/admin/virtual-key-deployment?deployment_id={}",
                w.deployment
            ),
            &M,
        )
        .await;
    assert_eq!(
        by_deployment.json["virtual_key_deployments"]
            .as_array()
            .expect("list")
            .len(),
        2
    );
    let id = created.id();
    let path = format!("/admin/virtual-key-deployment/{id}");
    assert_eq!(
        w.get(&path, &w.pguest.who()).await.json["virtual_key_id"],
        w.key.to_string()
    );
    assert!(
        w.delete(&path, &w.pdev.who()).await.json["message"]
            .as_str()
            .expect("msg")
            .contains(&id)
    );
    assert_eq!(w.get(&path, &M).await.status, 404);
}

// ------------------------------------------------------------------ graph

#[tokio::test]
async fn graph_shows_the_route_with_usage_and_no_secret() {
    let usage = |level: UsageLevel, _id: Uuid| {
        let n = match level {
            UsageLevel::VirtualKey => 1,
            UsageLevel::Project => 2,
            UsageLevel::Deployment => 3,
            UsageLevel::Connection => 4,
        };
        WindowUsage {
            requests: [n; 5],
            tokens: [n * 100; 5],
            cost_usd: [0.5; 5],
        }
    };
    let w = World::with(|s| s.usage = std::sync::Arc::new(usage)).await;
    let by_id = w
        .get(&format!("/admin/graph/{}/{}", w.key, w.deployment), &M)
        .await;
    assert_eq!(by_id.status, 200, "{}", by_id.text);
    let g = &by_id.json;
    assert_eq!(g["virtual_key"]["id"], w.key.to_string());
    assert_eq!(g["virtual_key"]["alias"], "fixture key");
    assert_eq!(g["virtual_key"]["usage"]["requests"]["minute"], 1);
    assert_eq!(g["project"]["id"], w.project.to_string());
    assert_eq!(g["project"]["usage"]["tokens"]["month"], 200);
    assert_eq!(g["deployment"]["name"], "chat");
    assert_eq!(g["deployment"]["usage"]["requests"]["week"], 3);
    assert_eq!(g["connections"][0]["id"], w.connection.to_string());
    assert_eq!(g["connections"][0]["usage"]["budget"]["day"], 0.5);
    assert_eq!(g["connections"][0]["usage"]["requests"]["hour"], 4);
    assert!(g["connections"][0]["limits"]["request_limits"].is_object());
    assert_eq!(g["key_may_use"], true);

    // By the key itself and the deployment's name.
    let by_value = w
        .get(
            &format!("/admin/graph/{}/{}", w.key_value, w.deployment_name),
            &w.admin.who(),
        )
        .await;
    assert_eq!(by_value.status, 200);
    assert_eq!(by_value.json["virtual_key"]["id"], w.key.to_string());
    assert!(!by_value.text.contains(&w.key_value));
    assert!(!by_value.text.contains(PROVIDER_KEY));

    assert_eq!(
        w.get(&format!("/admin/graph/{}/chat", unknown()), &M)
            .await
            .status,
        401
    );
    assert_eq!(
        w.get("/admin/graph/sk-llmur-not-a-key/chat", &M)
            .await
            .status,
        401
    );
    assert_eq!(
        w.get(&format!("/admin/graph/{}/{}", w.key, unknown()), &M)
            .await
            .status,
        404
    );
    assert_eq!(
        w.get(&format!("/admin/graph/{}/nope", w.key), &M)
            .await
            .status,
        404
    );
    let empty = w.get(&format!("/admin/graph/{}/spare", w.key), &M).await;
    assert_eq!(empty.status, 503, "{}", empty.text);
    let unlinked = w
        .get(&format!("/admin/graph/{}/chat", w.other_key), &M)
        .await;
    assert_eq!(
        unlinked.json["key_may_use"], true,
        "other_key is linked to chat too"
    );
}
