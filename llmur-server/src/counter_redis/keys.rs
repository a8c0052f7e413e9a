//! Redis names of the counter's buckets, formatted once and kept.
//!
//! Owns: [`Keys`]. A bucket's usage in a window lives in the window's hash,
//! `{prefix}:{window}:{window_start}`, under the bucket's field, `{level}:{id}:{metric}`.
//! A busy proxy asks on the same few buckets again and again, so each field is formatted
//! once instead of per request (formatting names was about 5 % of the Redis-backed
//! proxy's CPU). Buckets hash with FxHash: their ids come from the catalog, never from a
//! client.

use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};

use llmur_core::counter::{Bucket, Level, Metric};
use llmur_core::window::Window;
use rustc_hash::FxHashMap;
use uuid::Uuid;

/// What a field names: a bucket without its window kind (the kind is in the hash's name,
/// so a bucket's minute and day windows share one field name).
type FieldOf = (Level, Uuid, Metric);

/// The fields already formatted, shared by the counter and its batches.
pub(super) struct Keys {
    prefix: String,
    cache: Mutex<FxHashMap<FieldOf, String>>,
}

/// The cache, locked (hold it only while building one call).
pub(super) struct Locked<'a> {
    cache: MutexGuard<'a, FxHashMap<FieldOf, String>>,
}

impl Keys {
    /// Most fields kept; past it the cache starts over.
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

    /// The hash of `window`'s window starting at `window_start`.
    pub(super) fn hash(&self, window: Window, window_start: i64) -> String {
        let mut key = String::with_capacity(self.prefix.len() + 22);
        key.push_str(&self.prefix);
        let _ = write!(key, ":{}:{window_start}", window.as_str());
        key
    }

    pub(super) fn lock(&self) -> Locked<'_> {
        Locked {
            cache: self.cache.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }
}

impl Locked<'_> {
    /// `bucket`'s field in its window hashes.
    pub(super) fn field(&mut self, bucket: &Bucket) -> &str {
        let of = (bucket.level, bucket.id, bucket.metric);
        if self.cache.len() >= Keys::MAX && !self.cache.contains_key(&of) {
            self.cache.clear();
        }
        self.cache.entry(of).or_insert_with(|| format_field(bucket))
    }
}

/// `{level}:{id}:{metric}`.
pub(super) fn format_field(bucket: &Bucket) -> String {
    format!(
        "{}:{}:{}",
        bucket.level.as_str(),
        bucket.id,
        bucket.metric.as_str()
    )
}
