//! Redis names of the counter's buckets, formatted once and kept.
//!
//! Owns: [`Keys`] and the packing of an entity's counts. A bucket's usage in a window
//! lives in the window's hash, `{prefix}:{window}:{window_start}`, under its entity's
//! field, `{level}:{id}`, whose value holds the entity's three counts (requests, tokens,
//! cost) as little-endian doubles. A busy proxy asks on the same few entities again and
//! again, so each field is formatted once instead of per request (formatting names was
//! about 5 % of the Redis-backed proxy's CPU). Entities hash with FxHash: their ids come
//! from the catalog, never from a client.

use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};

use llmur_core::counter::{Bucket, Level, Metric};
use llmur_core::window::Window;
use rustc_hash::FxHashMap;
use uuid::Uuid;

use super::MAX_EXACT;

/// What a field names: an entity (the window kind is in the hash's name, so an entity's
/// minute and day windows share one field name; its metrics share the field's value).
type FieldOf = (Level, Uuid);

/// Bytes of a field's value: three little-endian doubles.
pub(super) const PACKED_LEN: usize = 24;

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
    /// The field of `bucket`'s entity in its window hashes.
    pub(super) fn field(&mut self, bucket: &Bucket) -> &str {
        self.entity(bucket.level, bucket.id)
    }

    /// The field of the entity `level`/`id` in its window hashes.
    pub(super) fn entity(&mut self, level: Level, id: Uuid) -> &str {
        let of = (level, id);
        if self.cache.len() >= Keys::MAX && !self.cache.contains_key(&of) {
            self.cache.clear();
        }
        self.cache
            .entry(of)
            .or_insert_with(|| format_entity(level, id))
    }
}

/// `{level}:{id}`: the field of `bucket`'s entity.
pub(super) fn format_field(bucket: &Bucket) -> String {
    format_entity(bucket.level, bucket.id)
}

/// `{level}:{id}`.
fn format_entity(level: Level, id: Uuid) -> String {
    format!("{}:{id}", level.as_str())
}

/// `metric`'s count in a field's value; `None` unless the value is three packed doubles
/// (a missing field counts as zero: the caller decides).
pub(super) fn unpack_count(value: &[u8], metric: Metric) -> Option<u64> {
    if value.len() != PACKED_LEN {
        return None;
    }
    let at = 8 * metric.index();
    let bytes: [u8; 8] = value.get(at..at + 8)?.try_into().ok()?;
    let count = f64::from_le_bytes(bytes);
    // Counts are whole numbers below 2^53 (the scripts keep them so); anything else is
    // not a count this counter wrote.
    (count >= 0.0 && count.fract() == 0.0 && count <= MAX_EXACT as f64).then_some(count as u64)
}

/// Appends `value` as a little-endian double (the scripts' number format).
pub(super) fn push_f64(out: &mut Vec<u8>, value: f64) {
    out.extend_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(counts: [f64; 3]) -> Vec<u8> {
        let mut out = Vec::new();
        for count in counts {
            push_f64(&mut out, count);
        }
        out
    }

    #[test]
    fn counts_unpack_by_metric_and_only_from_three_whole_doubles() {
        let value = packed([3.0, 1_234_567.0, 9_007_199_254_740_991.0]);
        assert_eq!(unpack_count(&value, Metric::Requests), Some(3));
        assert_eq!(unpack_count(&value, Metric::Tokens), Some(1_234_567));
        assert_eq!(
            unpack_count(&value, Metric::CostMicros),
            Some(9_007_199_254_740_991)
        );
        // Not three packed counts: a decimal string, a short value, negative, fractional
        // and out-of-range counts.
        assert_eq!(unpack_count(b"42", Metric::Requests), None);
        assert_eq!(unpack_count(&value[..16], Metric::Requests), None);
        let odd = packed([-1.0, 0.5, 9_007_199_254_740_992.0]);
        for metric in [Metric::Requests, Metric::Tokens, Metric::CostMicros] {
            assert_eq!(unpack_count(&odd, metric), None, "{metric:?}");
        }
        assert_eq!(
            unpack_count(&packed([f64::NAN, 0.0, 0.0]), Metric::Requests),
            None
        );
    }

    #[test]
    fn an_entity_has_one_field_for_every_metric_and_window() {
        let id = Uuid::from_u128(7);
        let bucket = |metric, window| Bucket {
            level: Level::Project,
            id,
            metric,
            window,
        };
        let keys = Keys::new("p".to_owned());
        let mut fields = keys.lock();
        let a = fields
            .field(&bucket(Metric::Tokens, Window::Minute))
            .to_owned();
        let b = fields
            .field(&bucket(Metric::Requests, Window::Day))
            .to_owned();
        assert_eq!(a, format!("project:{id}"));
        assert_eq!(a, b);
    }
}
