//! Checks for users and sessions.

use llmur_core::store::types::*;
use llmur_core::{Store, StoreErrorKind};

use super::{Step, ids, sorted};
use crate::conformance::fixtures::*;
use crate::conformance::{Must, must_fail};

/// Create, get by id and by email (any ASCII case), list, count; unknown ids and emails are
/// `NotFound`; a taken id is `Conflict`.
pub async fn users_crud(s: &dyn Store) {
    assert_eq!(s.count_users().await.must("count_users"), 0);
    let alice = sample_user("alice@example.com");
    let mut bob = sample_user("bob@example.com");
    bob.role = AppRole::Admin;
    bob.blocked = true;
    bob.email_verified = true;
    assert_eq!(
        s.create_user(alice.clone()).await.must("create alice"),
        alice
    );
    assert_eq!(s.create_user(bob.clone()).await.must("create bob"), bob);

    assert_eq!(s.get_user(alice.id).await.must("get alice"), alice);
    assert_eq!(
        s.get_user(bob.id).await.must("get bob"),
        bob,
        "every field round-trips"
    );
    for email in [
        "alice@example.com",
        "ALICE@EXAMPLE.COM",
        "Alice@Example.Com",
    ] {
        let found = s.get_user_by_email(email).await.must(email);
        assert_eq!(found, alice, "get_user_by_email({email:?})");
    }
    must_fail(
        s.get_user_by_email("carol@example.com").await,
        StoreErrorKind::NotFound,
        "get_user_by_email of an unknown email",
    );
    must_fail(
        s.get_user(UserId::new_v7()).await,
        StoreErrorKind::NotFound,
        "get_user of an unknown id",
    );

    let mut same_id = sample_user("other@example.com");
    same_id.id = alice.id;
    must_fail(
        s.create_user(same_id).await,
        StoreErrorKind::Conflict,
        "create_user with a taken id",
    );

    let listed = s.list_users(all()).await.must("list_users");
    assert_eq!(
        ids(&listed.items, |u| u.id.0),
        sorted(vec![alice.id.0, bob.id.0])
    );
    assert_eq!(listed.next, None);
    assert_eq!(s.count_users().await.must("count_users"), 2);
}

/// A taken email is `Conflict` whatever its ASCII case; nothing is inserted.
pub async fn users_email_conflict(s: &dyn Store) {
    let alice = s
        .create_user(sample_user("alice@example.com"))
        .await
        .must("create alice");
    for email in [
        "alice@example.com",
        "ALICE@example.com",
        "Alice@Example.COM",
    ] {
        must_fail(
            s.create_user(sample_user(email)).await,
            StoreErrorKind::Conflict,
            &format!("create_user with taken email {email:?}"),
        );
    }
    assert_eq!(s.count_users().await.must("count_users"), 1);
    assert_eq!(
        s.get_user_by_email("alice@example.com")
            .await
            .must("get alice"),
        alice
    );
}

/// Every patch field on its own changes exactly that field; an empty patch changes
/// nothing; an unknown id is `NotFound`.
pub async fn users_update_patch(s: &dyn Store) {
    let mut expected = s
        .create_user(sample_user("alice@example.com"))
        .await
        .must("create user");
    let other = s
        .create_user(sample_user("bob@example.com"))
        .await
        .must("create other");
    let id = expected.id;

    let updated = s
        .update_user(id, UserPatch::default())
        .await
        .must("empty patch");
    assert_eq!(updated, expected, "an empty patch changes nothing");

    let steps: [Step<UserPatch, User>; 5] = [
        (
            "name",
            UserPatch {
                name: Some("Alice Liddell".into()),
                ..UserPatch::default()
            },
            |u| u.name = "Alice Liddell".into(),
        ),
        (
            "role",
            UserPatch {
                role: Some(AppRole::Admin),
                ..UserPatch::default()
            },
            |u| u.role = AppRole::Admin,
        ),
        (
            "blocked",
            UserPatch {
                blocked: Some(true),
                ..UserPatch::default()
            },
            |u| u.blocked = true,
        ),
        (
            "email_verified",
            UserPatch {
                email_verified: Some(true),
                ..UserPatch::default()
            },
            |u| u.email_verified = true,
        ),
        (
            "password_hash",
            UserPatch {
                password_hash: Some("$argon2id$new".into()),
                ..UserPatch::default()
            },
            |u| u.password_hash = "$argon2id$new".into(),
        ),
    ];
    for (field, patch, apply) in steps {
        apply(&mut expected);
        let updated = s.update_user(id, patch).await.must(field);
        assert_eq!(updated, expected, "update_user returns the patched {field}");
        assert_eq!(
            s.get_user(id).await.must("get user"),
            expected,
            "patching {field} is stored and changes nothing else"
        );
    }
    let back = s
        .update_user(
            id,
            UserPatch {
                blocked: Some(false),
                ..UserPatch::default()
            },
        )
        .await
        .must("unblock");
    assert!(!back.blocked, "blocked can be set back to false");
    assert_eq!(
        s.get_user(other.id).await.must("get other"),
        other,
        "other users are untouched"
    );
    must_fail(
        s.update_user(UserId::new_v7(), UserPatch::default()).await,
        StoreErrorKind::NotFound,
        "update_user of an unknown id",
    );
}

