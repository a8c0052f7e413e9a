//! Checks for projects, memberships and invites.

use llmur_core::store::types::*;
use llmur_core::{ProjectId, Store, StoreErrorKind};
use uuid::Uuid;

use super::{ids, sorted};
use crate::conformance::fixtures::*;
use crate::conformance::{Must, must_fail};

/// Create, get, list, update (name, limits, both, neither), delete; unknown ids are
/// `NotFound`; a taken id is `Conflict`.
pub async fn projects_crud(s: &dyn Store) {
    let web = sample_project("web");
    let mut api = sample_project("api");
    api.limits = partial_limits();
    assert_eq!(s.create_project(web.clone()).await.must("create web"), web);
    assert_eq!(s.create_project(api.clone()).await.must("create api"), api);
    let mut same_id = sample_project("other");
    same_id.id = web.id;
    must_fail(
        s.create_project(same_id).await,
        StoreErrorKind::Conflict,
        "create_project with a taken id",
    );
    // Names are not unique.
    let twin = s
        .create_project(sample_project("web"))
        .await
        .must("a second project named web");

    assert_eq!(s.get_project(api.id).await.must("get api"), api);
    let listed = s.list_projects(None, all()).await.must("list_projects");
    assert_eq!(
        ids(&listed.items, |p| p.id.0),
        sorted(vec![web.id.0, api.id.0, twin.id.0])
    );
    assert_eq!(listed.next, None);

    let mut expected = web.clone();
    let same = s
        .update_project(web.id, None, None)
        .await
        .must("update nothing");
    assert_eq!(same, expected, "update_project(None, None) changes nothing");
    expected.name = "web-app".into();
    let renamed = s
        .update_project(web.id, Some("web-app".into()), None)
        .await
        .must("rename");
    assert_eq!(renamed, expected, "a rename keeps the limits");
    expected.limits = full_limits();
    let limited = s
        .update_project(web.id, None, Some(full_limits()))
        .await
        .must("set limits");
    assert_eq!(limited, expected, "new limits keep the name");
    expected.name = "web-2".into();
    expected.limits = Limits::default();
    let both = s
        .update_project(web.id, Some("web-2".into()), Some(Limits::default()))
        .await
        .must("rename and clear limits");
    assert_eq!(both, expected);
    assert_eq!(s.get_project(web.id).await.must("get web"), expected);
    must_fail(
        s.update_project(ProjectId(Uuid::now_v7()), Some("x".into()), None)
            .await,
        StoreErrorKind::NotFound,
        "update_project of an unknown id",
    );

    s.delete_project(web.id).await.must("delete web");
    must_fail(
        s.get_project(web.id).await,
        StoreErrorKind::NotFound,
        "get a deleted project",
    );
    must_fail(
        s.delete_project(web.id).await,
        StoreErrorKind::NotFound,
        "delete a deleted project",
    );
    assert_eq!(
        s.get_project(api.id).await.must("api is kept"),
        api,
        "other projects are untouched"
    );
}

/// `list_projects(Some(user))` lists exactly the user's projects, ascending by id; a user
/// without memberships (or unknown) gets an empty page.
pub async fn projects_list_by_member(s: &dyn Store) {
    let alice = s
        .create_user(sample_user("alice@example.com"))
        .await
        .must("alice");
    let bob = s
        .create_user(sample_user("bob@example.com"))
        .await
        .must("bob");
    let carol = s
        .create_user(sample_user("carol@example.com"))
        .await
        .must("carol");
    let mut projects = Vec::new();
    for name in ["p1", "p2", "p3", "p4"] {
        projects.push(
            s.create_project(sample_project(name))
                .await
                .must("create project"),
        );
    }
    // Insert alice's memberships newest project first: the list must still be by id.
    for (user, index) in [(alice.id, 2), (alice.id, 0), (bob.id, 1), (bob.id, 2)] {
        s.create_membership(sample_membership(
            user,
            projects[index].id,
            ProjectRole::Guest,
        ))
        .await
        .must("create membership");
    }
    let of = |i: &[usize]| sorted(i.iter().map(|&i| projects[i].id.0).collect());

    let got = s
        .list_projects(Some(alice.id), all())
        .await
        .must("alice's projects");
    assert_eq!(ids(&got.items, |p| p.id.0), of(&[0, 2]));
    assert_eq!(got.items[0], projects[0], "whole rows are returned");
    assert_eq!(got.next, None);
    let got = s
        .list_projects(Some(bob.id), all())
        .await
        .must("bob's projects");
    assert_eq!(ids(&got.items, |p| p.id.0), of(&[1, 2]));

    // Paging with a member filter: one project per page.
    let first = s
        .list_projects(Some(alice.id), page(1, None))
        .await
        .must("alice page 1");
    assert_eq!(ids(&first.items, |p| p.id.0), of(&[0]));
    assert_eq!(first.next, Some(projects[0].id.0));
    let second = s
        .list_projects(Some(alice.id), page(1, first.next))
        .await
        .must("alice page 2");
    assert_eq!(ids(&second.items, |p| p.id.0), of(&[2]));
    assert_eq!(second.next, None, "no project of alice follows");

    for (who, user) in [("carol", carol.id), ("an unknown user", UserId::new_v7())] {
        let got = s
            .list_projects(Some(user), all())
            .await
            .must("projects of a user without memberships");
        assert!(got.items.is_empty(), "{who} belongs to no project");
        assert_eq!(got.next, None);
    }
    let everything = s.list_projects(None, all()).await.must("all projects");
    assert_eq!(ids(&everything.items, |p| p.id.0), of(&[0, 1, 2, 3]));
}

