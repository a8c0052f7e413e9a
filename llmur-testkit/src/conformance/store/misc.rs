//! Checks for request logs, pagination across every list, and concurrent writes.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use futures_util::future::join_all;
use llmur_core::store::types::*;
use llmur_core::{Endpoint, Store, StoreErrorKind, StoreResult, UsageSource, VirtualKeyId};
use uuid::Uuid;

use super::{ids, sorted};
use crate::conformance::fixtures::*;
use crate::conformance::{Must, must_fail};

/// A start time (Unix ms) for sample logs.
const LOG_T0: u64 = 1_700_000_000_000;

/// A request log as JSON, to compare every field (`RequestLog` has no `PartialEq`).
fn json(log: &llmur_core::RequestLog) -> serde_json::Value {
    serde_json::to_value(log).unwrap_or_default()
}

fn log_ids(logs: &[llmur_core::RequestLog]) -> Vec<Uuid> {
    ids(logs, |l| l.id)
}

/// Insert a batch of three, list newest first, filter by key, `limit`; every field
/// round-trips (times at millisecond precision); logs need no existing key.
pub async fn request_logs(s: &dyn Store) {
    let k1 = VirtualKeyId(Uuid::now_v7());
    let k2 = VirtualKeyId(Uuid::now_v7());
    assert!(
        s.list_request_logs(None, 10)
            .await
            .must("list empty")
            .is_empty()
    );
    s.insert_request_logs(&[]).await.must("an empty batch");

    let middle = sample_request_log(k1, LOG_T0 + 1_000);
    let oldest = sample_request_log(k2, LOG_T0);
    let mut newest = sample_request_log(k1, LOG_T0 + 2_000);
    newest.endpoint = Endpoint::Embeddings;
    newest.stream = false;
    newest.status = 0;
    newest.usage = Default::default();
    newest.usage_source = UsageSource::None;
    newest.cost_usd = None;
    newest.time_to_first_byte = None;
    newest.duration = Duration::from_millis(10_001);
    newest.client_disconnected = true;
    newest.error = Some("connect timeout".into());
    let batch = [middle.clone(), oldest.clone(), newest.clone()];
    s.insert_request_logs(&batch).await.must("insert batch");

    let listed = s.list_request_logs(None, 10).await.must("list all");
    assert_eq!(
        log_ids(&listed),
        vec![newest.id, middle.id, oldest.id],
        "newest first by started_at"
    );
    for (got, want) in listed.iter().zip([&newest, &middle, &oldest]) {
        assert_eq!(json(got), json(want), "every field round-trips");
    }
    let cases = [
        ("key k1", Some(k1), 10, vec![newest.id, middle.id]),
        ("key k2", Some(k2), 10, vec![oldest.id]),
        ("limit 2", None, 2, vec![newest.id, middle.id]),
        ("key k1, limit 1", Some(k1), 1, vec![newest.id]),
        ("limit 0", None, 0, vec![]),
        (
            "unknown key",
            Some(VirtualKeyId(Uuid::now_v7())),
            10,
            vec![],
        ),
    ];
    for (what, key, limit, expected) in cases {
        let got = s.list_request_logs(key, limit).await.must(what);
        assert_eq!(log_ids(&got), expected, "{what}");
    }

    let later = sample_request_log(k2, LOG_T0 + 3_000);
    s.insert_request_logs(std::slice::from_ref(&later))
        .await
        .must("a second batch");
    let listed = s.list_request_logs(None, 10).await.must("list all again");
    assert_eq!(
        log_ids(&listed),
        vec![later.id, newest.id, middle.id, oldest.id]
    );
    let of_k2 = s.list_request_logs(Some(k2), 10).await.must("k2 again");
    assert_eq!(log_ids(&of_k2), vec![later.id, oldest.id]);

    // Retention: strictly before the cut-off goes, the rest stays.
    let none = s
        .delete_request_logs_before(Millis(LOG_T0 as i64))
        .await
        .must("delete nothing");
    assert_eq!(none, 0, "nothing started before the oldest");
    let one = s
        .delete_request_logs_before(Millis(LOG_T0 as i64 + 1_000))
        .await
        .must("delete the oldest");
    assert_eq!(one, 1);
    let listed = s.list_request_logs(None, 10).await.must("after retention");
    assert_eq!(log_ids(&listed), vec![later.id, newest.id, middle.id]);
    let rest = s
        .delete_request_logs_before(Millis(LOG_T0 as i64 + 10_000))
        .await
        .must("delete the rest");
    assert_eq!(rest, 3);
    assert!(s.list_request_logs(None, 10).await.must("empty").is_empty());

    // A large batch (a busy server's): every row arrives, whatever statements a backend
    // splits it into, with its empty fields empty.
    let mut large: Vec<_> = (0..1_234)
        .map(|i| sample_request_log(k1, LOG_T0 + 20_000 + i))
        .collect();
    for log in large.iter_mut().step_by(3) {
        log.cost_usd = None;
        log.time_to_first_byte = None;
        log.error = Some("upstream reset".into());
    }
    s.insert_request_logs(&large).await.must("a large batch");
    let listed = s
        .list_request_logs(None, 2_000)
        .await
        .must("list the large batch");
    assert_eq!(listed.len(), large.len(), "every row of the large batch");
    for (got, want) in listed.iter().zip(large.iter().rev()) {
        assert_eq!(json(got), json(want), "every field of the large batch");
    }
    let all = s
        .delete_request_logs_before(Millis(LOG_T0 as i64 + 30_000))
        .await
        .must("delete the large batch");
    assert_eq!(all, 1_234);
}

