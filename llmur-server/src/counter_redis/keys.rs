//! Redis key names of the counter's buckets, formatted once and kept.
//!
//! Owns: [`Keys`]: `{prefix}:{level}:{id}:{metric}:{window}` per bucket (the *base*; the
//! scripts and settles append `:{window_start}`). A busy proxy asks on the same few buckets
//! again and again, so each base is formatted once instead of per request: formatting keys
//! was about 5 % of the Redis-backed proxy's CPU. Buckets hash with FxHash: their ids come
//! from the catalog, never from a client.

use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};

use llmur_core::counter::Bucket;
use rustc_hash::FxHashMap;

/// The bases already formatted, shared by the counter and its batches.
pub(super) struct Keys {
    prefix: String,
    cache: Mutex<FxHashMap<Bucket, String>>,
}

/// The cache, locked (hold it only while building one call).
pub(super) struct Locked<'a> {
    prefix: &'a str,
    cache: MutexGuard<'a, FxHashMap<Bucket, String>>,
}

impl Keys {
    /// Most bases kept; past it the cache starts over.
    const MAX: usize = 65_536;

    pub(super) fn new(prefix: String) -> Self {
        Self {
            prefix,
            cache: Mutex::new(FxHashMap::default()),
        }
    }

    /// The key prefix.
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) fn lock(&self) -> Locked<'_> {
        Locked {
            prefix: &self.prefix,
            cache: self.cache.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }
}

impl Locked<'_> {
    /// `bucket`'s key without its window start.
    pub(super) fn base(&mut self, bucket: &Bucket) -> &str {
        if self.cache.len() >= Keys::MAX && !self.cache.contains_key(bucket) {
            self.cache.clear();
        }
        let prefix = self.prefix;
        self.cache
            .entry(*bucket)
            .or_insert_with(|| format_base(prefix, bucket))
    }

    /// `bucket`'s key for the window starting at `window_start`.
    pub(super) fn key(&mut self, bucket: &Bucket, window_start: i64) -> String {
        let base = self.base(bucket);
        let mut key = String::with_capacity(base.len() + 14);
        key.push_str(base);
        let _ = write!(key, ":{window_start}");
        key
    }
}

/// `{prefix}:{level}:{id}:{metric}:{window}`.
fn format_base(prefix: &str, bucket: &Bucket) -> String {
    format!(
        "{prefix}:{}:{}:{}:{}",
        bucket.level.as_str(),
        bucket.id,
        bucket.metric.as_str(),
        bucket.window.as_str()
    )
}