/// Deleting a project deletes its keys, their deployment links, its memberships and
/// invites — and nothing of other projects, nor users, deployments or connections.
pub async fn projects_delete_cascades(s: &dyn Store) {
    let user = s
        .create_user(sample_user("alice@example.com"))
        .await
        .must("user");
    let doomed = s.create_project(sample_project("doomed")).await.must("p");
    let kept = s.create_project(sample_project("kept")).await.must("q");
    let deployment = s
        .create_deployment(sample_deployment("chat"))
        .await
        .must("deployment");
    let connection = s
        .create_connection(sample_connection())
        .await
        .must("connection");
    let route = s
        .create_connection_deployment(sample_connection_deployment(
            connection.id,
            deployment.id,
            1,
        ))
        .await
        .must("connection link");

    let k1 = s
        .create_virtual_key(sample_key(doomed.id, "hash-1"))
        .await
        .must("k1");
    let k2 = s
        .create_virtual_key(sample_key(doomed.id, "hash-2"))
        .await
        .must("k2");
    let k3 = s
        .create_virtual_key(sample_key(kept.id, "hash-3"))
        .await
        .must("k3");
    let mut doomed_links = Vec::new();
    for key in [&k1, &k2] {
        doomed_links.push(
            s.create_virtual_key_deployment(sample_key_deployment(key.id, deployment.id))
                .await
                .must("doomed key link"),
        );
    }
    let kept_link = s
        .create_virtual_key_deployment(sample_key_deployment(k3.id, deployment.id))
        .await
        .must("kept key link");
    let doomed_member = s
        .create_membership(sample_membership(user.id, doomed.id, ProjectRole::Admin))
        .await
        .must("doomed membership");
    let kept_member = s
        .create_membership(sample_membership(user.id, kept.id, ProjectRole::Admin))
        .await
        .must("kept membership");
    let doomed_invite = s
        .create_invite(sample_invite(doomed.id, "code-doomed"))
        .await
        .must("doomed invite");
    let kept_invite = s
        .create_invite(sample_invite(kept.id, "code-kept"))
        .await
        .must("kept invite");

    s.delete_project(doomed.id).await.must("delete project");

    for key in [&k1, &k2] {
        must_fail(
            s.get_virtual_key(key.id).await,
            StoreErrorKind::NotFound,
            "key of a deleted project",
        );
        must_fail(
            s.get_virtual_key_by_hash(&key.key_hash).await,
            StoreErrorKind::NotFound,
            "key of a deleted project by hash",
        );
    }
    for link in &doomed_links {
        must_fail(
            s.get_virtual_key_deployment(link.id).await,
            StoreErrorKind::NotFound,
            "link of a deleted project's key",
        );
    }
    must_fail(
        s.get_membership(doomed_member.id).await,
        StoreErrorKind::NotFound,
        "membership in a deleted project",
    );
    must_fail(
        s.get_invite(doomed_invite.id).await,
        StoreErrorKind::NotFound,
        "invite to a deleted project",
    );
    must_fail(
        s.get_invite_by_code("code-doomed").await,
        StoreErrorKind::NotFound,
        "invite to a deleted project by code",
    );

    assert_eq!(s.get_project(kept.id).await.must("kept project"), kept);
    assert_eq!(s.get_virtual_key(k3.id).await.must("kept key"), k3);
    assert_eq!(
        s.get_virtual_key_deployment(kept_link.id)
            .await
            .must("kept key link"),
        kept_link
    );
    assert_eq!(
        s.get_membership(kept_member.id)
            .await
            .must("kept membership"),
        kept_member
    );
    assert_eq!(
        s.get_invite(kept_invite.id).await.must("kept invite"),
        kept_invite
    );
    assert_eq!(s.get_user(user.id).await.must("user"), user);
    assert_eq!(
        s.get_deployment(deployment.id).await.must("deployment"),
        deployment
    );
    assert_eq!(
        s.get_connection(connection.id).await.must("connection"),
        connection
    );
    assert_eq!(
        s.get_connection_deployment(route.id)
            .await
            .must("connection link"),
        route
    );
    let links = s
        .list_virtual_key_deployments(None, None, all())
        .await
        .must("all key links");
    assert_eq!(links.items, vec![kept_link]);
}

