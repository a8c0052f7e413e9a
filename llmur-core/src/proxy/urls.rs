//! Upstream URLs, parsed once.
//!
//! Owns: [`UrlCache`], for the reqwest client (see `client.rs`). A provider encodes each
//! call as an `http::Request`, whose URI reqwest would turn into a [`Url`] by printing
//! and re-parsing it: about 6,600 instructions per request, for URLs that repeat (one or
//! two per connection). The cache keeps the parsed `Url` per URI and hands out clones.
//! Must not touch: the request's other parts (see `client::reqwest_request`).

use std::sync::{Mutex, PoisonError};

use http::Uri;
use reqwest::Url;
use rustc_hash::FxHashMap;

/// The most URLs kept; when full, the cache starts over (a catalog with more upstream URLs
/// in use than this only parses more often).
const CAPACITY: usize = 256;

/// Parsed upstream URLs by URI. One per HTTP client, so each worker thread has its own and
/// its lock is never contended.
#[derive(Debug, Default)]
pub(crate) struct UrlCache {
    urls: Mutex<FxHashMap<Uri, Url>>,
}

impl UrlCache {
    /// The [`Url`] of `uri`, exactly as reqwest would parse it; `None` if it does not
    /// parse (the caller then lets reqwest report why).
    pub(crate) fn get(&self, uri: &Uri) -> Option<Url> {
        let mut urls = self.urls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(url) = urls.get(uri) {
            return Some(url.clone());
        }
        let url = Url::parse(&uri.to_string()).ok()?;
        if urls.len() >= CAPACITY {
            urls.clear();
        }
        urls.insert(uri.clone(), url.clone());
        Some(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_url_is_the_one_reqwest_would_parse() {
        let cache = UrlCache::default();
        for text in [
            "http://127.0.0.1:8099/v1/chat/completions",
            "https://Example.OpenAI.Azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            "http://[::1]:80/v1/embeddings",
        ] {
            let uri: Uri = text.parse().unwrap();
            let want = Url::parse(&uri.to_string()).unwrap();
            assert_eq!(cache.get(&uri).unwrap(), want, "{text}, parsed");
            assert_eq!(cache.get(&uri).unwrap(), want, "{text}, cached");
        }
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = UrlCache::default();
        for i in 0..CAPACITY + 10 {
            let uri: Uri = format!("http://127.0.0.1:{}/v1/models", 1000 + i)
                .parse()
                .unwrap();
            assert_eq!(cache.get(&uri).unwrap().port(), Some(1000 + i as u16));
        }
        assert!(cache.urls.lock().unwrap().len() <= CAPACITY);
    }
}
