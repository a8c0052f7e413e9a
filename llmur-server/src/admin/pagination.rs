//! `?limit=&cursor=` on every list, and the loops that page through a store.
//!
//! Owns: [`page_request`] (limit 1..=1000, default 100; the cursor is the previous page's
//! `next_cursor`), [`scan`] (a page of only the items a caller may see, built from as many
//! store pages as it takes) and [`collect_all`]. Must not touch: authorization decisions —
//! callers pass the filter.

use std::future::Future;

use llmur_core::StoreResult;
use llmur_core::store::types::{Page, PageRequest};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::error::{ApiError, ApiResult};

/// Items per page when `?limit` is absent.
pub(crate) const DEFAULT_LIMIT: u32 = 100;
/// The largest `?limit`.
pub(crate) const MAX_LIMIT: u32 = 1000;

/// The page a list was asked for (400 on a limit out of range or a cursor that is not one).
pub(crate) fn page_request(limit: Option<u32>, cursor: Option<&str>) -> ApiResult<PageRequest> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let after = match cursor.filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            Uuid::parse_str(c)
                .map_err(|_| ApiError::bad_request("cursor is not a valid cursor"))?,
        ),
    };
    Ok(PageRequest { limit, after })
}

/// `?limit=&cursor=` of a list without filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many items (1..=1000, default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The page asked for.
    pub(crate) fn page(&self) -> ApiResult<PageRequest> {
        page_request(self.limit, self.cursor.as_deref())
    }
}

/// The wire form of a page's cursor.
pub(crate) fn next_cursor(next: Option<Uuid>) -> Option<String> {
    next.map(|id| id.to_string())
}

/// A page of the items `keep` accepts, ascending by id, reading the store page by page
/// until `page.limit` items are found or the store has no more. The cursor is the last
/// returned id, so the next call continues where this one stopped.
pub(crate) async fn scan<T, F, Fut>(
    page: PageRequest,
    mut fetch: F,
    mut keep: impl FnMut(&T) -> bool,
    id_of: impl Fn(&T) -> Uuid,
) -> ApiResult<Page<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = StoreResult<Page<T>>>,
{
    let wanted = usize::try_from(page.limit).unwrap_or(usize::MAX);
    let mut items = Vec::new();
    let mut after = page.after;
    loop {
        let batch = fetch(PageRequest {
            limit: MAX_LIMIT,
            after,
        })
        .await?;
        for item in batch.items {
            if keep(&item) {
                let id = id_of(&item);
                items.push(item);
                if items.len() == wanted {
                    return Ok(Page {
                        items,
                        next: Some(id),
                    });
                }
            }
        }
        match batch.next {
            Some(next) => after = Some(next),
            None => return Ok(Page { items, next: None }),
        }
    }
}

/// Every item of a listing, following cursors to the end.
pub(crate) async fn collect_all<T, F, Fut>(mut fetch: F) -> ApiResult<Vec<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = StoreResult<Page<T>>>,
{
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let batch = fetch(PageRequest {
            limit: MAX_LIMIT,
            after,
        })
        .await?;
        all.extend(batch.items);
        match batch.next {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(page: PageRequest) -> std::future::Ready<StoreResult<Page<Uuid>>> {
        // Ids 1..=2500, served in store pages.
        let start = page.after.map_or(1, |u| u.as_u128() + 1);
        let end = (start + u128::from(page.limit)).min(2501);
        let items: Vec<Uuid> = (start..end).map(Uuid::from_u128).collect();
        let next = (end <= 2500).then(|| Uuid::from_u128(end - 1));
        std::future::ready(Ok(Page { items, next }))
    }

    #[tokio::test]
    async fn scan_filters_across_store_pages() {
        let even = |u: &Uuid| u.as_u128() % 2 == 0;
        let first = scan(
            PageRequest {
                limit: 600,
                after: None,
            },
            numbers,
            even,
            |u| *u,
        )
        .await
        .unwrap();
        assert_eq!(first.items.len(), 600);
        assert_eq!(first.items.last().map(|u| u.as_u128()), Some(1200));
        let second = scan(
            PageRequest {
                limit: 600,
                after: first.next,
            },
            numbers,
            even,
            |u| *u,
        )
        .await
        .unwrap();
        assert_eq!(second.items.first().map(|u| u.as_u128()), Some(1202));
        assert_eq!(second.items.len(), 600);
        let third = scan(
            PageRequest {
                limit: 600,
                after: second.next,
            },
            numbers,
            even,
            |u| *u,
        )
        .await
        .unwrap();
        assert_eq!(third.items.len(), 50);
        assert_eq!(third.next, None);
        assert_eq!(collect_all(numbers).await.unwrap().len(), 2500);
    }

    #[test]
    fn page_requests() {
        assert_eq!(page_request(None, None).unwrap().limit, DEFAULT_LIMIT);
        assert!(page_request(Some(0), None).is_err());
        assert!(page_request(Some(1001), None).is_err());
        assert!(page_request(Some(5), Some("nope")).is_err());
        let id = Uuid::now_v7();
        assert_eq!(
            page_request(None, Some(&id.to_string())).unwrap().after,
            Some(id)
        );
    }
}