/// Deleting a user deletes their sessions and memberships, and nobody else's; a second
/// delete is `NotFound`.
pub async fn users_delete_cascades(s: &dyn Store) {
    let alice = s
        .create_user(sample_user("alice@example.com"))
        .await
        .must("create alice");
    let bob = s
        .create_user(sample_user("bob@example.com"))
        .await
        .must("create bob");
    let p1 = s
        .create_project(sample_project("p1"))
        .await
        .must("create p1");
    let p2 = s
        .create_project(sample_project("p2"))
        .await
        .must("create p2");
    let a1 = s
        .create_session(sample_session(alice.id, "alice-1"))
        .await
        .must("session a1");
    let a2 = s
        .create_session(sample_session(alice.id, "alice-2"))
        .await
        .must("session a2");
    let b1 = s
        .create_session(sample_session(bob.id, "bob-1"))
        .await
        .must("session b1");
    let am1 = s
        .create_membership(sample_membership(alice.id, p1.id, ProjectRole::Admin))
        .await
        .must("membership alice p1");
    let am2 = s
        .create_membership(sample_membership(alice.id, p2.id, ProjectRole::Guest))
        .await
        .must("membership alice p2");
    let bm1 = s
        .create_membership(sample_membership(bob.id, p1.id, ProjectRole::Developer))
        .await
        .must("membership bob p1");

    s.delete_user(alice.id).await.must("delete alice");

    must_fail(
        s.get_user(alice.id).await,
        StoreErrorKind::NotFound,
        "get deleted user",
    );
    must_fail(
        s.get_user_by_email("alice@example.com").await,
        StoreErrorKind::NotFound,
        "get deleted user by email",
    );
    for session in [&a1, &a2] {
        must_fail(
            s.get_session(session.id).await,
            StoreErrorKind::NotFound,
            "session of a deleted user",
        );
        must_fail(
            s.get_session_by_token_hash(&session.token_hash).await,
            StoreErrorKind::NotFound,
            "session of a deleted user by token hash",
        );
    }
    for membership in [&am1, &am2] {
        must_fail(
            s.get_membership(membership.id).await,
            StoreErrorKind::NotFound,
            "membership of a deleted user",
        );
    }
    let left = s
        .list_memberships(None, None, all())
        .await
        .must("list memberships");
    assert_eq!(left.items, vec![bm1], "only bob's membership is left");
    assert_eq!(s.get_session(b1.id).await.must("bob's session"), b1);
    assert_eq!(s.get_user(bob.id).await.must("bob"), bob);
    assert_eq!(
        s.get_project(p1.id).await.must("p1"),
        p1,
        "projects are kept"
    );
    assert_eq!(s.count_users().await.must("count_users"), 1);
    must_fail(
        s.delete_user(alice.id).await,
        StoreErrorKind::NotFound,
        "delete a deleted user",
    );
    // The email is free again.
    s.create_user(sample_user("alice@example.com"))
        .await
        .must("re-create alice's email");
}

/// Create (unknown user `NotFound`, taken token hash `Conflict`), get by id and by token
/// hash, expired and revoked sessions are still returned, revoke is idempotent.
pub async fn sessions_crud(s: &dyn Store) {
    let user = s
        .create_user(sample_user("alice@example.com"))
        .await
        .must("create user");
    must_fail(
        s.create_session(sample_session(UserId::new_v7(), "orphan"))
            .await,
        StoreErrorKind::NotFound,
        "create_session for an unknown user",
    );
    let live = sample_session(user.id, "hash-live");
    assert_eq!(
        s.create_session(live.clone()).await.must("create live"),
        live
    );
    let mut expired = sample_session(user.id, "hash-expired");
    expired.created_at = Millis(T0.0 - 2 * HOUR_MS);
    expired.expires_at = Millis(T0.0 - HOUR_MS);
    s.create_session(expired.clone())
        .await
        .must("create expired");
    must_fail(
        s.create_session(sample_session(user.id, "hash-live")).await,
        StoreErrorKind::Conflict,
        "create_session with a taken token hash",
    );

    assert_eq!(s.get_session(live.id).await.must("get live"), live);
    assert_eq!(
        s.get_session_by_token_hash("hash-live")
            .await
            .must("by hash"),
        live
    );
    assert_eq!(
        s.get_session_by_token_hash("hash-expired")
            .await
            .must("expired by hash"),
        expired,
        "expired sessions are returned: the caller decides"
    );
    must_fail(
        s.get_session_by_token_hash("HASH-LIVE").await,
        StoreErrorKind::NotFound,
        "token hashes compare exactly",
    );
    must_fail(
        s.get_session(SessionId::new_v7()).await,
        StoreErrorKind::NotFound,
        "get_session of an unknown id",
    );

    s.revoke_session(live.id).await.must("revoke");
    let revoked = s
        .get_session_by_token_hash("hash-live")
        .await
        .must("revoked by hash");
    assert!(revoked.revoked, "revoke_session marks the session revoked");
    assert_eq!(
        revoked,
        Session {
            revoked: true,
            ..live.clone()
        },
        "revoking changes nothing else"
    );
    s.revoke_session(live.id)
        .await
        .must("revoking twice succeeds");
    assert!(
        !s.get_session(expired.id).await.must("get expired").revoked,
        "other sessions are untouched"
    );
    must_fail(
        s.revoke_session(SessionId::new_v7()).await,
        StoreErrorKind::NotFound,
        "revoke_session of an unknown id",
    );
}