/// Walks a list with `limit` and checks the pages are `expected` (ascending ids) in
/// chunks of `limit`, each `next` the page's last id except on the final page (`None`).
async fn walk<T, F, Fut>(what: &str, list: F, id: fn(&T) -> Uuid, expected: &[Uuid], limit: u32)
where
    F: Fn(PageRequest) -> Fut,
    Fut: Future<Output = StoreResult<Page<T>>>,
{
    let chunks: Vec<&[Uuid]> = expected.chunks(limit as usize).collect();
    let mut after = None;
    let mut number = 0;
    loop {
        let got = list(page(limit, after)).await.must(what);
        let want = chunks.get(number).copied().unwrap_or_default();
        number += 1;
        assert_eq!(
            ids(&got.items, id),
            want,
            "{what}: page {number} with limit {limit}"
        );
        if number >= chunks.len() {
            assert_eq!(
                got.next, None,
                "{what}: the last page (page {number}, limit {limit}) has no next"
            );
            return;
        }
        assert_eq!(
            got.next,
            want.last().copied(),
            "{what}: page {number} with limit {limit} ends with next = its last id"
        );
        after = got.next;
    }
}

/// `next` semantics on `list_users`: 5 rows by 2 are pages of 2, 2, 1; 4 rows by 2 are
/// pages of 2, 2 with no `next` on the second; order is by id, not insertion; `after` need
/// not exist.
pub async fn pagination_next_semantics(s: &dyn Store) {
    let mut users: Vec<User> = (0..5)
        .map(|i| sample_user(&format!("user{i}@example.com")))
        .collect();
    users.sort_by_key(|u| u.id);
    for user in users.iter().rev() {
        s.create_user(user.clone()).await.must("create user");
    }
    let all_ids: Vec<Uuid> = users.iter().map(|u| u.id.0).collect();
    let list = |p| s.list_users(p);
    let id: fn(&User) -> Uuid = |u| u.id.0;

    let first = s.list_users(page(2, None)).await.must("page 1");
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.next, Some(all_ids[1]));
    let second = s.list_users(page(2, first.next)).await.must("page 2");
    assert_eq!(ids(&second.items, id), all_ids[2..4]);
    assert_eq!(second.next, Some(all_ids[3]));
    let third = s.list_users(page(2, second.next)).await.must("page 3");
    assert_eq!(ids(&third.items, id), all_ids[4..]);
    assert_eq!(third.next, None, "5 rows by 2: the third page has no next");

    for limit in [1, 2, 3, 4, 5, 6, 1000] {
        walk("list_users, 5 rows", list, id, &all_ids, limit).await;
    }
    let tail = s
        .list_users(page(10, Some(all_ids[4])))
        .await
        .must("after the last id");
    assert!(tail.items.is_empty() && tail.next.is_none());

    // An `after` that names no row: rows strictly greater.
    s.delete_user(users[2].id)
        .await
        .must("delete the middle user");
    let rest = s
        .list_users(page(10, Some(all_ids[2])))
        .await
        .must("after a deleted id");
    assert_eq!(ids(&rest.items, id), all_ids[3..]);
    let rest = s
        .list_users(page(10, Some(Uuid::nil())))
        .await
        .must("after the nil uuid");
    assert_eq!(rest.items.len(), 4);

    let four: Vec<Uuid> = all_ids
        .iter()
        .copied()
        .filter(|&u| u != all_ids[2])
        .collect();
    let first = s.list_users(page(2, None)).await.must("4 rows, page 1");
    assert_eq!(first.next, Some(four[1]));
    let second = s
        .list_users(page(2, first.next))
        .await
        .must("4 rows, page 2");
    assert_eq!(ids(&second.items, id), four[2..]);
    assert_eq!(
        second.next, None,
        "4 rows by 2: the second page has no next"
    );
    for limit in [1, 2, 3, 4, 5] {
        walk("list_users, 4 rows", list, id, &four, limit).await;
    }
}

