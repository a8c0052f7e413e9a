//! Limits on the wire ↔ core [`Limits`].
//!
//! Owns: the three wire groups (`request_limits: {requests_per_minute, ...}`,
//! `token_limits: {tokens_per_...}`, `budget_limits: {cost_per_...}`), their validation,
//! and PATCH merging (a group that is sent replaces that group whole; a group that is left
//! out stays as it is; `{}` clears a group). Must not touch: enforcement.

use llmur_core::store::types::{Limits, Windows};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult};

/// Requests per calendar window (UTC); `null` or absent means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestLimits {
    /// Per minute.
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Per hour.
    #[serde(default)]
    pub requests_per_hour: Option<u64>,
    /// Per day.
    #[serde(default)]
    pub requests_per_day: Option<u64>,
    /// Per ISO week.
    #[serde(default)]
    pub requests_per_week: Option<u64>,
    /// Per month.
    #[serde(default)]
    pub requests_per_month: Option<u64>,
}

/// Tokens (input + output) per calendar window (UTC); `null` or absent means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenLimits {
    /// Per minute.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// Per hour.
    #[serde(default)]
    pub tokens_per_hour: Option<u64>,
    /// Per day.
    #[serde(default)]
    pub tokens_per_day: Option<u64>,
    /// Per ISO week.
    #[serde(default)]
    pub tokens_per_week: Option<u64>,
    /// Per month.
    #[serde(default)]
    pub tokens_per_month: Option<u64>,
}

/// Cost in USD per calendar window (UTC); `null` or absent means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetLimits {
    /// Per minute.
    #[serde(default)]
    pub cost_per_minute: Option<f64>,
    /// Per hour.
    #[serde(default)]
    pub cost_per_hour: Option<f64>,
    /// Per day.
    #[serde(default)]
    pub cost_per_day: Option<f64>,
    /// Per ISO week.
    #[serde(default)]
    pub cost_per_week: Option<f64>,
    /// Per month.
    #[serde(default)]
    pub cost_per_month: Option<f64>,
}

/// The limits of an entity as answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct LimitsOut {
    /// Requests per window.
    pub request_limits: RequestLimits,
    /// Tokens per window.
    pub token_limits: TokenLimits,
    /// USD per window.
    pub budget_limits: BudgetLimits,
}

impl From<Limits> for LimitsOut {
    fn from(l: Limits) -> Self {
        let r = l.requests;
        let t = l.tokens;
        let b = l.budget;
        Self {
            request_limits: RequestLimits {
                requests_per_minute: r.per_minute,
                requests_per_hour: r.per_hour,
                requests_per_day: r.per_day,
                requests_per_week: r.per_week,
                requests_per_month: r.per_month,
            },
            token_limits: TokenLimits {
                tokens_per_minute: t.per_minute,
                tokens_per_hour: t.per_hour,
                tokens_per_day: t.per_day,
                tokens_per_week: t.per_week,
                tokens_per_month: t.per_month,
            },
            budget_limits: BudgetLimits {
                cost_per_minute: b.per_minute,
                cost_per_hour: b.per_hour,
                cost_per_day: b.per_day,
                cost_per_week: b.per_week,
                cost_per_month: b.per_month,
            },
        }
    }
}

fn requests(r: RequestLimits) -> Windows<u64> {
    Windows {
        per_minute: r.requests_per_minute,
        per_hour: r.requests_per_hour,
        per_day: r.requests_per_day,
        per_week: r.requests_per_week,
        per_month: r.requests_per_month,
    }
}

fn tokens(t: TokenLimits) -> Windows<u64> {
    Windows {
        per_minute: t.tokens_per_minute,
        per_hour: t.tokens_per_hour,
        per_day: t.tokens_per_day,
        per_week: t.tokens_per_week,
        per_month: t.tokens_per_month,
    }
}

fn budget(b: BudgetLimits) -> ApiResult<Windows<f64>> {
    let w = Windows {
        per_minute: b.cost_per_minute,
        per_hour: b.cost_per_hour,
        per_day: b.cost_per_day,
        per_week: b.cost_per_week,
        per_month: b.cost_per_month,
    };
    let all = [w.per_minute, w.per_hour, w.per_day, w.per_week, w.per_month];
    if all.into_iter().flatten().any(|c| !c.is_finite() || c < 0.0) {
        return Err(ApiError::invalid(
            "budget_limits must be non-negative numbers",
        ));
    }
    Ok(w)
}

/// The three optional wire groups of a create or PATCH body.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LimitsIn {
    pub request_limits: Option<RequestLimits>,
    pub token_limits: Option<TokenLimits>,
    pub budget_limits: Option<BudgetLimits>,
}

impl LimitsIn {
    /// Whether any group was sent.
    pub(crate) fn is_present(&self) -> bool {
        self.request_limits.is_some() || self.token_limits.is_some() || self.budget_limits.is_some()
    }

    /// The limits of a new entity (absent groups: unlimited).
    pub(crate) fn to_core(self) -> ApiResult<Limits> {
        self.merge_into(Limits::default())
    }

    /// `current` with the sent groups replaced.
    pub(crate) fn merge_into(self, current: Limits) -> ApiResult<Limits> {
        Ok(Limits {
            requests: self.request_limits.map_or(current.requests, requests),
            tokens: self.token_limits.map_or(current.tokens, tokens),
            budget: match self.budget_limits {
                Some(b) => budget(b)?,
                None => current.budget,
            },
        })
    }
}

/// Builds a [`LimitsIn`] from a body struct with the three usual fields.
macro_rules! limits_in {
    ($body:expr) => {
        $crate::admin::limits::LimitsIn {
            request_limits: $body.request_limits,
            token_limits: $body.token_limits,
            budget_limits: $body.budget_limits,
        }
    };
}
pub(crate) use limits_in;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_merges() {
        let sent = LimitsIn {
            request_limits: Some(RequestLimits {
                requests_per_minute: Some(5),
                requests_per_month: Some(100),
                ..Default::default()
            }),
            token_limits: None,
            budget_limits: Some(BudgetLimits {
                cost_per_day: Some(1.5),
                ..Default::default()
            }),
        };
        let core = sent.to_core().unwrap_or_default();
        assert_eq!(core.requests.per_minute, Some(5));
        assert_eq!(core.requests.per_month, Some(100));
        assert_eq!(core.budget.per_day, Some(1.5));
        let out = LimitsOut::from(core);
        assert_eq!(out.request_limits, sent.request_limits.unwrap_or_default());
        let patched = LimitsIn {
            token_limits: Some(TokenLimits {
                tokens_per_hour: Some(9),
                ..Default::default()
            }),
            ..Default::default()
        }
        .merge_into(core)
        .unwrap_or_default();
        assert_eq!(patched.requests, core.requests);
        assert_eq!(patched.tokens.per_hour, Some(9));
        let negative = LimitsIn {
            budget_limits: Some(BudgetLimits {
                cost_per_day: Some(-1.0),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(negative.to_core().is_err());
    }
}