/// Create (`NotFound` for an unknown user or project, `Conflict` for a second membership of
/// the same pair), get, find, update role, delete.
pub async fn memberships_crud(s: &dyn Store) {
    let user = s
        .create_user(sample_user("alice@example.com"))
        .await
        .must("user");
    let project = s.create_project(sample_project("p")).await.must("project");
    let other = s
        .create_project(sample_project("q"))
        .await
        .must("project q");
    must_fail(
        s.create_membership(sample_membership(
            UserId::new_v7(),
            project.id,
            ProjectRole::Guest,
        ))
        .await,
        StoreErrorKind::NotFound,
        "membership of an unknown user",
    );
    must_fail(
        s.create_membership(sample_membership(
            user.id,
            ProjectId(Uuid::now_v7()),
            ProjectRole::Guest,
        ))
        .await,
        StoreErrorKind::NotFound,
        "membership in an unknown project",
    );

    let membership = sample_membership(user.id, project.id, ProjectRole::Developer);
    assert_eq!(
        s.create_membership(membership.clone()).await.must("create"),
        membership
    );
    must_fail(
        s.create_membership(sample_membership(user.id, project.id, ProjectRole::Admin))
            .await,
        StoreErrorKind::Conflict,
        "a second membership of the same user in the same project",
    );
    assert_eq!(
        s.get_membership(membership.id).await.must("get"),
        membership
    );
    assert_eq!(
        s.find_membership(user.id, project.id).await.must("find"),
        Some(membership.clone())
    );
    assert_eq!(
        s.find_membership(user.id, other.id).await.must("find none"),
        None
    );
    assert_eq!(
        s.find_membership(UserId::new_v7(), project.id)
            .await
            .must("find for an unknown user"),
        None
    );

    let updated = s
        .update_membership(membership.id, ProjectRole::Admin)
        .await
        .must("update role");
    let expected = Membership {
        role: ProjectRole::Admin,
        ..membership.clone()
    };
    assert_eq!(updated, expected);
    assert_eq!(
        s.get_membership(membership.id).await.must("get updated"),
        expected
    );
    must_fail(
        s.update_membership(MembershipId::new_v7(), ProjectRole::Guest)
            .await,
        StoreErrorKind::NotFound,
        "update_membership of an unknown id",
    );

    s.delete_membership(membership.id).await.must("delete");
    must_fail(
        s.get_membership(membership.id).await,
        StoreErrorKind::NotFound,
        "get a deleted membership",
    );
    assert_eq!(
        s.find_membership(user.id, project.id)
            .await
            .must("find deleted"),
        None
    );
    must_fail(
        s.delete_membership(membership.id).await,
        StoreErrorKind::NotFound,
        "delete a deleted membership",
    );
    // The pair is free again.
    s.create_membership(sample_membership(user.id, project.id, ProjectRole::Guest))
        .await
        .must("re-create the membership");
}

