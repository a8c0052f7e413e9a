//! An entity's limits in the form the proxy asks the counter with.
//!
//! Owns: [`LimitSet`], the flattened, per-request-cheap form of a stored
//! [`Limits`]: one [`Rule`] per configured (metric, window),
//! budgets in micro-USD. Entities without any limit carry `None` instead of an empty set,
//! so unlimited keys cost nothing per request.
//! Must not touch: counting (see [`counter`](crate::counter)).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};

use crate::counter::Metric;
use crate::store::types::{Limits, Windows};
use crate::window::Window;

/// One limit: at most `limit` of `metric` per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// What is limited.
    pub metric: Metric,
    /// Per which window.
    pub window: Window,
    /// The most allowed (requests, tokens or micro-USD).
    pub limit: u64,
}

/// The limits of one key, project, deployment or connection.
///
/// Besides its rules, a set remembers per rule what the counter last reported, for
/// early forwarding (see `ProxyBuilder::early_forwarding`); that memory is not part of
/// the set's value: clones start without it and equality ignores it.
#[derive(Default)]
pub struct LimitSet {
    rules: Box<[Rule]>,
    seen: Box<[Seen]>,
}

/// What the counter last said of one rule's bucket, and what this process has sent
/// early since. Hints only: nothing is admitted or refused by them.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Room left after the last admitted reservation.
    pub(crate) remaining: AtomicU64,
    /// Until when (Unix ms) `remaining` may be trusted: the end of its window, or sooner.
    pub(crate) valid_until: AtomicI64,
    /// Amounts forwarded early whose reservation has not been answered yet.
    pub(crate) in_flight: AtomicU64,
}

impl Clone for LimitSet {
    fn clone(&self) -> Self {
        Self::new(self.rules.to_vec())
    }
}

impl PartialEq for LimitSet {
    fn eq(&self, other: &Self) -> bool {
        self.rules == other.rules
    }
}

impl Eq for LimitSet {}

impl std::fmt::Debug for LimitSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitSet")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl LimitSet {
    /// The rules of `limits`; `None` when nothing is limited.
    pub fn from_limits(limits: &Limits) -> Option<Arc<LimitSet>> {
        let mut rules = Vec::new();
        push(&mut rules, Metric::Requests, &limits.requests, |v| v);
        push(&mut rules, Metric::Tokens, &limits.tokens, |v| v);
        push(
            &mut rules,
            Metric::CostMicros,
            &limits.budget,
            usd_to_micros,
        );
        (!rules.is_empty()).then(|| Arc::new(LimitSet::new(rules)))
    }

    fn new(rules: Vec<Rule>) -> Self {
        let seen = rules.iter().map(|_| Seen::default()).collect();
        Self {
            rules: rules.into_boxed_slice(),
            seen,
        }
    }

    /// Per rule, in the order of [`rules`](Self::rules): what the counter last said.
    pub(crate) fn seen(&self) -> &[Seen] {
        &self.seen
    }

    /// The rules, requests first, then tokens, then budget; shortest window first.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether any rule counts `metric`.
    pub fn limits(&self, metric: Metric) -> bool {
        self.rules.iter().any(|r| r.metric == metric)
    }
}

fn push<T: Copy>(rules: &mut Vec<Rule>, metric: Metric, w: &Windows<T>, to_u64: impl Fn(T) -> u64) {
    let windows = [
        (Window::Minute, w.per_minute),
        (Window::Hour, w.per_hour),
        (Window::Day, w.per_day),
        (Window::Week, w.per_week),
        (Window::Month, w.per_month),
    ];
    for (window, value) in windows {
        if let Some(value) = value {
            rules.push(Rule {
                metric,
                window,
                limit: to_u64(value),
            });
        }
    }
}

/// USD to micro-USD, rounded to the nearest micro-dollar; negative and NaN become 0.
pub fn usd_to_micros(usd: f64) -> u64 {
    let micros = (usd * 1_000_000.0).round();
    if micros.is_finite() && micros > 0.0 {
        // Saturating float-to-int conversion.
        micros as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_limits_are_none_and_budgets_become_micros() {
        assert!(LimitSet::from_limits(&Limits::default()).is_none());
        let mut limits = Limits::default();
        limits.requests.per_minute = Some(10);
        limits.tokens.per_day = Some(1_000);
        limits.budget.per_month = Some(12.345_678_9);
        let Some(set) = LimitSet::from_limits(&limits) else {
            unreachable!("limits were set")
        };
        assert_eq!(
            set.rules(),
            [
                Rule {
                    metric: Metric::Requests,
                    window: Window::Minute,
                    limit: 10
                },
                Rule {
                    metric: Metric::Tokens,
                    window: Window::Day,
                    limit: 1_000
                },
                Rule {
                    metric: Metric::CostMicros,
                    window: Window::Month,
                    limit: 12_345_679
                },
            ]
        );
        assert_eq!(usd_to_micros(-1.0), 0);
        assert_eq!(usd_to_micros(f64::NAN), 0);
    }
}
