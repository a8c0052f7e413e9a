//! The admin API's account and project routes, in-process over a `MemoryStore`: users,
//! sessions, projects, memberships and invites — happy paths, unknown ids (404), bad bodies
//! (422), missing bodies (400), duplicates (409), PATCH and pagination.

#![expect(
    clippy::expect_used,
    reason = "test helpers outside #[test] functions fail loudly"
)]

mod admin_support;

use admin_support::{M, PASSWORD, Who, World, assert_limits_echoed, limits_body, merge, unknown};
use llmur_core::Store;
use llmur_core::store::types::{Invite, InviteId, Millis, ProjectRole, Session, SessionId};
use llmur_server::security::new_session_token;
use serde_json::{Value, json};

// ------------------------------------------------------------------ users

#[tokio::test]
async fn users_create_get_patch_delete() {
    let w = World::new().await;
    let created = w
        .post(
            "/admin/user",
            &M,
            json!({"email": "Ada@Example.com", "password": "correct horse", "role": "admin"}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json["name"], "Ada");
    assert_eq!(created.json["email"], "ada@example.com");
    assert_eq!(created.json["role"], "admin");
    assert_eq!(created.json["blocked"], false);
    assert!(
        created.json["created_at"]
            .as_str()
            .expect("ts")
            .ends_with('Z')
    );
    assert!(!created.text.contains("argon2") && !created.text.contains("password"));
    let id = created.id();

    // Email taken, compared case-insensitively.
    let dup = w
        .post(
            "/admin/user",
            &M,
            json!({"email": "ADA@example.com", "password": "12345678"}),
        )
        .await;
    assert_eq!(dup.status, 409);

    assert_eq!(
        w.get(&format!("/admin/user/{id}"), &M).await.json["email"],
        "ada@example.com"
    );
    assert_eq!(
        w.get(&format!("/admin/user/{}", unknown()), &M)
            .await
            .status,
        404
    );
    assert_eq!(w.get("/admin/user/not-a-uuid", &M).await.status, 404);

    let patched = w
        .patch(
            &format!("/admin/user/{id}"),
            &M,
            json!({"name": "Countess", "blocked": true, "role": "member"}),
        )
        .await;
    assert_eq!(patched.status, 200);
    assert_eq!(patched.json["name"], "Countess");
    assert_eq!(patched.json["blocked"], true);
    assert_eq!(patched.json["role"], "member");
    assert_eq!(
        w.patch(
            &format!("/admin/user/{}", unknown()),
            &M,
            json!({"name": "x"})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        w.patch(
            &format!("/admin/user/{id}"),
            &M,
            json!({"password": "short"})
        )
        .await
        .status,
        422
    );
    assert_eq!(
        w.patch(&format!("/admin/user/{id}"), &M, json!({"nick": "x"}))
            .await
            .status,
        422
    );

    let deleted = w.delete(&format!("/admin/user/{id}"), &M).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.json["success"], true);
    assert!(
        deleted.json["message"]
            .as_str()
            .expect("message")
            .contains(&id)
    );
    assert_eq!(w.get(&format!("/admin/user/{id}"), &M).await.status, 404);
    assert_eq!(w.delete(&format!("/admin/user/{id}"), &M).await.status, 404);
}

#[tokio::test]
async fn user_bodies_are_checked() {
    let w = World::new().await;
    for (body, status) in [
        (None, 400),
        (Some(&b""[..]), 400),
        (Some(&b"   "[..]), 400),
        (Some(&b"{"[..]), 422),
        (Some(&b"[]"[..]), 422),
        (Some(&br#"{"email": "a@b.c"}"#[..]), 422),
        (
            Some(&br#"{"email": "a@b.c", "password": "short"}"#[..]),
            422,
        ),
        (
            Some(&br#"{"email": "no-at-sign", "password": "long enough"}"#[..]),
            422,
        ),
        (
            Some(&br#"{"email": "a@b.c", "password": "long enough", "role": "root"}"#[..]),
            422,
        ),
        (
            Some(&br#"{"email": "a@b.c", "password": "long enough", "extra": 1}"#[..]),
            422,
        ),
        // Control characters in a name (NUL cannot even be stored in PostgreSQL).
        (
            Some(&br#"{"email": "a@b.c", "password": "long enough", "name": "a\u0000b"}"#[..]),
            422,
        ),
        (
            Some(&br#"{"email": "a@b.c", "password": "long enough", "name": "a\nb"}"#[..]),
            422,
        ),
    ] {
        let resp = w
            .send("POST", "/admin/user", &M, body.map(<[u8]>::to_vec))
            .await;
        assert_eq!(resp.status, status, "{body:?}: {}", resp.text);
    }
}

#[tokio::test]
async fn users_list_paginates() {
    let w = World::new().await;
    // Six fixture users.
    let first = w.get("/admin/user?limit=4", &M).await;
    assert_eq!(first.json["users"].as_array().expect("users").len(), 4);
    let cursor = first.json["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let second = w
        .get(&format!("/admin/user?limit=4&cursor={cursor}"), &M)
        .await;
    assert_eq!(second.json["users"].as_array().expect("users").len(), 2);
    assert_eq!(second.json["next_cursor"], Value::Null);
    let all = w.get("/admin/user", &M).await;
    assert_eq!(all.json["users"].as_array().expect("users").len(), 6);
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "cursor=nope",
        "colour=blue",
    ] {
        assert_eq!(
            w.get(&format!("/admin/user?{bad}"), &M).await.status,
            400,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn me_and_self_service() {
    let w = World::new().await;
    let me = w.get("/admin/user/me", &w.pguest.who()).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json["id"], w.pguest.id.to_string());
    // The master key is not a user.
    assert_eq!(w.get("/admin/user/me", &M).await.status, 400);

    let path = format!("/admin/user/{}", w.pguest.id);
    let renamed = w
        .patch(&path, &w.pguest.who(), json!({"name": "Gus"}))
        .await;
    assert_eq!(renamed.json["name"], "Gus");
    assert_eq!(
        w.patch(&path, &w.pguest.who(), json!({"role": "admin"}))
            .await
            .status,
        403
    );
    assert_eq!(
        w.patch(&path, &w.pguest.who(), json!({"blocked": false}))
            .await
            .status,
        403
    );
    // A new password works for signing in; the old one stops working.
    let changed = w
        .patch(
            &path,
            &w.pguest.who(),
            json!({"password": "a brand new password"}),
        )
        .await;
    assert_eq!(changed.status, 200);
    let email = w.pguest.email.clone();
    let old = w
        .post(
            "/admin/session-token",
            &Who::Anon,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(old.status, 401);
    let new = w
        .post(
            "/admin/session-token",
            &Who::Anon,
            json!({"email": email, "password": "a brand new password"}),
        )
        .await;
    assert_eq!(new.status, 200, "{}", new.text);
}

// ------------------------------------------------------------------ sessions

#[tokio::test]
async fn sign_in_use_and_sign_out() {
    let w = World::new().await;
    let login = w
        .post(
            "/admin/session-token",
            &Who::Anon,
            json!({"email": "PGUEST@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    let token = login.json["token"].as_str().expect("token").to_owned();
    assert_eq!(login.json["info"]["user_id"], w.pguest.id.to_string());
    assert_eq!(login.json["info"]["revoked"], false);
    assert!(
        login.json["info"]["expires_at"]
            .as_str()
            .expect("expiry")
            .ends_with('Z')
    );
    // Only the hash is stored.
    let stored = w
        .store
        .get_session_by_token_hash(&w.secrets.hash_session_token(&token))
        .await
        .expect("stored by hash");
    assert_ne!(stored.token_hash, token);
    let ttl = stored.expires_at.0 - stored.created_at.0;
    assert_eq!(ttl, 30 * 24 * 3600 * 1000);

    let session = Who::Session(token);
    assert_eq!(w.get("/admin/user/me", &session).await.status, 200);
    let out = w.delete("/admin/session-token", &session).await;
    assert_eq!(out.status, 200);
    assert_eq!(w.get("/admin/user/me", &session).await.status, 401);
    assert_eq!(w.delete("/admin/session-token", &M).await.status, 400);
}

#[tokio::test]
async fn bad_credentials_get_one_answer() {
    let w = World::new().await;
    let wrong = w
        .post(
            "/admin/session-token",
            &Who::Anon,
            json!({"email": w.pguest.email, "password": "wrong password"}),
        )
        .await;
    let nobody = w
        .post(
            "/admin/session-token",
            &Who::Anon,
            json!({"email": "nobody@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!((wrong.status, nobody.status), (401, 401));
    assert_eq!(wrong.text, nobody.text);
    assert_eq!(
        w.post("/admin/session-token", &Who::Anon, json!({"email": "x"}))
            .await
            .status,
        422
    );
    assert_eq!(
        w.send("POST", "/admin/session-token", &Who::Anon, None)
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn blocked_users_cannot_sign_in_and_lose_their_sessions() {
    let w = World::new().await;
    assert_eq!(w.get("/admin/user/me", &w.pdev.who()).await.status, 200);
    let blocked = w
        .patch(
            &format!("/admin/user/{}", w.pdev.id),
            &M,
            json!({"blocked": true}),
        )
        .await;
    assert_eq!(blocked.status, 200);
    assert_eq!(w.get("/admin/user/me", &w.pdev.who()).await.status, 401);
    let login = w
        .post(
            "/admin/session-token",
            &Who::Anon,
            json!({"email": w.pdev.email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status, 401);
    let wrong = w
        .post(
            "/admin/session-token",
            &Who::Anon,
            json!({"email": w.pdev.email, "password": "wrong password"}),
        )
        .await;
    assert_eq!(
        login.text, wrong.text,
        "blocked and wrong password look alike"
    );
}

#[tokio::test]
async fn expired_revoked_and_orphaned_sessions_are_refused() {
    let w = World::new().await;
    let token = new_session_token();
    w.store
        .create_session(Session {
            id: SessionId::new_v7(),
            user_id: w.pguest.id,
            token_hash: w.secrets.hash_session_token(&token),
            created_at: Millis(Millis::now().0 - 7_200_000),
            expires_at: Millis(Millis::now().0 - 1),
            revoked: false,
        })
        .await
        .expect("session");
    assert_eq!(
        w.get("/admin/user/me", &Who::Session(token)).await.status,
        401
    );

    w.store
        .revoke_session(w.pdev.session)
        .await
        .expect("revoke");
    assert_eq!(w.get("/admin/user/me", &w.pdev.who()).await.status, 401);

    assert_eq!(
        w.delete(&format!("/admin/user/{}", w.outsider.id), &M)
            .await
            .status,
        200
    );
    assert_eq!(w.get("/admin/user/me", &w.outsider.who()).await.status, 401);
}

#[tokio::test]
async fn sessions_are_revoked_by_id() {
    let w = World::new().await;
    let path = format!("/admin/session-token/{}", w.pguest.session);
    // Someone else's session is invisible.
    assert_eq!(w.delete(&path, &w.padmin.who()).await.status, 404);
    let resp = w.delete(&path, &w.pguest.who()).await;
    assert_eq!(resp.status, 200);
    assert!(
        resp.json["message"]
            .as_str()
            .expect("msg")
            .contains(&w.pguest.session.to_string())
    );
    assert_eq!(w.get("/admin/user/me", &w.pguest.who()).await.status, 401);
    assert_eq!(
        w.delete(&format!("/admin/session-token/{}", w.pdev.session), &M)
            .await
            .status,
        200
    );
    assert_eq!(
        w.delete(&format!("/admin/session-token/{}", unknown()), &M)
            .await
            .status,
        404
    );
}

// ------------------------------------------------------------------ projects

#[tokio::test]
async fn projects_lifecycle() {
    let w = World::new().await;
    let created = w
        .post(
            "/admin/project",
            &w.outsider.who(),
            merge(json!({"name": "mine"}), limits_body()),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_limits_echoed(&created.json);
    let id = created.id();
    // The creator is its admin.
    let members = w
        .get(
            &format!("/admin/membership?project_id={id}"),
            &w.outsider.who(),
        )
        .await;
    assert_eq!(
        members.json["memberships"][0]["user_id"],
        w.outsider.id.to_string()
    );
    assert_eq!(members.json["memberships"][0]["role"], "admin");
    assert_eq!(
        w.patch(
            &format!("/admin/project/{id}"),
            &w.outsider.who(),
            json!({"name": "ours"})
        )
        .await
        .status,
        200
    );

    // The master key creates projects without members.
    let by_master = w
        .post("/admin/project", &M, json!({"name": "unowned"}))
        .await;
    let members = w
        .get(
            &format!("/admin/membership?project_id={}", by_master.id()),
            &M,
        )
        .await;
    assert_eq!(members.json["memberships"], json!([]));

    let patched = w
        .patch(
            &format!("/admin/project/{id}"),
            &M,
            json!({"token_limits": {"tokens_per_hour": 7}}),
        )
        .await;
    assert_eq!(patched.json["name"], "ours");
    assert_eq!(patched.json["token_limits"]["tokens_per_hour"], 7);
    assert_eq!(
        patched.json["token_limits"]["tokens_per_day"],
        Value::Null,
        "a sent group replaces the group"
    );
    assert_eq!(
        patched.json["request_limits"]["requests_per_minute"], 10,
        "other groups stay"
    );

    assert_eq!(
        w.get(&format!("/admin/project/{id}"), &M).await.json["name"],
        "ours"
    );
    assert_eq!(
        w.get(&format!("/admin/project/{}", unknown()), &M)
            .await
            .status,
        404
    );
    assert_eq!(
        w.post("/admin/project", &M, json!({"name": ""}))
            .await
            .status,
        422
    );
    assert_eq!(
        w.post(
            "/admin/project",
            &M,
            json!({"name": "x", "request_limits": {"per_minute": 1}})
        )
        .await
        .status,
        422
    );
    assert_eq!(
        w.post(
            "/admin/project",
            &M,
            json!({"name": "x", "budget_limits": {"cost_per_day": -1}})
        )
        .await
        .status,
        422
    );
    assert_eq!(w.send("POST", "/admin/project", &M, None).await.status, 400);

    let deleted = w.delete(&format!("/admin/project/{id}"), &M).await;
    assert!(deleted.json["message"].as_str().expect("msg").contains(&id));
    assert_eq!(w.get(&format!("/admin/project/{id}"), &M).await.status, 404);
    assert_eq!(
        w.delete(&format!("/admin/project/{id}"), &M).await.status,
        404
    );
}

// ------------------------------------------------------------------ memberships

#[tokio::test]
async fn memberships_lifecycle() {
    let w = World::new().await;
    let body = json!({"user_id": w.outsider.id, "project_id": w.project, "role": "developer"});
    let created = w
        .post("/admin/membership", &w.padmin.who(), body.clone())
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json["role"], "developer");
    assert_eq!(w.post("/admin/membership", &M, body).await.status, 409);
    let unknown_user = json!({"user_id": unknown(), "project_id": w.project, "role": "guest"});
    assert_eq!(
        w.post("/admin/membership", &M, unknown_user).await.status,
        404
    );
    let unknown_project =
        json!({"user_id": w.outsider.id, "project_id": unknown(), "role": "guest"});
    assert_eq!(
        w.post("/admin/membership", &M, unknown_project)
            .await
            .status,
        404
    );
    let bad_role = json!({"user_id": w.outsider.id, "project_id": w.project, "role": "owner"});
    assert_eq!(w.post("/admin/membership", &M, bad_role).await.status, 422);

    let id = created.id();
    let patched = w
        .patch(
            &format!("/admin/membership/{id}"),
            &w.padmin.who(),
            json!({"role": "guest"}),
        )
        .await;
    assert_eq!(patched.json["role"], "guest");
    assert_eq!(
        w.get(&format!("/admin/membership/{id}"), &w.outsider.who())
            .await
            .json["role"],
        "guest"
    );
    let filtered = w
        .get(
            &format!(
                "/admin/membership?user_id={}&project_id={}",
                w.outsider.id, w.project
            ),
            &M,
        )
        .await;
    assert_eq!(
        filtered.json["memberships"].as_array().expect("list").len(),
        1
    );
    assert!(
        w.delete(&format!("/admin/membership/{id}"), &M).await.json["message"]
            .as_str()
            .expect("msg")
            .contains(&id)
    );
    assert_eq!(
        w.get(&format!("/admin/membership/{id}"), &M).await.status,
        404
    );
    assert_eq!(
        w.patch(
            &format!("/admin/membership/{}", unknown()),
            &M,
            json!({"role": "guest"})
        )
        .await
        .status,
        404
    );
}

// ------------------------------------------------------------------ invites

#[tokio::test]
async fn invites_lifecycle_and_redemption() {
    let w = World::new().await;
    let created = w
        .post(
            "/admin/project-invite-code",
            &w.padmin.who(),
            json!({"project_id": w.project}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json["role"], "guest");
    assert_eq!(created.json["valid"], true);
    assert_eq!(created.json["valid_until"], Value::Null);
    assert_eq!(created.json["code"].as_str().expect("code").len(), 10);

    let timed = w
        .post(
            "/admin/project-invite-code",
            &M,
            json!({"project_id": w.project, "validity": "2h", "role": "developer", "code_length": 24}),
        )
        .await;
    assert_eq!(timed.json["code"].as_str().expect("code").len(), 24);
    assert!(
        timed.json["valid_until"]
            .as_str()
            .expect("until")
            .ends_with('Z')
    );
    for bad in [
        json!({"project_id": w.project, "validity": "2 fortnights"}),
        json!({"project_id": w.project, "code_length": 3}),
        json!({"project_id": w.project, "code_length": 65}),
        json!({"project_id": w.project, "role": "owner"}),
    ] {
        assert_eq!(
            w.post("/admin/project-invite-code", &M, bad.clone())
                .await
                .status,
            422,
            "{bad}"
        );
    }
    assert_eq!(
        w.post(
            "/admin/project-invite-code",
            &M,
            json!({"project_id": unknown()})
        )
        .await
        .status,
        404
    );

    // Redeem: the outsider joins as developer; twice is a conflict.
    let code = timed.json["code"].as_str().expect("code").to_owned();
    let joined = w
        .post(
            "/admin/project-invite-code/redeem",
            &w.outsider.who(),
            json!({"code": code}),
        )
        .await;
    assert_eq!(joined.status, 200, "{}", joined.text);
    assert_eq!(joined.json["role"], "developer");
    assert_eq!(joined.json["project_id"], w.project.to_string());
    assert_eq!(
        w.get(&format!("/admin/project/{}", w.project), &w.outsider.who())
            .await
            .status,
        200
    );
    assert_eq!(
        w.post(
            "/admin/project-invite-code/redeem",
            &w.outsider.who(),
            json!({"code": code})
        )
        .await
        .status,
        409
    );
    assert_eq!(
        w.post(
            "/admin/project-invite-code/redeem",
            &w.other.who(),
            json!({"code": "NOPE"})
        )
        .await
        .status,
        404
    );

    // Expired codes are gone (410).
    w.store
        .create_invite(Invite {
            id: InviteId::new_v7(),
            project_id: w.project,
            code: "EXPIREDCODE".into(),
            role: ProjectRole::Guest,
            valid_until: Some(Millis(Millis::now().0 - 1000)),
            created_at: Millis(Millis::now().0 - 5000),
        })
        .await
        .expect("invite");
    let expired = w
        .post(
            "/admin/project-invite-code/redeem",
            &w.other.who(),
            json!({"code": "EXPIREDCODE"}),
        )
        .await;
    assert_eq!(expired.status, 410);
    let listed = w
        .get(
            &format!("/admin/project-invite-code?project_id={}", w.project),
            &M,
        )
        .await;
    let invites = listed.json["invites"].as_array().expect("invites");
    assert_eq!(invites.len(), 4);
    assert!(invites.iter().any(|i| i["valid"] == false));

    let id = created.id();
    assert_eq!(
        w.get(&format!("/admin/project-invite-code/{id}"), &M)
            .await
            .json["id"],
        id
    );
    assert!(
        w.delete(&format!("/admin/project-invite-code/{id}"), &M)
            .await
            .json["message"]
            .as_str()
            .expect("msg")
            .contains(&id)
    );
    assert_eq!(
        w.get(&format!("/admin/project-invite-code/{id}"), &M)
            .await
            .status,
        404
    );
}