/// `list_memberships` by user, by project, by both, by neither.
pub async fn memberships_list_filters(s: &dyn Store) {
    let u1 = s
        .create_user(sample_user("one@example.com"))
        .await
        .must("u1");
    let u2 = s
        .create_user(sample_user("two@example.com"))
        .await
        .must("u2");
    let p1 = s.create_project(sample_project("p1")).await.must("p1");
    let p2 = s.create_project(sample_project("p2")).await.must("p2");
    let mut created = Vec::new();
    for (user, project) in [(u1.id, p1.id), (u2.id, p1.id), (u1.id, p2.id)] {
        created.push(
            s.create_membership(sample_membership(user, project, ProjectRole::Guest))
                .await
                .must("create membership"),
        );
    }
    let of = |i: &[usize]| sorted(i.iter().map(|&i| created[i].id.0).collect());
    let cases = [
        ("user u1", Some(u1.id), None, of(&[0, 2])),
        ("user u2", Some(u2.id), None, of(&[1])),
        ("project p1", None, Some(p1.id), of(&[0, 1])),
        ("project p2", None, Some(p2.id), of(&[2])),
        ("u1 in p1", Some(u1.id), Some(p1.id), of(&[0])),
        ("u2 in p2", Some(u2.id), Some(p2.id), vec![]),
        ("no filter", None, None, of(&[0, 1, 2])),
        ("unknown user", Some(UserId::new_v7()), None, vec![]),
        (
            "unknown project",
            None,
            Some(ProjectId(Uuid::now_v7())),
            vec![],
        ),
    ];
    for (what, user, project, expected) in cases {
        let page = s.list_memberships(user, project, all()).await.must(what);
        assert_eq!(ids(&page.items, |m| m.id.0), expected, "filter: {what}");
        assert_eq!(page.next, None, "filter: {what}");
    }
}

/// Create (`Conflict` on a taken code, `NotFound` for an unknown project), get by id and by
/// exact code, list by project, delete.
pub async fn invites_crud(s: &dyn Store) {
    let p1 = s.create_project(sample_project("p1")).await.must("p1");
    let p2 = s.create_project(sample_project("p2")).await.must("p2");
    let open = sample_invite(p1.id, "code-open");
    let mut dated = sample_invite(p1.id, "code-dated");
    dated.role = ProjectRole::Admin;
    dated.valid_until = Some(Millis(T0.0 + 24 * HOUR_MS));
    let elsewhere = sample_invite(p2.id, "code-elsewhere");
    for invite in [&open, &dated, &elsewhere] {
        assert_eq!(
            s.create_invite(invite.clone()).await.must("create invite"),
            *invite,
            "create_invite returns the row"
        );
    }
    must_fail(
        s.create_invite(sample_invite(p2.id, "code-open")).await,
        StoreErrorKind::Conflict,
        "an invite with a taken code (even in another project)",
    );
    must_fail(
        s.create_invite(sample_invite(ProjectId(Uuid::now_v7()), "code-orphan"))
            .await,
        StoreErrorKind::NotFound,
        "an invite to an unknown project",
    );

    assert_eq!(s.get_invite(open.id).await.must("get open"), open);
    assert_eq!(
        s.get_invite(dated.id).await.must("get dated"),
        dated,
        "valid_until and role round-trip"
    );
    assert_eq!(
        s.get_invite_by_code("code-dated").await.must("by code"),
        dated
    );
    must_fail(
        s.get_invite_by_code("code-missing").await,
        StoreErrorKind::NotFound,
        "an unknown code",
    );
    must_fail(
        s.get_invite(InviteId::new_v7()).await,
        StoreErrorKind::NotFound,
        "an unknown invite id",
    );

    let listed = s.list_invites(Some(p1.id), all()).await.must("p1 invites");
    assert_eq!(
        ids(&listed.items, |i| i.id.0),
        sorted(vec![open.id.0, dated.id.0])
    );
    let listed = s.list_invites(None, all()).await.must("all invites");
    assert_eq!(
        ids(&listed.items, |i| i.id.0),
        sorted(vec![open.id.0, dated.id.0, elsewhere.id.0])
    );
    let listed = s
        .list_invites(Some(ProjectId(Uuid::now_v7())), all())
        .await
        .must("invites of an unknown project");
    assert!(listed.items.is_empty());

    s.delete_invite(open.id).await.must("delete");
    must_fail(
        s.get_invite(open.id).await,
        StoreErrorKind::NotFound,
        "a deleted invite",
    );
    must_fail(
        s.get_invite_by_code("code-open").await,
        StoreErrorKind::NotFound,
        "a deleted invite by code",
    );
    must_fail(
        s.delete_invite(open.id).await,
        StoreErrorKind::NotFound,
        "delete a deleted invite",
    );
    s.create_invite(sample_invite(p2.id, "code-open"))
        .await
        .must("a deleted invite's code is free again");
}