/// Every list method paginates the same way, filters applied before paging: five matching
/// rows interleaved with five that do not match, in pages of 2.
pub async fn pagination_every_list(s: &dyn Store) {
    let a = s.create_user(sample_user("a@example.com")).await.must("a");
    let b = s.create_user(sample_user("b@example.com")).await.must("b");
    let mut projects = Vec::new();
    let mut memberships = Vec::new();
    for i in 0..10 {
        let project = s
            .create_project(sample_project(&format!("p{i}")))
            .await
            .must("project");
        let user = if i % 2 == 0 { a.id } else { b.id };
        memberships.push(
            s.create_membership(sample_membership(user, project.id, ProjectRole::Guest))
                .await
                .must("membership"),
        );
        projects.push(project);
    }
    let (p0, p1) = (projects[0].id, projects[1].id);
    let mut invites = Vec::new();
    let mut keys = Vec::new();
    for i in 0..10 {
        let project = if i % 2 == 0 { p0 } else { p1 };
        invites.push(
            s.create_invite(sample_invite(project, &format!("code-{i}")))
                .await
                .must("invite"),
        );
        keys.push(
            s.create_virtual_key(sample_key(project, &format!("hash-{i}")))
                .await
                .must("key"),
        );
    }
    let d0 = s
        .create_deployment(sample_deployment("d0"))
        .await
        .must("d0");
    let d1 = s
        .create_deployment(sample_deployment("d1"))
        .await
        .must("d1");
    let mut deployments = vec![d0.clone(), d1.clone()];
    for i in 2..5 {
        deployments.push(
            s.create_deployment(sample_deployment(&format!("d{i}")))
                .await
                .must("deployment"),
        );
    }
    let mut connections = Vec::new();
    let mut routes = Vec::new();
    let mut grants = Vec::new();
    for i in 0..5 {
        let connection = s
            .create_connection(sample_connection())
            .await
            .must("connection");
        for d in [&d0, &d1] {
            routes.push(
                s.create_connection_deployment(sample_connection_deployment(
                    connection.id,
                    d.id,
                    1,
                ))
                .await
                .must("connection link"),
            );
            grants.push(
                s.create_virtual_key_deployment(sample_key_deployment(keys[2 * i].id, d.id))
                    .await
                    .must("key link"),
            );
        }
        connections.push(connection);
    }
    let even = |v: Vec<Uuid>| -> Vec<Uuid> { sorted(v.into_iter().step_by(2).collect()) };
    let every = |v: Vec<Uuid>| -> Vec<Uuid> { sorted(v) };

    let want = even(projects.iter().map(|p| p.id.0).collect());
    walk(
        "list_projects(member a)",
        |p| s.list_projects(Some(a.id), p),
        |x| x.id.0,
        &want,
        2,
    )
    .await;
    let want = every(projects.iter().map(|p| p.id.0).collect());
    walk(
        "list_projects",
        |p| s.list_projects(None, p),
        |x| x.id.0,
        &want,
        2,
    )
    .await;
    let want = even(memberships.iter().map(|m| m.id.0).collect());
    let list = |p| s.list_memberships(Some(a.id), None, p);
    walk("list_memberships(user a)", list, |x| x.id.0, &want, 2).await;
    let want = even(invites.iter().map(|i| i.id.0).collect());
    walk(
        "list_invites(p0)",
        |p| s.list_invites(Some(p0), p),
        |x| x.id.0,
        &want,
        2,
    )
    .await;
    let want = every(invites.iter().map(|i| i.id.0).collect());
    walk(
        "list_invites",
        |p| s.list_invites(None, p),
        |x| x.id.0,
        &want,
        3,
    )
    .await;
    let want = even(keys.iter().map(|k| k.id.0).collect());
    let list = |p| s.list_virtual_keys(Some(p0), p);
    walk("list_virtual_keys(p0)", list, |x| x.id.0, &want, 2).await;
    let want = every(connections.iter().map(|c| c.id.0).collect());
    walk(
        "list_connections",
        |p| s.list_connections(p),
        |x| x.id.0,
        &want,
        2,
    )
    .await;
    let want = every(deployments.iter().map(|d| d.id.0).collect());
    walk(
        "list_deployments",
        |p| s.list_deployments(p),
        |x| x.id.0,
        &want,
        2,
    )
    .await;
    let want = even(routes.iter().map(|l| l.id.0).collect());
    let list = |p| s.list_connection_deployments(None, Some(d0.id), p);
    walk(
        "list_connection_deployments(d0)",
        list,
        |x| x.id.0,
        &want,
        2,
    )
    .await;
    let want = even(grants.iter().map(|l| l.id.0).collect());
    let list = |p| s.list_virtual_key_deployments(None, Some(d0.id), p);
    walk(
        "list_virtual_key_deployments(d0)",
        list,
        |x| x.id.0,
        &want,
        2,
    )
    .await;
}

