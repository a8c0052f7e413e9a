//! Lock-free latency histograms for figures the proxy measures on every request.
//!
//! Owns: [`Histogram`] (fixed log-spaced buckets, atomics only: recording is a handful of
//! relaxed adds, never a lock or an allocation) and its [`HistogramSnapshot`]. The proxy
//! records its own overhead per request here (see [`Proxy::overhead`](crate::Proxy::overhead));
//! exporters (Prometheus, OpenTelemetry) read snapshots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets in microseconds: 1, 2, 5, 10, 20, 50, ... 10 s; one more
/// bucket catches everything above.
pub const BOUNDS_MICROS: [u64; 22] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
    200_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
];

/// A histogram of durations.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_MICROS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one observation.
    pub fn record(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_MICROS.partition_point(|&b| b < micros);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            sum: Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)),
        }
    }
}

/// A histogram's counts at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations per bucket (not cumulative); bucket `i` holds values up to
    /// `BOUNDS_MICROS[i]` µs, the last one everything larger.
    pub buckets: Vec<u64>,
    /// Observations in all.
    pub count: u64,
    /// Their sum.
    pub sum: Duration,
}

impl HistogramSnapshot {
    /// The upper bound (µs) of the bucket holding quantile `q` (0..=1); `None` when empty
    /// or when it falls in the open last bucket.
    pub fn quantile_bound_micros(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        // Rank of the quantile, 1-based.
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return BOUNDS_MICROS.get(i).copied();
            }
        }
        None
    }
}

/// Counts of early forwarding (see
/// [`ProxyBuilder::early_forwarding`](crate::ProxyBuilder::early_forwarding)).
#[derive(Debug, Default)]
pub struct EarlyForwards {
    sent: AtomicU64,
    dropped: AtomicU64,
}

impl EarlyForwards {
    /// Requests sent upstream before the counter had admitted them.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Of those, the ones the counter then refused (or could not decide), whose upstream
    /// call was dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self, admitted: bool) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if !admitted {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("a request sent early was not admitted; its upstream call was dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_sum_and_quantiles() {
        let h = Histogram::new();
        for micros in [1, 3, 3, 40, 900, 20_000_000] {
            h.record(Duration::from_micros(micros));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 6);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[2], 2, "3 µs goes to the ≤5 µs bucket");
        assert_eq!(*s.buckets.last().unwrap_or(&0), 1);
        assert_eq!(s.quantile_bound_micros(0.5), Some(5));
        assert_eq!(s.quantile_bound_micros(0.8), Some(1_000));
        assert_eq!(s.quantile_bound_micros(1.0), None);
        assert_eq!(s.sum, Duration::from_micros(20_000_947));
    }
}