/// Fails unless `list` answers `Invalid` to limits 0 and 1001 and accepts 1 and 1000.
async fn bounds<T: Debug, F, Fut>(what: &str, list: F)
where
    F: Fn(PageRequest) -> Fut,
    Fut: Future<Output = StoreResult<Page<T>>>,
{
    for limit in [0, 1001, u32::MAX] {
        must_fail(
            list(page(limit, None)).await,
            StoreErrorKind::Invalid,
            &format!("{what} with limit {limit}"),
        );
    }
    for limit in [1, 1000] {
        list(page(limit, None))
            .await
            .must(&format!("{what} with limit {limit}"));
    }
}

/// Every list method refuses a `limit` outside `1..=1000` with `Invalid`.
pub async fn pagination_limit_bounds(s: &dyn Store) {
    let user = s
        .create_user(sample_user("a@example.com"))
        .await
        .must("user");
    bounds("list_users", |p| s.list_users(p)).await;
    bounds("list_projects", |p| s.list_projects(None, p)).await;
    bounds("list_projects(member)", |p| {
        s.list_projects(Some(user.id), p)
    })
    .await;
    bounds("list_memberships", |p| s.list_memberships(None, None, p)).await;
    bounds("list_invites", |p| s.list_invites(None, p)).await;
    bounds("list_connections", |p| s.list_connections(p)).await;
    bounds("list_deployments", |p| s.list_deployments(p)).await;
    bounds("list_connection_deployments", |p| {
        s.list_connection_deployments(None, None, p)
    })
    .await;
    bounds("list_virtual_keys", |p| s.list_virtual_keys(None, p)).await;
    bounds("list_virtual_key_deployments", |p| {
        s.list_virtual_key_deployments(None, None, p)
    })
    .await;
}

/// Twenty concurrent `create_user`s with distinct emails all succeed.
pub async fn concurrent_creates_distinct_emails(s: &dyn Store) {
    let users: Vec<User> = (0..20)
        .map(|i| sample_user(&format!("user{i}@example.com")))
        .collect();
    let results = join_all(users.iter().map(|u| s.create_user(u.clone()))).await;
    for (result, user) in results.into_iter().zip(&users) {
        assert_eq!(result.must("concurrent create_user"), *user);
    }
    assert_eq!(s.count_users().await.must("count"), 20);
    let listed = s.list_users(all()).await.must("list");
    assert_eq!(
        ids(&listed.items, |u| u.id.0),
        sorted(users.iter().map(|u| u.id.0).collect())
    );
}

/// Ten concurrent `create_user`s with one email: exactly one succeeds, nine are `Conflict`.
pub async fn concurrent_creates_same_email(s: &dyn Store) {
    let users: Vec<User> = (0..10).map(|_| sample_user("same@example.com")).collect();
    let results = join_all(users.iter().map(|u| s.create_user(u.clone()))).await;
    let mut created = Vec::new();
    let mut conflicts = 0;
    for result in results {
        match result {
            Ok(user) => created.push(user),
            Err(err) if err.kind() == StoreErrorKind::Conflict => conflicts += 1,
            Err(err) => must_fail(
                Err::<(), _>(err),
                StoreErrorKind::Conflict,
                "a concurrent duplicate",
            ),
        }
    }
    assert_eq!(created.len(), 1, "exactly one concurrent create succeeds");
    assert_eq!(conflicts, 9, "the others are Conflict");
    assert_eq!(s.count_users().await.must("count"), 1);
    assert_eq!(
        s.get_user_by_email("same@example.com")
            .await
            .must("the winner"),
        created[0]
    );
}
